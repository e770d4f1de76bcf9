"""Entry-point discovery: third-party components, unknown names, broken and wrong plugins."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from drawcli import registry
from drawcli.config import DrawConfig
from drawcli.errors import PluginError
from drawcli.model import DRAW

SMALL = dict(channels=2, height=6, width=8, glimpses=2, enc_size=8, dec_size=8, z_size=3, read_size=2, write_size=2)

MEAN_POOL = '''
from __future__ import annotations

import torch
from drawcli.contract import Reader


class MeanPoolReader(Reader):
    """Reads the per-channel means of x and x_hat: out_size = 2 C."""

    def __init__(self, config, **options):
        super().__init__(config, **options)
        self.out_size = 2 * config.channels

    def forward(self, x, x_hat, h_dec):
        return torch.cat([x.mean(dim=(2, 3)), x_hat.mean(dim=(2, 3))], dim=1), None
'''


def install_fake(root: Path, dist: str, modules: dict[str, str], entry_points: str) -> None:
    """Write modules and a `<dist>-0.1.dist-info` folder into root (a sys.path entry)."""
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    importlib.invalidate_caches()


@pytest.fixture
def fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh sys.path entry; modules imported from it are dropped afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("fake_drawcli_"):
            del sys.modules[name]
    importlib.invalidate_caches()


def test_third_party_reader_is_discovered_and_used(fake_site: Path) -> None:
    """A dist-info with a drawcli.readers entry point: listed with dist and alias, usable by DRAW."""
    install_fake(
        fake_site,
        "fake-reader",
        {"fake_drawcli_reader": MEAN_POOL},
        """
        [drawcli.readers]
        mean-pool = fake_drawcli_reader:MeanPoolReader
        mp = fake_drawcli_reader:MeanPoolReader
        """,
    )
    specs = {spec.name: spec for spec in registry.find("reader")}
    assert {"mean-pool", "filterbank", "no-attention"} <= set(specs)
    spec = specs["mean-pool"]
    assert spec.distribution == "fake-reader"
    assert spec.version == "0.1"
    assert spec.aliases == ("mp",)
    assert spec.value == "fake_drawcli_reader:MeanPoolReader"
    assert registry.resolve("reader", "mp") == spec
    assert registry.names("reader").count("mp") == 1

    cfg = DrawConfig(**SMALL, reader="mean-pool", writer="none")
    torch.manual_seed(0)
    model = DRAW(cfg)
    assert type(model.reader).__name__ == "MeanPoolReader"
    assert model.encoder.input_size == 2 * 2 + cfg.dec_size
    x = (torch.rand(3, 2, 6, 8) > 0.5).float()
    out = model(x)
    assert out.kl.shape == (3, 2)
    assert torch.isfinite(out.loss).all()
    r, window = model.reader(x, x - 0.5, torch.zeros(3, cfg.dec_size))
    torch.testing.assert_close(r, torch.cat([x.mean(dim=(2, 3)), x.mean(dim=(2, 3)) - 0.5], dim=1))
    assert window is None
    assert type(DRAW(cfg.replace(reader="mp")).reader).__name__ == "MeanPoolReader"


@pytest.mark.parametrize("kind", ["reader", "writer"])
def test_unknown_name_lists_installed_names(kind: str) -> None:
    """An unknown component name is a PluginError that lists every installed name and alias."""
    with pytest.raises(PluginError) as info:
        registry.resolve(kind, "nope")
    message = str(info.value)
    assert f"unknown {kind} 'nope'" in message
    for name in ("filterbank", "attn", "no-attention", "none"):
        assert name in message
    with pytest.raises(PluginError, match="filterbank"):
        DRAW(DrawConfig(**SMALL, **{kind: "nope"}))


def test_unknown_sampler_and_unknown_kind() -> None:
    """Unknown sampler names list 'gaussian'; an unknown kind is a programming error (ValueError)."""
    with pytest.raises(PluginError, match="installed samplers: gaussian"):
        registry.load("sampler", "laplace")
    with pytest.raises(ValueError, match="unknown component kind 'painter'"):
        registry.find("painter")


@pytest.mark.parametrize(
    "source",
    [
        "raise ImportError('needs a library that is not installed')\n",
        "def broken(:\n    pass\n",  # SyntaxError at import
    ],
    ids=["import-error", "syntax-error"],
)
def test_broken_plugin_fails_clearly_and_does_not_hide_others(fake_site: Path, source: str) -> None:
    """Loading a plugin whose import fails is a PluginError naming dist and entry point; listing still works."""
    install_fake(
        fake_site,
        "broken-plugin",
        {"fake_drawcli_broken": source},
        """
        [drawcli.readers]
        broken = fake_drawcli_broken:Reader
        """,
    )
    names = registry.names("reader")  # listing does not import
    assert {"broken", "filterbank", "attn", "no-attention", "none"} <= set(names)
    with pytest.raises(PluginError) as info:
        registry.load("reader", "broken")
    message = str(info.value)
    assert "broken-plugin" in message
    assert "'broken'" in message
    assert "fake_drawcli_broken:Reader" in message
    assert "drawcli.readers" in message
    with pytest.raises(PluginError, match="broken-plugin"):
        DRAW(DrawConfig(**SMALL, reader="broken"))
    # the built-ins still load
    assert DRAW(DrawConfig(**SMALL)).reader.out_size == 2 * 2 * 2 * 2


def test_plugin_that_is_not_a_reader_is_rejected(fake_site: Path) -> None:
    """An entry point whose object does not subclass Reader makes DRAW raise 'does not implement'."""
    install_fake(
        fake_site,
        "impostor",
        {
            "fake_drawcli_impostor": """
            from torch import nn

            class NotAReader(nn.Module):
                out_size = 4

                def __init__(self, config, **options):
                    super().__init__()

                def forward(self, x, x_hat, h_dec):
                    return x.flatten(1)[:, :4], None
            """
        },
        """
        [drawcli.readers]
        impostor = fake_drawcli_impostor:NotAReader
        """,
    )
    with pytest.raises(PluginError) as info:
        DRAW(DrawConfig(**SMALL, reader="impostor"))
    message = str(info.value)
    assert "does not implement drawcli.contract.Reader" in message
    assert "impostor" in message


def test_contract_base_rejects_options_a_third_party_component_passes_on(fake_site: Path) -> None:
    """A reader that hands **options to the base class gets its unknown options refused there, by name."""
    install_fake(fake_site, "fake-pool", {"fake_drawcli_pool": MEAN_POOL},
                 "[drawcli.readers]\nmean-pool = fake_drawcli_pool:MeanPoolReader\n")  # fmt: skip
    with pytest.raises(PluginError, match=r"unknown option\(s\) \['bogus'\] for MeanPoolReader"):
        DRAW(DrawConfig(**SMALL, reader="mean-pool", reader_options={"bogus": 1}))


@pytest.mark.parametrize("kind", ["reader", "writer", "sampler"])
def test_unknown_option_for_builtin_is_plugin_error(kind: str) -> None:
    """A built-in given an option it does not take fails as a PluginError naming the option."""
    with pytest.raises(PluginError, match="bogus") as info:
        DRAW(DrawConfig(**SMALL, **{f"{kind}_options": {"bogus": 1}}))
    assert "could not be built" in str(info.value)


def test_same_distribution_twice_on_sys_path_is_listed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One dist found under two sys.path entries is one component, not a duplicate or its own alias."""
    entry = """
        [drawcli.readers]
        mean-pool = fake_drawcli_twice:MeanPoolReader
        mp = fake_drawcli_twice:MeanPoolReader
        """
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        install_fake(tmp_path / sub, "fake-reader", {"fake_drawcli_twice": MEAN_POOL}, entry)
        monkeypatch.syspath_prepend(str(tmp_path / sub))
    importlib.invalidate_caches()
    try:
        spec = registry.resolve("reader", "mean-pool")
        assert spec.aliases == ("mp",)
        assert registry.names("reader").count("mean-pool") == 1
        assert registry.resolve("reader", "mp") == spec
    finally:
        sys.modules.pop("fake_drawcli_twice", None)


