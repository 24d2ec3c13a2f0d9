#!/usr/bin/env bash
# One prepared script for a machine with a CUDA GPU (run from the repo root):
#   bash benchmarks/gpu_check.sh
# It sets up .venv if needed, runs the CUDA-marked tests (fp16 + GradScaler, and a batch loop
# under torch.cuda.set_sync_debug_mode("error"): the driver must not sync per batch), then the
# overhead benchmark on the GPU. It prints everything; the exit status is the tests'.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv && .venv/bin/python -m pip install --quiet -e '.[test]'
fi
.venv/bin/python - <<'PY'
import torch
print("torch", torch.__version__, "cuda available:", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY
.venv/bin/python -m pytest -m cuda -v -rs tests/
rc=$?
if [ "$rc" -eq 5 ]; then echo "no CUDA-marked tests were collected" >&2; rc=1; fi
.venv/bin/python benchmarks/overhead.py --device cuda --rounds 9 --batches 2000 --import-rounds 3
exit "$rc"
