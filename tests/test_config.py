"""DrawConfig and ClassifierConfig: paper defaults, the dict/JSON form, and validation of untrusted input."""

from __future__ import annotations

import json
from typing import Any

import pytest

from drawcli import config as configs
from drawcli.config import MAX_GLIMPSES, ClassifierConfig, DrawConfig
from drawcli.errors import ConfigError


def full(**changes: Any) -> dict[str, Any]:
    """A complete config dict (every field, as a checkpoint holds) with some fields changed."""
    return {**DrawConfig().to_dict(), **changes}


def test_defaults_are_the_paper_mnist_attention_setting() -> None:
    """T = 64, LSTM 256, z 100, read 2, write 5 on 1x28x28, filterbank + gaussian."""
    cfg = DrawConfig()
    assert cfg.image_shape == (1, 28, 28)
    assert (cfg.glimpses, cfg.enc_size, cfg.dec_size, cfg.z_size) == (64, 256, 256, 100)
    assert (cfg.read_size, cfg.write_size) == (2, 5)
    assert (cfg.reader, cfg.writer, cfg.sampler) == ("filterbank", "filterbank", "gaussian")


def test_dict_round_trip(tiny_config) -> None:
    """from_dict(to_dict(c)) == c, and to_dict holds every field (options included)."""
    cfg = tiny_config(channels=3, height=6, width=10, reader="attn", writer_options={"k": [1, 2]})
    data = cfg.to_dict()
    assert data["channels"] == 3 and data["reader"] == "attn" and data["writer_options"] == {"k": [1, 2]}
    assert len(data) == 17 and (data["kind"], data["canvas"]) == ("draw", "zero")
    assert DrawConfig.from_dict(data) == cfg == configs.from_dict(data)


def test_a_classifier_config_holds_only_the_classifiers_fields() -> None:
    """kind, the image, glimpses, one LSTM (dec_size: what the reader's window is computed from), the
    reader and the classes; it round-trips, and configs.from_dict picks the class by kind."""
    cfg = ClassifierConfig(height=12, width=12, glimpses=3, dec_size=8, read_size=3, classes=4)
    data = cfg.to_dict()
    assert sorted(data) == ["channels", "classes", "dec_size", "glimpses", "height", "kind", "read_size", "reader",
                            "reader_options", "width"]  # fmt: skip
    assert data["kind"] == "classifier" and configs.from_dict(data) == cfg == ClassifierConfig.from_dict(data)
    with pytest.raises(TypeError, match="enc_size"):
        ClassifierConfig(enc_size=8)  # type: ignore[call-arg]


def test_a_020_classifier_loads_without_the_draw_fields_it_recorded() -> None:
    """Up to 0.2.0 one config described both kinds: a classifier's file also holds DRAW's fields (unused,
    any value) and a DRAW file holds classes; each loads as its own kind's config without them."""
    old_classifier = {**DrawConfig().to_dict(), "kind": "classifier", "classes": 7, "enc_size": 99, "writer": "x"}
    assert configs.from_dict(old_classifier) == ClassifierConfig(classes=7)
    assert configs.from_dict({**DrawConfig().to_dict(), "classes": 10}) == DrawConfig()
    with pytest.raises(ConfigError, match="^unknown config field\\(s\\) of a classifier model: zzz$"):
        configs.from_dict({**ClassifierConfig().to_dict(), "zzz": 1})


def test_a_config_without_kind_is_a_draw_model_and_unknown_kinds_are_refused() -> None:
    """Checkpoints written before the classifier have no kind or classes: they are DRAW models."""
    old = {k: v for k, v in DrawConfig().to_dict().items() if k not in ("kind", "classes")}
    assert DrawConfig.from_dict(old).kind == "draw"
    with pytest.raises(ConfigError, match="^unknown model kind 'gan'; expected one of draw, classifier$"):
        configs.from_dict(full(kind="gan"))
    with pytest.raises(ConfigError, match="^the config describes a classifier model, not a draw model$"):
        DrawConfig.from_dict(ClassifierConfig().to_dict())


def test_json_round_trip(tiny_config) -> None:
    """A config survives json.dumps / json.loads unchanged."""
    cfg = tiny_config(sampler_options={"scale": 0.5, "nested": {"a": [1, "b"]}})
    text = json.dumps(cfg.to_dict())
    assert DrawConfig.from_dict(json.loads(text)) == cfg


def test_to_dict_is_a_copy(tiny_config) -> None:
    """Mutating the dict from to_dict does not change the (frozen) config."""
    cfg = tiny_config(reader_options={"a": 1})
    data = cfg.to_dict()
    data["reader_options"]["a"] = 2
    assert cfg.reader_options == {"a": 1}


def test_from_dict_rejects_unknown_fields() -> None:
    """Unknown keys are named in the message."""
    with pytest.raises(ConfigError, match="unknown config field.*: hieght, zzz"):
        DrawConfig.from_dict({"hieght": 28, "zzz": 1, "width": 28})


