"""The registry of model kinds: every kind builds, and what it says it can do is what its model does."""

from __future__ import annotations

import pytest
import torch

from drawcli import choices, kinds, registry
from drawcli.errors import ConfigError

TINY = dict(height=12, width=12, glimpses=2, enc_size=8, dec_size=8, z_size=3, read_size=3, write_size=3)


@pytest.mark.parametrize("name", list(kinds.KINDS))
def test_each_kind_builds_and_does_what_it_declares(name: str) -> None:
    kind = kinds.get(name)
    config_class = kind.config_class()
    fields = config_class.field_names()
    config = config_class(**{k: v for k, v in {**TINY, "classes": 4}.items() if k in fields})
    assert config.kind == name and config_class.from_dict(config.to_dict()) == config
    # An option that sets another kind's field is refused for this one (classes comes from the data, not an option).
    others = {f for k in kinds.KINDS.values() for f in k.config_class().field_names()} - set(fields) - {"classes"}
    assert {f.replace("_options", "_option") for f in others} <= {param for param, _ in kind.unused_options}
    model = kinds.build(config)
    assert isinstance(model, kind.model_class()) and kinds.of(model) is kind
    assert set(kind.components) <= set(registry.GROUPS) and kind.draws != kind.classifies
    out = model(torch.rand(2, 1, 12, 12).round())
    if kind.draws:
        assert model.generate(2).canvases.shape == (2, 2, 1, 12, 12) and out.recon.shape == (2,)
        assert kind.metric == "bound"
    if kind.classifies:
        assert out.logits.shape == (2, 4) and kind.metric == "error"
    family = kind.family_class()
    assert family.__module__.startswith("drawcli.training.")


def test_the_kinds_are_the_allowed_values_and_unknown_ones_are_refused() -> None:
    assert choices.MODEL_KINDS == ("draw", "classifier") == tuple(kinds.KINDS)
    with pytest.raises(ConfigError, match="^unknown model kind 'gan'; expected one of draw, classifier$"):
        kinds.get("gan")
    with pytest.raises(ConfigError, match="^Linear is not a drawcli model"):
        kinds.of(torch.nn.Linear(2, 2))


def test_a_setting_the_kind_cannot_use_is_refused_with_its_option_and_reason() -> None:
    """training.train's check, for runs started from Python or a run.json (the command line refuses first)."""
    from drawcli.training.settings import TrainSettings

    draw, classifier = kinds.get("draw"), kinds.get("classifier")
    assert kinds.unused_setting(draw, TrainSettings(teachers=("t",))) == (
        "--teacher is for the classifier (--model classifier): DRAW has no class probabilities to learn")
    assert kinds.unused_setting(draw, TrainSettings()) is None
    assert kinds.unused_setting(classifier, TrainSettings(redraw=True, locate_loss=0.5)) is None
