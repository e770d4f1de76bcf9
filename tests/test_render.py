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


def test_a_one_frame_gif_is_written_and_held(tmp_path: Path) -> None:
    """One glimpse (or a reader without windows) gives one frame: written, held for two seconds."""
    path = tmp_path / "one.gif"
    render.write_gif(path, render.canvas_frames(torch.full((1, 2, 3, 5, 5), 0.5)), fps=10)
    with Image.open(path) as gif:
        assert gif.n_frames == 1 and gif.info["duration"] == 2000


def test_window_box_coordinates() -> None:
    """A 3-wide window at gx = 4, gy = 2, delta = 1 covers 1-based pixels 3..5 and 1..3."""
    one = torch.ones(1)
    window = Window(gx=4 * one, gy=2 * one, delta=one, sigma2=one, gamma=one, size=3)
    boxes = render.window_boxes(window, scale=2, height=8, width=8)
    # 0-based edges: x from 2.0 to 5.0, y from 0.0 to 3.0, times the scale
    assert boxes.tolist() == [[4.0, 0.0, 10.0, 6.0]]


def test_boxes_are_drawn_at_each_images_window() -> None:
    """The red pixels are exactly the outlines of each image's recorded window, and nothing else.

    Image 0's window (gx 4, gy 4, delta 1, N 3) spans 0-based edges 2..5, i.e. 4..10 at scale 2;
    image 1's (gx 5, gy 3) spans x 6..12, y 2..8. Each 16-pixel cell sits after 2 pixels of padding.
    """
    window = Window(gx=torch.tensor([4.0, 5.0]), gy=torch.tensor([4.0, 3.0]), delta=torch.ones(2),
                    sigma2=torch.ones(2), gamma=torch.ones(2), size=3)  # fmt: skip
    frame = render.frame(torch.zeros(2, 1, 8, 8), scale=2, window=window)
    pad, cell = render.GRID_PADDING, 16
    expected = set()
    for i, (x0, x1, y0, y1) in enumerate([(4, 10, 4, 10), (6, 12, 2, 8)]):
        ox, oy = pad + i * (cell + pad), pad
        for x in range(x0, x1 + 1):
            expected |= {(oy + y0, ox + x), (oy + y1, ox + x)}
        for y in range(y0, y1 + 1):
            expected |= {(oy + y, ox + x0), (oy + y, ox + x1)}
    reds = {tuple(p) for p in np.argwhere((frame == render.BOX_COLOUR).all(axis=-1)).tolist()}
    assert reds == expected


class Outline:
    """A window that is only its outline: corners (n, 4, 2) in 1-based pixels (contract.AttentionWindow)."""

    def __init__(self, corners: list[list[list[float]]]) -> None:
        self._corners = torch.tensor(corners)

    def centre(self) -> torch.Tensor:
        return self._corners.mean(dim=1)

    def corners(self) -> torch.Tensor:
        return self._corners


def test_a_rotated_window_is_drawn_as_its_quadrilateral() -> None:
    """A window turned 45 degrees, corners (4.5, 2.5), (6.5, 4.5), (4.5, 6.5), (2.5, 4.5) in 1-based pixels:
    at scale 2 its 0-based edge corners are (8, 4), (12, 8), (8, 12), (4, 8), and the red pixels are
    exactly the four diagonals between them (5 pixels each, the corners shared)."""
    window = Outline([[[4.5, 2.5], [6.5, 4.5], [4.5, 6.5], [2.5, 4.5]]])
    assert render.window_outlines(window, scale=2, height=8, width=8).tolist() == [[[8, 4], [12, 8], [8, 12], [4, 8]]]
    drawn = render.pixels(torch.zeros(1, 1, 8, 8), scale=2, window=window)[0].permute(1, 2, 0).numpy()  # (16, 16, 3)
    diagonals = [(8 + i, 4 + i) for i in range(5)] + [(12 - i, 8 + i) for i in range(5)]
    diagonals += [(8 - i, 12 - i) for i in range(5)] + [(4 + i, 8 - i) for i in range(5)]
    expected = {(y, x) for x, y in diagonals}
    reds = {tuple(p) for p in np.argwhere((drawn == render.BOX_COLOUR).all(axis=-1)).tolist()}
    assert len(expected) == 16 and reds == expected


def test_outline_corners_off_the_picture_are_moved_onto_its_border() -> None:
    """Each corner is clamped axis by axis into [0, side * scale - 1]: x -2.5 -> 0, y 9.5 -> 7 on an 8 x 8 image."""
    window = Outline([[[-2.0, 3.0], [4.0, -1.0], [9.5, 10.0], [3.0, 6.0]]])
    assert render.window_outlines(window, scale=1, height=8, width=8).tolist() == [[[0, 2.5], [3.5, 0], [7, 7], [2.5, 5.5]]]


def test_filterbank_outlines_match_0_2_0s_boxes_on_fractional_and_clamped_windows() -> None:
    """The quadrilateral drawing of an axis-aligned window is pixel for pixel 0.2.0's: torchvision's box from
    g +- N delta / 2 in 0-based edges, clamped to the picture, at fractional, tiny and off-image windows."""
    from torchvision.utils import draw_bounding_boxes

    generator = torch.Generator().manual_seed(7)
    n, side = 64, 12
    for scale in (1, 3):
        gx, gy = (torch.rand(2, n, generator=generator) * 18 - 3).unbind(0)  # centres up to 3 pixels off the image
        delta = torch.rand(n, generator=generator) * 4 + 0.01
        window = Window(gx=gx, gy=gy, delta=delta, sigma2=torch.ones(n), gamma=torch.ones(n), size=3)
        images = torch.rand(n, 1, side, side, generator=generator)
        half = window.size * delta / 2
        boxes = torch.stack([gx - half - 0.5, gy - half - 0.5, gx + half - 0.5, gy + half - 0.5], dim=1) * scale
        boxes = boxes.clamp(min=torch.zeros(4), max=torch.full((4,), side * scale - 1.0))
        plain = render.pixels(images, scale)
        expected = torch.stack([draw_bounding_boxes(img, boxes[i : i + 1], colors=render.BOX_COLOUR) for i, img in enumerate(plain)])
        assert torch.equal(render.pixels(images, scale, window), expected)
