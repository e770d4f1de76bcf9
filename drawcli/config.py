"""The dataclass of each model kind (DrawConfig, ClassifierConfig) and their JSON form.

A checkpoint stores `config.to_dict()` in its metadata, with the kind's name under "kind";
`from_dict` picks the kind's class and validates untrusted input (unknown fields, wrong types,
absurd sizes) before anything is built.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Mapping

from drawcli import kinds
from drawcli.choices import CANVAS_STARTS
from drawcli.errors import ConfigError

# Upper bounds that keep a hostile or mistyped config from allocating the machine away.
MAX_GLIMPSES = 1024
MAX_HIDDEN = 16384
MAX_IMAGE_SIDE = 1024
MAX_CHANNELS = 4
MAX_CLASSES = 10000
MAX_OPTIONS_JSON = 64 * 1024
SHARED_LIMITS = {"channels": MAX_CHANNELS, "height": MAX_IMAGE_SIDE, "width": MAX_IMAGE_SIDE, "glimpses": MAX_GLIMPSES,
                 "dec_size": MAX_HIDDEN}  # fmt: skip
# Fields added after the first checkpoint format, each with the value that every file written
# before it implies (a file without "kind" holds a DRAW model). A checkpoint lacking any other
# field is refused: a default would silently rebuild another model than the one saved.
ADDED_LATER: dict[str, Any] = {"kind": "draw", "classes": 10, "canvas": "zero"}
# Up to 0.2.0 one config described both kinds, so every file also records the other kind's fields,
# which its model never read: they are dropped whatever their value.
DRAW_ONLY = ("enc_size", "z_size", "write_size", "writer", "sampler", "writer_options", "sampler_options", "canvas")
CLASSIFIER_ONLY = ("classes",)


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


def filled_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """The config fields `from_dict` fills in for a file written before they existed, with their values."""
    names = {"kind", *config_class(data.get("kind", ADDED_LATER["kind"])).field_names()}
    return {k: v for k, v in ADDED_LATER.items() if k in names and k not in data}


@dataclass(frozen=True)
class ModelConfig:
    """What every kind's config has: the image it reads, its glimpses, its reader, and the JSON form.

    `dec_size` is the width of the state a reader's window is computed from (contract.Reader), so
    both kinds keep that name. A subclass is a frozen dataclass that sets `kind`, the ModelKind it
    describes, `limits` (upper bounds of its sizes), `window_sizes` (sizes no larger than the image)
    and `other_kinds_fields` (the fields files of this kind recorded for the other kind up to 0.2.0,
    dropped on load). The fields below are the shared ones, with both kinds' defaults (the paper's
    MNIST setting); a subclass adds its own after them.
    """

    kind: ClassVar[str]
    limits: ClassVar[dict[str, int]]
    window_sizes: ClassVar[tuple[str, ...]] = ("read_size",)
    other_kinds_fields: ClassVar[tuple[str, ...]]
    channels: int = 1
    height: int = 28
    width: int = 28
    glimpses: int = 64
    dec_size: int = 256
    read_size: int = 2
    reader: str = "filterbank"
    reader_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _validate(self)
        self.check()

    def check(self) -> None:
        """The kind's own checks beyond types and sizes (a ConfigError)."""

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images this model reads (and draws)."""
        return (self.channels, self.height, self.width)

    @classmethod
    def field_names(cls) -> list[str]:
        """The kind's fields, in order (kind itself is a class attribute, not a field)."""
        return [f.name for f in dataclasses.fields(cls)]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict with the kind and every field, the form stored in checkpoints."""
        return {"kind": self.kind, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: Any) -> Any:
        """Validate an untrusted mapping (e.g. checkpoint metadata) and build the config of the kind it names.

        Every field must be present, except those of ADDED_LATER, which a file older than them lacks;
        a field of RETIRED is dropped when it holds its neutral value and refused otherwise; the other
        kind's fields (other_kinds_fields, which files up to 0.2.0 recorded unused) are dropped whatever
        their value. Called on a kind's class, a config of another kind is refused.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"config must be a JSON object, got {type(data).__name__}")
        kind = data.get("kind", ADDED_LATER["kind"])
        target = config_class(kind)
        if not issubclass(target, cls):
            raise ConfigError(f"the config describes a {kind} model, not a {cls.kind} model")
        data = RETIRED.drop(data, "config field")
        data = {k: v for k, v in data.items() if k != "kind" and k not in target.other_kinds_fields}
        known = target.field_names()
        unknown = sorted(set(data) - set(known), key=str)  # keys of a non-JSON mapping may mix types
        if unknown:
            raise ConfigError(f"unknown config field(s) of a {kind} model: {', '.join(map(str, unknown))}")
        return target(**complete(data, known, ADDED_LATER, "config field"))

    def replace(self, **changes: Any) -> Any:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def config_class(kind: Any) -> type[ModelConfig]:
    """The config class of the model kind called `kind` (an unknown one is a ConfigError listing the kinds)."""
    if not isinstance(kind, str):
        raise ConfigError(f"config field 'kind' must be a model kind, got {kind!r}")
    return kinds.get(kind).config_class()  # type: ignore[no-any-return]


