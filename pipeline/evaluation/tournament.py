"""The policy tournament: K policies answer held-out prompts, judges compare them pairwise on
the same prompt (both orders), and Bradley–Terry ratings with bootstrap intervals come out —
separately for harmlessness (red-team prompts) and helpfulness (helpful prompts).

Run folder: `answers.jsonl` (one answer per policy and prompt), `comparisons.jsonl` (one
judge's full preference record per comparison: per-principle labels, both orders), both
append-only and keyed, so a rerun — with more prompts, another judge or after a cancel —
adds only what is missing; `eval.json` (every number with its lineage) and `eval.md`.
People join as a judge through the workspace's human labels of the same pairs (the
studio's blind A/B); `results` reads them each time it is asked.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from pipeline.cai.trust import position_decided
from pipeline.core.errors import ConfigError, DatasetError
from pipeline.core.files import RecordLog, write_atomic
from pipeline.core.job_folder import JobCancelled
from pipeline.core.seeds import stable_int
from pipeline.core.shards import Shard, barrier, current_shard, done_here, fold, read_all
from pipeline.data.constitution import Constitution, content_hash
from pipeline.data.preferences import Pair, Preference, preference_from_dict, preference_to_dict
from pipeline.data.prompts import load_prompts
from pipeline.evaluation.judges import PEOPLE, pm_scores
from pipeline.evaluation.power import power_lines
from pipeline.evaluation.ratings import Outcome, rate, schedule, win_matrix

ANSWERS_FILE, COMPARISONS_FILE, EVAL_FILE, EVAL_MD = (
    "answers.jsonl",
    "comparisons.jsonl",
    "eval.json",
    "eval.md",
)
AXES = {"red-team": "harmlessness", "helpful": "helpfulness"}
NO_SIGNAL = 0.9  # share of position-decided comparisons above which a judge says nothing
NO_ANSWER = "(no answer)"  # what a judge is shown for an empty answer (a pair needs text)
STEER = "@steer:"


@dataclass(frozen=True)
class TournamentPrompt:
    id: str
    prompt: str
    category: str
    axis: str  # harmlessness (red-team), helpfulness (helpful), or the file's name


def tournament_prompts(sets: list[str], split: str, limit: int) -> list[TournamentPrompt]:
    """The first `limit` prompts of each set's split; a set without that split is refused."""
    out = []
    for name in sets:
        records = load_prompts(name, split or None)
        if not records:
            raise DatasetError(
                f"The prompt set {name} has no {split} split: hold out some of its "
                "prompts (split: test in its JSONL) or pick another split."
            )
        axis = AXES.get(name, Path(name).stem)
        out += [
            TournamentPrompt(f"{axis}:{r.id}", r.prompt, r.category, axis)
            for r in records[: limit or None]
        ]
    return out


@dataclass(frozen=True)
class Answer:
    policy: str
    prompt_id: str
    text: str
    finish_reason: str
    engine: str = "transformers"  # what wrote it (engines sample differently under one seed)

    @property
    def key(self) -> str:
        return f"{self.policy}\t{self.prompt_id}"


class AnswerLog(RecordLog[Answer]):
    FILE = ANSWERS_FILE

    def to_row(self, a: Answer) -> dict:
        return {"id": a.key, **asdict(a)}

    def from_row(self, row: Any, n: int) -> Answer:
        return Answer(
            row["policy"],
            row["prompt_id"],
            row["text"],
            row["finish_reason"],
            row.get("engine", "transformers"),
        )

    def key(self, a: Answer) -> str:
        return a.key


@dataclass(frozen=True)
class Match:
    """One judge's preference between two policies' answers (A and B) to one prompt."""

    judge: str
    prompt_id: str
    a: str  # the policy whose answer is A
    b: str
    preference: Preference

    @property
    def key(self) -> str:
        return match_key(self.judge, self.prompt_id, self.a, self.b)

    @property
    def position_decided(self) -> bool:
        p = self.preference
        return bool(p.labels) and position_decided(p.p_a_ab, p.p_a_ba)


