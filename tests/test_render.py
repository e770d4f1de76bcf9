"""GIF and grid rendering: sizes, frame counts, frame timing and window boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from drawcli import render
from drawcli.contract import Window


def test_grid_size_for_n_and_scale() -> None:
    """5 images of 8x6 at scale 2: a 3-column grid of 2 rows, 2-pixel padding, RGB."""
    frame = render.frame(torch.rand(5, 1, 8, 6), scale=2)
    assert frame.shape == (2 * (16 + 2) + 2, 3 * (12 + 2) + 2, 3)
    assert frame.dtype == np.uint8


def test_probabilities_map_to_grey_levels() -> None:
    """Probability p becomes grey level round(255 p) on every colour channel."""
    frame = render.frame(torch.full((2, 1, 2, 2), 0.5))
    assert frame[2, 2].tolist() == [128, 128, 128]
    assert frame[0, 0].tolist() == [0, 0, 0]  # padding


def test_gif_has_one_frame_per_glimpse_and_holds_the_last(tmp_path: Path) -> None:
    """T canvases -> T frames; the last frame is held for two seconds."""
    canvases = torch.linspace(0, 1, 4)[:, None, None, None, None].expand(4, 2, 3, 5, 5)
    path = tmp_path / "out.gif"
    render.write_gif(path, render.canvas_frames(canvases), fps=10)
    with Image.open(path) as gif:
        assert gif.n_frames == 4
        durations = []
        for i in range(gif.n_frames):
            gif.seek(i)
            durations.append(gif.info["duration"])
        assert gif.size == (2 * (5 + 2) + 2, 5 + 4)
    assert durations == [100, 100, 100, 2000]


def test_window_box_coordinates() -> None:
    """A 3-wide window at gx = 4, gy = 2, delta = 1 covers 1-based pixels 3..5 and 1..3."""
    one = torch.ones(1)
    window = Window(gx=4 * one, gy=2 * one, delta=one, sigma2=one, gamma=one, size=3)
    boxes = render.window_boxes(window, scale=2, height=8, width=8)
    # 0-based edges: x from 2.0 to 5.0, y from 0.0 to 3.0, times the scale
    assert boxes.tolist() == [[4.0, 0.0, 10.0, 6.0]]


def test_boxes_are_drawn_in_red() -> None:
    """With a window, the box outline appears in the box colour on a black image."""
    one = torch.ones(1)
    window = Window(gx=4 * one, gy=4 * one, delta=one, sigma2=one, gamma=one, size=3)
    window = Window(*(t.expand(2) for t in window[:5]), size=3)
    frame = render.frame(torch.zeros(2, 1, 8, 8), scale=2, window=window)
    reds = np.argwhere((frame[:, : 16 + 2 * render.GRID_PADDING] == render.BOX_COLOUR).all(axis=-1))
    assert len(reds) > 0
    pad = render.GRID_PADDING
    assert reds[:, 1].min() - pad == 4 and reds[:, 1].max() - pad == 10
