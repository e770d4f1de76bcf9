# Sourced by the GPU lease scripts: OUT_DIR from $1 and the settings from the environment, the candidate
# recipe, a fresh work folder, the summary's stamp and log, drawcli installed, and the device's line.
out=${1:?usage: $(basename "$0") OUT_DIR}
device=${DEVICE:-cuda}
data=${DATA:-.gpu/mnist}   # MNIST's idx .gz files, inside the checkout (carry them)
python=${PYTHON:-python3}
threads=${THREADS:-4}
work=${WORK:-/tmp/$(basename "$0" .sh)-runs}
# The candidate GPU recipe from the CPU comparison at small scale (docs/performance.md): batch 256 at the
# square-root rule's rate, 2e-3, cosine over the run. Not a preset until a GPU has measured it.
batch=${RECIPE_BATCH:-256} lr=${RECIPE_LR:-2e-3}
rm -rf "$work"  # a rerun on a warm machine must not read the last run's files
mkdir -p "$out" "$work"
rm -f "$out/results.jsonl" "$out/summary.txt"  # a rerun into the same folder starts its record afresh
out=$(cd "$out" && pwd)
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }
stamp() { echo "[$(elapsed) s] $*" | tee -a "$out/summary.txt"; }
log() { tee -a "$out/summary.txt"; }
if ! "$python" -c "import drawcli_filterbank" 2>/dev/null; then
    "$python" -m pip install -q --no-deps --no-build-isolation --no-index -e . >"$work/install.log" 2>&1 \
        || { cat "$work/install.log"; exit 1; }
fi
{ nvidia-smi -L 2>/dev/null; "$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } | log
