#!/usr/bin/env bash
# One GPU lease for issue 41 (the paper's other generation results), in one call of about 10 minutes,
# after issue 38's lease (benchmarks/gpu_lease_graphs.sh) has validated the captured step:
#   1. paper-mnist-noattn for NOATTN_S seconds (the paper: 87.40 nats);
#   2. paper-two-digit-mnist for TWO_S seconds (samples in which a person reads two digits);
#   3. with the time left, a second seed of paper-mnist (the attention figure's spread).
# Each run: a 150-step probe measures the captured step's rate, then the run trains from scratch for as
# many steps as fit its budget (cosine over exactly that length), saving every epoch; then its test bound
# and IW bound (K = 100), a results.jsonl line each, and small GIFs (16 samples, every other glimpse).
# What comes back (8 files at most): summary.txt, results.jsonl, noattn-samples.gif,
# two-digit-samples.gif, two-digit-reconstruction.gif, two-digit-final.png, logs.tar.gz.
# MNIST's idx .gz files must be in $DATA, inside the checkout (carry them).
#
#   bash benchmarks/gpu_lease_generation.sh "$OUT"
#   DEVICE=cpu DATA=../shared/data/mnist PYTHON=.venv/bin/python PATH=.venv/bin:$PATH \
#       bash benchmarks/gpu_lease_generation.sh /tmp/lease-generation    # the dry run on the CPU, scaled down
set -uo pipefail
source "$(dirname "$0")/lease_setup.sh"
# Two-digit MNIST needed half the rate at batch 64 (its preset: 5e-4), so half the recipe's here too.
two_lr=${TWO_LR:-1e-3}
noattn_s=${NOATTN_S:-210} two_s=${TWO_S:-250} total_s=${TOTAL_S:-560}
probe=150 eval_s=60 limit=() small=()
if [ "$device" = cpu ]; then  # the dry run: every step, scaled to a few minutes of one CPU
    noattn_s=${NOATTN_S:-25} two_s=${TWO_S:-30} total_s=${TOTAL_S:-170} probe=110 eval_s=40
    limit=(--limit 200) small=(--glimpses 4 --rnn-size 32 --z-size 8)
fi
common=(--data-dir "$data" --device "$device" --threads "$threads" --batch-size "$batch" --cuda-graph on --sample-every 0 --quiet)

rate() {  # steps a second after the first 50 (capture and compiling left out), from a run's metrics.jsonl
    "$python" - "$1" <<'PY'
import json, pathlib, sys
rows = [json.loads(line) for line in pathlib.Path(sys.argv[1]).read_text().splitlines() if line.strip()]
rows = [r for r in rows if r.get("event") == "train" and "wall_time_s" in r]
print(f"{(rows[-1]['step'] - rows[0]['step']) / max(rows[-1]['wall_time_s'] - rows[0]['wall_time_s'], 1e-9):.3f}" if len(rows) > 1 else "0")
PY
}

train() {  # NAME SECONDS PRESET LR SEED: probe, then train for as many steps as fit SECONDS
    local name=$1 budget=$2 preset=$3 rate_lr=$4 seed=$5 run="$work/$1"
    timeout 120 drawcli train --preset "$preset" "${small[@]}" "${common[@]}" --lr "$rate_lr" --seed "$seed" \
        --steps "$probe" --out "$run-probe" >"$work/$name-probe.log" 2>&1
    local per_s steps
    per_s=$(rate "$run-probe/metrics.jsonl" 2>/dev/null || echo 0)
    # 85% of the budget: each epoch's held-out bound and save, and the capture, come on top of the steps.
    steps=$("$python" -c "print(max(100, int($per_s * $budget * 0.85)))")
    stamp "$name: probe $per_s steps/s; training $steps steps ($preset, batch $batch, lr $rate_lr cosine, seed $seed)"
    echo "drawcli train --preset $preset --batch-size $batch --lr $rate_lr --lr-schedule cosine --steps $steps --seed $seed --cuda-graph on" \
        >"$work/$name.command"
    timeout -s TERM $((budget + 30)) drawcli train --preset "$preset" "${small[@]}" "${common[@]}" --lr "$rate_lr" \
        --lr-schedule cosine --seed "$seed" --steps "$steps" --out "$run" >"$work/$name.log" 2>&1
    echo "exit $?" >>"$work/$name.log"
    grep -E "^(warning|done|interrupted|exit)" "$work/$name.log" | tail -n 4 | log
    timeout "$eval_s" drawcli evaluate "$run" --device "$device" --json "${limit[@]}" >"$work/$name-bound.json" 2>/dev/null
    timeout "$eval_s" drawcli evaluate "$run" --device "$device" --samples 100 --json "${limit[@]}" \
        >"$work/$name-iw.json" 2>/dev/null
    "$python" benchmarks/results.py run "$run" --command "$(cat "$work/$name.command")" --eval "$work/$name-bound.json" \
        --iw "$work/$name-iw.json" --to "$out/results.jsonl" >/dev/null 2>>"$work/results.err"
    "$python" -c "
import json, sys
for path in sys.argv[1:]:
    try:
        r = json.load(open(path)); print(f'  {path.rsplit(\"/\", 1)[-1]}: bound {r[\"bound\"]:.2f}' + (f', IW {r[\"iw_bound\"]:.2f} (K = {r[\"samples\"]})' if r.get('samples') else '') + f', {r[\"images\"]} images')
    except (OSError, ValueError, KeyError) as exc:
        print(f'  {path}: no result ({exc})')" "$work/$name-bound.json" "$work/$name-iw.json" | log
}

train noattn "$noattn_s" paper-mnist-noattn "$lr" 0
drawcli sample "$work/noattn" --gif "$out/noattn-samples.gif" --n 16 --scale 2 --device "$device" >>"$work/gifs.log" 2>&1
train two-digit "$two_s" paper-two-digit-mnist "$two_lr" 0
drawcli sample "$work/two-digit" --gif "$out/two-digit-samples.gif" --png "$out/two-digit-final.png" --n 16 --scale 2 \
    --device "$device" >>"$work/gifs.log" 2>&1
drawcli reconstruct "$work/two-digit" --gif "$out/two-digit-reconstruction.gif" --n 8 --scale 2 --device "$device" \
    >>"$work/gifs.log" 2>&1
"$python" benchmarks/shrink_gif.py "$out"/*.gif >>"$work/gifs.log" 2>&1
left=$(( total_s - $(elapsed) ))
if [ "$left" -gt 150 ]; then
    train attention-seed1 $((left - 60)) paper-mnist "$lr" 1
else
    stamp "no time left for a second paper-mnist seed ($left s)"
fi
ls -l "$out"/*.gif "$out"/*.png 2>/dev/null | awk '{print $5, $9}' | log
(cd "$work" && tar czf "$out/logs.tar.gz" -- *.log *.json *.command */metrics.jsonl */run.json 2>/dev/null)
stamp "wall time $(elapsed) s; files in $out: $(ls "$out" | tr '\n' ' ')"
