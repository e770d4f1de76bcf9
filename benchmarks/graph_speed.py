"""paper-mnist training steps through the loop's own step function (training/graphed.py), setting by setting:
eager, compiled glimpse, the whole step captured as a CUDA graph (eager or compiled glimpse inside), and
captured with bf16 LSTM matmuls, at several batch sizes; and the captured step against the eager one.

    python benchmarks/graph_speed.py --data-dir DIR [--device cuda] [--batches 64,256,1024,4096]
        [--modes eager,compiled,captured,captured-bf16] [--budget-s 120] [--results FILE] [--json FILE]
    python benchmarks/graph_speed.py --data-dir DIR --check    # graph against eager, then exit

Each setting builds the model on the seed, runs its first steps (compiling, the eager warm-up steps
and the capture: "first steps s"), then times whole steps without a sync between them, as the loop
runs them (CUDA synchronised at the start and end only): ms a step, images/s, seconds an MNIST epoch.
Settings that would start after --budget-s are left out and said so. On the CPU the captured modes
run eagerly (the CPU has no CUDA graphs): a dry run of the script, not a measurement of graphs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results  # noqa: E402  (benchmarks/ is no package)
from drawcli import distributed  # noqa: E402
from drawcli.config import DrawConfig  # noqa: E402
from drawcli.training import graphed  # noqa: E402
from drawcli.training.draw import DrawFamily  # noqa: E402
from drawcli.training.settings import TrainSettings  # noqa: E402
from drawcli.training.step import make_optimizer, set_rate  # noqa: E402

# mode -> (--compile, --amp, --cuda-graph)
LR = 1e-3  # Adam's rate in every setting: TrainSettings' default
MIN_STEPS = 5  # timed steps per setting, at the least
CHECK_BATCH = 64  # images per step of --check, the paper's batch
MODES = {"eager": ("off", "off", "off"), "compiled": ("on", "off", "off"), "captured": ("off", "off", "on"),
         "captured-compiled": ("on", "off", "on"), "captured-bf16": ("off", "bf16", "on")}  # fmt: skip


def build(args: argparse.Namespace, mode: str, batch: int) -> tuple[graphed.Steps, DrawFamily, torch.nn.Module, torch.optim.Optimizer]:
    """The loop's objects for one setting: family (data on the device), model, Adam and the step function."""
    compile_choice, amp, graph = MODES[mode]
    settings = TrainSettings(data_dir=args.data_dir, batch_size=batch, lr=LR, compile=compile_choice, amp=amp,
                             cuda_graph=graph, seed=0, steps=10**6)  # fmt: skip
    device = torch.device(args.device)
    family = DrawFamily(DrawConfig(glimpses=args.glimpses), settings, device)
    torch.manual_seed(0)
    model = family.build()
    optimizer = make_optimizer(model, settings.lr, settings.beta1, device)
    family.prepare(model)
    steps = graphed.Steps(family, settings, model, model, optimizer, device, distributed.Dist(), lambda m: print("  warning:", m))
    return steps, family, model, optimizer


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(args: argparse.Namespace, mode: str, batch: int) -> dict[str, Any]:
    """First steps' seconds, then steady ms a step over at least --min-time s (at least --min-steps steps)."""
    steps, family, _, optimizer = build(args, mode, batch)
    stop = torch.zeros((), device=args.device)
    order = torch.randperm(family.train_size, device=family.index_device())
    n_batches = family.train_size // batch

    def run(i: int) -> Any:
        set_rate(optimizer, LR)
        idx = order[(i % n_batches) * batch : (i % n_batches + 1) * batch]
        return steps(idx, i, stop)

    sync(args.device)
    tick = time.perf_counter()
    first = graphed.WARMUP + 1  # the warm-up steps and the capture with its first replay
    for i in range(first):
        out = run(i)
    sync(args.device)
    first_s = time.perf_counter() - tick
    done, timed, tick = first, 0, time.perf_counter()
    while timed < MIN_STEPS or time.perf_counter() - tick < args.min_time:
        out = run(done)
        done, timed = done + 1, timed + 1
        if timed % 5 == 0:
            sync(args.device)
    sync(args.device)
    seconds = time.perf_counter() - tick
    loss = float(out.sums[0]) / batch
    return {"mode": mode, "batch": batch, "first_steps_s": round(first_s, 2), "ms_per_step": round(1000 * seconds / timed, 2),
            "images_per_s": round(timed * batch / seconds, 1), "steps_timed": timed, "loss": round(loss, 2),
            "captured": steps.capture and bool(steps.graphs), "why": steps.reason}  # fmt: skip


