"""Every installed reader, writer and sampler, found through the registry, keeps the contract.

Names come from the registry at collection time, so a newly installed plugin is tested too.
"""

from __future__ import annotations

import pytest
import torch

from drawcli import registry
from drawcli.config import DrawConfig
from drawcli.contract import AttentionWindow, Reader, Sampler, Writer

SHAPES = {
    "c1-8x8": dict(channels=1, height=8, width=8),
    "c3-8x8": dict(channels=3, height=8, width=8),
    "c1-6x10": dict(channels=1, height=6, width=10),
}
SMALL = dict(glimpses=2, enc_size=12, dec_size=10, z_size=5, read_size=2, write_size=3)
BATCH = 3


def config(shape: str) -> DrawConfig:
    return DrawConfig(**SHAPES[shape], **SMALL)


def names_of(kind: str) -> list[str]:
    return [spec.name for spec in registry.find(kind)]


def check_window(window: AttentionWindow | None, component: Reader | Writer) -> None:
    """The window is what the component declares: None unless it `produces_windows`, else an AttentionWindow
    whose centre() is (B, 2) and corners() (B, 4, 2), finite."""
    assert (window is not None) == component.produces_windows
    if window is None:
        return
    assert isinstance(window, AttentionWindow)
    centre, corners = window.centre(), window.corners()
    assert centre.shape == (BATCH, 2) and corners.shape == (BATCH, 4, 2)
    assert torch.isfinite(centre).all() and torch.isfinite(corners).all()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", names_of("reader"))
def test_reader_output_shape(name: str, shape: str) -> None:
    """reader(x, x_hat, h_dec) -> (B, out_size), finite, window None or an AttentionWindow (check_window)."""
    cfg = config(shape)
    torch.manual_seed(0)
    reader = registry.build("reader", name, cfg)
    assert isinstance(reader, Reader)
    assert isinstance(reader.out_size, int) and reader.out_size > 0
    x = (torch.rand(BATCH, *cfg.image_shape) > 0.5).float()
    x_hat = x - torch.rand_like(x)
    r, window = reader(x, x_hat, torch.randn(BATCH, cfg.dec_size))
    assert r.shape == (BATCH, reader.out_size)
    assert torch.isfinite(r).all()
    check_window(window, reader)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", names_of("writer"))
def test_writer_output_shape(name: str, shape: str) -> None:
    """writer(h_dec) -> canvas update (B, C, H, W), finite."""
    cfg = config(shape)
    torch.manual_seed(0)
    writer = registry.build("writer", name, cfg)
    assert isinstance(writer, Writer)
    update, window = writer(torch.randn(BATCH, cfg.dec_size))
    assert update.shape == (BATCH, *cfg.image_shape)
    assert torch.isfinite(update).all()
    check_window(window, writer)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", names_of("sampler"))
def test_sampler_output_shape(name: str, shape: str) -> None:
    """sampler(h_enc, noise) -> z (B, z_size), kl (B,) >= 0; prior(noise) -> (n, z_size); all finite."""
    cfg = config(shape)
    torch.manual_seed(0)
    sampler = registry.build("sampler", name, cfg)
    assert isinstance(sampler, Sampler)
    z, kl = sampler(torch.randn(BATCH, cfg.enc_size), torch.randn(BATCH, sampler.noise_size))
    assert z.shape == (BATCH, sampler.z_size)
    assert kl.shape == (BATCH,)
    assert torch.isfinite(z).all() and torch.isfinite(kl).all()
    assert (kl >= 0).all()
    prior = sampler.prior(torch.randn(7, sampler.noise_size))
    assert prior.shape == (7, sampler.z_size)
    assert torch.isfinite(prior).all()


ALL_NAMES = [(kind, spec.name) for kind in registry.GROUPS for spec in registry.find(kind)]


@pytest.mark.parametrize(("kind", "name"), ALL_NAMES)
def test_aliases_resolve_to_the_canonical_spec(kind: str, name: str) -> None:
    """Each alias resolves to the canonical name's spec; names(kind) lists each name exactly once."""
    spec = registry.resolve(kind, name)
    assert spec.name == name
    listed = registry.names(kind)
    for alias in spec.names:
        assert registry.resolve(kind, alias) == spec
        assert listed.count(alias) == 1
    # The canonical name is the longest of the names.
    assert all(len(alias) <= len(name) for alias in spec.aliases)


def test_builtin_aliases() -> None:
    """The shipped components: filterbank alias attn, no-attention alias none, gaussian without alias."""
    readers = {spec.name: spec.aliases for spec in registry.find("reader")}
    writers = {spec.name: spec.aliases for spec in registry.find("writer")}
    assert readers["filterbank"] == ("attn",) and writers["filterbank"] == ("attn",)
    assert readers["no-attention"] == ("none",) and writers["no-attention"] == ("none",)
    assert {spec.name: spec.aliases for spec in registry.find("sampler")}["gaussian"] == ()
    assert registry.resolve("reader", "attn").distribution == "drawcli"
