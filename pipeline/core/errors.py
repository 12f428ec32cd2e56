"""Errors a user can act on. The studio shows their message as it is, never a traceback."""

from __future__ import annotations

from dataclasses import dataclass


class StudioError(Exception):
    """Base of every error whose message is meant for the user."""


@dataclass(frozen=True)
class Issue:
    """One problem found while validating a file: where it is and what is wrong.

    `path` addresses the value, e.g. ("principles", 2, "weight"), so the studio can put
    the message next to the field it concerns.
    """

    path: tuple[str | int, ...]
    message: str
    line: int | None = None

    @property
    def where(self) -> str:
        text = ""
        for part in self.path:
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
        return text

    def __str__(self) -> str:
        line = f"line {self.line}: " if self.line else ""
        at = f"{self.where}: " if self.path else ""
        return f"{line}{at}{self.message}"


class ConstitutionError(StudioError):
    """A constitution file or edit is invalid; `issues` lists every problem found."""

    def __init__(self, message: str, issues: tuple[Issue, ...] = ()):
        self.issues = tuple(issues)
        if issues:
            message = message + "\n" + "\n".join(f"  - {issue}" for issue in issues)
        super().__init__(message)


class ModelError(StudioError):
    """A model could not be found or loaded."""


class DatasetError(StudioError):
    """A prompt set or dataset is missing or malformed."""


class JobError(StudioError):
    """A background job could not be started, cancelled or found."""


class ConfigError(JobError):
    """A command's settings are invalid: the message names each field and what it allows;
    `problems` lists them one by one, each led by its field's name."""

    def __init__(self, message: str, problems: tuple[str, ...] = ()):
        super().__init__(message)
        self.problems = tuple(problems)


class StoreError(StudioError):
    """The workspace database refused an operation."""
