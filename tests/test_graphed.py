"""`train --cuda-graph`: the step a CUDA graph records, computed eagerly on the CPU, is today's step bit for
bit; the loop's graph bookkeeping (warm-up, one graph per batch shape, static buffers, resume) trains
as the eager loop does under a fake graph that replays by re-running the recorded step; a failed
capture warns once and training goes on; the option's checks. The real capture is checked on CUDA."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from helpers import TINY_ARGS, invoke
from safetensors.torch import load_file

from drawcli.config import DrawConfig
from drawcli.errors import ConfigError
from drawcli.training import graphed
from drawcli.training.draw import DrawFamily
from drawcli.training.settings import TrainSettings
from drawcli.training.step import StepOutput, make_optimizer, set_rate, train_step

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
TINY = [*TINY_ARGS, "--quiet", "--sample-every", "0"]
CONFIG = dict(channels=1, height=28, width=28, glimpses=3, enc_size=16, dec_size=16, z_size=4)
RATES = (1e-3, 2e-3, 5e-4, 1e-3, 3e-3, 1e-3)  # a rate that changes every step, as a schedule's does


def _setup(idx_dir: Path, device: str, **settings: Any) -> tuple[DrawFamily, torch.nn.Module, torch.optim.Optimizer]:
    """A tiny DRAW family on the idx data, its model and Adam as the loop builds them."""
    options = TrainSettings(data_dir=str(idx_dir), batch_size=16, seed=3, **settings)
    family = DrawFamily(DrawConfig(**CONFIG), options, torch.device(device))
    torch.manual_seed(options.seed)
    model = family.build()
    optimizer = make_optimizer(model, options.lr, options.beta1, torch.device(device))
    family.prepare(model)
    return family, model, optimizer


def _eager_run(idx_dir: Path, device: str, poison_at: int | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(each step's sums, the weights after each step) of train_step, today's step."""
    family, model, optimizer = _setup(idx_dir, device)
    poison = _poison_hook(model, device)
    stop = torch.zeros((), device=device)
    sums, weights = [], []
    for step, rate in enumerate(RATES):
        idx = torch.arange(step * 16 % 48, step * 16 % 48 + 16, device=device)
        set_rate(optimizer, rate)
        poison.fill_(float("nan") if step == poison_at else 1.0)
        out = train_step(model, optimizer, lambda: family.batch_loss(model, model, idx, step), 10.0, 1 / 16, None, stop,  # noqa: B023
                         family.generators())  # fmt: skip
        sums.append(out.sums.clone())
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    return sums, weights


def _poison_hook(model: torch.nn.Module, device: str) -> torch.Tensor:
    """A device tensor that multiplies one weight's gradient: 1, or NaN to force a non-finite gradient."""
    poison = torch.ones((), device=device)
    next(model.parameters()).register_hook(lambda grad: grad * poison)
    return poison


@pytest.mark.parametrize("poison_at", [None, 2])
def test_recorded_step_on_static_buffers_is_todays_step_bit_for_bit(idx_dir: Path, poison_at: int | None) -> None:
    """On the CPU, the step a graph records (capturable Adam, its rate a tensor written in place, the batch
    copied into one buffer, noise from the family's streams) gives the same sums and weights, bit for
    bit, as train_step; a NaN gradient at step 2 is skipped by both (the weights stay as they were)."""
    expected_sums, expected_weights = _eager_run(idx_dir, "cpu", poison_at)
    family, model, optimizer = _setup(idx_dir, "cpu")
    poison = _poison_hook(model, "cpu")
    graphed.make_capturable(optimizer, torch.device("cpu"))
    buffer, stop = torch.empty(16, dtype=torch.int64), torch.zeros(())
    for step, rate in enumerate(RATES):
        buffer.copy_(torch.arange(step * 16 % 48, step * 16 % 48 + 16))
        set_rate(optimizer, rate)
        poison.fill_(float("nan") if step == poison_at else 1.0)
        out = graphed.recorded_step(model, optimizer, lambda: family.batch_loss(model, model, buffer, step), 10.0, 1 / 16, stop)  # noqa: B023
        torch.testing.assert_close(out.sums, expected_sums[step], rtol=0, atol=0, equal_nan=True)  # bit for bit
        assert torch.equal(torch.cat([p.detach().flatten() for p in model.parameters()]), expected_weights[step]), step
    if poison_at is not None:
        assert not torch.isfinite(expected_sums[poison_at]).all()
        assert torch.equal(expected_weights[poison_at], expected_weights[poison_at - 1])  # skipped
    assert all(isinstance(group["lr"], torch.Tensor) for group in optimizer.param_groups)


