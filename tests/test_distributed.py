"""Data-parallel training: 2 Gloo processes on the CPU match one process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from helpers import CLASSIFIER, TINY_ARGS, invoke, write_idx_dataset
from safetensors.torch import load_file, save_file

from drawcli import checkpoint, distributed
from drawcli.config import DrawConfig
from drawcli.model import DRAW
from drawcli.training.family import BatchLoss
from drawcli.training.step import train_step

CONFIG = dict(glimpses=3, enc_size=16, dec_size=16, z_size=4, read_size=2, write_size=3, height=8, width=8)
TINY = [*TINY_ARGS, "--device", "cpu"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def global_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """5 images (an uneven split over 2 ranks) and their noise for every glimpse."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.bernoulli(torch.full((5, 1, 8, 8), 0.4), generator=gen)
    noise = torch.randn(3, 5, 4, generator=gen)
    return x, noise


def gradients(model: DRAW, net: torch.nn.Module, ctx: distributed.Dist) -> dict[str, torch.Tensor]:
    """One training step's gradient, taken by the loop's own step (no clipping, a zero learning rate)."""
    x, noise = global_batch()

    def loss() -> BatchLoss:
        return BatchLoss(net(distributed.shard(x, ctx), noise=distributed.shard(noise, ctx, dim=1)).loss, {})

    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    train_step(model, optimizer, loss, clip=float("inf"), scale=distributed.objective_scale(len(x), ctx), ctx=ctx)
    return {name: p.grad.detach().clone() for name, p in model.named_parameters()}


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    ctx = distributed.Dist(rank=rank, world_size=world, local_rank=rank)
    torch.manual_seed(0)
    model = DRAW(DrawConfig(**CONFIG))
    grads = gradients(model, distributed.wrap(model, ctx, torch.device("cpu")), ctx)
    save_file(grads, f"{out}/rank{rank}.safetensors")
    distributed.close(ctx)  # the barrier first: a rank leaving while Gloo's workers still need the GIL aborts


def test_two_rank_gradient_equals_single_process(tmp_path: Path) -> None:
    """Global batch of 5 split 3 + 2 over 2 ranks: DDP's averaged gradient is the single-process one."""
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    torch.manual_seed(0)
    model = DRAW(DrawConfig(**CONFIG))
    expected = gradients(model, model, distributed.Dist())
    for rank in (0, 1):
        got = load_file(tmp_path / f"rank{rank}.safetensors")
        for name, grad in expected.items():
            torch.testing.assert_close(got[name], grad, rtol=1e-5, atol=1e-6, msg=f"rank {rank}: {name}")


def _parts_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    seen = []

    def fn(rows: torch.Tensor) -> torch.Tensor:
        seen.append(rows.clone())
        return torch.stack([rows.float().sum(dim=1), rows.float().prod(dim=1)], dim=1)

    ctx = distributed.Dist(rank=rank, world_size=world, local_rank=rank)
    whole = distributed.computed_in_parts(fn, torch.arange(15).reshape(5, 3), ctx)
    save_file({"whole": whole, "seen": torch.cat(seen)}, f"{out}/rank{rank}.safetensors")
    distributed.close(ctx)


