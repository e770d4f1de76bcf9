"""The classifier's compiled glimpse loop: the same logits, centres and gradients as eager, eager
recording, and what a compiler failure (in the forward or the backward) leaves behind."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import CLASSIFIER, FailingBackward, invoke
from helpers import SMALL_CLASSIFIER as SMALL
from safetensors.torch import load_file

from drawcli import checkpoint
from drawcli.classifier import AttentionClassifier, ClassifierOutput
from drawcli.config import ClassifierConfig


@pytest.mark.parametrize("changes", [{}, {"reader": "no-attention"}])  # windows, a fixed glimpse
def test_the_compiled_classifier_matches_eager(changes: dict) -> None:
    """--compile compiles the whole glimpse loop: the same logits, windows' centres and gradients
    (through the labels' and --locate-loss's terms); evaluation and recording stay eager."""
    torch.manual_seed(0)
    model = AttentionClassifier(ClassifierConfig(**SMALL, **changes))
    x, labels, where = torch.rand(5, 1, 12, 12), torch.tensor([0, 1, 2, 3, 0]), torch.rand(5, 2) * 12

    def objective(out: ClassifierOutput) -> torch.Tensor:
        return out.loss(labels).sum() + (out.locate_loss(where).sum() if out.centres is not None else 0.0)

    eager = model(x)
    objective(eager).backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    model.compile_glimpses()
    compiled = model(x)
    objective(compiled).backward()
    assert model.compile_failure is None
    torch.testing.assert_close(compiled.logits, eager.logits, rtol=1e-5, atol=1e-6)
    assert (compiled.centres is None) == (eager.centres is None) == (changes.get("reader") == "no-attention")
    if eager.centres is not None:
        torch.testing.assert_close(compiled.centres, eager.centres, rtol=1e-5, atol=1e-5)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[name], rtol=1e-4, atol=1e-6, msg=name)
    assert model.eval().training_unit() == model._logits  # evaluation runs eagerly


def test_recording_windows_runs_the_eager_loop() -> None:
    """record=True (the glimpse GIF) never calls the compiled unit, which returns tensors alone (the logits
    and the windows' centres)."""
    model = AttentionClassifier(ClassifierConfig(**SMALL))
    calls = []
    model._compiled = lambda x: calls.append(x) or (torch.zeros(2, 4), torch.zeros(2, 3, 2))
    out = model(torch.rand(2, 1, 12, 12), record=True)
    assert calls == [] and out.read_windows is not None and len(out.read_windows) == 3
    model(torch.rand(2, 1, 12, 12))
    assert len(calls) == 1


def test_a_failing_compiler_leaves_the_classifier_eager(idx_dir: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """--compile on with a compiler that fails: one warning, the eager run's weights bit for bit, compiled False."""
    def broken(self: AttentionClassifier, mode: str = "default") -> None:
        def compiled(x: torch.Tensor) -> None:
            raise RuntimeError("inductor: no compiler\nmore detail")
        self._compiled = compiled

    monkeypatch.setattr(AttentionClassifier, "compile_glimpses", broken)
    runs = {mode: tmp_path / mode for mode in ("on", "off")}
    results = {mode: invoke("train", *CLASSIFIER, "--data-dir", idx_dir, "--out", run, "--steps", "2", "--compile", mode)
               for mode, run in runs.items()}  # fmt: skip
    assert all(result.exit_code == 0 for result in results.values()), results["on"].output
    header = next(line for line in results["on"].stderr.splitlines() if line.startswith("training for 2 steps"))
    assert header.endswith("; glimpse loop compiled (--compile on), float32 LSTM matmuls")
    warnings = [line for line in results["on"].stderr.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: torch.compile failed, so eager: RuntimeError: inductor: no compiler; training continues"]
    on, off = (load_file(run / "checkpoint.safetensors") for run in runs.values())
    assert all(torch.equal(on[k], off[k]) for k in off)
    assert checkpoint.read_info(runs["on"] / "checkpoint.safetensors").training["compiled"] is False


def test_a_compiler_failure_in_the_classifiers_backward_redoes_the_step_eagerly() -> None:
    """train_step redoes the step without the compiled loop: the eager step's weights, the failure recorded."""
    from drawcli.training.family import BatchLoss
    from drawcli.training.step import train_step

    torch.manual_seed(0)
    models = [AttentionClassifier(ClassifierConfig(**SMALL)) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    def failing(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits, centres = models[1]._logits(x)
        return FailingBackward.apply(logits, "BackendCompilerFailed: backward boom"), centres

    models[1]._compiled = failing
    x, labels = torch.rand(4, 1, 12, 12), torch.tensor([0, 1, 2, 3])
    for model in models:
        optimizer = torch.optim.Adam(model.parameters())
        train_step(model, optimizer, lambda: BatchLoss(model(x).loss(labels), {}), clip=10.0)  # noqa: B023
    assert models[1].compile_failure == "RuntimeError: BackendCompilerFailed: backward boom"
    assert models[1]._compiled is None
    eager, redone = (model.state_dict() for model in models)
    assert all(torch.equal(eager[k], redone[k]) for k in eager)


def test_compile_auto_leaves_a_long_glimpse_loop_eager(idx_dir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """The loop compiles unrolled: past 16 glimpses --compile auto stays eager even for a long run."""
    from drawcli.training import execution

    monkeypatch.setattr(execution, "COMPILE_PAYS_AT", 1)  # every run "long enough"
    args = ["--model", "classifier", "--glimpses", "17", "--rnn-size", "8", "--read-size", "3", "--batch-size", "16",
            "--threads", "1", "--quiet", "--steps", "1", "--compile", "auto"]  # fmt: skip
    result = invoke("train", *args, "--data-dir", idx_dir, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    header = next(line for line in result.stderr.splitlines() if line.startswith("training for 1 steps"))
    assert header.endswith("; glimpse loop eager (auto: 17 glimpses > 16, too many to compile as one loop), float32 LSTM matmuls")