def test_decide() -> None:
    gpu, cpu = torch.device("cuda"), torch.device("cpu")
    assert graphed.decide("auto", gpu, 1, "default", 0) == (True, "--cuda-graph auto")
    assert graphed.decide("on", gpu, 1, "default", 100) == (True, "--cuda-graph on")
    assert graphed.decide("off", gpu, 1, "default", 0) == (False, "--cuda-graph off")
    assert graphed.decide("auto", cpu, 1, "default", 0) == (False, "the CPU has no CUDA graphs")
    assert not graphed.decide("on", gpu, 2, "default", 0)[0]
    assert not graphed.decide("on", gpu, 1, "reduce-overhead", 0)[0]
    assert not graphed.decide("on", gpu, 1, "default", None)[0]  # the classifier's family


class FakeGraph:
    """Stands in for a CUDA graph on the CPU: capture runs nothing, each replay re-runs the recorded step
    and writes its sums into the static output, as a replay re-runs the recorded kernels."""

    replays = 0

    def __init__(self, step: Callable[[], StepOutput], out: StepOutput) -> None:
        self.step, self.out = step, out

    def replay(self) -> None:
        FakeGraph.replays += 1
        self.out.sums.copy_(self.step().sums)


def _fake_record(step: Callable[[], StepOutput], generators: list[torch.Generator]) -> tuple[FakeGraph, StepOutput]:
    out = StepOutput(("loss", "recon", "kl", "stop", "objective", "grad_norm"), torch.full((6,), float("nan")))
    return FakeGraph(step, out), out


def _train(idx_dir: Path, out: Path, *extra: Any) -> Any:
    # batch 20 of 48 images: shapes 20 and 8, so the short last batch gets a graph of its own in epoch 3
    return invoke("train", *TINY, "--data-dir", idx_dir, "--batch-size", "20", "--device", "cpu", "--out", out, *extra)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "checkpoint.safetensors")


def _losses(run: Path) -> list[Any]:
    return [{k: v for k, v in r.items() if k != "wall_time_s"} for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]


