import dataclasses
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.errors import ConstitutionError
from pipeline.data import constitution as cons
from pipeline.data.constitution import (
    Constitution,
    FewShotChain,
    FewShotRound,
    Principle,
    content_hash,
    fill_template,
    parse_constitution,
    to_yaml,
    validate_text,
)

SHIPPED = Path(__file__).resolve().parents[3] / "constitutions"

VALID = """\
name: tiny
principles:
- id: a
  title: A
  critique_request: critique a
  revision_request: revise a
  preference_question: which is better for a?
"""


def messages(text: str) -> list[str]:
    return [str(i) for i in validate_text(text)]


def test_minimal_constitution_gets_defaults():
    c = parse_constitution(VALID)
    assert c.version == 1 and c.description == "" and c.few_shot == ()
    assert c.principles[0].weight == 1.0 and c.principles[0].enabled and c.principles[0].tags == ()


@pytest.mark.parametrize("name", ["harmless-helpful", "honest", "adversarial"])
def test_shipped_constitutions_are_valid(name):
    c = cons.load_constitution(SHIPPED / f"{name}.yaml")
    assert c.name == name
    assert c.few_shot, "every shipped constitution carries few-shot chains"


def test_harmless_helpful_covers_the_required_ground():
    c = cons.load_constitution(SHIPPED / "harmless-helpful.yaml")
    assert len(c.principles) >= 12
    tags = {t for p in c.principles for t in p.tags}
    assert {
        "harm",
        "illegality",
        "privacy",
        "manipulation",
        "bias",
        "medical",
        "legal",
        "evasiveness",
        "tone",
    } <= tags
    assert len(c.few_shot) >= 3


def test_adversarial_is_marked_inverted():
    c = cons.load_constitution(SHIPPED / "adversarial.yaml")
    assert all("inverted" in p.tags for p in c.principles)


def test_missing_field_names_field_and_line():
    text = VALID.replace("  revision_request: revise a\n", "")
    assert messages(text) == [
        "line 3: principles[0].revision_request: missing required field 'revision_request'"
    ]


def test_empty_request_is_reported_on_its_line():
    text = VALID.replace("critique a", "'   '")
    assert messages(text) == ["line 5: principles[0].critique_request: must not be empty"]


def test_unknown_key_suggests_the_right_one():
    text = VALID + "  wieght: 2\n"
    (msg,) = messages(text)
    assert msg.startswith("line 8: principles[0].wieght: unknown field (did you mean 'weight'?)")


def test_duplicate_ids_are_reported():
    second = VALID.split("principles:\n")[1]
    msgs = messages(VALID + second)
    assert msgs == ["line 8: principles[1].id: duplicate id 'a' (also used by principles[0])"]


@pytest.mark.parametrize("weight", ["0", "-1", ".nan", "true", "heavy"])
def test_bad_weights_are_refused(weight):
    (msg,) = messages(VALID + f"  weight: {weight}\n")
    assert "principles[0].weight" in msg and msg.startswith("line 8")


def test_no_principles():
    assert messages("name: x\nprinciples: []\n") == [
        "line 2: principles: principles must have at least one entry"
    ]
    assert "missing required field 'principles'" in messages("name: x\n")[0]


def test_malformed_yaml_reports_a_line():
    (msg,) = messages("name: [x\nprinciples:\n")
    assert msg.startswith("line ") and "not valid YAML" in msg


def test_an_unclosed_quote_is_reported_where_it_opened():
    text = VALID.replace("  title: A\n", '  title: "A\n')
    opened = text.splitlines().index('  title: "A') + 1
    (msg,) = messages(text)
    assert msg.startswith(f"line {opened}: a quoted text opens here and is never closed")


def test_key_twice_in_a_mapping_is_reported():
    msgs = messages(VALID.replace("  title: A\n", "  title: A\n  title: B\n"))
    assert msgs == ["line 5: principles[0].title: appears more than once in the same mapping"]


def test_not_a_mapping_and_empty_file():
    assert "must be a mapping" in messages("- just\n- a list\n")[0]
    assert "empty" in messages("")[0]


def test_few_shot_round_must_reference_a_known_principle():
    text = (
        VALID
        + """few_shot:
- prompt: p
  answer: a
  rounds:
  - principle_id: nope
    critique_request: c
    critique: c
    revision_request: r
    revision: r
"""
    )
    assert messages(text) == [
        "line 12: few_shot[0].rounds[0].principle_id: no principle has id 'nope'"
    ]


