"""The classifier's training recipe end to end: --redraw, the cosine schedule and the
paper-cluttered-mnist preset, each through a tiny run (and resumed where it matters)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from helpers import CLASSIFIER, invoke
from safetensors import safe_open
from safetensors.torch import load_file


def test_redraw_gives_each_epoch_new_images_and_resumes_exactly(cluttered_dir: Path, tmp_path: Path) -> None:
    """40 cluttered images, batch 16: 3 steps an epoch; a run split mid-epoch 1 must redraw epoch 1 identically."""
    common = [*CLASSIFIER, "--dataset", "cluttered-mnist", "--data-dir", cluttered_dir]
    runs = {name: tmp_path / name for name in ("straight", "split", "fixed")}
    for name, extra in (("straight", ["--redraw", "--steps", "5"]), ("split", ["--redraw", "--steps", "4"]),
                        ("fixed", ["--steps", "5"])):  # fmt: skip
        result = invoke("train", *common, "--out", runs[name], *extra)
        assert result.exit_code == 0, result.output
    assert invoke("train", "--resume", runs["split"], "--steps", "5", "--quiet").exit_code == 0
    weights = {name: load_file(run / "checkpoint.safetensors") for name, run in runs.items()}
    assert all(torch.equal(weights["straight"][k], weights["split"][k]) for k in weights["straight"])
    assert not all(torch.equal(weights["straight"][k], weights["fixed"][k]) for k in weights["straight"])
    assert json.loads((runs["straight"] / "run.json").read_text())["settings"]["redraw"] is True


def test_redraw_time_counts_as_training_time(cluttered_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Composing epoch 1's images (made to take 2 s here; the 4 steps take about 0.1 s) is logged training time."""
    import time

    from drawcli_synthetic import ClutteredMNIST

    compose = ClutteredMNIST.load_labelled_epoch

    def slow(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(2.0)
        return compose(self, *args, **kwargs)

    monkeypatch.setattr(ClutteredMNIST, "load_labelled_epoch", slow)
    result = invoke("train", *CLASSIFIER, "--dataset", "cluttered-mnist", "--data-dir", cluttered_dir,
                    "--out", tmp_path / "run", "--redraw", "--steps", "4")  # fmt: skip
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert max(r["wall_time_s"] for r in records if "wall_time_s" in r) >= 2.0


def test_redraw_is_refused_where_it_cannot_apply(idx_dir: Path, tmp_path: Path) -> None:
    result = invoke("train", *CLASSIFIER, "--data-dir", idx_dir, "--out", tmp_path / "a", "--steps", "1", "--redraw")
    assert result.exit_code == 2
    assert "error: the data set 'mnist' draws its training images once, so --redraw does not apply" in result.stderr
    result = invoke("train", "--glimpses", "2", "--rnn-size", "8", "--data-dir", idx_dir, "--out", tmp_path / "b",
                    "--steps", "1", "--redraw", "--quiet")  # fmt: skip
    assert result.exit_code == 2
    assert "error: --redraw is for the classifier (--model classifier): DRAW trains on fixed images" in result.stderr


def straight_and_resumed(common: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Train `common` straight, and again stopped after step 2 (as by Ctrl-C) then resumed: the two run folders."""
    import signal

    from drawcli.training import loop

    class StopAtSecondStep(loop.StopFlag):
        reads = 0

        @property
        def signal(self) -> int | None:
            StopAtSecondStep.reads += 1
            return signal.SIGINT if StopAtSecondStep.reads == 2 else None

        @signal.setter
        def signal(self, value: int | None) -> None:
            pass

    straight, split = tmp_path / "straight", tmp_path / "split"
    assert invoke("train", *common, "--out", straight).exit_code == 0
    with monkeypatch.context() as patch:
        patch.setattr(loop, "StopFlag", StopAtSecondStep)
        result = invoke("train", *common, "--out", split)
    assert result.exit_code == 130 and "interrupted at step 2" in result.stderr
    assert invoke("train", "--resume", split, "--quiet").exit_code == 0
    return straight, split


def same_weights(a: Path, b: Path) -> bool:
    first, second = load_file(a / "checkpoint.safetensors"), load_file(b / "checkpoint.safetensors")
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_cosine_schedule_steps_the_learning_rate_and_resumes_exactly(idx_dir: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A 4-step cosine run stopped after step 2 (as by Ctrl-C) and resumed ends bit for bit as one straight run."""
    common = [*CLASSIFIER, "--data-dir", idx_dir, "--lr-schedule", "cosine", "--lr", "1e-2", "--steps", "4"]
    straight, split = straight_and_resumed(common, tmp_path, monkeypatch)
    assert same_weights(straight, split)
    with safe_open(str(straight / "resume.safetensors"), "pt") as f:
        groups = json.loads(f.metadata()["param_groups"])
    assert groups[0]["lr"] == pytest.approx(1e-2 * (1 + math.cos(math.pi * 3 / 4)) / 2)  # step 3 of 0..3


def test_preset_flags_read_as_a_command_line() -> None:
    from drawcli import presets

    assert presets.command_line({"reader_option": ["init=cover", "sigma=2"], "redraw": True, "binarize": False,
                                 "lr": 3e-4}) == "--reader-option init=cover --reader-option sigma=2 --redraw --no-binarize --lr 0.0003"  # fmt: skip


def _tiny_preset_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> dict:
    """One step of `train --preset paper-cluttered-mnist` shrunk to a tiny model and data set -> its run.json."""
    from helpers import write_idx_dataset

    from drawcli_synthetic import ClutteredMNIST

    monkeypatch.setattr(ClutteredMNIST, "sizes", {"train": 16, "test": 8})
    write_idx_dataset(tmp_path / "mnist", n_train=20, n_test=10)
    size = [] if "no-attention" in extra else ["--read-size", "3"]  # a reader without a window refuses a size
    result = invoke("train", "--preset", "paper-cluttered-mnist", "--rnn-size", "8", "--glimpses", "2", *size,
                    *extra, "--data-dir", tmp_path / "mnist", "--out", tmp_path / "run", "--steps", "1", "--threads", "1",
                    "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads((tmp_path / "run" / "run.json").read_text())


def test_cluttered_preset_reaches_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The measured setting (docs/reproducing.md): the window at gain 1 with its centre on the
    image and Adam 6e-4, through `train --preset`."""
    from drawcli import presets
    from drawcli.cli.options import as_options

    assert presets.command_line(as_options(presets.PRESETS["paper-cluttered-mnist"].settings)) == (
        "--model classifier --dataset cluttered-mnist --reader filterbank --glimpses 8 --rnn-size 256 --read-size 12 "
        "--reader-option init=cover-unscaled --reader-option centre=inside --lr 0.0006 --redraw --lr-schedule cosine "
        "--epochs 75")  # fmt: skip
    run = _tiny_preset_run(tmp_path, monkeypatch)
    assert run["config"]["reader_options"] == {"init": "cover-unscaled", "centre": "inside"}
    assert run["settings"]["lr"] == 6e-4


@pytest.mark.parametrize(("given", "expected"), [(["--reader-option", "init=cover"], {"init": "cover", "centre": "inside"}),
                                                 (["--reader-option", "sigma=2"],
                                                  {"init": "cover-unscaled", "centre": "inside", "sigma": 2}),
                                                 (["--reader-option", "centre=free"], {"init": "cover-unscaled", "centre": "free"}),
                                                 (["--reader", "attn"], {"init": "cover-unscaled", "centre": "inside"}),  # an alias
                                                 (["--reader", "no-attention"], {})])  # fmt: skip
def test_reader_options_merge_with_the_presets_for_the_same_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          given: list[str], expected: dict) -> None:  # fmt: skip
    assert _tiny_preset_run(tmp_path, monkeypatch, *given)["config"]["reader_options"] == expected


def test_the_bf16_cross_entropy_benchmark_counts_the_zero_gradients_by_hand() -> None:
    """experiments/bf16_cross_entropy.py: margin 6.5 right (no gradient in bf16), margin 3 right (a
    gradient), one wrong: half the right answers had none; float32 gives the first -e^-6.5 / (1 + e^-6.5)."""
    from helpers import load_experiment

    script = load_experiment("bf16_cross_entropy")
    logits, labels = torch.tensor([[6.5, 0.0], [3.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0, 0])
    low, high = script.logit_gradients(logits, labels)
    assert low[0, 0].item() == 0.0 and high[0, 0].item() == pytest.approx(-1 / (1 + math.exp(6.5)), rel=1e-3)
    assert low[1, 0].item() != 0.0
    out = script.report(logits, labels)
    assert out["right"] == pytest.approx(2 / 3) and out["right_with_zero_gradient"] == 0.5
