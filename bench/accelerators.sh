#!/usr/bin/env bash
# Modeled accelerator speed, per firmware profile: prefill (a 512-token prompt, in the engine's
# batches of 64) and decode tokens/s for the default model (SmolLM2-135M, Q4_1) and for
# Llama-2-7B- and Llama-2-70B-class shapes (Q4_1 and F16, from their hyperparameters alone), with
# what bounds each (compute, memory, link or launch overhead) and whether the model fits the
# device's memory. Modeled numbers come from the roofline of the profile's backend
# (`securenode backends estimate`, every device number sourced: `securenode backends --json`).
# cpu profiles are measured, not modeled: their numbers come from bench/results/inference.json
# (bench/inference.sh) when it exists, and say "not measured" otherwise.
#
#   bench/accelerators.sh        (SECURENODE_BIN=path/to/securenode skips the release build)
# Writes bench/results/accelerators.json, accelerators.md and accelerators.svg.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
if [[ -n "${SECURENODE_BIN:-}" ]]; then
  bin="$SECURENODE_BIN"
else
  (cd "$REPO" && swift build -c release --product securenode >/dev/null)
  bin="$(cd "$REPO" && swift build -c release --show-bin-path)/securenode"
fi
[[ -x "$bin" ]] || die "no securenode binary at $bin"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for profile in "$REPO"/firmware-profiles/*.json; do
  "$bin" profile check "$profile" >/dev/null || die "profile check failed: $profile"
done
"$bin" backends estimate --json --prompt 512 --batch 64 --fit-context 4096 >"$work/estimates.json"
"$bin" backends list --json >"$work/backends.json"
python3 "$REPO/bench/accelerators_report.py" \
  --estimates "$work/estimates.json" --backends "$work/backends.json" \
  --profiles "$REPO/firmware-profiles" --inference "$REPO/bench/results/inference.json" \
  --out "$REPO/bench/results/accelerators"
