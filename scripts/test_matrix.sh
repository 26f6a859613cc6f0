#!/usr/bin/env bash
# Run the test suite the way other machines would: other thread splits and other kernels change float rounding.
# Every run must pass; tests compare two float computations with tolerances that follow the kernels' rounding.
#
#   scripts/test_matrix.sh [pytest args...]      e.g. scripts/test_matrix.sh -x -q
set -uo pipefail
cd "$(dirname "$0")/.."
runs=(
  ""                              # as it is
  "OMP_NUM_THREADS=1"             # one thread: other reduction splits
  "OMP_NUM_THREADS=3"             # an odd split
  "ATEN_CPU_CAPABILITY=default"   # PyTorch's portable (non-vectorised) kernels
  "ONEDNN_MAX_CPU_ISA=SSE41"      # oneDNN's oldest convolution kernels
)
status=0
for env_set in "${runs[@]}"; do
  echo "=== ${env_set:-as it is}"
  if ! env $env_set python -m pytest "${@:--q}"; then
    status=1
    echo "=== FAILED: ${env_set:-as it is}"
  fi
done
exit $status
