"""Device paths: the bf16 training path (checked on the CPU too) and CUDA training (skipped without CUDA)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest
import torch
from helpers import TINY_ARGS, make_losses_nan, metric_records, runner
from safetensors.torch import load_file

from drawcli import checkpoint, rundir
from drawcli.cli import app
from drawcli.config import DrawConfig
from drawcli.model import DRAW
from drawcli.training import loop
from drawcli.training.state import restore_rng
from drawcli.training.step import make_optimizer, optimizer_step

TINY = [*TINY_ARGS, "--quiet", "--sample-every", "0"]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _bound_and_grads(model: DRAW, x: torch.Tensor, noise: torch.Tensor, low: torch.dtype | None) -> tuple:
    model.low_precision(low)
    out = model(x, noise=noise)
    grads = torch.autograd.grad(out.recon.mean() + out.kl.sum(1).mean(), list(model.parameters()))
    return out.recon, out.kl, grads


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=cuda)])
def test_bf16_training_path_keeps_the_loss_and_gradients_float32(tiny_config: Callable[..., DrawConfig], device: str) -> None:
    torch.manual_seed(0)
    model = DRAW(tiny_config(glimpses=8, enc_size=48, dec_size=48)).to(device)
    x = (torch.rand(16, 1, 8, 8, device=device) > 0.5).float()
    noise = model.noise(16)
    recon32, kl32, grads32 = _bound_and_grads(model, x, noise, None)
    recon16, kl16, grads16 = _bound_and_grads(model, x, noise, torch.bfloat16)
    assert recon16.dtype == kl16.dtype == torch.float32
    # bf16 keeps 8 bits of mantissa in the LSTM matmuls only: the bound moves by well under 1%
    torch.testing.assert_close(recon16, recon32, rtol=1e-2, atol=0.0)
    torch.testing.assert_close(kl16.sum(1), kl32.sum(1), rtol=5e-2, atol=5e-2)
    assert not torch.equal(recon16, recon32)  # the bf16 path did run
    # every parameter's gradient arrives in float32 and points where float32's does (the issue's 0.999)
    for (name, _), g16, g32 in zip(model.named_parameters(), grads16, grads32):
        assert g16.dtype == torch.float32, name
        cosine = torch.nn.functional.cosine_similarity(g16.double().flatten(), g32.double().flatten(), dim=0)
        assert cosine >= 0.999, (name, float(cosine))


def test_train_with_amp_on_the_cpu(idx_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--amp bf16 makes the LSTMs' bf16 weights once per training step and none for the held-out evaluation."""
    from drawcli.lstm import LSTMCell

    made: list[torch.dtype] = []
    copy = LSTMCell.low_precision_weight
    monkeypatch.setattr(LSTMCell, "low_precision_weight", lambda self, dtype: made.append(dtype) or copy(self, dtype))
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", *TINY, "--data-dir", str(idx_dir), "--out", str(run), "--steps", "3",
                                 "--amp", "bf16", "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert made == [torch.bfloat16] * 6  # encoder and decoder, 3 steps; the evaluation after them adds none
    assert json.loads((run / "run.json").read_text())["settings"]["amp"] == "bf16"
    assert 0 < checkpoint.read_info(run).training["last_test"]["bound"] < 1e4


def test_bad_amp_value_exits_2(idx_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", *TINY, "--data-dir", str(idx_dir), "--out", str(tmp_path / "r"), "--amp", "fp8"])
    assert result.exit_code == 2
    assert "'fp8' is not one of 'off', 'bf16'" in result.output


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=cuda)])
def test_fused_adam_skips_a_nonfinite_step_on_the_device(device: str) -> None:
    layer = torch.nn.Linear(3, 2).to(device)
    optimizer = make_optimizer(layer, 1e-3, 0.9, torch.device(device))
    assert optimizer.defaults["fused"]
    before = [p.detach().clone() for p in layer.parameters()]
    layer(torch.ones(1, 3, device=device)).sum().backward()
    optimizer_step(optimizer, torch.tensor(False, device=device))
    assert all(torch.equal(p, q) for p, q in zip(layer.parameters(), before))
    optimizer_step(optimizer, torch.tensor(True, device=device))
    assert not torch.equal(layer.weight, before[0])
    assert {s["step"].item() for s in optimizer.state.values()} == {1.0}


