#!/usr/bin/env bash
# The Q4_K and Q6_K sixteen-row groups of the tolerance prompt path (Kernels' `KQuantGroups`,
# kquant_groups.c) against the exact GEMM and against dequantize + single-threaded OpenBLAS sgemm, one thread,
# Llama-3.2-1B shapes, median of N runs (the groups' repacking timed with them). AVX512-VNNI only.
# No Swift build needed; run it with nothing else on the machine (it prints the load average).
#
#   bench/kernels/kquant_groups.sh [runs]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
inc="$repo/Sources/CKernels/include"
grep -q avx512_vnni /proc/cpuinfo || { echo "kquant_groups.sh: this CPU has no AVX512-VNNI" >&2; exit 1; }
clang -O3 -mavx2 -mfma -mf16c -I"$inc" $(pkg-config --cflags openblas) "$here/kquant_groups_harness.c" \
  "$repo/Sources/CKernels/kquants.c" "$repo/Sources/CKernels/vnni.c" "$repo/Sources/CKernels/kquant_groups.c" \
  $(pkg-config --libs openblas) -lm -o "$work/harness"
echo "load average: $(cat /proc/loadavg)"
"$work/harness" "${1:-5}"
echo "load average: $(cat /proc/loadavg)"
