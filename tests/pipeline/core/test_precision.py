"""How training computes on a CPU: bf16 autocast where the CPU has bf16 in hardware (auto),
or as the job says; every training stage and run-all carry the setting."""

import pytest
import torch

from pipeline.config.commands import PPOJob, RunAllJob, SFTJob, build_job
from pipeline.core import precision
from pipeline.core.errors import ConfigError
from pipeline.train.runtime import trl_basics


def cpuinfo(tmp_path, flags: str):
    path = tmp_path / f"cpuinfo-{abs(hash(flags))}"
    path.write_text(f"processor\t: 0\nmodel name\t: a CPU\nflags\t\t: fpu sse2 {flags}\n\n")
    return path


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    assert precision.native_bf16(cpuinfo(tmp_path, "avx2 avx512f avx512_bf16"))
    assert precision.native_bf16(cpuinfo(tmp_path, "avx2 amx_tile amx_bf16"))
    assert not precision.native_bf16(cpuinfo(tmp_path, "avx2 avx512f avx512_vnni"))
    assert not precision.native_bf16(tmp_path / "no-such-file")


def test_auto_follows_the_cpu_and_a_gpu_is_bf16_whatever_is_asked(monkeypatch):
    for native in (True, False):
        monkeypatch.setattr(precision, "native_bf16", lambda native=native: native)
        assert precision.bf16_on("auto", on_cpu=True) is native
        assert precision.bf16_on("bf16", on_cpu=True) and not precision.bf16_on("fp32", True)
        assert precision.bf16_on("fp32", on_cpu=False)


def test_a_run_says_what_it_computed_in_and_why(monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda: True)
    assert precision.described("auto", True) == (
        "bf16 autocast (precision auto: this CPU multiplies bf16 in hardware)"
    )
    assert precision.described("fp32", True) == "fp32 (precision fp32)"
    assert precision.described("fp32", False) == "bf16 (a GPU)"
    monkeypatch.setattr(precision, "native_bf16", lambda: False)
    assert (
        precision.described("auto", True)
        == "fp32 (precision auto: this CPU has no bf16 instruction)"
    )


def test_bf16_forced_on_a_cpu_that_emulates_it_is_warned_about(monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda: False)
    assert "run 5–12× slower than fp32" in precision.slow_warning("bf16")
    assert precision.slow_warning("auto") == precision.slow_warning("fp32") == ""
    monkeypatch.setattr(precision, "native_bf16", lambda: True)
    assert precision.slow_warning("bf16") == ""


def test_computing_autocasts_products_to_bf16_only_when_asked(monkeypatch):
    layer, x = torch.nn.Linear(8, 4), torch.randn(2, 8)
    with precision.computing("bf16", "cpu"):
        assert layer(x).dtype == torch.bfloat16
    with precision.computing("fp32", torch.device("cpu")):
        assert layer(x).dtype == torch.float32
    monkeypatch.setattr(precision, "native_bf16", lambda: False)
    with precision.computing("auto", "cpu"):
        assert layer(x).dtype == torch.float32
    assert layer.weight.dtype == torch.float32  # the weights themselves stay fp32


def test_a_scalar_head_scores_in_fp32_under_autocast():
    from pipeline.cai.reward_model import apply_head

    head, hidden = torch.nn.Linear(64, 1), torch.randn(5, 64)
    with precision.computing("bf16", "cpu"):
        scores = apply_head(head, hidden)
    assert scores.dtype == torch.float32
    assert torch.equal(scores, head(hidden).squeeze(-1).detach())


def test_trl_stages_take_bf16_by_the_jobs_precision(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda: False)
    assert not trl_basics(SFTJob(data="d"), tmp_path, on_cpu=True)["bf16"]
    assert trl_basics(SFTJob(data="d", precision="bf16"), tmp_path, on_cpu=True)["bf16"]
    assert trl_basics(SFTJob(data="d", precision="fp32"), tmp_path, on_cpu=False)["bf16"]


def test_a_precision_other_than_the_three_is_refused_by_name():
    for cls, values in (
        (SFTJob, {"data": "d"}),
        (PPOJob, {"reward_adapter": "pm"}),
        (RunAllJob, {"constitution": "c.yaml"}),
    ):
        with pytest.raises(
            ConfigError, match=r"precision must be one of auto, fp32, bf16 \(got 'fp16'\)"
        ):
            build_job(cls, {**values, "precision": "fp16"})


def test_run_all_hands_its_precision_to_every_training_stage(tmp_path):
    from pipeline.cli import build_parser
    from pipeline.runner.run_all import plan

    parser = build_parser()
    for alignment in ("ppo", "rahf"):
        job = build_job(
            RunAllJob, {"constitution": "c.yaml", "precision": "fp32", "alignment": alignment}
        )
        trained = [s for s in plan(job, tmp_path) if s.kind in ("sft", "reward", alignment)]
        assert len(trained) == 3
        assert all(parser.parse_args(list(s.args)).precision == "fp32" for s in trained)
