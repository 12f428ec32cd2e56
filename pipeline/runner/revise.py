"""`revise`: critique–revision chains over a prompt set, each chain written as it finishes
so a rerun resumes; a summary of refusals and failed rounds per principle."""

from __future__ import annotations

import sys
from dataclasses import asdict

from tqdm import tqdm

from pipeline.cai.critique import (
    ChainLog,
    ChainRequest,
    batch_quality,
    chain_id,
    chain_step,
    export_chains,
    principle_stats,
    run_chains,
)
from pipeline.config.commands import ReviseJob
from pipeline.config.fields import settings_of
from pipeline.config.settings import ChainConfig, SamplingConfig
from pipeline.core.job_folder import claim_run_folder, job_context, write_progress
from pipeline.data.constitution import content_hash
from pipeline.data.prompts import load_prompts
from pipeline.model.engines import backend_for
from pipeline.runner.invocation import Invocation, loading


def run(job: ReviseJob, inv: Invocation) -> int:
    out = inv.folder
    with job_context(out):
        constitution = inv.constitution(job.constitution)
        skipped: list[str] = []
        prompts = load_prompts(
            job.prompts,
            job.split or None,
            on_bad_line=skipped.append if job.skip_bad_lines else None,
        )
        for message in skipped:
            print(f"warning: skipped {message}", file=sys.stderr)
        prompts = prompts[: job.limit or None]
        config = settings_of(job, ChainConfig)
        sampling = settings_of(job, SamplingConfig)
        write_progress(out, 0, len(prompts), loading(job.model))
        backend = backend_for(
            job.model,
            max_batch_size=config.batch_size,
            engine=job.engine,
            greedy=job.temperature == 0,
        )
        claim_run_folder(
            out,
            {
                "constitution": constitution.name,
                "constitution_hash": content_hash(constitution),
                "prompts": job.prompts,
                "model": job.model,
                "chain": asdict(config),
                "sampling": asdict(sampling),
            },
        )
        log = ChainLog(out)
        done = log.done_ids()
        requests = [ChainRequest(p, constitution) for p in prompts]
        todo = [r for r in requests if chain_id(r, config, sampling, backend.name) not in done]
        bar = tqdm(total=len(requests), initial=len(requests) - len(todo), unit="chain")
        # the count is of finished chains only (a batch's chains finish together); the text
        # says which step of which batch runs, and the estimate paces on those steps
        stages, batches = 2 * config.rounds + 1, -(-len(todo) // config.batch_size)
        work = (0, stages * batches)

        def phase(step: int) -> str:
            batch = f" (batch {step // stages + 1} of {batches})" if batches > 1 else ""
            return f"{chain_step(step, config.rounds)}{batch}"

        write_progress(out, bar.n, len(requests), phase(0), work)
        for step, chains in enumerate(run_chains(backend, todo, config, sampling)):
            if all(c.done for c in chains):
                log.append(chains)
                bar.update(len(chains))
                for c in chains:
                    if c.truncated:
                        print(
                            f"warning: prompt {c.prompt_id} was cut to fit the model's context",
                            file=sys.stderr,
                        )
            work = (step + 1, stages * batches)
            ended = step + 1 == work[1]
            write_progress(out, bar.n, len(requests), "done" if ended else phase(step + 1), work)
        bar.close()
        chains = log.read()
        if chains:
            export_chains(out)
        quality = batch_quality(chains)
        print(
            f"{quality.chains} chains in {out / 'chains.jsonl'}; {quality.refusing} final "
            f"answers refuse; {quality.failed_rounds} failed rounds"
        )
        for s in principle_stats(chains):
            print(
                f"  {s.principle_id:<24} drawn {s.drawn:>4}  failed {s.failed:>3} "
                f"({s.failure_rate:.0%})"
            )
    return 0
