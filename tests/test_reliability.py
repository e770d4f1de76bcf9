"""Nothing crashes: bad input gives one clear line (failed writes and interrupts: test_saving_and_interrupts.py).

Every bad input ends with exit code 1 or 2 and one `error:` line on stderr, never a traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from helpers import TINY_ARGS, error_line, invoke, rewrite_metadata
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from drawcli import checkpoint, safetensors_io


def flip_bit(path: Path, offset: int, bit: int = 0) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 1 << bit
    path.write_bytes(bytes(raw))


# --- bad input ------------------------------------------------------------------------------------


BAD_FILES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing file": (lambda ck: ck.parent / "missing.safetensors", "missing.safetensors does not exist"),
    "directory without checkpoint": (lambda ck: ck.parent / "samples", "is a directory without checkpoint.safetensors"),
    "not safetensors": (
        lambda ck: (ck.write_text("a plain text file, long enough to have an 8-byte prefix\n"), ck)[1],
        "is not a safetensors file (header length",
    ),
    "truncated in the data": (
        lambda ck: (ck.write_bytes(ck.read_bytes()[:-100]), ck)[1],
        "is truncated: its header needs",
    ),
    "truncated in the header": (
        lambda ck: (ck.write_bytes(ck.read_bytes()[:200]), ck)[1],
        "is truncated: its header needs",
    ),
    "bit flip in the header": (lambda ck: (flip_bit(ck, 8), ck)[1], "is not a safetensors file (header is not JSON)"),
    "foreign safetensors": (
        lambda ck: (save_file({"w": torch.zeros(2)}, str(ck), metadata={"producer": "other"}), ck)[1],
        "is a safetensors file but not a drawcli checkpoint",
    ),
    "unknown config field": (
        lambda ck: (rewrite_metadata(ck, lambda m: m["config"].update(colour=True)), ck)[1],
        "invalid config in metadata: unknown config field(s) of a draw model: colour",
    ),
    "config field of the wrong type": (
        lambda ck: (rewrite_metadata(ck, lambda m: m["config"].update(glimpses="3")), ck)[1],
        "config field 'glimpses' must be an integer, got '3'",
    ),
    "absurd glimpses": (
        lambda ck: (rewrite_metadata(ck, lambda m: m["config"].update(glimpses=10**9)), ck)[1],
        "config field 'glimpses' is 1000000000, above the limit of 1024",
    ),
    "component entry that is not an object": (
        lambda ck: (rewrite_metadata(ck, lambda m: m["components"].update(reader="filterbank")), ck)[1],
        "metadata 'components' entry 'reader' must map names to strings",
    ),
    "training summary of the wrong type": (
        lambda ck: (rewrite_metadata(ck, lambda m: m["training"].update(data_dir=["/etc"])), ck)[1],
        "metadata 'training' field 'data_dir' must be a string or null",
    ),
    "metadata that is not JSON": (
        lambda ck: (rewrite_metadata(ck, lambda m: m.update(training="{not json")), ck)[1],
        "metadata field 'training' is not valid JSON",
    ),
}


@pytest.mark.parametrize("case", BAD_FILES, ids=list(BAD_FILES))
@pytest.mark.parametrize("command", ["inspect", "sample"])
def test_bad_checkpoint_files(case: str, command: str, run: Path, tmp_path: Path) -> None:
    """inspect and sample both refuse each bad file with one line naming the problem."""
    (run / "samples").mkdir(exist_ok=True)
    make, message = BAD_FILES[case]
    path = make(run / "checkpoint.safetensors")
    extra = ["--gif", tmp_path / "s.gif", "--n", "1"] if command == "sample" else []
    line = error_line(invoke(command, path, *extra))
    assert message in line
    assert not (tmp_path / "s.gif").exists()


def test_bit_flip_in_the_data_is_caught_by_the_checksum(run: Path, tmp_path: Path) -> None:
    """A flipped bit in the weights: inspect (header only) still works, loading names the corruption."""
    path = run / "checkpoint.safetensors"
    flip_bit(path, path.stat().st_size - 3, bit=5)
    assert invoke("inspect", path, "--json").exit_code == 0
    line = error_line(invoke("sample", path, "--gif", tmp_path / "s.gif"))
    assert line == f"error: {path} is corrupt: its tensor data does not match the checksum in its header"


def test_tensors_that_do_not_match_the_config(run: Path, tmp_path: Path) -> None:
    """A config whose z size disagrees with the stored tensors names the tensors."""
    path = run / "checkpoint.safetensors"
    rewrite_metadata(path, lambda m: m["config"].update(z_size=5))
    line = error_line(invoke("sample", path, "--gif", tmp_path / "s.gif"))
    assert line.startswith(f"error: {path}: tensors do not match the config (wrong shape: decoder.weight_ih")


def test_wrong_dtype_with_the_right_size(run: Path) -> None:
    """F32 relabelled I32 has the same byte count; the dtype check still refuses it."""
    path = run / "checkpoint.safetensors"
    tensors = load_file(path)
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    tensors["encoder.bias_ih"] = tensors["encoder.bias_ih"].view(torch.int32)
    save_file(tensors, str(path), metadata={k: v for k, v in metadata.items() if k != safetensors_io.CHECKSUM_KEY})
    with pytest.raises(checkpoint.CheckpointError, match=r"wrong dtype: encoder\.bias_ih"):
        checkpoint.load_model(path)


def test_plugin_that_is_not_installed(run: Path, tmp_path: Path) -> None:
    """inspect still reports the checkpoint (installed: false); sample names the distribution to install."""
    path = run / "checkpoint.safetensors"

    def foreign_reader(m: dict[str, Any]) -> None:
        m["config"]["reader"] = "foo"
        m["components"]["reader"].update(name="foo", requested="foo", distribution="bar", version="1.0", value="bar:Foo")

    rewrite_metadata(path, foreign_reader)
    result = invoke("inspect", path, "--json")
    assert result.exit_code == 0, result.output
    reader = json.loads(result.stdout)["components"]["reader"]
    assert reader["installed"] is False and reader["distribution"] == "bar" and reader["name"] == "foo"
    assert invoke("inspect", path).exit_code == 0
    line = error_line(invoke("sample", path, "--gif", tmp_path / "s.gif"))
    assert line == "error: reader 'foo' is not installed; it was provided by the distribution 'bar 1.0': pip install bar"


def test_markup_in_a_checkpoint_is_shown_as_text(run: Path) -> None:
    """Brackets in untrusted metadata are neither rich markup nor a crash."""
    path = run / "checkpoint.safetensors"
    rewrite_metadata(path, lambda m: m["training"].update(note="[/red] [bold]x", last_test={"bound": 10**400}))
    result = invoke("inspect", path)
    assert result.exit_code == 0, result.output
    assert "[/red] [bold]x" in result.stdout


def test_empty_and_unreadable_image_folders(tmp_path: Path) -> None:
    """--dataset folder with no images, or with a broken image, is one line naming the folder or file."""
    empty = tmp_path / "empty"
    empty.mkdir()
    line = error_line(invoke("train", *TINY_ARGS, "--dataset", "folder", "--data-dir", empty, "--out", tmp_path / "r", "--steps", "1"))
    assert line.startswith("error: no images (") and f"for split 'train' under {empty}" in line
    from PIL import Image

    broken = tmp_path / "broken"
    broken.mkdir()
    for i in range(9):  # ten images in all, so a tenth can be held out
        Image.new("L", (28, 28)).save(broken / f"b{i}.png")
    (broken / "a.png").write_bytes(b"not a png")
    line = error_line(invoke("train", *TINY_ARGS, "--dataset", "folder", "--data-dir", broken, "--out", tmp_path / "r", "--steps", "1"))
    assert line.startswith(f"error: cannot read image {broken / 'a.png'}")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--glimpses", "0"], "Invalid value for '--glimpses'"),
        (["--rnn-size", "-3"], "Invalid value for '--rnn-size'"),
        (["--rnn-size", "16385"], "Invalid value for '--rnn-size': Input should be less than or equal to 16384"),
        (["--glimpses", "1025"], "Invalid value for '--glimpses': Input should be less than or equal to 1024"),
        (["--z-size", "0"], "Invalid value for '--z-size'"),
        (["--height", "0"], "Invalid value for '--height'"),
        (["--batch-size", "0"], "Invalid value for '--batch-size'"),
        (["--steps", "-1"], "Invalid value for '--steps'"),
        (["--write-size", "29"], "write size 29 is larger than the image (28x28)"),
        (["--height", "4", "--width", "4"], "write size 5 is larger than the image (4x4)"),
    ],
)
def test_invalid_option_values(args: list[str], message: str, data_dir: Path, tmp_path: Path) -> None:
    """Out-of-range values are usage errors (exit 2) that name the option, before anything is written."""
    result = invoke("train", *TINY_ARGS, "--data-dir", data_dir, "--out", tmp_path / "run", "--steps", "1", *args)
    assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_unwritable_out_directory_fails_before_training(data_dir: Path, tmp_path: Path) -> None:
    """--out under a regular file cannot be created (even as root): one line, before any data is read."""
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "run"
    line = error_line(invoke("train", *TINY_ARGS, "--data-dir", data_dir, "--out", out, "--steps", "1"))
    assert line in (f"error: cannot write to {out}: Not a directory", f"error: cannot write to {out}: File exists")


def test_unwritable_sample_outputs(run: Path, tmp_path: Path) -> None:
    """sample checks its output paths before loading the model."""
    gif = tmp_path / "nowhere" / "s.gif"
    assert error_line(invoke("sample", run, "--gif", gif)) == f"error: cannot write {gif}: {gif.parent} does not exist"
    (tmp_path / "file").write_text("")
    png = tmp_path / "file" / "s.png"
    assert error_line(invoke("sample", run, "--png", png)) == f"error: cannot write {png}: {png.parent} is not a folder"
    assert error_line(invoke("sample", run, "--gif", tmp_path)) == f"error: cannot write {tmp_path}: it is a directory"


@pytest.mark.parametrize("command", [["sample", "RUN", "--gif"], ["sample", "RUN", "--png"], ["reconstruct", "RUN", "--gif"],
                                     ["reconstruct", "RUN", "--png"], ["plot", "RUN", "--png"]])  # fmt: skip
def test_an_output_named_for_another_format_is_refused(command: list[str], run: Path, tmp_path: Path) -> None:
    """--gif x.png would write GIF data under a PNG's name: refused before any work, nothing written."""
    fmt = command[-1][2:]
    other = tmp_path / ("x.png" if fmt == "gif" else "x.gif")
    args = [run if a == "RUN" else a for a in command]
    message = f"error: --{fmt} {other}: this writes a {fmt.upper()}, so its name must end in .{fmt}"
    assert error_line(invoke(*args, other)) == message
    assert not other.exists()
    assert invoke(*args, tmp_path / f"upper.{fmt.upper()}").exit_code == 0  # the suffix's case does not matter


