#!/usr/bin/env bash
# Every GPU check of a device session in one call (about 8 minutes on one H100, start-up not counted):
#   device run: command="bash benchmarks/gpu_check.sh", timeout_s=590
# The tests marked `gpu`, then the data and overhead suites on CUDA. Logs and JSON go to $OUT (what the
# device tool brings back). It runs lamina from src/ with the machine's own torch, torchvision and timm.
# A dry run of the same steps on the CPU, tiny sizes: LAMINA_CHECK_DEVICE=cpu LAMINA_CHECK_QUICK=1 bash ...
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
out="${OUT:-/tmp/lamina-gpu-check}"
mkdir -p "$out"
py="${PYTHON:-python3}"
device="${LAMINA_CHECK_DEVICE:-cuda}"
quick=()
if [ -n "${LAMINA_CHECK_QUICK:-}" ]; then quick=(--quick); fi
step() { echo "== $1 ($(date +%T))"; }

# fastai is not on the GPU machines' image: wheels carried in .whl/ (benchmarks/README.md) add its column
if ls .whl/*.whl >/dev/null 2>&1; then
  $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/lamina-site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/lamina-site"
fi

step versions
$py -c "import torch, torchvision, timm; print('torch', torch.__version__, 'torchvision', \
torchvision.__version__, 'timm', timm.__version__); print('device', torch.cuda.get_device_name() \
if torch.cuda.is_available() else 'no CUDA'); print('cpus', __import__('os').cpu_count())" 2>&1 | tee "$out/versions.txt"

step "tests that need CUDA"
timeout 150 $py -m pytest -q -m gpu -p no:cacheprovider tests 2>&1 | tee "$out/tests.log" | tail -25

step "data suite: JPEG folder -> augmented batches on the device, 15 workers"
timeout 180 $py -m benchmarks.run --suite data --device "$device" --workers 15 "${quick[@]}" \
  --out "$out/data.json" 2>&1 | tee "$out/data.log" | tail -20

step "overhead, small steps (resnet18 32 px, batch 512): every variant, compile modes and auto"
timeout 200 $py -m benchmarks.run --suite overhead --device "$device" --configs small --quick \
  ${LAMINA_CHECK_QUICK:+--all-variants} --out "$out/overhead-small.json" 2>&1 | tee "$out/overhead-small.log" | tail -25

step "overhead, compute-bound (resnet50 224 px, batch 128): eager variants and auto"
timeout 150 $py -m benchmarks.run --suite overhead --device "$device" --configs large --quick \
  --variants fp32,bf16-cl,bf16-cl-auto ${LAMINA_CHECK_QUICK:+--all-variants} \
  --out "$out/overhead-large.json" 2>&1 | tee "$out/overhead-large.log" | tail -20
step done
