"""safetensors checkpoints: exact round trips, metadata, and clean errors for bad files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from drawcli import __version__, checkpoint, resume
from drawcli.errors import CheckpointError
from drawcli.model import DRAW


@pytest.fixture
def saved(tmp_path: Path, tiny_config) -> tuple[DRAW, Path]:
    torch.manual_seed(3)
    model = DRAW(tiny_config(channels=3, height=6, width=10))
    path = tmp_path / "checkpoint.safetensors"
    checkpoint.save_checkpoint(path, model, {"steps": 7, "last_test": {"bound": 1.5}})
    return model, path


def test_round_trip_outputs_equal_exactly(saved: tuple[DRAW, Path]) -> None:
    """A model rebuilt from the file alone gives bit-identical outputs and samples for a fixed seed."""
    model, path = saved
    loaded, info = checkpoint.load_model(path)
    assert info.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    x = torch.bernoulli(torch.full((4, 3, 6, 10), 0.3), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(5)
    a = model(x)
    torch.manual_seed(5)
    b = loaded(x)
    assert torch.equal(a.recon, b.recon) and torch.equal(a.kl, b.kl)
    torch.manual_seed(9)
    ga = model.generate(3).canvases
    torch.manual_seed(9)
    assert torch.equal(ga, loaded.generate(3).canvases)


def test_metadata_holds_config_version_components_training(saved: tuple[DRAW, Path]) -> None:
    """The header names the format, the version, each component's distribution and the summary."""
    model, path = saved
    info = checkpoint.read_info(path)
    assert info.version == __version__
    assert info.training == {"steps": 7, "last_test": {"bound": 1.5}}
    assert info.components["reader"]["name"] == "filterbank"
    assert info.components["reader"]["distribution"] == "drawcli"
    assert info.parameter_counts() == checkpoint.parameter_counts(model)
    assert info.tensors["encoder.weight_ih"].shape == list(model.encoder.weight_ih.shape)
    assert info.tensors["encoder.weight_ih"].dtype == "F32"


def test_run_directory_resolves_to_its_checkpoint(saved: tuple[DRAW, Path]) -> None:
    """A run directory stands for the checkpoint inside it."""
    _, path = saved
    assert checkpoint.read_info(path.parent).path == path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b"hello"), "too short"),
        (lambda p: p.write_bytes(struct.pack("<Q", 10**12) + b"{}"), "header length"),
        (lambda p: p.write_bytes(struct.pack("<Q", 4) + b"nope"), "not JSON"),
        (lambda p: save_file({"w": torch.zeros(2)}, str(p), metadata={"x": "y"}), "not a drawcli checkpoint"),
    ],
    ids=["short", "huge-header", "not-json", "foreign-safetensors"],
)
def test_bad_files_raise_clean_errors(tmp_path: Path, make, message: str) -> None:
    """Files that are not drawcli checkpoints fail with a CheckpointError saying why."""
    path = tmp_path / "bad.safetensors"
    make(path)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.read_info(path)


def test_truncated_checkpoint(saved: tuple[DRAW, Path]) -> None:
    """Cutting the tail off a checkpoint is caught from the header's offsets."""
    _, path = saved
    whole = path.read_bytes()
    (header_len,) = struct.unpack("<Q", whole[:8])
    path.write_bytes(whole[:-100])
    data = len(whole) - 8 - header_len - 100
    with pytest.raises(CheckpointError, match=f"is truncated: its header needs {data + 100} bytes of tensor data, the file holds {data}$"):
        checkpoint.load_model(path)


def test_an_entry_past_the_end_of_a_whole_file_is_corrupt_not_truncated(tmp_path: Path) -> None:
    """An entry whose offsets disagree with its shape is a corrupt header, even when they run past the data."""
    from drawcli.safetensors_io import read_header

    header = json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 10**12]}}).encode()
    path = tmp_path / "x.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(8))
    with pytest.raises(CheckpointError, match="tensor 'a' has 1000000000000 bytes for shape \\[2\\] F32$"):
        read_header(path)


def test_missing_path_and_directory_without_checkpoint(tmp_path: Path) -> None:
    """A missing file and a directory without a checkpoint are named in the message."""
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint.read_info(tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match="directory without checkpoint.safetensors"):
        checkpoint.read_info(tmp_path)


def _rewrite_config(path: Path, change: dict) -> None:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    config = json.loads(metadata["config"])
    config.update(change)
    metadata["config"] = json.dumps(config)
    save_file(tensors, str(path), metadata=metadata)


def test_config_that_does_not_validate(saved: tuple[DRAW, Path]) -> None:
    """Metadata with absurd sizes or unknown fields is refused before anything is built."""
    _, path = saved
    _rewrite_config(path, {"glimpses": 10**9})
    with pytest.raises(CheckpointError, match="invalid config.*glimpses"):
        checkpoint.read_info(path)
    _rewrite_config(path, {"glimpses": 3, "colour": True})
    with pytest.raises(CheckpointError, match="unknown config field.*colour"):
        checkpoint.read_info(path)


def test_tensors_that_do_not_match_the_config(saved: tuple[DRAW, Path]) -> None:
    """A config whose sizes disagree with the stored tensors is named, tensor by tensor."""
    _, path = saved
    _rewrite_config(path, {"z_size": 5})
    with pytest.raises(CheckpointError, match="wrong shape: .*decoder.weight_ih"):
        checkpoint.load_model(path)


def test_resume_state_round_trip(tmp_path: Path, tiny_config) -> None:
    """Adam's state, RNG states and loop state survive a save and load bit for bit."""
    model = DRAW(tiny_config())
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    x = torch.ones(2, 1, 8, 8)
    for _ in range(2):
        opt.zero_grad()
        model(x).loss.mean().backward()
        opt.step()
    rng = {"torch": torch.get_rng_state()}
    (tmp_path / "resume.safetensors").write_bytes(resume.to_bytes(opt, rng, {"step": 2}))
    fresh = torch.optim.Adam(model.parameters(), lr=1.0)
    rng2, state = resume.load(tmp_path / "resume.safetensors", fresh)
    assert state == {"step": 2} and torch.equal(rng2["torch"], rng["torch"])
    assert fresh.param_groups[0]["lr"] == 3e-4
    for p in model.parameters():
        for slot in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(opt.state[p][slot], fresh.state[p][slot])


def test_resume_from_plain_adam_into_fused_adam(tmp_path: Path, tiny_config) -> None:
    """A resume file written by plain Adam (drawcli 0.1's loop) loads into the fused Adam of
    today's loop: its lr and moments are kept, the live optimizer's `fused` flag wins, and
    the next step runs (it used to fail on the saved fused=None)."""
    model = DRAW(tiny_config())
    plain = torch.optim.Adam(model.parameters(), lr=3e-4)
    model(torch.ones(2, 1, 8, 8)).loss.mean().backward()
    plain.step()
    (tmp_path / "resume.safetensors").write_bytes(resume.to_bytes(plain, {}, {"step": 1}))
    fused = torch.optim.Adam(model.parameters(), lr=1.0, fused=True)
    resume.load(tmp_path / "resume.safetensors", fused)
    assert fused.param_groups[0]["fused"] is True and fused.param_groups[0]["lr"] == 3e-4
    fused.found_inf = torch.tensor(0.0)
    fused.step()
    assert {s["step"].item() for s in fused.state.values()} == {2.0}
