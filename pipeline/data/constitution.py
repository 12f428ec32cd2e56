"""Constitutions: the schema, strict line-aware validation, YAML I/O, hashing, templates, diffs.

A constitution is a list of principles, each with the three texts the pipeline needs
(critique request, revision request, preference question), plus few-shot example chains.
Everything here is pure: no model, no database.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from pipeline.core.errors import ConstitutionError, Issue
from pipeline.core.files import SAFE_DUMPER, YamlRefused, read_yaml, text_problem

MAX_FILE_BYTES = 1024 * 1024  # a constitution file, and a saved constitution's canonical YAML
MAX_PRINCIPLES = 1000  # the CAI paper's has 16; more is a mistake or an attack
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Principle:
    id: str
    title: str
    critique_request: str
    revision_request: str
    preference_question: str
    weight: float = 1.0
    tags: tuple[str, ...] = ()
    enabled: bool = True


@dataclass(frozen=True)
class FewShotRound:
    critique_request: str
    critique: str
    revision_request: str
    revision: str
    principle_id: str = ""


@dataclass(frozen=True)
class FewShotChain:
    """A worked critique–revision example, prepended to every chain the model writes."""

    prompt: str
    answer: str
    rounds: tuple[FewShotRound, ...]


@dataclass(frozen=True)
class Constitution:
    name: str
    principles: tuple[Principle, ...]
    version: int = 1
    description: str = ""
    few_shot: tuple[FewShotChain, ...] = ()

    @property
    def enabled_principles(self) -> tuple[Principle, ...]:
        return tuple(p for p in self.principles if p.enabled)

    def principle(self, principle_id: str) -> Principle:
        for p in self.principles:
            if p.id == principle_id:
                return p
        raise ConstitutionError(f"'{self.name}' has no principle with id '{principle_id}'.")


# --- schema -----------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    """Error message when `value` is not non-empty text, else None."""
    if not isinstance(value, str):
        return f"must be text, not {_kind(value)}"
    if not value.strip():
        return "must not be empty"
    return text_problem(value)


def _optional_text(value: Any) -> str | None:
    return text_problem(value) if isinstance(value, str) else f"must be text, not {_kind(value)}"


NAME_PUNCTUATION = "-_. "


def _name(value: Any) -> str | None:
    """A constitution's name is how it is referenced (NAME, NAME@VERSION): '@' would break
    that, and invisible or look-alike characters (zero-width, direction marks, full-width
    letters) would store a second constitution that reads the same as the first."""
    problem = _text(value)
    if problem:
        return problem
    name = value.strip()
    bad = next((ch for ch in name if not (ch.isalnum() or ch in NAME_PUNCTUATION)), None)
    if bad is not None:
        shown = repr(bad) if bad.isprintable() and not bad.isspace() else f"U+{ord(bad):04X}"
        return (
            f"may hold only letters, digits, spaces and '-', '_', '.' (found {shown}, "
            f"{unicodedata.name(bad, 'an invisible character').lower()})"
        )
    if unicodedata.normalize("NFKC", name) != name:
        return f"uses look-alike characters; write it as {unicodedata.normalize('NFKC', name)!r}"
    if len(name) > 64:
        return f"must be at most 64 characters (got {len(name)})"
    return None


def _identifier(value: Any) -> str | None:
    problem = _text(value)
    if problem is None and not ID_PATTERN.match(value):
        problem = (
            "must be 1-64 letters, digits, '-', '_' or '.', starting with a letter "
            f"or digit (got {value!r})"
        )
    return problem


def _weight(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"must be a number, not {_kind(value)}"
    if not math.isfinite(value) or value <= 0:
        return f"must be a number greater than 0 (got {value})"
    return None


def _version(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return f"must be a whole number of at least 1 (got {value!r})"
    return None


def _flag(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, not {_kind(value)}"


def _tags(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(t, str) and t.strip() for t in value):
        return "must be a list of non-empty texts"
    return None


def _kind(value: Any) -> str:
    if value is None:
        return "empty"
    return {
        dict: "a mapping",
        list: "a list",
        bool: "true/false",
        int: "a number",
        float: "a number",
        str: "text",
    }.get(type(value), type(value).__name__)


@dataclass(frozen=True)
class _Field:
    check: Callable[[Any], str | None]
    required: bool = True


TOP_FIELDS = {
    "name": _Field(_name),
    "version": _Field(_version, required=False),
    "description": _Field(_optional_text, required=False),
    "principles": _Field(lambda v: None, required=True),
    "few_shot": _Field(lambda v: None, required=False),
}
PRINCIPLE_FIELDS = {
    "id": _Field(_identifier),
    "title": _Field(_text),
    "critique_request": _Field(_text),
    "revision_request": _Field(_text),
    "preference_question": _Field(_text),
    "weight": _Field(_weight, required=False),
    "tags": _Field(_tags, required=False),
    "enabled": _Field(_flag, required=False),
}
CHAIN_FIELDS = {"prompt": _Field(_text), "answer": _Field(_text), "rounds": _Field(lambda v: None)}
ROUND_FIELDS = {
    "principle_id": _Field(_optional_text, required=False),
    "critique_request": _Field(_text),
    "critique": _Field(_text),
    "revision_request": _Field(_text),
    "revision": _Field(_text),
}


def _check_mapping(value: Any, fields: dict[str, _Field], path: tuple, what: str) -> list[Issue]:
    if not isinstance(value, dict):
        return [Issue(path, f"{what} must be a mapping of fields, not {_kind(value)}")]
    issues = []
    for key in value:
        if key not in fields:
            hint = difflib.get_close_matches(str(key), list(fields), n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
            allowed = ", ".join(fields)
            issues.append(
                Issue(path + (str(key),), f"unknown field{suggestion}; allowed: {allowed}")
            )
    for name, spec in fields.items():
        if name not in value:
            if spec.required:
                issues.append(Issue(path + (name,), f"missing required field '{name}'"))
            continue
        problem = spec.check(value[name])
        if problem:
            issues.append(Issue(path + (name,), problem))
    return issues


def _check_list(value: Any, path: tuple, what: str, allow_empty: bool) -> list[Issue]:
    if value is None and allow_empty:
        return []
    if not isinstance(value, list):
        return [Issue(path, f"{what} must be a list, not {_kind(value)}")]
    if not value and not allow_empty:
        return [Issue(path, f"{what} must have at least one entry")]
    return []


def check_principle(raw: Any, path: tuple = ()) -> list[Issue]:
    """Every problem with one principle's fields (used by file validation and the editor)."""
    return _check_mapping(raw, PRINCIPLE_FIELDS, path, "a principle")


