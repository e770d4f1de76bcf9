"""safetensors checkpoints: weights plus JSON metadata that is enough to rebuild the model.

No pickle anywhere: weights and optimizer state are tensors, everything else is JSON in the
safetensors header. The header is parsed here with size limits and validated before any
model is built, so `inspect` works on a checkpoint whose plugins are not installed.
safetensors has no checksum, so the metadata carries the SHA-256 of the tensor data: a flipped
bit in the weights is reported instead of loading silently.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from drawcli import __version__, registry
from drawcli.atomic import atomic_write_bytes
from drawcli.config import DrawConfig
from drawcli.errors import CheckpointError, ConfigError, DrawcliError, PluginError

FORMAT = "drawcli-checkpoint/1"
RESUME_FORMAT = "drawcli-resume/1"
CHECKPOINT_NAME = "checkpoint.safetensors"
RESUME_NAME = "resume.safetensors"
MAX_HEADER_BYTES = 16 * 1024 * 1024
CHECKSUM_KEY = "data_sha256"
DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
          "U8": torch.uint8, "BOOL": torch.bool}  # fmt: skip
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
COMPONENT_KINDS = ("reader", "writer", "sampler")


@dataclass
class TensorInfo:
    dtype: str
    shape: list[int]


@dataclass
class CheckpointInfo:
    """Everything in a checkpoint's header: read without loading tensors or plugins."""

    path: Path
    file_size: int
    config: DrawConfig
    version: str
    components: dict[str, dict[str, Any]]
    training: dict[str, Any]
    tensors: dict[str, TensorInfo] = field(default_factory=dict)

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per top-level part, from tensor shapes alone."""
        counts: dict[str, int] = {}
        for name, info in self.tensors.items():
            part = name.split(".", 1)[0]
            counts[part] = counts.get(part, 0) + _numel(info.shape)
        return counts


def _numel(shape: list[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def resolve_path(path: Path, name: str = CHECKPOINT_NAME) -> Path:
    """A checkpoint file, or a run directory holding `name`."""
    path = Path(path)
    if path.is_dir():
        candidate = path / name
        if not candidate.is_file():
            raise CheckpointError(f"{path} is a directory without {name}")
        return candidate
    if not path.exists():
        raise CheckpointError(f"{path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"{path} is not a regular file")
    return path


def read_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str], int]:
    """Parse a safetensors header with limits: (tensors, metadata, file size)."""
    path = resolve_path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise CheckpointError(f"{path} is not a safetensors file (too short)")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > MAX_HEADER_BYTES or header_len > size - 8:
                raise CheckpointError(f"{path} is not a safetensors file (header length {header_len} is impossible)")
            raw = f.read(header_len)
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # also over-long integers and absurd nesting
        raise CheckpointError(f"{path} is not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is not a safetensors file (header is not an object)")
    metadata = header.pop("__metadata__", {}) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{path} has malformed safetensors metadata")
    data_size = size - 8 - header_len
    tensors: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        try:
            dtype, shape, (start, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            ok = dtype in DTYPES and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)
            ok = ok and isinstance(start, int) and isinstance(end, int) and 0 <= start <= end <= data_size
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            raise CheckpointError(f"{path} has a malformed entry for tensor {name!r}")
        if (end - start) != _numel(shape) * DTYPES[dtype].itemsize:
            raise CheckpointError(f"{path}: tensor {name!r} has {end - start} bytes for shape {shape} {dtype}")
        tensors[name] = TensorInfo(dtype=dtype, shape=list(shape))
    return tensors, metadata, size


def _json_field(metadata: dict[str, str], key: str, path: Path) -> Any:
    if key not in metadata:
        raise CheckpointError(f"{path} has no drawcli metadata field {key!r}")
    try:
        return json.loads(metadata[key])
    except (ValueError, RecursionError):
        raise CheckpointError(f"{path}: metadata field {key!r} is not valid JSON") from None


def read_info(path: Path) -> CheckpointInfo:
    """Validate a checkpoint's header and metadata; no tensors are loaded, no plugin imported."""
    path = resolve_path(path)
    tensors, metadata, size = read_header(path)
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a drawcli checkpoint (no {FORMAT!r} metadata)")
    try:
        config = DrawConfig.from_dict(_json_field(metadata, "config", path))
    except (ConfigError, TypeError, RecursionError) as exc:
        raise CheckpointError(f"{path}: invalid config in metadata: {exc}") from None
    components = _json_field(metadata, "components", path)
    training = _json_field(metadata, "training", path)
    if not isinstance(components, dict) or not isinstance(training, dict):
        raise CheckpointError(f"{path}: metadata fields 'components' and 'training' must be JSON objects")
    for kind in COMPONENT_KINDS:
        entry = components.get(kind, {})
        if not isinstance(entry, dict) or not all(v is None or isinstance(v, str) for v in entry.values()):
            raise CheckpointError(f"{path}: metadata 'components' entry {kind!r} must map names to strings")
    for key in ("dataset", "data_dir", "binarize"):  # evaluate and reconstruct read these
        if not (training.get(key) is None or isinstance(training[key], str)):
            raise CheckpointError(f"{path}: metadata 'training' field {key!r} must be a string or null")
    return CheckpointInfo(
        path=path,
        file_size=size,
        config=config,
        version=metadata.get("drawcli_version", "unknown"),
        components=components,
        training=training,
        tensors=tensors,
    )


