#!/usr/bin/env bash
# Soak (issue 14): bench/soak_bench.py starts a software TPM and `securenode serve`, then 16 concurrent
# streaming clients for DURATION seconds; every response is checked against its receipt (requestSHA256
# of the exact body, responseSHA256 of the concatenated streamed text) and the node's RSS is sampled.
# Exits 1 on any error. Writes bench/results/soak.{json,md} (OUT=path-prefix to write elsewhere).
#
#   bench/soak.sh                      30 minutes
#     DURATION=120                     the CI-sized run the tests use
#     STREAMS=16 SECURENODE_BIN=path   concurrent streams; use this binary instead of building release
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
DURATION="${DURATION:-1800}"
STREAMS="${STREAMS:-16}"
OUT="${OUT:-$REPO/bench/results/soak}"
[[ -f "$DEFAULT_MODEL_FILE" ]] || die "default model missing: run scripts/setup.sh first"
bench_tools  # sets $bin (release, or $SECURENODE_BIN) and $python
mkdir -p "$(dirname "$OUT")"
"$python" "$REPO/bench/soak_bench.py" --securenode "$bin" --model-dir "$DEFAULT_MODEL_DIR" \
  --signature "$DEFAULT_MODEL_SIGNATURE" --public-key "$DEFAULT_MODEL_PUBLISHER_KEY" \
  --profile "$REPO/firmware-profiles/swtpm-dev.json" --duration "$DURATION" --streams "$STREAMS" --out "$OUT"