def test_graph_bookkeeping_trains_like_the_eager_loop(idx_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under a fake graph, --cuda-graph on trains 4 epochs (two eager warm-up steps per shape, then replays,
    the sums copied before the next replay) to the eager loop's weights and log, bit for bit, and a run
    resumed after epoch 2 (its capturable Adam saved with a tensor rate) ends the same."""
    assert _train(idx_dir, tmp_path / "eager", "--epochs", "4", "--cuda-graph", "off", "--lr-schedule", "cosine").exit_code == 0
    monkeypatch.setattr(graphed, "decide", lambda *args: (True, "test"))
    monkeypatch.setattr(graphed, "record", _fake_record)
    FakeGraph.replays = 0
    result = _train(idx_dir, tmp_path / "graph", "--epochs", "4", "--cuda-graph", "on", "--lr-schedule", "cosine")
    assert result.exit_code == 0, result.output
    assert FakeGraph.replays == 12 - 2 * 2  # 12 steps, 2 warm-up steps for each of the 2 shapes
    eager, graph = _weights(tmp_path / "eager"), _weights(tmp_path / "graph")
    assert eager.keys() == graph.keys() and all(torch.equal(eager[k], graph[k]) for k in eager)
    assert _losses(tmp_path / "eager") == _losses(tmp_path / "graph")
    straight, split = tmp_path / "straight", tmp_path / "split"  # a constant rate: cosine's curve follows the length
    assert _train(idx_dir, straight, "--epochs", "4", "--cuda-graph", "on").exit_code == 0
    assert _train(idx_dir, split, "--epochs", "2", "--cuda-graph", "on").exit_code == 0
    result = invoke("train", "--resume", split, "--epochs", "4", "--quiet")
    assert result.exit_code == 0, result.output
    assert all(torch.equal(_weights(straight)[k], _weights(split)[k]) for k in eager)


def test_a_failed_capture_warns_once_and_training_goes_on(idx_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _train(idx_dir, tmp_path / "eager", "--epochs", "3", "--cuda-graph", "off").exit_code == 0

    def failing(*args: Any) -> Any:
        raise RuntimeError("operation not permitted when stream is capturing\nmore detail")

    monkeypatch.setattr(graphed, "decide", lambda *args: (True, "test"))
    monkeypatch.setattr(graphed, "record", failing)
    result = _train(idx_dir, tmp_path / "graph", "--epochs", "3", "--cuda-graph", "on")
    assert result.exit_code == 0, result.output
    line = ("capturing the training step as a CUDA graph failed (RuntimeError: operation not permitted when stream is "
            "capturing); training continues without it")  # fmt: skip
    assert result.output.count(line) == 1, result.output
    eager, graph = _weights(tmp_path / "eager"), _weights(tmp_path / "graph")
    assert all(torch.equal(eager[k], graph[k]) for k in eager)


def test_on_the_cpu_the_option_changes_nothing_and_says_so(idx_dir: Path, tmp_path: Path) -> None:
    """auto is silent on the CPU and keeps the header; an explicit on says once why it cannot."""
    auto = _train(idx_dir, tmp_path / "auto", "--steps", "3", "--cuda-graph", "auto")
    on = _train(idx_dir, tmp_path / "on", "--steps", "3", "--cuda-graph", "on")
    assert auto.exit_code == on.exit_code == 0, auto.output + on.output
    assert "CUDA graph" not in auto.output and "captured" not in auto.output
    assert on.output.count("--cuda-graph on: the CPU has no CUDA graphs, so each step runs as before") == 1
    auto_w, on_w = _weights(tmp_path / "auto"), _weights(tmp_path / "on")
    assert all(torch.equal(auto_w[k], on_w[k]) for k in auto_w)


def test_option_checks(idx_dir: Path, tmp_path: Path) -> None:
    result = _train(idx_dir, tmp_path / "a", "--steps", "1", "--cuda-graph", "always")
    assert result.exit_code == 2 and "always" in result.output
    result = _train(idx_dir, tmp_path / "b", "--steps", "1", "--cuda-graph", "on", "--compile-mode", "reduce-overhead")
    assert result.exit_code != 0 and "choose one of them" in result.output
    with pytest.raises(ConfigError, match="cuda-graph"):
        TrainSettings(cuda_graph="sometimes")
    old = {k: v for k, v in TrainSettings().to_dict().items() if k != "cuda_graph"}  # a run.json from before the option
    assert TrainSettings.from_dict(old).cuda_graph == "off"


# --- on CUDA: the real capture (run by benchmarks/gpu_lease_graphs.sh) ---


def _graph_run(idx_dir: Path, poison_at: int | None) -> tuple[list[torch.Tensor], list[torch.Tensor], list[list[torch.Tensor]]]:
    """(sums, weights, gradients) after each step of graphed.Steps on CUDA: 2 eager warm-up steps, then replays."""
    family, model, optimizer = _setup(idx_dir, "cuda")
    poison = _poison_hook(model, "cuda")
    settings = TrainSettings(data_dir=str(idx_dir), batch_size=16, cuda_graph="on")
    import drawcli.distributed as distributed

    steps = graphed.Steps(family, settings, model, model, optimizer, torch.device("cuda"), distributed.Dist(), print)
    stop = torch.zeros((), device="cuda")
    sums, weights, grads = [], [], []
    for step, rate in enumerate(RATES):
        set_rate(optimizer, rate)
        poison.fill_(float("nan") if step == poison_at else 1.0)
        torch.cuda.set_sync_debug_mode("error" if step > graphed.WARMUP else "default")  # a replay never waits
        try:
            out = steps(torch.arange(step * 16 % 48, step * 16 % 48 + 16, device="cuda"), step, stop)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        sums.append(out.sums.clone())
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        grads.append([p.grad.clone() for p in model.parameters()])
    assert steps.capture and 16 in steps.graphs, steps.reason
    return sums, weights, grads


@cuda
@pytest.mark.parametrize("poison_at", [None, 4])
def test_cuda_graph_matches_eager(idx_dir: Path, poison_at: int | None) -> None:
    """The captured step against train_step on the same seed: sums, gradients and weights within float
    tolerance at every step; a NaN gradient at step 4 (a replay) is skipped by both."""
    expected_sums, expected_weights = _eager_run(idx_dir, "cuda", poison_at)
    sums, weights, _ = _graph_run(idx_dir, poison_at)
    for step in range(len(RATES)):
        torch.testing.assert_close(sums[step], expected_sums[step], rtol=1e-4, atol=1e-5, equal_nan=True)
        torch.testing.assert_close(weights[step], expected_weights[step], rtol=1e-4, atol=1e-6)
    if poison_at is not None:
        assert not torch.isfinite(sums[poison_at]).all()
        assert torch.equal(weights[poison_at], weights[poison_at - 1])


@cuda
def test_cuda_graph_gradients_match_eager(idx_dir: Path) -> None:
    _, _, grads = _graph_run(idx_dir, None)  # first: it seeds and draws from the CUDA stream itself
    family, model, optimizer = _setup(idx_dir, "cuda")
    stop = torch.zeros((), device="cuda")
    for step, rate in enumerate(RATES):
        set_rate(optimizer, rate)
        idx = torch.arange(step * 16 % 48, step * 16 % 48 + 16, device="cuda")
        train_step(model, optimizer, lambda: family.batch_loss(model, model, idx, step), 10.0, 1 / 16, None, stop, family.generators())  # noqa: B023
        for p, g in zip(model.parameters(), grads[step]):
            torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-6)


@cuda
def test_cuda_graph_run_resumes_bit_for_bit(idx_dir: Path, tmp_path: Path) -> None:
    """A captured run stopped after epoch 2 and resumed (warm-up and capture again) ends in the weights of one
    run straight through; the header says the step was captured."""
    cuda_args = ["--device", "cuda", "--cuda-graph", "on"]
    straight = invoke("train", *TINY, "--data-dir", idx_dir, "--batch-size", "20", *cuda_args, "--epochs", "4", "--out", tmp_path / "a")
    assert straight.exit_code == 0, straight.output
    assert "captured as a CUDA graph" in straight.output
    split = invoke("train", *TINY, "--data-dir", idx_dir, "--batch-size", "20", *cuda_args, "--epochs", "2", "--out", tmp_path / "b")
    assert split.exit_code == 0, split.output
    assert invoke("train", "--resume", tmp_path / "b", "--epochs", "4", "--quiet").exit_code == 0
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_results_record_holds_every_field_on_every_line(tmp_path: Path) -> None:
    """benchmarks/results.jsonl: one JSON object a line, each with every field; the writer adds the same."""
    from helpers import load_benchmark

    results = load_benchmark("results")
    lines = results.read()
    assert lines and all(tuple(line) == results.FIELDS for line in lines)
    path = tmp_path / "r.jsonl"
    results.append(results.record(device="cpu", batch=64, images_per_s=120.0), path)
    (line,) = results.read(path)
    assert tuple(line) == results.FIELDS and line["s_per_epoch"] == 500.0 and line["torch"] == torch.__version__
    with pytest.raises(ValueError, match="unknown"):
        results.record(speed=1)