def component_provenance(config: DrawConfig) -> dict[str, dict[str, Any]]:
    """For each component: the name asked for, its canonical name, and who provides it."""
    out = {}
    for kind in COMPONENT_KINDS:
        name = getattr(config, kind)
        spec = registry.resolve(kind, name)
        out[kind] = {"name": spec.name, "requested": name, "value": spec.value,
                     "distribution": spec.distribution, "version": spec.version}  # fmt: skip
    return out


def save_checkpoint(path: Path, model: torch.nn.Module, training: dict[str, Any]) -> None:
    """Write weights and metadata atomically; tensors are saved on the CPU, so any device loads them."""
    config: DrawConfig = model.config  # type: ignore[assignment]
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "drawcli_version": __version__,
        "config": json.dumps(config.to_dict(), sort_keys=True),
        "components": json.dumps(component_provenance(config), sort_keys=True),
        "training": json.dumps(training, sort_keys=True),
    }
    atomic_write_bytes(Path(path), _serialize(tensors, metadata))


def _data_digest(blob: bytes | memoryview) -> str:
    """SHA-256 of a safetensors file's data section (everything after the header)."""
    (header_len,) = struct.unpack("<Q", blob[:8])
    return hashlib.sha256(memoryview(blob)[8 + header_len :]).hexdigest()


