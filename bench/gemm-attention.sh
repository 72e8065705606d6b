#!/usr/bin/env bash
# GEMM-shaped attention on the BLAS prompt path (issue 19): `securenode bench-engine` with attention
# as matrix products (the default of a BLAS engine) against `--exact-attention` (the same BLAS
# products, attention on the exact per-head kernels), in the same run, alternating, RUNS runs each,
# medians, on MODEL (default: the default model directory).
#
#   bench/gemm-attention.sh [MODEL (file or directory, as signed) SIGNATURE PUBLIC_KEY]
#     RUNS=3 THREADS=2 LENGTHS=128,512,1024,2048 SECURENODE_BIN=path
# Writes bench/results/gemm-attention.json and .md (OUT=prefix to change).
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
bench_tools
model="${1:-$DEFAULT_MODEL_DIR}"
signature="${2:-$DEFAULT_MODEL_SIGNATURE}"
key="${3:-$DEFAULT_MODEL_PUBLISHER_KEY}"
[[ -e "$model" ]] || die "no model at $model (scripts/setup.sh fetches the default one)"
"$python" "$REPO/bench/gemm_attention_bench.py" --securenode "$bin" --model "$model" --signature "$signature" \
  --public-key "$key" --lengths "${LENGTHS:-128,512,1024,2048}" --runs "${RUNS:-3}" --threads "${THREADS:-2}" \
  --out "${OUT:-$REPO/bench/results/gemm-attention}"
