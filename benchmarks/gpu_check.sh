#!/usr/bin/env bash
# gpu_check.sh OUT_DIR - the CUDA checks of one GPU machine (about 8 minutes on one H100/H200); every result
# lands in OUT_DIR:
#   gpu_tests.log / gpu_tests.xml   the tests marked gpu (tests/test_gpu.py, tests/test_unroll_budget_precision.py):
#                                   float64 engine vs autograd on CUDA, pinned offload round trip, CUDA resume
#                                   bit-identical, FFCV batches onto CUDA, the bf16 unroll and the memory budget
#   unroll_bf16.log, unroll_bf16/   the same benchmark with unroll.precision=bf16 at T = 50, 150 (cosine to fp32)
#   unroll.log, unroll/             python -m rtp_scale.bench unroll --device cuda over T = 50 ... 2000 (JSON + table:
#                                   step time, TFLOP/s, peak device memory), with the fused ConvNet blocks (default)
#   unroll_plain.log, unroll_plain/ the same at T = 50, 150 with the plain modules (--no-fused), for the ratio
#   batched.log, batched/           python -m rtp_scale.bench batched --device cuda: unrolls/s with dist.meta_batch
#                                   = 2, 4, 8 on one GPU, one by one vs stacked (dist.batch_unrolls)
#   default_job.log, default_job/   the default job on CUDA (results.json), and default_job_seconds.txt
#   nvidia-smi.txt, pip-freeze.txt  the machine
# Without CUDA it prints one line and exits 0 (CI runs exactly that). Runs from the repository's files
# (PYTHONPATH), so it needs torch and the project's requirements installed, not the project itself.
#
#   bash benchmarks/gpu_check.sh /tmp/gpu-check
#   PYTHON=python3.12 bash benchmarks/gpu_check.sh "$OUT"
set -uo pipefail
OUT=${1:?usage: bash benchmarks/gpu_check.sh OUT_DIR}
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
  echo "gpu_check: skipped, no CUDA device (or no torch) for $PY on $(hostname)"
  exit 0
fi
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
failed=()
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
"$PY" -m pip freeze >"$OUT/pip-freeze.txt" 2>&1

timeout 150 "$PY" -m pytest -q -m gpu -p no:cacheprovider --junitxml "$OUT/gpu_tests.xml" tests/ 2>&1 \
  | tee "$OUT/gpu_tests.log" || failed+=("gpu tests")
timeout 140 "$PY" -m rtp_scale.bench unroll --device cuda --steps 50,150,500,1000,2000 --out "$OUT/unroll" 2>&1 \
  | tee "$OUT/unroll.log" || failed+=("bench unroll")
timeout 40 "$PY" -m rtp_scale.bench unroll --device cuda --modes segmented --steps 50,150 --no-fused \
  --out "$OUT/unroll_plain" 2>&1 | tee "$OUT/unroll_plain.log" || failed+=("bench unroll plain")
timeout 40 "$PY" -m rtp_scale.bench unroll --device cuda --modes segmented --steps 50,150 --precision bf16 \
  --out "$OUT/unroll_bf16" 2>&1 | tee "$OUT/unroll_bf16.log" || failed+=("bench unroll bf16")
timeout 40 "$PY" -m rtp_scale.bench batched --device cuda --meta-batches 2,4,8 --repeats 2 --out "$OUT/batched" \
  2>&1 | tee "$OUT/batched.log" || failed+=("bench batched")
start=$(date +%s)
timeout 70 "$PY" -m rtp_scale.distill --set run.device=cuda "run.out_dir=$OUT/default_job" log.progress=false 2>&1 \
  | tee "$OUT/default_job.log" || failed+=("default job")
echo "$(( $(date +%s) - start ))" >"$OUT/default_job_seconds.txt"

if (( ${#failed[@]} )); then
  echo "gpu_check: FAILED: ${failed[*]} (logs in $OUT)"
  exit 1
fi
echo "gpu_check: all passed (results in $OUT)"
