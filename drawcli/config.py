"""The one dataclass that describes a DRAW architecture, and its JSON form.

A checkpoint stores `DrawConfig.to_dict()` in its metadata; `DrawConfig.from_dict` validates
untrusted input (unknown fields, wrong types, absurd sizes) before anything is built.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from drawcli.choices import CANVAS_STARTS, MODEL_KINDS
from drawcli.errors import ConfigError

# Upper bounds that keep a hostile or mistyped config from allocating the machine away.
MAX_GLIMPSES = 1024
MAX_HIDDEN = 16384
MAX_IMAGE_SIDE = 1024
MAX_CHANNELS = 4
MAX_CLASSES = 10000
MAX_OPTIONS_JSON = 64 * 1024
# Fields added after the first checkpoint format, each with the value that every file written
# before it implies. A checkpoint lacking any other field is refused: a default would silently
# rebuild another model than the one saved.
ADDED_LATER: dict[str, Any] = {"kind": "draw", "classes": 10, "canvas": "zero"}


@dataclass(frozen=True)
class Retired:
    """Fields (or component options) a version removed, each with its neutral value: the value that
    every file not using it holds (0: no such layer or term), and the last version that had them.

    A saved neutral value describes the same model or run without the field, so it is dropped; any
    other value means the file uses what was removed, and rebuilding it without would be another
    model, so it is refused.
    """

    last_version: str
    neutral: Mapping[str, Any]

    def drop(self, data: Mapping[str, Any], what: str) -> dict[str, Any]:
        """`data` without the retired keys; a ConfigError names the first one saved with a non-neutral value
        (`what`: "config field", "training setting", "reader option", ...)."""
        for name, neutral in self.neutral.items():
            value = data.get(name, neutral)
            if isinstance(value, bool) or value != neutral:
                raise ConfigError(f"{what} {name!r} is {value!r}, but drawcli {self.last_version} was the last version "
                                  f"with {name!r}; load this file with drawcli {self.last_version}")  # fmt: skip
        return {k: v for k, v in data.items() if k not in self.neutral}


# The classifier's optional glimpse layers, removed after 0.1.0 (off, 0, in every file that did not use them).
RETIRED = Retired("0.1.0", {"glimpse_hidden": 0, "glimpse_conv": 0})


def complete(data: Mapping[str, Any], names: Iterable[str], added_later: Mapping[str, Any], what: str) -> dict[str, Any]:
    """`data` with every field of `names`: a missing field from `added_later` takes its recorded value
    for older files; any other missing field is a ConfigError naming it (`what`: "config field")."""
    missing = [name for name in names if name not in data and name not in added_later]
    if missing:
        names_are = f"{what}s {', '.join(map(repr, missing))} are" if len(missing) > 1 else f"{what} {missing[0]!r} is"
        raise ConfigError(f"{names_are} missing; a saved run records every one, so the file is damaged "
                          "or was edited (no default is assumed)")  # fmt: skip
    return {**{k: v for k, v in added_later.items() if k in names and k not in data}, **data}


def filled_fields(data: Mapping[str, Any], added_later: Mapping[str, Any]) -> dict[str, Any]:
    """The fields `complete` would fill in for a file written before they existed, with their values."""
    return {k: v for k, v in added_later.items() if k not in data}


@dataclass(frozen=True)
class DrawConfig:
    """A model: its kind, image shape, glimpses, sizes and component names.

    Defaults are the paper's MNIST setting with attention (Gregor et al. 2015, section 4):
    T = 64 glimpses, LSTM 256, z 100, read 2x2, write 5x5. Components are entry-point names
    (aliases allowed); `*_options` are extra keyword options for third-party components.
    kind "classifier" is the attention classifier of section 4.1: one LSTM of dec_size units
    (the state the reader's window is computed from) reads `glimpses` glimpses and predicts one
    of `classes` classes (set from the training data's labels); it has no encoder, latents or
    writer, so those fields go unused. `canvas` "learned" makes c_0 a per-pixel parameter
    (training starts it at the training images' mean logit) instead of 0; the bound stays a bound.
    """

    kind: str = "draw"

    channels: int = 1
    height: int = 28
    width: int = 28
    glimpses: int = 64
    enc_size: int = 256
    dec_size: int = 256
    z_size: int = 100
    read_size: int = 2
    write_size: int = 5
    reader: str = "filterbank"
    writer: str = "filterbank"
    sampler: str = "gaussian"
    reader_options: dict[str, Any] = field(default_factory=dict)
    writer_options: dict[str, Any] = field(default_factory=dict)
    sampler_options: dict[str, Any] = field(default_factory=dict)
    classes: int = 10
    canvas: str = "zero"

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images this model reads and draws."""
        return (self.channels, self.height, self.width)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict with every field, the form stored in checkpoints."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> DrawConfig:
        """Validate an untrusted mapping (e.g. checkpoint metadata) and build the config.

        Every field must be present, except those of ADDED_LATER, which a file older than them lacks;
        a field of RETIRED is dropped when it holds its neutral value and refused otherwise.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"config must be a JSON object, got {type(data).__name__}")
        data = RETIRED.drop(data, "config field")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known, key=str)  # keys of a non-JSON mapping may mix types
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(map(str, unknown))}")
        return cls(**complete(data, [f.name for f in dataclasses.fields(cls)], ADDED_LATER, "config field"))

    def replace(self, **changes: Any) -> DrawConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _validate(cfg: DrawConfig) -> None:
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.type == "int":
            # bool is an int subclass; a JSON `true` is not a size.
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"config field {f.name!r} must be an integer, got {value!r}")
            if value < 1:
                raise ConfigError(f"config field {f.name!r} must be at least 1, got {value}")
        elif f.type == "str":
            if not isinstance(value, str) or not value or len(value) > 100:
                raise ConfigError(f"config field {f.name!r} must be a component name, got {value!r}")
        elif not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"config field {f.name!r} must be a JSON object, got {value!r}")
        else:
            try:
                size = len(json.dumps(value))
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"config field {f.name!r} is not JSON-able: {exc}") from None
            if size > MAX_OPTIONS_JSON:
                raise ConfigError(f"config field {f.name!r} is too large ({size} bytes)")
    if cfg.canvas not in CANVAS_STARTS:
        raise ConfigError(f"unknown canvas start {cfg.canvas!r}; expected one of {', '.join(CANVAS_STARTS)}")
    if cfg.kind not in MODEL_KINDS:
        raise ConfigError(f"unknown model kind {cfg.kind!r}; expected one of {', '.join(MODEL_KINDS)}")
    limits = {
        "classes": MAX_CLASSES,
        "channels": MAX_CHANNELS,
        "height": MAX_IMAGE_SIDE,
        "width": MAX_IMAGE_SIDE,
        "glimpses": MAX_GLIMPSES,
        "enc_size": MAX_HIDDEN,
        "dec_size": MAX_HIDDEN,
        "z_size": MAX_HIDDEN,
    }
    for name, limit in limits.items():
        if getattr(cfg, name) > limit:
            raise ConfigError(f"config field {name!r} is {getattr(cfg, name)}, above the limit of {limit}")
    smaller_side = min(cfg.height, cfg.width)
    for name in ("read_size", "write_size"):
        if getattr(cfg, name) > smaller_side:
            raise ConfigError(
                f"{name.replace('_', ' ')} {getattr(cfg, name)} is larger than the image "
                f"({cfg.height}x{cfg.width})"
            )