def test_glimpses_refuses_a_gif_named_png_before_reading_the_run(tmp_path: Path) -> None:
    """glimpses checks its output's name before it opens the run (here there is none to open)."""
    other = tmp_path / "x.png"
    message = f"error: --gif {other}: this writes a GIF, so its name must end in .gif"
    assert error_line(invoke("glimpses", tmp_path / "no-run", "--gif", other)) == message


@pytest.mark.parametrize("command", [["reconstruct", "RUN", "--gif"], ["reconstruct", "RUN", "--png"], ["plot", "RUN", "--png"]])
def test_unwritable_outputs_of_reconstruct_and_plot(command: list[str], run: Path, tmp_path: Path) -> None:
    """reconstruct and plot check their output paths before doing any work."""
    target = tmp_path / "nowhere" / "out.img"
    args = [run if a == "RUN" else a for a in command]
    assert error_line(invoke(*args, target)) == f"error: cannot write {target}: {target.parent} does not exist"


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    """`drawcli --debug inspect MISSING` lets the exception through (a real process prints the traceback)."""
    missing = tmp_path / "missing.safetensors"
    proc = subprocess.run([sys.executable, "-m", "drawcli", "--debug", "inspect", str(missing)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert f"drawcli.errors.CheckpointError: {missing} does not exist" in proc.stderr
    result = invoke("inspect", missing)
    assert error_line(result) == f"error: {missing} does not exist"


@pytest.mark.parametrize("seed", ["-1", "4294967296", "99999999999999999999"])
@pytest.mark.parametrize("command", ["train", "sample", "reconstruct"])
def test_a_seed_outside_32_bits_is_refused_by_the_option(command: str, seed: str, run: Path, tmp_path: Path) -> None:
    """Seeds are 0 .. 2**32 - 1 (an epoch's order multiplies the seed: a larger one overflowed inside torch)."""
    args = [command, "--steps", "1", "--out", tmp_path / "new"] if command == "train" else [command, run, "--gif", tmp_path / "x.gif"]
    result = invoke(*args, f"--seed={seed}")
    assert result.exit_code == 2 and "Invalid value for '--seed'" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "classifier", "--canvas", "learned"], "--canvas is for DRAW (--model draw): the classifier has no canvas"),
    (["--model", "classifier", "--binarize", "threshold"], "--binarize is for DRAW (--model draw): the classifier reads grey levels"),
    (["--model", "classifier", "--writer-option", "bogus=1"], "--writer-option is for DRAW (--model draw): the classifier does not write"),
    (["--model", "classifier", "--dec-size", "8"], "--dec-size is for DRAW (--model draw): the classifier has one LSTM, sized by --rnn-size"),
    (["--teacher-temperature", "3"], "--teacher-temperature is for the classifier (--model classifier): DRAW has no class probabilities"),
    (["--model", "classifier", "--teacher-weight", "0.5"], "--teacher-weight shapes what the teachers teach: give --teacher RUN too"),
    (["--compile", "off", "--compile-mode", "reduce-overhead"], "--compile-mode reduce-overhead compiles, and --compile off says not to"),
    (["--preset", "paper-cluttered-mnist", "--model", "draw"], "preset paper-cluttered-mnist sets up a classifier model; --model draw conflicts with it"),
])  # fmt: skip
def test_options_a_new_run_would_ignore_are_refused(args: list[str], message: str, data_dir: Path, tmp_path: Path) -> None:
    """An option given on the command line that the run would not use is one line, and no run folder."""
    result = invoke("train", "--steps", "1", "--threads", "1", "--data-dir", data_dir, "--out", tmp_path / "new", *args)
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "new").exists()


