import json
import multiprocessing
import time
from pathlib import Path

import pytest

from pipeline.core.errors import ModelError
from pipeline.model.loading import (
    MARKER,
    build_once,
    embedded_model_dir,
    load_model,
    resolve_source,
)


def slow_build(out: Path) -> None:
    """A build that takes long enough for a second process to arrive meanwhile."""
    with open(out.parent / "builds.log", "a") as log:
        log.write("built\n")
    (out / "part1").write_text("a")
    time.sleep(1.0)
    (out / "part2").write_text("b")


def race(target: str) -> None:
    build_once(Path(target), slow_build)


def test_build_once_is_race_safe_across_processes(tmp_path):
    target = tmp_path / "cache" / "model"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=race, args=(str(target),)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert all(p.exitcode == 0 for p in procs)
    assert (tmp_path / "cache" / "builds.log").read_text() == "built\n"
    assert sorted(f.name for f in target.iterdir()) == [MARKER, "part1", "part2"]
    leftovers = [
        p.name
        for p in target.parent.iterdir()
        if p.name.startswith(".model.") and not p.name.endswith(".lock")
    ]
    assert leftovers == []


def test_build_once_replaces_debris_and_cleans_up_failures(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "half-written").write_text("x")
    build_once(target, lambda out: (out / "ok").write_text("y"))
    assert sorted(f.name for f in target.iterdir()) == [MARKER, "ok"]

    def fails(out: Path) -> None:
        (out / "partial").write_text("z")
        raise RuntimeError("disk full")

    other = tmp_path / "other"
    with pytest.raises(RuntimeError, match="disk full"):
        build_once(other, fails)
    assert not other.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".other.")] == [".other.lock"]


def test_embedded_model_is_cached_as_plain_safetensors():
    folder = embedded_model_dir()
    assert (folder / "model.safetensors").exists() and (folder / MARKER).exists()
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    assert resolve_source("embedded") == str(folder)


def test_missing_folder_names_what_was_tried(tmp_path):
    with pytest.raises(ModelError, match="tried the local folder .*does-not-exist"):
        resolve_source(str(tmp_path / "does-not-exist"))


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelError, match="has neither config.json nor adapter_config.json"):
        resolve_source(str(tmp_path))


def test_broken_folder_gives_one_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match=f"Could not load model '{tmp_path}' from"):
        load_model(str(tmp_path), device="cpu")


def test_unknown_hub_id_offline_fails_fast_saying_what_was_tried(monkeypatch):
    started = time.monotonic()
    with pytest.raises(
        ModelError,
        match="tried the local folder .* the Hugging Face cache "
        r"\(not there\) and the hub \(cannot be reached",
    ):
        load_model("no-such-org/no-such-model-xyz", device="cpu")
    monkeypatch.delenv("HF_HUB_OFFLINE")  # online mode, but the hub does not answer
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1:9")
    with pytest.raises(ModelError, match="cannot be reached"):
        load_model("no-such-org/no-such-model-xyz", device="cpu")
    assert time.monotonic() - started < 10  # not a minute of retries


def test_any_local_folder_loads(tmp_path):
    """A user's own model folder works like the embedded one (here: a tiny saved model)."""
    from tests.tiny import tiny_model

    loaded = tiny_model()
    loaded.model.save_pretrained(tmp_path)
    loaded.tokenizer.save_pretrained(tmp_path)
    again = load_model(str(tmp_path), device="cpu")
    assert again.source == str(tmp_path.resolve())
    assert again.model.config.num_hidden_layers == 2
    assert again.tokenizer.padding_side == "left"


def test_a_lora_adapter_folder_loads_merged_into_its_base(tmp_path):
    """An adapter folder names its base; loading it applies the adapter to a copy."""
    import torch
    from peft import LoraConfig, get_peft_model

    from tests.tiny import tiny_model

    tiny = tiny_model()
    base_dir, adapter_dir = tmp_path / "base", tmp_path / "adapter"
    tiny.model.save_pretrained(base_dir)
    tiny.tokenizer.save_pretrained(base_dir)
    base = load_model(str(base_dir), device="cpu")
    torch.manual_seed(1)
    peft_model = get_peft_model(
        base.model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    peft_model.save_pretrained(adapter_dir)
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        expected = peft_model(input_ids=ids).logits
    peft_model.unload()  # leave the cached base model as it was
    with torch.no_grad():
        base_logits = base.model(input_ids=ids).logits
        merged = load_model(str(adapter_dir), device="cpu")
        logits = merged.model(input_ids=ids).logits
    assert torch.allclose(logits, expected, atol=1e-5)
    assert not torch.allclose(logits, base_logits, atol=1e-3)
    assert merged.tokenizer is base.tokenizer
    with torch.no_grad():  # the base stayed itself
        assert torch.equal(base.model(input_ids=ids).logits, base_logits)


@pytest.mark.integration
def test_a_model_folder_with_its_own_code_is_refused_without_running_it_or_asking(tmp_path):
    """transformers would ask [y/N] on a terminal (blocking a studio started in one) or run
    the folder's code; we never pass trust_remote_code, so it is refused straight away."""
    import subprocess
    import sys

    folder = tmp_path / "custom"
    folder.mkdir()
    ran = tmp_path / "code-ran"
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_type": "evil",
                "architectures": ["EvilModel"],
                "auto_map": {
                    "AutoConfig": "configuration_evil.EvilConfig",
                    "AutoModelForCausalLM": "modeling_evil.EvilModel",
                },
            }
        )
    )
    code = (
        f"open({str(ran)!r}, 'w').write('yes')\nfrom transformers import PretrainedConfig\n"
        "class EvilConfig(PretrainedConfig):\n    model_type = 'evil'\n"
    )
    (folder / "configuration_evil.py").write_text(code)
    (folder / "modeling_evil.py").write_text(code)
    script = (
        "import sys; from pipeline.model.loading import load_model\n"
        "from pipeline.core.errors import ModelError\n"
        f"try:\n    load_model({str(folder)!r}, 'cpu')\n"
        "except ModelError as e:\n    print('refused:', e)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[3],
        input="y\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "refused:" in proc.stdout, proc.stdout + proc.stderr
    assert "[y/N]" not in proc.stdout + proc.stderr and not ran.exists()


def test_a_reward_head_holding_code_is_refused_without_running_it(tmp_path):
    import pickle

    import torch

    from pipeline.cai.reward_model import HEAD_FILE, load_head
    from pipeline.core.errors import DatasetError
    from tests.tiny import tiny_model

    ran = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(ran), "w"))

    with open(tmp_path / HEAD_FILE, "wb") as f:
        pickle.dump({"weight": Payload()}, f)
    with pytest.raises(DatasetError, match="not a scalar head"):
        load_head(tmp_path, tiny_model())
    assert not ran.exists()
    torch.save({"weight": torch.zeros(1, 64), "bias": torch.zeros(1)}, tmp_path / HEAD_FILE)
    assert load_head(tmp_path, tiny_model()).weight.shape == (1, 64)
