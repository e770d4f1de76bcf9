"""The `drawcli` command line. Each command lives in the module named for what it does:

train.py (train; resume.py holds --resume's rules), draw.py (sample, reconstruct),
evaluate.py (evaluate), info.py (inspect, plugins, presets), plot.py (plot);
app.py holds the app and the error exit path, options.py the shared option types.
"""

from __future__ import annotations

# Each module registers its commands on import; this order is the order of `drawcli --help`.
from drawcli.cli import train, draw, info, evaluate, plot  # noqa: F401, I001
from drawcli.cli.app import app, fail

__all__ = ["app", "fail", "main"]


def main() -> None:
    """Console-script entry point."""
    app()