@cuda
def test_cuda_forward_matches_the_cpu(tiny_config: Callable[..., DrawConfig]) -> None:
    torch.manual_seed(0)
    model = DRAW(tiny_config(glimpses=4))
    x = (torch.rand(8, 1, 8, 8) > 0.5).float()
    noise = model.noise(8)
    cpu = model(x, noise=noise)
    gpu = model.to("cuda")(x.cuda(), noise=noise.cuda())
    torch.testing.assert_close(gpu.recon.cpu(), cpu.recon, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gpu.kl.cpu(), cpu.kl, rtol=1e-4, atol=1e-4)


@cuda
@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_train_on_cuda_and_load_on_the_cpu(idx_dir: Path, tmp_path: Path, amp: str) -> None:
    """30 steps cross a host sync point (every 25 steps on CUDA) and the epoch end; the run resumes."""
    run = tmp_path / "run"
    args = ["train", *TINY, "--data-dir", str(idx_dir), "--out", str(run), "--batch-size", "2", "--device", "cuda",
            "--amp", amp]  # fmt: skip
    result = runner.invoke(app, [*args, "--steps", "30"])
    assert result.exit_code == 0, result.output
    info = checkpoint.read_info(run)
    assert info.training["device"] == "cuda" and info.training["steps"] == 30
    model, _ = checkpoint.load_model(run / rundir.CHECKPOINT, torch.device("cpu"))
    assert all(p.device.type == "cpu" and torch.isfinite(p).all() for p in model.parameters())
    result = runner.invoke(app, ["train", "--resume", str(run), "--steps", "40", "--quiet"])
    assert result.exit_code == 0, result.output
    assert checkpoint.read_info(run).training["steps"] == 40


@cuda
def test_cuda_hot_loop_does_not_wait_for_the_gpu_each_step(idx_dir: Path, tmp_path: Path) -> None:
    """25 more steps add one host read (the metrics every 25 steps), not 25: counted by CUDA's sync debug mode."""
    import warnings

    def synchronizations(steps: int, out: Path) -> int:
        args = ["train", *TINY, "--data-dir", str(idx_dir), "--out", str(out), "--batch-size", "1", "--device", "cuda"]
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = runner.invoke(app, [*args, "--steps", str(steps)])
        finally:
            torch.cuda.set_sync_debug_mode("default")
        assert result.exit_code == 0, result.output
        return sum("synchroniz" in str(w.message) for w in caught)

    extra = synchronizations(30, tmp_path / "a") - synchronizations(5, tmp_path / "b")
    assert extra <= 3, f"{extra} more host synchronizations for 25 more steps"