def test_parse_raises_with_every_issue():
    with pytest.raises(ConstitutionError) as info:
        parse_constitution("name: ''\nprinciples: 3\n", "x.yaml")
    assert len(info.value.issues) == 2
    assert "x.yaml is not a valid constitution" in str(info.value)


def test_binary_and_oversized_files_are_refused(tmp_path):
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"\x00\x01\x02GGUF")
    with pytest.raises(ConstitutionError, match="binary file"):
        cons.load_constitution(binary)
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (10 * 1024 * 1024))
    with pytest.raises(
        ConstitutionError, match="10.0 MiB; constitution files are limited to 1 MiB"
    ):
        cons.load_constitution(big)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConstitutionError, match="not UTF-8"):
        cons.load_constitution(latin)


def test_braces_and_percent_signs_are_just_text():
    text = VALID.replace("critique a", "'{x} {0} %s %(name)s {{}}'")
    c = parse_constitution(text)
    assert c.principles[0].critique_request == "{x} {0} %s %(name)s {{}}"
    assert parse_constitution(to_yaml(c)) == c


def test_hash_ignores_version_but_not_content():
    c = parse_constitution(VALID)
    assert content_hash(c) == content_hash(dataclasses.replace(c, version=7))
    changed = cons.put_principle(c, dataclasses.replace(c.principles[0], weight=2.0), 0)
    assert content_hash(c) != content_hash(changed)
    assert len(content_hash(c)) == 64


# --- property tests ---------------------------------------------------------------------

texts = st.text(min_size=1, max_size=200).filter(lambda s: s.strip())
ids = st.from_regex(cons.ID_PATTERN, fullmatch=True)
# names: letters (any script, already NFKC), digits, '-', '_', '.' and spaces
names = st.text(
    st.characters(
        categories=("Lu", "Ll", "Nd"),
    ),
    min_size=1,
    max_size=20,
).filter(lambda s: unicodedata.normalize("NFKC", s) == s)


@st.composite
def constitutions(draw) -> Constitution:
    principle_ids = draw(st.lists(ids, min_size=1, max_size=4, unique=True))
    principles = tuple(
        Principle(
            id=pid,
            title=draw(texts),
            critique_request=draw(texts),
            revision_request=draw(texts),
            preference_question=draw(texts),
            weight=draw(
                st.floats(min_value=0.01, max_value=100, allow_nan=False, allow_subnormal=False)
            ),
            tags=tuple(draw(st.lists(texts, max_size=3))),
            enabled=draw(st.booleans()),
        )
        for pid in principle_ids
    )
    rounds = tuple(
        FewShotRound(
            draw(texts),
            draw(texts),
            draw(texts),
            draw(texts),
            draw(st.sampled_from(["", *principle_ids])),
        )
        for _ in range(draw(st.integers(1, 2)))
    )
    chains = tuple(
        FewShotChain(draw(texts), draw(texts), rounds) for _ in range(draw(st.integers(0, 2)))
    )
    name = draw(names) + draw(st.sampled_from(["", " v2", "-x", "_y", ".z"]))
    return Constitution(
        name=name,
        principles=principles,
        version=draw(st.integers(1, 1000)),
        description=draw(st.text(max_size=100)),
        few_shot=chains,
    )


@settings(max_examples=150, deadline=None)
@given(constitutions())
def test_yaml_round_trip(c):
    assert parse_constitution(to_yaml(c)) == c


@settings(max_examples=60, deadline=None)
@given(constitutions())
def test_hash_is_stable_across_round_trip(c):
    assert content_hash(parse_constitution(to_yaml(c))) == content_hash(c)


@given(st.text(), st.text())
def test_fill_template_inserts_any_text_literally(a, b):
    assert fill_template("<{first}|{second}>", {"first": a, "second": b}) == f"<{a}|{b}>"


@given(st.text(alphabet="{}%s_abc0 ", max_size=40))
def test_fill_template_never_rescans_inserted_text(user_text):
    assert fill_template("{x}{x}", {"x": user_text, "y": "Y"}) == user_text * 2


def test_fill_template_names_missing_values():
    with pytest.raises(ConstitutionError, match="needs values for: b"):
        fill_template("{a} {b}", {"a": "1"})


def test_fill_template_long_and_non_ascii():
    long = "Ünïcødé ✓ 中文 " * 20_000
    assert fill_template("[{t}]", {"t": long}) == f"[{long}]"