def speed_table(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    plan = [(m, b) for b in args.batches for m in args.modes]
    plan.sort(key=lambda mb: (args.batches.index(mb[1]) > 0, args.modes.index(mb[0])))  # batch 64 first, then the rest
    for mode, batch in plan:
        if time.perf_counter() - start > args.budget_s:
            print(f"{mode:18} batch {batch:5}: not measured, over --budget-s {args.budget_s}", flush=True)
            continue
        try:
            row = measure(args, mode, batch)
        except torch.OutOfMemoryError as exc:
            print(f"{mode:18} batch {batch:5}: out of memory ({str(exc).splitlines()[0][:120]})", flush=True)
            torch.cuda.empty_cache()
            continue
        rows.append(row)
        print(f"{mode:18} batch {batch:5}: {row['ms_per_step']:8.1f} ms/step {row['images_per_s']:9.0f} img/s "
              f"epoch {60000 / row['images_per_s']:7.1f} s  first steps {row['first_steps_s']:6.1f} s  "
              f"loss {row['loss']:.1f}  {'captured' if row['captured'] else 'not captured: ' + row['why']}", flush=True)  # fmt: skip
        if args.results:
            results.append(results.record(
                device=results.device_name(args.device), command=f"benchmarks/graph_speed.py --modes {mode} --batches {batch}",
                model=f"paper-mnist, T={args.glimpses}", batch=batch, precision="bf16" if MODES[mode][1] == "bf16" else "float32", compile=MODES[mode][0],
                cuda_graph="on" if row["captured"] else "off", images_per_s=row["images_per_s"], ms_per_step=row["ms_per_step"],
                note=f"graph_speed.py {mode}: first steps {row['first_steps_s']} s, {row['steps_timed']} steps timed"), args.results)  # fmt: skip
    return rows


def check(args: argparse.Namespace) -> bool:
    """Six steps eager and captured on the same seed, a NaN gradient forced at step 4: True if they agree."""
    runs = {}
    for mode in ("eager", "captured"):
        steps, family, model, optimizer = build(args, mode, CHECK_BATCH)
        poison = torch.ones((), device=args.device)
        next(model.parameters()).register_hook(lambda g, p=poison: g * p)
        stop = torch.zeros((), device=args.device)
        losses, weights = [], []
        for i in range(6):
            set_rate(optimizer, LR)
            poison.fill_(math.nan if i == 4 else 1.0)
            out = steps(torch.arange(i * CHECK_BATCH, (i + 1) * CHECK_BATCH, device=family.index_device()), i, stop)
            losses.append(out.sums.double().cpu())
            weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]).double().cpu())
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).double().cpu()
        runs[mode] = (losses, weights, grads, steps.capture and bool(steps.graphs))
    (le, we, ge, _), (lc, wc, gc, captured) = runs["eager"], runs["captured"]
    ok = True
    for i in range(6):
        finite = bool(torch.isfinite(le[i]).all())
        rel = float(((le[i] - lc[i]).abs() / le[i].abs().clamp_min(1e-12)).nan_to_num(0.0).max())
        dw = float((we[i] - wc[i]).abs().max() / we[i].abs().max())
        skipped = bool(torch.equal(we[i], we[i - 1])) if i else False
        skipped_c = bool(torch.equal(wc[i], wc[i - 1])) if i else False
        agree = finite == bool(torch.isfinite(lc[i]).all()) and skipped == skipped_c and (not finite or rel < 1e-4) and dw < 1e-4
        ok = ok and agree
        print(f"step {i}: sums rel diff {rel:.2e}, weights rel diff {dw:.2e}, finite {finite}, skipped eager {skipped} "
              f"captured {skipped_c}: {'ok' if agree else 'DIFFERENT'}")  # fmt: skip
    dg = float((ge - gc).abs().max() / ge.abs().max().clamp_min(1e-30))
    print(f"last step's gradients: max rel diff {dg:.2e}; the captured side {'was' if captured else 'was NOT'} a CUDA graph")
    return ok and dg < 1e-4 and (captured or not args.device.startswith("cuda"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--glimpses", type=int, default=64)
    parser.add_argument("--batches", default="64,256,1024,4096")
    parser.add_argument("--modes", default="eager,compiled,captured,captured-bf16")
    parser.add_argument("--min-time", type=float, default=3.0, help="seconds of timed steps per setting")
    parser.add_argument("--budget-s", type=float, default=150.0, help="start no setting after this many seconds")
    parser.add_argument("--results", type=Path, help="append a results.jsonl line per setting to this file")
    parser.add_argument("--json", type=Path, help="write the table's rows as JSON")
    parser.add_argument("--check", action="store_true", help="compare the captured step with the eager one, then exit")
    args = parser.parse_args()
    args.batches = [int(b) for b in args.batches.split(",")]
    args.modes = args.modes.split(",")
    torch.set_num_threads(args.threads)
    if args.check:
        sys.exit(0 if check(args) else 1)
    rows = speed_table(args)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
