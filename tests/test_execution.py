"""How a run executes: --compile auto's decision, the eager fallback when compiling fails, and --amp bf16's report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import TINY_ARGS, FailingBackward, invoke
from safetensors.torch import load_file

from drawcli import checkpoint
from drawcli.model import DRAW
from drawcli.training import execution
from drawcli.training.execution import COMPILE_PAYS_AT, Execution, decide_compile
from drawcli.training.family import BatchLoss
from drawcli.training.step import train_step

CPU = torch.device("cpu")


def test_compile_auto_compiles_long_runs_only() -> None:
    assert decide_compile("on", 1, CPU) == (True, "--compile on")
    assert decide_compile("off", 10**9, CPU) == (False, "--compile off")
    assert decide_compile("auto", COMPILE_PAYS_AT, CPU) == (True, "auto")
    assert decide_compile("auto", 60_000 * 16, CPU) == (False, "auto: a short run, 960,000 image-glimpses < 1,000,000")
    assert decide_compile("auto", COMPILE_PAYS_AT, CPU, unrolled=16) == (True, "auto")
    assert decide_compile("auto", COMPILE_PAYS_AT, CPU, unrolled=17) == (
        False, "auto: 17 glimpses > 16, too many to compile as one loop")
    assert decide_compile("on", 1, CPU, unrolled=64) == (True, "--compile on")


def test_compile_auto_stays_eager_without_a_compiler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(execution.shutil, "which", lambda name: None)
    assert decide_compile("auto", 10**9, CPU) == (False, "auto: no C++ compiler (g++, c++ or clang++) is on the PATH")
    assert decide_compile("on", 10**9, CPU)[0]  # asked for: torch.compile itself will say what is missing


def test_the_bf16_warning_names_what_the_device_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(execution, "native_bf16", lambda device: True)
    assert execution.bf16_warning(CPU) == ""
    monkeypatch.setattr(execution, "native_bf16", lambda device: False)
    assert execution.bf16_warning(torch.device("cuda")).startswith(
        "this GPU has no native bf16 matmuls (compute capability 8.0 or later)")


def test_execution_describes_itself() -> None:
    assert Execution(True, "auto", "bf16").describe() == "glimpse compiled (auto), bf16 LSTM matmuls"


def test_a_short_run_says_it_runs_eagerly_and_why(idx_dir: Path, tmp_path: Path) -> None:
    result = invoke("train", *TINY_ARGS, "--data-dir", idx_dir, "--out", tmp_path / "run", "--steps", "2", "--quiet",
                    "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    header = "training for 2 steps on cpu (1 threads), 4,"  # parameters follow
    line = next(line for line in result.stderr.splitlines() if line.startswith(header))
    assert line.endswith("; glimpse eager (auto: a short run, 96 image-glimpses < 1,000,000), float32 LSTM matmuls")
    summary = checkpoint.read_info(tmp_path / "run" / "checkpoint.safetensors").training
    assert (summary["precision"], summary["compiled"]) == ("float32", False)


def test_a_failing_compiler_falls_back_to_the_eager_glimpse(tiny_config) -> None:
    torch.manual_seed(0)
    model = DRAW(tiny_config(glimpses=3))
    x = (torch.rand(4, *model.config.image_shape) > 0.5).float()
    noise = model.noise(4)
    eager = model(x, noise=noise).loss

    def broken(*args: object) -> None:
        raise RuntimeError("inductor: no compiler\nmore detail")

    model._compiled = broken
    assert torch.equal(model(x, noise=noise).loss, eager)
    assert model.compile_failure == "RuntimeError: inductor: no compiler"
    assert model._compiled is None


def test_an_error_of_the_model_itself_is_not_taken_for_a_compiler_failure(tiny_config,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    model = DRAW(tiny_config(glimpses=2))

    def broken(*args: object) -> None:
        raise RuntimeError("inductor: no compiler")

    def wrong_shape(*args: object) -> None:
        raise ValueError("the model's own bug")

    model._compiled = broken
    monkeypatch.setattr(model, "_glimpse", wrong_shape)
    with pytest.raises(ValueError, match="the model's own bug"):
        model(torch.zeros(2, *model.config.image_shape))
    assert model.compile_failure is None and model._compiled is broken


def test_an_eager_glimpse_error_runs_the_glimpse_once(tiny_config, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def failing(self: DRAW, *args: object) -> None:
        calls.append(1)
        raise ValueError("eager failure")

    monkeypatch.setattr(DRAW, "_glimpse", failing)
    model = DRAW(tiny_config(glimpses=2))
    with pytest.raises(ValueError, match="eager failure") as info:
        model(torch.zeros(2, *model.config.image_shape))
    assert calls == [1] and info.value.__context__ is None and model.compile_failure is None


def test_training_warns_once_and_continues_when_compiling_fails(idx_dir: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    def broken(*args: object) -> None:
        raise RuntimeError("BackendCompilerFailed: boom")

    _compiler_gives(monkeypatch, lambda model, *args: broken(*args))
    run = tmp_path / "run"
    result = invoke("train", *TINY_ARGS, "--data-dir", idx_dir, "--out", run, "--steps", "3", "--compile", "on", "--quiet")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: torch.compile failed, so eager: RuntimeError: BackendCompilerFailed: boom; training continues"]
    assert checkpoint.read_info(run / "checkpoint.safetensors").training["compiled"] is False
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["compiled"] for e in events if e["event"] == "compile"] == [False]


def _failing_backward(message: str) -> Any:
    """A glimpse: the eager one, whose canvas's backward raises `message`."""

    def glimpse(model: DRAW, *args: Any) -> tuple:
        canvas, *rest = DRAW._glimpse(model, *args)
        return (FailingBackward.apply(canvas, message), *rest)

    return glimpse


