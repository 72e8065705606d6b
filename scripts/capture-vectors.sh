#!/usr/bin/env bash
# Captures the evidence vectors under Tests/AttestationTests/Vectors from a real software TPM, so the
# verifier's accepted and rejected cases run without a TPM (AttestationTests/EvidenceVectorTests):
#   serving-evidence.json  GET /v1/attestation of `serve` on the default model (model + receipt-key events)
#   serving-nonce.hex      the nonce it answers
#   enrolled.json          `securenode enroll` of that node (the AK the appraisal trusts)
#   history-evidence.json  `securenode quote` after a model from a signer the profile does not name was
#                          measured, then the allowed model again (the last model event is allowed)
#   history-nonce.hex
# Run from a built tree: scripts/capture-vectors.sh (uses the debug build).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bin="$(cd "$REPO" && swift build --show-bin-path)/securenode"
out="$REPO/Tests/AttestationTests/Vectors"
work=$(mktemp -d)
export SECURENODE_STATE_DIR="$work/state"
mkdir -m 700 "$SECURENODE_STATE_DIR"
profile="$REPO/firmware-profiles/swtpm-dev.json"
"$bin" dev-tpm > "$work/tcti" 2> "$work/dev-tpm.log" &
dev_tpm=$!
serve=""
trap 'kill $serve $dev_tpm 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 200); do [[ -s "$work/tcti" ]] && break; sleep 0.05; done
tcti=$(head -n1 "$work/tcti")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" serve --tcti "$tcti" --profile "$profile" --model "$DEFAULT_MODEL_DIR" --signature "$DEFAULT_MODEL_SIGNATURE" \
  --public-key "$DEFAULT_MODEL_PUBLISHER_KEY" --port "$port" > "$work/serve.log" 2>&1 &
serve=$!
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$port/readyz" > /dev/null && break; sleep 0.2; done
nonce=$(openssl rand -hex 16)
curl -sf "http://127.0.0.1:$port/v1/attestation?nonce=$nonce" | python3 -m json.tool --sort-keys > "$out/serving-evidence.json"
printf '%s\n' "$nonce" > "$out/serving-nonce.hex"
"$bin" enroll --node "http://127.0.0.1:$port" --profile "$profile" --out "$out/enrolled.json"
kill $serve; wait $serve 2>/dev/null || true; serve=""
# A model from a signer the profile does not name (the node accepts it as a local signer), then the allowed one.
rogue="$work/rogue-model"; mkdir "$rogue"; printf 'not the published weights\n' > "$rogue/weights.bin"
openssl ecparam -name prime256v1 -genkey -noout -out "$work/rogue.key"
openssl ec -in "$work/rogue.key" -pubout -out "$work/rogue.pub" 2>/dev/null
"$bin" model sign "$rogue" --private-key "$work/rogue.key" --signature "$work/rogue.sig" > /dev/null
"$bin" measure --tcti "$tcti" --profile "$profile" --model "$rogue" --signature "$work/rogue.sig" --public-key "$work/rogue.pub" > /dev/null
"$bin" measure --tcti "$tcti" --profile "$profile" --model "$DEFAULT_MODEL_DIR" --signature "$DEFAULT_MODEL_SIGNATURE" \
  --public-key "$DEFAULT_MODEL_PUBLISHER_KEY" > /dev/null
nonce=$(openssl rand -hex 16)
"$bin" quote --tcti "$tcti" --profile "$profile" --nonce "$nonce" --pretty > "$out/history-evidence.json"
printf '%s\n' "$nonce" > "$out/history-nonce.hex"
echo "vectors written to $out"
