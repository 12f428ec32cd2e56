"""`sft-data`: the SL-CAI training set from finished chains (and, at a helpful ratio above 0,
the model's own answers to helpful prompts)."""

from __future__ import annotations

from pipeline.cai.sft_data import build_sft_dataset
from pipeline.config.commands import SFTDataJob
from pipeline.config.fields import settings_of
from pipeline.config.settings import SamplingConfig
from pipeline.core.job_folder import job_context, write_progress
from pipeline.model.engines import backend_for
from pipeline.runner.invocation import Invocation, loading


def run(job: SFTDataJob, inv: Invocation) -> int:
    out = inv.folder
    with job_context(out):
        sampling = settings_of(job, SamplingConfig)
        write_progress(
            out, 0, 0, loading(job.model) if job.helpful_ratio > 0 else "reading the chains"
        )
        backend = (
            backend_for(job.model, engine=job.engine, greedy=job.temperature == 0)
            if job.helpful_ratio > 0
            else None
        )
        summary = build_sft_dataset(
            job.chains, out, job.helpful_ratio, backend, sampling, job.helpful_set
        )
        print(
            f"wrote {summary.revisions} revision and {summary.helpful} helpfulness examples "
            f"to {summary.path} ({summary.skipped} chains with no accepted revision left out)"
        )
    return 0
