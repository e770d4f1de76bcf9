"""A checkpoint's config or a run.json's settings that lack a field are refused, naming it, unless the
format records the field as added later (config.ADDED_LATER, settings.ADDED_LATER): then the value
every older file implies is used, and `inspect` says which fields were filled."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from helpers import CLASSIFIER, error_line, invoke, rewrite_metadata

from drawcli import checkpoint
from drawcli.config import ADDED_LATER as CONFIG_ADDED_LATER
from drawcli.config import ClassifierConfig, DrawConfig
from drawcli.errors import CheckpointError, ConfigError
from drawcli.training.settings import ADDED_LATER as SETTINGS_ADDED_LATER
from drawcli.training.settings import TrainSettings

CONFIG_FIELDS = list(DrawConfig().to_dict())  # what a DRAW checkpoint saves: its kind and every field
CLASSIFIER_FIELDS = list(ClassifierConfig().to_dict())
SETTINGS_FIELDS = [f.name for f in dataclasses.fields(TrainSettings)]


def _drop_config_field(run: Path, name: str) -> None:
    def drop(metadata: dict[str, Any]) -> None:
        del metadata["config"][name]

    rewrite_metadata(run / "checkpoint.safetensors", drop)


@pytest.fixture(scope="module")
def classifier_run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny classifier's finished one-step run; tests work on copies."""
    run = tmp_path_factory.mktemp("classifier") / "run"
    result = invoke("train", *CLASSIFIER, "--data-dir", data_dir, "--out", run, "--steps", "1", "--sample-every", "0")
    assert result.exit_code == 0, result.output
    return run


def _check_dropped_field(run: Path, name: str) -> None:
    _drop_config_field(run, name)
    if name in CONFIG_ADDED_LATER:
        info = checkpoint.read_info(run)
        assert getattr(info.config, name) == CONFIG_ADDED_LATER[name]
        assert info.filled == {name: CONFIG_ADDED_LATER[name]}
    else:
        message = rf": invalid config in metadata: config field '{name}' is missing; a saved run records every one"
        with pytest.raises(CheckpointError, match=message):
            checkpoint.read_info(run)


@pytest.mark.parametrize("name", CONFIG_FIELDS)
def test_every_config_field_is_required_or_recorded_as_added_later(run: Path, name: str) -> None:
    _check_dropped_field(run, name)


@pytest.mark.parametrize("name", [name for name in CLASSIFIER_FIELDS if name != "kind"])  # without kind: a DRAW file
def test_every_classifier_config_field_is_required_or_recorded_as_added_later(classifier_run: Path, tmp_path: Path,
                                                                              name: str) -> None:  # fmt: skip
    _check_dropped_field(Path(shutil.copytree(classifier_run, tmp_path / "run")), name)


def test_the_added_later_fields_are_the_ones_after_the_first_format() -> None:
    """The first checkpoint format's fields (git e2f9bc4) are required; every later one has a recorded value."""
    first = {"channels", "height", "width", "glimpses", "enc_size", "dec_size", "z_size", "read_size", "write_size",
             "reader", "writer", "sampler", "reader_options", "writer_options", "sampler_options"}  # fmt: skip
    assert set(CONFIG_FIELDS + CLASSIFIER_FIELDS) - first == set(CONFIG_ADDED_LATER)


def test_sample_refuses_a_checkpoint_without_glimpses(run: Path) -> None:
    """The measured case: 3 glimpses saved, the field removed; sample used to draw 64 glimpses and exit 0."""
    _drop_config_field(run, "glimpses")
    line = error_line(invoke("sample", run, "--png", run / "s.png"))
    assert "config field 'glimpses' is missing" in line and "no default is assumed" in line
    assert not (run / "s.png").exists()


def test_inspect_names_the_fields_an_older_file_predates(run: Path) -> None:
    def drop(metadata: dict[str, Any]) -> None:
        del metadata["config"]["kind"], metadata["config"]["canvas"]

    rewrite_metadata(run / "checkpoint.safetensors", drop)
    report = json.loads(invoke("inspect", run, "--json").stdout)
    assert report["config_fields_older_than_file"] == {"kind": "draw", "canvas": "zero"}
    assert "older format" in invoke("inspect", run).stdout
    assert json.loads(invoke("inspect", run, "--json").stdout)["config"]["glimpses"] == 3


@pytest.mark.parametrize("name", SETTINGS_FIELDS)
def test_every_setting_is_required_or_recorded_as_added_later(name: str) -> None:
    saved = TrainSettings(lr=3e-4, seed=5).to_dict()
    del saved[name]
    if name in SETTINGS_ADDED_LATER:
        value = getattr(TrainSettings.from_dict(saved), name)
        assert value == SETTINGS_ADDED_LATER[name]
    else:
        with pytest.raises(ConfigError, match=rf"^training setting '{name}' is missing; a saved run records every one"):
            TrainSettings.from_dict(saved)


def test_resume_refuses_a_run_json_without_a_setting(run: Path) -> None:
    """The seed has no value an older run could imply: resuming without it would train another run."""
    saved = json.loads((run / "run.json").read_text())
    del saved["settings"]["seed"], saved["settings"]["batch_size"]
    (run / "run.json").write_text(json.dumps(saved))
    before = (run / "checkpoint.safetensors").read_bytes()
    line = error_line(invoke("train", "--resume", run, "--steps", "6", "--quiet"))
    assert line == (f"error: {run} is not a resumable run (run.json unreadable: training settings 'batch_size', 'seed' "
                    "are missing; a saved run records every one, so the file is damaged or was edited (no default is assumed))")  # fmt: skip
    assert (run / "checkpoint.safetensors").read_bytes() == before


