#!/usr/bin/env bash
# End-to-end checks of the securenode command line on the real default model, with the real
# model_signing tool as the independent checker. Prints "e2e: N passed, M failed"; exits 1 on failure.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
export PATH="$SECURENODE_VENV/bin:$PATH"
bin="$(cd "$REPO" && swift build --show-bin-path)/securenode"
[[ -x "$bin" ]] || die "build first: swift build"
[[ -f "$DEFAULT_MODEL_FILE" ]] || die "default model missing: run scripts/setup.sh"

work=$(mktemp -d)
serve="" dev_tpm=""
trap 'rm -rf "$work"' EXIT
passed=0 failed=0

# expect NAME STATUS PATTERN -- CMD...: the command exits with STATUS and its output matches PATTERN.
expect() {
  local name=$1 status=$2 pattern=$3; shift 4
  local out rc
  out=$("$@" 2>&1) && rc=0 || rc=$?
  if [[ $rc == "$status" ]] && grep -qE -- "$pattern" <<<"$out"; then
    passed=$((passed + 1)); printf 'ok   %s\n' "$name"
  else
    failed=$((failed + 1)); printf 'FAIL %s (exit %s, wanted %s /%s/)\n%s\n' "$name" "$rc" "$status" "$pattern" "$out"
  fi
}

sig="$DEFAULT_MODEL_SIGNATURE" pub="$DEFAULT_MODEL_PUBLISHER_KEY"
expect "default model verifies" 0 '^verified .* 1 file\(s\), 98362432 bytes' -- \
  "$bin" model verify "$DEFAULT_MODEL_DIR" --signature "$sig" --public-key "$pub"
expect "model_signing accepts the committed bundle" 0 'Verification succeeded' -- \
  model_signing verify key "$DEFAULT_MODEL_DIR" --signature "$sig" --public_key "$pub"
expect "inspect verifies, loads and describes the model" 0 'architecture +llama' -- \
  "$bin" model inspect "$DEFAULT_MODEL_DIR" --signature "$sig" --public-key "$pub"

# A copy of the model with one byte changed, an extra file, a missing file.
mkdir -p "$work/m/$DEFAULT_MODEL_NAME"
copy="$work/m/$DEFAULT_MODEL_NAME"
cp "$DEFAULT_MODEL_FILE" "$copy/"
chmod u+w "$copy/"*.gguf
printf '\x01' | dd of="$copy/SmolLM2-135M-Instruct.Q4_1.gguf" bs=1 seek=50000000 conv=notrunc status=none
expect "a changed byte is refused" 1 'content changed in SmolLM2-135M-Instruct.Q4_1.gguf' -- \
  "$bin" model verify "$copy" --signature "$sig" --public-key "$pub"
expect "inspect refuses it too, before parsing" 1 'content changed' -- \
  "$bin" model inspect "$copy" --signature "$sig" --public-key "$pub"
cp "$DEFAULT_MODEL_FILE" "$copy/"
echo extra > "$copy/notes.txt"
expect "an extra file is refused" 1 'extra files not in the signed manifest: notes.txt' -- \
  "$bin" model verify "$copy" --signature "$sig" --public-key "$pub"
rm "$copy/notes.txt"; mv "$copy/SmolLM2-135M-Instruct.Q4_1.gguf" "$copy/renamed.gguf"
expect "a renamed file is refused" 1 'renamed' -- \
  "$bin" model verify "$copy" --signature "$sig" --public-key "$pub"
rm "$copy/renamed.gguf"; ln -s "$DEFAULT_MODEL_FILE" "$copy/SmolLM2-135M-Instruct.Q4_1.gguf"
expect "a symlink is refused" 1 'symbolic link' -- \
  "$bin" model verify "$copy" --signature "$sig" --public-key "$pub"

# Wrong key, garbage bundle, missing files, bad arguments.
openssl ecparam -name prime256v1 -genkey -noout -out "$work/test-only-key.pem" 2>/dev/null
openssl ec -in "$work/test-only-key.pem" -pubout -out "$work/other.pub.pem" 2>/dev/null
expect "a wrong key is refused" 1 'signed with another key' -- \
  "$bin" model verify "$DEFAULT_MODEL_DIR" --signature "$sig" --public-key "$work/other.pub.pem"
echo '{"mediaType":' > "$work/garbage.sig"
expect "a malformed bundle is refused" 1 'not valid JSON' -- \
  "$bin" model verify "$DEFAULT_MODEL_DIR" --signature "$work/garbage.sig" --public-key "$pub"
expect "a missing bundle is refused" 1 'cannot read the signature bundle' -- \
  "$bin" model verify "$DEFAULT_MODEL_DIR" --signature "$work/none.sig" --public-key "$pub"
expect "both trust options at once is a usage error" 64 'exactly one of --public-key or --certificate-chain' -- \
  "$bin" model verify "$DEFAULT_MODEL_DIR" --signature "$sig" --public-key "$pub" --certificate-chain "$pub"

