#!/usr/bin/env bash
# Issue 42: spatial-transformer attention (reader and writer `stn`) against the filterbank, on this CPU.
# Runs every job of the list below, two at a time with one thread each, into $OUT/NAME, then appends one
# line per finished run to OUT/results.jsonl (benchmarks/results.py's form; copy the lines worth keeping
# into benchmarks/results.jsonl) and prints a summary.
#   sweep-*  STN at two other learning rates: 1 epoch of the smaller generation setting, seed 0
#   gen-*    MNIST generation at the paper's setting (T 64, LSTM 256, z 100, read 2, write 5), 1 epoch
#   small-*  the smaller setting (T 16, LSTM 128, z 32, read 2, write 5) for 10 epochs: the bound after
#            epochs 1 and 10 (metrics.jsonl holds every epoch's)
#   clut-*   cluttered MNIST, the paper-cluttered-mnist recipe (8 glimpses of 12 x 12, cosine) over EPOCHS
#   rot-*    stn turning its windows (rotation=true), 1 epoch of the smaller setting
# Both families train at the same batch (64) and learning rate (the preset's), with --compile off.
#
#   bash experiments/stn_compare.sh runs/stn [JOB_PATTERN]        # e.g. 'gen-' for a subset
#   EXTRA="--steps 3 --glimpses 2" DATA=DIR bash experiments/stn_compare.sh /tmp/dry    # a dry run (--steps wins)
set -uo pipefail
out=${1:?usage: stn_compare.sh OUT_DIR [JOB_PATTERN]}; pattern=${2:-.}
data=${DATA:-../shared/data/mnist} epochs=${EPOCHS:-5} drawcli=${DRAWCLI:-.venv/bin/drawcli} python=${PYTHON:-.venv/bin/python}
mkdir -p "$out"
common="--threads 1 --device cpu --compile off --sample-every 0 --quiet --data-dir $data ${EXTRA:-}"
small="--preset paper-mnist --glimpses 16 --rnn-size 128 --z-size 32"
jobs=(
  "sweep-stn-lr5e-4|$small --reader stn --writer stn --epochs 1 --seed 0 --lr 5e-4"
  "sweep-stn-lr2e-3|$small --reader stn --writer stn --epochs 1 --seed 0 --lr 2e-3"
)
rotation="--reader stn --writer stn --reader-option rotation=true --writer-option rotation=true"
for kind in gen clut small rot; do
  for seed in 0 1; do
    for family in filterbank stn; do
      case $kind in
        gen) jobs+=("gen-$family-s$seed|--preset paper-mnist --reader $family --writer $family --epochs 1 --seed $seed") ;;
        clut) jobs+=("clut-$family-s$seed|--preset paper-cluttered-mnist --reader $family --epochs $epochs --seed $seed") ;;
        small) jobs+=("small-$family-s$seed|$small --reader $family --writer $family --epochs 10 --seed $seed") ;;
        rot) [ "$family" = stn ] && jobs+=("rot-stn-s$seed|$small $rotation --epochs 1 --seed $seed") ;;
      esac
    done
  done
done

run_job() {  # NAME|ARGS: train, then record the run
  local name=${1%%|*} args=${1#*|}
  [ -f "$out/$name/checkpoint.safetensors" ] && [ -f "$out/$name.done" ] && return 0
  local start=$SECONDS
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=1 $drawcli train $args $common --out "$out/$name" >"$out/$name.log" 2>&1
  echo "$name: exit $? after $((SECONDS - start)) s" | tee -a "$out/summary.txt"
  "$python" benchmarks/results.py run "$out/$name" --command "drawcli train $args --threads 1 --compile off ${EXTRA:-}" \
    --to "$out/results.jsonl" >/dev/null 2>>"$out/results.err" && touch "$out/$name.done"
}
export -f run_job
export out common drawcli python

printf '%s\n' "${jobs[@]}" | grep -E "^[^|]*($pattern)" | xargs -P 2 -I{} bash -c 'run_job "$@"' _ {}
"$python" - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
for run in sorted(p for p in out.iterdir() if (p / "metrics.jsonl").exists()):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    epochs = [r for r in rows if r.get("event") == "epoch"]
    figures = " ".join(f"e{r['epochs']}:{r.get('test_bound', r.get('test_error'))}" for r in epochs)
    print(f"{run.name:24s} {figures}")
PY
