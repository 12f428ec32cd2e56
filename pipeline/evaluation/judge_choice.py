"""`judge: auto`: the judge a label run uses is the one that agrees best with the user's own
human labels beyond answer length and chance, measured on those labels by the leaderboard;
a probe is then fitted on all of them. With no labels, too few, or no judge that passes, the
run goes on with the log-prob judge and says so: its labels are *unverified*, and every stage
that reads them repeats it. The choice is saved in the label run (`judge.json`) so a resumed
run keeps it and later stages can read it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.core.files import write_atomic
from pipeline.core.stats import chose_longer, wilson_interval
from pipeline.data.preferences import Preference

CHOICE_FILE = "judge.json"
BOARD_FILE = "judges.json"
PROBE_DIR = "probe"
TARGET_LABELS = 40  # human labels that make a judge's agreement worth measuring
QUEUE = "the Preferences tab's labelling queue (or `prefs human`)"


@dataclass(frozen=True)
class JudgeChoice:
    """Which judge labelled a run and on what evidence."""

    method: str  # logprob or representation
    probe: str  # the probe folder a representation judge reads ('' = the constitution's direction)
    verified: bool  # measured to agree with people beyond length and chance
    judge: str  # the leaderboard's name for it
    agreement: str  # its measured agreement ('' when unverified)
    labels: str  # where the human labels came from
    pairs: int  # human labels it was measured on
    reason: str  # the verdict, or why the labels are unverified
    domain: str = ""  # a probe that follows answer length on the new pairs says so here

    @property
    def text(self) -> str:
        if not self.verified:
            return f"labels unverified: {self.reason}"
        return (
            f"judge: {self.judge}, chosen by agreement with {self.pairs} human labels "
            f"({self.labels}): {self.agreement}"
        )


def unverified(labels: str, pairs: int, why: str) -> JudgeChoice:
    """The log-prob judge, with what the user can do to check it."""
    more = TARGET_LABELS - pairs
    todo = (
        f"label {more} more pairs in {QUEUE} to check them"
        if more > 0
        else "label pairs where people chose the shorter answer too, or try another constitution"
    )
    return JudgeChoice("logprob", "", False, "log-prob A/B", "", labels, pairs, f"{why}; {todo}")


def from_board(board, probe_folder: str) -> JudgeChoice:
    """The choice a leaderboard makes: its best row, or unverified when none passes."""
    best = board.best
    if best is None:
        return unverified(
            board.labels,
            board.pairs,
            f"no judge agrees with your {board.pairs} human labels beyond answer length and chance",
        )
    method = "logprob" if best.kind == "logprob" else "representation"
    return JudgeChoice(
        method,
        probe_folder if best.kind == "probe" else "",
        True,
        best.judge,
        best.text,
        board.labels,
        board.pairs,
        best.verdict.text,
    )


def save_choice(choice: JudgeChoice, folder: str | Path) -> Path:
    return write_atomic(Path(folder) / CHOICE_FILE, json.dumps(asdict(choice), indent=2))


def read_choice(folder: str | Path) -> JudgeChoice | None:
    """The choice saved in a label run; None for a run labelled without `auto` (or unreadable)."""
    path = Path(folder) / CHOICE_FILE
    try:
        return JudgeChoice(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def labels_note(folder: str | Path) -> str:
    """What a stage reading a label run must say about its labels: the judge and its measured
    agreement, or that they are unverified."""
    choice = read_choice(folder)
    if choice is None:
        return (
            f"labels unverified: the judge of {folder} was not measured against people; "
            f"label {TARGET_LABELS} pairs in {QUEUE} and label with judge_method: auto"
        )
    return choice.text + (f" — {choice.domain}" if choice.domain else "")


def domain_check(prefs: list[Preference], fitted_longer: float | None) -> str:
    """Whether a probe's decisions on new pairs follow answer length beyond what its fit data
    justified: it picks the longer (or shorter) answer significantly more often than people
    chose it in the pairs it was fitted on. '' when it does not (or cannot be told)."""
    if fitted_longer is None:
        return ""
    picks = [
        side
        for p in prefs
        if p.p_a != 0.5
        and (
            side := chose_longer("A" if p.p_a > 0.5 else "B", p.pair.response_a, p.pair.response_b)
        )
        is not None
    ]
    if len(picks) < 10:
        return ""
    longer = sum(picks)
    low, high = wilson_interval(longer, len(picks))
    rate = longer / len(picks)
    if low > fitted_longer and rate > 0.5:
        leaning, fit_side = "longer", fitted_longer
    elif high < fitted_longer and rate < 0.5:
        leaning, fit_side = "shorter", 1 - fitted_longer
        rate, low, high = 1 - rate, 1 - high, 1 - low
    else:
        return ""
    return (
        f"this probe mostly follows answer length here: it picks the {leaning} answer in "
        f"{rate:.0%} ({low:.0%}–{high:.0%}) of {len(picks)} pairs, while people chose the "
        f"{leaning} answer in {fit_side:.0%} of the pairs it was fitted on"
    )


def measured_choice(job, store, constitution, out: Path, step) -> JudgeChoice:
    """Measure every judge on the human labels `job.human_labels` names (a LabelJob or any
    job with its model, constitution, ensemble and seed), save the board, fit the probe on all
    the labels when a probe wins, and return the choice (unverified when none passes), saved
    in `out` whichever it is."""
    from pipeline.core.errors import DatasetError
    from pipeline.values.features import labelled_in

    try:
        data = labelled_in(job.human_labels, store)
    except DatasetError:
        choice = unverified(
            job.human_labels, 0, f"there are no human A/B labels in '{job.human_labels}'"
        )
    else:
        choice = checked_choice(job, data, constitution, out, step)
    save_choice(choice, out)
    return choice


def checked_choice(job, data, constitution, out: Path, step) -> JudgeChoice:
    """The board's choice on labels that can check a judge; unverified (saying why) else."""
    from pipeline.config.commands import JudgesCompareJob, build_job
    from pipeline.core.errors import DatasetError
    from pipeline.evaluation.leaderboard import check_labels, judged_all, leaderboard
    from pipeline.model.loading import load_model

    compare = build_job(
        JudgesCompareJob,
        {
            "labels": job.human_labels,
            "constitution": constitution.name,
            "model": job.model,
            "ensemble": job.ensemble,
            "seed": job.seed,
        },
    )
    try:
        check_labels(data, compare.folds)
    except DatasetError as exc:
        return unverified(job.human_labels, len(data.pairs), str(exc).rstrip("."))
    loaded = load_model(job.model)
    board = leaderboard(
        job.human_labels, data, judged_all(loaded, constitution, data, compare, step), compare.seed
    )
    return board_choice(board, loaded, data, compare, out, step)


