"""Make GIFs smaller for docs/ and a lease's return: keep every other frame and always the last one.

    python benchmarks/shrink_gif.py A.gif [B.gif ...]    # in place; prints old and new sizes

The frame rate halves with the frames, so a drawing takes as long to watch as before.
"""

from __future__ import annotations

import sys
from pathlib import Path

import imageio.v3 as iio

EVERY = 2  # keep every EVERY-th frame: the docs' GIFs show every other glimpse


def shrink(path: Path, every: int = EVERY) -> tuple[int, int]:
    """Rewrite `path` with every `every`-th frame plus the last; returns (old, new) sizes in bytes."""
    before = path.stat().st_size
    frames = list(iio.imread(path, index=None))
    kept = frames[::every] + ([frames[-1]] if (len(frames) - 1) % every else [])
    duration = iio.immeta(path, index=0).get("duration", 125) * every
    iio.imwrite(path, kept, duration=duration, loop=0)
    return before, path.stat().st_size


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for path in map(Path, sys.argv[1:]):
        before, after = shrink(path)
        print(f"{path}: {before:,} -> {after:,} bytes")


if __name__ == "__main__":
    main()
