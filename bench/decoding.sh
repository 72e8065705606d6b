#!/usr/bin/env bash
# One stream's decoding as prompt rows (the default, `--decoding prompt-rows`) against llama.cpp's
# one-token kernels (`--decoding one-token`), in the engine (`securenode bench-engine`): PAIRS pairs
# of fresh processes, the two alternating, each decoding DECODE greedy tokens after a 64-token prompt;
# per-pair ratios (this VM's speed drifts between runs more than the two differ), their median, and
# the medians of each. A measurement: nothing fails.
#
#   bench/decoding.sh
#     PAIRS=7 DECODE=256 THREADS=2     pairs of runs, decoding steps timed, engine threads
#     SECURENODE_BIN=path              use this binary instead of building release (scripts/setup.sh --release)
#     OUT=bench/results/decoding       where the results go (OUT.md)
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
PAIRS="${PAIRS:-7}"
DECODE="${DECODE:-256}"
THREADS="${THREADS:-2}"
OUT="${OUT:-$REPO/bench/results/decoding}"

bench_binary

rate() {
  "$bin" bench-engine --model "$DEFAULT_MODEL_DIR" --signature "$DEFAULT_MODEL_SIGNATURE" \
    --public-key "$DEFAULT_MODEL_PUBLISHER_KEY" --threads "$THREADS" --prompt-lengths 16 \
    --decode-tokens "$DECODE" --decode-after 64 --decoding "$1" 2>/dev/null \
    | python3 -c 'import json, sys; r = json.loads(sys.stdin.read().strip().splitlines()[-1]); print(r["decode"]["tokens"] / r["decode"]["seconds"])'
}

log "decoding: $PAIRS pairs, $DECODE tokens after a 64-token prompt, $THREADS threads (load average $(cut -d' ' -f1-3 /proc/loadavg))"
pairs=""
for i in $(seq 1 "$PAIRS"); do
  one=$(rate one-token) || die "bench-engine --decoding one-token failed"
  rows=$(rate prompt-rows) || die "bench-engine --decoding prompt-rows failed"
  log "pair $i: one-token $one, prompt-rows $rows tokens/s"
  pairs="$pairs$one $rows"$'\n'
done
commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
printf '%s' "$pairs" | python3 -c '
import statistics, sys
commit, cpu, load, decode, threads = sys.argv[1:6]
pairs = [tuple(map(float, line.split())) for line in sys.stdin if line.strip()]
ratios = [p / o for o, p in pairs]
print("# One stream: decoding as prompt rows against one-token (bench/decoding.sh)\n")
print(f"{commit}, {cpu}, {threads} threads, SmolLM2-135M Q4_1, {decode} greedy tokens after a 64-token prompt, "
      f"{len(pairs)} pairs of fresh bench-engine processes (one-token first in each); load average after: {load}.\n")
print("| pair | one-token tokens/s | prompt-rows tokens/s | ratio |")
print("|---|---|---|---|")
for i, ((o, p), r) in enumerate(zip(pairs, ratios), 1):
    print(f"| {i} | {o:.1f} | {p:.1f} | {r:.3f}x |")
print(f"\nMedians: one-token {statistics.median(o for o, _ in pairs):.1f}, prompt-rows {statistics.median(p for _, p in pairs):.1f} "
      f"tokens/s; median ratio **{statistics.median(ratios):.3f}x**.")
' "$commit" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" "$(cut -d' ' -f1-3 /proc/loadavg)" "$DECODE" "$THREADS" > "$OUT.md.tmp"
mv "$OUT.md.tmp" "$OUT.md"
cat "$OUT.md"
