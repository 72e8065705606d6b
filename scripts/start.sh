#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh, release build) and starts the node on the default model
# with a software TPM: `securenode dev-tpm` provisions and runs swtpm (EK certificate from a local
# CA in the state directory), then `securenode serve` verifies the model, measures it into the TPM
# and serves on http://127.0.0.1:${PORT:-8080} until interrupted (Ctrl-C stops both).
#
#   scripts/start.sh            (state in $SECURENODE_STATE_DIR, default ./.state)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
"$REPO/scripts/setup.sh" --release
bin="$(cd "$REPO" && swift build -c release --show-bin-path)/securenode"
export SECURENODE_STATE_DIR="${SECURENODE_STATE_DIR:-$REPO/.state}"
mkdir -p "$SECURENODE_STATE_DIR"
chmod 700 "$SECURENODE_STATE_DIR"

tcti_file="$SECURENODE_STATE_DIR/dev-tpm.tcti"
rm -f "$tcti_file"
"$bin" dev-tpm > "$tcti_file" &
dev_tpm=$!
trap 'kill "$dev_tpm" 2>/dev/null || true; wait "$dev_tpm" 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do
  [[ -s "$tcti_file" ]] && break
  kill -0 "$dev_tpm" 2>/dev/null || die "the software TPM did not start"
  sleep 0.05
done
tcti=$(head -n1 "$tcti_file")
[[ -n "$tcti" ]] || die "the software TPM did not report its TCTI"
log "software TPM at $tcti"

"$bin" serve --tcti "$tcti" --profile "$REPO/firmware-profiles/swtpm-dev.json" \
  --model "$DEFAULT_MODEL_DIR" --signature "$DEFAULT_MODEL_SIGNATURE" --public-key "$DEFAULT_MODEL_PUBLISHER_KEY" \
  --port "${PORT:-8080}" "$@"
