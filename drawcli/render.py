"""Turning canvases into image grids, GIFs and PNGs (torchvision's make_grid, imageio)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import torch
from torchvision.utils import make_grid

from drawcli.atomic import atomic_path
from drawcli.contract import AttentionWindow

GRID_PADDING = 2
HOLD_LAST_SECONDS = 2.0
WRITE_COLOUR = (255, 40, 40)  # red, as in the paper's figures
READ_COLOUR = (40, 220, 40)  # green
BOX_COLOUR = WRITE_COLOUR
SIDE_BY_SIDE_GAP = 6


def grid_columns(n: int) -> int:
    """Columns of the most nearly square grid for n images."""
    return max(1, math.ceil(math.sqrt(n)))


def window_outlines(window: AttentionWindow, scale: int, height: int, width: int) -> torch.Tensor:
    """(n, 4, 2) each window's corners (AttentionWindow.corners' order) in scaled 0-based edge coordinates.

    Pixel a (1-based) covers [a - 1, a] in 0-based edge coordinates, hence the - 0.5. Each corner
    is clamped into the picture axis by axis: an axis-aligned window partly off the image is
    outlined where it meets the border, so it stays in sight; a rotated one is squashed onto it.
    """
    corners = (window.corners() - 0.5).float().cpu() * scale
    limits = torch.tensor([width, height]) * scale - 1
    return corners.clamp(min=torch.zeros(2), max=limits.float())


def window_boxes(window: AttentionWindow, scale: int, height: int, width: int) -> torch.Tensor:
    """(n, 4) the outlines' bounding boxes (x0, y0, x1, y1) in scaled edge coordinates (window_outlines)."""
    outlines = window_outlines(window, scale, height, width)
    return torch.cat([outlines.amin(dim=1), outlines.amax(dim=1)], dim=1)


def draw_outlines(images: torch.Tensor, outlines: torch.Tensor, colour: tuple[int, int, int]) -> torch.Tensor:
    """RGB uint8 (n, 3, h, w) with outline i (n, 4, 2), truncated to whole pixels, drawn 1 pixel wide on image i.

    An axis-aligned outline (two x and two y values) is drawn with PIL's rectangle, any other as a
    closed line through its corners. PIL's polygon is not used: it draws nothing for an outline
    collapsed to a point, and leaves out the rectangle's end pixels for one collapsed to a
    horizontal line (a window squashed onto a border, or less than a pixel high).
    """
    from PIL import Image, ImageDraw

    drawn = []
    for image, quad in zip(images, outlines.to(torch.int64).tolist()):
        picture = Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())
        xs, ys = [x for x, _ in quad], [y for _, y in quad]
        if len(set(xs)) <= 2 and len(set(ys)) <= 2:
            ImageDraw.Draw(picture).rectangle((min(xs), min(ys), max(xs), max(ys)), outline=colour, width=1)
        else:
            ImageDraw.Draw(picture).line([*map(tuple, quad), tuple(quad[0])], fill=colour, width=1)
        drawn.append(torch.from_numpy(np.array(picture)).permute(2, 0, 1))
    return torch.stack(drawn)


def pixels(images: torch.Tensor, scale: int = 1, window: AttentionWindow | None = None,
           colour: tuple[int, int, int] = BOX_COLOUR) -> torch.Tensor:  # fmt: skip
    """Probabilities (n, C, H, W) -> RGB uint8 (n, 3, H * scale, W * scale), each image's window outline drawn if given."""
    n, channels, height, width = images.shape
    out = (images.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    if scale > 1:
        out = out.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    if channels == 1:
        out = out.expand(-1, 3, -1, -1)
    if window is not None:
        out = draw_outlines(out, window_outlines(window, scale, height, width), colour)
    return out


def frame(images: torch.Tensor, scale: int = 1, window: AttentionWindow | None = None,
          colour: tuple[int, int, int] = BOX_COLOUR) -> np.ndarray:  # fmt: skip
    """Probabilities (n, C, H, W) -> one RGB grid frame (rows, cols, 3) uint8, window outlines optional."""
    grid = make_grid(pixels(images, scale, window, colour), nrow=grid_columns(len(images)), padding=GRID_PADDING, pad_value=0)
    return grid.permute(1, 2, 0).contiguous().numpy()


def canvas_frames(canvases: torch.Tensor, scale: int = 1,
                  windows: list[AttentionWindow] | None = None) -> list[np.ndarray]:  # fmt: skip
    """(T, n, C, H, W) probabilities -> T grid frames, with each step's window drawn if given."""
    return [frame(canvases[t], scale, windows[t] if windows else None) for t in range(len(canvases))]


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = SIDE_BY_SIDE_GAP) -> np.ndarray:
    """Two frames of equal height joined horizontally with a black gap."""
    spacer = np.zeros((left.shape[0], gap, 3), dtype=np.uint8)
    return np.concatenate([left, spacer, right], axis=1)