def board_choice(board, loaded, data, compare, out: Path, step) -> JudgeChoice:
    """The choice a board makes, the board saved in `out` (judges.json); a winning probe is
    fitted on all the labels (its layer picked by cross-validation) into out/probe, so the
    judge the board measured can label, score and be picked by name."""
    from pipeline.values.representation_judge import fit_probe, save_probe

    write_atomic(out / BOARD_FILE, json.dumps(board.as_json(), indent=2))
    choice = from_board(board, str(out / PROBE_DIR))
    if choice.probe:
        step("fitting the winning probe on all the labels")
        save_probe(
            fit_probe(
                loaded, data, compare.pooling, compare.method, None, compare.folds, compare.seed
            ),
            out / PROBE_DIR,
        )
    return choice


NOTE_FILE = "labels-note.json"  # in a training run: what its labels (or its PM's) rest on


def training_note(job) -> dict | None:
    """For a stage trained on a label run (`data`) or on a PM trained on one
    (`reward_adapter`): whether those labels were verified, and the note to repeat."""
    data = getattr(job, "data", "")
    if data and (Path(data) / "labels.jsonl").is_file():
        choice = read_choice(data)
        return {
            "labels": str(data),
            "verified": bool(choice and choice.verified),
            "note": labels_note(data),
        }
    adapter = getattr(job, "reward_adapter", "")
    if adapter:
        try:
            return json.loads((Path(adapter).parent / NOTE_FILE).read_text())
        except (OSError, ValueError):
            return None
    return None