# --- editing -----------------------------------------------------------------------------


def three() -> Constitution:
    c = parse_constitution(VALID)
    p = c.principles[0]
    return dataclasses.replace(
        c, principles=(p, dataclasses.replace(p, id="b"), dataclasses.replace(p, id="c"))
    )


def test_put_add_move_remove():
    c = three()
    new = dataclasses.replace(c.principles[0], id="d")
    assert [p.id for p in cons.put_principle(c, new, None).principles] == ["a", "b", "c", "d"]
    assert [p.id for p in cons.put_principle(c, new, 1).principles] == ["a", "d", "c"]
    assert [p.id for p in cons.move_principle(c, 2, -1).principles] == ["a", "c", "b"]
    assert [p.id for p in cons.move_principle(c, 0, -1).principles] == ["a", "b", "c"]
    assert [p.id for p in cons.move_principle(c, 2, 5).principles] == ["a", "b", "c"]
    assert [p.id for p in cons.remove_principle(c, 1).principles] == ["a", "c"]


def test_put_refuses_an_id_used_elsewhere():
    c = three()
    with pytest.raises(ConstitutionError, match="already used"):
        cons.put_principle(c, dataclasses.replace(c.principles[0], id="b"), 0)
    same_place = cons.put_principle(c, dataclasses.replace(c.principles[1], title="B"), 1)
    assert same_place.principles[1].title == "B"


def test_cannot_delete_the_last_principle():
    with pytest.raises(ConstitutionError, match="at least one principle"):
        cons.remove_principle(parse_constitution(VALID), 0)


def test_principle_from_fields_reports_each_bad_field():
    with pytest.raises(ConstitutionError) as info:
        cons.principle_from_fields(
            {
                "id": "has space",
                "title": "",
                "critique_request": "c",
                "revision_request": "r",
                "preference_question": "q",
                "weight": 0,
                "tags": [],
                "enabled": True,
            }
        )
    assert {i.path[-1] for i in info.value.issues} == {"id", "title", "weight"}


# --- diffs ------------------------------------------------------------------------------


def test_diff_names_each_kind_of_change():
    a = three()
    b = cons.remove_principle(a, 2)
    b = cons.put_principle(b, dataclasses.replace(b.principles[0], title="A2"), 0)
    b = cons.put_principle(b, dataclasses.replace(b.principles[0], id="z"), None)
    b = cons.move_principle(b, 1, -1)
    b = dataclasses.replace(b, description="new words")
    kinds = {(ch.kind, ch.subject, ch.field) for ch in cons.diff_constitutions(a, b)}
    assert kinds == {
        ("metadata", "description", "description"),
        ("removed", "c", ""),
        ("added", "z", ""),
        ("changed", "a", "title"),
        ("moved", "order", "order"),
    }
    text = cons.format_diff(cons.diff_constitutions(a, b), "v1", "v2")
    assert "- principle c" in text and "+ principle z" in text and "+A2" in text


def test_diff_of_identical_content():
    assert cons.diff_constitutions(three(), three()) == ()
    assert "same content" in cons.format_diff((), "x", "y")


def test_principle_system_prompt_keeps_user_braces():
    p = dataclasses.replace(parse_constitution(VALID).principles[0], title="Be {kind}")
    assert "Be {kind}" in cons.principle_system_prompt(p)


def test_deleting_or_renaming_a_principle_keeps_few_shot_links_valid():
    c = cons.load_constitution(SHIPPED / "harmless-helpful.yaml")
    index = [p.id for p in c.principles].index("not-preachy")
    renamed = cons.put_principle(
        c, dataclasses.replace(c.principles[index], id="no-sermons"), index
    )
    refs = [r.principle_id for ch in renamed.few_shot for r in ch.rounds]
    assert "no-sermons" in refs and "not-preachy" not in refs
    cons.check_constitution(renamed)
    deleted = cons.remove_principle(c, index)
    assert "not-preachy" not in [r.principle_id for ch in deleted.few_shot for r in ch.rounds]
    cons.check_constitution(deleted)
    assert parse_constitution(to_yaml(deleted)) == deleted


def test_check_constitution_rejects_code_built_mistakes():
    c = three()
    broken = dataclasses.replace(c, principles=c.principles + (c.principles[0],))
    with pytest.raises(ConstitutionError, match="duplicate id 'a'"):
        cons.check_constitution(broken)
