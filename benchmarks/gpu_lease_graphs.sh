#!/usr/bin/env bash
# One GPU lease for issue 38 (the whole training step as one CUDA graph), in one call of about 10 minutes.
#   stage 1 (about 3 minutes): the CUDA tests (tests/test_graphed.py, tests/test_devices.py), the
#     captured step against the eager one at paper-mnist batch 64 (benchmarks/graph_speed.py --check),
#     and the speed table (eager, compiled, captured, captured with the glimpse compiled inside, and
#     captured + bf16, at batch 64, 256, 1024 and 4096; batch 64 first, then as --budget-s allows);
#   stage 2 (the rest): one long paper-mnist run at the candidate GPU recipe (RECIPE_BATCH, RECIPE_LR,
#     cosine), captured, with the glimpse compiled inside only if stage 1 measured that faster; its
#     epochs chosen from stage 1's rate to fit TRAIN_S (a checkpoint every epoch; SIGTERM at TRAIN_S
#     saves too), then `evaluate` (the bound on the whole test set, and the IW bound with K = 100),
#     the sample and reconstruction GIFs, and a results.jsonl line for every measurement.
# What comes back (8 files at most): summary.txt, results.jsonl (lines to append to
# benchmarks/results.jsonl), checkpoint.safetensors, samples.gif, reconstruction.gif, logs.tar.gz.
# MNIST's idx .gz files must be in $DATA, inside the checkout (carry them).
#
#   bash benchmarks/gpu_lease_graphs.sh "$OUT"
#   DEVICE=cpu DATA=../shared/data/mnist PYTHON=.venv/bin/python PATH=.venv/bin:$PATH \
#       bash benchmarks/gpu_lease_graphs.sh /tmp/lease-graphs    # the dry run on the CPU, scaled down
set -uo pipefail
source "$(dirname "$0")/lease_setup.sh"
amp=${AMP:-off}
train_s=${TRAIN_S:-330}       # the long run's wall-clock limit
speed_s=${SPEED_S:-95}        # the speed table starts no setting after this
glimpses=64 batches=64,256,1024,4096 min_time=3 test_s=100 eval_s=90 limit=() steps=()
if [ "$device" = cpu ]; then  # the dry run: the same steps, scaled to a few minutes of one CPU
    glimpses=4 batches=64,256 min_time=1 speed_s=${SPEED_S:-40} train_s=${TRAIN_S:-60} test_s=240 eval_s=60
    limit=(--limit 500) steps=(--glimpses 4 --rnn-size 64 --z-size 10)
fi
# --- stage 1: correctness, then speed ---
timeout "$test_s" "$python" -m pytest -q -rs -p no:cacheprovider tests/test_graphed.py tests/test_devices.py >"$work/tests.log" 2>&1
stamp "CUDA tests: $(tail -n 1 "$work/tests.log")"
timeout 90 "$python" benchmarks/graph_speed.py --data-dir "$data" --device "$device" --threads "$threads" --glimpses "$glimpses" \
    --check >"$work/check.log" 2>&1
echo "exit $?" >>"$work/check.log"
stamp "graph against eager (paper-mnist, batch 64, NaN gradient forced at step 4):"; log <"$work/check.log"
timeout $((speed_s + 120)) "$python" benchmarks/graph_speed.py --data-dir "$data" --device "$device" --threads "$threads" \
    --glimpses "$glimpses" --batches "$batches" --modes eager,captured,compiled,captured-compiled,captured-bf16 \
    --min-time "$min_time" --budget-s "$speed_s" --results "$out/results.jsonl" --json "$work/speed.json" 2>&1 \
    | grep -v "^  warning: --cuda-graph on: the CPU" >"$work/speed.txt"
stamp "speed table:"; log <"$work/speed.txt"

# --- stage 2: the long run at the candidate recipe ---
read -r compile epochs <<<"$("$python" - "$work/speed.json" "$batch" "$train_s" "$glimpses" <<'PY'
import json, pathlib, sys
path, batch, budget, glimpses = pathlib.Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
rows = json.loads(path.read_text()) if path.exists() else []
rate = {r["mode"]: r["images_per_s"] for r in rows if r["batch"] == batch}
compile = "on" if rate.get("captured-compiled", 0) > rate.get("captured", 0) * 1.05 else "off"
best = max(rate.get("captured-compiled" if compile == "on" else "captured", 0), 1.0)
# An epoch: 60,000 images at the measured rate, plus the held-out bound on 10,000 test images
# (forward only, about a sixth of a training image's work) and a save; 10% margin for capture and compiling.
epoch_s = (60000 + 10000 / 6) / best * 1.1 + 1.0
print(compile, max(1, min(300, int(budget * 0.9 / epoch_s))))
PY
)"
run=$work/paper-mnist
command="drawcli train --preset paper-mnist --batch-size $batch --lr $lr --lr-schedule cosine --epochs $epochs --cuda-graph on --compile $compile --amp $amp"
stamp "long run: $command (SIGTERM after $train_s s)"
timeout -s TERM "$train_s" drawcli train --preset paper-mnist "${steps[@]}" --data-dir "$data" --device "$device" \
    --threads "$threads" --batch-size "$batch" --lr "$lr" --lr-schedule cosine --epochs "$epochs" --cuda-graph on \
    --compile "$compile" --amp "$amp" --sample-every 0 --quiet --out "$run" >"$work/train.log" 2>&1
echo "exit $?" >>"$work/train.log"
grep -E "^(training|warning|epoch|done|interrupted|exit)" "$work/train.log" | tail -n 8 | log
stamp "long run done"

timeout "$eval_s" drawcli evaluate "$run" --device "$device" --threads "$threads" --samples 0 --json "${limit[@]}" \
    >"$work/eval-bound.json" 2>"$work/eval-bound.err"
timeout "$eval_s" drawcli evaluate "$run" --device "$device" --threads "$threads" --samples 100 --json "${limit[@]}" \
    >"$work/eval-iw100.json" 2>"$work/eval-iw100.err"
timeout 60 drawcli sample "$run" --gif "$out/samples.gif" --n 64 --device "$device" >"$work/gifs.log" 2>&1
timeout 60 drawcli reconstruct "$run" --gif "$out/reconstruction.gif" --n 16 --device "$device" >>"$work/gifs.log" 2>&1
"$python" - "$work/eval-bound.json" "$work/eval-iw100.json" <<'PY' | log
import json, pathlib, sys
for p in map(pathlib.Path, sys.argv[1:]):
    try:
        r = json.loads(p.read_text())
        print(f"{p.name}: bound {r['bound']:.2f}" + (f", IW bound {r['iw_bound']:.2f} (K = {r['samples']})" if r.get("samples") else "")
              + f", {r['images']} images, {r['seconds']} s")
    except (OSError, ValueError, KeyError) as exc:
        print(f"{p.name}: no result ({exc})")
PY
"$python" benchmarks/results.py run "$run" --command "$command" --eval "$work/eval-bound.json" --iw "$work/eval-iw100.json" \
    --to "$out/results.jsonl" >/dev/null 2>"$work/results.err" || cat "$work/results.err" | log
stamp "evaluations and GIFs done"

cp "$run/checkpoint.safetensors" "$out/" 2>/dev/null
(cd "$work" && tar czf "$out/logs.tar.gz" -- *.log *.json *.txt *.err paper-mnist/metrics.jsonl paper-mnist/run.json 2>/dev/null)
stamp "wall time $(( $(date +%s) - start )) s; files in $out: $(ls "$out" | tr '\n' ' ')"
