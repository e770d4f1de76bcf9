"""Evaluation (bound, importance weighting), reconstruction GIFs, presets and plots."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import TINY_ARGS, error_line, invoke, write_idx_dataset
from PIL import Image

from drawcli import bounds, presets, render
from drawcli.checkpoint import load_model
from drawcli.config import DrawConfig
from drawcli.model import DRAW


@pytest.fixture
def model(tiny_config) -> DRAW:
    torch.manual_seed(0)
    return DRAW(tiny_config(glimpses=4)).eval()


@pytest.fixture
def x() -> torch.Tensor:
    return torch.bernoulli(torch.full((32, 1, 8, 8), 0.3), generator=torch.Generator().manual_seed(1))


def test_gaussian_log_prob_matches_torch_distributions(model: DRAW) -> None:
    """log Q(z | h) and log P(z) equal torch's Normal log-densities summed over z."""
    h = torch.randn(5, 16)
    z = torch.randn(5, 4)
    log_q, log_p = model.sampler.log_prob(z, h)
    mu, log_sigma = model.sampler.posterior(h).chunk(2, dim=1)
    expected_q = torch.distributions.Normal(mu, log_sigma.exp()).log_prob(z).sum(1)
    expected_p = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    assert torch.allclose(log_q, expected_q, atol=1e-5) and torch.allclose(log_p, expected_p, atol=1e-5)


def test_iw_with_one_sample_is_the_sampled_bound(model: DRAW, x: torch.Tensor) -> None:
    """K = 1: -log w = recon + sum_t (log Q - log P) of the same draw (same seed), exactly."""
    torch.manual_seed(7)
    iw = bounds.importance_weighted(model, x, samples=1)
    torch.manual_seed(7)
    out = model(x, densities=True)
    assert torch.allclose(iw, (out.recon - out.log_ratio).double(), atol=1e-4)


def test_sampled_kl_averages_to_the_analytic_kl(model: DRAW, x: torch.Tensor) -> None:
    """E_Q[log Q - log P] is the KL: over many draws the K = 1 estimate meets the analytic bound."""
    torch.manual_seed(3)
    xs = x.repeat(200, 1, 1, 1)
    with torch.no_grad():
        out = model(xs, densities=True)
    sampled = -out.log_ratio
    analytic = out.kl.sum(dim=1)
    se = sampled.std().item() / math.sqrt(len(sampled))
    assert abs(sampled.mean().item() - analytic.mean().item()) < 4 * se


def test_iw_tightens_with_more_samples(model: DRAW, x: torch.Tensor) -> None:
    """Averaged over a batch, K = 20 gives a lower (tighter) bound than K = 1, and than the bound."""
    torch.manual_seed(0)
    k1 = bounds.importance_weighted(model, x, samples=1).mean()
    k20 = bounds.importance_weighted(model, x, samples=20, chunk=128).mean()
    result = bounds.per_image(model, x, torch.device("cpu"), batch_size=16)
    assert k20 < k1 and k20 < result.bound.double().mean()


def test_summary_kl_per_glimpse_sums_to_kl(model: DRAW, x: torch.Tensor) -> None:
    """The per-glimpse KL sums to the total; the bound is recon + KL; SE is std / sqrt(N)."""
    result = bounds.per_image(model, x, torch.device("cpu"), batch_size=10, samples=2)
    summary = bounds.summarize(result)
    assert len(summary["kl_per_glimpse"]) == 4
    assert sum(summary["kl_per_glimpse"]) == pytest.approx(summary["kl"], rel=1e-6)
    assert summary["bound"] == pytest.approx(summary["recon"] + summary["kl"], rel=1e-6)
    assert summary["bound_se"] == pytest.approx(result.bound.std().item() / math.sqrt(32), rel=1e-6)
    again = bounds.summarize(bounds.per_image(model, x, torch.device("cpu"), batch_size=10, samples=2))
    assert again == summary  # a fixed RNG stream of its own: evaluation repeats exactly


