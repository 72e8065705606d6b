#!/usr/bin/env bash
# Q4_0, Q5_0 and Q5_1 against llama.cpp (issues 18, 19): SmolLM2-135M requantized by llama.cpp's own
# quantizer, the node and llama.cpp side by side in one run (bench/scale_bench.py: pp128, pp512,
# tg128, TTFT, load, peak RSS, with the DRAM and sgemm rooflines).
#
#   bench/q32.sh
#     TYPES="q4_0 q5_0 q5_1"  which requantized models (q8_0 too, for speed only: Q32ReferenceTests has no q8_0 outputs)
#     RUNS=5 THREADS=2        runs per engine (medians), threads for both engines
#     DECODE_TOKENS=128       decoding steps timed
#     SECURENODE_BIN=path     use this binary instead of building release (say, an older build: before/after)
#     PEER_PYTHON=path        a Python with llama-cpp-python (default: bench/.venv-peer)
#     Q32_DIR=dir             where the requantized models are kept (default $SECURENODE_CACHE/q32; never committed)
#     OUT=path                results prefix (default bench/results/q32: .json and .md)
#
# The models are written once by bench/q32_reference.py (--quantize-only: the committed fixtures of
# Q32ReferenceTests are left alone).
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
source "$REPO/bench/peer.sh"
TYPES="${TYPES:-q4_0 q5_0 q5_1}"
RUNS="${RUNS:-5}"
THREADS="${THREADS:-2}"
DECODE_TOKENS="${DECODE_TOKENS:-128}"
OUT="${OUT:-$REPO/bench/results/q32}"

bench_tools
peer_llama_cpp_python
[[ -f "$DEFAULT_MODEL_FILE" ]] || die "default model missing: run scripts/setup.sh first"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
dir="${Q32_DIR:-$SECURENODE_CACHE/q32}"
mkdir -p "$dir"
log "requantizing $DEFAULT_MODEL_FILE to ${TYPES// /, } (once) in $dir"
"$peer_python" "$REPO/bench/q32_reference.py" --source "$DEFAULT_MODEL_FILE" --models "$dir" \
  --quantize-only --types "$(tr ' ' , <<<"$TYPES")" --threads "$THREADS" || die "requantizing failed"

cc -O2 -mavx2 "$REPO/bench/roofline.c" $(pkg-config --cflags --libs openblas) -lpthread -o "$work/roofline" \
  || die "cannot build bench/roofline.c (needs gcc and libopenblas-dev)"
"$work/roofline" "$THREADS" >"$work/roofline.json"

openssl ecparam -name prime256v1 -genkey -noout -out "$work/key.pem" 2>/dev/null
openssl ec -in "$work/key.pem" -pubout -out "$work/pub.pem" 2>/dev/null
models=()
for type in $TYPES; do
  "$bin" model sign "$dir/$type.gguf" --private-key "$work/key.pem" --signature "$work/$type.sig" >/dev/null \
    || die "signing $dir/$type.gguf failed"
  models+=(--model "135m-${type^^}=$dir/$type.gguf=$work/$type.sig")
done
log "benchmark: $RUNS runs per engine and model, $THREADS threads, load average $(cut -d' ' -f1 /proc/loadavg)"
"$peer_python" "$REPO/bench/scale_bench.py" --securenode "$bin" --peer-python "$peer_python" \
  --roofline "$work/roofline.json" --runs "$RUNS" --threads "$THREADS" --decode-tokens "$DECODE_TOKENS" \
  "${models[@]}" --public-key "$work/pub.pem" --out "$OUT"
log "wrote $OUT.md"
