"""The plugin contract: what a reader, writer, sampler or dataset must provide.

Components are `nn.Module`s built as `Component(config, **options)` where `config` is the
model's config (a reader: DrawConfig or ClassifierConfig, whose shared fields config.ModelConfig
declares; a writer or sampler: DrawConfig) and `options` its `*_options` dict. They are found by name through the
entry-point groups in `drawcli.registry.GROUPS`; the core never imports a built-in directly.
A component takes the options it knows as keyword arguments and passes the rest on to the
base class, which rejects any left over, except a retired option (`retired_options`, a
config.Retired) saved at its neutral value, which it drops. The core asks a component what it
can do through the attributes below (e.g. `produces_windows`), never by its name, and asks a
window only what AttentionWindow declares (where it is, its outline), never its own fields.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch
from torch import nn

from drawcli.config import DrawConfig, ModelConfig, Retired
from drawcli.errors import DataError


@runtime_checkable
class AttentionWindow(Protocol):
    """One step's attention windows over a batch, as the core uses them, whatever the attention.

    Positions are (x, y) in 1-based pixel units: pixel a of an axis is centred at a and covers
    [a - 0.5, a + 0.5], so a whole W-pixel axis spans [0.5, W + 0.5]. A reader or writer with
    `produces_windows` returns one such object per call; the core needs only these two methods
    (render.py draws corners(), train --locate-loss pulls centre() towards the object).
    """

    def centre(self) -> torch.Tensor:
        """(B, 2): each window's centre (x, y)."""
        ...

    def corners(self) -> torch.Tensor:
        """(B, 4, 2): each window's outline as a quadrilateral, (x, y) per corner, in the order of the
        patch's corners as the patch is stored: top-left, top-right, bottom-right, bottom-left (row 0
        at the top). An axis-aligned window's corners thus run clockwise on screen from its top-left."""
        ...


class Window(NamedTuple):
    """The filterbank's attention window (DRAW, eqs. 19-24), each field (B,), in 1-based pixel units.

    The N x N grid of filter centres spans gx +- (N - 1) / 2 * delta (eq. 19-20), so the
    window covers [gx - N * delta / 2, gx + N * delta / 2] horizontally (likewise y): an
    axis-aligned square. An AttentionWindow.
    """

    gx: torch.Tensor
    gy: torch.Tensor
    delta: torch.Tensor
    sigma2: torch.Tensor
    gamma: torch.Tensor
    size: int  # N, the filterbank's side

    def centre(self) -> torch.Tensor:
        """(B, 2): (gx, gy)."""
        return torch.stack([self.gx, self.gy], dim=1)

    def corners(self) -> torch.Tensor:
        """(B, 4, 2): the square's corners g +- N delta / 2, in AttentionWindow's order."""
        half = self.size * self.delta / 2
        x0, x1, y0, y1 = self.gx - half, self.gx + half, self.gy - half, self.gy + half
        return torch.stack([x0, y0, x1, y0, x1, y1, x0, y1], dim=1).view(-1, 4, 2)


def _reject_unknown(component: object, options: dict[str, Any], kind: str) -> None:
    """Refuse the options no class of the component took; a retired one passes only at its neutral
    value, so a checkpoint saved before the option went still loads (a ConfigError otherwise)."""
    retired: Retired | None = getattr(component, "retired_options", None)
    left = retired.drop(options, f"{kind} option") if retired is not None else options
    if left:
        raise TypeError(f"unknown option(s) {sorted(left)} for {type(component).__name__}")


class Reader(nn.Module, ABC):
    """Reads the image and the error image, guided by the previous decoder state.

    Subclasses set `out_size`, the width of the vector they return, and `produces_windows`
    = True when `forward` returns an AttentionWindow (it is then drawn by `reconstruct`). A reader whose
    `read_image` ignores h (the same glimpse at every step) may set `fixed_glimpse` = True: a
    model may then read once and reuse that glimpse and what it computes from it.
    """

    out_size: int
    produces_windows: bool = False
    fixed_glimpse: bool = False
    retired_options: Retired | None = None

    def __init__(self, config: ModelConfig, **options: Any) -> None:
        super().__init__()
        _reject_unknown(self, options, "reader")

    @abstractmethod
    def forward(
        self, x: torch.Tensor, x_hat: torch.Tensor, h_dec: torch.Tensor
    ) -> tuple[torch.Tensor, AttentionWindow | None]:
        """x, x_hat: (B, C, H, W); h_dec: (B, dec_size) -> r: (B, out_size), window or None."""

    def read_image(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, AttentionWindow | None]:
        """Read one image, for a model without a canvas (the attention classifier, section 4.1).

        x: (B, C, H, W); h: (B, dec_size), the state the window is computed from ->
        r: (B, image_out_size), window or None. The default reads (x, zeros) through `forward`,
        so a reader written before this method works unchanged; a reader may override both
        this and `image_out_size` to read x alone. Under `train --amp bf16` the classifier
        calls this inside a bf16 autocast: a reader that computes a window's position should
        compute it with the autocast off (bf16 moves a centre on a 100-pixel image in steps of
        up to half a pixel); the filterbank's `place_window` does.
        """
        return self.forward(x, torch.zeros_like(x), h)

    @property
    def image_out_size(self) -> int:
        """Width of what `read_image` returns (default: out_size, see read_image)."""
        return self.out_size

    def window_parameters(self) -> list[nn.Parameter]:
        """The parameters that place the window (train --window-lr scales their learning rate); default none."""
        return []


