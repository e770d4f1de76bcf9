"""drawcli from Python: the README's example runs as written, the functions give what the commands
give, leave the caller's random stream alone, and refuse bad input with the command line's messages."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import invoke, write_idx_dataset
from test_readme import code_block

import drawcli
from drawcli import data
from drawcli.errors import ConfigError, DrawcliError


def test_the_readme_example_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its data folder, ../shared/data/mnist, holds tiny MNIST-format files here."""
    write_idx_dataset(tmp_path / "shared" / "data" / "mnist", n_train=640, n_test=64)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code_block("# Python: train, load, sample, score, classify"), "README.md", "exec"), {})
    lines = printed.getvalue().splitlines()
    assert lines[0] == "draw 10"
    assert lines[1] == "torch.Size([16, 1, 28, 28]) torch.Size([10, 16, 1, 28, 28])"
    bound, iw_bound = map(float, lines[2].split())
    assert 0 < iw_bound <= bound + 1.0  # K = 10: the IW bound is no looser (up to noise)
    assert float(lines[3].split()[1]) <= float(lines[3].split()[0]) + 1.0
    assert len(json.loads(lines[4].replace("tensor(", "").replace(")", ""))) == 16
    assert (tmp_path / "work" / "runs" / "from-python" / "checkpoint.safetensors").is_file()


def test_import_drawcli_and_its_command_line_load_no_torch() -> None:
    """So `drawcli --help` is instant: torch comes with the first model or tensor."""
    code = "import sys, drawcli, drawcli.cli; print('torch' in sys.modules, callable(drawcli.load))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "True"]


def test_sample_repeats_and_leaves_the_global_stream_alone(trained: Path) -> None:
    model = drawcli.load(trained)
    assert model.config.kind == "draw" and not model.training
    torch.manual_seed(7)
    state = torch.get_rng_state()
    first, again = drawcli.sample(model, n=5, seed=3), drawcli.sample(model, n=5, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first.canvases, again.canvases) and torch.equal(first.images, first.canvases[-1])
    assert first.canvases.shape == (3, 5, 1, 28, 28) and len(first.write_windows) == 3
    assert not torch.equal(drawcli.sample(model, n=5, seed=4).images, first.images)


def test_bound_is_what_evaluate_reports(trained: Path, data_dir: Path) -> None:
    """The same images, the same fixed noise: the command's mean bound and IW bound, to the last digit."""
    result = invoke("evaluate", trained, "--data-dir", data_dir, "--samples", "3", "--json", "--device", "cpu")
    report = json.loads(result.stdout)
    images = data.load_images(data.open_dataset("mnist"), "test", data_dir, (1, 28, 28))
    scores = drawcli.bound(drawcli.load(trained), data.binarize_fixed(images, "stochastic"), samples=3)
    assert scores.bound.double().mean().item() == pytest.approx(report["bound"], rel=1e-6)
    assert scores.iw_bound.double().mean().item() == pytest.approx(report["iw_bound"], rel=1e-6)
    assert scores.kl.shape == (len(images), 3)


def test_evaluate_gives_the_commands_report(trained: Path, data_dir: Path, tmp_path: Path) -> None:
    """drawcli.evaluate(RUN) is `drawcli evaluate RUN --json` but for its timing, for DRAW and a classifier."""
    command = json.loads(invoke("evaluate", trained, "--samples", "2", "--json", "--device", "cpu").stdout)
    report = drawcli.evaluate(trained, samples=2)
    assert report == {k: v for k, v in command.items() if k != "seconds"}
    run = drawcli.train(model="classifier", data_dir=data_dir, glimpses=2, rnn_size=8, read_size=3, steps=2,
                        threads=1, device="cpu", out=tmp_path / "clf")  # fmt: skip
    command = json.loads(invoke("evaluate", run, "--json", "--device", "cpu").stdout)
    assert drawcli.evaluate(run) == {k: v for k, v in command.items() if k != "seconds"}
    with pytest.raises(ConfigError, match="^samples is for DRAW models"):
        drawcli.evaluate(run, samples=5)


