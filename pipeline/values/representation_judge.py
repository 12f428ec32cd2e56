"""The representation judge: P(A) = σ((h_A − h_B)·w / τ), read from the model's hidden states
instead of asked as a question — one forward pass per answer, shared by every principle, and
position-free by construction (swapping the answers negates h_A − h_B).

w is the constitution's direction (per principle; no labels needed) or a probe fitted on
human labels and saved as an artifact (`values fit`). Its records are ordinary preference
records: both orders carry the same label, and the option mass is 1 (nothing was asked).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from pipeline.cai.feedback import combine, sigmoid
from pipeline.config.settings import FeedbackConfig
from pipeline.core.errors import ModelError
from pipeline.core.files import read_tensors, save_tensors
from pipeline.data.constitution import Constitution, content_hash
from pipeline.data.preferences import Pair, Preference, PrincipleLabel
from pipeline.model.hidden import decoder_layers, hidden_states
from pipeline.model.loading import LoadedModel
from pipeline.values import probes
from pipeline.values.directions import constitution_direction
from pipeline.values.features import LabelledPairs, pair_features
from pipeline.values.report import Accuracy, accuracy

PROBE_FILE, LINEAGE_FILE = "probe.safetensors", "probe.json"
FITTED = "fitted probe"


def data_hash(pairs: tuple[Pair, ...] | list[Pair]) -> str:
    return hashlib.sha256("\n".join(sorted(p.id for p in pairs)).encode()).hexdigest()


@dataclass(frozen=True)
class Probe:
    """A direction at one layer, with its temperature and where it came from."""

    direction: torch.Tensor
    layer: int
    pooling: str
    tau: float
    model: str
    hidden_size: int
    layers: int  # the model's decoder layers
    method: str
    data_hash: str
    pair_ids: tuple[str, ...]  # the pairs it was fitted on (labelling them is flagged)
    cv_accuracy: float
    cv_interval: tuple[float, float] | None = None  # its 95% bootstrap interval
    cv_controlled: float | None = None  # length-controlled (None: undefined on these pairs)
    always_longer: float | None = None  # what length alone scores on the same pairs

    @property
    def quality(self) -> str:
        return probe_quality(vars(self))


def probe_quality(lineage: dict) -> str:
    """A probe's cross-validated accuracy as a reader needs it — interval, length control,
    the length baseline — from the probe or its saved lineage (probes saved before these
    were recorded say so)."""
    interval = lineage.get("cv_interval")
    if not interval:
        return f"{lineage['cv_accuracy']:.0%} (interval and length control not recorded)"
    low, high = interval
    return Accuracy(
        lineage["cv_accuracy"],
        low,
        high,
        lineage.get("cv_controlled"),
        longer=lineage.get("always_longer"),
    ).text


def calibrated_tau(scores: list[float], y: list[int]) -> float:
    """The temperature whose σ(s/τ) best predicts the held-out labels (log loss, grid)."""
    spread = sorted(abs(s) for s in scores if s) or [1.0]
    grid = [spread[len(spread) // 2] * 2 ** (k / 2) for k in range(-8, 9)]

    def loss(tau: float) -> float:
        total = 0.0
        for s, label in zip(scores, y):
            p = sigmoid(s / tau)
            total -= math.log(max(p if label else 1 - p, 1e-12))
        return total

    return min(grid, key=loss)


def fit_probe(
    loaded: LoadedModel,
    data: LabelledPairs,
    pooling: str = "answer_mean",
    method: str = "logistic",
    layer: int | None = None,
    folds: int = 5,
    seed: int = 0,
) -> Probe:
    """A probe on human-labelled pairs, at `layer` or at the layer with the best
    cross-validated accuracy; τ calibrated on the held-out scores."""
    features = pair_features(loaded, data.pairs, pooling, None if layer is None else [layer])
    fits = [
        probes.cross_validate(features.d[:, n], data.y, method, folds, seed)
        for n in range(len(features.layers))
    ]
    best = max(range(len(fits)), key=lambda n: (fits[n].accuracy, -n))
    cv = accuracy(fits[best].correct, data.chose_longer, seed)
    length = data.length
    return Probe(
        fits[best].direction,
        features.layers[best],
        pooling,
        calibrated_tau(list(fits[best].scores), data.y.tolist()),
        loaded.name,
        loaded.model.config.hidden_size,
        len(decoder_layers(loaded.model)),
        method,
        data_hash(data.pairs),
        tuple(p.id for p in data.pairs),
        cv.value,
        (cv.low, cv.high),
        cv.controlled,
        length.longer if length else None,
    )


def read_lineage(folder: str | Path) -> dict:
    """A saved probe's lineage (where it came from and how well it agreed with people),
    without loading its direction."""
    return json.loads((Path(folder) / LINEAGE_FILE).read_text())


def save_probe(probe: Probe, folder: str | Path) -> Path:
    """The probe as safetensors + its lineage in JSON, replaced whole (crash-safe)."""
    lineage = {k: v for k, v in asdict(probe).items() if k != "direction"}
    return save_tensors(folder, {"direction": probe.direction}, PROBE_FILE, lineage, LINEAGE_FILE)


def load_probe(folder: str | Path, loaded: LoadedModel) -> Probe:
    """A saved probe, refused (by name) when it was fitted on another model's states."""
    tensors, lineage = read_tensors(
        folder, PROBE_FILE, LINEAGE_FILE, "a probe folder (written by `values fit`)"
    )
    interval = lineage.get("cv_interval")
    probe = Probe(
        direction=tensors["direction"],
        **{
            **lineage,
            "pair_ids": tuple(lineage["pair_ids"]),
            "cv_interval": tuple(interval) if interval else None,
        },
    )
    ours = (loaded.model.config.hidden_size, len(decoder_layers(loaded.model)))
    if (probe.hidden_size, probe.layers) != ours or probe.model != loaded.name:
        raise ModelError(
            f"The probe {folder} was fitted on {probe.model} (hidden size "
            f"{probe.hidden_size}, {probe.layers} layers), not on {loaded.name} "
            f"(hidden size {ours[0]}, {ours[1]} layers); fit one for this model."
        )
    return probe


