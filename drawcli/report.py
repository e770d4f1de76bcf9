"""What `drawcli inspect` shows: a checkpoint's header as a JSON-able report and as rich tables."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from drawcli import registry
from drawcli.checkpoint import CheckpointInfo, component_kinds
from drawcli.errors import PluginError


def _installed(kind: str, name: str) -> dict[str, Any]:
    try:
        spec = registry.resolve(kind, name)
    except PluginError:
        return {"installed": False}
    return {"installed": True, "installed_distribution": spec.distribution, "installed_version": spec.version}


def checkpoint_report(info: CheckpointInfo) -> dict[str, Any]:
    """Everything `inspect` reports, from the header alone (no model built, no plugin imported)."""
    counts = info.parameter_counts()
    components = {}
    for kind in component_kinds(info.config):
        recorded = dict(info.components.get(kind) or {})
        name = recorded.get("name") or getattr(info.config, kind)
        components[kind] = {**recorded, "name": name, **_installed(kind, name), "parameters": counts.get(kind, 0)}
    return {
        "path": str(info.path),
        "file_size_bytes": info.file_size,
        "drawcli_version": info.version,
        "config": info.config.to_dict(),
        "config_fields_older_than_file": info.filled,
        "components": components,
        "parameters": {"per_part": counts, "total": sum(counts.values())},
        "tensors": {name: {"dtype": t.dtype, "shape": t.shape} for name, t in sorted(info.tensors.items())},
        "training": info.training,
    }


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _plain(value: Any) -> Text:
    """A value from an untrusted checkpoint, shown literally on any console (its brackets are not rich markup)."""
    return Text(str(value))


def render_report(report: dict[str, Any]) -> Group:
    """The report as rich tables: config, components, parameters, training, tensors."""
    head = Table.grid(padding=(0, 2))
    head.add_row("file", _plain(f"{report['path']} ({_human_bytes(report['file_size_bytes'])})"))
    head.add_row("written by", _plain(f"drawcli {report['drawcli_version']}"))
    if report["config_fields_older_than_file"]:  # the file predates these fields: their value for older files
        filled = ", ".join(f"{k} = {v}" for k, v in report["config_fields_older_than_file"].items())
        head.add_row("older format", _plain(f"{filled} (fields added after this file was written)"))

    config = Table(title="architecture", title_justify="left")
    config.add_column("field")
    config.add_column("value", justify="right")
    for key, value in report["config"].items():
        config.add_row(key, _plain(value))

    comps = Table(title="components", title_justify="left")
    for col in ("kind", "name", "provided by", "installed here", "parameters"):
        comps.add_column(col, justify="right" if col == "parameters" else "left")
    for kind, c in report["components"].items():
        dist = f"{c.get('distribution') or '?'} {c.get('version') or ''}".strip()
        here = _plain(f"yes ({c.get('installed_distribution')} {c.get('installed_version')})") if c["installed"] else Text("no", style="red")
        comps.add_row(kind, _plain(c["name"]), _plain(dist), here, f"{c['parameters']:,}")
    per_part = report["parameters"]["per_part"]
    for part, count in per_part.items():  # the model's own layers (LSTMs, the classifier's output)
        if part not in report["components"]:
            comps.add_row(part, "", "drawcli core", "", f"{count:,}")
    comps.add_row(Text("total", style="bold"), "", "", "", Text(f"{report['parameters']['total']:,}", style="bold"))

    training = Table(title="training", title_justify="left")
    training.add_column("field")
    training.add_column("value", justify="right")
    for key, value in report["training"].items():
        if key == "last_test" and isinstance(value, dict):
            # ints stay exact: a JSON integer too large for a float would not format as one
            value = ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items() if isinstance(v, (int, float)))
        elif isinstance(value, float):
            value = f"{value:.4g}"
        training.add_row(_plain(key), _plain(value))

    tensors = Table(title="tensors", title_justify="left")
    for col in ("name", "dtype", "shape"):
        tensors.add_column(col)
    for name, t in report["tensors"].items():
        tensors.add_row(_plain(name), t["dtype"], "x".join(map(str, t["shape"])) or "scalar")
    return Group(head, config, comps, training, tensors)


def print_report(report: dict[str, Any], console: Console) -> None:
    console.print(render_report(report))
