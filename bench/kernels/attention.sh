#!/usr/bin/env bash
# The exact attention kernel (`sn_attention_head`, kernels.c) of this checkout against a baseline
# commit's (default 9968b73, before the value lanes were accumulated in registers and the body was specialized per SIMD width): first every
# output of both is checked bit-identical (5,472 cases: head sizes 36-256, 1-399 positions, sliding
# windows, soft-capping, both dot orders, both SIMD widths), then one head of 64 dimensions over 96,
# 128, 512 and 2,048 cached positions is timed with both, alternating, best of 7. No Swift build
# needed; run it with nothing else on the machine (the script prints the load average).
#
#   bench/kernels/attention.sh
#     BASE=commit   the baseline's kernels.c
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
base="${BASE:-9968b73}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
inc="$repo/Sources/CKernels/include"
src="$repo/Sources/CKernels"
git -C "$repo" show "$base:Sources/CKernels/kernels.c" > "$work/base_kernels.c"
clang -O3 -I"$inc" -I"$src" -c "$work/base_kernels.c" -o "$work/base_all.o"
objcopy --redefine-sym sn_attention_head=base_sn_attention_head "$work/base_all.o"
objcopy --keep-global-symbol=base_sn_attention_head "$work/base_all.o" "$work/base.o"
objs=()
for f in kernels q32 kquants vnni; do clang -O3 -I"$inc" -I"$src" -c "$src/$f.c" -o "$work/$f.o"; objs+=("$work/$f.o"); done
clang -O3 -mavx2 -mfma -mf16c -I"$inc" "$here/attention_harness.c" "${objs[@]}" "$work/base.o" -o "$work/harness" -lm -lpthread
echo "load average: $(cat /proc/loadavg)"
"$work/harness"
echo "load average: $(cat /proc/loadavg)"
