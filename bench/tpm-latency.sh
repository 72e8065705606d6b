#!/usr/bin/env bash
# TPM operation latency, whole commands on the same software TPM, interleaved, median of N runs:
#   securenode quote   (full evidence: quote + PCR read + EK certificate + event log)  vs  tpm2_quote
#   securenode verify  (every appraisal check)                                          vs  tpm2_checkquote
#   securenode seal    (SRK + sealed object under a PCR policy), securenode unseal (reported alone)
#
#   bench/tpm-latency.sh [runs]      (default 15); writes bench/results/tpm-latency.{json,md}
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
runs="${1:-15}"
(cd "$REPO" && swift build -c release --product securenode >/dev/null)
bin="$(cd "$REPO" && swift build -c release --show-bin-path)/securenode"
work=$(mktemp -d)
export SECURENODE_STATE_DIR="$work/state"
"$bin" dev-tpm > "$work/tcti" &
dev_tpm=$!
trap 'kill $dev_tpm 2>/dev/null || true; wait $dev_tpm 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 200); do [[ -s "$work/tcti" ]] && break; sleep 0.05; done
python3 "$REPO/bench/tpm_latency.py" --runs "$runs" --securenode "$bin" --tcti "$(head -n1 "$work/tcti")" \
  --profile "$REPO/firmware-profiles/swtpm-dev.json" --work "$work" \
  --model "$DEFAULT_MODEL_DIR" --signature "$DEFAULT_MODEL_SIGNATURE" --public-key "$DEFAULT_MODEL_PUBLISHER_KEY" \
  --out "$REPO/bench/results/tpm-latency"