def probe_scores(
    loaded: LoadedModel, probe: Probe, prompts: list[str], answers: list[str], batch_size: int = 8
) -> torch.Tensor:
    """Each answer's score under the probe, h·w/τ: a reward on the judge's own scale — two
    answers' difference is the log-odds of the P(A) that `RepresentationJudge.label` gives."""
    states = hidden_states(
        loaded.model, loaded.tokenizer, prompts, answers, [probe.layer], probe.pooling, batch_size
    )
    return states[:, 0] @ probe.direction.float() / probe.tau


class RepresentationJudge:
    """Labels pairs like `feedback.Labeller` (same `label` interface and records) from hidden
    states: with a fitted probe, one label per pair; else one per enabled principle, from
    the constitution's per-principle directions at `layer`."""

    def __init__(
        self,
        loaded: LoadedModel,
        probe: Probe | None = None,
        layer: int | None = None,
        pooling: str = "answer_mean",
        batch_size: int = 8,
    ):
        self.loaded, self.probe, self.batch_size = loaded, probe, batch_size
        self.layer = (
            probe.layer
            if probe
            else (layer if layer is not None else (len(decoder_layers(loaded.model)) + 1) // 2)
        )
        self.pooling = probe.pooling if probe else pooling
        self.config = FeedbackConfig(ensemble=0, batch_size=batch_size * 2)
        self._directions: dict[str, dict[str, tuple[torch.Tensor, float]]] = {}

    @property
    def name(self) -> str:
        return f"representation:{self.loaded.name}@layer{self.layer}"

    def directions(self, constitution: Constitution) -> dict[str, tuple[torch.Tensor, float]]:
        """principle id (or FITTED) → (unit direction, τ), computed once per constitution."""
        if self.probe is not None:
            w = self.probe.direction
            return {FITTED: (w / w.norm(), self.probe.tau / float(w.norm()))}
        key = content_hash(constitution)
        if key not in self._directions:
            found = constitution_direction(self.loaded, constitution, self.pooling, [self.layer])
            self._directions[key] = {
                pid: (v[0] / v[0].norm().clamp_min(1e-12), float(v[0].norm().clamp_min(1e-6)))
                for pid, v in found.principles.items()
            }
        return self._directions[key]

    def label(self, constitution: Constitution, pairs: list[Pair]) -> list[Preference]:
        todo = [p for p in pairs if not p.identical]
        out: dict[str, Preference] = {}
        if todo:
            read = pair_features(self.loaded, todo, self.pooling, [self.layer], self.batch_size)
            d = read.d[:, 0]
            trained = set(self.probe.pair_ids) if self.probe else set()
            directions = self.directions(constitution)
            for pair, diff in zip(todo, d):
                labels = []
                for pid, (w, tau) in directions.items():
                    p = sigmoid(float(diff @ w) / tau)
                    labels.append(PrincipleLabel(pid, p, p, 1.0, 1.0))
                flags = ("probe-training-pair",) if pair.id in trained else ()
                out[pair.id] = combine(pair, labels, self.name, constitution, False, flags)
        return [
            out.get(p.id)
            or Preference(p, 0.5, (), self.name, content_hash(constitution), False, ("identical",))
            for p in pairs
        ]
