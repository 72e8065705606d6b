#!/usr/bin/env bash
# Confidential model throughput: `securenode model verify --key` on the encrypted default model
# (signature check, then every chunk AES-256-GCM-decrypted into private memory and SHA-256-hashed
# there: the work `serve` does before it parses the model) against peers on the same model, in the
# same run, interleaved, warm page cache, median of N runs each:
#   - `openssl enc -d -aes-256-ctr ... | sha256sum`: OpenSSL's decryption piped into coreutils' hash.
#     `openssl enc` refuses AEAD modes (GCM), so the peer is CTR, GCM without its authentication
#     (GHASH): it does less work than we do.
#   - Python `cryptography` (OpenSSL) AESGCM + hashlib.sha256 decrypting our own encrypted model,
#     chunk by chunk with the same nonces and additional data: the same authenticated work, through
#     OpenSSL (and a check that the format is standard AES-GCM).
#   - `openssl speed -evp aes-256-gcm` with 1 MiB blocks: OpenSSL's raw AES-256-GCM bound on this CPU.
#
#   bench/decrypt.sh [runs]      (default 9)
# Writes bench/results/decrypt.json and .md.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
runs="${1:-9}"
[[ -f "$DEFAULT_MODEL_FILE" ]] || die "default model missing: run scripts/setup.sh first"
bench_tools
mkdir -p "$REPO/.state"
work=$(mktemp -d "$REPO/.state/bench-decrypt.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$bin" model encrypt "$DEFAULT_MODEL_DIR" --out "$work/enc" --key-out "$work/model.key" --signature "$DEFAULT_MODEL_SIGNATURE" >&2
"$python" "$REPO/bench/decrypt_bench.py" --runs "$runs" --securenode "$bin" --encrypted "$work/enc" --key "$work/model.key" \
  --model-file "$DEFAULT_MODEL_FILE" --public-key "$DEFAULT_MODEL_PUBLISHER_KEY" --work "$work" --out "$REPO/bench/results/decrypt"
