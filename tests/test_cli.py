"""End to end through the command line: train, sample, inspect, plugins, resume, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import TINY_ARGS, invoke, metric_records
from PIL import Image
from safetensors.torch import load_file

from drawcli import __version__


def train_tiny(idx_dir: Path, out: Path, *extra: str):
    return invoke("train", *TINY_ARGS, "--data-dir", idx_dir, "--out", out, "--quiet", *extra)


def test_train_sample_inspect(idx_dir: Path, tmp_path: Path) -> None:
    """A tiny run writes its files; sample makes a GIF of T frames sized by n, grid and scale;
    inspect --json reports the trained config."""
    run = tmp_path / "run"
    result = train_tiny(idx_dir, run, "--steps", "4", "--read-size", "3")
    assert result.exit_code == 0, result.output
    for name in ("checkpoint.safetensors", "resume.safetensors", "metrics.jsonl", "run.json", "samples/epoch-0001.gif",
                 "samples/step-0000004.gif"):
        assert (run / name).is_file(), name
    records = metric_records(run)
    assert records[-1]["event"] == "epoch" and records[-1]["step"] == 4
    assert records[-1]["test_bound"] == pytest.approx(records[-1]["test_recon"] + records[-1]["test_kl"])

    gif, png = tmp_path / "s.gif", tmp_path / "s.png"
    result = invoke("sample", run, "--gif", gif, "--png", png, "--n", "5", "--scale", "3", "--boxes")
    assert result.exit_code == 0, result.output
    side = (3, 2)  # 5 images: 3 columns, 2 rows
    with Image.open(gif) as image:
        assert image.n_frames == 3
        assert image.size == (side[0] * (28 * 3 + 2) + 2, side[1] * (28 * 3 + 2) + 2)
    with Image.open(png) as image:
        assert image.size == (side[0] * (28 * 3 + 2) + 2, side[1] * (28 * 3 + 2) + 2)

    result = invoke("inspect", run / "checkpoint.safetensors", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["config"]["glimpses"] == 3 and report["config"]["read_size"] == 3
    assert report["config"]["enc_size"] == report["config"]["dec_size"] == 16
    assert report["training"]["steps"] == 4
    assert report["components"]["reader"]["installed"] is True
    assert report["parameters"]["total"] == sum(t.numel() for t in load_file(run / "checkpoint.safetensors").values())
    assert "filterbank" in invoke("inspect", run).stdout


def test_training_metric_lines(idx_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every METRICS_EVERY steps: loss = recon + KL and the gradient norm before clipping."""
    from drawcli.training import loop

    monkeypatch.setattr(loop, "METRICS_EVERY", 2)
    run = tmp_path / "run"
    assert train_tiny(idx_dir, run, "--steps", "4", "--sample-every", "0", "--clip", "1e-3").exit_code == 0
    train = metric_records(run, "train")
    assert [r["step"] for r in train] == [2, 4]
    for r in train:
        assert r["loss"] == pytest.approx(r["recon"] + r["kl"])
        assert r["grad_norm"] > 1e-3  # measured before the clip to 1e-3


