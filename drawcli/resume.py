"""Resume state: optimizer slots, RNG states and the loop position, as safetensors plus JSON.

Saved beside the checkpoint in one commit (rundir.RunDir.commit); `--resume` reads it back so
a resumed run takes the same steps as an uninterrupted one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from drawcli.errors import CheckpointError
from drawcli.safetensors_io import json_field, load_tensors, read_header, serialize

FORMAT = "drawcli-resume/1"
# How an update runs, not what it computes: the live optimizer's choice wins over the file's.
IMPLEMENTATION_FLAGS = ("fused", "foreach", "capturable", "differentiable")


def to_bytes(optimizer: torch.optim.Optimizer, rng: dict[str, torch.Tensor], state: dict[str, Any],
             weights: dict[str, torch.Tensor] | None = None) -> bytes:  # fmt: skip
    """The resume file's bytes: rng.* and optim.INDEX.SLOT tensors, param groups and loop state as JSON.

    `weights` (saved as model.NAME) are the weights training goes on from, where the checkpoint
    holds others (--ema: the checkpoint holds the averaged ones).
    """
    opt = optimizer.state_dict()
    tensors = {f"rng.{k}": v.detach().to("cpu").contiguous() for k, v in rng.items()}
    tensors.update({f"model.{k}": v.detach().to("cpu").contiguous() for k, v in (weights or {}).items()})
    for index, slots in opt["state"].items():
        for slot, value in slots.items():
            tensors[f"optim.{index}.{slot}"] = torch.as_tensor(value).detach().to("cpu").contiguous()
    metadata = {
        "format": FORMAT,
        "param_groups": json.dumps(opt["param_groups"], default=_number),
        "state": json.dumps(state, sort_keys=True),
    }
    return serialize(tensors, metadata)


def _number(value: object) -> object:
    """A one-element tensor in param groups (a captured step's rate, training/graphed.py) as its number."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    raise TypeError(f"{type(value).__name__} in the optimizer's param groups cannot be saved as JSON")


def _split(path: Path, tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[int, dict[str, torch.Tensor]]]:
    rng: dict[str, torch.Tensor] = {}
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        kind, _, rest = key.partition(".")
        index, _, slot = rest.partition(".")
        if kind == "rng":
            rng[rest] = value
        elif kind == "model" and rest:
            continue  # read by weights()
        elif kind == "optim" and index.isdigit() and slot:
            slots.setdefault(int(index), {})[slot] = value
        else:
            raise CheckpointError(f"{path}: unexpected tensor {key!r} in a resume file")
    return rng, slots


def load(path: Path, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Restore the optimizer in place from a resume file; return (RNG states, loop state)."""
    _, metadata, _ = read_header(path)
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a drawcli resume file")
    rng, slots = _split(path, load_tensors(path, metadata))
    groups = json_field(metadata, "param_groups", path)
    if isinstance(groups, list):
        # Hyperparameters come from the file; the update's implementation stays the live one's, so
        # a run resumes on another device or after a drawcli update.
        for group, live in zip(groups, optimizer.param_groups):
            if isinstance(group, dict):
                group.update({key: live[key] for key in IMPLEMENTATION_FLAGS if key in live})
    try:
        optimizer.load_state_dict({"state": slots, "param_groups": groups})
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: optimizer state does not match the model: {exc}") from None
    loop = json_field(metadata, "state", path)
    if not isinstance(loop, dict):
        raise CheckpointError(f"{path}: metadata field 'state' must be a JSON object")
    return rng, loop


def weights(path: Path) -> dict[str, torch.Tensor]:
    """The training weights a resume file holds (to_bytes' `weights`); empty when it holds none."""
    _, metadata, _ = read_header(path)
    prefix = "model."
    return {k.removeprefix(prefix): v for k, v in load_tensors(path, metadata).items() if k.startswith(prefix)}
