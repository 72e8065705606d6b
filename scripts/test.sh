#!/usr/bin/env bash
# Sets up everything (scripts/setup.sh) and runs every test: the Swift test suites (with the real
# model and the real model-signing tool required, not optional), the CLI end-to-end checks, a
# short libFuzzer runs of the GGUF reader, the chat-template interpreter and the response_format
# schema compiler, the service end-to-end suite (openai client, hostile
# clients), the attested channel's end-to-end suite (securenode proxy), a 2-minute soak (bench/soak.sh), the fleet
# attestation suite (real Keylime) and the deployment checks.
#
#   scripts/test.sh            (FUZZ_SECONDS=0 skips the fuzzers; default 30 s each)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
"$REPO/scripts/setup.sh" --no-build --test-tools

export PATH="$SECURENODE_VENV/bin:$PATH"
export SECURENODE_REQUIRE_TOOLS=1
export SECURENODE_TEST_MODEL="$DEFAULT_MODEL_FILE"
cd "$REPO"

log "building"
swift build --build-tests
log "Swift test suites"
swift test --skip-build

if [[ "${FUZZ_SECONDS:-30}" != 0 ]]; then
  mkdir -p "$REPO/.build/fuzz"
  for target in "gguf:GGUF reader" "jinja:chat-template interpreter" "schema:response_format schema compiler and grammar matcher"; do
    name="${target%%:*}" what="${target#*:}"
    log "libFuzzer: $what for ${FUZZ_SECONDS:-30} s"
    fuzz_log="$REPO/.build/fuzz/last-$name-run.log"
    if "$REPO/fuzz/run-fuzzer.sh" "$name" "${FUZZ_SECONDS:-30}" > "$fuzz_log" 2>&1; then
      grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$fuzz_log" || true
    else
      tail -60 "$fuzz_log"; die "the $what fuzzer found a failure (artifacts in .build/fuzz/artifacts/$name-*)"
    fi
  done
fi

log "CLI end-to-end"
"$REPO/scripts/e2e-cli.sh"

log "confidential models end-to-end (encrypt, sealed key on swtpm, refusals, output equal to plaintext, no leaks)"
"$REPO/scripts/e2e-confidential.sh"

log "service end-to-end (openai client)"
"$REPO/scripts/e2e-service.sh"

log "attested channel end-to-end (securenode proxy, TLS key bound to the evidence, MITM, tampering)"
"$REPO/scripts/e2e-proxy.sh"

log "soak: 16 concurrent streams for 120 s, every response checked against its receipt (bench/soak.sh)"
soak_out=$(mktemp -d)
DURATION=120 SECURENODE_BIN="$(swift build --show-bin-path)/securenode" OUT="$soak_out/soak" "$REPO/bench/soak.sh"
rm -rf "$soak_out"

log "fleet attestation end-to-end (real Keylime registrar, verifier, tenant)"
"$REPO/scripts/e2e-keylime.sh"

log "deployment files (systemd, install.sh, Kubernetes, Containerfile)"
"$REPO/scripts/check-deploy.sh"
