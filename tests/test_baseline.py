"""The benchmark's straightforward baseline computes drawcli's loss, gradients and samples.

With weights copied from drawcli's model and the same latent noise passed to both, any later
rewrite of drawcli's forward can be checked against this simple reference.
"""

from __future__ import annotations

from typing import Callable

import pytest
import torch
from helpers import load_benchmark

from drawcli.config import DrawConfig
from drawcli.model import DRAW

baseline_draw = load_benchmark("baseline_draw")

NO_ATTENTION = dict(reader="none", writer="none")


def _pair(config: DrawConfig) -> tuple[DRAW, torch.nn.Module]:
    torch.manual_seed(0)
    model = DRAW(config)
    with torch.no_grad():  # move every parameter off its init so no term is trivially zero
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    base = baseline_draw.baseline_like(config)
    base.load_state_dict(baseline_draw.drawcli_to_baseline(model.state_dict(), config.z_size))
    return model, base


@pytest.mark.parametrize("attention", [True, False], ids=["attn", "no-attn"])
@pytest.mark.parametrize("channels", [1, 3])
def test_same_loss_and_gradients(tiny_config: Callable[..., DrawConfig], attention: bool, channels: int) -> None:
    config = tiny_config(channels=channels, **({} if attention else NO_ATTENTION))
    model, base = _pair(config)
    x = torch.bernoulli(torch.full((5, *config.image_shape), 0.3))

    noise = torch.randn(config.glimpses, len(x), config.z_size)
    out = model(x, noise=noise)
    recon, kl = base(x, noise)
    torch.testing.assert_close(recon, out.recon, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(kl, out.kl.sum(dim=1), rtol=1e-5, atol=1e-4)

    out.loss.mean().backward()
    base.loss(x, noise).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    mapped = baseline_draw.drawcli_to_baseline(grads, config.z_size)
    for name, p in base.named_parameters():
        torch.testing.assert_close(p.grad, mapped[name], rtol=1e-4, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("attention", [True, False], ids=["attn", "no-attn"])
def test_same_samples(tiny_config: Callable[..., DrawConfig], attention: bool) -> None:
    config = tiny_config(**({} if attention else NO_ATTENTION))
    model, base = _pair(config)
    noise = torch.randn(config.glimpses, 4, config.z_size)
    ours = model.generate(4, noise=noise).canvases[-1]
    torch.testing.assert_close(base.generate(4, noise), ours, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("options", "count"), [({}, 961_515), (NO_ATTENTION, 2_751_448)], ids=["attn", "no-attn"])
def test_parameter_counts_at_paper_setting(options: dict[str, str], count: int) -> None:
    config = DrawConfig(**options)
    assert sum(p.numel() for p in DRAW(config).parameters()) == count
    assert sum(p.numel() for p in baseline_draw.baseline_like(config).parameters()) == count


def test_the_baseline_refuses_options_it_does_not_model() -> None:
    """A window centre kept on the image changes what the window computes, so the baseline refuses it
    by name; options that only set starting values (init, stride, sigma) map as before."""
    sizes = dict(height=8, width=8, glimpses=2, enc_size=8, dec_size=8, z_size=2, read_size=2, write_size=2)
    config = DrawConfig(**sizes, reader_options={"centre": "inside", "init": "cover"}, writer_options={"centre": "inside"})
    with pytest.raises(ValueError, match="no counterpart of the component option.s. centre: compare against a model without them"):
        baseline_draw.baseline_like(config)
    model, base = _pair(DrawConfig(**sizes, reader_options={"stride": 2.0}, writer_options={"sigma": 1.5}))
    assert sum(p.numel() for p in base.parameters()) == sum(p.numel() for p in model.parameters())