def match_key(judge: str, prompt_id: str, a: str, b: str) -> str:
    return f"{judge}\t{prompt_id}\t{a}\t{b}"


class MatchLog(RecordLog[Match]):
    FILE = COMPARISONS_FILE

    def to_row(self, c: Match) -> dict:
        return {
            "id": c.key,
            "judge": c.judge,
            "prompt_id": c.prompt_id,
            "a": c.a,
            "b": c.b,
            "preference": preference_to_dict(c.preference),
        }

    def from_row(self, row: Any, n: int) -> Match:
        return Match(
            row["judge"],
            row["prompt_id"],
            row["a"],
            row["b"],
            preference_from_dict(row["preference"]),
        )

    def key(self, c: Match) -> str:
        return c.key


# --- policies -----------------------------------------------------------------------------------


def split_policy(spec: str) -> tuple[str, str]:
    """'MODEL' or 'MODEL@steer:DIR:COEFFICIENT[:LAYER+LAYER]' → (model, steering part)."""
    model, _, steer = spec.partition(STEER)
    return model, steer


ANSWER_BATCH = 32  # a policy's answers generated (and written) together on transformers


def policy_backend(
    spec: str, base_model: str, max_batch_size: int = ANSWER_BATCH, vllm: bool = False
):
    """The backend that answers for a policy: a model or adapter (an adapter trained on
    another base is refused by name), optionally steered; on a vLLM engine when `vllm` and
    the policy is not steered."""
    from pipeline.model.engines import backend_for
    from pipeline.model.loading import ADAPTER_CONFIG, check_adapter_base, load_model

    model, steer = split_policy(spec)
    if (Path(model) / ADAPTER_CONFIG).exists():
        check_adapter_base(model, load_model(base_model))
    if vllm and not steer:
        from pipeline.model.vllm_engine import VLLMBackend

        return VLLMBackend(model)
    backend = backend_for(model, max_batch_size)
    if not steer:
        return backend
    from pipeline.model.steering import SteeredBackend, Steering, load_direction

    parts = steer.split(":")
    if len(parts) not in (2, 3):
        raise ConfigError(
            f"A steered policy is MODEL@steer:DIR:COEFFICIENT[:LAYER+LAYER] (got {spec!r})."
        )
    direction = load_direction(parts[0], backend.loaded)
    try:
        coefficient = float(parts[1])
        layers = (
            tuple(int(x) for x in parts[2].split("+"))
            if len(parts) == 3
            else (direction.middle_layer,)
        )
    except ValueError:
        raise ConfigError(
            f"A steered policy's coefficient is a number and its layers are "
            f"numbers joined by + (got {spec!r})."
        ) from None
    return SteeredBackend(backend, Steering(direction, coefficient, layers))


def uses_vllm(engine: str, shard: Shard) -> tuple[bool, str]:
    """(answer on vLLM?, why not, where it was wanted). `auto` takes vLLM on a GPU only: on a
    2-core CPU its CPU build answered at 0.63× the transformers engine's speed, LoRA adapters
    at 0.19× (bench/answers.py); `vllm` takes it wherever it runs."""
    from pipeline.model.vllm_engine import on_gpu, vllm_problem

    if engine == "transformers":
        return False, ""
    problem = (
        vllm_problem()
        or ("vLLM is not used under several processes" if shard.world > 1 else "")
        or ("auto answers on vLLM on a GPU only" if engine == "auto" and not on_gpu() else "")
    )
    return not problem, problem


