#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh, release build) and starts the node on the default model.
# Today the node goes as far as it can: verify the model's signature, load the verified bytes, and
# inspect them. Later stages (TPM measurement, serving) extend this same command.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
"$REPO/scripts/setup.sh" --release
bin="$(cd "$REPO" && swift build -c release --show-bin-path)/securenode"
exec "$bin" model inspect "$DEFAULT_MODEL_DIR" \
  --signature "$DEFAULT_MODEL_SIGNATURE" --public-key "$DEFAULT_MODEL_PUBLISHER_KEY" "$@"
