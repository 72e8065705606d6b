#!/usr/bin/env bash
# The Q4_1 sixteen-row groups of the tolerance prompt path (Kernels' `Q4_1Groups`, q4_1_groups.c)
# against the exact AVX512-VNNI kernels (the engine's Q4_1 products), one thread, SmolLM2-135M and
# Llama-3.2-1B shapes, 1 to 128 activations, median of N runs (the groups' repacking timed with
# them). AVX512-VNNI only. No Swift build needed; run it with nothing else on the machine.
#
#   bench/kernels/q4_1_groups.sh [runs]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
inc="$repo/Sources/CKernels/include"
grep -q avx512_vnni /proc/cpuinfo || { echo "q4_1_groups.sh: this CPU has no AVX512-VNNI" >&2; exit 1; }
c="$repo/Sources/CKernels"
clang -O3 -mavx2 -mfma -mf16c -I"$inc" "$here/q4_1_groups_harness.c" "$c/kernels.c" "$c/q32.c" "$c/kquants.c" \
  "$c/vnni.c" "$c/q4_1_groups.c" -lm -lpthread -o "$work/harness"
echo "load average: $(cat /proc/loadavg)"
"$work/harness" "${1:-5}"
echo "load average: $(cat /proc/loadavg)"
