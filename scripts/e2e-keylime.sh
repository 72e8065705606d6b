#!/usr/bin/env bash
# Fleet attestation end to end (Tests/keylime/test_keylime.py): the real Keylime 7.14.3 registrar,
# verifier and tenant, installed by `scripts/setup.sh --test-tools` into .venv-keylime, attest the
# node through its Keylime agent API on 127.0.0.1, with sqlite and a software TPM. The driver starts
# and stops every process itself.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bin="$(cd "$REPO" && swift build --show-bin-path)/securenode"
[[ -x "$bin" ]] || die "build first: swift build"
[[ -f "$DEFAULT_MODEL_FILE" ]] || die "default model missing: run scripts/setup.sh"
export SECURENODE_KEYLIME_VENV="${SECURENODE_KEYLIME_VENV:-$REPO/.venv-keylime}"
[[ -x "$SECURENODE_KEYLIME_VENV/bin/keylime_verifier" ]] || die "Keylime missing: run scripts/setup.sh --test-tools"
export SECURENODE_BIN="$bin" DEFAULT_MODEL_DIR DEFAULT_MODEL_SIGNATURE DEFAULT_MODEL_PUBLISHER_KEY
exec "$SECURENODE_KEYLIME_VENV/bin/python" "$REPO/Tests/keylime/test_keylime.py"
