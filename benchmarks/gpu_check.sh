#!/usr/bin/env bash
# One script for a lent GPU machine: from a fresh clone, at most about 8 minutes, no network.
#
#   benchmarks/gpu_check.sh [--device cuda|cpu] [--quick] [--workdir DIR] [--keep]
#
# 1. Environment: uses the Python in $PYTHON (default python3) when it imports what cltm needs (torch,
#    transformers, snakemake, ...); the package itself is taken from this clone (PYTHONPATH=src), so
#    nothing is installed. Where a module is missing and $CLTM_WHEELS names a folder of wheels, installs
#    into .venv-gpu-check from there (pip --no-index: no network); otherwise stops and names the module.
# 2. benchmarks/gpu_check.py: a reduced workflow on the device in fine-tune and probe modes (2 languages,
#    2 seeds, the tiny demo encoder), a cell packed at K = 2 and a packed run retrained alone, one run
#    killed mid-training and resumed, then benchmarks/gpu_throughput.py (a HuBERT-base-size encoder built
#    from its config: no download). One table: $OUT/gpu_check.md (and .json) where $OUT is set, and stdout.
#
# `--device cpu --quick` is the CI check (tests/test_gpu_check.py): the same steps, smaller.
# Exit status: 0 when every check passed, 1 when one failed, 2 when the environment is not usable.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
NEEDED="torch transformers safetensors soundfile soxr numpy sklearn pandas yaml jsonschema snakemake espeakng_loader matplotlib seaborn"

missing() {
    "$1" - "$NEEDED" <<'PY'
import importlib.util, sys
print(" ".join(m for m in sys.argv[1].split() if importlib.util.find_spec(m) is None))
PY
}

if ! command -v "$PY" >/dev/null 2>&1; then
    echo "gpu_check: no Python ($PY); set PYTHON=/path/to/python" >&2
    exit 2
fi
lacking="$(missing "$PY")"
if [ -n "$lacking" ]; then
    if [ -n "${CLTM_WHEELS:-}" ] && [ -d "${CLTM_WHEELS}" ]; then
        echo "gpu_check: installing from ${CLTM_WHEELS} (no network): $lacking" >&2
        "$PY" -m venv --system-site-packages "$ROOT/.venv-gpu-check"
        PY="$ROOT/.venv-gpu-check/bin/python"
        "$PY" -m pip install --quiet --no-index --find-links "$CLTM_WHEELS" -e "$ROOT"
        lacking="$(missing "$PY")"
    fi
    if [ -n "$lacking" ]; then
        echo "gpu_check: $PY lacks $lacking; use a Python environment with cltm's dependencies" \
             "(pip install -e . where there is a network), or set CLTM_WHEELS to a folder of wheels" >&2
        exit 2
    fi
fi

export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "$PY" "$ROOT/benchmarks/gpu_check.py" "$@"
