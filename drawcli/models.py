"""Building a model from its config: the kind (DrawConfig.kind) names the class."""

from __future__ import annotations

from torch import nn

from drawcli.choices import MODEL_KINDS
from drawcli.classifier import AttentionClassifier
from drawcli.config import DrawConfig
from drawcli.model import DRAW

MODELS: dict[str, type[nn.Module]] = {"draw": DRAW, "classifier": AttentionClassifier}
assert tuple(MODELS) == MODEL_KINDS, "every kind in choices.MODEL_KINDS is built here"


def build(config: DrawConfig) -> nn.Module:
    """The model `config` describes (weights freshly initialised from torch's RNG)."""
    return MODELS[config.kind](config)
