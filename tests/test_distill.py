"""--teacher: the soft cross-entropy by hand, the teachers' targets and the objective they enter,
an exact resume, and the refusals."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from helpers import CLASSIFIER, TINY_ARGS, invoke
from safetensors.torch import load_file

from drawcli import checkpoint
from drawcli.training.classify import ClassifierFamily, predict
from drawcli.training.distill import soft_cross_entropy
from drawcli.training.settings import TrainSettings


def test_soft_cross_entropy_by_hand() -> None:
    logits, targets = torch.tensor([[0.0, math.log(3.0)]]), torch.tensor([[0.5, 0.5]])
    # T = 1: softmax = (1/4, 3/4), so -(ln 1/4 + ln 3/4) / 2
    assert soft_cross_entropy(logits, targets, 1.0).item() == pytest.approx(-(math.log(0.25) + math.log(0.75)) / 2)
    # T = 2: softmax of (0, ln 3 / 2) = (1, sqrt 3) / (1 + sqrt 3), times T^2 = 4
    r = math.sqrt(3.0)
    expected = -4 * (math.log(1 / (1 + r)) + math.log(r / (1 + r))) / 2
    assert soft_cross_entropy(logits, targets, 2.0).item() == pytest.approx(expected)


@pytest.fixture
def teachers(idx_dir: Path, tmp_path: Path) -> list[Path]:
    """Two tiny classifiers of idx_dir's classes, trained for 2 steps from seeds 0 and 1."""
    runs = [tmp_path / f"teacher{seed}" for seed in (0, 1)]
    for seed, run in enumerate(runs):
        result = invoke("train", *CLASSIFIER, "--data-dir", idx_dir, "--steps", "2", "--lr", "1e-2", "--seed", seed, "--out", run)
        assert result.exit_code == 0, result.output
    return runs


def test_the_objective_mixes_labels_and_the_teachers_mean_probabilities(idx_dir: Path, teachers: list[Path]) -> None:
    settings = TrainSettings(dataset="mnist", data_dir=str(idx_dir), teachers=tuple(map(str, teachers)),
                             teacher_weight=0.25, teacher_temperature=3.0)  # fmt: skip
    student, _ = checkpoint.load_model(teachers[0])
    family = ClassifierFamily(student.config, settings, torch.device("cpu"))
    family.start_epoch(0)
    logits = [predict(checkpoint.load_model(t)[0], family.images, torch.device("cpu")) for t in teachers]
    by_hand = ((logits[0] / 3).softmax(-1) + (logits[1] / 3).softmax(-1)) / 2
    torch.testing.assert_close(family.soft, by_hand)

    indices = torch.tensor([0, 5, 7])
    batch = family.batch_loss(student, student, indices, step=0)
    out = student(family.images[indices].float() / 255)
    labels_ce = torch.nn.functional.cross_entropy(out.logits, family.targets[indices], reduction="none")
    soft_ce = -9 * (by_hand[indices] * (out.logits / 3).log_softmax(-1)).sum(-1)
    torch.testing.assert_close(batch.objective, 0.75 * labels_ce + 0.25 * soft_ce)
    torch.testing.assert_close(batch.metrics["loss"], labels_ce.sum())  # the reported loss: labels only


def test_a_distilled_run_resumes_exactly_and_keeps_its_teachers(idx_dir: Path, tmp_path: Path, teachers: list[Path]) -> None:
    common = [*CLASSIFIER, "--data-dir", idx_dir, "--lr", "1e-2", "--seed", "2", "--teacher", teachers[0], "--teacher", teachers[1]]
    straight, split, plain = tmp_path / "straight", tmp_path / "split", tmp_path / "plain"
    for run, steps, extra in ((straight, 4, ["--teacher-weight", "1"]), (split, 2, ["--teacher-weight", "1"]), (plain, 4, [])):
        result = invoke("train", *(common if extra else common[:-4]), *extra, "--steps", steps, "--out", run)
        assert result.exit_code == 0, result.output
    resumed = invoke("train", "--resume", split, "--teacher", teachers[0], "--teacher", teachers[1], "--steps", "4", "--quiet")
    assert resumed.exit_code == 0, resumed.output  # the same teachers given again agree with the run's
    for file in ("checkpoint.safetensors", "resume.safetensors"):
        a, b = load_file(straight / file), load_file(split / file)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), file
    taught, untaught = load_file(straight / "checkpoint.safetensors"), load_file(plain / "checkpoint.safetensors")
    assert not torch.equal(taught["classify.weight"], untaught["classify.weight"])  # the teachers changed training
    info = checkpoint.read_info(straight)
    assert info.training["teachers"] == [str(t.resolve()) for t in teachers] and info.training["teacher_weight"] == 1.0

    t0, t1 = (str(t.resolve()) for t in teachers)
    result = invoke("train", "--resume", split, "--teacher", teachers[0], "--steps", "5", "--quiet")
    assert result.exit_code == 2 and f"--teacher {t0} conflicts with the run being resumed (teachers = {t0}, {t1})" in result.stderr
    assert invoke("train", "--resume", teachers[1], "--steps", "3", "--quiet").exit_code == 0  # the teacher moves on
    result = invoke("train", "--resume", split, "--steps", "5", "--quiet")
    assert result.exit_code == 2 and f"--teacher {t1} has changed since the run started" in result.stderr