def test_computed_in_parts_gives_every_rank_the_whole_result_of_its_own_part(tmp_path: Path) -> None:
    """5 rows over 2 ranks: rank 0 computes rows 0-2, rank 1 rows 3-4, and both hold fn of all 5 (by hand)."""
    mp.spawn(_parts_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    results = [load_file(tmp_path / f"rank{rank}.safetensors") for rank in (0, 1)]
    rows = torch.arange(15).reshape(5, 3)
    expected = torch.tensor([[3.0, 0.0], [12.0, 60.0], [21.0, 336.0], [30.0, 990.0], [39.0, 2184.0]])
    for rank, result in enumerate(results):
        assert torch.equal(result["whole"], expected)
        assert torch.equal(result["seen"], rows[:3] if rank == 0 else rows[3:])
    single = distributed.computed_in_parts(lambda r: r * 2, rows, distributed.Dist())
    assert torch.equal(single, rows * 2)
    few = distributed.computed_in_parts(lambda r: r * 2, rows[:1], distributed.Dist(rank=1, world_size=2))
    assert torch.equal(few, rows[:1] * 2)  # fewer rows than ranks: each rank computes all, no collective


def test_shard_and_scale() -> None:
    """Shards are contiguous and cover the batch; the scale makes rank sums average to the mean."""
    t = torch.arange(5)
    parts = [distributed.shard(t, distributed.Dist(rank=r, world_size=2)).tolist() for r in (0, 1)]
    assert parts == [[0, 1, 2], [3, 4]]
    assert distributed.objective_scale(5, distributed.Dist(world_size=2)) == pytest.approx(2 / 5)
    assert distributed.shard(t, distributed.Dist()) is t


@pytest.mark.parametrize("model_args", [TINY, CLASSIFIER, [*CLASSIFIER, "--teacher", "{teacher}"]],
                         ids=["draw", "classifier", "classifier-taught"])  # fmt: skip
def test_torchrun_two_processes_match_one(tmp_path: Path, model_args: list[str]) -> None:
    """`torchrun --nproc_per_node 2 -m drawcli train` finishes, writes one checkpoint without a DDP
    prefix that loads in a single process, and ends where a single-process run ends: for DRAW,
    the attention classifier, and the classifier with a teacher (whose targets are sharded too)."""
    write_idx_dataset(tmp_path / "data", n_train=40, n_test=8)
    if "{teacher}" in model_args:
        teacher = tmp_path / "teacher"
        assert invoke("train", *CLASSIFIER, "--data-dir", tmp_path / "data", "--steps", "2", "--lr", "1e-2", "--out", teacher).exit_code == 0
        model_args = [str(teacher) if arg == "{teacher}" else arg for arg in model_args]
    common = [*model_args, "--data-dir", str(tmp_path / "data"), "--steps", "4", "--quiet", "--sample-every", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           "-m", "drawcli", "train", *common, "--out", str(tmp_path / "ddp")]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("training for 4 steps") == 1  # only rank 0 reports
    single = subprocess.run([sys.executable, "-m", "drawcli", "train", *common, "--out", str(tmp_path / "one")],
                            capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert single.returncode == 0, single.stderr[-3000:]

    model, info = checkpoint.load_model(tmp_path / "ddp")
    assert info.training["world_size"] == 2
    assert not any(name.startswith("module.") for name in info.tensors)
    reference, _ = checkpoint.load_model(tmp_path / "one")
    for (name, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_close_meets_the_other_ranks_first_only_after_a_normal_finish(monkeypatch: pytest.MonkeyPatch) -> None:
    """The barrier keeps a rank from reaching interpreter shutdown while Gloo's workers still need the GIL
    (an abort at exit); after an error it is skipped, since another rank may never reach it."""
    calls: list[str] = []
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "barrier", lambda: calls.append("barrier"))
    monkeypatch.setattr(dist, "destroy_process_group", lambda: calls.append("destroy"))
    ctx = distributed.Dist(rank=1, world_size=2, local_rank=1)
    distributed.close(ctx)
    assert calls == ["barrier", "destroy"]
    calls.clear()
    distributed.close(ctx, finished=False)
    assert calls == ["destroy"]
    calls.clear()
    distributed.close(distributed.Dist())  # a single process has no group to leave
    assert calls == []


def test_the_process_group_is_left_with_the_barrier_only_after_a_normal_finish(monkeypatch: pytest.MonkeyPatch) -> None:
    """What `train` runs inside: an exception leaves without the barrier, a normal finish with it."""
    calls: list[str] = []
    ctx = distributed.Dist(rank=0, world_size=2)
    monkeypatch.setattr(distributed, "init", lambda device_name: (ctx, torch.device("cpu")))
    monkeypatch.setattr(distributed, "close", lambda c, finished=True: calls.append(f"close finished={finished}"))
    with distributed.process_group("cpu") as (got, device):
        assert got is ctx and device == torch.device("cpu")
    with pytest.raises(KeyboardInterrupt), distributed.process_group("cpu"):
        raise KeyboardInterrupt
    assert calls == ["close finished=True", "close finished=False"]


def test_a_stop_asked_by_signal_leaves_the_process_group_through_the_barrier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C under torchrun: every rank stops after the same step (the request is all-reduced), so
    `train` meets the other ranks at the barrier before exiting 130, as after a normal finish."""
    from drawcli import training
    from drawcli.training.loop import Interrupted

    calls: list[str] = []
    joined = [True]
    monkeypatch.setattr(distributed, "init", lambda device_name: (distributed.Dist(rank=1, world_size=2, local_rank=1), None))
    monkeypatch.setattr(dist, "is_initialized", lambda: joined[0])
    monkeypatch.setattr(dist, "barrier", lambda: calls.append("barrier"))
    monkeypatch.setattr(dist, "destroy_process_group", lambda: (calls.append("destroy"), joined.__setitem__(0, False)))
    monkeypatch.setattr(distributed, "broadcast_text", lambda text, ctx: text)

    def stopped(*args: object, **kwargs: object) -> None:
        raise Interrupted("interrupted at step 3")

    monkeypatch.setattr(training, "train", stopped)
    result = invoke("train", *TINY, "--data-dir", tmp_path, "--out", tmp_path / "run")  # train itself stubbed: no data read
    assert result.exit_code == 130
    assert calls == ["barrier", "destroy"]


@pytest.mark.parametrize(("outcome", "code"), [(None, 0), (SystemExit(0), 0), (SystemExit(2), 2), (SystemExit(130), 130),
                                               (SystemExit(None), 0), (SystemExit("message"), 1)])  # fmt: skip
def test_a_torchrun_worker_leaves_through_os_exit_with_the_commands_code(outcome: SystemExit | None, code: int,
                                                                         monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """Under torchrun main() ends the process with os._exit (no interpreter shutdown for a gloo
    thread to abort in) and the command's exit code, printing a text exit's message as the interpreter
    would; outside torchrun it returns or raises as usual."""
    import drawcli.cli as cli

    def app() -> None:
        if outcome is not None:
            raise outcome

    class Exited(Exception):
        pass

    def fake_exit(value: int) -> None:
        raise Exited(value)

    monkeypatch.setattr(cli, "app", app)
    monkeypatch.setattr(cli.os, "_exit", fake_exit)
    monkeypatch.setattr(distributed, "launched_by_torchrun", lambda: True)
    with pytest.raises(Exited) as exited:
        cli.main()
    assert exited.value.args == (code,)
    assert capsys.readouterr().err == ("message\n" if outcome is not None and outcome.code == "message" else "")
    monkeypatch.setattr(distributed, "launched_by_torchrun", lambda: False)
    if outcome is None:
        assert cli.main() is None
    else:
        with pytest.raises(SystemExit):
            cli.main()
