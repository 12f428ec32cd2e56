"""`pairs`: two sampled answers per prompt from the policy, the A/B pairs the AI labels;
written a chunk of prompts at a time, so a cancelled run keeps them and a rerun resumes."""

from __future__ import annotations

from dataclasses import asdict

from tqdm import tqdm

from pipeline.cai.feedback import make_pairs
from pipeline.config.commands import PairsJob
from pipeline.config.fields import settings_of
from pipeline.config.settings import SamplingConfig
from pipeline.core.job_folder import claim_run_folder, job_context, write_progress
from pipeline.data.preferences import PAIRS_FILE, PairLog, PromptsSampled
from pipeline.data.prompts import load_prompts
from pipeline.model.engines import backend_for
from pipeline.runner.invocation import Invocation, loading


def run(job: PairsJob, inv: Invocation) -> int:
    out = inv.folder
    with job_context(out):
        prompts = load_prompts(job.prompts, job.split or None)[: job.limit or None]
        sampling = settings_of(job, SamplingConfig)
        write_progress(out, 0, len(prompts), loading(job.policy))
        backend = backend_for(
            job.policy,
            max_batch_size=job.batch_size,
            engine=job.engine,
            greedy=job.temperature == 0,
        )
        claim_run_folder(
            out,
            {
                "prompts": job.prompts,
                "split": job.split,
                "policy": job.policy,
                "engine": job.engine,
                "sampling": asdict(sampling),
            },
        )
        log, sampled = PairLog(out), PromptsSampled(out)
        done, kept = sampled.done_ids(), log.done_ids()
        todo = [(place, p) for place, p in enumerate(prompts) if p.id not in done]
        per_chunk = max(1, job.batch_size // 2)
        chunks = -(-len(todo) // per_chunk)
        bar = tqdm(total=len(prompts), initial=len(prompts) - len(todo), unit="prompt")
        for n, start in enumerate(range(0, len(todo), per_chunk), 1):
            chunk = todo[start : start + per_chunk]
            phase = f"sampling two answers per prompt (chunk {n} of {chunks})"
            write_progress(out, bar.n, len(prompts), phase, (n - 1, chunks))
            made = make_pairs(
                backend, [p for _, p in chunk], sampling, [place for place, _ in chunk]
            )
            # a chunk cut short by a kill after its pairs were written is sampled again
            # with the same seeds: its pairs are not written twice
            log.append([p for p in made if p.id not in kept])
            kept |= {p.id for p in made}
            sampled.append([p.id for _, p in chunk])
            bar.update(len(chunk))
        bar.close()
        write_progress(out, len(prompts), len(prompts), "done", (chunks, chunks))
        pairs = log.read()
        identical = sum(p.identical for p in pairs)
        print(
            f"wrote {len(pairs)} pairs from {job.policy} to {out / PAIRS_FILE} "
            f"({identical} with identical answers, {len(prompts) - len(pairs)} prompts "
            "with an empty answer left out)"
        )
    return 0