def _compiler_gives(monkeypatch: pytest.MonkeyPatch, glimpse: Any) -> None:
    """Make compile_glimpses install `glimpse(model, *args)` as the model's 'compiled' glimpse."""
    monkeypatch.setattr(DRAW, "compile_glimpses", lambda self, mode="default": setattr(self, "_compiled", partial(glimpse, self)))


def test_a_compiler_failure_in_backward_redoes_the_step_eagerly_from_the_same_draws(
        idx_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """The redone step binarizes and draws noise as the failed attempt did: the weights equal an eager run's."""
    _compiler_gives(monkeypatch, _failing_backward("BackendCompilerFailed: backward boom"))
    runs = {mode: tmp_path / mode for mode in ("on", "off")}
    results = {mode: invoke("train", *TINY_ARGS, "--data-dir", idx_dir, "--out", run, "--steps", "3", "--compile", mode,
                            "--quiet") for mode, run in runs.items()}  # fmt: skip
    assert all(result.exit_code == 0 for result in results.values()), results["on"].output
    warnings = [line for line in results["on"].stderr.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: torch.compile failed, so eager: RuntimeError: BackendCompilerFailed: backward boom; "
                        "training continues"]  # fmt: skip
    training = checkpoint.read_info(runs["on"] / "checkpoint.safetensors").training
    assert training["compiled"] is False and training["steps"] == 3
    on, off = (load_file(run / "checkpoint.safetensors") for run in (runs["on"], runs["off"]))
    assert all(torch.equal(on[k], off[k]) for k in off)


def _one_step(model: DRAW) -> None:
    optimizer = torch.optim.Adam(model.parameters())
    x = (torch.rand(2, *model.config.image_shape) > 0.5).float()
    train_step(model, optimizer, lambda: BatchLoss(model(x).loss, {}), clip=10.0)


def test_an_eager_backward_error_propagates_and_keeps_the_compiled_glimpse(tiny_config,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """If the eager redo fails as well, the error is the model's: it propagates, nothing is recorded."""
    model = DRAW(tiny_config(glimpses=2))
    compiled = partial(_failing_backward("BackendCompilerFailed"), model)
    model._compiled = compiled
    monkeypatch.setattr(model, "_glimpse", partial(_failing_backward("the model's own backward bug"), model))
    with pytest.raises(RuntimeError, match="the model's own backward bug"):
        _one_step(model)
    assert model._compiled is compiled and model.compile_failure is None


def test_a_backward_error_without_a_compiled_glimpse_propagates(tiny_config, monkeypatch: pytest.MonkeyPatch) -> None:
    model = DRAW(tiny_config(glimpses=2))
    monkeypatch.setattr(model, "_glimpse", partial(_failing_backward("eager backward bug"), model))
    with pytest.raises(RuntimeError, match="eager backward bug"):
        _one_step(model)
    assert model.compile_failure is None and model.eager_rerun(RuntimeError()) is None


def test_a_fallback_after_the_first_step_is_reported_too(idx_dir: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """The compiled glimpse works for step 1 (3 glimpses) and fails in step 2: a second warning says so."""
    calls = []

    def compiled(self: DRAW, *args: Any) -> tuple:
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("BackendCompilerFailed: a new shape")
        return DRAW._glimpse(self, *args)

    _compiler_gives(monkeypatch, compiled)
    run = tmp_path / "run"
    result = invoke("train", *TINY_ARGS, "--data-dir", idx_dir, "--out", run, "--steps", "3", "--compile", "on", "--quiet")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2 and warnings[0].endswith("most of it compiling")
    assert warnings[1] == "warning: torch.compile failed, so eager: RuntimeError: BackendCompilerFailed: a new shape; training continues"
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(e["step"], e["compiled"]) for e in events if e["event"] == "compile"] == [(1, True), (2, False)]


def test_bf16_is_reported_and_warns_where_it_is_emulated(idx_dir: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setattr(execution, "native_bf16", lambda device: False)
    run = tmp_path / "run"
    result = invoke("train", *TINY_ARGS, "--data-dir", idx_dir, "--out", run, "--steps", "2", "--amp", "bf16", "--quiet",
                    "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "bf16 LSTM matmuls" in result.stderr.splitlines()[0]
    assert ("warning: this CPU has no native bf16 matmuls (AMX or AVX512-BF16): --amp bf16 is emulated here, about 5x "
            "slower than float32 on an AVX2 CPU; --amp off is faster") in result.stderr  # fmt: skip
    assert checkpoint.read_info(run / "checkpoint.safetensors").training["precision"] == "bf16"
    assert json.loads((run / "run.json").read_text())["settings"]["amp"] == "bf16"


QUIET_SCRIPT = """
import sys, torch
from drawcli.config import DrawConfig
from drawcli.model import DRAW
if sys.argv[1] == "compile":
    torch.compile = lambda fn, **options: fn  # what matters is what compile_glimpses imports first
    DRAW(DrawConfig(height=8, width=8, glimpses=2, enc_size=4, dec_size=4, z_size=2)).compile_glimpses()
import torch.utils.cpp_extension  # as the compiler does on its first call
"""


def test_compiling_keeps_torchs_no_cuda_runtime_warning_out_of_the_output(tmp_path: Path) -> None:
    """With a CUDA toolkit present (CUDA_HOME) and no GPU, torch's C++-extension module warns
    on import; compile_glimpses imports it quietly first, so that line never reaches a CPU run."""
    env = {**os.environ, "CUDA_HOME": str(tmp_path), "CUDA_VISIBLE_DEVICES": ""}

    def stderr(mode: str) -> str:
        return subprocess.run([sys.executable, "-c", QUIET_SCRIPT, mode], env=env, capture_output=True, text=True,
                              check=True).stderr  # fmt: skip

    if "No CUDA runtime is found" not in stderr("plain"):
        pytest.skip("this torch build does not look for a CUDA toolkit")
    assert "No CUDA runtime is found" not in stderr("compile")