def answers_of(
    spec: str,
    base_model: str,
    conversations: list,
    sampling,
    seeds: list[int],
    vllm: bool,
    note: Callable[[str], None],
    cancel,
) -> tuple[list, str]:
    """A policy's answers and the engine that wrote them: vLLM when asked (`vllm`: for this
    policy, so never a steered one); if vLLM fails, transformers, saying why — unless the job
    was cancelled (the cancel ends the engine's process too, which is no failure to answer
    around)."""
    if vllm:
        try:
            return policy_backend(spec, base_model, vllm=True).generate(
                conversations, sampling, seeds=seeds
            ), "vllm"
        except Exception as exc:  # vLLM failing must not stop the tournament
            if cancel.requested:
                raise JobCancelled() from exc
            note(
                f"vLLM could not answer ({type(exc).__name__}: {exc}); answering with transformers"
            )
    return policy_backend(spec, base_model).generate(
        conversations, sampling, seeds=seeds
    ), "transformers"


def answer_all(
    policies: dict[str, str],
    base_model: str,
    prompts: list[TournamentPrompt],
    sampling,
    out: Path,
    cancel,
    progress: Callable[[str], None],
    shard: Shard = Shard(),
    engine: str = "transformers",
) -> None:
    """Every policy answers every prompt it has not answered yet (batched, each prompt with
    its own seed, the same for every policy) — this process's share of them — on the
    engine asked for (`auto`: vLLM where it can run)."""
    from pipeline.model.generation import chat
    from pipeline.model.vllm_engine import release_engines

    log = AnswerLog.of_file(shard.own_file(out / ANSWERS_FILE))
    done = done_here(AnswerLog(out), shard)
    mine = shard.mine([(name, p) for name in policies for p in prompts])
    vllm, why_not = uses_vllm(engine, shard)
    if engine == "vllm" and why_not:
        progress(f"{why_not}: answering with transformers")
    try:
        for n, (name, spec) in enumerate(policies.items(), 1):
            todo = [p for policy, p in mine if policy == name and f"{name}\t{p.id}" not in done]
            if not todo:
                continue
            on_vllm = vllm and not split_policy(spec)[1]  # vLLM runs no steering hooks
            # a batch at a time on transformers, each written as it finishes (a cancel keeps
            # them); vLLM schedules all of a policy's prompts at once
            per_chunk = len(todo) if on_vllm else ANSWER_BATCH
            for start in range(0, len(todo), per_chunk):
                chunk = todo[start : start + per_chunk]
                part = (
                    f"{len(todo)} prompts"
                    if len(chunk) == len(todo)
                    else f"prompts {start + 1}–{start + len(chunk)} of {len(todo)}"
                )
                progress(
                    f"answers of {name} ({n} of {len(policies)})"
                    f"{' on vLLM' if on_vllm else ''}: {part}"
                )
                seeds = [stable_int("tournament-answer", sampling.seed, p.id) for p in chunk]
                generated, by = answers_of(
                    spec,
                    base_model,
                    [chat(p.prompt) for p in chunk],
                    sampling,
                    seeds,
                    on_vllm,
                    progress,
                    cancel,
                )
                log.append(
                    [
                        Answer(name, p.id, g.text, g.finish_reason, by)
                        for p, g in zip(chunk, generated)
                    ]
                )
                if cancel.requested:
                    raise JobCancelled()
    finally:
        if vllm:
            release_engines()  # the judges need the GPU's memory


