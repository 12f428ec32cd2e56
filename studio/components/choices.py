"""Choices shared by the tabs: constitutions (names as being edited, and saved versions),
models (the base, and every adapter a finished job trained), run folders (by name) and the
engine that generates."""

from __future__ import annotations

import gradio as gr

from pipeline.config.settings import DEFAULT_MODEL, GENERATION_ENGINES
from pipeline.data.constitution import Constitution
from pipeline.data.store import JobRecord, Store, parse_ref
from pipeline.runner.run_list import by_run, run_name
from pipeline.train.runtime import ADAPTER_DIR
from pipeline.values.representation_judge import LINEAGE_FILE

POLICY_STAGES = ("sft", "dpo", "ppo", "rahf")


def constitution_choices(store: Store) -> list[str]:
    """Constitutions as being edited (by name), then every saved version (name@N)."""
    return store.names() + [f"{r.name}@{r.version}" for r in store.all_versions()]


def resolve_choice(store: Store, choice: str) -> Constitution:
    """`name@N` is that saved version; a bare name is the constitution as being edited."""
    name, version = parse_ref(choice)
    return store.working(name) if version is None else store.version(name, version).constitution


def default_choice(store: Store) -> str | None:
    return store.default_name()


def adapter_choices(store: Store) -> list[str]:
    """Policy adapters of finished SFT, DPO, PPO and RAHF jobs, newest first."""
    return store.trained(POLICY_STAGES, ADAPTER_DIR)


def probe_choices(store: Store) -> list[str]:
    """Every probe fitted from human labels (`values fit`), newest first."""
    return store.trained(("values-fit",), "probe", LINEAGE_FILE)


def offer_models(store: Store, dropdown: gr.Dropdown, default: str = DEFAULT_MODEL) -> None:
    """Keep a model picker's choices current: the base model and every trained adapter, so
    before and after can be compared in any tab."""

    def choices():
        return gr.update(
            choices=list(dict.fromkeys([default, DEFAULT_MODEL, *adapter_choices(store)]))
        )

    dropdown.focus(choices, None, dropdown)


def folder_choices(
    records: list[JobRecord], kinds: tuple[str, ...], finished: bool = True
) -> list[tuple[str, str]]:
    """Run folders as a picker offers them, newest first: (the run's readable name and job,
    its folder) — a person picks 'AI labels · harmless-helpful · 2026-12-03 16:40 · job 12',
    the job reads the folder. `finished`: succeeded runs only."""
    return [
        (f"{run_name(job)} · job {job.id}", job.out_dir)
        for job, _ in by_run(records)
        if job.kind in kinds and (not finished or job.status == "succeeded")
    ]


def engine_choice(tab: str, speed: str) -> gr.Radio:
    """The engine a tab generates on (`#TAB-engine`, auto by default), with what int8 costs;
    `speed` says what it gains there."""
    return gr.Radio(
        list(GENERATION_ENGINES),
        value="auto",
        label="engine",
        info=f"int8 (CTranslate2): {speed}, other answers than fp32's, a seed does not "
        "reproduce, no steering; auto: int8 at temperature 0 without steering, fp32 otherwise",
        elem_id=f"{tab}-engine",
    )
