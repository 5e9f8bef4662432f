#!/usr/bin/env bash
# Every GPU check of rgsym, for one call on a lent device machine (see /work/.library/device):
#   bash benchmarks/device_check.sh [throughput] [overhead] [breakdown] [highest] [precision] [tests]
# (no argument: all six, whose timeouts add up to 12 minutes, more than one 10-minute
# call: pick sections to fit the call and the lease).
#   throughput  sweep_throughput.py at S = 1..8192 against the peers (torch on the GPU)
#   overhead    sweep_overhead.py at S = 8192: the guard's and the evaluation's share
#   breakdown   step_breakdown.py at S = 8192: the bare step's ablations and XLA op times
#   highest     the sweep at matmul_precision='highest' (no TF32)
#   precision   matmul_precision.py: exact maps learned under TF32 and under 'highest'
#   tests       tests/test_train.py with JAX on the GPU (float64)
#   study       the quick study on the GPU, then claim 1's main grid with 1024 seeds a variant
# Needs the jraph and ml_collections wheels in .whl/ (carried); writes logs and JSON to $OUT.
set -u -o pipefail  # a section fails with its command, not with its tee
OUT=${OUT:-/tmp/rgsym_device}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
# JAX and torch share the process in the throughput benchmark: leave torch half the card.
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.45
sections=${*:-throughput overhead breakdown highest precision tests}
quiet() { grep -v "^I1" | tee "$OUT/$1"; }  # drop absl's info lines, keep a copy

{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  nproc; python3 -c "import jax, jaxlib, flax, optax, chex, jraph, ml_collections, torch
print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__,
      'torch', torch.__version__, jax.devices())"; } 2>&1 | tee "$OUT/env.txt"

for s in $sections; do case $s in
throughput) timeout 250 python3 benchmarks/sweep_throughput.py \
    --seeds=1,16,64,256,1024,8192 --ratio_seeds=8192 --torch_vmap_seeds=8192 --repeats=2 \
    --max_seconds=60 --json_out="$OUT/throughput.json" 2>&1 | quiet throughput.log ;;
overhead) timeout 150 python3 benchmarks/sweep_overhead.py --ratio_seeds=8192 --repeats=3 \
    2>&1 | quiet overhead.log ;;
breakdown) timeout 90 python3 benchmarks/step_breakdown.py --ratio_seeds=8192 --repeats=2 \
    --trace 2>&1 | quiet breakdown.log ;;
highest) timeout 70 python3 benchmarks/sweep_throughput.py --seeds=64,8192 --peers=false \
    --repeats=2 --matmul_precision=highest 2>&1 | quiet highest.log ;;
precision) timeout 70 python3 benchmarks/matmul_precision.py --seeds=1024 --steps=4000 \
    2>&1 | quiet precision.log ;;
# The 8-device sharding test needs conftest's 8 host CPU devices: it is left to the CPU.
tests) XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 90 python3 -m pytest -q \
    -p no:cacheprovider tests/test_train.py \
    --deselect tests/test_train.py::test_sweep_sharded_over_8_devices_equals_one_device \
    2>&1 | tail -60 | quiet tests.log ;;
study) timeout 150 python3 experiments/study/run.py --quick --workdir=/tmp/study \
    --results="$OUT/RESULTS_quick_gpu.md" --figures=/tmp/study_figures 2>&1 | quiet study_quick.log
  timeout 270 python3 experiments/study/run.py --gpu --sweeps=competition_mlp \
    --workdir=/tmp/study_gpu 2>&1 | quiet study_gpu.log
  cp /tmp/study_gpu/competition_mlp/summary.txt "$OUT/study_gpu_summary.txt" ;;
*) echo "unknown section '$s'; valid: throughput overhead breakdown highest precision tests study"
   exit 2 ;;
esac || { echo "section $s failed (status $?)"; failed=1; }; done
exit ${failed:-0}
