#!/usr/bin/env bash
# Kernel harness for issue 5 (decode speed): the C matrix products of this checkout against those of
# a baseline commit (default 2a78158, before the packed layout), on SmolLM2-135M's shapes with random
# weights: checks that every output is bit-identical (1..64 tokens), then times one decode token's
# products (30 layers of Q/K/V, O, gate/up, down in Q4_1, and the 49152x576 Q8_0 output) and a
# prompt batch, best of N, and the prompt batch again with the AVX2 kernels forced
# (`sn_set_isa_for_testing`) against the AVX512-VNNI ones where the CPU has them. No Swift build
# needed; run it with `nice` on a shared machine.
#
#   bench/kernels/run.sh [iterations] [threads] [prompt tokens] [prompt iterations]
#     BASE=commit   the baseline's kernels.c and pool.c (only those two are built, so BASE must
#                   predate sn_internal.h and the other C files; to compare two later versions, run
#                   this once on each checkout and compare their "new:" lines, alternating)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
base="${BASE:-2a78158}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
inc="$repo/Sources/CKernels/include"
git -C "$repo" show "$base:Sources/CKernels/kernels.c" > "$work/ref_kernels.c"
git -C "$repo" show "$base:Sources/CKernels/pool.c" > "$work/ref_pool.c"
git -C "$repo" show "$base:Sources/CKernels/include/sn_kernels.h" > "$work/sn_kernels.h"
clang -O3 -I"$work" -c "$work/ref_kernels.c" -o "$work/ref_kernels.o"
clang -O3 -I"$work" -c "$work/ref_pool.c" -o "$work/ref_pool.o"
syms="sn_matmul_rows sn_extract_scales sn_quantize_q8_1 sn_quantize_q8_0 sn_pool_create sn_pool_matmul sn_pool_run
      sn_pool_destroy sn_pool_size sn_pool_attention sn_attention_head sn_kernels_available sn_scale_floats
      sn_attention_scratch sn_swiglu sn_f32_to_f16 sn_f16_to_f32"
args=(); for s in $syms; do args+=(--redefine-sym "$s=ref_$s"); done
objcopy "${args[@]}" "$work/ref_kernels.o"
objcopy "${args[@]}" "$work/ref_pool.o"
clang -O3 -I"$inc" -c "$repo/Sources/CKernels/kernels.c" -o "$work/kernels.o"
clang -O3 -I"$inc" -c "$repo/Sources/CKernels/pool.c" -o "$work/pool.o"
for f in q32 kquants vnni; do clang -O3 -I"$inc" -c "$repo/Sources/CKernels/$f.c" -o "$work/$f.o"; done
clang -O3 -mavx2 -mfma -mf16c -I"$inc" "$here/decode_harness.c" "$work/kernels.o" "$work/pool.o" \
  "$work/q32.o" "$work/kquants.o" "$work/vnni.o" \
  "$work/ref_kernels.o" "$work/ref_pool.o" -o "$work/harness" -lpthread -lm
echo "load average: $(cat /proc/loadavg)"
"$work/harness" "${1:-30}" "${2:-2}" 0 "${3:-64}" "${4:-6}"