@pytest.fixture
def run(tmp_path: Path) -> Path:
    write_idx_dataset(tmp_path / "data", n_train=32, n_test=12)
    result = invoke("train", *TINY_ARGS, "--data-dir", tmp_path / "data", "--out", tmp_path / "run", "--steps", "2",
                    "--quiet", "--sample-every", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    return tmp_path / "run"


def test_evaluate_cli_json(run: Path) -> None:
    """evaluate --json reports both bounds with standard errors and states the binarization."""
    result = invoke("evaluate", run, "--samples", "3", "--json", "--threads", "1")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["images"] == 12 and report["samples"] == 3
    assert "binarized stochastically once with the fixed seed" in report["data"]
    assert report["bound"] == pytest.approx(report["recon"] + report["kl"], rel=1e-6)
    assert report["bound_se"] > 0 and report["iw_bound_se"] > 0
    assert len(report["kl_per_glimpse"]) == 3


def test_evaluate_of_one_image_gives_null_standard_errors_and_prints_k_apart(run: Path) -> None:
    """One image has no standard error: --json says null (JSON has no NaN); the text names K apart from the bound."""
    from drawcli.heldout import finite

    assert finite({"a": float("nan"), "b": [1.5, float("inf")], "c": "x"}) == {"a": None, "b": [1.5, None], "c": "x"}
    result = invoke("evaluate", run, "--samples", "1000", "--limit", "1", "--json", "--threads", "1")
    assert result.exit_code == 0, result.output
    assert "NaN" not in result.stdout
    report = json.loads(result.stdout)
    assert report["bound_se"] is None and report["iw_bound_se"] is None and report["bound"] > 0
    result = invoke("evaluate", run, "--samples", "1000", "--limit", "2", "--threads", "1")
    assert result.exit_code == 0, result.output
    assert re.search(r"^IW bound +\d+\.\d\d ± \d+\.\d\d nats  \(K = 1000; \d+\.\d\d (tighter|looser, which .*)\)$", result.output, re.M)


def test_one_importance_sample_is_not_called_tighter(run: Path) -> None:
    """With K = 1 the importance-weighted figure is the bound's own estimator; it said '-1.86 tighter'.
    A K > 1 figure that came out above the bound is sampling noise, not a negative tightening."""
    from drawcli.cli.evaluate import _iw_note

    result = invoke("evaluate", run, "--samples", "1", "--limit", "4", "--threads", "1")
    assert result.exit_code == 0, result.output
    assert re.search(r"^IW bound +\d+\.\d\d ± \d+\.\d\d nats  \(K = 1: the same estimator as the bound, from other noise; "
                     r"K > 1 gives a tighter bound\)$", result.output, re.M)  # fmt: skip
    assert _iw_note(4, -0.5) == "K = 4; 0.50 looser, which is sampling noise: on average it is never looser"
    assert _iw_note(4, 0.5) == "K = 4; 0.50 tighter"


def test_reconstruct_gif_frames_size_and_read_box(run: Path, tmp_path: Path) -> None:
    """T frames of two grids side by side; frame 0 shows the read window (green) where the
    first window (decoded from h_dec = 0, so the reader's bias alone) puts it."""
    gif = tmp_path / "rec.gif"
    result = invoke("reconstruct", run, "--gif", gif, "--n", "4", "--scale", "2")
    assert result.exit_code == 0, result.output
    cell = 28 * 2 + 2
    grid = 2 * cell + 2
    with Image.open(gif) as image:
        assert image.n_frames == 3
        assert image.size == (2 * grid + render.SIDE_BY_SIDE_GAP, grid)
        image.seek(0)
        first = np.asarray(image.convert("RGB"))
    model, _ = load_model(run)
    window = model.reader.window
    from drawcli_filterbank import decode_window

    w = decode_window(window.bias[None].detach(), 28, 28, model.config.read_size)
    x0, y0, _, _ = render.window_boxes(w, 2, 28, 28)[0].round().int().tolist()
    pad = render.GRID_PADDING
    assert tuple(first[pad + max(y0, 1), pad + x0]) == render.READ_COLOUR


def test_presets_resolve_and_explicit_options_win(tmp_path: Path) -> None:
    """paper-mnist is the documented setting; explicit options override a preset's values."""
    assert presets.PRESETS["paper-mnist"].settings == {
        "dataset": "mnist", "reader": "filterbank", "writer": "filterbank", "glimpses": 64,
        "enc_size": 256, "dec_size": 256, "z_size": 100, "read_size": 2, "write_size": 5,
    }  # fmt: skip
    assert presets.build("paper-mnist")[0] == DrawConfig()  # the paper's MNIST setting is DrawConfig's default
    write_idx_dataset(tmp_path / "data", n_train=16, n_test=4)
    result = invoke("train", "--preset", "paper-mnist-noattn", *TINY_ARGS, "--data-dir", tmp_path / "data",
                    "--out", tmp_path / "run", "--steps", "1", "--quiet", "--sample-every", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    config = json.loads(invoke("inspect", tmp_path / "run", "--json").stdout)["config"]
    assert (config["reader"], config["writer"]) == ("no-attention", "no-attention")
    assert (config["glimpses"], config["enc_size"], config["z_size"]) == (3, 16, 4)
    assert invoke("train", "--preset", "paper-nonsense").exit_code == 2


def test_plot_writes_png_of_documented_size(tmp_path: Path) -> None:
    """plot turns a metrics log into a 1000 x 400 PNG, skipping a torn last line."""
    pytest.importorskip("matplotlib")
    lines = [json.dumps({"event": "train", "step": s, "loss": 200 - s, "wall_time_s": s / 10}) for s in (50, 100)]
    lines.append(json.dumps({"event": "epoch", "step": 100, "test_bound": 150.0, "wall_time_s": 11.0}))
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"event": "tr')
    result = invoke("plot", tmp_path, "--png", tmp_path / "c.png")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "c.png") as image:
        assert image.size == (1000, 400)


def test_plot_draws_a_classifiers_test_loss_and_labels_clashing_runs_by_path(tmp_path: Path) -> None:
    """A classifier's epochs carry test_loss, not test_bound: that is the held-out curve; two runs
    whose folders share a name are told apart by their paths."""
    from drawcli.plot import run_labels, test_key

    assert test_key({"test_bound": 90.0}) == "test_bound" and test_key({"test_loss": 0.2}) == "test_loss"
    assert test_key({"step": 3}) is None
    (tmp_path / "a" / "run").mkdir(parents=True)
    (tmp_path / "b" / "run").mkdir(parents=True)
    assert run_labels([tmp_path / "a" / "run", tmp_path / "b" / "run"]) == [str(tmp_path / "a" / "run"), str(tmp_path / "b" / "run")]
    assert run_labels([tmp_path / "a" / "run", tmp_path / "b"]) == ["run", "b"]
    pytest.importorskip("matplotlib")
    lines = [json.dumps({"event": "train", "step": s, "loss": 2.3 - s / 100, "wall_time_s": s / 10}) for s in (50, 100)]
    lines.append(json.dumps({"event": "epoch", "step": 100, "test_loss": 1.1, "test_error": 40.0, "wall_time_s": 11.0}))
    (tmp_path / "a" / "run" / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    from matplotlib.axes import Axes

    drawn: list[tuple[str, list[float]]] = []
    real_plot = Axes.plot

    def recording_plot(self: Axes, x: Any, y: Any, *args: Any, **kwargs: Any) -> Any:
        drawn.append((kwargs.get("label", ""), list(y)))
        return real_plot(self, x, y, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Axes, "plot", recording_plot)
        result = invoke("plot", tmp_path / "a" / "run", "--png", tmp_path / "c.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c.png").stat().st_size > 0
    assert drawn.count(("run test loss", [1.1])) == 2  # the held-out curve, against steps and against time


@pytest.mark.parametrize(("content", "message"), [
    (b"step,loss\n1,2.0\n", "line 1 is not a JSON record with a step; a run's metrics.jsonl holds one per line"),
    (b'{"event": "train", "loss": 2.0}\n[1, 2]\n', "line 1 is not a JSON record with a step; a run's metrics.jsonl holds one per line"),
    (b"PK\x03\x04\xff\x00", "byte 4 is not UTF-8 text; a run's metrics.jsonl holds one JSON record per line"),
])  # fmt: skip
def test_plot_says_a_file_that_is_not_a_metrics_log_is_unreadable(tmp_path: Path, content: bytes, message: str) -> None:
    """It said 'holds no metrics yet' (and a binary file was a traceback); an empty log or a lone torn line still is 'no metrics yet'."""
    log = tmp_path / "metrics.jsonl"
    log.write_bytes(content)
    assert error_line(invoke("plot", log, "--png", tmp_path / "c.png")) == f"error: cannot read metrics log {log}: {message}"
    for empty in (b"", b'{"event": "tr'):
        log.write_bytes(empty)
        assert error_line(invoke("plot", log, "--png", tmp_path / "c.png")) == f"error: {log} holds no metrics yet"


@pytest.mark.parametrize(("ymax", "message"), [("nan", "--ymax must be a positive number of nats, got nan"),
                                               ("0", "--ymax must be a positive number of nats, got 0"),
                                               ("1.0", "--ymax 1 is at or below every curve (the lowest value drawn is 1.10 nats)")])  # fmt: skip
def test_plot_refuses_a_ymax_that_would_hide_the_curves(tmp_path: Path, ymax: str, message: str) -> None:
    lines = [json.dumps({"event": "train", "step": 50, "loss": 2.0, "wall_time_s": 5.0}),
             json.dumps({"event": "epoch", "step": 50, "test_loss": 1.1, "wall_time_s": 6.0})]  # fmt: skip
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    result = invoke("plot", tmp_path, "--png", tmp_path / "c.png", "--ymax", ymax)
    assert result.exit_code == 2 and message in result.output and not (tmp_path / "c.png").exists()


def test_metrics_mirrored_to_tensorboard_when_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a SummaryWriter importable, every numeric metric also goes to RUN_DIR/tensorboard."""
    import sys
    import types

    calls: list[tuple] = []

    class FakeWriter:
        def __init__(self, log_dir: str) -> None:
            calls.append(("dir", log_dir))

        def add_scalar(self, tag: str, value: float, step: int) -> None:
            calls.append((tag, value, step))

        def flush(self) -> None:
            pass

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    from drawcli.metrics import MetricsLog

    log = MetricsLog(tmp_path / "metrics.jsonl", tmp_path / "tensorboard")
    log.write({"event": "epoch", "step": 10, "test_bound": 99.5, "epochs": 1.0})
    assert calls == [("dir", str(tmp_path / "tensorboard")), ("epoch/test_bound", 99.5, 10)]
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {"event": "epoch", "step": 10, "test_bound": 99.5, "epochs": 1.0}