CONSTRUCTOR_ERRORS = '''
from drawcli.contract import Reader
from drawcli.errors import ConfigError


class Picky(Reader):
    def __init__(self, config, **options):
        super().__init__(config, **options)
        raise ConfigError("picky needs a square image")

    def forward(self, x, x_hat, h_dec):
        raise AssertionError


class Crashy(Reader):
    def __init__(self, config, **options):
        super().__init__(config, **options)
        raise ValueError("internal failure")

    def forward(self, x, x_hat, h_dec):
        raise AssertionError
'''


def test_constructor_errors_keep_drawcli_errors_and_wrap_others(fake_site: Path) -> None:
    """A DrawcliError from a plugin's __init__ passes through as is; any other error becomes a PluginError."""
    install_fake(
        fake_site,
        "ctor-errors",
        {"fake_drawcli_ctor": CONSTRUCTOR_ERRORS},
        """
        [drawcli.readers]
        picky = fake_drawcli_ctor:Picky
        crashy = fake_drawcli_ctor:Crashy
        """,
    )
    from drawcli.errors import ConfigError

    with pytest.raises(ConfigError, match="picky needs a square image") as info:
        DRAW(DrawConfig(**SMALL, reader="picky"))
    assert type(info.value) is ConfigError
    with pytest.raises(PluginError) as info:
        DRAW(DrawConfig(**SMALL, reader="crashy"))
    message = str(info.value)
    assert "could not be built" in message
    assert "ctor-errors" in message
    assert "internal failure" in message
