"""safetensors files read with limits and written with a checksum: the layer under both file formats.

The header is parsed here with size limits and validated before any tensor is read, so an
untrusted file costs nothing to reject. safetensors has no checksum of its own, so the
metadata carries the SHA-256 of the tensor data: a flipped bit is reported instead of loaded.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from drawcli.errors import CheckpointError

MAX_HEADER_BYTES = 16 * 1024 * 1024
CHECKSUM_KEY = "data_sha256"
DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
          "U8": torch.uint8, "BOOL": torch.bool}  # fmt: skip
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


@dataclass
class TensorInfo:
    dtype: str
    shape: list[int]


def numel(shape: list[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _read_raw_header(path: Path) -> tuple[bytes, int]:
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise CheckpointError(f"{path} is not a safetensors file (too short)")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len <= MAX_HEADER_BYTES and header_len > size - 8 and f.read(1) == b"{":  # a JSON header, cut short
                raise CheckpointError(f"{path} is truncated: its header needs {header_len} bytes, the file holds {size - 8} after the length")
            if header_len > MAX_HEADER_BYTES or header_len > size - 8:
                raise CheckpointError(f"{path} is not a safetensors file (header length {header_len} is impossible); "
                                      "pass a run's folder or its checkpoint.safetensors")  # fmt: skip
            return f.read(header_len), size
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from None


def read_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str], int]:
    """Parse a safetensors header with limits: (tensors, metadata, file size)."""
    raw, size = _read_raw_header(path)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # also over-long integers and absurd nesting
        raise CheckpointError(f"{path} is not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is not a safetensors file (header is not an object)")
    metadata = header.pop("__metadata__", {}) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{path} has malformed safetensors metadata")
    data_size = size - 8 - len(raw)
    tensors: dict[str, TensorInfo] = {}
    needed = 0
    for name, entry in header.items():
        try:
            dtype, shape, (start, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            ok = dtype in DTYPES and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)
            ok = ok and isinstance(start, int) and isinstance(end, int) and 0 <= start <= end
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            raise CheckpointError(f"{path} has a malformed entry for tensor {name!r}")
        if (end - start) != numel(shape) * DTYPES[dtype].itemsize:
            raise CheckpointError(f"{path}: tensor {name!r} has {end - start} bytes for shape {shape} {dtype}")
        tensors[name] = TensorInfo(dtype=dtype, shape=list(shape))
        needed = max(needed, end)
    if needed > data_size:  # every entry is consistent, so the data was cut short (an interrupted copy)
        raise CheckpointError(f"{path} is truncated: its header needs {needed} bytes of tensor data, the file holds {data_size}")
    return tensors, metadata, size


def json_field(metadata: dict[str, str], key: str, path: Path) -> Any:
    """One metadata field parsed as JSON; a missing or malformed field names the file."""
    if key not in metadata:
        raise CheckpointError(f"{path} has no drawcli metadata field {key!r}")
    try:
        return json.loads(metadata[key])
    except (ValueError, RecursionError):
        raise CheckpointError(f"{path}: metadata field {key!r} is not valid JSON") from None


def data_digest(blob: bytes | memoryview) -> str:
    """SHA-256 of a safetensors file's data section (everything after the header)."""
    (header_len,) = struct.unpack("<Q", blob[:8])
    return hashlib.sha256(memoryview(blob)[8 + header_len :]).hexdigest()


def serialize(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """safetensors bytes with the data checksum in the metadata.

    The data layout does not depend on the metadata, so the draft's data section is the final one.
    """
    draft = st_save(tensors, metadata=metadata)
    return st_save(tensors, metadata={**metadata, CHECKSUM_KEY: data_digest(draft)})


def load_tensors(path: Path, metadata: dict[str, str]) -> dict[str, torch.Tensor]:
    """Every tensor of the file, after checking the data against the header's checksum."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from None
    expected = metadata.get(CHECKSUM_KEY)
    if expected is not None and (len(raw) < 8 or data_digest(raw) != expected):
        raise CheckpointError(f"{path} is corrupt: its tensor data does not match the checksum in its header")
    try:
        return st_load(raw)
    except Exception as exc:  # safetensors raises its own error type for corrupt files
        raise CheckpointError(f"{path} is corrupt: {exc}") from None
