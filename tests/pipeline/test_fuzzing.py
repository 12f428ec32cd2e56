"""Every importer and parser, fed arbitrary bytes and structured garbage, gives a parsed
object or our own error (a StudioError) — never another exception — within a bounded time
(hypothesis' deadline) and without expanding what it reads (aliases and deep nesting are
refused before anything is built)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config.commands import PPOJob, SFTJob, build_job, read_job_file
from pipeline.core.errors import StudioError
from pipeline.data.constitution import decode_file, parse_constitution, validate_text
from pipeline.data.preferences import import_hh, read_labels, read_pairs
from pipeline.data.prompts import load_prompts
from pipeline.data.stackexchange import pmp_comparisons

FUZZ = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])

# the pieces attacks and accidents are made of
FRAGMENTS = [
    "name: x\n",
    "principles:\n",
    "- id: a\n",
    "  title: t\n",
    "&a ",
    "*a",
    "[" * 40,
    "]" * 40,
    "{",
    "}",
    '"\\ud800"',
    "9" * 4400,
    ".nan",
    "!!python/object:os.system",
    "\t",
    "\x00",
    "\ufeff",
    "weight: -1\n",
    "? ",
    ": ",
    "- ",
    "'",
    "#",
    "\n",
    "~",
]
# no subnormals: loading a model sets flush-to-zero in this process (torch.set_flush_denormal)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_subnormal=False), st.text(max_size=30)
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(st.text(max_size=12), st.integers(), st.none()), inner, max_size=4
        ),
    ),
    max_leaves=20,
)
garbage_text = st.one_of(
    st.text(max_size=400),
    st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join),
    values.map(lambda v: yaml.safe_dump(v, allow_unicode=True)),
)
garbage_lines = st.lists(
    st.one_of(
        values.map(lambda v: json.dumps(v)),
        st.text(max_size=80),
        st.sampled_from(
            ["[" * 3000, '{"prompt": ' + "9" * 5000 + "}", '{"prompt": "\\udc00"}', "NaN", ""]
        ),
    ),
    max_size=6,
).map("\n".join)


@pytest.fixture(autouse=True, scope="module")
def fuzz_root():
    """One folder for every fuzzed input of the module, removed at its end (a temp folder
    per example left hundreds behind on every run)."""
    global FUZZ_ROOT
    FUZZ_ROOT = Path(tempfile.mkdtemp(prefix="fuzz-"))
    yield
    shutil.rmtree(FUZZ_ROOT, ignore_errors=True)


FUZZ_ROOT = Path(tempfile.gettempdir())


def written(data: bytes | str, suffix: str) -> Path:
    folder = Path(tempfile.mkdtemp(dir=FUZZ_ROOT))
    path = folder / f"input{suffix}"
    path.write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    return path


def ours_or_parsed(call) -> None:
    try:
        call()
    except StudioError:
        pass


@FUZZ
@given(st.one_of(garbage_text, st.binary(max_size=400).map(lambda b: b.decode("latin-1"))))
def test_constitution_yaml(text):
    assert isinstance(validate_text(text), list)
    ours_or_parsed(lambda: parse_constitution(text))


@FUZZ
@given(st.binary(max_size=600))
def test_constitution_file_bytes(data):
    ours_or_parsed(lambda: parse_constitution(decode_file(data, "upload")))


@FUZZ
@given(
    st.one_of(
        garbage_text.map(lambda t: t.encode("utf-8", "surrogatepass")), st.binary(max_size=300)
    )
)
def test_job_yaml(data):
    path = written(data, ".yaml")
    for cls in (SFTJob, PPOJob):
        ours_or_parsed(lambda: build_job(cls, read_job_file(path)))


@FUZZ
@given(st.one_of(garbage_lines, st.binary(max_size=300).map(lambda b: b.decode("latin-1"))))
def test_prompts_jsonl_and_txt(text):
    for suffix in (".jsonl", ".txt"):
        ours_or_parsed(lambda: load_prompts(str(written(text, suffix))))


@FUZZ
@given(garbage_lines)
def test_pairs_labels_and_hh_jsonl(text):
    path = written(text, ".jsonl")
    ours_or_parsed(lambda: read_pairs(path))
    ours_or_parsed(lambda: read_labels(path))
    ours_or_parsed(lambda: import_hh(path))


xml_rows = st.lists(
    st.fixed_dictionaries(
        {
            "Id": st.integers(0, 5).map(str),
            "PostTypeId": st.sampled_from(["1", "2", "3", "x"]),
            "ParentId": st.integers(0, 5).map(str),
            "Score": st.one_of(st.integers(-5, 99).map(str), st.text(max_size=3)),
            "Body": st.text(max_size=40),
        }
    ),
    max_size=6,
)


def posts_xml(rows: list[dict]) -> str:
    from xml.sax.saxutils import quoteattr

    return (
        "<posts>"
        + "".join(
            "<row " + " ".join(f"{k}={quoteattr(v)}" for k, v in r.items()) + "/>" for r in rows
        )
        + "</posts>"
    )


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
    + "".join(f'<!ENTITY {n} "{("&" + p + ";") * 10}">' for p, n in zip("abcdefgh", "bcdefghi"))
    + ']><posts><row Id="1" PostTypeId="1" Body="&i;"/></posts>'
)


@FUZZ
@given(st.one_of(xml_rows.map(posts_xml), st.text(max_size=200), st.just(BILLION_LAUGHS)))
def test_stack_exchange_xml(text):
    ours_or_parsed(lambda: pmp_comparisons(written(text, ".xml")))
