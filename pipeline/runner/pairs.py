"""`pairs`: two sampled answers per prompt from the policy, the A/B pairs the AI labels."""

from __future__ import annotations

from dataclasses import replace

from tqdm import tqdm

from pipeline.cai.feedback import make_pairs
from pipeline.config.commands import PairsJob
from pipeline.config.fields import settings_of
from pipeline.config.settings import SamplingConfig
from pipeline.core.job_folder import job_context, write_progress
from pipeline.data.preferences import PAIRS_FILE, write_pairs
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
        pairs, per_batch = [], max(1, job.batch_size // 2)
        bar = tqdm(total=len(prompts), unit="prompt")
        for start in range(0, len(prompts), per_batch):
            chunk = prompts[start : start + per_batch]
            pairs += make_pairs(backend, chunk, replace(sampling, seed=sampling.seed + 2 * start))
            bar.update(len(chunk))
            write_progress(out, bar.n, len(prompts), "sampling answers")
        bar.close()
        write_pairs(pairs, out / PAIRS_FILE)
        identical = sum(p.identical for p in pairs)
        print(
            f"wrote {len(pairs)} pairs from {job.policy} to {out / PAIRS_FILE} "
            f"({identical} with identical answers, {len(prompts) - len(pairs)} prompts "
            "with an empty answer left out)"
        )
    return 0
