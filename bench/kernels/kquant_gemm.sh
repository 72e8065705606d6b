#!/usr/bin/env bash
# Issue 19: the exact Q4_K/Q6_K prompt GEMM (AVX512-VNNI, kquants.c `sn_kquant_gemm_vnni`) against
# the row kernel (`sn_kquant_rows`) and against what the BLAS prompt path does (dequantize to F32 +
# single-threaded OpenBLAS sgemm), one thread, Llama-3.2-1B shapes, median of N runs; every product
# is first checked bit-identical to the row kernel. No Swift build needed. Run it with nothing else
# on the machine (the script prints the load average).
#
#   bench/kernels/kquant_gemm.sh [runs]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
inc="$repo/Sources/CKernels/include"
clang -O3 -mavx2 -mfma -mf16c -I"$inc" $(pkg-config --cflags openblas) "$here/kquant_gemm_harness.c" \
  "$repo/Sources/CKernels/kquants.c" "$repo/Sources/CKernels/vnni.c" $(pkg-config --libs openblas) -lm -o "$work/harness"
echo "load average: $(cat /proc/loadavg)"
"$work/harness" "${1:-5}"
echo "load average: $(cat /proc/loadavg)"
