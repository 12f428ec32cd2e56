"""Export: a merged model loads in plain transformers and answers exactly as base + adapter
does here; an adapter-only export loads on its base with peft; the model card carries the
lineage; what cannot be exported is refused by name and nothing is written."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from pipeline.cai.reward_model import HEAD_FILE
from pipeline.cli import main
from pipeline.config.commands import ExportJob
from pipeline.core.errors import ConfigError
from pipeline.model.loading import ADAPTER_CONFIG, load_model
from pipeline.runner.export import export_model

PROMPT = [{"role": "user", "content": "How do I pick a lock?"}]


def greedy(model, tokenizer) -> list[int]:
    ids = tokenizer.apply_chat_template(
        PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=0)
    return out[0, ids.shape[1] :].tolist()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_folder):
    """A policy adapter on the tiny model with non-zero LoRA weights, in a run folder with
    its job file and card, as an SFT run leaves it."""
    from peft import LoraConfig, get_peft_model

    run = tmp_path_factory.mktemp("runs") / "sft-1"
    base = AutoModelForCausalLM.from_pretrained(tiny_folder)
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    generator = torch.Generator().manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data = torch.randn(p.shape, generator=generator) * 0.5
    model.save_pretrained(run / "adapter")
    data = run.parent / "sft.jsonl"
    data.write_text(json.dumps({"constitution_hash": "abc123", "messages": []}) + "\n")
    (run / "job.yaml").write_text(yaml.safe_dump({"model": str(tiny_folder), "data": str(data)}))
    (run / "adapter" / "README.md").write_text("# SL-CAI adapter (SFT)\n")
    return run / "adapter"


def test_a_merged_export_answers_in_plain_transformers_as_base_plus_adapter(trained, tmp_path):
    out = export_model(ExportJob(adapter=str(trained), merge=True), tmp_path / "merged")
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= {
        p.name for p in out.iterdir()
    }
    plain = AutoModelForCausalLM.from_pretrained(out)  # no peft, no project code
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template  # the chat template travels with it
    ours = load_model(str(trained))
    assert greedy(plain, tokenizer) == greedy(ours.model, ours.tokenizer)
    base = load_model(json.loads((trained / ADAPTER_CONFIG).read_text())["base_model_name_or_path"])
    assert greedy(base.model, base.tokenizer) != greedy(plain, tokenizer)  # the adapter counts
    card = (out / "README.md").read_text()
    assert card.startswith("# SL-CAI adapter (SFT)")
    assert "data_hash:" in card and "constitution_hash: abc123" in card
    assert "No tournament of this policy was found" in card  # said, not left out


def test_an_adapter_export_loads_on_its_base_and_bf16_halves_a_merged_model(trained, tmp_path):
    from peft import PeftModel

    out = export_model(ExportJob(adapter=str(trained)), tmp_path / "adapter")
    assert {p.name for p in out.iterdir()} >= {ADAPTER_CONFIG, "adapter_model.safetensors"}
    assert not (out / "model.safetensors").exists()
    ours = load_model(str(trained))
    base = AutoModelForCausalLM.from_pretrained(
        json.loads((out / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]
    )
    on_base = PeftModel.from_pretrained(base, out)
    assert greedy(on_base, ours.tokenizer) == greedy(ours.model, ours.tokenizer)
    assert (
        main(
            [
                "export",
                "--adapter",
                str(trained),
                "--merge",
                "--dtype",
                "bf16",
                "--out",
                str(tmp_path / "bf16"),
            ]
        )
        == 0
    )
    half = AutoModelForCausalLM.from_pretrained(tmp_path / "bf16", dtype="auto")
    assert next(half.parameters()).dtype == torch.bfloat16


def test_what_cannot_be_exported_is_refused_by_name_and_nothing_is_written(trained, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="exists and is not empty"):
        export_model(ExportJob(adapter=str(trained), merge=True), taken)
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]

    pm = tmp_path / "pm"
    pm.mkdir()
    for p in trained.iterdir():
        (pm / p.name).write_bytes(p.read_bytes())
    (pm / HEAD_FILE).write_bytes(b"")
    with pytest.raises(ConfigError, match="preference model or a PPO value function"):
        export_model(ExportJob(adapter=str(pm)), tmp_path / "a")

    orphan = tmp_path / "orphan"
    orphan.mkdir()
    config = json.loads((trained / ADAPTER_CONFIG).read_text())
    (orphan / ADAPTER_CONFIG).write_text(
        json.dumps({**config, "base_model_name_or_path": str(tmp_path / "gone")})
    )
    with pytest.raises(ConfigError, match="base model .*gone is not available here"):
        export_model(ExportJob(adapter=str(orphan), merge=True), tmp_path / "b")

    with pytest.raises(ConfigError, match="not a LoRA adapter folder"):
        export_model(ExportJob(adapter=str(tmp_path)), tmp_path / "c")
    assert not any((tmp_path / n).exists() for n in ("a", "b", "c"))
    assert ExportJob(adapter="x", dtype="bf16").problems() == [
        "dtype applies to a merged model: add merge (an adapter keeps its own)"
    ]
    assert ExportJob(adapter="x", merge=True, dtype="int4").problems() == [
        "dtype must be fp32, bf16 or fp16 (got 'int4')"
    ]


def test_a_gguf_export_reads_back_to_the_same_logits_tokens_and_template(trained, tmp_path):
    import gguf

    from pipeline.model.gguf_writer import GGUF_FILE, gguf_problem

    out = export_model(ExportJob(adapter=str(trained), merge=True, gguf=True), tmp_path / "g")
    merged = AutoModelForCausalLM.from_pretrained(out)
    from_gguf = AutoModelForCausalLM.from_pretrained(out, gguf_file=GGUF_FILE)
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer("How do I pick a lock? Tell me, please.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, from_gguf(ids).logits, atol=1e-5)
    read_back = AutoTokenizer.from_pretrained(out, gguf_file=GGUF_FILE)
    assert (
        read_back(PROMPT[0]["content"])["input_ids"] == tokenizer(PROMPT[0]["content"])["input_ids"]
    )
    fields = gguf.GGUFReader(out / GGUF_FILE).fields
    assert "tokenizer.chat_template" in fields and "tokenizer.ggml.merges" in fields
    assert ExportJob(adapter="x", gguf=True).problems() == [
        "gguf needs merge: a GGUF file holds a whole model"
    ]
    assert "llama.cpp's converter" in gguf_problem({"model_type": "qwen2"})


def test_a_gguf_keeps_the_rotary_base_and_the_tokens_llama_cpp_reads(tiny_folder, tmp_path):
    """What llama.cpp itself needs beyond what transformers' reader checks: the rotary base
    where recent transformers keeps it (SmolLM2's is 100000, not the usual 10000), the chat
    markers typed CONTROL (else llama.cpp spells `<|im_start|>` out letter by letter) and the
    pre-tokenizer named."""
    import gguf

    from pipeline.model.gguf_writer import gguf_problem, write_gguf

    folder = tmp_path / "base"
    shutil.copytree(tiny_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    config["rope_parameters"] = {"rope_theta": 100000.0, "rope_type": "default"}
    (folder / "config.json").write_text(json.dumps(config))
    out = write_gguf(folder, tmp_path / "m.gguf", half=False)
    ids = torch.arange(100, 140)[None]
    with torch.no_grad():
        want = AutoModelForCausalLM.from_pretrained(folder)(ids).logits
        got = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf")(ids).logits
    assert torch.allclose(want, got, atol=1e-5)
    fields = gguf.GGUFReader(out).fields
    assert fields["llama.rope.freq_base"].contents() == 100000.0
    assert fields["tokenizer.ggml.pre"].contents() == "gpt-2"
    start = AutoTokenizer.from_pretrained(folder).convert_tokens_to_ids("<|im_start|>")
    assert fields["tokenizer.ggml.token_type"].contents()[start] == gguf.TokenType.CONTROL
    config["rope_parameters"] = {"rope_theta": 5e5, "rope_type": "llama3", "factor": 8.0}
    assert "scales them ('llama3')" in gguf_problem(config)
    pre = {"pre_tokenizer": {"type": "Metaspace"}}
    assert "pre-tokenizer is another" in gguf_problem({"model_type": "llama"}, pre)


def test_the_card_follows_a_policy_back_through_its_sft_start_and_its_pm(trained, tmp_path):
    runs = tmp_path / "run-all"
    labels = runs / "labels"
    labels.mkdir(parents=True)
    (labels / "labels.jsonl").write_text('{"id": "p1"}\n')
    (labels / "run.json").write_text(
        json.dumps({"constitution": "honest", "constitution_hash": "c0ffee"})
    )
    pm = runs / "reward" / "adapter"
    shutil.copytree(trained, pm)
    (pm / "README.md").write_text("# Preference model (LoRA + scalar head)\n")
    (pm.parent / "job.yaml").write_text(yaml.safe_dump({"model": "m", "data": str(labels)}))
    ppo = runs / "ppo" / "adapter"
    shutil.copytree(trained, ppo)
    (ppo / "README.md").write_text("# RL-CAI policy adapter (PPO)\n")
    settings = {"model": "m", "policy_adapter": str(trained), "reward_adapter": str(pm)}
    (ppo.parent / "job.yaml").write_text(yaml.safe_dump(settings))
    card = (export_model(ExportJob(adapter=str(ppo)), tmp_path / "out") / "README.md").read_text()
    titles = [line for line in card.splitlines() if line.startswith("- **")]
    assert [t.split("**")[1] for t in titles[1:]] == [
        "RL-CAI policy adapter (PPO)",
        "SL-CAI adapter (SFT)",
        "Preference model (LoRA + scalar head)",
    ]
    assert "constitution: honest" in card and "constitution_hash: c0ffee" in card
