#!/usr/bin/env bash
# paper-mnist training speed on one GPU, one setting at a time (nothing else on the machine):
# eager, compiled, CUDA graphs (reduce-overhead) at batch 64, and CUDA graphs with bf16 at batch
# 256 and 1024. Each run is stopped by SIGTERM after RUN_S seconds at the latest; its steady
# rate comes from metrics.jsonl (steps between the first and last logged step over their wall
# time, so compiling is left out; a metrics line comes every 50 steps, so a setting slower than
# about 2 steps a second gives no rate in 45 s). Then the classifier, execution and device tests.
#
#   bash experiments/gpu_speed.sh OUT_DIR
#   DEVICE=cpu STEPS_SCALE=0.02 RUN_S=40 DATA=../shared/data/mnist PYTHON=.venv/bin/python PATH=.venv/bin:$PATH \
#       bash experiments/gpu_speed.sh /tmp/speed    # dry run on the CPU
set -uo pipefail
out=${1:?usage: gpu_speed.sh OUT_DIR}
device=${DEVICE:-cuda}
data=${DATA:-.gpu/mnist}
run_s=${RUN_S:-45}
scale=${STEPS_SCALE:-1}
python=${PYTHON:-python3}
work=${WORK:-/tmp/speed-runs}  # runs and checkpoints stay here; logs and the table go to OUT_DIR
rm -rf "$work"  # a rerun on a warm machine must not read the last run's files
mkdir -p "$out" "$work"
out=$(cd "$out" && pwd)  # the archive is written from inside $work
if ! "$python" -c "import drawcli_filterbank" 2>/dev/null; then
    "$python" -m pip install -q --no-deps --no-build-isolation --no-index -e . >"$out/install.log" 2>&1 || exit 1
fi
nvidia-smi -L 2>/dev/null

for job in eager:64:off:off:300 compiled:64:on:off:400 graphs:64:graphs:off:600 graphs-bf16:256:graphs:bf16:300 \
    graphs-bf16:1024:graphs:bf16:150; do
    IFS=: read -r name batch compile amp steps <<<"$job"
    steps=$("$python" -c "print(max(3, int($steps * $scale)))")
    mode=(--compile "$compile")
    [ "$compile" = graphs ] && mode=(--compile-mode reduce-overhead)
    run="$work/$name-b$batch"
    timeout -s TERM "$run_s" drawcli train --preset paper-mnist --data-dir "$data" --device "$device" --threads 4 \
        --batch-size "$batch" --amp "$amp" "${mode[@]}" --steps "$steps" --sample-every 0 --quiet --out "$run" >"$run.log" 2>&1
    echo "exit $?" >>"$run.log"
    "$python" - "$run/metrics.jsonl" "$name" "$batch" <<'PY'
import json, pathlib, sys
log, name, batch = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
compile_s = sum(r["seconds"] for r in rows if r["event"] == "compile")
train = [r for r in rows if r["event"] == "train"]
if len(train) < 2:
    print(f"{name:12} batch {batch:5}: fewer than 2 logged steps"); sys.exit()
steps, seconds = train[-1]["step"] - train[0]["step"], train[-1]["wall_time_s"] - train[0]["wall_time_s"]
rate = steps * batch / seconds
print(f"{name:12} batch {batch:5}: {1000 * seconds / steps:7.1f} ms/step, {rate:8.0f} img/s, MNIST epoch {60000 / rate:6.1f} s; "
      f"first step {compile_s:.1f} s; steps {train[0]['step']}-{train[-1]['step']}, loss {train[-1]['loss']:.1f}")
PY
done 2>&1 | tee "$out/speed.txt"

timeout "${TEST_S:-240}" "$python" -m pytest -q -p no:cacheprovider -n 8 tests/test_classifier.py tests/test_execution.py tests/test_devices.py \
    >"$out/tests.log" 2>&1
tail -n 3 "$out/tests.log"
(cd "$work" && tar czf "$out/logs.tar.gz" -- *.log */metrics.jsonl 2>/dev/null)
