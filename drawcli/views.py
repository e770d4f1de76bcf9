"""Test-time views for a classifier: the image and copies of it shifted by a few pixels, whose
class probabilities `drawcli evaluate --views` averages.

An attention classifier's search is sensitive to small shifts of the image, so averaging views
lowers the error the way an ensemble of models does, from one trained model, at one forward
pass per view.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the command line imports this module for its limits: no torch until a view is made
    import torch

# (dy, dx) of each view in units of the shift, in the order views are taken: the image itself,
# the four diagonals, then the four axes.
DIRECTIONS = ((0, 0), (1, 1), (-1, -1), (1, -1), (-1, 1), (1, 0), (0, 1), (-1, 0), (0, -1))
MAX_VIEWS = len(DIRECTIONS)
DEFAULT_SHIFT = 6  # pixels: the best of the shifts tried (4, 6, 8) on 100 x 100 cluttered MNIST


def offsets(views: int, shift: int) -> list[tuple[int, int]]:
    """The first `views` (dy, dx) pixel offsets: (0, 0), then (shift, shift), (-shift, -shift), ..."""
    if not 1 <= views <= MAX_VIEWS:
        raise ValueError(f"views must be 1 to {MAX_VIEWS}, not {views}")
    return [(dy * shift, dx * shift) for dy, dx in DIRECTIONS[:views]]


def shifted(images: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """(N, C, H, W) images moved dy pixels down and dx right; the uncovered rows and columns repeat
    the nearest edge pixel, so the background goes on (any dtype). No shift returns `images` itself, uncopied."""
    if dy == 0 and dx == 0:
        return images
    height, width = images.shape[-2:]
    import torch

    rows = (torch.arange(height, device=images.device) - dy).clamp(0, height - 1)
    cols = (torch.arange(width, device=images.device) - dx).clamp(0, width - 1)
    return images[..., rows, :][..., cols]
