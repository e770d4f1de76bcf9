"""What a user types, taken as they meant it: paths and names are text (never rich markup), a
relative --data-dir still works from another folder, and impossible values or folders are one line."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pytest
from helpers import TINY_ARGS, error_line, invoke, rewrite_metadata

from drawcli import devices
from drawcli.errors import DrawcliError

TINY = [*TINY_ARGS, "--quiet", "--sample-every", "0"]


def test_brackets_in_paths_are_printed_as_typed(data_dir: Path, tmp_path: Path) -> None:
    """A path such as 'w[/i]' once crashed rich's markup parser after the work was done, and 'r[red]x'
    printed as 'rx'."""
    run = tmp_path / "r[red]x"
    result = invoke("train", *TINY, "--data-dir", data_dir, "--out", run, "--steps", "1")
    assert result.exit_code == 0, result.output
    assert f"checkpoint {run / 'checkpoint.safetensors'}" in result.output
    (tmp_path / "w[/i]").mkdir(parents=True)  # the folder i inside w[
    png = tmp_path / "w[/i]" / "s.png"
    result = invoke("sample", run, "--n", "1", "--png", png, "--threads", "1")
    assert result.exit_code == 0, result.output
    assert f"wrote {png}: 1 samples" in result.stdout and png.is_file()
    result = invoke("evaluate", run, "--threads", "1")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{run / 'checkpoint.safetensors'}: mnist test split")


def test_the_presets_table_shows_an_extras_brackets(monkeypatch: pytest.MonkeyPatch) -> None:
    from drawcli.cli.app import out

    monkeypatch.setattr(out, "width", 1000)  # one line a preset
    result = invoke("presets")
    assert result.exit_code == 0
    assert "needs scipy: drawcli[svhn])" in result.stdout


def test_threads_beyond_four_a_core_are_refused(run: Path, tmp_path: Path) -> None:
    """Tens of thousands of OpenMP threads crashed the process (a segmentation fault)."""
    limit = devices.MAX_THREADS_PER_CORE * devices.usable_cores()
    with pytest.raises(DrawcliError, match=f"--threads {limit + 1} is more than 4 a core .*; use {limit} or fewer"):
        devices.set_threads(limit + 1)
    line = error_line(invoke("sample", run, "--threads", 100000, "--png", tmp_path / "s.png"))
    assert line.startswith("error: --threads 100000 is more than 4 a core")
    assert not (tmp_path / "s.png").exists()


def test_a_relative_data_dir_is_recorded_absolute(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Later commands read the run's data folder from any folder: train records it absolute."""
    monkeypatch.chdir(data_dir.parent)
    result = invoke("train", *TINY, "--data-dir", data_dir.name, "--out", tmp_path / "run", "--steps", "1")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "run.json").read_text())["settings"]["data_dir"] == str(data_dir)
    monkeypatch.chdir(tmp_path)
    assert invoke("evaluate", "run", "--threads", "1").exit_code == 0


