#!/usr/bin/env bash
# The attested channel's cost (issue 17): `securenode proxy` in front of a node serving TLS on a
# software TPM (swtpm-dev profile, default model, a self-signed certificate bound into the evidence,
# the node enrolled over https), against the same requests sent straight to the node over TLS:
# per-request added latency (GET /v1/models: forwarding only; a 1-token chat completion: plus the
# receipt check) and per streamed token. Medians of RUNS interleaved runs. Target: < 2 ms per request.
#
#   bench/proxy.sh          RUNS=41 STREAM_TOKENS=64; SECURENODE_BIN=path to skip the release build
# Writes bench/results/proxy.json and proxy.md.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
RUNS="${RUNS:-41}"
STREAM_TOKENS="${STREAM_TOKENS:-64}"
bench_tools
[[ -f "$DEFAULT_MODEL_FILE" ]] || die "default model missing: run scripts/setup.sh"

work=$(mktemp -d)
dev_tpm="" serve="" proxy=""
cleanup() {
  for p in "$proxy" "$serve" "$dev_tpm"; do [[ -n "$p" ]] && kill "$p" 2>/dev/null || true; done
  for p in "$proxy" "$serve" "$dev_tpm"; do [[ -n "$p" ]] && wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

export SECURENODE_STATE_DIR="$work/state"
mkdir -p "$SECURENODE_STATE_DIR" && chmod 700 "$SECURENODE_STATE_DIR"
start_dev_tpm "$bin" "$work"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/node.key" -out "$work/node.crt" \
  -days 1 -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" 2>/dev/null
api_key="sk-bench-$(openssl rand -hex 16)"
printf '%s\n' "$api_key" > "$work/api-key"
port=$(free_port) proxy_port=$(free_port)
profile="$REPO/firmware-profiles/swtpm-dev.json"
cat > "$work/securenode.yaml" <<YAML
profile: $profile
model:
  id: smollm2-135m-instruct
  path: $DEFAULT_MODEL_DIR
  signature: $DEFAULT_MODEL_SIGNATURE
  public_key: $DEFAULT_MODEL_PUBLISHER_KEY
server:
  host: 127.0.0.1
  port: $port
  tls:
    certificate: $work/node.crt
    private_key: $work/node.key
auth:
  api_key_sha256: ["$(printf '%s' "$api_key" | sha256sum | cut -d' ' -f1)"]
limits:
  max_tokens: 256
  context_length: 1024
  parallel: 2
  threads: 2
YAML
"$bin" serve --config "$work/securenode.yaml" --tcti "$tcti" > "$work/serve.log" 2>&1 &
serve=$!
for _ in $(seq 1 600); do curl -fsk "https://127.0.0.1:$port/readyz" > /dev/null 2>&1 && break; sleep 0.1; done
"$bin" enroll --node "https://127.0.0.1:$port" --profile "$profile" --out "$work/enrolled.json" > /dev/null
"$bin" proxy --node "https://127.0.0.1:$port" --profile "$profile" --enrolled "$work/enrolled.json" \
  --listen "127.0.0.1:$proxy_port" --api-key-file "$work/api-key" > "$work/proxy.log" 2>&1 &
proxy=$!
for _ in $(seq 1 300); do curl -fs "http://127.0.0.1:$proxy_port/readyz" > /dev/null 2>&1 && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$proxy_port/readyz" > /dev/null || { cat "$work/proxy.log"; die "the proxy did not attest the node"; }
log "proxy benchmark: $RUNS interleaved runs per request kind"
mkdir -p "$REPO/bench/results"
"$python" "$REPO/bench/proxy_bench.py" --node "https://127.0.0.1:$port" --proxy "http://127.0.0.1:$proxy_port" \
  --api-key "$api_key" --runs "$RUNS" --stream-tokens "$STREAM_TOKENS" --out "$REPO/bench/results/proxy" --binary "$bin"
cat "$REPO/bench/results/proxy.md"
