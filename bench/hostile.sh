#!/usr/bin/env bash
# The node under attack (issue 14): bench/hostile_bench.py starts a software TPM and `securenode serve`
# (release build), then measures an unattacked baseline and each attack (long-word prompt, slowloris,
# oversized bodies with Connection: close, deep JSON nesting, a huge token-id array, an attestation
# flood, abandoned non-streaming requests, long stop strings), each with its own bounded attack
# clients on loopback, while a probe times /healthz and a legitimate client measures completion
# latency and tokens/s. Writes bench/results/hostile.{json,md}. About 6 minutes with the defaults.
#
#   bench/hostile.sh
#     SECONDS_PER_PHASE=20 CAP=128     seconds per phase, server.max_connections of the node
#     ONLY=slowloris,deep-json         only these attacks (after the baseline)
#     SECURENODE_BIN=path              use this binary instead of building release
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
SECONDS_PER_PHASE="${SECONDS_PER_PHASE:-20}"
CAP="${CAP:-128}"
ONLY="${ONLY:-}"
[[ -f "$DEFAULT_MODEL_FILE" ]] || die "default model missing: run scripts/setup.sh first"
bench_tools  # sets $bin (release, or $SECURENODE_BIN) and $python
mkdir -p "$REPO/bench/results"
"$python" "$REPO/bench/hostile_bench.py" --securenode "$bin" --model-dir "$DEFAULT_MODEL_DIR" \
  --signature "$DEFAULT_MODEL_SIGNATURE" --public-key "$DEFAULT_MODEL_PUBLISHER_KEY" \
  --profile "$REPO/firmware-profiles/swtpm-dev.json" --seconds "$SECONDS_PER_PHASE" --cap "$CAP" --only "$ONLY" \
  --out "$REPO/bench/results/hostile"