class Writer(nn.Module, ABC):
    """Turns the decoder state into an additive update of the canvas (in logits).

    `produces_windows` = True when `forward` returns an AttentionWindow (`sample --boxes` needs one).
    """

    produces_windows: bool = False
    retired_options: Retired | None = None

    def __init__(self, config: DrawConfig, **options: Any) -> None:
        super().__init__()
        _reject_unknown(self, options, "writer")

    @abstractmethod
    def forward(self, h_dec: torch.Tensor) -> tuple[torch.Tensor, AttentionWindow | None]:
        """h_dec: (B, dec_size) -> canvas update (B, C, H, W), window or None."""

    def window_parameters(self) -> list[nn.Parameter]:
        """The parameters that place the window (train --window-lr scales their learning rate); default none."""
        return []


class Sampler(nn.Module, ABC):
    """The approximate posterior Q(z_t | h_enc_t) and the prior P(z_t).

    Subclasses set `z_size`, the width of the latent vector the decoder receives, and may set
    `noise_size` (default z_size), the width of the standard-normal noise they consume per
    glimpse. The model draws that noise for all glimpses at once, or takes it from the
    caller, so a result is a function of (weights, images, noise): that is what makes
    data-parallel runs match single-process ones image for image.
    """

    z_size: int

    @property
    def noise_size(self) -> int:
        return self.z_size

    def __init__(self, config: DrawConfig, **options: Any) -> None:
        super().__init__()
        _reject_unknown(self, options, "sampler")

    @abstractmethod
    def forward(self, h_enc: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h_enc: (B, enc_size), noise: (B, noise_size) ~ N(0, I) -> z: (B, z_size) from Q, KL(Q || P): (B,) nats."""

    @abstractmethod
    def prior(self, noise: torch.Tensor) -> torch.Tensor:
        """noise: (n, noise_size) ~ N(0, I) -> n latents from the prior: (n, z_size)."""

    def log_prob(self, z: torch.Tensor, h_enc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log Q(z | h_enc), log P(z)), each (B,) in nats: what importance-weighted bounds need.

        Optional: a sampler without it still trains and samples; `evaluate --samples` says so.
        """
        raise NotImplementedError(f"sampler {type(self).__name__} does not provide log-densities")


class Labelled(NamedTuple):
    """A split's images with a class label each, and where each image's object is when the data set knows it."""

    images: torch.Tensor  # (N, C, H, W) uint8
    labels: torch.Tensor  # (N,) int64, each in [0, len(classes))
    classes: tuple[str, ...]  # the class names, by label
    centres: torch.Tensor | None = None  # (N, 2) float32: the object's centre (x, y) in AttentionWindow's 1-based pixels


class Dataset(ABC):
    """A source of images as a uint8 tensor (N, C, H, W); grey levels 0..255.

    `image_shape` is the native (C, H, W), or None when the data adapt to the model
    (an image folder is resized to whatever the config asks). A data set with labels sets
    `has_labels` and implements `load_labelled`; classifiers train on those. One that composes
    its images (digits placed among clutter) may set `redraws` and implement
    `load_labelled_epoch`, so that `train --redraw` sees a new composition every epoch. One
    that knows where it put each image's object sets `has_centres` and fills `Labelled.centres`
    (used by `train --locate-loss`). One whose images are already binary, binarized once by
    its authors (every pixel 0 or 255), sets `binarized`: DRAW then trains and is evaluated on
    those fixed bits (`--binarize fixed`, the default for it) instead of sampling its own.
    """

    image_shape: tuple[int, int, int] | None = None
    has_labels: bool = False
    redraws: bool = False
    has_centres: bool = False
    binarized: bool = False

    @abstractmethod
    def load(self, split: str, data_dir: Path | None, image_shape: tuple[int, int, int]) -> torch.Tensor:
        """Load `split` ("train" or "test"; a data set may offer more); raise `DataError` with a clear message on failure."""

    def load_labelled(self, split: str, data_dir: Path | None, image_shape: tuple[int, int, int]) -> Labelled:
        """Load `split` with its labels; only data sets with `has_labels` provide it."""
        raise DataError(f"the data set {type(self).__name__} has no labels")

    def load_labelled_epoch(self, epoch: int, data_dir: Path | None, image_shape: tuple[int, int, int]) -> Labelled:
        """The training split as composed for `epoch` (0-based; epoch 0 is `load_labelled("train")`).

        Only data sets with `redraws`: the same number of images, drawn afresh from the same
        training sources, the same for a given epoch on every machine (resume depends on it).
        """
        raise DataError(f"the data set {type(self).__name__} draws its training images once, so --redraw does not apply")
