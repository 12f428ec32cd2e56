"""Config dataclasses are the one source of truth for knobs: CLI flags, YAML job files and
studio forms are all derived from their fields and help texts."""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def add_config_arguments(parser: argparse.ArgumentParser, cls: type,
                         only_given: bool = False) -> None:
    """Add one flag per dataclass field, typed and documented from the field. With
    `only_given`, flags left out do not appear in the parsed namespace at all, so they can
    be layered over a preset and a YAML job file."""
    group = parser.add_argument_group(cls.__name__)
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else None
        help_text = f"{f.metadata.get('help', '')} (default: {default})"
        stored = argparse.SUPPRESS if only_given else default
        if isinstance(default, bool):
            group.add_argument(flag_name(f.name), dest=f.name, default=stored, help=help_text,
                               action=argparse.BooleanOptionalAction)
        else:
            group.add_argument(flag_name(f.name), dest=f.name, type=type(default),
                               default=stored, help=help_text)


def given_fields(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The config fields set on the command line (see `only_given`)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}


def config_from_args(cls: type[T], args: argparse.Namespace) -> T:
    values: dict[str, Any] = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}
    return cls(**values)
