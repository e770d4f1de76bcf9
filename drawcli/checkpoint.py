"""Model checkpoints: weights plus JSON metadata that is enough to rebuild the model.

No pickle anywhere: weights are tensors, everything else is JSON in the safetensors header,
validated before any model is built, so `inspect` works on a checkpoint whose plugins are
not installed. The layer below (limits, checksum) is `safetensors_io`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, cast

import torch

from drawcli import __version__, kinds, registry
from drawcli.config import ModelConfig, filled_fields
from drawcli.config import from_dict as config_from_dict
from drawcli.errors import CheckpointError, ConfigError, DrawcliError, PluginError
from drawcli.rundir import PAIR_KEY, checkpoint_file
from drawcli.safetensors_io import DTYPE_NAMES, TensorInfo, json_field, load_tensors, numel, read_header, serialize

FORMAT = "drawcli-checkpoint/1"
COMPONENT_KINDS = ("reader", "writer", "sampler")


def component_kinds(config: ModelConfig) -> tuple[str, ...]:
    """The components a model of this config uses (a classifier: a reader only)."""
    return kinds.get(config.kind).components


@dataclass
class CheckpointInfo:
    """Everything in a checkpoint's header: read without loading tensors or plugins."""

    path: Path
    file_size: int
    config: ModelConfig
    version: str
    components: dict[str, dict[str, Any]]
    training: dict[str, Any]
    tensors: dict[str, TensorInfo] = field(default_factory=dict)
    filled: dict[str, Any] = field(default_factory=dict)  # config fields the file predates, with their values (config.ADDED_LATER)

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per top-level part, from tensor shapes alone."""
        return by_part((name, numel(info.shape)) for name, info in self.tensors.items())

    def class_names(self) -> list[str]:
        """A classifier's class names in the order of its outputs (numbers when the run saved none); none for
        a model that does not classify."""
        if not kinds.get(self.config.kind).classifies:
            return []
        classes: int = cast(Any, self.config).classes  # a classifying kind's config counts its classes
        return list(self.training.get("class_names") or [str(k) for k in range(classes)])

    def require_classifier_of(self, classes: tuple[str, ...] | list[str], image_shape: tuple[int, int, int], flag: str) -> None:
        """Refuse (naming `flag`) a checkpoint that is not a classifier of these classes reading images of this shape."""
        if not kinds.get(self.config.kind).classifies or self.class_names() != list(classes):
            raise ConfigError(f"{flag} {self.path} is not a classifier of the classes {', '.join(classes)}")
        if self.config.image_shape != image_shape:
            raise ConfigError(f"{flag} {self.path} reads {self.config.image_shape} images, not {image_shape}")


def by_part(sizes: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Element counts of (dotted name, count) pairs summed per top-level part (reader, encoder, lstm, ...)."""
    counts: dict[str, int] = {}
    for name, size in sizes:
        part = name.split(".", 1)[0]
        counts[part] = counts.get(part, 0) + size
    return counts


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """A model's parameters per top-level part: what `inspect` reports from the checkpoint's shapes."""
    return by_part((name, p.numel()) for name, p in model.named_parameters())


def read_info(path: Path) -> CheckpointInfo:
    """Validate a checkpoint's header and metadata (a file, or a run folder holding one); no tensors loaded."""
    path = checkpoint_file(path)
    tensors, metadata, size = read_header(path)
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a drawcli checkpoint (no {FORMAT!r} metadata)")
    config_data = json_field(metadata, "config", path)
    try:
        config = config_from_dict(config_data)
    except (ConfigError, TypeError, RecursionError) as exc:
        raise CheckpointError(f"{path}: invalid config in metadata: {exc}") from None
    components = json_field(metadata, "components", path)
    training = json_field(metadata, "training", path)
    if not isinstance(components, dict) or not isinstance(training, dict):
        raise CheckpointError(f"{path}: metadata fields 'components' and 'training' must be JSON objects")
    for kind in COMPONENT_KINDS:
        entry = components.get(kind, {})
        if not isinstance(entry, dict) or not all(v is None or isinstance(v, str) for v in entry.values()):
            raise CheckpointError(f"{path}: metadata 'components' entry {kind!r} must map names to strings")
    for key in ("dataset", "data_dir", "binarize"):  # evaluate and reconstruct read these
        if not (training.get(key) is None or isinstance(training[key], str)):
            raise CheckpointError(f"{path}: metadata 'training' field {key!r} must be a string or null")
    return CheckpointInfo(path=path, file_size=size, config=config, version=metadata.get("drawcli_version", "unknown"),
                          components=components, training=training, tensors=tensors,
                          filled=filled_fields(config_data))  # fmt: skip


def component_provenance(config: ModelConfig) -> dict[str, dict[str, Any]]:
    """For each component: the name asked for, its canonical name, and who provides it."""
    out = {}
    for kind in component_kinds(config):
        name = getattr(config, kind)
        spec = registry.resolve(kind, name)
        out[kind] = {"name": spec.name, "requested": name, "value": spec.value,
                     "distribution": spec.distribution, "version": spec.version}  # fmt: skip
    return out


def to_bytes(model: torch.nn.Module, training: dict[str, Any], resume_sha256: str | None = None) -> bytes:
    """The checkpoint file's bytes; tensors on the CPU, so any device loads them.

    `resume_sha256` pairs the checkpoint with the resume state saved beside it (rundir.commit).
    """
    config: ModelConfig = model.config  # type: ignore[assignment]
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "drawcli_version": __version__,
        "config": json.dumps(config.to_dict(), sort_keys=True),
        "components": json.dumps(component_provenance(config), sort_keys=True),
        "training": json.dumps(training, sort_keys=True),
    }
    if resume_sha256 is not None:
        metadata[PAIR_KEY] = resume_sha256
    return serialize(tensors, metadata)


def save_checkpoint(path: Path, model: torch.nn.Module, training: dict[str, Any]) -> None:
    """Write a lone checkpoint atomically (training saves go through rundir.RunDir.commit)."""
    from drawcli.atomic import atomic_write_bytes

    atomic_write_bytes(Path(path), to_bytes(model, training))


def _require_installed(info: CheckpointInfo) -> None:
    """A missing plugin is named with the distribution that provided it when the checkpoint was saved."""
    for kind in component_kinds(info.config):
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


def _expected_tensors(config: ModelConfig) -> dict[str, tuple[list[int], str]]:
    """{name: (shape, dtype)} of the model's state dict, built on the meta device (no memory used)."""
    try:
        with torch.device("meta"):
            model = kinds.build(config)
    except DrawcliError:
        raise
    except Exception:  # a plugin that cannot run on the meta device: build it for real
        model = kinds.build(config)
    return {k: (list(v.shape), DTYPE_NAMES.get(v.dtype, str(v.dtype))) for k, v in model.state_dict().items()}


def _check_tensors(info: CheckpointInfo) -> None:
    expected = _expected_tensors(info.config)
    found = {k: (v.shape, v.dtype) for k, v in info.tensors.items()}
    if expected == found:
        return
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


def load_model(path: Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, CheckpointInfo]:
    """Rebuild the model from a checkpoint alone (config from metadata, weights from tensors).

    Shapes and dtypes are checked against the config before the model is allocated, so a header
    naming huge sizes costs nothing; the weights are checked against the header's checksum.
    """
    info = read_info(path)
    _require_installed(info)
    _check_tensors(info)
    _, metadata, _ = read_header(info.path)
    tensors = load_tensors(info.path, metadata)
    model = kinds.build(info.config)
    try:
        model.load_state_dict(tensors)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{info.path}: weights do not fit the model: {exc}") from None
    return model.to(device), info