def check_raw(raw: Any) -> list[Issue]:
    """Every problem with a loaded YAML document, without line numbers."""
    issues = _check_mapping(raw, TOP_FIELDS, (), "a constitution")
    if not isinstance(raw, dict):
        return issues
    principles = raw.get("principles")
    if "principles" in raw:
        issues += _check_list(principles, ("principles",), "principles", allow_empty=False)
    if isinstance(principles, list) and len(principles) > MAX_PRINCIPLES:
        return issues + [
            Issue(
                ("principles",),
                f"{len(principles)} principles; a constitution may have at most {MAX_PRINCIPLES}",
            )
        ]
    seen: dict[str, int] = {}
    for i, p in enumerate(principles if isinstance(principles, list) else []):
        issues += check_principle(p, ("principles", i))
        pid = p.get("id") if isinstance(p, dict) else None
        if isinstance(pid, str):
            if pid in seen:
                issues.append(
                    Issue(
                        ("principles", i, "id"),
                        f"duplicate id '{pid}' (also used by principles[{seen[pid]}])",
                    )
                )
            seen.setdefault(pid, i)
    chains = raw.get("few_shot")
    issues += _check_list(chains, ("few_shot",), "few_shot", allow_empty=True)
    for i, chain in enumerate(chains if isinstance(chains, list) else []):
        issues += _check_mapping(chain, CHAIN_FIELDS, ("few_shot", i), "a few-shot chain")
        rounds = chain.get("rounds") if isinstance(chain, dict) else None
        if isinstance(chain, dict) and "rounds" in chain:
            issues += _check_list(rounds, ("few_shot", i, "rounds"), "rounds", allow_empty=False)
        for j, rnd in enumerate(rounds if isinstance(rounds, list) else []):
            where = ("few_shot", i, "rounds", j)
            issues += _check_mapping(rnd, ROUND_FIELDS, where, "a round")
            ref = rnd.get("principle_id") if isinstance(rnd, dict) else None
            if isinstance(ref, str) and ref and ref not in seen:
                issues.append(Issue(where + ("principle_id",), f"no principle has id '{ref}'"))
    return issues


# --- YAML with line numbers ----------------------------------------------------------------


def _line_map(node: yaml.Node, path: tuple, lines: dict, issues: list[Issue]) -> None:
    """Record the line of every value's path; report keys that appear twice in a mapping."""
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                issues.append(
                    Issue(
                        path + (key,),
                        "appears more than once in the same mapping",
                        key_node.start_mark.line + 1,
                    )
                )
            seen.add(key)
            lines[path + (key,)] = key_node.start_mark.line + 1
            _line_map(value_node, path + (key,), lines, issues)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[path + (i,)] = item.start_mark.line + 1
            _line_map(item, path + (i,), lines, issues)