def from_dict(data: Any) -> ModelConfig:
    """The config `data` describes, of whichever kind it names (see ModelConfig.from_dict)."""
    return ModelConfig.from_dict(data)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class DrawConfig(ModelConfig):
    """A DRAW model: image shape, glimpses, LSTM and latent sizes, and its components.

    Defaults are the paper's MNIST setting with attention (Gregor et al. 2015, section 4):
    T = 64 glimpses, LSTM 256, z 100, read 2x2, write 5x5. Components are entry-point names
    (aliases allowed); `*_options` are extra keyword options for third-party components.
    `canvas` "learned" makes c_0 a per-pixel parameter (training starts it at the training
    images' mean logit) instead of 0; the bound stays a bound.
    """

    kind: ClassVar[str] = "draw"
    limits: ClassVar[dict[str, int]] = {**SHARED_LIMITS, "enc_size": MAX_HIDDEN, "z_size": MAX_HIDDEN}
    window_sizes: ClassVar[tuple[str, ...]] = ("read_size", "write_size")
    other_kinds_fields: ClassVar[tuple[str, ...]] = CLASSIFIER_ONLY

    enc_size: int = 256
    z_size: int = 100
    write_size: int = 5
    writer: str = "filterbank"
    sampler: str = "gaussian"
    writer_options: dict[str, Any] = field(default_factory=dict)
    sampler_options: dict[str, Any] = field(default_factory=dict)
    canvas: str = "zero"

    def check(self) -> None:
        if self.canvas not in CANVAS_STARTS:
            raise ConfigError(f"unknown canvas start {self.canvas!r}; expected one of {', '.join(CANVAS_STARTS)}")


@dataclass(frozen=True)
class ClassifierConfig(ModelConfig):
    """The attention classifier of section 4.1: one LSTM of `dec_size` units (the state the reader's
    window is computed from) reads `glimpses` glimpses and predicts one of `classes` classes (set
    from the training data's labels). It has no encoder, latents, writer or canvas.
    """

    kind: ClassVar[str] = "classifier"
    limits: ClassVar[dict[str, int]] = {**SHARED_LIMITS, "classes": MAX_CLASSES}
    other_kinds_fields: ClassVar[tuple[str, ...]] = DRAW_ONLY

    classes: int = 10


def _validate(cfg: ModelConfig) -> None:
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
        else:
            _validate_options(f.name, value)
    for name, limit in cfg.limits.items():
        if getattr(cfg, name) > limit:
            raise ConfigError(f"config field {name!r} is {getattr(cfg, name)}, above the limit of {limit}")
    smaller_side = min(cfg.height, cfg.width)
    for name in cfg.window_sizes:
        size = getattr(cfg, name)
        if size > smaller_side:
            raise ConfigError(f"{name.replace('_', ' ')} {size} is larger than the image ({cfg.height}x{cfg.width})")


def _validate_options(name: str, value: Any) -> None:
    """A component's options: a JSON object with string keys, of bounded size."""
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"config field {name!r} must be a JSON object, got {value!r}")
    try:
        size = len(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config field {name!r} is not JSON-able: {exc}") from None
    if size > MAX_OPTIONS_JSON:
        raise ConfigError(f"config field {name!r} is too large ({size} bytes)")