def test_sample_without_checkpoint_uses_newest_run(idx_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`drawcli sample --gif out.gif` right after `drawcli train` uses runs/<newest> and says so."""
    monkeypatch.chdir(tmp_path)
    assert invoke("train", *TINY_ARGS, "--data-dir", idx_dir, "--steps", "1", "--quiet", "--sample-every", "0").exit_code == 0
    runs = list(Path("runs").iterdir())
    assert len(runs) == 1 and not (runs[0] / "samples").exists()
    result = invoke("sample", "--gif", "out.gif", "--n", "4")
    assert result.exit_code == 0, result.output
    assert str(runs[0]) in result.stderr
    with Image.open("out.gif") as image:
        assert image.n_frames == 3


def test_unknown_reader_exits_2_and_lists_installed() -> None:
    """--reader nonsense is a usage error listing the installed readers."""
    result = invoke("train", "--reader", "nonsense")
    assert result.exit_code == 2
    assert "nonsense" in result.output and "filterbank" in result.output and "no-attention" in result.output


def test_missing_data_folder_is_one_clear_line(tmp_path: Path) -> None:
    """A missing --data-dir fails with the clear message, no traceback and no empty run folder left behind."""
    result = invoke("train", *TINY_ARGS, "--data-dir", tmp_path / "nope", "--out", tmp_path / "run", "--steps", "1")
    assert result.exit_code == 1
    assert "not found" in result.stderr and str(tmp_path / "nope") in result.stderr
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not (tmp_path / "run").exists()


def test_a_failed_train_keeps_an_out_folder_that_was_there(tmp_path: Path) -> None:
    """Only a folder the failed run made itself is removed, never one the user had."""
    (tmp_path / "run").mkdir()
    result = invoke("train", *TINY_ARGS, "--data-dir", tmp_path / "nope", "--out", tmp_path / "run", "--steps", "1")
    assert result.exit_code == 1 and "not found" in result.stderr
    assert (tmp_path / "run").is_dir()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--glimpses", "0"], "glimpses"),
        (["--batch-size", "0"], "batch-size"),
        (["--read-size", "40"], "larger than the image"),
        (["--lr", "-1"], "positive"),
    ],
)
def test_invalid_options_exit_2(args: list[str], message: str, idx_dir: Path, tmp_path: Path) -> None:
    """Invalid option values are usage errors (exit 2) naming the problem."""
    result = invoke("train", *TINY_ARGS, "--data-dir", idx_dir, "--out", tmp_path / "run", *args)
    assert result.exit_code == 2
    assert message in result.output


def test_resume_is_bit_exact(idx_dir: Path, tmp_path: Path) -> None:
    """4 steps straight and 2 + 2 steps with --resume end with bit-identical weights."""
    assert train_tiny(idx_dir, tmp_path / "a", "--steps", "4", "--sample-every", "0").exit_code == 0
    assert train_tiny(idx_dir, tmp_path / "b", "--steps", "2", "--sample-every", "0").exit_code == 0
    result = invoke("train", "--resume", tmp_path / "b", "--steps", "4", "--quiet")
    assert result.exit_code == 0, result.output
    a = load_file(tmp_path / "a" / "checkpoint.safetensors")
    b = load_file(tmp_path / "b" / "checkpoint.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_conflicting_architecture(idx_dir: Path, tmp_path: Path) -> None:
    """Resuming with a different --glimpses says which option conflicts."""
    assert train_tiny(idx_dir, tmp_path / "r", "--steps", "1", "--sample-every", "0").exit_code == 0
    result = invoke("train", "--resume", tmp_path / "r", "--glimpses", "5")
    assert result.exit_code == 2
    assert "--glimpses 5 conflicts" in result.stderr


def test_resume_refuses_a_different_training_setting_and_takes_execution_options(idx_dir: Path, tmp_path: Path) -> None:
    """On resume, --lr (what the run computes) must match the run; --compile (how it runs) is taken."""
    assert train_tiny(idx_dir, tmp_path / "r", "--steps", "2", "--sample-every", "0").exit_code == 0
    result = invoke("train", "--resume", tmp_path / "r", "--steps", "3", "--lr", "0.5")
    assert result.exit_code == 2
    assert "--lr 0.5 conflicts with the run being resumed (lr = 0.001)" in result.stderr
    result = invoke("train", "--resume", tmp_path / "r", "--steps", "3", "--lr", "0.001", "--compile", "on", "--quiet")
    assert result.exit_code == 0, result.output
    assert [r["step"] for r in metric_records(tmp_path / "r", "compile")] == [3]


def test_existing_run_directory_is_not_overwritten(idx_dir: Path, tmp_path: Path) -> None:
    """Training into a directory that holds a run refuses and points at --resume."""
    assert train_tiny(idx_dir, tmp_path / "r", "--steps", "1", "--sample-every", "0").exit_code == 0
    result = train_tiny(idx_dir, tmp_path / "r", "--steps", "1")
    assert result.exit_code == 2 and "--resume" in result.stderr


def test_inspect_bad_inputs(tmp_path: Path) -> None:
    """inspect on a missing file or a non-checkpoint prints one error line, exit 1."""
    result = invoke("inspect", tmp_path / "missing.safetensors")
    assert result.exit_code == 1 and "does not exist" in result.stderr
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    result = invoke("inspect", tmp_path / "junk.safetensors")
    assert result.exit_code == 1 and "not a safetensors file" in result.stderr
    assert "Traceback" not in result.output


def test_version_and_plugins() -> None:
    """--version prints the package version; plugins --json shows aliases as aliases."""
    assert invoke("--version").stdout.strip() == f"drawcli {__version__}"
    listing = json.loads(invoke("plugins", "--json").stdout)
    readers = {r["name"]: r for r in listing["reader"]}
    assert readers["filterbank"]["aliases"] == ["attn"] and "attn" not in readers
    assert readers["no-attention"]["aliases"] == ["none"]
    assert {d["name"] for d in listing["dataset"]} >= {"mnist", "fashion-mnist", "folder"}