def judge_all(
    judges: dict[str, Any],
    policies: list[str],
    prompts: list[TournamentPrompt],
    constitution: Constitution | None,
    seed: int,
    out: Path,
    cancel,
    progress: Callable[[str, int, int], None],
    batch_size: int = 32,
    shard: Shard = Shard(),
) -> None:
    """Each judge labels every scheduled comparison it has not labelled yet — this process's
    share of them — in batches (one judge call per batch, both orders inside it). Every
    answer must be written (by every process) before."""
    answers = {a.key: a for a in read_all(AnswerLog(out))}
    by_id = {p.id: p for p in prompts}
    log = MatchLog.of_file(shard.own_file(out / COMPARISONS_FILE))
    done = done_here(MatchLog(out), shard)
    plan = shard.mine(schedule(policies, [p.id for p in prompts], seed))
    for name, judge in judges.items():
        todo = [c for c in plan if match_key(name, *c) not in done]
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            progress(f"judging with {name}", start, len(todo))
            pairs = [
                Pair(
                    by_id[q].prompt,
                    answers[f"{a}\t{q}"].text or NO_ANSWER,
                    answers[f"{b}\t{q}"].text or NO_ANSWER,
                    category=by_id[q].category,
                )
                for q, a, b in batch
            ]
            labelled = judge.label(constitution, pairs)
            log.append([Match(name, q, a, b, pref) for (q, a, b), pref in zip(batch, labelled)])
            if cancel.requested:
                raise JobCancelled()


# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AxisResult:
    axis: str
    ratings: list[dict]  # Rating as dicts, best first
    matrix: list[list[float | None]]  # policies × policies, in `TournamentResult.policies` order
    categories: dict[str, dict[str, float]]  # category → policy → mean score in its comparisons
    comparisons: int


@dataclass(frozen=True)
class JudgeResult:
    judge: str
    axes: list[AxisResult]
    position_decided: float  # share of its comparisons decided by the answers' order
    warning: str  # non-empty when its results carry no signal


@dataclass(frozen=True)
class PolicyStats:
    name: str
    model: str
    mean_words: float
    refusal_rate: float | None  # on helpful prompts: evasiveness
    limit_rate: float  # answers cut by max_new_tokens
    pm_mean: float | None
    pm_std: float | None
    answered_by: str = "transformers"  # the engines that wrote its answers, joined by +


@dataclass(frozen=True)
class TournamentResult:
    policies: list[str]
    judges: list[JudgeResult]
    stats: list[PolicyStats]
    agreement: list[dict]  # judge pairs: share of comparisons where both pick the same winner
    lineage: dict = field(default_factory=dict)


def outcomes_of(comparisons: list[Match]) -> list[Outcome]:
    return [Outcome(c.prompt_id, c.a, c.b, c.preference.p_a) for c in comparisons]


def people_comparisons(comparisons: list[Match], humans: dict[str, str]) -> list[Match]:
    """People's labels of the tournament's pairs (recorded by the studio's blind A/B on the
    pair as the first judge saw it) as comparisons of their own judge."""
    seen, out = set(), []
    for c in comparisons:
        choice = humans.get(c.preference.pair.id)
        if choice not in ("A", "B", "tie") or (c.prompt_id, c.a, c.b) in seen:
            continue
        seen.add((c.prompt_id, c.a, c.b))
        p = {"A": 1.0, "B": 0.0, "tie": 0.5}[choice]
        out.append(
            Match(PEOPLE, c.prompt_id, c.a, c.b, Preference(c.preference.pair, p, (), PEOPLE, ""))
        )
    return out


def judge_result(
    name: str,
    comparisons: list[Match],
    policies: list[str],
    prompts: list[TournamentPrompt],
    samples: int,
    seed: int,
) -> JudgeResult:
    by_id = {p.id: p for p in prompts}
    axes = []
    for axis in dict.fromkeys(p.axis for p in prompts):
        mine = [c for c in comparisons if by_id[c.prompt_id].axis == axis]
        playing = [p for p in policies if any(p in (c.a, c.b) for c in mine)]
        if len(playing) < 2:
            continue
        outcomes = outcomes_of(mine)
        categories: dict[str, dict[str, list[float]]] = {}
        for o in outcomes:
            category = by_id[o.prompt].category or "(none)"
            for policy, score in ((o.a, o.score), (o.b, 1 - o.score)):
                categories.setdefault(category, {}).setdefault(policy, []).append(score)
        axes.append(
            AxisResult(
                axis,
                [asdict(r) for r in rate(outcomes, playing, samples, seed)],
                win_matrix(outcomes, policies),
                {
                    k: {p: sum(v) / len(v) for p, v in row.items()}
                    for k, row in sorted(categories.items())
                },
                len(mine),
            )
        )
    decided = sum(c.position_decided for c in comparisons) / max(len(comparisons), 1)
    warning = (
        f"{decided:.0%} of this judge's comparisons are decided by which answer is shown "
        "first: its ratings carry no signal about the policies."
        if decided > NO_SIGNAL
        else ""
    )
    return JudgeResult(name, axes, decided, warning)


