#!/usr/bin/env bash
# One stream through `securenode serve` against `securenode generate` and the in-process engine
# benchmark (`securenode bench-engine`), in one run (issue 20's Speed targets): decode tokens/s of
# each (serve as the client sees it, and the node's own generation loop from its log), time to first
# token of serve against the engine's for the same prompt length; RUNS runs, the three alternating,
# each a fresh process; medians, and the targets reported PASS/FAIL (a FAIL does not fail the
# script: this is a measurement).
#
#   bench/serve-overhead.sh
#     RUNS=9 REQUESTS=3 THREADS=2 MAX_TOKENS=128   runs (this VM changes speed by 10-20% from one second
#                                                  to the next: nine per-run ratios give a steadier median),
#                                                  measured serve requests per run, engine
#                                                  threads, tokens generated per measurement
#     DECODING=                   one-token or prompt-rows for all three (default: their default, one-token)
#     OUT=bench/results/serve-overhead   where the results go (OUT.json, OUT.md)
#     SECURENODE_BIN=path         use this binary instead of building release (scripts/setup.sh --release)
# The node runs as bench/serve.sh runs it (a software TPM from `securenode dev-tpm`, the swtpm-dev
# profile, the default model), with limits.parallel 1 and limits.prompt_cache false.
# Writes OUT.json and OUT.md.
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
RUNS="${RUNS:-9}"
REQUESTS="${REQUESTS:-3}"
THREADS="${THREADS:-2}"
MAX_TOKENS="${MAX_TOKENS:-128}"
DECODING="${DECODING:-}"
OUT="${OUT:-$REPO/bench/results/serve-overhead}"
decoding=()
[[ -n "$DECODING" ]] && decoding=(--decoding "$DECODING")

bench_binary

log "serve overhead: $RUNS runs, $REQUESTS serve requests each, $MAX_TOKENS tokens, $THREADS threads (load average $(cut -d' ' -f1-3 /proc/loadavg))"
python3 "$REPO/bench/serve_overhead.py" --runs "$RUNS" --requests "$REQUESTS" --threads "$THREADS" --max-tokens "$MAX_TOKENS" "${decoding[@]}" \
  --securenode "$bin" --model-dir "$DEFAULT_MODEL_DIR" --model-file "$DEFAULT_MODEL_FILE" \
  --signature "$DEFAULT_MODEL_SIGNATURE" --public-key "$DEFAULT_MODEL_PUBLISHER_KEY" \
  --profile "$REPO/firmware-profiles/swtpm-dev.json" --out "$OUT"