def test_resume_refuses_out_and_a_file_and_says_when_there_is_nothing_to_train(run: Path, tmp_path: Path) -> None:
    """--resume continues a folder in place: --out beside it and a checkpoint file for it are refused;
    a run already at its length trains nothing and says so."""
    result = invoke("train", "--resume", run, "--out", tmp_path / "elsewhere", "--steps", "4")
    assert result.exit_code == 2 and "--out names a new run's folder (drop one of them)" in result.output
    assert not (tmp_path / "elsewhere").exists()
    result = invoke("train", "--resume", run / "checkpoint.safetensors")
    assert result.exit_code == 2 and f"--resume takes the run's folder, not a file in it: --resume {run}" in result.output
    before = (run / "checkpoint.safetensors").read_bytes()
    result = invoke("train", "--resume", run, "--steps", "2", "--quiet")
    assert result.exit_code == 0, result.output
    assert "the run already has 3 steps, at or past its length of 2: nothing to train" in result.output
    assert (run / "checkpoint.safetensors").read_bytes() == before


def test_a_batch_larger_than_the_training_set_is_said(data_dir: Path, tmp_path: Path) -> None:
    """--batch-size above the data set's size trains on the whole set each step, and says so."""
    result = invoke("train", *TINY_ARGS, "--batch-size", "100", "--data-dir", data_dir, "--out", tmp_path / "big", "--steps", "1")
    assert result.exit_code == 0, result.output
    assert "--batch-size 100 is more than the 48 training images: each step takes all of them" in result.output
