"""The README's promises: its plugin example works as written, and CI runs its test command."""

from __future__ import annotations

import importlib
import re
import subprocess
from pathlib import Path

import pytest
import torch

from drawcli import registry
from drawcli.config import DrawConfig
from drawcli.model import DRAW

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def code_block(marker: str) -> str:
    """The fenced code block whose first line is `marker`."""
    match = re.search(r"```\w*\n(" + re.escape(marker) + r"\n.*?)```", README, re.S)
    assert match, f"no code block starting with {marker!r} in README.md"
    return match.group(1)


def test_plugin_example_registers_and_trains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ten-line reader and its entry-point lines, installed as a fake distribution, build a
    model and take a gradient step; the alias is listed as an alias."""
    (tmp_path / "my_readers.py").write_text(code_block("# my_readers.py"))
    toml = code_block("# pyproject.toml of your package")
    entries = "\n".join(line.split("#")[0].strip() for line in toml.splitlines()[1:] if line.strip())
    info = tmp_path / "my_readers-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-readers\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entries.replace('"', "").replace("[project.entry-points.", "["))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    spec = registry.resolve("reader", "mp")
    assert (spec.name, spec.aliases, spec.distribution) == ("mean-pool", ("mp",), "my-readers")
    model = DRAW(DrawConfig(channels=3, height=6, width=6, glimpses=2, enc_size=8, dec_size=8, z_size=2,
                            reader="mean-pool", writer="none", write_size=2, read_size=2))  # fmt: skip
    assert model.reader.out_size == 6
    model(torch.ones(2, 3, 6, 6)).loss.sum().backward()
    assert model.encoder.weight_ih.grad is not None


def set_up_commands() -> list[str]:
    """The README's first bash block as commands: lines ending in a backslash continue on the next."""
    block = re.search(r"```bash\n(.*?)```", README, re.S).group(1).strip()
    return [" ".join(command.split()) for command in block.replace("\\\n", " ").splitlines()]


def test_ci_runs_the_readme_test_command() -> None:
    """The README's first block holds two commands, the set-up (valid shell over its continued lines)
    and the tests; .ci/run ends with exactly that test command."""
    commands = set_up_commands()
    assert len(commands) == 2 and commands[0].startswith("python3 -m venv .venv && ")
    assert subprocess.run(["bash", "-n", "-c", commands[0]], capture_output=True).returncode == 0
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == commands[1]
