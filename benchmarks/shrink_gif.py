"""Make GIFs smaller for docs/ and a lease's return: keep every k-th frame and always the last one.

    python benchmarks/shrink_gif.py A.gif [B.gif ...] --frames 2    # in place; prints old and new sizes

The frame rate is lowered by the same factor, so a drawing takes as long to watch as before.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import imageio.v3 as iio


def shrink(path: Path, every: int) -> tuple[int, int]:
    """Rewrite `path` with every `every`-th frame plus the last; returns (old, new) sizes in bytes."""
    before = path.stat().st_size
    frames = list(iio.imread(path, index=None))
    kept = frames[::every]
    if len(frames) - 1 not in range(0, len(frames), every):
        kept.append(frames[-1])
    meta = iio.immeta(path, index=0)
    duration = meta.get("duration", 125) * every
    iio.imwrite(path, kept, duration=duration, loop=0)
    return before, path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("gifs", nargs="+", type=Path)
    parser.add_argument("--frames", type=int, default=2, help="keep every N-th frame (and the last)")
    args = parser.parse_args()
    for path in args.gifs:
        before, after = shrink(path, max(1, args.frames))
        print(f"{path}: {before:,} -> {after:,} bytes")


if __name__ == "__main__":
    main()
