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
source "$REPO/bench/peer.sh"

# Our engine: a release build (setup.sh also fetches and checks the model; every step is skipped
# when already done, and the build is incremental).
bench_binary

# The peer: llama-cpp-python compiles llama.cpp from source with this CPU's flags (-march=native);
# bench/peer.sh installs it into bench/.venv-peer on first use (or takes PEER_PYTHON).
peer_llama_cpp_python

log "benchmark: $RUNS runs per engine, $THREADS threads (OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE)"
python3 "$REPO/bench/inference_bench.py" --runs "$RUNS" --threads "$THREADS" --warmup "$WARMUP" \
  --securenode "$bin" --peer-python "$peer_python" \
  --model-dir "$DEFAULT_MODEL_DIR" --model-file "$DEFAULT_MODEL_FILE" \
  --signature "$DEFAULT_MODEL_SIGNATURE" --public-key "$DEFAULT_MODEL_PUBLISHER_KEY" \
  --out "$REPO/bench/results/inference"
