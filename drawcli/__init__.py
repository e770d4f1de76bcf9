"""drawcli: DRAW (Gregor et al. 2015) with pluggable readers, writers and samplers.

From Python (drawcli/api.py): `load`, `sample`, `reconstruct`, `bound`, `evaluate`, `classify`, `train`. They are
imported on first use, so `import drawcli` (and the command line's --help) loads no torch.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("drawcli")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

if TYPE_CHECKING:
    from drawcli.api import Bounds, bound, classify, evaluate, load, reconstruct, sample, train

__all__ = ["__version__", "Bounds", "bound", "classify", "evaluate", "load", "reconstruct", "sample", "train"]
API = tuple(__all__[1:])  # imported from drawcli.api on first use


def __getattr__(name: str) -> Any:
    if name in API:
        from drawcli import api

        return getattr(api, name)
    raise AttributeError(f"module 'drawcli' has no attribute {name!r}")
