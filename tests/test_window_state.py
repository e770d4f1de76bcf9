"""experiments/window_state.py: g~ undone by hand, and the states it records are the classifier's own."""

from __future__ import annotations

import math

import torch
from helpers import load_experiment

from drawcli import kinds
from drawcli.config import ClassifierConfig


def test_g_tilde_by_hand() -> None:
    """On a 100-pixel side, g = 50.5 is g~ = 0; under "inside", g = 50.5 (tanh(1) + 1) is g~ = 1."""
    script = load_experiment("window_state")
    centres = torch.tensor([50.5, 50.5 * (math.tanh(1.0) + 1), 101.0])
    assert torch.allclose(script.g_tilde(centres, 100, "free"), torch.tensor([0.0, math.tanh(1.0), 1.0]))
    inside = script.g_tilde(centres, 100, "inside")
    assert torch.allclose(inside[:2], torch.tensor([0.0, 1.0]), atol=1e-5) and inside[2] > 7  # clamped, finite


def test_glimpse_states_replay_the_classifier() -> None:
    """Same logits and windows as the model's own forward; each recorded state places its window; h_0 = 0."""
    script = load_experiment("window_state")
    torch.manual_seed(0)
    config = ClassifierConfig(height=12, width=12, glimpses=3, dec_size=8, read_size=3,
                        classes=4, reader_options={"centre": "inside"})  # fmt: skip
    model = kinds.build(config).eval()
    x = torch.rand(5, 1, 12, 12)
    with torch.no_grad():
        logits, windows, states = script.glimpse_states(model, x)
        out = model(x, record=True)
    assert torch.equal(logits, out.logits) and len(states) == 3 and not states[0].any()
    assert all(torch.equal(a.gx, b.gx) and torch.equal(a.delta, b.delta) for a, b in zip(windows, out.read_windows))
    with torch.no_grad():  # each recorded state places its glimpse's window
        assert all(torch.equal(model.reader.read_image(x, h)[1].gx, w.gx) for h, w in zip(states, windows))
    assert "read_image" not in vars(model.reader)  # the wrapper is gone again


def test_the_step_is_measured_on_what_the_last_window_layer_reads() -> None:
    """The filterbank's window layer is one linear map of h, so what it reads is h itself."""
    script = load_experiment("window_state")
    h = torch.tensor([[0.5, -1.0, 0, 0, 0, 0, 0, 0.25]])
    linear = kinds.build(ClassifierConfig(height=12, width=12, glimpses=3, dec_size=8, read_size=3,
                                     classes=4)).reader.window  # fmt: skip
    assert script.last_layer_input(linear, h) is h
