#!/usr/bin/env bash
# End-to-end tests of `securenode serve` with the official `openai` Python client (PyPI), against a
# software TPM and the real default model: Tests/service/test_openai_api.py. Starts a swtpm
# (`securenode dev-tpm`) and the node with a configuration file that sets API key hashes and small
# limits, runs the suite (which ends by sending SIGTERM and checking the drain), and stops every
# process it started.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
export PATH="$SECURENODE_VENV/bin:$PATH"
bin="$(cd "$REPO" && swift build --show-bin-path)/securenode"
[[ -x "$bin" ]] || die "build first: swift build"
[[ -f "$DEFAULT_MODEL_FILE" ]] || die "default model missing: run scripts/setup.sh"

work=$(mktemp -d)
dev_tpm="" serve=""
cleanup() {
  [[ -n "$serve" ]] && kill "$serve" 2>/dev/null || true
  [[ -n "$dev_tpm" ]] && kill "$dev_tpm" 2>/dev/null || true
  # The outage test restarts swtpm itself (same state, same ports).
  [[ -f "$work/restarted-swtpm.pid" ]] && kill "$(cat "$work/restarted-swtpm.pid")" 2>/dev/null || true
  [[ -n "$serve" ]] && wait "$serve" 2>/dev/null || true
  [[ -n "$dev_tpm" ]] && wait "$dev_tpm" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

export SECURENODE_STATE_DIR="$work/state"
mkdir -p "$SECURENODE_STATE_DIR" && chmod 700 "$SECURENODE_STATE_DIR"
start_dev_tpm "$bin" "$work"

api_key="sk-test-$(openssl rand -hex 16)"
key_hash=$(printf '%s' "$api_key" | sha256sum | cut -d' ' -f1)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/securenode.yaml" <<YAML
profile: $REPO/firmware-profiles/swtpm-dev.json
model:
  id: smollm2-135m-instruct
  path: $DEFAULT_MODEL_DIR
  signature: $DEFAULT_MODEL_SIGNATURE
  public_key: $DEFAULT_MODEL_PUBLISHER_KEY
server:
  host: 127.0.0.1
  port: $port
auth:
  api_key_sha256: ["$key_hash"]
  open_health: true
  open_metrics: true
limits:
  max_body_bytes: 65536
  max_prompt_tokens: 512
  max_tokens: 256
  context_length: 1024
  parallel: 2
  queue_depth: 2
  drain_seconds: 20
  threads: 2
YAML
chmod 600 "$work/securenode.yaml"

"$bin" serve --config "$work/securenode.yaml" --tcti "$tcti" > "$work/serve.log" 2>&1 &
serve=$!
for _ in $(seq 1 600); do
  curl -fs "http://127.0.0.1:$port/readyz" > /dev/null 2>&1 && break
  kill -0 "$serve" 2>/dev/null || { cat "$work/serve.log"; die "serve exited"; }
  sleep 0.1
done
curl -fs "http://127.0.0.1:$port/readyz" > /dev/null || { cat "$work/serve.log"; die "the node did not become ready"; }

export NODE_URL="http://127.0.0.1:$port" NODE_API_KEY="$api_key" NODE_PID="$serve" NODE_LOG="$work/serve.log"
export SECURENODE_BIN="$bin" NODE_TCTI="$tcti" NODE_WORK="$work" NODE_PROFILE="$REPO/firmware-profiles/swtpm-dev.json"
if "$SECURENODE_VENV/bin/python" "$REPO/Tests/service/test_openai_api.py"; then
  rc=0
else
  rc=1
  echo "---- serve log (tail) ----"; tail -40 "$work/serve.log"
fi
# The suite ends with SIGTERM; the node must have exited.
wait "$serve" 2>/dev/null || true
serve=""

# Tools: the same model served with Qwen2.5's chat template (model.chat_template), which renders
# tools; the openai client's tool calls (required, named, streamed, with history) against it.
# A copy, because a test rewrites it while the node runs (the node must keep serving what it measured).
# This node decodes one token at a time (limits.decoding: one-token; the first node decodes as prompt
# rows and keeps answers, the default with several slots), so it warms answers while idle instead.
template="$work/chat-template.jinja"
cp "$REPO/Tests/GenerationTests/Fixtures/ChatTemplates/Qwen-Qwen2.5-7B-Instruct.jinja" "$template"
sed -e "s|^  public_key: .*|&\n  chat_template: $template|" -e "s|^  threads: 2$|&\n  decoding: one-token|" \
  "$work/securenode.yaml" > "$work/tools.yaml"
grep -q '^  decoding: one-token' "$work/tools.yaml" || die "could not write the decoding setting"
grep -q '^  chat_template: ' "$work/tools.yaml" || die "could not write the tools configuration"
"$bin" serve --config "$work/tools.yaml" --tcti "$tcti" > "$work/serve-tools.log" 2>&1 &
serve=$!
for _ in $(seq 1 600); do
  curl -fs "http://127.0.0.1:$port/readyz" > /dev/null 2>&1 && break
  kill -0 "$serve" 2>/dev/null || { cat "$work/serve-tools.log"; die "serve (tools) exited"; }
  sleep 0.1
done
export NODE_PID="$serve" NODE_LOG="$work/serve-tools.log" NODE_TOOLS=1 NODE_CHAT_TEMPLATE="$template" NODE_DECODING=one-token
if ! "$SECURENODE_VENV/bin/python" "$REPO/Tests/service/test_openai_api.py" test_schema_features_and_tools_refused_by_name \
    test_tool_choice_required_gives_calls_that_validate test_tool_choice_named_calls_that_function \
    test_tool_calls_streamed_as_deltas_equal_the_whole_answer test_tool_history_renders_and_auto_answers \
    test_tool_receipt_verifies_with_verify_receipt test_chat_next_turn_reuses_the_kept_answer \
    test_chat_next_turn_reuses_the_warmed_answer test_completion_greedy_equals_the_engine_alone \
    test_serves_the_measured_template_after_the_file_changes; then
  rc=1
  echo "---- serve (tools) log (tail) ----"; tail -40 "$work/serve-tools.log"
fi
unset NODE_TOOLS NODE_CHAT_TEMPLATE NODE_DECODING
kill "$serve" 2>/dev/null || true
wait "$serve" 2>/dev/null || true
serve=""

# TLS and mutual TLS: a CA, a server certificate for 127.0.0.1, a client certificate; the node
# (restarted on the same software TPM, now free) requires a client certificate from that CA.
tls="$work/tls"
mkdir -p "$tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tls/ca.key" -out "$tls/ca.crt" \
  -days 1 -subj "/CN=SecureNode test CA" 2>/dev/null
for who in server client; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tls/$who.key" -out "$tls/$who.csr" -subj "/CN=$who" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=%s\n' "$([[ $who == server ]] && echo serverAuth || echo clientAuth)" > "$tls/$who.ext"
  openssl x509 -req -in "$tls/$who.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial -days 1 \
    -extfile "$tls/$who.ext" -out "$tls/$who.crt" 2>/dev/null
done
sed -i "s|^  port: $port|  port: $port\n  max_connections: 16\n  tls_handshake_timeout_seconds: 2\n  tls:\n    certificate: $tls/server.crt\n    private_key: $tls/server.key\n    client_ca: $tls/ca.crt|" "$work/securenode.yaml"
"$bin" serve --config "$work/securenode.yaml" --tcti "$tcti" > "$work/serve-tls.log" 2>&1 &
serve=$!
base="https://127.0.0.1:$port"
for _ in $(seq 1 600); do
  curl -fs --cacert "$tls/ca.crt" --cert "$tls/client.crt" --key "$tls/client.key" "$base/readyz" > /dev/null 2>&1 && break
  kill -0 "$serve" 2>/dev/null || { cat "$work/serve-tls.log"; die "serve (TLS) exited"; }
  sleep 0.1
done
tls_ok=0 tls_failed=0
check() { if "$@"; then tls_ok=$((tls_ok + 1)); else tls_failed=$((tls_failed + 1)); echo "FAIL tls: $*"; fi; }
body=$(curl -fs --cacert "$tls/ca.crt" --cert "$tls/client.crt" --key "$tls/client.key" -H "Authorization: Bearer $api_key" \
  "$base/v1/completions" -d '{"model":"smollm2-135m-instruct","prompt":"Hello","max_tokens":4,"temperature":0}' || true)
check grep -q '"text_completion"' <<<"$body"
# No client certificate: the handshake is refused.
check bash -c "! curl -fs --cacert '$tls/ca.crt' '$base/healthz' > /dev/null 2>&1"
# Plain HTTP to the TLS port gets no HTTP answer.
check bash -c "! curl -fs 'http://127.0.0.1:$port/healthz' > /dev/null 2>&1"
# The openai client over mutual TLS.
check env SSL_CERT_FILE="$tls/ca.crt" "$SECURENODE_VENV/bin/python" -c "
import openai, ssl, sys
context = ssl.create_default_context(cafile='$tls/ca.crt')
context.load_cert_chain('$tls/client.crt', '$tls/client.key')
http = openai.DefaultHttpxClient(verify=context)
c = openai.OpenAI(base_url='$base/v1', api_key='$api_key', http_client=http, max_retries=0)
sys.exit(0 if c.models.list().data[0].id == 'smollm2-135m-instruct' else 1)"
# Stalled TLS handshakes (Tests/service/test_hostile_connections.py) on this listener.
check env NODE_URL="$base" NODE_API_KEY="$api_key" NODE_TLS_URL="$base" NODE_TLS_CA="$tls/ca.crt" \
  NODE_TLS_CLIENT_CERT="$tls/client.crt" NODE_TLS_CLIENT_KEY="$tls/client.key" NODE_MAX_CONNECTIONS=16 \
  "$SECURENODE_VENV/bin/python" "$REPO/Tests/service/test_hostile_connections.py" \
  test_cutsStalledTLSHandshake test_survivesSlowlorisOnTheTLSListener
echo "tls e2e: $tls_ok passed, $tls_failed failed"
[[ $tls_failed == 0 ]] || rc=1
kill "$serve" 2>/dev/null || true
wait "$serve" 2>/dev/null || true
serve=""

# Node keys (README "Node keys"): `keys init`, then TLS with the TPM-sealed api-tls key held only in
# memory (server.tls: {}); curl and the openai client trust the node's self-signed certificate as their
# CA and get a completion; no private key in the clear in the state directory or the log; a rotated
# key serves a new certificate the old one does not vouch for.
keys_ok=0 keys_failed=0
kcheck() { if "$@"; then keys_ok=$((keys_ok + 1)); else keys_failed=$((keys_failed + 1)); echo "FAIL keys: $*"; fi; }
sed -e '/^    certificate: /d' -e '/^    private_key: /d' -e '/^    client_ca: /d' -e 's/^  tls:$/  tls: {}/' \
  "$work/securenode.yaml" > "$work/keys.yaml"
grep -qx '  tls: {}' "$work/keys.yaml" || die "could not write the node-keys configuration"
"$bin" keys init --config "$work/keys.yaml" --tcti "$tcti" > "$work/keys-init.out" 2>&1 || { cat "$work/keys-init.out"; die "keys init failed"; }
kcheck bash -c "! '$bin' keys init --config '$work/keys.yaml' --tcti '$tcti' > '$work/keys-init2.out' 2>&1 && grep -q -- '--force' '$work/keys-init2.out'"
"$bin" keys status --config "$work/keys.yaml" --tcti "$tcti" --json > "$work/keys-status.json" || { cat "$work/keys-status.json"; die "keys status failed"; }
kcheck python3 -c "
import json, sys
s = json.load(open('$work/keys-status.json'))
sys.exit(0 if s['unseals'] and s['index']['pcrs'] == [0, 2, 4, 7] and s['index']['excludedPCRs'] == [15] else 1)"
spki_of() { openssl x509 -in "$1" -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1; }
serve_keys() {
  "$bin" serve --config "$work/keys.yaml" --tcti "$tcti" > "$1" 2>&1 &
  serve=$!
  for _ in $(seq 1 600); do
    [[ -f "$SECURENODE_STATE_DIR/keys/api-tls.crt.pem" ]] \
      && curl -fs --cacert "$SECURENODE_STATE_DIR/keys/api-tls.crt.pem" "https://127.0.0.1:$port/readyz" > /dev/null 2>&1 && return 0
    kill -0 "$serve" 2>/dev/null || { cat "$1"; die "serve (node keys) exited"; }
    sleep 0.1
  done
  cat "$1"; die "serve (node keys) did not become ready"
}
serve_keys "$work/serve-keys.log"
ca="$SECURENODE_STATE_DIR/keys/api-tls.crt.pem"
cp "$ca" "$work/api-tls-before.crt.pem"
kcheck test "$(spki_of "$ca")" = "$(python3 -c "import json; print(next(k['spkiSHA256'] for k in json.load(open('$work/keys-status.json'))['index']['keys'] if k['name'] == 'api-tls'))")"
body=$(curl -fs --cacert "$ca" -H "Authorization: Bearer $api_key" -H 'Content-Type: application/json' \
  "https://127.0.0.1:$port/v1/completions" -d '{"model":"smollm2-135m-instruct","prompt":"Hello","max_tokens":4,"temperature":0}' || true)
kcheck grep -q '"text_completion"' <<<"$body"
kcheck "$SECURENODE_VENV/bin/python" -c "
import openai, ssl, sys
http = openai.DefaultHttpxClient(verify=ssl.create_default_context(cafile='$ca'))
c = openai.OpenAI(base_url='https://127.0.0.1:$port/v1', api_key='$api_key', http_client=http, max_retries=0)
r = c.chat.completions.create(model='smollm2-135m-instruct', messages=[{'role': 'user', 'content': 'Say hi'}], max_tokens=8, temperature=0)
sys.exit(0 if r.choices[0].message.content else 1)"
kcheck grep -q "TLS key spki-sha256 $(spki_of "$ca" | cut -c1-16)" "$work/serve-keys.log"
# Public material only (the swtpm's own CA key, in swtpm/, is the software TPM's, not the node's).
kcheck bash -c "! grep -rl --exclude-dir=swtpm 'PRIVATE KEY' '$SECURENODE_STATE_DIR' '$work/serve-keys.log'"
kcheck test ! -e "$SECURENODE_STATE_DIR/keylime/agent-key.pem"
kill "$serve" 2>/dev/null || true
wait "$serve" 2>/dev/null || true
serve=""
"$bin" keys rotate --key api-tls --config "$work/keys.yaml" --tcti "$tcti" > "$work/keys-rotate.out" 2>&1 || { cat "$work/keys-rotate.out"; die "keys rotate failed"; }
serve_keys "$work/serve-keys2.log"
kcheck test "$(spki_of "$ca")" != "$(spki_of "$work/api-tls-before.crt.pem")"
kcheck bash -c "! curl -fs --cacert '$work/api-tls-before.crt.pem' 'https://127.0.0.1:$port/readyz' > /dev/null 2>&1"
kill "$serve" 2>/dev/null || true
wait "$serve" 2>/dev/null || true
serve=""
echo "node keys e2e: $keys_ok passed, $keys_failed failed"
[[ $keys_failed == 0 ]] || rc=1

# Hostile clients (Tests/service/test_hostile_connections.py): the node again, plain HTTP, with small
# connection limits so that the attacks reach them with few connections.
cat > "$work/hostile.yaml" <<YAML
profile: $REPO/firmware-profiles/swtpm-dev.json
model:
  id: smollm2-135m-instruct
  path: $DEFAULT_MODEL_DIR
  signature: $DEFAULT_MODEL_SIGNATURE
  public_key: $DEFAULT_MODEL_PUBLISHER_KEY
server:
  host: 127.0.0.1
  port: $port
  max_connections: 16
  header_timeout_seconds: 2
  body_timeout_seconds: 3
  idle_timeout_seconds: 3
  tls_handshake_timeout_seconds: 2
auth:
  api_key_sha256: ["$key_hash"]
limits:
  max_body_bytes: 65536
  max_tokens: 256
  context_length: 1024
  parallel: 2
  queue_depth: 64
  threads: 2
YAML
"$bin" serve --config "$work/hostile.yaml" --tcti "$tcti" > "$work/serve-hostile.log" 2>&1 &
serve=$!
for _ in $(seq 1 600); do
  curl -fs "http://127.0.0.1:$port/readyz" > /dev/null 2>&1 && break
  kill -0 "$serve" 2>/dev/null || { cat "$work/serve-hostile.log"; die "serve (hostile) exited"; }
  sleep 0.1
done
if ! NODE_URL="http://127.0.0.1:$port" NODE_API_KEY="$api_key" NODE_MAX_CONNECTIONS=16 NODE_MAX_BODY=65536 \
  "$SECURENODE_VENV/bin/python" "$REPO/Tests/service/test_hostile_connections.py"; then
  rc=1
  echo "---- serve log (tail) ----"; tail -40 "$work/serve-hostile.log"
fi
exit $rc
