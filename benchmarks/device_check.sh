#!/usr/bin/env bash
# Every GPU check of rgsym in one call on a lent device machine (see /work/.library/device):
#   throughput at default and highest matmul precision against the torch peers on the GPU,
#   the precision probe of exact-map learning, and the training tests on the GPU.
# Needs the jraph and ml_collections wheels in .whl/ (carried); writes logs and JSON to $OUT.
set -u
OUT=${OUT:-/tmp/rgsym_device}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
# JAX and torch share the process in the throughput benchmark: leave torch half the card.
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.45

{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  nproc; python3 -c "import jax, jaxlib, flax, optax, chex, jraph, ml_collections, torch
print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__,
      'torch', torch.__version__, jax.devices())"; } 2>&1 | tee "$OUT/env.txt"

timeout 250 python3 benchmarks/sweep_throughput.py --seeds=1,16,64,256,1024,8192 \
    --ratio_seeds=8192 --torch_vmap_seeds=8192 --repeats=2 --max_seconds=60 \
    --json_out="$OUT/bench_default.json" 2>&1 | grep -v "^I1" | tee "$OUT/bench_default.log"
timeout 70 python3 benchmarks/sweep_throughput.py --seeds=64,8192 --peers=false --repeats=2 \
    --matmul_precision=highest --json_out="$OUT/bench_highest.json" 2>&1 \
    | grep -v "^I1" | tee "$OUT/bench_highest.log"
timeout 70 python3 benchmarks/matmul_precision.py --seeds=1024 --steps=4000 \
    --json_out="$OUT/precision.json" 2>&1 | grep -v "^I1" | tee "$OUT/precision.log"
# Whatever time is left: the training-engine tests, with JAX on the GPU (float64); the
# 8-device sharding test needs conftest's 8 host CPU devices, so it is left to the CPU.
XLA_PYTHON_CLIENT_PREALLOCATE=false timeout "${TEST_SECONDS:-60}" python3 -m pytest -q \
    -p no:cacheprovider tests/test_train.py \
    --deselect tests/test_train.py::test_sweep_sharded_over_8_devices_equals_one_device 2>&1 | tail -15 | tee "$OUT/pytest.log"
