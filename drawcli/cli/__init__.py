"""The `drawcli` command line. Each command lives in the module named for what it does:

train.py (train; resume.py holds --resume's rules), draw.py (sample, reconstruct),
evaluate.py (evaluate), info.py (inspect, plugins, presets), plot.py (plot);
app.py holds the app and the error exit path, options.py the shared option types.
"""

from __future__ import annotations

import os
import sys

# Each module registers its commands on import; this order is the order of `drawcli --help`.
from drawcli.cli import train, draw, info, evaluate, plot  # noqa: F401  # isort: skip
from drawcli.cli.app import app, fail

__all__ = ["app", "fail", "main"]


def main() -> None:
    """Console-script entry point.

    A torchrun worker leaves through os._exit once its output is flushed: at interpreter shutdown
    a gloo worker thread that outlived destroy_process_group could still abort the process
    ("terminate called without an active exception", SIGABRT) after a finished run, rarely, and
    torchrun then failed the whole job. Everything a run writes is on disk before this point.
    """
    from drawcli.distributed import launched_by_torchrun

    if not launched_by_torchrun():
        app()
        return
    try:
        app()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, int) and exc.code is not None:
            print(exc.code, file=sys.stderr)  # what the interpreter prints for sys.exit("message")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
