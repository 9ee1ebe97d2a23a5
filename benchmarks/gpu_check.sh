#!/usr/bin/env bash
# GPU readiness check for omni_hf (< 8 minutes on one GPU): bf16 parity with transformers' Qwen2.5-Omni, the
# encoders' varlen attention (sdpa, flash where installed), the background token2wav worker, CUDA-graph decode,
# and first audio / RTF / decode tokens/s on a config with the 7B's widths and 4 layers per stack, also with a
# 2-step token2wav student.
#
#   bash benchmarks/gpu_check.sh                       # on a CUDA machine
#   bash benchmarks/gpu_check.sh --device cpu --dry-run  # checks the script itself on tiny shapes
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python}"
exec timeout 480 "$PYTHON" gpu_check.py "$@"
