"""The machine-readable record of measured speeds and results: benchmarks/results.jsonl, one JSON object a line.

Every line holds the date, the device as torch names it, the torch version, the command, the
model setting, batch, precision, compile mode and CUDA-graph choice, and what was measured:
images/s, ms a step and seconds an MNIST epoch; for training runs also epochs, test bound and
IW bound (DRAW) or test error in % (a classifier), None where not measured. The model setting
names the reader and writer, so attention families compare line by line. docs/performance.md and README's tables quote it.

    python benchmarks/results.py run RUN_DIR --command "..." [--eval EVAL.json] [--iw EVAL.json] [--to FILE]

appends one line for a finished run (its checkpoint summary and metrics log, and `drawcli
evaluate --json` output); graph_speed.py appends its rows through `append`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results.jsonl"
MNIST_TRAIN = 60_000
FIELDS = ("date", "device", "torch", "command", "model", "batch", "precision", "compile", "cuda_graph", "images_per_s",
          "ms_per_step", "s_per_epoch", "epochs", "test_bound", "iw_bound", "iw_samples", "test_error", "note")  # fmt: skip


def device_name(device: str) -> str:
    """The device as torch names it: the CUDA device's name, or the CPU's model from /proc/cpuinfo."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def record(**fields: Any) -> dict[str, Any]:
    """One line: FIELDS in order (missing ones None), s_per_epoch derived from images_per_s when not given."""
    import torch

    line: dict[str, Any] = dict.fromkeys(FIELDS)
    line.update(date=datetime.date.today().isoformat(), torch=torch.__version__)
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown result fields: {', '.join(sorted(unknown))}")
    line.update(fields)
    if line["s_per_epoch"] is None and line["images_per_s"]:
        line["s_per_epoch"] = round(MNIST_TRAIN / line["images_per_s"], 1)
    return line


def append(line: dict[str, Any], path: Path = RESULTS) -> None:
    """Append one line (made by `record`) to the results file."""
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")


def read(path: Path = RESULTS) -> list[dict[str, Any]]:
    """Every line of the results file."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def from_run(run: Path, command: str, bound_json: Path | None, iw_json: Path | None) -> dict[str, Any]:
    """A finished run's line: its settings and speed (metrics.jsonl's train records) and its bounds."""
    summary = json.loads((run / "run.json").read_text())
    settings, config = summary["settings"], summary.get("config", {})
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r.get("event") == "train"]
    epochs = [r for r in rows if r.get("event") == "epoch"]
    rate = ms = None
    if len(train) >= 2:  # steady rate between logged steps: compiling and capture left out
        steps, seconds = train[-1]["step"] - train[0]["step"], train[-1]["wall_time_s"] - train[0]["wall_time_s"]
        rate, ms = round(steps * settings["batch_size"] / seconds, 1), round(1000 * seconds / steps, 2)
    iw = _evaluated(iw_json)
    return record(command=command, model=model_label(config), batch=settings["batch_size"], precision="bf16" if settings["amp"] == "bf16" else "float32",
                  compile=settings["compile"], cuda_graph=settings.get("cuda_graph"), images_per_s=rate, ms_per_step=ms,
                  epochs=epochs[-1]["epochs"] if epochs else None,
                  test_bound=(_evaluated(bound_json) or {}).get("bound") or (epochs[-1].get("test_bound") if epochs else None),
                  iw_bound=(iw or {}).get("iw_bound"), iw_samples=(iw or {}).get("samples"),
                  test_error=epochs[-1].get("test_error") if epochs else None,
                  device=device_name(settings.get("device", "cpu")), note=f"run {run.name}")  # fmt: skip


def model_label(config: dict[str, Any]) -> str:
    """A run's setting in a few words: its kind, glimpses, sizes, reader and writer by name, and any
    component options they were given (a run.json's config)."""
    from drawcli import kinds

    c = config
    if kinds.get(c.get("kind", "draw")).classifies:
        label = f"classifier T={c.get('glimpses')} LSTM {c.get('dec_size')} read {c.get('reader')} {c.get('read_size')}"
    else:
        label = (f"T={c.get('glimpses')} LSTM {c.get('enc_size')} z {c.get('z_size')} read {c.get('reader')} "
                 f"{c.get('read_size')} write {c.get('writer')} {c.get('write_size')}")  # fmt: skip
    options = [f"{part} {k}={v}" for part in ("reader", "writer", "sampler")
               for k, v in sorted((c.get(f"{part}_options") or {}).items())]  # fmt: skip
    return label + (f" ({', '.join(options)})" if options else "")


def _evaluated(path: Path | None) -> dict[str, Any] | None:
    if path is None or not path.exists() or not path.stat().st_size:
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    run = sub.add_parser("run", help="append a finished run's line")
    run.add_argument("run_dir", type=Path)
    run.add_argument("--command", required=True)
    run.add_argument("--eval", type=Path, help="`drawcli evaluate --json` output with the bound")
    run.add_argument("--iw", type=Path, help="`drawcli evaluate --samples K --json` output")
    run.add_argument("--to", type=Path, default=RESULTS)
    args = parser.parse_args()
    line = from_run(args.run_dir, args.command, args.eval, args.iw)
    append(line, args.to)
    print(json.dumps(line))


if __name__ == "__main__":
    main()