def write_gif(path: Path, frames: list[np.ndarray], fps: float = 8.0) -> None:
    """One GIF frame per entry, looping; the last frame is held for HOLD_LAST_SECONDS."""
    step_ms = 1000.0 / fps
    durations = [step_ms] * (len(frames) - 1) + [max(step_ms, HOLD_LAST_SECONDS * 1000)]
    # Pillow takes a list of durations only for several frames (one frame: a number).
    duration = durations if len(durations) > 1 else durations[0]
    with atomic_path(Path(path)) as tmp:
        iio.imwrite(tmp, np.stack(frames), extension=".gif", duration=duration, loop=0)


def write_png(path: Path, image: np.ndarray) -> None:
    """Write one frame as a PNG, atomically."""
    with atomic_path(Path(path)) as tmp:
        iio.imwrite(tmp, image, extension=".png")


def reconstruction_frames(images: torch.Tensor, result: Any, scale: int) -> list[np.ndarray]:
    """One frame per glimpse: the images with the read window (green) beside the canvas with the write window (red).

    `result` is a DrawOutput recorded with `record=True` (canvases (T, n, C, H, W), windows or None).
    """
    frames = []
    for t in range(len(result.canvases)):
        read = result.read_windows[t] if result.read_windows else None
        write = result.write_windows[t] if result.write_windows else None
        left = frame(images, scale, read, READ_COLOUR)
        right = frame(result.canvases[t], scale, write, WRITE_COLOUR)
        frames.append(side_by_side(left, right))
    return frames


CAPTION_HEIGHT = 12  # pixels under each image for its caption
RIGHT_COLOUR, WRONG_COLOUR = (40, 220, 40), (255, 40, 40)


def captioned(image: np.ndarray, caption: str, colour: tuple[int, int, int]) -> np.ndarray:
    """(h, w, 3) uint8 -> (h + CAPTION_HEIGHT, w, 3) with `caption` written in PIL's default font below."""
    from PIL import Image, ImageDraw

    canvas = Image.new("RGB", (image.shape[1], image.shape[0] + CAPTION_HEIGHT))
    canvas.paste(Image.fromarray(image), (0, 0))
    ImageDraw.Draw(canvas).text((1, image.shape[0]), caption, fill=colour)
    return np.asarray(canvas)


def glimpse_frames(images: torch.Tensor, windows: list[AttentionWindow] | None, captions: list[tuple[str, str]],
                   scale: int = 1) -> list[np.ndarray]:  # fmt: skip
    """One grid frame per glimpse: each image with that glimpse's read window (green) and the caption
    "#glimpse predicted/true" (green when right, red when wrong). images: (n, C, H, W) in [0, 1]."""
    n = len(images)
    steps = len(windows) if windows else 1
    frames = []
    for t in range(steps):
        drawn = pixels(images, scale, windows[t] if windows else None, READ_COLOUR).permute(0, 2, 3, 1).numpy()
        cells = []
        for i, cell in enumerate(drawn):
            predicted, true = captions[i]
            text = f"#{t + 1} {predicted}/{true}"  # the glimpse, then the prediction and the truth
            cells.append(captioned(cell, text, RIGHT_COLOUR if predicted == true else WRONG_COLOUR))
        grid = make_grid(torch.from_numpy(np.stack(cells)).permute(0, 3, 1, 2), nrow=grid_columns(n), padding=GRID_PADDING)
        frames.append(grid.permute(1, 2, 0).contiguous().numpy())
    return frames
