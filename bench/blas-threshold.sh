#!/usr/bin/env bash
# The prompt batch size from which OpenBLAS beats the exact kernels (issue 19; `PrefillMode.
# measuredMinimumRows`): `securenode bench-engine --exact` against `--blas-min-rows 1` on MODEL
# (default: the default model directory), prompt lengths 8..512, RUNS runs each, alternating, medians.
#
#   bench/blas-threshold.sh [MODEL (file or directory, as signed) SIGNATURE PUBLIC_KEY]
#     RUNS=3 THREADS=2 LENGTHS=8,16,32,64,128,256,512 SECURENODE_BIN=path
# Writes bench/results/blas-threshold.json and .md (OUT=prefix to change).
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
bench_tools
model="${1:-$DEFAULT_MODEL_DIR}"
signature="${2:-$DEFAULT_MODEL_SIGNATURE}"
key="${3:-$DEFAULT_MODEL_PUBLISHER_KEY}"
[[ -e "$model" ]] || die "no model at $model (scripts/setup.sh fetches the default one)"
"$python" "$REPO/bench/blas_threshold.py" --securenode "$bin" --model "$model" --signature "$signature" \
  --public-key "$key" --lengths "${LENGTHS:-8,16,32,64,128,256,512}" --runs "${RUNS:-3}" --threads "${THREADS:-2}" \
  --out "${OUT:-$REPO/bench/results/blas-threshold}"