def _line_of(path: tuple, lines: dict) -> int | None:
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return None


def validate_text(text: str) -> list[Issue]:
    """Every problem with a constitution's YAML text, each with its line where known."""
    return read_constitution_yaml(text)[0]


def read_constitution_yaml(text: str) -> tuple[list[Issue], Any]:
    """(every problem with the text, each with its line where known; the loaded document).
    The text is parsed once: the checks and the line numbers read the same tree."""
    try:
        raw, node = read_yaml(text)
    except YamlRefused as exc:
        return [Issue((), exc.problem, exc.line)], None
    if node is None:
        return [Issue((), "the file is empty; a constitution needs a name and principles")], None
    lines: dict = {}
    issues: list[Issue] = []
    _line_map(node, (), lines, issues)
    issues += [dataclasses.replace(i, line=_line_of(i.path, lines)) for i in check_raw(raw)]
    return sorted(issues, key=lambda i: i.line or 0), raw


def parse_constitution(text: str, source: str = "constitution") -> Constitution:
    """Parse YAML text into a Constitution, or raise ConstitutionError listing every issue."""
    issues, raw = read_constitution_yaml(text)
    if issues:
        raise ConstitutionError(f"{source} is not a valid constitution:", tuple(issues))
    return from_dict(raw)


def decode_file(data: bytes, source: str) -> str:
    """The text of an uploaded or read file, refusing ones too large or not text at all."""
    if len(data) > MAX_FILE_BYTES:
        raise ConstitutionError(
            f"{source} is {len(data) / 1024 / 1024:.1f} MiB; constitution files are limited "
            f"to {MAX_FILE_BYTES // 1024 // 1024} MiB."
        )
    if b"\x00" in data:
        raise ConstitutionError(f"{source} is a binary file, not a YAML text file.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConstitutionError(
            f"{source} is not UTF-8 text (undecodable byte at position {exc.start})."
        ) from None


def read_text_file(path: str | Path, label: str | None = None) -> str:
    """A constitution file's text; the size is checked before reading, so a huge upload is
    refused without loading it."""
    path, label = Path(path), label or str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConstitutionError(
                f"{label} is {size / 1024 / 1024:.1f} MiB; constitution files are limited to "
                f"{MAX_FILE_BYTES // 1024 // 1024} MiB."
            )
        return decode_file(path.read_bytes(), label)
    except OSError as exc:
        raise ConstitutionError(f"Cannot read {label}: {exc.strerror}.") from None


def load_constitution(path: str | Path, label: str | None = None) -> Constitution:
    label = label or str(path)
    return parse_constitution(read_text_file(path, label), label)


# --- conversion ------------------------------------------------------------------------------


def from_dict(raw: dict) -> Constitution:
    """Build a Constitution from a dict already checked by `check_raw`."""
    return Constitution(
        name=raw["name"].strip(),
        version=raw.get("version", 1),
        description=raw.get("description") or "",
        principles=tuple(principle_from_dict(p) for p in raw["principles"]),
        few_shot=tuple(
            FewShotChain(c["prompt"], c["answer"], tuple(FewShotRound(**r) for r in c["rounds"]))
            for c in raw.get("few_shot") or ()
        ),
    )


def principle_from_dict(raw: dict) -> Principle:
    return Principle(
        id=raw["id"],
        title=raw["title"],
        critique_request=raw["critique_request"],
        revision_request=raw["revision_request"],
        preference_question=raw["preference_question"],
        weight=float(raw.get("weight", 1.0)),
        tags=tuple(raw.get("tags") or ()),
        enabled=raw.get("enabled", True),
    )


def principle_to_dict(p: Principle) -> dict:
    d = dataclasses.asdict(p)
    d["tags"] = list(p.tags)
    return d


def check_constitution(c: Constitution) -> None:
    """Raise ConstitutionError if `c` (built in code, not parsed) breaks a schema rule, or if
    its canonical YAML would be over MAX_FILE_BYTES: what is saved must export to a file
    that imports again."""
    issues = check_raw(to_dict(c))
    if issues:
        raise ConstitutionError(f"'{c.name}' is not a valid constitution:", tuple(issues))
    size = len(to_yaml(c).encode("utf-8"))
    if size > MAX_FILE_BYTES:
        raise ConstitutionError(
            f"'{c.name}' is {size / 1024 / 1024:.2f} MiB as YAML; a constitution is limited to "
            f"{MAX_FILE_BYTES // 1024 // 1024} MiB so that it exports to a file that imports "
            "again. Shorten or remove principles or few-shot chains."
        )