def _serialize(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """safetensors bytes with the data checksum in the metadata.

    The data layout does not depend on the metadata, so the draft's data section is the final one.
    """
    draft = st_save(tensors, metadata=metadata)
    return st_save(tensors, metadata={**metadata, CHECKSUM_KEY: _data_digest(draft)})


def _load_tensors(path: Path, metadata: dict[str, str]) -> dict[str, torch.Tensor]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from None
    expected = metadata.get(CHECKSUM_KEY)
    if expected is not None and (len(raw) < 8 or _data_digest(raw) != expected):
        raise CheckpointError(f"{path} is corrupt: its tensor data does not match the checksum in its header")
    try:
        return st_load(raw)
    except Exception as exc:  # safetensors raises its own error type for corrupt files
        raise CheckpointError(f"{path} is corrupt: {exc}") from None


def _require_installed(info: CheckpointInfo) -> None:
    """A missing plugin is named with the distribution that provided it when the checkpoint was saved."""
    for kind in COMPONENT_KINDS:
        name = getattr(info.config, kind)
        if name in registry.names(kind):
            continue
        recorded = info.components.get(kind) or {}
        dist, version = recorded.get("distribution"), recorded.get("version")
        if not dist:
            raise PluginError(
                f"{kind} {name!r} is not installed and the checkpoint does not say which distribution "
                f"provided it; installed {kind}s: {', '.join(registry.names(kind)) or 'none'}"
            )
        provided = f"{dist} {version}" if version else dist
        raise PluginError(f"{kind} {name!r} is not installed; it was provided by the distribution {provided!r}: pip install {dist}")


def _expected_tensors(config: DrawConfig) -> dict[str, tuple[list[int], str]]:
    """{name: (shape, dtype)} of the model's state dict, built on the meta device (no memory used)."""
    from drawcli.model import DRAW

    try:
        with torch.device("meta"):
            model = DRAW(config)
    except DrawcliError:
        raise
    except Exception:  # a plugin that cannot run on the meta device: build it for real
        model = DRAW(config)
    return {k: (list(v.shape), DTYPE_NAMES.get(v.dtype, str(v.dtype))) for k, v in model.state_dict().items()}


def load_model(path: Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, CheckpointInfo]:
    """Rebuild the model from a checkpoint alone (config from metadata, weights from tensors).

    Shapes and dtypes are checked against the config before the model is allocated, so a header
    naming huge sizes costs nothing; the weights are checked against the header's checksum.
    """
    from drawcli.model import DRAW

    info = read_info(path)
    _require_installed(info)
    expected = _expected_tensors(info.config)
    found = {k: (v.shape, v.dtype) for k, v in info.tensors.items()}
    if expected != found:
        missing = sorted(set(expected) - set(found))
        extra = sorted(set(found) - set(expected))
        common = set(expected) & set(found)
        wrong = sorted(k for k in common if expected[k][0] != found[k][0])
        dtype = sorted(k for k in common if expected[k][1] != found[k][1])
        detail = "; ".join(
            f"{label}: {', '.join(names[:5])}"
            for label, names in (("missing", missing), ("unexpected", extra), ("wrong shape", wrong), ("wrong dtype", dtype))
            if names
        )
        raise CheckpointError(f"{info.path}: tensors do not match the config ({detail})")
    _, metadata, _ = read_header(info.path)
    tensors = _load_tensors(info.path, metadata)
    model = DRAW(info.config)
    try:
        model.load_state_dict(tensors)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{info.path}: weights do not fit the model: {exc}") from None
    return model.to(device), info


def save_resume(path: Path, optimizer: torch.optim.Optimizer, rng: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    """Optimizer state, RNG states and loop position, as safetensors (tensors) plus JSON."""
    opt = optimizer.state_dict()
    tensors = {f"rng.{k}": v.detach().to("cpu").contiguous() for k, v in rng.items()}
    for index, slots in opt["state"].items():
        for slot, value in slots.items():
            tensors[f"optim.{index}.{slot}"] = torch.as_tensor(value).detach().to("cpu").contiguous()
    metadata = {
        "format": RESUME_FORMAT,
        "param_groups": json.dumps(opt["param_groups"]),
        "state": json.dumps(state, sort_keys=True),
    }
    atomic_write_bytes(Path(path), _serialize(tensors, metadata))


IMPLEMENTATION_FLAGS = ("fused", "foreach", "capturable", "differentiable")


def load_resume(path: Path, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Restore the optimizer in place; return (RNG states, loop state)."""
    path = resolve_path(path, RESUME_NAME)
    _, metadata, _ = read_header(path)
    if metadata.get("format") != RESUME_FORMAT:
        raise CheckpointError(f"{path} is not a drawcli resume file")
    tensors = _load_tensors(path, metadata)
    state: dict[int, dict[str, torch.Tensor]] = {}
    rng = {}
    for key, value in tensors.items():
        kind, _, rest = key.partition(".")
        index, _, slot = rest.partition(".")
        if kind == "rng":
            rng[rest] = value
        elif kind == "optim" and index.isdigit() and slot:
            state.setdefault(int(index), {})[slot] = value
        else:
            raise CheckpointError(f"{path}: unexpected tensor {key!r} in a resume file")
    groups = _json_field(metadata, "param_groups", path)
    if isinstance(groups, list):
        # Hyperparameters come from the file; how the update runs (fused, foreach, ...) is the
        # live optimizer's choice, so a run resumes on another device or after a drawcli update.
        for group, live in zip(groups, optimizer.param_groups):
            if isinstance(group, dict):
                group.update({key: live[key] for key in IMPLEMENTATION_FLAGS if key in live})
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: optimizer state does not match the model: {exc}") from None
    loop = _json_field(metadata, "state", path)
    if not isinstance(loop, dict):
        raise CheckpointError(f"{path}: metadata field 'state' must be a JSON object")
    return rng, loop


__all__ = [
    "CHECKPOINT_NAME",
    "RESUME_NAME",
    "CheckpointInfo",
    "load_model",
    "load_resume",
    "read_info",
    "save_checkpoint",
    "save_resume",
]
