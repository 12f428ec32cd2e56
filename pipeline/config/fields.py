"""Config dataclasses are the one source of truth for knobs: CLI flags, YAML job files and
studio forms are all derived from their fields and help texts."""

from __future__ import annotations

import argparse
import dataclasses
import math
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from pipeline.core.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def finite_float(text: str) -> float:
    """argparse type of every float flag: a number, and not NaN or infinite."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number (got {text})")
    return value


def flag_type(default: Any) -> Callable[[str], Any]:
    return finite_float if isinstance(default, float) else type(default)


def help_text(text: str) -> str:
    """`text` as an argparse help string, which argparse %-formats: "95%" must not break --help."""
    return text.replace("%", "%%")


def add_config_arguments(
    parser: argparse.ArgumentParser, cls: type, only_given: bool = False
) -> None:
    """Add one flag per dataclass field, typed and documented from the field. With
    `only_given`, flags left out do not appear in the parsed namespace at all, so they can
    be layered over a preset and a YAML job file."""
    group = parser.add_argument_group(cls.__name__)
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else None
        about = help_text(f"{f.metadata.get('help', '')} (default: {default})")
        stored = argparse.SUPPRESS if only_given else default
        if isinstance(default, bool):
            group.add_argument(
                flag_name(f.name),
                dest=f.name,
                default=stored,
                help=about,
                action=argparse.BooleanOptionalAction,
            )
        elif f.metadata.get("join"):  # repeatable; the values are joined by commas
            group.add_argument(
                flag_name(f.name),
                dest=f.name,
                action="append",
                help=about,
                default=argparse.SUPPRESS if only_given else None,
            )
        else:
            group.add_argument(
                flag_name(f.name), dest=f.name, type=flag_type(default), default=stored, help=about
            )


def given_fields(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The config fields set on the command line (see `only_given`)."""
    return {
        f.name: ",".join(value) if isinstance(value, list) else value
        for f in dataclasses.fields(cls)
        if hasattr(args, f.name)
        for value in [getattr(args, f.name)]
    }


def config_from_args(cls: type[T], args: argparse.Namespace) -> T:
    values: dict[str, Any] = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}
    return cls(**values)


def non_finite_fields(config: Any) -> list[str]:
    """A problem for each float field of a config dataclass that is NaN or infinite: no
    range check can catch those (every comparison with NaN is false)."""
    return [
        f"{f.name} must be a finite number (got {getattr(config, f.name)})"
        for f in dataclasses.fields(config)
        if isinstance(getattr(config, f.name), float) and not math.isfinite(getattr(config, f.name))
    ]


def check_settings(config: Any, problems: list[str]) -> None:
    """Raise ConfigError naming the settings and every problem (non-finite numbers first)."""
    problems = non_finite_fields(config) + problems
    if problems:
        raise ConfigError(f"{type(config).__name__}: " + "; ".join(problems) + ".")


def settings_of(job: Any, cls: type[T]) -> T:
    """The `cls` settings (e.g. SamplingConfig) held in a job dataclass that extends it."""
    return cls(**{f.name: getattr(job, f.name) for f in dataclasses.fields(cls)})