def test_reconstruct_and_classify_record_windows(trained: Path, tmp_path: Path, data_dir: Path) -> None:
    model = drawcli.load(trained)
    x = torch.bernoulli(torch.full((4, 1, 28, 28), 0.3), generator=torch.Generator().manual_seed(0))
    rebuilt = drawcli.reconstruct(model, x, seed=1)
    assert rebuilt.canvases.shape == (3, 4, 1, 28, 28) and len(rebuilt.read_windows) == 3
    assert torch.equal(drawcli.reconstruct(model, x, seed=1).recon, rebuilt.recon)
    with pytest.raises(ConfigError, match="^a draw model cannot classify; that needs a classifier model$"):
        drawcli.classify(model, x)
    run = drawcli.train(model="classifier", data_dir=data_dir, glimpses=2, rnn_size=8, read_size=3, steps=2,
                        threads=1, device="cpu", out=tmp_path / "clf")  # fmt: skip
    classifier = drawcli.load(run)
    reading = drawcli.classify(classifier, (x * 255).to(torch.uint8))
    assert classifier.config.kind == "classifier" and reading.logits.shape == (4, 10) and len(reading.read_windows) == 2
    with pytest.raises(ConfigError, match="^a classifier model cannot sample; that needs a draw model$"):
        drawcli.sample(classifier)


def test_bad_input_is_refused_with_a_message(trained: Path, tmp_path: Path, data_dir: Path) -> None:
    model = drawcli.load(trained)
    with pytest.raises(ConfigError, match=r"^images must be a tensor \(N, 1, 28, 28\); got \(2, 28, 28\)$"):
        drawcli.bound(model, torch.zeros(2, 28, 28))
    with pytest.raises(ConfigError, match="^DRAW scores binary images: every pixel 0 or 1"):
        drawcli.bound(model, torch.full((2, 1, 28, 28), 0.5))
    with pytest.raises(ConfigError, match="Invalid value for '--glimpses'"):
        drawcli.train(glimpses=0, out=tmp_path / "bad")
    with pytest.raises(DrawcliError, match="already holds a run; continue it with --resume"):
        drawcli.train(data_dir=data_dir, steps=1, out=trained)
    assert not (tmp_path / "bad").exists()
    with pytest.raises(ConfigError, match="^samples must be an integer of at least 0, got -1$"):
        drawcli.bound(model, torch.zeros(2, 1, 28, 28), samples=-1)
    with pytest.raises(ConfigError, match="^limit must be an integer of at least 1, got 0$"):
        drawcli.evaluate(trained, limit=0)
    with pytest.raises(ConfigError, match="^images is an empty batch$"):
        drawcli.bound(model, torch.zeros(0, 1, 28, 28))
    with pytest.raises(ConfigError, match="^quiet is not an option of drawcli.train"):
        drawcli.train(quiet=True)
    if not torch.cuda.is_available():
        with pytest.raises(DrawcliError, match="^--device cuda was asked for, but no CUDA device is available here$"):
            drawcli.load(trained, "cuda")
    bits = torch.bernoulli(torch.full((2, 1, 28, 28), 0.5), generator=torch.Generator().manual_seed(0))
    assert torch.equal(drawcli.bound(model, bits.to(torch.uint8)).bound, drawcli.bound(model, bits).bound)


def test_train_resumes_through_the_command(run: Path) -> None:
    """resume= continues the run in its folder, as `drawcli train --resume` does."""
    torch.set_num_threads(2)
    torch.manual_seed(5)
    state = torch.get_rng_state()
    assert drawcli.train(resume=run, steps=6, threads=1, epochs=None) == run  # None: left out
    assert torch.get_num_threads() == 2 and torch.equal(torch.get_rng_state(), state)
    torch.set_num_threads(1)
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 6
    with pytest.raises(ConfigError, match="^resume continues a run in its own folder"):
        drawcli.train(resume=run, out=run)
