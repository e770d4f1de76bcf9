"""Named settings from the paper (Gregor et al. 2015, table 2 and section 4), by setting name.

A preset's keys are config fields of its model kind (config.py; "kind" names it) and TrainSettings fields; `build` turns a preset and changes into the
config and settings a run trains with, which is what `drawcli train --preset NAME` does (any option
given explicitly on the command line wins, and component options merge key by key).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from drawcli.config import ModelConfig, config_class
from drawcli.errors import ConfigError, DrawcliError

if TYPE_CHECKING:
    from drawcli.training.settings import TrainSettings


@dataclass(frozen=True)
class Preset:
    """Values by setting name ("kind", the kind's config fields and TrainSettings fields), with a one-line description."""

    description: str
    settings: dict[str, Any] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    "paper-mnist": Preset(
        "MNIST with attention: 64 glimpses, LSTM 256, z 100, read 2x2, write 5x5 (paper: 80.97 nats)",
        {"dataset": "mnist", "reader": "filterbank", "writer": "filterbank", "glimpses": 64,
         # The read window starts as the tiling (init=cover): a narrower start trains worse past the first epoch.
         "enc_size": 256, "dec_size": 256, "z_size": 100, "read_size": 2, "write_size": 5},
    ),
    "paper-mnist-noattn": Preset(
        "MNIST without attention: 64 glimpses, LSTM 256, z 100 (paper: 87.40 nats)",
        {"dataset": "mnist", "reader": "no-attention", "writer": "no-attention", "glimpses": 64,
         "enc_size": 256, "dec_size": 256, "z_size": 100},
    ),
    "paper-two-digit-mnist": Preset(
        "Two-digit MNIST generation (section 4.2): 60x60, two digits at random positions; the paper "
        "gives no settings or score for it, so these are its MNIST model's: 64 glimpses, LSTM 256, "
        "z 100, read 2x2, write 5x5; Adam 5e-4",
        {"dataset": "two-digit-mnist", "reader": "filterbank", "writer": "filterbank", "glimpses": 64,
         "enc_size": 256, "dec_size": 256, "z_size": 100, "read_size": 2, "write_size": 5,
         # At the default 1e-3 the gradient goes non-finite within the first epoch at this size.
         "lr": 5e-4},
    ),
    "paper-cluttered-mnist": Preset(
        "Cluttered MNIST classification (section 4.1): 100x100, 8 glimpses of 12x12, LSTM 256, "
        "the window starting as a 12x12 grid over the whole image at gain 1, its centre kept on the "
        "image, the training clutter redrawn every epoch, Adam 6e-4 annealed to 0 over 75 epochs "
        "(paper: 3.36% test error)",
        {"kind": "classifier", "dataset": "cluttered-mnist", "reader": "filterbank", "glimpses": 8,
         "dec_size": 256, "read_size": 12,
         # The read window starts at gain 1 (cover-unscaled): at init=cover's gain (about 10 at this
         # window) Adam barely leaves chance. Without the centre kept on the image (centre=inside),
         # the redrawn clutter and the annealed rate, the windows can walk off the image and
         # training falls back to chance.
         "reader_options": {"init": "cover-unscaled", "centre": "inside"}, "lr": 6e-4,
         "redraw": True, "lr_schedule": "cosine", "epochs": 75},
    ),
    "paper-svhn": Preset(
        "SVHN 32x32 colour: 32 glimpses, LSTM 800, z 100, read 12x12, write 12x12 "
        "(the train_32x32.mat and test_32x32.mat files; needs scipy: drawcli[svhn])",
        {"dataset": "svhn", "channels": 3, "height": 32, "width": 32, "reader": "filterbank",
         "writer": "filterbank", "glimpses": 32, "enc_size": 800, "dec_size": 800, "z_size": 100, "read_size": 12, "write_size": 12},
    ),
    "paper-cifar10": Preset(
        "CIFAR-10 32x32 colour: 64 glimpses, LSTM 400, z 200, read 5x5, write 5x5 "
        "(the binary version's cifar-10-batches-bin files)",
        {"dataset": "cifar10", "channels": 3, "height": 32, "width": 32, "reader": "filterbank",
         "writer": "filterbank", "glimpses": 64, "enc_size": 400, "dec_size": 400, "z_size": 200, "read_size": 5, "write_size": 5},
    ),
}  # fmt: skip


def get(name: str) -> Preset:
    """The preset called `name`; unknown names list the known ones."""
    if name not in PRESETS:
        raise DrawcliError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def build(name: str | None = None, **changes: Any) -> tuple[ModelConfig, TrainSettings]:
    """The config and training settings of preset `name` (None: the defaults) with `changes`, by setting name.

    The image shape defaults to the data set's (28 x 28 grey for a folder), and the binarization to a
    binarized data set's own bits, else stochastic: what `drawcli train --preset NAME` trains.
    """
    from drawcli import data
    from drawcli.training.settings import TrainSettings

    values = {**(get(name).settings if name is not None else {}), **changes}
    config_type = config_class(values.pop("kind", "draw"))
    config_fields = set(config_type.field_names())
    setting_fields = {f.name for f in dataclasses.fields(TrainSettings)}
    unknown = sorted(set(values) - config_fields - setting_fields)
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}: give {config_type.__name__} or TrainSettings fields")
    dataset = data.open_dataset(values.get("dataset", TrainSettings.dataset))
    for key, size in zip(("channels", "height", "width"), dataset.image_shape or (1, 28, 28)):
        values.setdefault(key, size)
    values["binarize"] = data.binarization(dataset, values.get("binarize"))
    config = config_type(**{k: v for k, v in values.items() if k in config_fields})
    return config, TrainSettings(**{k: v for k, v in values.items() if k in setting_fields})


def command_words(options: dict[str, Any]) -> list[str]:
    """Options by `train` parameter name as its words: lists repeat their flag, booleans are --name or --no-name."""
    words: list[str] = []
    for key, value in options.items():
        name = key.replace("_", "-")
        for item in value if isinstance(value, (list, tuple)) else [value]:
            words += [f"--{name}"] if item is True else [f"--no-{name}"] if item is False else [f"--{name}", str(item)]
    return words


def command_line(options: dict[str, Any]) -> str:
    """Options by `train` parameter name as one command line."""
    return " ".join(command_words(options))
