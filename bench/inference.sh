#!/usr/bin/env bash
# Inference speed (issue 5): `securenode bench-engine` against llama.cpp (llama-cpp-python, compiled
# here for this CPU) on the same GGUF, the same number of threads, in the same run: RUNS runs of each,
# interleaved, each a fresh process. Prompt processing pp16..pp512, time to first token (128-token
# prompt), decode tg128, cold start and peak RSS; medians, min/max, ratios, and issue 5's targets
# (reported PASS/FAIL; a FAIL does not fail the script: this is a measurement).
#
#   bench/inference.sh
#     RUNS=5 THREADS=2            runs per engine, threads for both engines
#     WARMUP=1                    discarded runs of each engine first
#     SECURENODE_BIN=path         use this binary instead of building release (scripts/setup.sh --release)
#     PEER_PYTHON=path            a Python that has llama_cpp; by default bench/.venv-peer, created and
#                                 built on first use (llama-cpp-python 0.3.36, 5-10 min on 2 cores)
# Writes bench/results/inference.json, inference.md and inference-tokens-per-second.svg.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
RUNS="${RUNS:-5}"
THREADS="${THREADS:-2}"
WARMUP="${WARMUP:-1}"
PEER_VERSION="0.3.36"   # the version the reference outputs and the fixtures were made with
PEER_VENV="$REPO/bench/.venv-peer"

# Our engine: a release build (setup.sh also fetches and checks the model; every step is skipped
# when already done, and the build is incremental).
if [[ -n "${SECURENODE_BIN:-}" ]]; then
  bin="$SECURENODE_BIN"
  [[ -f "$DEFAULT_MODEL_FILE" ]] || die "default model missing: run scripts/setup.sh first"
else
  "$REPO/scripts/setup.sh" --release >&2
  bin="$(cd "$REPO" && swift build -c release --show-bin-path)/securenode"
fi
[[ -x "$bin" ]] || die "no securenode binary at $bin"

# The peer: llama-cpp-python compiles llama.cpp from source with this CPU's flags (-march=native).
peer_has() { "$1" -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$PEER_VERSION')" 2>/dev/null; }
if [[ -n "${PEER_PYTHON:-}" ]]; then
  peer_python="$PEER_PYTHON"
  "$peer_python" -c "import llama_cpp" 2>/dev/null || die "PEER_PYTHON=$peer_python cannot import llama_cpp"
  peer_has "$peer_python" || log "warning: PEER_PYTHON has llama-cpp-python $("$peer_python" -c \
    'import llama_cpp; print(llama_cpp.__version__)'), not $PEER_VERSION"
else
  peer_python="$PEER_VENV/bin/python"
  if ! peer_has "$peer_python"; then
    missing=()
    for p in g++ make cmake python3-venv; do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if ((${#missing[@]})); then
      log "installing Debian packages to build llama.cpp: ${missing[*]}"
      [[ $(id -u) == 0 ]] || die "installing packages needs root: sudo $0"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    [[ -x "$peer_python" ]] || python3 -m venv "$PEER_VENV"
    log "building llama-cpp-python $PEER_VERSION into $PEER_VENV (compiles llama.cpp for this CPU: 5-10 min on 2 cores)"
    # From source, never a cached wheel built with other flags.
    CMAKE_ARGS="-DGGML_NATIVE=ON" "$PEER_VENV/bin/pip" install -q --disable-pip-version-check \
      --no-cache-dir --no-binary llama-cpp-python "llama-cpp-python==$PEER_VERSION"
    peer_has "$peer_python" || die "llama-cpp-python $PEER_VERSION did not install into $PEER_VENV"
  fi
fi

log "benchmark: $RUNS runs per engine, $THREADS threads (OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE)"
python3 "$REPO/bench/inference_bench.py" --runs "$RUNS" --threads "$THREADS" --warmup "$WARMUP" \
  --securenode "$bin" --peer-python "$peer_python" \
  --model-dir "$DEFAULT_MODEL_DIR" --model-file "$DEFAULT_MODEL_FILE" \
  --signature "$DEFAULT_MODEL_SIGNATURE" --public-key "$DEFAULT_MODEL_PUBLISHER_KEY" \
  --out "$REPO/bench/results/inference"
