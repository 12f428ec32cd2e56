"""Steering by activation addition: a direction per layer, read from contrasts in the model's
own hidden states, added to the residual stream while it writes an answer.

A direction comes from (a) a constitution — each enabled principle's two instructions (one
that follows it, one that asks for the opposite, `values.directions.instructions`) given as
the system prompt of the same user prompts; the state at the last prompt token (where the
answer is decided) under "follow" minus under "oppose", averaged with the principle weights
— or (b) labelled pairs: the answer-mean state of the preferred answer minus the
dispreferred one. Either way its sign is fixed so the preferred side projects higher.

Methods: `mean` (the weighted mean difference) or `pca` (the first principal direction of
the differences, in the same units: scaled by their mean projection on it). So coefficient
1 moves a state by one average (preferred − dispreferred) difference; 0 is off.

Layers are hidden-state indices as in the values report: layer i is the output of decoder
block i − 1 (1…L), and steering layer i adds to exactly that state.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterator

import torch

from pipeline.core.errors import ConfigError, ModelError
from pipeline.core.files import read_tensors, save_tensors
from pipeline.model.hidden import added_at_layers, decoder_layers
from pipeline.model.loading import ADAPTER_CONFIG, LoadedModel, resolve_source

METHODS = ("mean", "pca")
MIN_CONTRASTS = {"mean": 2, "pca": 3}  # fewer PCA differences than 3 only span themselves
POSITIONS = ("answer", "all")
COEFFICIENT_LIMIT = 8.0  # the slider's range, ±
DIRECTION_DIR, VECTORS_FILE, LINEAGE_FILE = "direction", "direction.safetensors", "direction.json"


# --- the maths: pure, on tensors ----------------------------------------------------------------


def direction_from_differences(
    diffs: torch.Tensor, weights: torch.Tensor, method: str = "mean"
) -> torch.Tensor:
    """[layers, hidden] from differences [n, layers, hidden] (preferred − dispreferred) with
    weights [n]: their weighted mean, or their first principal direction (uncentred, so it
    is the axis the differences share) signed and scaled by their weighted mean projection."""
    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)} (got {method!r}).")
    w = weights.float() / weights.float().sum()
    mean = (w[:, None, None] * diffs).sum(0)
    if method == "mean":
        return mean
    out = []
    for layer in range(diffs.shape[1]):
        x = diffs[:, layer] * w.sqrt()[:, None]
        axis = torch.linalg.svd(x, full_matrices=False).Vh[0]
        projection = float(mean[layer] @ axis)  # weighted mean projection of the differences
        out.append(axis * projection)  # sign and size in one: the preferred side projects higher
    return torch.stack(out)


def degeneration(text: str) -> str | None:
    """Why an answer has broken down, or None: empty, or looping (most of its 3-word
    sequences are repeats), or mostly symbols."""
    words = text.split()
    if not words:
        return "empty"
    grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    if len(grams) >= 6 and len(set(grams)) / len(grams) < 0.5:
        share = 1 - len(set(grams)) / len(grams)
        return f"repeats itself ({share:.0%} of its 3-word runs are repeats)"
    letters = sum(ch.isalpha() for ch in text)
    if len(text) >= 12 and letters / len(text.replace(" ", "")) < 0.5:
        return "mostly symbols"
    return None


def sweep_coefficients(coefficient: float) -> list[float]:
    """Five coefficients from −c to +c around off (c = the one chosen, or the slider's end)."""
    span = abs(coefficient) or COEFFICIENT_LIMIT
    return [-span, -span / 2, 0.0, span / 2, span]


# --- the artifact -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerReading:
    """How well one layer's direction picks the preferred answer of labelled pairs."""

    layer: int
    accuracy: float
    low: float
    high: float
    controlled: float | None  # length-controlled accuracy (None: one length direction only)


@dataclass(frozen=True)
class Direction:
    vectors: torch.Tensor  # [layers, hidden], fp32
    layers: tuple[int, ...]  # hidden-state indices (1…L)
    method: str
    source: str  # "constitution NAME" or "pairs REF"
    source_hash: str  # the constitution's content hash or the pairs' data hash
    model: str
    hidden_size: int
    model_layers: int
    contrasts: int  # differences averaged
    weights: dict[str, float] = field(default_factory=dict)  # principle id → weight
    reading: tuple[LayerReading, ...] = ()
    read_on: str = ""  # the pairs the reading used
    in_sample: bool = False  # read on the very pairs it was extracted from

    @cached_property
    def digest(self) -> str:
        return hashlib.sha256(self.vectors.contiguous().numpy().tobytes()).hexdigest()[:16]

    def vector(self, layer: int) -> torch.Tensor:
        if layer not in self.layers:
            raise ConfigError(
                f"This direction has no layer {layer}; it has layers "
                f"{', '.join(map(str, self.layers))}."
            )
        return self.vectors[self.layers.index(layer)]

    @property
    def best_layer(self) -> int:
        """The layer that reads best on labelled pairs, else the middle one."""
        if self.reading:
            return max(self.reading, key=lambda r: (r.accuracy, -r.layer)).layer
        return self.middle_layer

    @property
    def middle_layer(self) -> int:
        """Where steering goes when no layer is named (middle layers steer best)."""
        return self.layers[len(self.layers) // 2]

    @property
    def summary(self) -> str:
        read = (
            f"; best layer {self.best_layer} reads "
            f"{next(r.accuracy for r in self.reading if r.layer == self.best_layer):.0%} on "
            f"{self.read_on}{' (in-sample)' if self.in_sample else ''}"
            if self.reading
            else ""
        )
        return (
            f"{self.method} direction from {self.source} ({self.contrasts} contrasts, "
            f"{self.model}, layers {self.layers[0]}–{self.layers[-1]}){read}"
        )


def check_layers(layers: list[int] | tuple[int, ...], model_layers: int) -> None:
    bad = [i for i in layers if not 1 <= i <= model_layers]
    if bad or not layers:
        raise ConfigError(
            f"Steering layers are 1 to {model_layers} (the output of each decoder "
            f"block); got {', '.join(map(str, bad)) or 'none'}."
        )


def save_direction(direction: Direction, folder: str | Path) -> Path:
    """The vectors as safetensors + the lineage as JSON, replaced whole (crash-safe)."""
    lineage = {k: v for k, v in asdict(direction).items() if k != "vectors"}
    return save_tensors(folder, {"vectors": direction.vectors}, VECTORS_FILE, lineage, LINEAGE_FILE)


def direction_folder(folder: str | Path) -> Path:
    """A direction folder, or the run folder of `steer extract` that holds one."""
    folder = Path(folder)
    inner = folder / DIRECTION_DIR
    return inner if (inner / LINEAGE_FILE).exists() else folder


def read_direction(folder: str | Path) -> Direction:
    tensors, lineage = read_tensors(
        direction_folder(folder),
        VECTORS_FILE,
        LINEAGE_FILE,
        "a steering direction (written by `steer extract`)",
    )
    return Direction(
        vectors=tensors["vectors"],
        **{
            **lineage,
            "layers": tuple(lineage["layers"]),
            "reading": tuple(LayerReading(**r) for r in lineage["reading"]),
        },
    )


def check_direction_model(direction: Direction, loaded: LoadedModel, where: str = "") -> None:
    """Refuse (by name) a direction extracted from another model's states."""
    ours = (loaded.model.config.hidden_size, len(decoder_layers(loaded.model)))
    if (direction.hidden_size, direction.model_layers) != ours or not same_model(
        direction.model, base_name(loaded)
    ):
        raise ModelError(
            f"The direction {where or direction.source} was extracted from "
            f"{direction.model} (hidden size {direction.hidden_size}, "
            f"{direction.model_layers} layers), not from {base_name(loaded)} (hidden "
            f"size {ours[0]}, {ours[1]} layers); extract one for this model."
        )


def same_model(a: str, b: str) -> bool:
    """Two names of one model (an alias and its folder count as the same)."""
    if a == b:
        return True
    try:
        return resolve_source(a) == resolve_source(b)
    except ModelError:
        return False


def base_name(loaded: LoadedModel) -> str:
    """The model a direction for `loaded` is read from: an adapter's base (an adapter's
    states are its base's plus a small change, and steering is compared against it), else
    the model itself."""
    config = Path(loaded.source) / ADAPTER_CONFIG
    if config.exists():
        return json.loads(config.read_text()).get("base_model_name_or_path") or loaded.name
    return loaded.name


def load_direction(folder: str | Path, loaded: LoadedModel) -> Direction:
    direction = read_direction(folder)
    check_direction_model(direction, loaded, str(folder))
    return direction


def format_direction(direction: Direction) -> str:
    lines = [direction.summary, "", "layer  norm    accuracy (95% interval)  length-controlled"]
    readings = {r.layer: r for r in direction.reading}
    for n, layer in enumerate(direction.layers):
        r = readings.get(layer)
        read = (
            f"{r.accuracy:6.0%} ({r.low:.0%}–{r.high:.0%})        "
            f"{'n/a' if r.controlled is None else f'{r.controlled:.0%}'}"
            if r
            else ""
        )
        lines.append(f"{layer:5d}  {float(direction.vectors[n].norm()):6.2f}  {read}")
    if direction.in_sample:
        lines.append("(read on the pairs it was extracted from: in-sample, optimistic)")
    return "\n".join(lines)


# --- applying it --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Steering:
    """`coefficient × direction` added at `layers` while a model writes: at the positions
    that produce answer tokens (`answer`: the last prompt token, then each new token) or at
    every position, the prompt's included (`all`)."""

    direction: Direction
    coefficient: float
    layers: tuple[int, ...]
    positions: str = "answer"

    def __post_init__(self) -> None:
        if not math.isfinite(self.coefficient):
            raise ConfigError(
                f"The steering coefficient must be a finite number (got {self.coefficient})."
            )
        if self.positions not in POSITIONS:
            raise ConfigError(
                f"positions must be one of {', '.join(POSITIONS)} (got {self.positions!r})."
            )
        check_layers(self.layers, self.direction.model_layers)
        for layer in self.layers:
            self.direction.vector(layer)

    @property
    def key(self) -> tuple:
        """What makes two steerings the same (a cached prefix is reused only under it)."""
        return (self.direction.digest, self.coefficient, self.layers, self.positions)

    @property
    def text(self) -> str:
        return (
            f"steered {self.coefficient:+g} × {self.direction.method} direction from "
            f"{self.direction.source} at layer{'s' if len(self.layers) > 1 else ''} "
            f"{', '.join(map(str, self.layers))}"
        )

    @contextmanager
    def applied(self, model, prefix: bool = False) -> Iterator[None]:
        """Hooks on for one forward pass; `prefix`: the pass over a shared prompt prefix,
        which answer-only steering leaves alone."""
        if self.coefficient == 0 or (prefix and self.positions == "answer"):
            yield
            return
        vectors = {layer - 1: self.direction.vector(layer) for layer in self.layers}
        with added_at_layers(
            model, vectors, self.coefficient, last_only=self.positions == "answer"
        ):
            yield


def parse_layers(text: str) -> list[int]:
    """'14, 15' → [14, 15]; anything but numbers is refused by name."""
    parts = [p for p in re.split(r"[,\s]+", text or "") if p]
    if not all(p.isdigit() for p in parts):
        raise ConfigError(f"Layers are comma-separated numbers (got {text!r}).")
    return [int(p) for p in parts]


@dataclass(frozen=True)
class SweepAnswer:
    coefficient: float
    text: str
    finish_reason: str
    problem: str | None  # why it degenerated, if it did


def sweep(
    backend,
    conversation: list[dict[str, str]],
    direction: Direction,
    layers: tuple[int, ...],
    coefficients: list[float],
    config,
    positions: str = "answer",
) -> list[SweepAnswer]:
    """The same conversation answered at each coefficient, same seed — where the text
    changes and where it breaks down."""
    out = []
    for c in coefficients:
        steering = Steering(direction, c, layers, positions) if c else None
        g = backend.generate([conversation], config, seeds=[config.seed], steering=steering)[0]
        out.append(SweepAnswer(c, g.text, g.finish_reason, degeneration(g.text)))
    return out


class SteeredBackend:
    """A generation backend whose every answer is steered — for code that takes a backend
    (chains, pairs, evaluation) and knows nothing of steering."""

    def __init__(self, backend, steering: Steering):
        self.backend, self.steering = backend, steering
        self.name = f"{backend.name} ({steering.text})"
        self.context_length = backend.context_length
        self.loaded = backend.loaded

    def count_tokens(self, conversation) -> int:
        return self.backend.count_tokens(conversation)

    def truncate(self, text: str, max_tokens: int) -> str:
        return self.backend.truncate(text, max_tokens)

    def generate(self, conversations, config, seeds=None, steering: Steering | None = None):
        return self.backend.generate(conversations, config, seeds, steering or self.steering)

    def stream(self, conversation, config, finished=None, steering: Steering | None = None):
        return self.backend.stream(conversation, config, finished, steering or self.steering)

    def keep_start(self, start) -> None:
        self.backend.keep_start(start)