def to_dict(c: Constitution) -> dict:
    return {
        "name": c.name,
        "version": c.version,
        "description": c.description,
        "principles": [principle_to_dict(p) for p in c.principles],
        "few_shot": [
            {
                "prompt": ch.prompt,
                "answer": ch.answer,
                "rounds": [_round_to_dict(r) for r in ch.rounds],
            }
            for ch in c.few_shot
        ],
    }


def _round_to_dict(r: FewShotRound) -> dict:
    d = dataclasses.asdict(r)
    if not d["principle_id"]:
        del d["principle_id"]
    return d


class _Dumper(SAFE_DUMPER):
    pass


YAML_ONLY_BREAKS = ("\r", "\x85", "\u2028", "\u2029")


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    # Literal blocks suit multi-line prose, but YAML reads these characters as line breaks
    # and would fold them; the double-quoted style escapes them, so text round-trips exactly.
    style: str | None
    if any(ch in value for ch in YAML_ONLY_BREAKS):
        style = '"'
    else:
        style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def to_yaml(c: Constitution) -> str:
    """Canonical YAML: fixed field order, multi-line texts as literal blocks."""
    return yaml.dump(to_dict(c), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def content_hash(c: Constitution) -> str:
    """Identity of a constitution's content. The version number is left out on purpose:
    it is a label the store assigns, and saving unchanged content must not look new."""
    canonical = to_dict(c)
    del canonical["version"]
    blob = json.dumps(canonical, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


# --- templates -------------------------------------------------------------------------------


def fill_template(template: str, values: dict[str, str]) -> str:
    """Replace `{name}` placeholders in one pass.

    Inserted text is never scanned again, so braces, `%s` or `{name}` inside user text stay
    literal (unlike str.format, which would fail or substitute them).
    """
    missing = sorted({m.group(1) for m in PLACEHOLDER.finditer(template)} - set(values))
    if missing:
        raise ConstitutionError(f"Template needs values for: {', '.join(missing)}.")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


# --- editing ----------------------------------------------------------------------------------


def principle_from_fields(fields: dict[str, Any]) -> Principle:
    """A principle from an editor form, or ConstitutionError whose issues name the bad fields."""
    issues = check_principle(fields)
    if issues:
        raise ConstitutionError("This principle has problems:", tuple(issues))
    return principle_from_dict(fields)


def _relink(chains: tuple[FewShotChain, ...], old: str, new: str) -> tuple[FewShotChain, ...]:
    """Few-shot rounds that named principle `old` name `new` instead ("" drops the link; the
    round keeps its own texts, so it stays a valid example)."""
    return tuple(
        dataclasses.replace(
            ch,
            rounds=tuple(
                dataclasses.replace(r, principle_id=new) if r.principle_id == old else r
                for r in ch.rounds
            ),
        )
        for ch in chains
    )


def put_principle(c: Constitution, principle: Principle, index: int | None) -> Constitution:
    """Replace the principle at `index` (a renamed id is followed by the few-shot chains), or
    append it when `index` is None."""
    others = [p for i, p in enumerate(c.principles) if i != index]
    clash = [p for p in others if p.id == principle.id]
    if clash:
        raise ConstitutionError(
            "This principle has problems:",
            (Issue(("id",), f"id '{principle.id}' is already used by another principle"),),
        )
    items = list(c.principles)
    few_shot = c.few_shot
    if index is None:
        items.append(principle)
    else:
        few_shot = _relink(few_shot, items[index].id, principle.id)
        items[index] = principle
    return dataclasses.replace(c, principles=tuple(items), few_shot=few_shot)


def remove_principle(c: Constitution, index: int) -> Constitution:
    if len(c.principles) <= 1:
        raise ConstitutionError(
            "A constitution needs at least one principle; add another before deleting this one."
        )
    return dataclasses.replace(
        c,
        principles=c.principles[:index] + c.principles[index + 1 :],
        few_shot=_relink(c.few_shot, c.principles[index].id, ""),
    )


def move_principle(c: Constitution, index: int, offset: int) -> Constitution:
    """Move a principle up (offset < 0) or down; moves past either end stop there."""
    target = min(max(index + offset, 0), len(c.principles) - 1)
    items = list(c.principles)
    items.insert(target, items.pop(index))
    return dataclasses.replace(c, principles=tuple(items))


# --- diffs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One difference between two constitutions."""

    kind: str  # "added", "removed", "changed", "moved", "metadata"
    subject: str  # a principle id, or a top-level field name
    field: str = ""
    before: str = ""
    after: str = ""


def diff_constitutions(a: Constitution, b: Constitution) -> tuple[Change, ...]:
    changes: list[Change] = []
    for name in ("name", "description"):
        if getattr(a, name) != getattr(b, name):
            changes.append(Change("metadata", name, name, getattr(a, name), getattr(b, name)))
    if a.few_shot != b.few_shot:
        before, after = (
            yaml.dump(
                to_dict(c)["few_shot"],
                Dumper=_Dumper,
                sort_keys=False,
                allow_unicode=True,
                width=100,
            )
            for c in (a, b)
        )
        changes.append(Change("metadata", "few_shot", "few_shot", before, after))
    old = {p.id: p for p in a.principles}
    new = {p.id: p for p in b.principles}
    for pid in old.keys() - new.keys():
        changes.append(Change("removed", pid, before=old[pid].title))
    for p in b.principles:
        if p.id not in old:
            changes.append(Change("added", p.id, after=p.title))
            continue
        before, after = principle_to_dict(old[p.id]), principle_to_dict(p)
        for key in before:
            if before[key] != after[key]:
                changes.append(Change("changed", p.id, key, _show(before[key]), _show(after[key])))
    common_old = [pid for pid in old if pid in new]
    common_new = [pid for pid in new if pid in old]
    if common_old != common_new:
        changes.append(
            Change("moved", "order", "order", ", ".join(common_old), ", ".join(common_new))
        )
    return tuple(
        sorted(
            changes,
            key=lambda ch: ["metadata", "removed", "added", "changed", "moved"].index(ch.kind),
        )
    )


def _show(value: Any) -> str:
    return ", ".join(value) if isinstance(value, list) else str(value)


def format_diff(changes: tuple[Change, ...], label_a: str = "a", label_b: str = "b") -> str:
    """A readable text diff, with unified line diffs for changed texts."""
    if not changes:
        return f"{label_a} and {label_b} have the same content."
    out = [f"--- {label_a}", f"+++ {label_b}"]
    for ch in changes:
        if ch.kind == "added":
            out.append(f"+ principle {ch.subject}: {ch.after}")
        elif ch.kind == "removed":
            out.append(f"- principle {ch.subject}: {ch.before}")
        elif ch.kind == "moved":
            out.append(f"~ order of principles: {ch.before}  ->  {ch.after}")
        else:
            title = f"principle {ch.subject}.{ch.field}" if ch.kind == "changed" else ch.field
            out.append(f"~ {title}:")
            out += [
                "    " + line
                for line in difflib.unified_diff(
                    ch.before.splitlines(), ch.after.splitlines(), lineterm="", n=1
                )
            ][2:]
    return "\n".join(out)


def new_constitution(name: str) -> Constitution:
    """A starting point for a new constitution: one editable principle."""
    return Constitution(
        name=name,
        principles=(
            Principle(
                id="harmless",
                title="Avoid harm",
                critique_request="Identify specific ways in which the assistant's last response is "
                "harmful, unethical, dangerous or illegal.",
                revision_request="Please rewrite the assistant's response to remove any harmful, "
                "unethical, dangerous or illegal content.",
                preference_question="Which of these assistant responses is less harmful?",
            ),
        ),
    )


SYSTEM_PROMPT_TEMPLATE = (
    "You are a helpful AI assistant. Follow this principle in every answer: {title}. {instruction}"
)
_REWRITE = re.compile(
    r"^(?:please\s+)?(?:re-?write|revise)\s+(?:the\s+)?(?:assistant'?s\s+)?"
    r"(?:last\s+)?(?:response|answer)\s*",
    re.IGNORECASE,
)
_THE_RESPONSE = re.compile(r"\bthe\s+(?:assistant'?s\s+)?(?:last\s+)?response\b", re.IGNORECASE)


def as_instruction(revision_request: str) -> str:
    """A revision request ("Rewrite the assistant's response so that it …") read as an
    instruction for answering ("Write your answer so that it …")."""
    text = revision_request.strip()
    rewritten = _REWRITE.sub("Write your answer ", text, count=1)
    return _THE_RESPONSE.sub("your answer", rewritten)


def principle_system_prompt(p: Principle) -> str:
    """A system prompt that asks the model to follow one principle (used by the Playground),
    from its title and its revision request read as an instruction — not its pairwise
    preference question, which asks about two responses that do not exist here."""
    return fill_template(
        SYSTEM_PROMPT_TEMPLATE,
        {"title": p.title.strip().rstrip("."), "instruction": as_instruction(p.revision_request)},
    )