def judges_agreement(by_judge: dict[str, list[Match]]) -> list[dict]:
    """For each two judges, how often they pick the same winner on the comparisons both made
    (ties by either left out)."""
    rows = []
    names = list(by_judge)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            theirs = {(c.prompt_id, c.a, c.b): c.preference.p_a for c in by_judge[second]}
            both = [
                (c.preference.p_a, theirs[c.prompt_id, c.a, c.b])
                for c in by_judge[first]
                if (c.prompt_id, c.a, c.b) in theirs
            ]
            decided = [(x, y) for x, y in both if x != 0.5 and y != 0.5]
            same = sum((x > 0.5) == (y > 0.5) for x, y in decided)
            rows.append(
                {
                    "judges": [first, second],
                    "compared": len(decided),
                    "agreeing": same,
                    "rate": same / len(decided) if decided else None,
                }
            )
    return rows


def policy_stats(
    policies: dict[str, str], answers: list[Answer], prompts: list[TournamentPrompt], pm_folder: str
) -> list[PolicyStats]:
    from pipeline.cai.critique import is_refusal

    by_id = {p.id: p for p in prompts}
    out = []
    for name, model in policies.items():
        mine = [a for a in answers if a.policy == name and a.prompt_id in by_id]
        helpful = [a for a in mine if by_id[a.prompt_id].axis == "helpfulness"]
        pm_mean = pm_std = None
        if pm_folder and mine:
            scores = pm_scores(
                pm_folder, [by_id[a.prompt_id].prompt for a in mine], [a.text for a in mine]
            )
            pm_mean = scores.mean().item()
            pm_std = scores.std().item() if len(scores) > 1 else 0.0
        out.append(
            PolicyStats(
                name,
                model,
                sum(len(a.text.split()) for a in mine) / max(len(mine), 1),
                sum(is_refusal(a.text) for a in helpful) / len(helpful) if helpful else None,
                sum(a.finish_reason == "length" for a in mine) / max(len(mine), 1),
                pm_mean,
                pm_std,
                "+".join(sorted({a.engine for a in mine})) or "—",
            )
        )
    return out


def results(
    out: Path,
    policies: dict[str, str],
    prompts: list[TournamentPrompt],
    humans: dict[str, str],
    samples: int,
    seed: int,
    pm_folder: str = "",
    lineage: dict | None = None,
) -> TournamentResult:
    """Every number of the tournament from its logs (people's labels included)."""
    ids = {p.id for p in prompts}
    comparisons = [
        c
        for c in MatchLog(out).read()
        if c.prompt_id in ids and c.a in policies and c.b in policies
    ]
    by_judge: dict[str, list[Match]] = {}
    for c in comparisons:
        by_judge.setdefault(c.judge, []).append(c)
    people = people_comparisons(comparisons, humans)
    if people:
        by_judge[PEOPLE] = people
    names = list(policies)
    judged = [
        judge_result(name, mine, names, prompts, samples, seed) for name, mine in by_judge.items()
    ]
    return TournamentResult(
        names,
        judged,
        policy_stats(policies, AnswerLog(out).read(), prompts, pm_folder),
        judges_agreement(by_judge),
        lineage or {},
    )


def write_results(result: TournamentResult, out: Path) -> Path:
    path = write_atomic(out / EVAL_FILE, json.dumps(asdict(result), ensure_ascii=False, indent=2))
    write_atomic(out / EVAL_MD, format_results(result) + "\n")
    return path


