#!/usr/bin/env bash
# End-to-end tests of the attested channel: `securenode serve` over TLS on a software TPM with a
# self-signed certificate made here (its key measured into the evidence), `securenode verify
# --tls-certificate`, `securenode enroll` over https (the self-signed certificate accepted only because
# the evidence binds its key), then Tests/service/test_proxy.py: the unchanged `openai` client against
# `securenode proxy` (chat, streaming, the node's errors, metrics), a man in the middle with another
# certificate, a tampering relay, and the node restarted with a model its profile does not allow.
# Stops every process it started.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
export PATH="$SECURENODE_VENV/bin:$PATH"
bin="${SECURENODE_BIN:-$(cd "$REPO" && swift build --show-bin-path)/securenode}"
[[ -x "$bin" ]] || die "build first: swift build"
[[ -f "$DEFAULT_MODEL_FILE" ]] || die "default model missing: run scripts/setup.sh"

work=$(mktemp -d)
dev_tpm="" serve=""
cleanup() {
  [[ -n "$serve" ]] && kill "$serve" 2>/dev/null || true
  [[ -f "$work/serve-model2.pid" ]] && kill "$(cat "$work/serve-model2.pid")" 2>/dev/null || true
  [[ -n "$dev_tpm" ]] && kill "$dev_tpm" 2>/dev/null || true
  [[ -n "$serve" ]] && wait "$serve" 2>/dev/null || true
  [[ -n "$dev_tpm" ]] && wait "$dev_tpm" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

export SECURENODE_STATE_DIR="$work/state"
mkdir -p "$SECURENODE_STATE_DIR" && chmod 700 "$SECURENODE_STATE_DIR"
start_dev_tpm "$bin" "$work"

# Two self-signed certificates for 127.0.0.1: the node's, and a man in the middle's.
for who in node mitm; do
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/$who.key" -out "$work/$who.crt" \
    -days 1 -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" 2>/dev/null
done
node_key_sha256=$(openssl x509 -in "$work/node.crt" -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1)

api_key="sk-test-$(openssl rand -hex 16)"
printf '%s\n' "$api_key" > "$work/api-key" && chmod 600 "$work/api-key"
key_hash=$(printf '%s' "$api_key" | sha256sum | cut -d' ' -f1)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
profile="$REPO/firmware-profiles/swtpm-dev.json"
cat > "$work/securenode.yaml" <<YAML
profile: $profile
model:
  id: smollm2-135m-instruct
server:
  host: 127.0.0.1
  port: $port
  tls:
    certificate: $work/node.crt
    private_key: $work/node.key
auth:
  api_key_sha256: ["$key_hash"]
limits:
  max_tokens: 256
  context_length: 1024
  parallel: 2
  threads: 2
YAML
serve_args=("$bin" serve --config "$work/securenode.yaml" --tcti "$tcti")
model1=(--model "$DEFAULT_MODEL_DIR" --signature "$DEFAULT_MODEL_SIGNATURE" --public-key "$DEFAULT_MODEL_PUBLISHER_KEY")
"${serve_args[@]}" "${model1[@]}" > "$work/serve.log" 2>&1 &
serve=$!
base="https://127.0.0.1:$port"
for _ in $(seq 1 600); do
  curl -fsk "$base/readyz" > /dev/null 2>&1 && break
  kill -0 "$serve" 2>/dev/null || { cat "$work/serve.log"; die "serve exited"; }
  sleep 0.1
done
curl -fsk "$base/readyz" > /dev/null || { cat "$work/serve.log"; die "the node did not become ready"; }

ok=0 failed=0
check() { local what=$1; shift; if "$@" > "$work/check.out" 2>&1; then ok=$((ok + 1)); else failed=$((failed + 1)); echo "FAIL $what"; cat "$work/check.out"; fi; }

# verify --tls-certificate: the evidence binds the node's certificate, not another.
nonce=$(openssl rand -hex 16)
curl -fsk "$base/v1/attestation?nonce=$nonce" > "$work/evidence.json"
check "the evidence names the served certificate's key" grep -q "\"tlsKeySHA256\":\"$node_key_sha256\"" "$work/evidence.json"
# Enroll over https: no CA signed the node's certificate; the appraised evidence binds its key.
check "enroll accepts the self-signed certificate the evidence binds" bash -c \
  "'$bin' enroll --node '$base' --profile '$profile' --out '$work/enrolled.json' | grep -q 'is the one its evidence binds'"
check "verify --tls-certificate accepts the node's certificate" \
  "$bin" verify --evidence "$work/evidence.json" --nonce "$nonce" --profile "$profile" --enrolled "$work/enrolled.json" --tls-certificate "$work/node.crt"
check "verify --tls-certificate refuses another certificate" bash -c \
  "! '$bin' verify --evidence '$work/evidence.json' --nonce '$nonce' --profile '$profile' --enrolled '$work/enrolled.json' --tls-certificate '$work/mitm.crt' > '$work/verify-mitm.json' && grep -q 'not the attested node.s certificate' '$work/verify-mitm.json'"
check "the proxy refuses plain HTTP without the development flag" bash -c \
  "'$bin' proxy --node 'http://127.0.0.1:$port' --profile '$profile' --enrolled '$work/enrolled.json' 2>&1 | grep -q 'never downgrades'"
echo "channel checks: $ok passed, $failed failed"

# A second model: the same weights under another name, signed by a key the profile does not name.
mkdir -p "$work/model2"
cp "$DEFAULT_MODEL_FILE" "$work/model2/other-model.gguf"
openssl ecparam -name prime256v1 -genkey -noout -out "$work/model2.key" 2>/dev/null
openssl ec -in "$work/model2.key" -pubout -out "$work/model2.pub" 2>/dev/null
"$bin" model sign "$work/model2" --private-key "$work/model2.key" --signature "$work/model2.sig" > /dev/null

json_array() { python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@"; }
export NODE_URL="$base" NODE_API_KEY_FILE="$work/api-key" NODE_PROFILE="$profile" ENROLLED="$work/enrolled.json"
export SECURENODE_BIN="$bin" NODE_WORK="$work" NODE_PID="$serve" NODE_CERT="$work/node.crt" NODE_KEY="$work/node.key"
export MITM_CERT="$work/mitm.crt" MITM_KEY="$work/mitm.key" NODE_TLS_KEY_SHA256="$node_key_sha256"
export NODE_SERVE_ARGS="$(json_array "${serve_args[@]}")"
export MODEL2_ARGS="$(json_array --model "$work/model2" --signature "$work/model2.sig" --public-key "$work/model2.pub")"
rc=0
if ! "$SECURENODE_VENV/bin/python" "$REPO/Tests/service/test_proxy.py"; then
  rc=1
  echo "---- serve log (tail) ----"; tail -20 "$work/serve.log"
fi

# The whole chain with the node's own key: `server.tls: {}` serves the TPM-sealed api-tls key (README "Node
# keys"), the evidence binds it, and the proxy forwards a completion only over that attested certificate.
kill "$serve" 2>/dev/null || true; wait "$serve" 2>/dev/null || true; serve=""
if [[ -f "$work/serve-model2.pid" ]]; then
  model2_pid=$(cat "$work/serve-model2.pid"); rm -f "$work/serve-model2.pid"
  kill "$model2_pid" 2>/dev/null || true
  for _ in $(seq 1 300); do kill -0 "$model2_pid" 2>/dev/null || break; sleep 0.1; done
fi
# A reboot of the software TPM first: PCR 15's history holds the disallowed model of the test above, which
# the appraisal rightly refuses (the node keys are sealed to PCRs 0, 2, 4, 7 and the AK is persistent).
kill "$dev_tpm" 2>/dev/null || true; wait "$dev_tpm" 2>/dev/null || true
start_dev_tpm "$bin" "$work"
sed -e "s|certificate: $work/node.crt|{}|" -e "/private_key: /d" -e "s|^  tls:$|  tls: {}|" "$work/securenode.yaml" \
  | sed -e '/^  tls: {}$/{n;/^    {}$/d}' > "$work/securenode-nodekey.yaml"
grep -q '^  tls: {}$' "$work/securenode-nodekey.yaml" || die "could not write the tls: {} configuration"
"$bin" serve --config "$work/securenode-nodekey.yaml" --tcti "$tcti" "${model1[@]}" > "$work/serve-nodekey.log" 2>&1 &
serve=$!
for _ in $(seq 1 600); do
  curl -fsk "$base/readyz" > /dev/null 2>&1 && break
  kill -0 "$serve" 2>/dev/null || { cat "$work/serve-nodekey.log"; die "serve with tls: {} exited"; }
  sleep 0.1
done
nodekey_ok=0 nodekey_failed=0
nodekey_check() { local what=$1; shift; if "$@" > "$work/check.out" 2>&1; then nodekey_ok=$((nodekey_ok + 1)); else nodekey_failed=$((nodekey_failed + 1)); echo "FAIL $what"; cat "$work/check.out"; fi; }
node_cert="$SECURENODE_STATE_DIR/keys/api-tls.crt.pem"
nodekey_check "serve with tls: {} made the node's certificate" test -s "$node_cert"
nodekey_sha256=$(openssl x509 -in "$node_cert" -pubkey -noout 2>/dev/null | openssl pkey -pubin -outform DER 2>/dev/null | sha256sum | cut -d' ' -f1)
nonce=$(openssl rand -hex 16)
curl -fsk "$base/v1/attestation?nonce=$nonce" > "$work/evidence-nodekey.json" || true
nodekey_check "the evidence binds the node's TPM-kept TLS key" grep -q "\"tlsKeySHA256\":\"$nodekey_sha256\"" "$work/evidence-nodekey.json"
nodekey_check "enroll over https accepts the node's self-signed certificate (bound by the evidence)" bash -c \
  "'$bin' enroll --node '$base' --profile '$profile' --out '$work/enrolled-nodekey.json' | grep -q 'is the one its evidence binds'"
proxy_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" proxy --node "$base" --profile "$profile" --enrolled "$work/enrolled-nodekey.json" --listen "127.0.0.1:$proxy_port" \
  --api-key-file "$work/api-key" > "$work/proxy-nodekey.log" 2>&1 &
proxy_pid=$!
for _ in $(seq 1 300); do curl -fs "http://127.0.0.1:$proxy_port/healthz" > /dev/null 2>&1 && break; sleep 0.1; done
nodekey_check "a completion through the proxy to the node serving its TPM-kept key" bash -c \
  "curl -fsS 'http://127.0.0.1:$proxy_port/v1/chat/completions' -H 'Content-Type: application/json' \
     -d '{\"model\":\"smollm2-135m-instruct\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hi\"}],\"max_tokens\":8,\"temperature\":0}' \
   | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r[\"choices\"][0][\"message\"][\"content\"], r'"
kill "$proxy_pid" 2>/dev/null || true; wait "$proxy_pid" 2>/dev/null || true
echo "node-key channel checks: $nodekey_ok passed, $nodekey_failed failed"
[[ $nodekey_failed == 0 ]] || { rc=1; echo "---- proxy log ----"; tail -20 "$work/proxy-nodekey.log"; echo "---- serve log ----"; tail -20 "$work/serve-nodekey.log"; }

[[ $failed == 0 ]] || rc=1
exit $rc