@pytest.mark.parametrize(
    ("field", "value"),
    [("height", "28"), ("glimpses", True), ("z_size", 2.0), ("channels", None), ("width", [28])],
)
def test_from_dict_rejects_non_integers(field: str, value: Any) -> None:
    """A string, bool, float, null or list where an int is expected names the field."""
    with pytest.raises(ConfigError, match=f"'{field}' must be an integer"):
        DrawConfig.from_dict(full(**{field: value}))


@pytest.mark.parametrize("field", ["channels", "height", "glimpses", "enc_size", "z_size", "read_size"])
@pytest.mark.parametrize("value", [0, -3])
def test_from_dict_rejects_non_positive_sizes(field: str, value: int) -> None:
    """Every size must be at least 1."""
    with pytest.raises(ConfigError, match=f"'{field}' must be at least 1, got {value}"):
        DrawConfig.from_dict(full(**{field: value}))


@pytest.mark.parametrize("field", ["glimpse_hidden", "glimpse_conv"])
def test_a_retired_glimpse_layer_loads_when_off_and_is_refused_when_used(field: str) -> None:
    """0.1.0 wrote glimpse_hidden and glimpse_conv in every config, 0 when the model had no such layer:
    that config loads as the same model without the field; one that used the layer is refused by name."""
    assert configs.from_dict(full(kind="classifier", glimpse_hidden=0, glimpse_conv=0)) == ClassifierConfig()
    for used in (64, True):
        message = (f"^config field '{field}' is {used!r}, but drawcli 0.1.0 was the last version with '{field}'; "
                   "load this file with drawcli 0.1.0$")  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            configs.from_dict(full(kind="classifier", **{field: used}))


@pytest.mark.parametrize(
    ("field", "value"),
    [("glimpses", 10**9), ("enc_size", 10**6), ("height", 5000), ("channels", 5), ("z_size", 16385)],
)
def test_from_dict_rejects_absurd_sizes(field: str, value: int) -> None:
    """Sizes above the allocation limits are refused with 'limit' in the message."""
    with pytest.raises(ConfigError, match=f"'{field}' is {value}, above the limit"):
        DrawConfig.from_dict(full(**{field: value}))


def test_glimpse_limit_boundary() -> None:
    """MAX_GLIMPSES itself is accepted, one more is not."""
    assert DrawConfig(glimpses=MAX_GLIMPSES).glimpses == 1024
    with pytest.raises(ConfigError, match="limit of 1024"):
        DrawConfig(glimpses=MAX_GLIMPSES + 1)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"height": 4, "width": 6, "read_size": 5}, "read size 5 is larger than the image (4x6)"),
        ({"height": 9, "width": 3, "read_size": 2, "write_size": 4}, "write size 4 is larger than the image (9x3)"),
    ],
)
def test_patch_larger_than_image_is_rejected(changes: dict[str, int], message: str) -> None:
    """Read/write patches must fit the image's smaller side."""
    with pytest.raises(ConfigError) as info:
        DrawConfig.from_dict(full(**changes))
    assert message in str(info.value)
    fits = {**changes, "read_size": 3, "write_size": 3}
    assert DrawConfig.from_dict(full(**fits)).read_size == 3


@pytest.mark.parametrize("data", [[1, 2], "config", None, 3, b"{}"])
def test_from_dict_rejects_non_mappings(data: Any) -> None:
    """Anything but a JSON object is refused with its type named."""
    with pytest.raises(ConfigError, match=f"config must be a JSON object, got {type(data).__name__}"):
        DrawConfig.from_dict(data)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"reader": ""}, "'reader' must be a component name"),
        ({"writer": 3}, "'writer' must be a component name"),
        ({"sampler": "x" * 101}, "'sampler' must be a component name"),
        ({"reader_options": [1]}, "'reader_options' must be a JSON object"),
        ({"writer_options": {1: "a"}}, "'writer_options' must be a JSON object"),
        ({"sampler_options": {"f": object()}}, "'sampler_options' is not JSON-able"),
        ({"reader_options": {"blob": "x" * 70000}}, "'reader_options' is too large"),
    ],
)
def test_from_dict_rejects_bad_names_and_options(changes: dict[str, Any], message: str) -> None:
    """Component names are short non-empty strings; options are small JSON objects with str keys."""
    with pytest.raises(ConfigError) as info:
        DrawConfig.from_dict(full(**changes))
    assert message in str(info.value)


def test_replace_validates_again(tiny_config) -> None:
    """replace() returns a changed copy and re-runs validation."""
    cfg = tiny_config()
    assert cfg.replace(glimpses=5).glimpses == 5 and cfg.glimpses == 3
    with pytest.raises(ConfigError, match="larger than the image"):
        cfg.replace(read_size=9)


def test_from_dict_unknown_keys_of_mixed_types() -> None:
    """A mapping with non-str keys of mixed types is still a ConfigError, not a TypeError from sorting."""
    with pytest.raises(ConfigError, match="unknown config field.*: 1, x"):
        DrawConfig.from_dict({1: 2, "x": 3})