def test_plain_adam_fallback_still_skips_nonfinite_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where fused Adam is unavailable, plain Adam is used and the skip is decided on the host."""
    real = torch.optim.Adam

    def no_fused(params, **kwargs):  # type: ignore[no-untyped-def]
        if kwargs.get("fused"):
            raise RuntimeError("`fused=True` requires all the params to be on a supported device")
        return real(params, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", no_fused)
    layer = torch.nn.Linear(3, 2)
    optimizer = make_optimizer(layer, 1e-3, 0.9, torch.device("cpu"))
    assert not optimizer.defaults.get("fused")
    before = layer.weight.detach().clone()
    layer(torch.ones(1, 3)).sum().backward()
    optimizer_step(optimizer, torch.tensor(False))
    assert torch.equal(layer.weight, before) and not optimizer.state
    optimizer_step(optimizer, torch.tensor(True))
    assert not torch.equal(layer.weight, before)


def test_binarization_stream_restarts_when_a_run_changes_device() -> None:
    """A CUDA generator's state (16 bytes of Philox seed and offset) cannot seed the CPU one:
    the stream restarts from a seed derived from it, the same on every such resume."""
    cuda_like = {"torch": torch.get_rng_state(), "binarize": torch.arange(16, dtype=torch.uint8)}
    streams = []
    for _ in range(2):
        gen = torch.Generator()
        assert restore_rng(cuda_like, {"binarize": gen}, torch.device("cpu")) is False
        streams.append(torch.rand(4, generator=gen))
    assert torch.equal(streams[0], streams[1])
    assert torch.equal(streams[0], torch.rand(4, generator=torch.Generator().manual_seed(120)))  # 0 + 1 + ... + 15
    same = torch.Generator().manual_seed(5)
    assert restore_rng({"torch": torch.get_rng_state(), "binarize": same.get_state()}, {"binarize": torch.Generator()},
                       torch.device("cpu"))


def _train_lines(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "wall_time_s"} for r in metric_records(run, "train")]


def test_metrics_read_in_groups_change_nothing(idx_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CUDA's hot loop (metrics read every k steps) run on the CPU: the same log lines and weights, bit for bit.

    48 images in batches of 4 are 12 steps an epoch: reads after steps 5 and 10, at the epoch's
    end (12), and at the run's end (14).
    """
    monkeypatch.setattr(loop, "METRICS_EVERY", 1)
    runs = {}
    for every in (1, 5):
        monkeypatch.setattr(loop, "SYNC_EVERY", {"cpu": every})
        runs[every] = tmp_path / f"every{every}"
        result = runner.invoke(app, ["train", *TINY, "--data-dir", str(idx_dir), "--out", str(runs[every]),
                                     "--batch-size", "4", "--steps", "14", "--device", "cpu"])  # fmt: skip
        assert result.exit_code == 0, result.output
    assert [r["step"] for r in _train_lines(runs[5])] == list(range(1, 15))
    assert _train_lines(runs[5]) == _train_lines(runs[1])
    for name in (rundir.CHECKPOINT, rundir.RESUME):
        first, second = load_file(runs[1] / name), load_file(runs[5] / name)
        assert first.keys() == second.keys()
        assert all(torch.equal(first[k], second[k]) for k in first)


def test_nonfinite_steps_found_at_a_grouped_read(idx_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With reads every 5 steps, three NaN steps in a row still stop the run, named by their steps, nothing saved."""
    monkeypatch.setattr(loop, "SYNC_EVERY", {"cpu": 5})
    make_losses_nan(monkeypatch)
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", *TINY, "--data-dir", str(idx_dir), "--out", str(run), "--batch-size", "4",
                                 "--steps", "20", "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 1
    assert "training stopped at step 3: the loss or gradient was not finite for 3 steps in a row (steps 1-3" in result.output
    assert "no checkpoint had been saved yet" in result.output
    assert not (run / rundir.CHECKPOINT).exists()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=cuda)])
def test_compile_mode_reduce_overhead_trains_like_eager(idx_dir: Path, tmp_path: Path, device: str) -> None:
    """--compile-mode reduce-overhead (CUDA graphs on a GPU) implies --compile on, is saved with the
    run, and gives the eager run's epoch: 12 steps of replayed graphs, forward and backward."""
    epochs = {}
    for name, extra in (("eager", []), ("graphs", ["--compile-mode", "reduce-overhead"])):
        run = tmp_path / name
        args = ["train", *TINY, "--data-dir", str(idx_dir), "--out", str(run), "--batch-size", "4", "--steps", "12",
                "--device", device, *extra]  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        (epochs[name],) = metric_records(run, "epoch")
    settings = json.loads((tmp_path / "graphs" / "run.json").read_text())["settings"]
    assert settings["compile"] == "on" and settings["compile_mode"] == "reduce-overhead"
    assert [r["step"] for r in metric_records(tmp_path / "graphs", "compile")] == [1]
    for key in ("train_loss", "train_kl", "test_bound", "test_kl"):
        assert epochs["graphs"][key] == pytest.approx(epochs["eager"][key], rel=1e-4), key
