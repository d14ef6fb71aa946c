#!/usr/bin/env bash
# The one prepared script of GPU checks and timings (run on a lent H100/H200 from the repo root, with the
# machine's own JAX + CUDA): device facts, the 50M-parameter sparsity scale run, the solver and gradient
# tests on the GPU (float64), and the solver/preconditioner benchmarks. Results land in $OUT (default ./gpu_out).
set -u
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/device.txt"
python3 -c "import jax, sys; print(sys.version.split()[0], 'jax', jax.__version__, jax.devices())" | tee -a "$OUT/device.txt"
timeout 240 python3 benchmarks/scale_sparsity.py --size full --out "$OUT" 2>&1 | tee "$OUT/scale.log"
timeout 100 python3 -m pytest tests/test_lsmr_values.py tests/test_gradients.py tests/test_preconditioners.py \
  -q -x -p no:cacheprovider 2>&1 | tail -25 | tee "$OUT/tests.log"
timeout 80 python3 benchmarks/bench_lstsq.py 2>&1 | tee "$OUT/bench_lstsq.log"
timeout 80 python3 benchmarks/bench_preconditioners.py --large 2>&1 | tee "$OUT/bench_preconditioners.log"