def test_a_run_json_of_the_first_form_resumes_with_the_recorded_values() -> None:
    """run.json as the first version wrote it (git e7e4bfd): its later settings take their recorded values."""
    first = {"dataset": "mnist", "data_dir": None, "binarize": "stochastic", "epochs": 2, "steps": None, "batch_size": 64,
             "lr": 1e-3, "clip": 10.0, "seed": 0, "device": "auto", "threads": None, "sample_every": 1,
             "sample_count": 64, "extra": {}}  # fmt: skip
    settings = TrainSettings.from_dict(first)
    assert (settings.compile, settings.amp, settings.beta1, settings.teachers) == ("off", "off", 0.9, ())
    assert set(SETTINGS_FIELDS) - set(first) == set(SETTINGS_ADDED_LATER)


# DrawConfig().to_dict() and TrainSettings().to_dict() as drawcli 0.1.0 (git 0b3054f) wrote them: every
# field, those removed since (config.RETIRED, settings.RETIRED) at their neutral value.
CONFIG_0_1_0 = {
    "kind": "draw", "channels": 1, "height": 28, "width": 28, "glimpses": 64, "enc_size": 256, "dec_size": 256,
    "z_size": 100, "read_size": 2, "write_size": 5, "reader": "filterbank", "writer": "filterbank",
    "sampler": "gaussian", "reader_options": {}, "writer_options": {}, "sampler_options": {}, "classes": 10,
    "canvas": "zero", "glimpse_hidden": 0, "glimpse_conv": 0,
}  # fmt: skip
SETTINGS_0_1_0 = {
    "dataset": "mnist", "data_dir": None, "binarize": "stochastic", "redraw": False, "epochs": None, "steps": None,
    "batch_size": 64, "lr": 0.001, "lr_schedule": "constant", "window_lr": 1.0, "clip": 10.0, "beta1": 0.9,
    "beta2": 0.999, "kl_warmup": 0, "ema": 0.0, "teachers": [], "teacher_weight": 0.5, "teacher_temperature": 2.0,
    "label_smoothing": 0.0, "glimpse_loss": 0.0, "locate_loss": 0.0, "amp": "off", "seed": 0, "device": "auto",
    "threads": None, "compile": "auto", "compile_mode": "default", "cuda_graph": "off", "sample_every": 1,
    "sample_count": 64,
}  # fmt: skip


def test_the_0_1_0_forms_load_as_todays_defaults() -> None:
    assert DrawConfig.from_dict(CONFIG_0_1_0) == DrawConfig()
    assert ClassifierConfig.from_dict({**CONFIG_0_1_0, "kind": "classifier"}) == ClassifierConfig()
    assert TrainSettings.from_dict(SETTINGS_0_1_0) == TrainSettings()


def _as_0_1_0_wrote_it(run: Path, config: dict[str, Any], settings: dict[str, Any]) -> None:
    """Put the removed fields back into the run's checkpoint config and run.json settings."""
    rewrite_metadata(run / "checkpoint.safetensors", lambda metadata: metadata["config"].update(config))
    saved = json.loads((run / "run.json").read_text())
    saved["settings"].update(settings)
    (run / "run.json").write_text(json.dumps(saved))


def test_a_run_saved_by_0_1_0_without_the_removed_features_loads_samples_and_resumes(run: Path) -> None:
    _as_0_1_0_wrote_it(run, {"glimpse_hidden": 0, "glimpse_conv": 0}, {"label_smoothing": 0.0, "glimpse_loss": 0.0})
    assert checkpoint.read_info(run).filled == {}
    assert invoke("sample", run, "--png", run / "s.png", "--n", "4").exit_code == 0
    result = invoke("train", "--resume", run, "--steps", "4", "--quiet")
    assert result.exit_code == 0, result.output
    assert checkpoint.read_info(run).training["steps"] == 4


def test_a_checkpoint_that_used_a_removed_layer_is_refused_in_one_line(run: Path) -> None:
    _as_0_1_0_wrote_it(run, {"glimpse_hidden": 0, "glimpse_conv": 8}, {})
    line = error_line(invoke("sample", run, "--png", run / "s.png"))
    assert line.endswith(": invalid config in metadata: config field 'glimpse_conv' is 8, but drawcli 0.1.0 was the "
                         "last version with 'glimpse_conv'; load this file with drawcli 0.1.0")  # fmt: skip
    assert not (run / "s.png").exists()


def test_a_run_that_used_a_removed_objective_term_is_not_resumed(run: Path) -> None:
    _as_0_1_0_wrote_it(run, {}, {"label_smoothing": 0.1, "glimpse_loss": 0.0})
    before = (run / "checkpoint.safetensors").read_bytes()
    line = error_line(invoke("train", "--resume", run, "--steps", "6", "--quiet"))
    assert line == (f"error: {run} is not a resumable run (run.json unreadable: training setting 'label_smoothing' is 0.1, "
                    "but drawcli 0.1.0 was the last version with 'label_smoothing'; load this file with drawcli 0.1.0)")  # fmt: skip
    assert (run / "checkpoint.safetensors").read_bytes() == before