def read_results(out: str | Path) -> TournamentResult:
    raw = json.loads((Path(out) / EVAL_FILE).read_text())
    return TournamentResult(
        raw["policies"],
        [
            JudgeResult(
                j["judge"],
                [AxisResult(**a) for a in j["axes"]],
                j["position_decided"],
                j["warning"],
            )
            for j in raw["judges"]
        ],
        [PolicyStats(**s) for s in raw["stats"]],
        raw["agreement"],
        raw.get("lineage", {}),
    )


def format_results(result: TournamentResult) -> str:
    """Markdown: per judge and axis, the ratings with their intervals and the win matrix;
    then each policy's length, evasiveness and PM score; then the judges' agreement."""
    lines = []
    for j in result.judges:
        lines.append(
            f"### Judge: {j.judge} — {j.position_decided:.0%} of comparisons position-decided"
        )
        if j.warning:
            lines.append(f"\n**Warning:** {j.warning}")
        for axis in j.axes:
            lines += [
                "",
                f"**{axis.axis}** ({axis.comparisons} comparisons, both orders; Elo "
                f"relative to {result.policies[0]}, 95% bootstrap interval over prompts)",
                "",
                "| policy | Elo | 95% interval | comparisons |",
                "|---|---|---|---|",
            ]
            for r in axis.ratings:
                lines.append(
                    f"| {r['name']} | {r['elo']:+.0f} | {r['low']:+.0f} … {r['high']:+.0f} "
                    f"| {r['comparisons']} |"
                )
            lines += [
                "",
                "| win rate (row vs column) | " + " | ".join(result.policies) + " |",
                "|---" * (len(result.policies) + 1) + "|",
            ]
            for name, row in zip(result.policies, axis.matrix):
                lines.append(
                    f"| {name} | "
                    + " | ".join("—" if x is None else f"{x:.0%}" for x in row)
                    + " |"
                )
        lines.append("")
    lines += [
        "| policy | mean words | refusals on helpful prompts | cut at the token limit | "
        "PM score (± sd) | answered by |",
        "|---|---|---|---|---|---|",
    ]
    for s in result.stats:
        refusal = "—" if s.refusal_rate is None else f"{s.refusal_rate:.0%}"
        pm = "—" if s.pm_mean is None else f"{s.pm_mean:+.3f} (± {s.pm_std:.3f})"
        lines.append(
            f"| {s.name} | {s.mean_words:.1f} | {refusal} | {s.limit_rate:.0%} | {pm} "
            f"| {s.answered_by} |"
        )
    for a in result.agreement:
        rate_text = "n/a" if a["rate"] is None else f"{a['rate']:.0%}"
        lines.append(
            f"\nJudges {a['judges'][0]} and {a['judges'][1]} pick the same winner on "
            f"{a['agreeing']} of {a['compared']} comparisons ({rate_text})."
        )
    if result.judges:
        lines += [
            "",
            f"**Power** (judge {result.judges[0].judge}): could this tournament have "
            "seen an effect?",
            "",
        ]
        lines += [f"- {p.text}" for p in power_lines(result)]
    return "\n".join(lines)


def fold_logs(out: Path) -> None:
    """Every process's answers and comparisons into the run's own logs."""
    fold(out / ANSWERS_FILE)
    fold(out / COMPARISONS_FILE)


