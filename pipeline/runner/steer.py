"""`steer extract`: a steering direction from a constitution's contrasts or from labelled
pairs, optionally read against people's labels at every layer."""

from __future__ import annotations

from pipeline.config.commands import SteerExtractJob
from pipeline.core.job_folder import job_context, write_progress
from pipeline.data.prompts import load_prompts
from pipeline.model import steering
from pipeline.model.loading import load_model
from pipeline.runner.invocation import Invocation, loading
from pipeline.steering import extraction
from pipeline.values.features import labelled_in


def run(job: SteerExtractJob, inv: Invocation) -> int:
    out = inv.folder
    with job_context(out):
        write_progress(out, 0, 2, loading(job.model))
        loaded = load_model(job.model)
        write_progress(out, 0, 2, "reading the contrasts")
        if job.constitution:
            constitution = inv.constitution(job.constitution)
            prompts = [p.prompt for p in load_prompts(job.prompts, "train")][: job.limit]
            direction = extraction.extract_from_constitution(
                loaded, constitution, prompts, job.layer_list, job.method
            )
        else:
            direction = extraction.extract_from_pairs(
                loaded, labelled_in(job.pairs, inv.store()), job.pairs, job.layer_list, job.method
            )
        if job.read:
            write_progress(out, 1, 2, f"reading each layer on {job.read}")
            direction = extraction.with_reading(
                loaded, direction, labelled_in(job.read, inv.store()), job.read
            )
        folder = steering.save_direction(direction, out / steering.DIRECTION_DIR)
        write_progress(out, 2, 2, "done")
        print(steering.format_direction(direction))
        print(
            f"saved in {folder} — steer with `generate --steer {out} --coefficient C "
            f"--layers {direction.middle_layer}`"
        )
    return 0
