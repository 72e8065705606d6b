#!/usr/bin/env bash
# Issue 19: the Q4_K/Q6_K prompt GEMM (`sn_kquant_gemm_vnni`, kquants.c) of this checkout against a
# baseline commit's, one thread, on the Llama-3.2-1B shapes the prompt path multiplies (activation
# counts as the engine's chunks give them: 16, 28, 64, 320). Each side is first checked bit for bit
# against the row kernel; then both are timed alternately, ROUNDS rounds of best-of-N calls, and the
# medians and maxima over the rounds are printed. This VM's speed drifts by 10-30% over minutes, so
# only alternating rounds compare. No Swift build needed; run it with nothing else on the machine.
#
#   bench/kernels/kquant_gemm_commits.sh
#     BASE=commit   the baseline's kquants.c (default: HEAD~1)
#     ROUNDS=10
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
base="${BASE:-HEAD~1}"
rounds="${ROUNDS:-10}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
inc="$repo/Sources/CKernels/include"
src="$repo/Sources/CKernels"
git -C "$repo" show "$base:Sources/CKernels/kquants.c" > "$work/base_kquants.c"
build() { clang -O3 -mavx2 -mfma -mf16c -I"$inc" -I"$src" "$here/kquant_gemm_one.c" "$1" "$src/vnni.c" -lm -o "$2"; }
build "$work/base_kquants.c" "$work/base"
build "$src/kquants.c" "$work/this"
shapes=("12 8192 2048 16 6" "12 8192 2048 64 6" "12 2048 8192 28 6" "12 2048 2048 320 3" "14 2048 8192 28 6")
echo "load average: $(cat /proc/loadavg); base $(git -C "$repo" rev-parse --short "$base"), this checkout"
for ((i = 0; i < rounds; i++)); do
  for side in base this; do
    for s in "${shapes[@]}"; do
      # shellcheck disable=SC2086
      echo "$side $s $("$work/$side" $s | awk '{print $6}')"
    done
  done
done > "$work/rounds.txt"
python3 - "$work/rounds.txt" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    side, t, rows, cols, toks, _, gmacs = line.split()
    name = f"{'Q4_K' if t == '12' else 'Q6_K'} {rows}x{cols}, {toks} activations"
    runs.setdefault(name, {}).setdefault(side, []).append(float(gmacs))
print("| product | base GMAC/s (median, max) | this (median, max) | this / base (medians) |")
print("|---|---|---|---|")
for name, sides in runs.items():
    b, t = sides["base"], sides["this"]
    mb, mt = statistics.median(b), statistics.median(t)
    print(f"| {name} | {mb:.1f}, {max(b):.1f} | {mt:.1f}, {max(t):.1f} | {mt / mb:.2f}x |")
PY
echo "load average: $(cat /proc/loadavg)"
