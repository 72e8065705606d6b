#!/usr/bin/env bash
# Transparent huge pages for the model's weights and the KV cache (the default) against 4 KiB pages
# (`SECURENODE_HUGEPAGES=0`), in the engine (`securenode bench-engine`, one binary): for each decoding
# position in AFTER, PAIRS pairs of fresh processes, the two alternating, each decoding DECODE greedy
# tokens after an AFTER-token prompt; per-pair ratios (this VM's speed drifts between runs more than
# the two differ), their median, and the medians of each. Huge pages are used only where the kernel's
# transparent_hugepage setting allows them (`madvise` or `always`; the report names it). A
# measurement: nothing fails.
#
#   bench/hugepages.sh
#     PAIRS=5 DECODE=128 AFTER=64,1800 THREADS=2   pairs of runs, decoding steps timed, positions the
#                                                  decoding starts at, engine threads
#     SECURENODE_BIN=path              use this binary instead of building release (scripts/setup.sh --release)
#     OUT=bench/results/hugepages      where the results go (OUT.md)
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
PAIRS="${PAIRS:-5}"
DECODE="${DECODE:-128}"
AFTER="${AFTER:-64,1800}"
THREADS="${THREADS:-2}"
OUT="${OUT:-$REPO/bench/results/hugepages}"

bench_binary

# rate HUGEPAGES AFTER: decode tokens/s of one fresh bench-engine process.
rate() {
  SECURENODE_HUGEPAGES="$1" "$bin" bench-engine --model "$DEFAULT_MODEL_DIR" --signature "$DEFAULT_MODEL_SIGNATURE" \
    --public-key "$DEFAULT_MODEL_PUBLISHER_KEY" --threads "$THREADS" --prompt-lengths 16 \
    --decode-tokens "$DECODE" --decode-after "$2" --context 2048 2>/dev/null \
    | python3 -c 'import json, sys; r = json.loads(sys.stdin.read().strip().splitlines()[-1]); print(r["decode"]["tokens"] / r["decode"]["seconds"])'
}

thp=$(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo "unknown (no /sys/kernel/mm/transparent_hugepage)")
log "hugepages: $PAIRS pairs at positions $AFTER, $DECODE tokens, $THREADS threads, transparent_hugepage $thp (load average $(cut -d' ' -f1-3 /proc/loadavg))"
rows=""
IFS=, read -ra afters <<< "$AFTER"
for after in "${afters[@]}"; do
  (( after >= 1 && after + DECODE <= 2048 )) || die "AFTER positions must be at least 1 and leave DECODE ($DECODE) positions of the 2048-position context"
  for i in $(seq 1 "$PAIRS"); do
    small=$(rate 0 "$after") || die "bench-engine with SECURENODE_HUGEPAGES=0 failed"
    huge=$(rate 1 "$after") || die "bench-engine with huge pages failed"
    log "position $after, pair $i: 4 KiB pages $small, huge pages $huge tokens/s"
    rows="$rows$after $small $huge"$'\n'
  done
done
commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
printf '%s' "$rows" | python3 -c '
import statistics, sys
commit, cpu, load, decode, threads, thp = sys.argv[1:7]
rows = [line.split() for line in sys.stdin if line.strip()]
print("# One stream: huge pages against 4 KiB pages (bench/hugepages.sh)\n")
print(f"{commit}, {cpu}, {threads} threads, SmolLM2-135M Q4_1, {decode} greedy tokens after each position, pairs of fresh "
      f"bench-engine processes (`SECURENODE_HUGEPAGES=0` first in each); transparent_hugepage: `{thp}`; load average after: {load}.\n")
print("| position | pair | 4 KiB pages tokens/s | huge pages tokens/s | ratio |")
print("|---|---|---|---|---|")
summary = []
for after in dict.fromkeys(r[0] for r in rows):
    pairs = [(float(s), float(h)) for a, s, h in rows if a == after]
    for i, (s, h) in enumerate(pairs, 1):
        print(f"| {after} | {i} | {s:.1f} | {h:.1f} | {h / s:.3f}x |")
    summary.append(f"after {after} positions: 4 KiB {statistics.median(s for s, _ in pairs):.1f}, huge "
                   f"{statistics.median(h for _, h in pairs):.1f} tokens/s, median ratio **{statistics.median(h / s for s, h in pairs):.3f}x**")
print("\nMedians: " + "; ".join(summary) + ".")
' "$commit" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" "$(cut -d' ' -f1-3 /proc/loadavg)" "$DECODE" "$THREADS" "$thp" > "$OUT.md.tmp"
mv "$OUT.md.tmp" "$OUT.md"
cat "$OUT.md"