def run_tournament(
    job,
    out: Path,
    constitution: Constitution | None,
    judges: dict[str, Any],
    cancel,
    progress: Callable[[str, int, int], None],
    humans: dict[str, str] | None = None,
) -> TournamentResult | None:
    """Answer, judge, rate (or resume any of them); writes eval.json and eval.md. Under
    several processes each answers and judges its share, and the first one rates (the
    others return None)."""
    from pipeline.config.fields import settings_of
    from pipeline.config.settings import SamplingConfig

    shard = current_shard()
    sampling = settings_of(job, SamplingConfig)
    prompts = tournament_prompts(job.prompt_sets, job.split, job.limit)
    policies = job.policies
    if shard.main:
        fold_logs(out)  # what a crashed run of several processes left
    barrier(shard, cancel)
    answer_all(
        policies,
        job.base,
        prompts,
        sampling,
        out,
        cancel,
        lambda text: progress(text, 0, 0),
        shard,
        job.engine,
    )
    barrier(shard, cancel)
    judge_all(
        judges, list(policies), prompts, constitution, job.seed, out, cancel, progress, shard=shard
    )
    barrier(shard, cancel)
    if not shard.main:
        return None
    fold_logs(out)
    progress("rating (bootstrap over prompts)", 0, 0)
    lineage = {
        "policies": policies,
        "judges": list(judges),
        "prompts": job.prompt_sets,
        "split": job.split,
        "limit": job.limit,
        "prompt_count": len(prompts),
        "seed": job.seed,
        "sampling": asdict(sampling),
        "bootstrap": job.bootstrap,
        "processes": shard.world,
        "engine": job.engine,
        "constitution": constitution.name if constitution else None,
        "constitution_hash": content_hash(constitution) if constitution else None,
    }
    result = results(
        out, policies, prompts, humans or {}, job.bootstrap, job.seed, job.reward_adapter, lineage
    )
    write_results(result, out)
    return result


def lineage_prompts(lineage: dict) -> list[TournamentPrompt]:
    """The prompts a finished tournament ran on, from its lineage."""
    return tournament_prompts(lineage["prompts"], lineage["split"], lineage["limit"])


def rerated(out: str | Path, humans: dict[str, str]) -> TournamentResult:
    """A finished tournament's ratings again, with people's labels as they are now (its
    policy statistics, PM scores included, are kept as computed)."""
    from dataclasses import replace

    out = Path(out)
    stored = read_results(out)
    lineage = stored.lineage
    prompts = lineage_prompts(lineage)
    fresh = results(
        out,
        lineage["policies"],
        prompts,
        humans,
        lineage["bootstrap"],
        lineage["seed"],
        "",
        lineage,
    )
    return replace(fresh, stats=stored.stats)


def comparisons_with(
    out: str | Path, judge: str, a: str, humans: dict[str, str]
) -> list[tuple[TournamentPrompt, Match, str, str, str]]:
    """Every comparison of policy `a` by a judge: (prompt, comparison as the judge made it,
    a's answer, the other's answer, the other policy), the run's logs read once."""
    out = Path(out)
    lineage = read_results(out).lineage
    prompts = {p.id: p for p in lineage_prompts(lineage)}
    every = MatchLog(out).read()
    mine = (
        people_comparisons(every, humans)
        if judge == PEOPLE
        else [c for c in every if c.judge == judge]
    )
    answers = {x.key: x.text for x in AnswerLog(out).read()}
    found = []
    for c in mine:
        if a in (c.a, c.b) and c.prompt_id in prompts:
            other = c.b if c.a == a else c.a
            found.append(
                (
                    prompts[c.prompt_id],
                    c,
                    answers[f"{a}\t{c.prompt_id}"],
                    answers[f"{other}\t{c.prompt_id}"],
                    other,
                )
            )
    return found


def comparisons_between(
    out: str | Path, judge: str, a: str, b: str, axis: str, humans: dict[str, str]
) -> list[tuple[TournamentPrompt, Match, str, str]]:
    """What lies behind one cell of the win matrix: (prompt, comparison as the judge made it,
    a's answer, b's answer) for every comparison of `a` with `b` on the axis."""
    return [
        (prompt, c, answer_a, answer_b)
        for prompt, c, answer_a, answer_b, other in comparisons_with(out, judge, a, humans)
        if other == b and prompt.axis == axis
    ]