# Signed but not a valid GGUF: verification passes, loading refuses with the field named.
mkdir -p "$work/bad"
head -c 4096 "$DEFAULT_MODEL_FILE" > "$work/bad/truncated.gguf"
expect "we sign a directory" 0 '^signed ' -- \
  "$bin" model sign "$work/bad" --private-key "$work/test-only-key.pem" --signature "$work/bad.sig"
expect "model_signing verifies our bundle" 0 'Verification succeeded' -- \
  model_signing verify key "$work/bad" --signature "$work/bad.sig" --public_key "$work/other.pub.pem"
expect "a truncated GGUF is refused with the field named" 1 'GGUF' -- \
  "$bin" model inspect "$work/bad" --signature "$work/bad.sig" --public-key "$work/other.pub.pem"

# The node on a software TPM: dev-tpm, measure and quote from the command line, then serve,
# enroll over HTTP, and verify evidence with the enrollment record.
export SECURENODE_STATE_DIR="$work/state"
profile="$REPO/firmware-profiles/swtpm-dev.json"
# A prompt long enough for a BLAS pass (OpenBLAS sgemm), with the AVX-512 family forced: on a CPU with
# AVX-512 it runs as is; on one without, the node drops the variable and re-executes instead of dying
# of SIGILL at its first sgemm (BLAS.coreTypeAction).
long_prompt=$(printf 'the quick brown fox jumps over the lazy dog %.0s' $(seq 1 20))
if grep -qw avx512f /proc/cpuinfo; then coretype_note='^'; else coretype_note='OPENBLAS_CORETYPE=SkylakeX selects OpenBLAS.s AVX-512 kernels'; fi
expect "generate survives OPENBLAS_CORETYPE=SkylakeX on any CPU (BLAS prompt pass)" 0 "$coretype_note" -- \
  env OPENBLAS_CORETYPE=SkylakeX "$bin" generate --model "$DEFAULT_MODEL_DIR" --signature "$sig" --public-key "$pub" \
  --prompt "$long_prompt" --max-tokens 4
expect "generate refuses an unknown --decoding by name" 64 "The value 'fast' is invalid for '--decoding" -- \
  "$bin" generate --model "$DEFAULT_MODEL_DIR" --signature "$sig" --public-key "$pub" --prompt hi --decoding fast

"$bin" dev-tpm > "$work/tcti" 2> "$work/dev-tpm.log" &
dev_tpm=$!
trap 'kill $dev_tpm $serve 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 200); do [[ -s "$work/tcti" ]] && break; sleep 0.05; done
tcti=$(head -n1 "$work/tcti")
expect "profile check" 0 'profile swtpm-dev is valid' -- "$bin" profile check "$profile"
expect "measure the default model" 0 '"pcr":15' -- \
  "$bin" measure --tcti "$tcti" --profile "$profile" --model "$DEFAULT_MODEL_DIR" --signature "$sig" --public-key "$pub"
nonce=$(openssl rand -hex 16)
expect "quote from the command line" 0 '"quote"' -- "$bin" quote --tcti "$tcti" --profile "$profile" --nonce "$nonce"
"$bin" serve --tcti "$tcti" --profile "$profile" --model "$DEFAULT_MODEL_DIR" --signature "$sig" --public-key "$pub" \
  --port 0 2> "$work/serve.log" &
serve=$!
port=""
for _ in $(seq 1 300); do
  port=$(sed -n 's|.*serving.* on http://127.0.0.1:\([0-9]*\).*|\1|p' "$work/serve.log" | head -n1)
  [[ -n "$port" ]] && break; sleep 0.1
done
expect "readyz after verify, measure and load" 0 '"status":"ready"' -- curl -sf "http://127.0.0.1:$port/readyz"
expect "enroll the node's AK" 0 '^enrolled AK' -- \
  "$bin" enroll --node "http://127.0.0.1:$port" --profile "$profile" --out "$work/enrolled.json"
nonce=$(openssl rand -hex 16)
curl -sf "http://127.0.0.1:$port/v1/attestation?nonce=$nonce" > "$work/evidence.json"
expect "verify accepts enrolled evidence" 0 '"result" : "pass"' -- \
  "$bin" verify --evidence "$work/evidence.json" --nonce "$nonce" --profile "$profile" --enrolled "$work/enrolled.json"
expect "verify refuses it for another nonce" 1 'stale or replayed' -- \
  "$bin" verify --evidence "$work/evidence.json" --nonce "$(openssl rand -hex 16)" --profile "$profile" --enrolled "$work/enrolled.json"
expect "verify refuses it without enrollment" 1 'neither enrolled nor listed' -- \
  "$bin" verify --evidence "$work/evidence.json" --nonce "$nonce" --profile "$profile"
expect "a bad nonce is a 400 in OpenAI's error shape" 0 '"code":400' -- curl -s "http://127.0.0.1:$port/v1/attestation?nonce=xyz"
kill "$serve" "$dev_tpm" || true; wait "$serve" "$dev_tpm" 2>/dev/null || true

echo "e2e: $passed passed, $failed failed"
[[ $failed == 0 ]]
