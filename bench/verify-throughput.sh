#!/usr/bin/env bash
# Model verification throughput: `securenode model verify` (signature + SHA-256 of every byte) on the
# default model, against `sha256sum` of the same file, in the same run. Median of N runs each, warm
# page cache, runs interleaved so that both see the same machine state.
#
#   bench/verify-throughput.sh [runs]      (default 9)
# Writes bench/results/verify-throughput.json and .md.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
runs="${1:-9}"
[[ -f "$DEFAULT_MODEL_FILE" ]] || die "default model missing: run scripts/setup.sh first"
(cd "$REPO" && swift build -c release --product securenode >/dev/null)
bin="$(cd "$REPO" && swift build -c release --show-bin-path)/securenode"
python3 "$REPO/bench/verify_throughput.py" --runs "$runs" --securenode "$bin" \
  --model-dir "$DEFAULT_MODEL_DIR" --model-file "$DEFAULT_MODEL_FILE" \
  --signature "$DEFAULT_MODEL_SIGNATURE" --public-key "$DEFAULT_MODEL_PUBLISHER_KEY" \
  --out "$REPO/bench/results/verify-throughput"
