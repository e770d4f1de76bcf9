#!/usr/bin/env bash
# The GPU half of the speed work in one prepared run: the CUDA tests, the benchmark table on the
# GPU (eager and --compile), and MNIST epoch times and test bounds at several batch sizes.
# Meant for a lent GPU machine that has PyTorch but no network; drawcli is installed there
# without dependencies. MNIST's idx .gz files must be in $DATA (copy them into the checkout and
# carry them). Everything lands in OUT_DIR (use a fresh one); the last lines of each log are
# printed. Not yet run on a GPU: the run limits bound the training part to about 6 minutes.
#
#   bash benchmarks/cuda_check.sh OUT_DIR
#   DEVICE=cpu BATCHES=256 STEPS=20 QUALITY_SEEDS=0 BENCH_ARGS="--quick --only attention" DATA=../shared/data/mnist \
#       PYTHON=.venv/bin/python PATH=.venv/bin:$PATH bash benchmarks/cuda_check.sh /tmp/check   # dry run
set -uo pipefail
out=${1:?usage: cuda_check.sh OUT_DIR}
device=${DEVICE:-cuda}
data=${DATA:-data/mnist}
epochs=${EPOCHS:-2}
run_limit=${RUN_LIMIT:-90}  # seconds per training run: SIGTERM then saves a resumable checkpoint
batches=${BATCHES:-64 256 1024}
graph_batches=${GRAPH_BATCHES:-256}  # batch sizes also trained with --compile-mode reduce-overhead (CUDA graphs)
steps=${STEPS:-}  # set to stop each training run after this many steps (dry runs)
bench_args=${BENCH_ARGS:-}  # extra bench.py options, e.g. --quick for dry runs
python=${PYTHON:-python3}
mkdir -p "$out"

if ! "$python" -c "import drawcli" 2>/dev/null; then
    "$python" -m pip install -q --no-deps --no-build-isolation --no-index -e . || exit 1
fi
{ nvidia-smi -L 2>/dev/null; "$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } \
    | tee "$out/machine.txt"

# CUDA tests (they skip without a GPU): the CUDA forward against the CPU, training +- bf16, resume,
# and the count of host synchronisations in the hot loop.
"$python" -m pytest -q -rs tests/test_devices.py 2>&1 | tee "$out/tests.log" | tail -n 5

# The benchmark table, with torch.compile measured apart.
"$python" benchmarks/bench.py --device "$device" --compile --bf16 --plain --no-memory --json "$out/bench.json" \
    $bench_args >"$out/bench.log" 2>&1
tail -n 40 "$out/bench.log"

# The bf16 path's gradients against float32's on one fixed batch, paper-mnist at initialisation.
"$python" benchmarks/bf16_gradients.py --device "$device" --data-dir "$data" >"$out/bf16-gradients.log" 2>&1
head -n 4 "$out/bf16-gradients.log"
"$python" benchmarks/bench.py --device "$device" --compile --compile-mode reduce-overhead --only attention --plain \
    --no-memory --json "$out/bench-graphs.json" $bench_args >"$out/bench-graphs.log" 2>&1
tail -n 5 "$out/bench-graphs.log"

# Epoch time and test bound against batch size (paper-mnist, bf16 LSTM matmuls; eager, then CUDA graphs). lr stays 1e-3.
for job in $(for b in $batches; do echo "eager:$b"; done; for b in $graph_batches; do echo "graphs:$b"; done); do
    mode=${job%%:*} batch=${job#*:}
    run="$out/paper-mnist-$mode-b$batch"
    limit=(--epochs "$epochs")
    [ -n "$steps" ] && limit=(--steps "$steps")
    extra=(--compile off)
    [ "$mode" = graphs ] && extra=(--compile-mode reduce-overhead)
    timeout -s TERM "$run_limit" drawcli train --preset paper-mnist --data-dir "$data" --device "$device" --batch-size "$batch" --amp bf16 \
        "${limit[@]}" "${extra[@]}" --sample-every 0 --quiet --out "$run" >"$run.log" 2>&1
    echo "$mode, batch $batch: exit $?"
    "$python" - "$run/metrics.jsonl" <<'PY'
import json, pathlib, sys
log = pathlib.Path(sys.argv[1])
rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
for r in rows:
    if r["event"] == "epoch":
        print(f"  epoch {r['epochs']:.2f}: test bound {r['test_bound']:.2f} nats, training time so far {r['wall_time_s']:.1f} s")
train = [r for r in rows if r["event"] == "train"]
if train:
    print(f"  last logged step {train[-1]['step']} at {train[-1]['wall_time_s']:.1f} s of training")
if not rows:
    print("  nothing logged (no epoch finished, fewer steps than the metrics interval)")
PY
done

# Opt in (QUALITY_SEEDS="0 1 2"): bf16 against float32 on one paper-mnist epoch per seed, paired
# by seed (the bf16 quality check: the mean gap should be under 1.5 nats). About 12 runs' worth
# of the run limit; leave it out of a first, short call.
for seed in ${QUALITY_SEEDS:-}; do
    for amp in off bf16; do
        run="$out/quality-s$seed-$amp"
        limit=(--epochs 1)
        [ -n "$steps" ] && limit=(--steps "$steps")
        timeout -s TERM "$run_limit" drawcli train --preset paper-mnist --data-dir "$data" --device "$device" --amp "$amp" \
            --seed "$seed" "${limit[@]}" --sample-every 0 --quiet --out "$run" >"$run.log" 2>&1
        echo "seed $seed, amp $amp: exit $?; $(grep -o 'test bound [0-9.]* nats' "$run.log" | tail -n 1)"
    done
done
