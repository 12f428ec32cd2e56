"""Steering directions extracted from a model's own hidden states — from a constitution's
principles (following against opposing instructions) or from labelled pairs — and read on
labelled pairs layer by layer. Above the steering hook (`pipeline.model.steering`), which
generation uses and which must not depend on these readers of hidden states."""

from __future__ import annotations

from dataclasses import replace

import torch

from pipeline.core.errors import ConstitutionError, DatasetError
from pipeline.data.constitution import Constitution, content_hash
from pipeline.model.generation import chat
from pipeline.model.hidden import decoder_layers, prompt_states
from pipeline.model.loading import LoadedModel
from pipeline.model.steering import (
    MIN_CONTRASTS,
    Direction,
    LayerReading,
    base_name,
    check_layers,
    direction_from_differences,
)
from pipeline.values.directions import instructions
from pipeline.values.features import pair_features
from pipeline.values.report import accuracy
from pipeline.values.representation_judge import data_hash


def model_layers(loaded: LoadedModel) -> int:
    return len(decoder_layers(loaded.model))


def constitution_contrasts(
    loaded: LoadedModel,
    constitution: Constitution,
    prompts: list[str],
    layers: list[int],
    batch_size: int = 16,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """(differences [principles × prompts, layers, hidden], their weights, principle
    weights): each prompt's last-token state under the principle's following instruction
    minus under its opposing one."""
    principles = list(constitution.enabled_principles)
    if not principles:
        raise ConstitutionError(
            f"Every principle of '{constitution.name}' is disabled; enable "
            "at least one to extract its direction."
        )
    if not prompts:
        raise DatasetError("No prompts to read the principles on.")
    conversations = []
    for p in principles:
        follow, oppose = instructions(p)
        conversations += [chat(q, follow) for q in prompts] + [chat(q, oppose) for q in prompts]
    states = prompt_states(loaded.model, loaded.tokenizer, conversations, layers, batch_size)
    k = len(prompts)
    diffs, weights = [], []
    for n, p in enumerate(principles):
        block = states[2 * k * n : 2 * k * (n + 1)]
        diffs.append(block[:k] - block[k:])
        weights += [p.weight / k] * k
    return torch.cat(diffs), torch.tensor(weights), {p.id: p.weight for p in principles}


def pair_contrasts(
    loaded: LoadedModel, data, layers: list[int], batch_size: int = 8
) -> torch.Tensor:
    """[pairs, layers, hidden]: the preferred answer's mean state minus the other's."""
    features = pair_features(loaded, data.pairs, "answer_mean", layers, batch_size)
    return features.d * (2 * data.y.float() - 1)[:, None, None]


def too_few_contrasts(n: int, method: str, what: str) -> DatasetError:
    return DatasetError(
        f"The {method} method needs at least {MIN_CONTRASTS[method]} {what}; got {n}."
    )


def extract_from_constitution(
    loaded: LoadedModel,
    constitution: Constitution,
    prompts: list[str],
    layers: list[int] | None = None,
    method: str = "mean",
) -> Direction:
    layers = layers or list(range(1, model_layers(loaded) + 1))
    check_layers(layers, model_layers(loaded))
    diffs, weights, by_principle = constitution_contrasts(loaded, constitution, prompts, layers)
    if len(diffs) < MIN_CONTRASTS[method]:
        raise too_few_contrasts(len(diffs), method, "(principle, prompt) contrasts")
    return Direction(
        direction_from_differences(diffs, weights, method),
        tuple(layers),
        method,
        f"constitution {constitution.name}",
        content_hash(constitution),
        base_name(loaded),
        loaded.model.config.hidden_size,
        model_layers(loaded),
        len(diffs),
        by_principle,
    )


def extract_from_pairs(
    loaded: LoadedModel, data, ref: str, layers: list[int] | None = None, method: str = "mean"
) -> Direction:
    layers = layers or list(range(1, model_layers(loaded) + 1))
    check_layers(layers, model_layers(loaded))
    if len(data.pairs) < MIN_CONTRASTS[method]:
        raise too_few_contrasts(len(data.pairs), method, "labelled pairs (ties left out)")
    diffs = pair_contrasts(loaded, data, layers)
    return Direction(
        direction_from_differences(diffs, torch.ones(len(diffs)), method),
        tuple(layers),
        method,
        f"pairs {ref}",
        data_hash(data.pairs),
        base_name(loaded),
        loaded.model.config.hidden_size,
        model_layers(loaded),
        len(diffs),
    )


def layer_readings(loaded: LoadedModel, direction: Direction, data) -> tuple[LayerReading, ...]:
    """Per layer: how often projecting the two answers on the direction picks the preferred
    one, with its interval and length control (the evidence to pick layers from)."""
    diffs = pair_contrasts(loaded, data, list(direction.layers))  # preferred − other
    longer = data.chose_longer
    readings = []
    for n, layer in enumerate(direction.layers):
        correct = [bool(x > 0) for x in diffs[:, n] @ direction.vectors[n]]
        acc = accuracy(correct, longer)
        readings.append(LayerReading(layer, acc.value, acc.low, acc.high, acc.controlled))
    return tuple(readings)


def with_reading(loaded: LoadedModel, direction: Direction, data, ref: str) -> Direction:
    return replace(
        direction,
        reading=layer_readings(loaded, direction, data),
        read_on=ref,
        in_sample=direction.source_hash == data_hash(data.pairs),
    )