def test_a_run_that_recorded_a_relative_data_dir_says_so_when_not_found(run: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Runs made before the change recorded --data-dir as typed; from elsewhere the error says why it fails."""
    rewrite_metadata(run / "checkpoint.safetensors", lambda m: m["training"].update(data_dir="../data"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    line = error_line(invoke("evaluate", run, "--threads", "1"))
    assert line.endswith(f"(the run recorded its data folder as ../data, which is not a folder from {elsewhere})")


def test_an_adam_rate_above_1_is_refused(data_dir: Path, tmp_path: Path) -> None:
    line = error_line(invoke("train", *TINY, "--data-dir", data_dir, "--out", tmp_path / "r", "--lr", "2"), code=2)
    assert line == "error: --lr 2.0 must be a rate above 0 and at most 1 (Adam moves each weight by about the rate every step), e.g. 1e-3"
    assert not (tmp_path / "r").exists()


def test_a_run_whose_held_out_loss_is_not_finite_stops_without_saving(data_dir: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Finite training losses can still take weights to infinity; the run used to end 'done' with a
    test bound of nan and exit 0."""
    from drawcli.training import loop

    monkeypatch.setattr(loop, "held_out", lambda *args: {"bound": math.nan, "recon": 1.0, "kl": math.inf})
    line = error_line(invoke("train", *TINY, "--data-dir", data_dir, "--out", tmp_path / "r", "--steps", "3"))
    assert line == ("error: training stopped at step 3: the held-out bound, kl is not finite, so the weights have diverged; "
                    "no checkpoint had been saved yet; try a lower --lr or a smaller --clip")  # fmt: skip
    assert not (tmp_path / "r" / "checkpoint.safetensors").exists()


def test_out_must_not_be_a_folder_of_other_files(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--out ''` trained into the current folder, and --out DATA mixed a run into the data; a folder
    left by a run that failed before its first save (run.json alone) is taken, and dot-files are not counted."""
    (tmp_path / "photo.png").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    for out in ("", tmp_path):
        line = error_line(invoke("train", *TINY, "--data-dir", data_dir, "--out", out, "--steps", "1"), code=2)
        assert line == f"error: {tmp_path} holds files a run does not write; --out names a folder for the run alone: pick a new or empty one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]
    failed = tmp_path / "failed"
    failed.mkdir()
    (failed / "run.json").write_text("{}")
    (failed / ".DS_Store").write_bytes(b"")
    assert invoke("train", *TINY, "--data-dir", data_dir, "--out", failed, "--steps", "1").exit_code == 0


def test_a_checkpoint_cut_inside_its_header_reads_as_truncated(run: Path, tmp_path: Path) -> None:
    """Cut inside the JSON header it said 'header length N is impossible'; a file that is not
    safetensors at all (run.json) says to pass the folder."""
    raw = (run / "checkpoint.safetensors").read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(raw[: 8 + header_len // 2])
    line = error_line(invoke("inspect", cut))
    assert line == f"error: {cut} is truncated: its header needs {header_len} bytes, the file holds {header_len // 2} after the length"
    line = error_line(invoke("inspect", run / "run.json"))
    assert line.endswith("is impossible); pass a run's folder or its checkpoint.safetensors")


@pytest.mark.parametrize("kind, size", [("reader", "--read-size"), ("writer", "--write-size")])
def test_a_size_for_a_component_without_a_window_is_refused(data_dir: Path, tmp_path: Path, kind: str, size: str) -> None:
    """`--reader none --read-size 5` trained as if the size had not been given."""
    line = error_line(invoke("train", *TINY, "--data-dir", data_dir, "--out", tmp_path / "r", f"--{kind}", "none", size, "3"), code=2)
    assert line == (f"error: {size} sizes the {kind}'s window, but {kind} 'none' has no window, so it would be ignored: "
                    f"drop {size}, or pick a {kind} with a window (see `drawcli plugins`)")  # fmt: skip
    assert not (tmp_path / "r").exists()


def test_the_window_is_asked_of_the_component_not_its_name(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import drawcli_filterbank

    monkeypatch.setattr(drawcli_filterbank.FilterbankReader, "produces_windows", False)
    line = error_line(invoke("train", *TINY, "--data-dir", data_dir, "--out", tmp_path / "r", "--read-size", "3"), code=2)
    assert line.startswith("error: --read-size sizes the reader's window, but reader 'filterbank' has no window")


def test_a_presets_sizes_do_not_refuse_a_reader_without_a_window(data_dir: Path, tmp_path: Path) -> None:
    """paper-mnist sets --read-size 2 and --write-size 5; replacing its components drops them silently."""
    result = invoke("train", "--preset", "paper-mnist", "--reader", "none", "--writer", "none", *TINY, "--data-dir", data_dir,
                    "--out", tmp_path / "r", "--steps", "1")  # fmt: skip
    assert result.exit_code == 0, result.output


def test_a_new_run_that_fails_before_its_first_save_leaves_nothing_behind(data_dir: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """It left the --out folder with run.json (and a metrics log, a tensorboard folder, the parents it made);
    a folder that was there before stays, with what it held."""
    from drawcli.training import loop

    def diverged(*args: object) -> dict[str, float]:
        for run in tmp_path.glob("**/run.json"):
            (run.parent / "metrics.jsonl").write_text("{}\n")
            (run.parent / "tensorboard").mkdir(exist_ok=True)
            (run.parent / "tensorboard" / "events").write_bytes(b"")
        return {"bound": math.nan, "recon": 1.0, "kl": 1.0}

    monkeypatch.setattr(loop, "held_out", diverged)
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / ".DS_Store").write_bytes(b"")
    for out in (tmp_path / "new" / "run", tmp_path / "kept"):
        line = error_line(invoke("train", *TINY, "--data-dir", data_dir, "--out", out, "--steps", "3"))
        assert line.startswith("error: training stopped at step 3: the held-out bound is not finite")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == [".DS_Store"]


@pytest.mark.parametrize("option", ["jitter=0.1", "hidden=0", "sigma_floor=0.5"])
def test_a_removed_component_option_is_refused_for_a_new_run(option: str, data_dir: Path, tmp_path: Path) -> None:
    """Old files drop a removed option at its neutral value; a new run given one is told it was removed."""
    result = invoke("train", "--reader-option", option, "--steps", "1", "--data-dir", data_dir, "--out", tmp_path / "r")
    name = option.split("=")[0]
    assert error_line(result, code=2) == (f"error: --reader-option {name} was removed after drawcli 0.1.0 (it did not "
                                          "help; docs/reproducing.md, 'Measured and not adopted')")  # fmt: skip
    assert not (tmp_path / "r").exists()
