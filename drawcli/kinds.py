"""The kinds of model drawcli trains, each declared once: what it is built from and what it can do.

The core asks a kind (`kinds.of(model).draws`, `kinds.get(config.kind).components`), never compares
its name or probes a model with `hasattr`; a third kind is one more `ModelKind` here. Importing this
module imports no torch: the model and its training family are named as "module:Class" and imported
when first asked for.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from drawcli.errors import ConfigError


@dataclass(frozen=True)
class ModelKind:
    """One kind of model: its classes, the components its config names, and what it can do.

    `unused_options` are `train` parameters this kind ignores, (parameter, why), refused when given on
    the command line (they have defaults, so only their presence tells), the reason read as "--OPTION
    is for ..."; `unused_settings` are the training settings among them, (field, parameter), refused
    when set whichever way the run was started (Python, a resumed run.json).
    """

    name: str
    title: str  # how messages name it
    config: str  # "module:Class" of its config dataclass (config.py)
    model: str  # "module:Class" of the nn.Module, built from its config
    family: str  # "module:Class" of its training family (training/family.py)
    components: tuple[str, ...]  # the component kinds (registry groups) its config names
    draws: bool  # generates images: sample, reconstruct, the bound and importance-weighted bound
    classifies: bool  # predicts classes: classify, the test error, glimpses
    metric: str  # the held-out figure a run is judged by, a key of the training summary's last_test
    unused_options: tuple[tuple[str, str], ...] = ()
    unused_settings: tuple[tuple[str, str], ...] = ()

    def config_class(self) -> Any:
        """The kind's config dataclass (a config.ModelConfig)."""
        return _load(self.config)

    def model_class(self) -> Any:
        return _load(self.model)

    def family_class(self) -> Any:
        return _load(self.family)

    def build(self, config: Any) -> Any:
        """The model `config` describes (weights freshly initialised from torch's RNG)."""
        return self.model_class()(config)


def _load(target: str) -> Any:
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


_FOR_CLASSIFIER = "is for the classifier (--model classifier)"
_FOR_DRAW = "is for DRAW (--model draw)"

KINDS: dict[str, ModelKind] = {
    "draw": ModelKind(
        name="draw", title="DRAW", config="drawcli.config:DrawConfig", model="drawcli.model:DRAW", family="drawcli.training.draw:DrawFamily",
        components=("reader", "writer", "sampler"), draws=True, classifies=False, metric="bound",
        unused_options=(
            ("redraw", f"{_FOR_CLASSIFIER}: DRAW trains on fixed images"),
            ("teacher", f"{_FOR_CLASSIFIER}: DRAW has no class probabilities to learn"),
            ("teacher_weight", f"{_FOR_CLASSIFIER}: DRAW has no class probabilities to learn"),
            ("teacher_temperature", f"{_FOR_CLASSIFIER}: DRAW has no class probabilities to learn"),
            ("locate_loss", f"{_FOR_CLASSIFIER}: DRAW's windows have no object to find"),
        ),
        unused_settings=(("redraw", "redraw"), ("teachers", "teacher"), ("locate_loss", "locate_loss")),
    ),
    "classifier": ModelKind(
        name="classifier", title="the attention classifier", config="drawcli.config:ClassifierConfig",
        model="drawcli.classifier:AttentionClassifier",
        family="drawcli.training.classify:ClassifierFamily", components=("reader",), draws=False, classifies=True,
        metric="error",
        unused_options=(
            ("canvas", f"{_FOR_DRAW}: the classifier has no canvas"),
            ("enc_size", f"{_FOR_DRAW}: the classifier has no encoder"),
            ("dec_size", f"{_FOR_DRAW}: the classifier has one LSTM, sized by --rnn-size"),
            ("z_size", f"{_FOR_DRAW}: the classifier has no latents"),
            ("sampler", f"{_FOR_DRAW}: the classifier has no latents"),
            ("sampler_option", f"{_FOR_DRAW}: the classifier has no latents"),
            ("writer", f"{_FOR_DRAW}: the classifier does not write"),
            ("write_size", f"{_FOR_DRAW}: the classifier does not write"),
            ("writer_option", f"{_FOR_DRAW}: the classifier does not write"),
            ("kl_warmup", f"{_FOR_DRAW}: the classifier has no KL"),
            ("binarize", f"{_FOR_DRAW}: the classifier reads grey levels"),
        ),
    ),
}  # fmt: skip


def unused_setting(kind: ModelKind, settings: Any) -> str | None:
    """The refusal of the first setting `kind` cannot use that `settings` sets ("--redraw is for ..."), or None."""
    reasons = dict(kind.unused_options)
    for field, param in kind.unused_settings:
        if getattr(settings, field):
            return f"--{param.replace('_', '-')} {reasons[param]}"
    return None


def get(name: str) -> ModelKind:
    """The kind called `name`; an unknown one lists the known ones."""
    if name not in KINDS:
        raise ConfigError(f"unknown model kind {name!r}; expected one of {', '.join(KINDS)}")
    return KINDS[name]


def build(config: Any) -> Any:
    """The model a config describes, of its kind (weights freshly initialised)."""
    return get(config.kind).build(config)


def of(model: Any) -> ModelKind:
    """The kind of a drawcli model (anything with a kind's config as `.config`)."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "kind", None) not in KINDS:
        raise ConfigError(f"{type(model).__name__} is not a drawcli model (load one with drawcli.load)")
    return KINDS[config.kind]