def test_teachers_that_do_not_fit_are_refused(idx_dir: Path, tmp_path: Path, teachers: list[Path]) -> None:
    draw_run = tmp_path / "draw"
    assert invoke("train", *TINY_ARGS, "--quiet", "--device", "cpu", "--data-dir", idx_dir, "--steps", "1",
                  "--sample-every", "0", "--out", draw_run).exit_code == 0  # fmt: skip
    result = invoke("train", *CLASSIFIER, "--data-dir", idx_dir, "--steps", "1", "--teacher", draw_run, "--out", tmp_path / "a")
    assert result.exit_code != 0 and f"--teacher {draw_run.resolve() / 'checkpoint.safetensors'} is not a classifier of the classes 0, 1," in result.output
    result = invoke("train", *TINY_ARGS, "--quiet", "--data-dir", idx_dir, "--steps", "1", "--teacher", teachers[0], "--out", tmp_path / "b")
    assert result.exit_code != 0 and "--teacher is for the classifier (--model classifier)" in result.output
    result = invoke("train", *CLASSIFIER, "--data-dir", idx_dir, "--steps", "1", "--teacher", teachers[0],
                    "--teacher-weight", "0", "--out", tmp_path / "c")  # fmt: skip
    assert result.exit_code == 2 and "--teacher-weight 0.0 is not a share: give one in (0, 1]" in result.output
    result = invoke("train", *CLASSIFIER, "--data-dir", idx_dir, "--steps", "1", "--teacher", teachers[0],
                    "--teacher-temperature", "inf", "--out", tmp_path / "d")  # fmt: skip
    assert result.exit_code == 2 and "--teacher-temperature inf must be a finite number above 0" in result.output
    result = invoke("train", *CLASSIFIER, "--data-dir", idx_dir, "--steps", "1", "--teacher", tmp_path / "none", "--out", tmp_path / "e")
    assert result.exit_code == 2 and "Invalid value for '--teacher'" in result.stderr
    assert "Traceback" not in result.output and not any((tmp_path / x).exists() for x in "abcde")


def test_with_redraw_the_teachers_label_each_epochs_new_images(cluttered_dir: Path, tmp_path: Path) -> None:
    teacher = tmp_path / "teacher"
    result = invoke("train", *CLASSIFIER, "--dataset", "cluttered-mnist", "--data-dir", cluttered_dir, "--steps", "2", "--out", teacher)
    assert result.exit_code == 0, result.output
    settings = TrainSettings(dataset="cluttered-mnist", data_dir=str(cluttered_dir), redraw=True, teachers=(str(teacher),))
    model, _ = checkpoint.load_model(teacher)
    family = ClassifierFamily(model.config, settings, torch.device("cpu"))
    family.start_epoch(0)
    first = family.soft
    family.start_epoch(1)
    expected = (predict(model, family.images, torch.device("cpu")) / 2.0).softmax(-1)
    torch.testing.assert_close(family.soft, expected)
    assert not torch.allclose(family.soft, first)


def test_under_bf16_the_objective_keeps_the_logits_precision_and_the_reported_loss_is_float32(idx_dir: Path, teachers: list[Path]) -> None:
    """--amp bf16: the labels' term of the objective is the cross-entropy of the bf16 logits in bf16
    (what the documented LSTM-512 runs trained with); the reported loss is exact."""
    settings = TrainSettings(dataset="mnist", data_dir=str(idx_dir), amp="bf16")
    student, _ = checkpoint.load_model(teachers[0])
    family = ClassifierFamily(student.config, settings, torch.device("cpu"))
    family.start_epoch(0)
    indices = torch.tensor([0, 1, 2, 3])
    batch = family.batch_loss(student, student, indices, step=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = student(family.images[indices].float() / 255).logits
    labels = family.targets[indices]
    assert logits.dtype == batch.objective.dtype == torch.bfloat16
    assert torch.equal(batch.objective, torch.nn.functional.cross_entropy(logits, labels, reduction="none"))
    torch.testing.assert_close(batch.metrics["loss"], torch.nn.functional.cross_entropy(logits.float(), labels, reduction="sum"))
