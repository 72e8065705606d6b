#!/usr/bin/env bash
# Confidential models end to end (README "Confidential models"), with the real tools: encrypt the
# default model (`securenode model encrypt`), seal its data key with a software TPM (`securenode
# seal`), refuse every broken variant at `serve` (wrong key, tampered, truncated and missing
# ciphertext, a revoked node), then serve it with the sealed key and require greedy output identical
# to the plaintext model's (`securenode generate`). Afterwards the state directory, the logs, the
# node's TMPDIR and whatever appeared in /tmp hold neither the GGUF magic, the model's bytes nor the
# key (Tests/confidential/no_leaks.py), and the node mapped no model file. Prints "e2e-confidential:
# N passed, M failed"; exits 1 on failure.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bin="${SECURENODE_BIN:-$(cd "$REPO" && swift build --show-bin-path)/securenode}"
[[ -x "$bin" ]] || die "build first: swift build"
[[ -f "$DEFAULT_MODEL_FILE" ]] || die "default model missing: run scripts/setup.sh"
python="$SECURENODE_VENV/bin/python"; [[ -x "$python" ]] || python=python3

# Not under /tmp: the checks below scan /tmp, and the key file must live somewhere.
mkdir -p "$REPO/.state"
work=$(mktemp -d "$REPO/.state/e2e-confidential.XXXXXX")
marker="$work/started"; touch "$marker"
dev_tpm="" serve=""
cleanup() {
  [[ -n "$serve" ]] && kill "$serve" 2>/dev/null || true
  [[ -n "$dev_tpm" ]] && kill "$dev_tpm" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
passed=0 failed=0
ok() { passed=$((passed + 1)); printf 'ok   %s\n' "$1"; }
fail() { failed=$((failed + 1)); printf 'FAIL %s\n%s\n' "$1" "${2:-}"; }
# expect NAME STATUS PATTERN -- CMD...: the command exits with STATUS and its output matches PATTERN.
expect() {
  local name=$1 status=$2 pattern=$3; shift 4
  local out rc
  out=$("$@" 2>&1) && rc=0 || rc=$?
  if [[ $rc == "$status" ]] && grep -qE -- "$pattern" <<<"$out"; then ok "$name"; else fail "$name (exit $rc, wanted $status /$pattern/)" "$out"; fi
}

sig="$DEFAULT_MODEL_SIGNATURE" pub="$DEFAULT_MODEL_PUBLISHER_KEY" profile="$REPO/firmware-profiles/swtpm-dev.json"
enc="$work/enc" key="$work/model.key"

# 1. The publisher encrypts the model; the signature is copied unchanged.
expect "model encrypt writes the encrypted model and a fresh key" 0 '^encrypted .* 1 file\(s\), 98362432 bytes in 94 chunk\(s\)' -- \
  "$bin" model encrypt "$DEFAULT_MODEL_DIR" --out "$enc" --key-out "$key" --signature "$sig"
[[ $(stat -c %a "$key") == 600 && $(stat -c %s "$key") == 32 ]] && ok "the key file is 32 bytes, mode 0600" \
  || fail "the key file is 32 bytes, mode 0600" "$(stat -c '%a %s' "$key")"
cmp -s "$sig" "$enc/model.sig" && ok "the signature bundle is copied byte for byte" || fail "the signature bundle is copied byte for byte"
expect "the key is never written inside --out" 1 'inside --out' -- \
  "$bin" model encrypt "$DEFAULT_MODEL_DIR" --out "$work/enc2" --key-out "$work/enc2/model.key" --signature "$sig"
expect "an existing output is not overwritten" 1 'not an empty directory' -- \
  "$bin" model encrypt "$DEFAULT_MODEL_DIR" --out "$enc" --key "$key" --signature "$sig"
expect "keylime-policy reads the measurement from the encrypted model's signed manifest" 0 '^\{"15": \["[0-9a-f]{64}"\]\}$' -- \
  "$bin" keylime-policy --profile "$profile" --model "$enc" --signature "$enc/model.sig" --public-key "$pub"
plain_policy=$("$bin" keylime-policy --profile "$profile" --model "$DEFAULT_MODEL_DIR" --signature "$sig" --public-key "$pub")
[[ "$plain_policy" == "$("$bin" keylime-policy --profile "$profile" --model "$enc" --signature "$enc/model.sig" --public-key "$pub")" ]] \
  && ok "the encrypted model measures like the plaintext model (same PCR 15 value)" || fail "the encrypted model measures like the plaintext model"
expect "keylime-policy --key-release also accepts the unextended PCR" 0 '^\{"15": \["0{64}", "[0-9a-f]{64}"\]\}$' -- \
  "$bin" keylime-policy --profile "$profile" --model "$enc" --signature "$enc/model.sig" --public-key "$pub" --key-release

# 2. The reference: the plaintext model's greedy output.
prompt="The capital of France is"
# The node below runs with the default limits (four slots), so it decodes as prompt rows (limits.decoding).
reference=$("$bin" generate --model "$DEFAULT_MODEL_DIR" --signature "$sig" --public-key "$pub" --prompt "$prompt" --max-tokens 24 --json \
  --decoding prompt-rows)
reference_text=$("$python" -c 'import json,sys; print(json.loads(sys.argv[1])["text"])' "$reference")

# 3. A software TPM; the data key sealed to the profile's seal PCRs.
export SECURENODE_STATE_DIR="$work/state"
mkdir -p "$SECURENODE_STATE_DIR" "$work/tmp" && chmod 700 "$SECURENODE_STATE_DIR" "$work/tmp"
start_dev_tpm "$bin" "$work"
expect "the data key is sealed to the profile's seal PCRs" 0 '^sealed 32 bytes to PCRs' -- \
  "$bin" seal --tcti "$tcti" --profile "$profile" --in "$key" --out "$work/model-key.sealed.json"
head -c 32 /dev/urandom > "$work/wrong.key"
"$bin" seal --tcti "$tcti" --profile "$profile" --in "$work/wrong.key" --out "$work/wrong-key.sealed.json" > /dev/null
rm -f "$work/wrong.key"

serve_args=(serve --tcti "$tcti" --profile "$profile" --signature "$enc/model.sig" --public-key "$pub" --port 0 --model-id smollm2)
# A refusal happens before anything is measured: PCR 15 stays as sealed for the next attempt.
refuse() { # NAME PATTERN MODEL_DIR SEALED
  expect "$1" 1 "$2" -- env TMPDIR="$work/tmp" "$bin" "${serve_args[@]}" --model "$3" --model-key-sealed "$4"
}
refuse "serve refuses the wrong key" 'key check value differs' "$enc" "$work/wrong-key.sealed.json"
expect "serve refuses a plaintext model with a key configured" 1 'not encrypted' -- \
  "$bin" "${serve_args[@]}" --model "$DEFAULT_MODEL_DIR" --signature "$sig" --model-key-sealed "$work/model-key.sealed.json"
expect "serve refuses an encrypted model without a key" 1 'is encrypted' -- "$bin" "${serve_args[@]}" --model "$enc"
variant() { rm -rf "$work/variant"; cp -a "$enc" "$work/variant"; chmod -R u+w "$work/variant"; }
variant; printf '\x01' | dd of="$work/variant/file-0.bin" bs=1 seek=50000000 conv=notrunc status=none
refuse "serve refuses a tampered chunk, naming it" 'chunk 48 of 94 of SmolLM2-135M-Instruct.Q4_1.gguf .* does not authenticate' \
  "$work/variant" "$work/model-key.sealed.json"
variant; truncate -s -1000 "$work/variant/file-0.bin"
refuse "serve refuses a truncated model" 'truncated' "$work/variant" "$work/model-key.sealed.json"
variant; "$python" - "$work/variant/file-0.bin" <<'PY'
import sys
path = sys.argv[1]; size = (1 << 20) + 16
data = open(path, "rb").read()
open(path, "wb").write(data[size:2 * size] + data[:size] + data[2 * size:])
PY
refuse "serve refuses reordered chunks" 'chunk 1 of 94 .* does not authenticate' "$work/variant" "$work/model-key.sealed.json"
variant; rm "$work/variant/file-0.bin"
refuse "serve refuses a missing ciphertext file" 'lacks file-0.bin' "$work/variant" "$work/model-key.sealed.json"
variant; "$python" - "$work/variant/encrypted-model.json" <<'PY'
import json, sys
path = sys.argv[1]; header = json.load(open(path)); header["chunkBytes"] = 2097152
json.dump(header, open(path, "w"))
PY
refuse "serve refuses an edited header" 'header was changed' "$work/variant" "$work/model-key.sealed.json"
rm -rf "$work/variant"
printf '{"schema": "securenode.revocation.v1", "reason": "revoked by the Keylime verifier (test)", "revokedAt": "2026-01-01T00:00:00Z"}' \
  > "$SECURENODE_STATE_DIR/revocation.json"
refuse "a revoked node refuses to decrypt" 'revoked and refuses to decrypt' "$enc" "$work/model-key.sealed.json"
"$bin" revocation clear --state-dir "$SECURENODE_STATE_DIR" > /dev/null

# 4. Serve with the sealed key: the decrypted model answers exactly as the plaintext model.
TMPDIR="$work/tmp" "$bin" "${serve_args[@]}" --model "$enc" --model-key-sealed "$work/model-key.sealed.json" 2> "$work/serve.log" &
serve=$!
port=""
for _ in $(seq 1 600); do
  port=$(sed -n 's|.*serving.* on http://127.0.0.1:\([0-9]*\).*|\1|p' "$work/serve.log" | head -n1)
  [[ -n "$port" ]] && break
  kill -0 "$serve" 2>/dev/null || break
  sleep 0.1
done
if [[ -n "$port" ]]; then
  ok "serve decrypts, verifies, measures and serves the encrypted model with the sealed key"
  expect "readyz" 0 '"status":"ready"' -- curl -sf "http://127.0.0.1:$port/readyz"
  body=$("$python" -c 'import json,sys; print(json.dumps({"model": "smollm2", "prompt": sys.argv[1], "max_tokens": 24, "temperature": 0}))' "$prompt")
  answer=$(curl -sf "http://127.0.0.1:$port/v1/completions" -H 'Content-Type: application/json' -d "$body")
  served_text=$("$python" -c 'import json,sys; print(json.loads(sys.argv[1])["choices"][0]["text"])' "$answer")
  if [[ "$served_text" == "$reference_text" ]]; then ok "greedy output equals the plaintext model's (generate): $(printf %q "$served_text")"
  else fail "greedy output equals the plaintext model's" "served: $served_text / plaintext: $reference_text"; fi
  nonce=$(openssl rand -hex 16)
  curl -sf "http://127.0.0.1:$port/v1/attestation?nonce=$nonce" > "$work/evidence.json"
  root=$("$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["model"]["manifestRoot"])' "$work/evidence.json")
  plain_root=$("$bin" model verify "$DEFAULT_MODEL_DIR" --signature "$sig" --public-key "$pub" | sed -n 's/.*root sha256:\([0-9a-f]*\).*/\1/p')
  [[ "$root" == "$plain_root" ]] && ok "the evidence names the plaintext model's manifest root" || fail "the evidence names the plaintext model's manifest root" "$root vs $plain_root"
  if grep -E '\.gguf|/enc/' "/proc/$serve/maps" > /dev/null || ls -l "/proc/$serve/fd" | grep -E '\.gguf|file-0\.bin' > /dev/null; then
    fail "the node maps and holds no model file (only anonymous memory)" "$(grep -E 'gguf|enc' "/proc/$serve/maps")"
  else
    ok "the node maps and holds no model file (only anonymous memory)"
  fi
  kill "$serve"; wait "$serve" 2>/dev/null || true; serve=""
else
  fail "serve decrypts, verifies, measures and serves the encrypted model with the sealed key" "$(tail -20 "$work/serve.log")"
fi

# 5. Sealed to the state before the model was measured: after a restart (PCR 15 now holds the
# model's measurement) the key stays sealed unless the publisher approved that state.
expect "after a restart without approval the sealed key stays sealed (PCR 15 changed)" 1 'no longer hold the values' -- \
  "$bin" "${serve_args[@]}" --model "$enc" --model-key-sealed "$work/model-key.sealed.json"

# 6. Nothing of the model or the key in the state directory, the logs, the node's TMPDIR, or /tmp (the
# test's own directory, which holds the publisher's key file and is checked by the first line, is left out
# of the /tmp scan: a checkout under /tmp, as CI's, puts it there).
kill "$dev_tpm"; wait "$dev_tpm" 2>/dev/null || true; dev_tpm=""
expect "no GGUF magic, model bytes or key in the state directory, logs and the node's TMPDIR" 0 '^no leaks' -- \
  "$python" "$REPO/Tests/confidential/no_leaks.py" --model "$DEFAULT_MODEL_FILE" --key "$key" \
  "$SECURENODE_STATE_DIR" "$work/tmp" "$work/serve.log" "$work/dev-tpm.log"
expect "... nor in any file that appeared in /tmp meanwhile" 0 '^no leaks' -- \
  "$python" "$REPO/Tests/confidential/no_leaks.py" --model "$DEFAULT_MODEL_FILE" --key "$key" --newer "$marker" \
  --exclude "$work" /tmp

# The checker itself must see a leak: a planted model prefix and the key in hex.
mkdir -p "$work/control"; head -c 4096 "$DEFAULT_MODEL_FILE" > "$work/control/planted"; od -An -tx1 "$key" | tr -d ' \n' > "$work/control/key.txt"
expect "control: the leak check finds a planted model prefix and the key in hex" 1 '^3 leak\(s\) in 2 files' -- \
  "$python" "$REPO/Tests/confidential/no_leaks.py" --model "$DEFAULT_MODEL_FILE" --key "$key" "$work/control"

echo "e2e-confidential: $passed passed, $failed failed"
[[ $failed == 0 ]]
