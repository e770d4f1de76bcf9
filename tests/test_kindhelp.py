"""`train --help` shows the options of one kind of model: DRAW's by default, the classifier's when
--model classifier or a classifier's preset is on the command line; hidden options still parse."""

from __future__ import annotations

import pytest
from helpers import invoke

from drawcli import kinds
from drawcli.cli.kindhelp import kind_asked

DRAW_ONLY = ("--z-size", "--canvas", "--writer-option", "--kl-warmup", "--binarize")
CLASSIFIER_ONLY = ("--teacher", "--redraw", "--locate-loss", "--teacher-weight")


def _help(*args: str) -> str:
    result = invoke("train", *args, "--help")
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize(("args", "shown", "left_out"), [
    ((), DRAW_ONLY, CLASSIFIER_ONLY),
    (("--model", "classifier"), CLASSIFIER_ONLY, DRAW_ONLY),
    (("--preset", "paper-cluttered-mnist"), CLASSIFIER_ONLY, DRAW_ONLY),
    (("--model=classifier",), CLASSIFIER_ONLY, DRAW_ONLY),
])  # fmt: skip
def test_the_help_shows_one_kinds_options(args: tuple[str, ...], shown: tuple[str, ...], left_out: tuple[str, ...]) -> None:
    text = _help(*args)
    for option in shown:
        assert f" {option} " in text, option
    for option in left_out:
        assert f" {option} " not in text, option
    assert " --glimpses " in text and " --reader " in text  # both kinds' options stay


def test_the_hidden_options_are_the_kinds_unused_ones() -> None:
    assert kind_asked([]) == kind_asked(["--model", "gan"]) == kind_asked(["--preset", "paper-mnist"]) == "draw"
    assert {p for p, _ in kinds.get("draw").unused_options} == {"redraw", "teacher", "teacher_weight",
                                                                 "teacher_temperature", "locate_loss"}  # fmt: skip


def test_a_hidden_option_still_parses_and_is_refused_with_its_reason(data_dir, tmp_path) -> None:
    """DRAW's help leaves --redraw out; given anyway, it is refused in one line (not 'no such option')."""
    result = invoke("train", "--redraw", "--steps", "1", "--data-dir", data_dir, "--out", tmp_path / "r")
    assert result.exit_code == 2 and "--redraw is for the classifier (--model classifier): DRAW trains on fixed images" in result.output
