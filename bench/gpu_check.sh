#!/usr/bin/env bash
# The GPU check of issue 12 item 6, in one command (from the repository root):
#     bash bench/gpu_check.sh [--sizes 1b 2b 4b] [--batches 1 2 4 8 16] [--peak-tflops N]
# PyTorch engine, full-size random weights, 1B/2B/4B: vision tiles/s and requests/s for the
# DriveLM and remote-sensing shapes at batch 1 and the best batch, against the FLOP floor;
# results in bench/results/gpu-check-<gpu>.{json,md}. Without CUDA it says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
export PYTHONPATH="$PWD/services:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TRANSFORMERS_VERBOSITY=error
if "$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
exec "$PYTHON" -m bench.gpu_check "$@"
