"""The filterbank's window under bf16 autocast, and the window options retired after 0.1.0
(sigma_floor, jitter, hidden): accepted at their neutral 0, refused by name otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import drawcli_filterbank as fb
from drawcli import checkpoint
from drawcli.classifier import AttentionClassifier
from drawcli.config import ClassifierConfig, DrawConfig
from drawcli.contract import Window
from drawcli.errors import ConfigError

RETIRED = {"sigma_floor": 0.0, "jitter": 0, "hidden": 0}  # as 0.1.0 saved them when off (JSON may give 0 or 0.0)


def test_a_bf16_autocast_places_the_read_window_in_float32() -> None:
    """Under the classifier's bf16 autocast the window and filters are float32 and equal, bit for
    bit, to the plain float32 ones (bf16 would put a centre near 77 on a multiple of 0.5); only
    the patch products round, so the glimpse stays within bf16's relative error of float32's."""
    torch.manual_seed(0)
    reader = fb.FilterbankReader(DrawConfig(height=100, width=100, read_size=12), init="cover-unscaled")
    with torch.no_grad():
        reader.window.bias.add_(torch.tensor([0.537, -0.2, 0.0, 0.0, 0.0]))
        reader.window.weight.mul_(0.01)  # h moves the window a little: centres x near 77.6
    x, h = torch.rand(3, 1, 100, 100), torch.randn(3, 256)

    def place(h: torch.Tensor) -> tuple[Window, torch.Tensor, torch.Tensor]:
        return fb.place_window(reader.window, h, 100, 100, 12, reader.centre)

    plain_window, plain_fx, plain_fy = place(h)
    plain_glimpse, _ = reader.read_image(x, h)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        window, fx, fy = place(h)
        glimpse, read_window = reader.read_image(x, h)
    assert window.gx.dtype == fx.dtype == fy.dtype == read_window.gx.dtype == torch.float32
    assert torch.equal(window.gx, plain_window.gx) and torch.equal(read_window.gy, plain_window.gy)
    assert torch.equal(fx, plain_fx) and torch.equal(fy, plain_fy)
    assert 70 < plain_window.gx[0].item() < 80 and plain_window.gx[0].item() * 2 % 1 != 0
    assert not torch.equal(glimpse, plain_glimpse)  # the products did run in bf16
    torch.testing.assert_close(glimpse.float(), plain_glimpse, rtol=0.02, atol=0.02)


@pytest.mark.parametrize("component", [fb.FilterbankReader, fb.FilterbankWriter])
def test_retired_window_options_at_zero_build_the_same_window(component: type) -> None:
    """sigma_floor, jitter and hidden at 0 were the paper's window: the same layer, the same weights from the same seed."""
    config = DrawConfig(height=9, width=9, read_size=3, write_size=3)
    torch.manual_seed(0)
    plain = component(config, centre="inside")
    torch.manual_seed(0)
    retired = component(config, centre="inside", **RETIRED)
    assert type(retired.window) is torch.nn.Linear
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), retired.state_dict().values(), strict=True))


@pytest.mark.parametrize(("option", "used"), [("sigma_floor", 0.5), ("jitter", 0.5), ("hidden", 256), ("hidden", True)])
@pytest.mark.parametrize("component", [fb.FilterbankReader, fb.FilterbankWriter])
def test_a_retired_window_option_in_use_is_refused_by_name(component: type, option: str, used: object) -> None:
    kind = "reader" if component is fb.FilterbankReader else "writer"
    message = (f"^{kind} option '{option}' is {used!r}, but drawcli 0.1.0 was the last version with '{option}'; "
               "load this file with drawcli 0.1.0$")  # fmt: skip
    with pytest.raises(ConfigError, match=message):
        component(DrawConfig(), **{**RETIRED, option: used})
    with pytest.raises(TypeError, match=r"^unknown option\(s\) \['floor'\] for Filterbank"):
        component(DrawConfig(), floor=0)  # any other unknown option is refused as before


def test_a_checkpoint_saved_with_the_retired_options_at_zero_loads_and_one_using_them_is_refused(tmp_path: Path) -> None:
    """A classifier checkpoint whose reader_options hold the retired options at 0 (e.g. `--reader-option
    jitter=0` under 0.1.0) rebuilds with the same logits; with jitter 0.5 load_model refuses it in one line."""
    from helpers import rewrite_metadata

    torch.manual_seed(0)
    config = ClassifierConfig(height=12, width=12, glimpses=3, dec_size=8, read_size=3, classes=4,
                        reader_options={"centre": "inside", **RETIRED})  # fmt: skip
    model = AttentionClassifier(config).eval()
    path = tmp_path / "checkpoint.safetensors"
    checkpoint.save_checkpoint(path, model, {"steps": 0})
    loaded, info = checkpoint.load_model(path)
    assert info.config.reader_options == {"centre": "inside", **RETIRED}
    x = torch.rand(3, 1, 12, 12)
    assert torch.equal(model(x).logits, loaded(x).logits)

    rewrite_metadata(path, lambda metadata: metadata["config"]["reader_options"].update(jitter=0.5))
    with pytest.raises(ConfigError, match="^reader option 'jitter' is 0.5, but drawcli 0.1.0 was the last version with 'jitter'; "
                                          "load this file with drawcli 0.1.0$"):  # fmt: skip
        checkpoint.load_model(path)
