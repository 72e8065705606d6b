#!/usr/bin/env bash
# What a grammar-constrained neighbour (response_format json_object / json_schema) costs the other
# sequences' tokens/s: bench/grammar_bench.py (one node, limits.parallel 2, four phases of SECONDS
# each: alone, a plain neighbour, a json_object neighbour, a json_schema neighbour). Writes
# bench/results/grammar.{json,md}. About 2 minutes with the defaults.
#
#   bench/grammar.sh
#     SECONDS_PER_PHASE=30          seconds per phase
#     SECURENODE_BIN=path           use this binary instead of building release
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
SECONDS_PER_PHASE="${SECONDS_PER_PHASE:-30}"
[[ -f "$DEFAULT_MODEL_FILE" ]] || die "default model missing: run scripts/setup.sh first"
bench_tools  # sets $bin (release, or $SECURENODE_BIN) and $python
mkdir -p "$REPO/bench/results"
"$python" "$REPO/bench/grammar_bench.py" --securenode "$bin" --model-dir "$DEFAULT_MODEL_DIR" \
  --signature "$DEFAULT_MODEL_SIGNATURE" --public-key "$DEFAULT_MODEL_PUBLISHER_KEY" \
  --profile "$REPO/firmware-profiles/swtpm-dev.json" --seconds "$SECONDS_PER_PHASE" --out "$REPO/bench/results/grammar"
