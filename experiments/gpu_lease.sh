#!/usr/bin/env bash
# One GPU lease, used whole: the CUDA tests and four trainings side by side on one GPU, each
# stopped by SIGTERM after TRAIN_S seconds (drawcli saves a resumable checkpoint on SIGTERM),
# then the bounds, the two-digit GIFs and everything packed into at most 8 files in OUT_DIR.
#   paper-mnist      the paper's MNIST model, batch 64 (the long run of the GPU issue)
#   two-digit        paper-two-digit-mnist (issue 14's 60 x 60 model)
#   clut-h256        paper-cluttered-mnist with --glimpse-hidden 256 (capacity probe, seed 0)
#   clut-r512        paper-cluttered-mnist with --rnn-size 512 (capacity probe, seed 0)
# The classifier probes keep the 50-epoch cosine schedule of the runs they compare with, so an
# unfinished probe's epoch k compares with those CPU runs' epoch k (docs/reproducing.md).
# MNIST's idx .gz files must be in $DATA, inside the checkout (carry them).
#
#   bash experiments/gpu_lease.sh OUT_DIR
#   DEVICE=cpu DRY=1 TRAIN_S=60 DATA=../shared/data/mnist PYTHON=.venv/bin/python PATH=.venv/bin:$PATH \
#       bash experiments/gpu_lease.sh /tmp/lease    # dry run on the CPU, a few steps each
set -uo pipefail
out=${1:?usage: gpu_lease.sh OUT_DIR}
device=${DEVICE:-cuda}
data=${DATA:-.gpu/mnist}
train_s=${TRAIN_S:-390}
python=${PYTHON:-python3}
threads=${THREADS:-3}
work=${WORK:-/tmp/lease-runs}
dry=${DRY:-}
rm -rf "$work"  # a rerun on a warm machine must not read the last run's files
mkdir -p "$out" "$work"
out=$(cd "$out" && pwd)  # the archives are written from inside $work
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start )) s] $*"; }

if ! "$python" -c "import drawcli_filterbank" 2>/dev/null; then
    "$python" -m pip install -q --no-deps --no-build-isolation --no-index -e . >"$work/install.log" 2>&1 \
        || "$python" -m pip install -q --no-deps --no-build-isolation --no-index . >>"$work/install.log" 2>&1 \
        || { cat "$work/install.log"; exit 1; }
fi
{ nvidia-smi -L 2>/dev/null; "$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; nproc; } \
    | tee "$work/machine.txt"

limit=()   # a dry run stops each training after a few steps, an evaluation after a few images
evlimit=(--limit 1000)
[ -n "$dry" ] && limit=(--steps 3) && evlimit=(--limit 20)
common=(--data-dir "$data" --device "$device" --threads "$threads" --sample-every 0 --quiet "${limit[@]}")

train() {  # name, then train options
    local name=$1; shift
    timeout -s TERM "$train_s" drawcli train "${common[@]}" --out "$work/$name" "$@" >"$work/$name.log" 2>&1
    echo "exit $?" >>"$work/$name.log"
}
stamp "trainings start"
train paper-mnist --preset paper-mnist --epochs 100 &  # the time limit decides
train two-digit --preset paper-two-digit-mnist --epochs 100 &
train clut-h256 --preset paper-cluttered-mnist --epochs 50 --glimpse-hidden 256 &
train clut-r512 --preset paper-cluttered-mnist --epochs 50 --rnn-size 512 &

# The CUDA tests first, then the whole suite on 4 workers (device auto takes the GPU), niced.
"$python" -m pytest -q -rs -p no:cacheprovider tests/test_devices.py >"$work/tests-devices.log" 2>&1
stamp "device tests: $(tail -n 1 "$work/tests-devices.log")"
[ -z "$dry" ] && OMP_NUM_THREADS=1 timeout "$((train_s - 30))" nice -n 10 "$python" -m pytest -q -p no:cacheprovider -n 4 tests \
    >"$work/tests-all.log" 2>&1
stamp "whole suite: $(tail -n 1 "$work/tests-all.log")"
wait
stamp "trainings done"

evaluate() {  # name, label, then evaluate options
    local name=$1 label=$2; shift 2
    timeout 100 drawcli evaluate "$work/$name" --device "$device" --threads "$threads" --json "$@" \
        >"$work/$name-eval-$label.json" 2>"$work/$name-eval-$label.err"
}
evaluate paper-mnist bound --samples 0 &
evaluate paper-mnist iw100 --samples 100 "${evlimit[@]}" &
evaluate two-digit bound --samples 0 &
evaluate two-digit iw100 --samples 100 "${evlimit[@]}" &
evaluate clut-h256 error &
evaluate clut-r512 error &
timeout 100 drawcli sample "$work/two-digit" --gif "$work/two-digit-samples.gif" --n 16 --device "$device" >"$work/gif1.log" 2>&1 &
timeout 100 drawcli reconstruct "$work/two-digit" --gif "$work/two-digit-reconstruction.gif" --n 8 --device "$device" \
    >"$work/gif2.log" 2>&1 &
timeout 100 drawcli sample "$work/paper-mnist" --gif "$work/paper-mnist-samples.gif" --n 16 --device "$device" >"$work/gif3.log" 2>&1 &
wait
stamp "evaluations done"

# Back: at most 8 files. Logs, metrics and evaluations in one archive; each checkpoint and GIF apart.
(cd "$work" && tar czf "$out/logs.tar.gz" --exclude='*.safetensors' --exclude='*.gif' -- *.log *.txt *.json *.err */metrics.jsonl */run.json 2>/dev/null)
cp "$work"/*.gif "$out/" 2>/dev/null
for name in paper-mnist two-digit clut-h256 clut-r512; do
    [ -f "$work/$name/checkpoint.safetensors" ] && cp "$work/$name/checkpoint.safetensors" "$out/$name.safetensors"
done
ls -la "$out"
"$python" - "$work" <<'PY'
import json, pathlib, sys
work = pathlib.Path(sys.argv[1])
for run in ["paper-mnist", "two-digit", "clut-h256", "clut-r512"]:
    log = work / run / "metrics.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    epochs = [r for r in rows if r.get("event") == "epoch"]
    print(run, f"{len(epochs)} epochs;", " ".join(
        f"{r['epochs']:.0f}:{r.get('test_bound', r.get('test_error', float('nan'))):.2f}@{r['wall_time_s']:.0f}s" for r in epochs))
    for ev in sorted(work.glob(f"{run}-eval-*.json")):
        print("  ", ev.name, ev.read_text()[:300].replace("\n", " "))
PY
