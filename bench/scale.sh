#!/usr/bin/env bash
# Scale (issue 19): the node and llama.cpp side by side from 135M to 8B parameters, in one run.
#
#   bench/scale.sh
#     SIZES="135m 1b"        which models: 135m (the default SmolLM2 Q4_1), 1b (Llama-3.2-1B shapes),
#                            8b (Llama-3.1-8B shapes; a 16 GB F16 file is written first, then quantized)
#     TYPES="Q4_0 Q4_K_M"    quantizations of the random-weight models (llama.cpp's own quantizer)
#     RUNS=3 THREADS=2       runs per engine (medians), threads for both engines
#     DECODE_TOKENS=128      decoding steps timed (tg128)
#     SECURENODE_BIN=path    use this binary instead of building release
#     PEER_PYTHON=path       a Python with llama-cpp-python (default: bench/.venv-peer, built on first use)
#     SCALE_DIR=dir          where the random-weight models are kept (default $SECURENODE_CACHE/scale)
#     OUT=scale              results as bench/results/$OUT.{json,md} (another name keeps earlier runs)
#
# The random-weight models are written by bench/scale_model.py with the `gguf` package (seeded: the
# same bytes every time), quantized through llama-cpp-python's `llama_model_quantize`, kept in
# $SECURENODE_CACHE/scale/ (never committed), and signed here with a P-256 key made for this run.
# Each run of each engine is a fresh process: verify + load, pp128, pp512, TTFT (128-token prompt),
# tg128, peak RSS (`securenode bench-engine`, bench/inference_peer.py). bench/roofline.c measures
# the DRAM read bandwidth and the sgemm rate of this machine, the bounds each number is shown with.
# Writes bench/results/scale.json and scale.md, then redraws bench/results/scale-tokens-per-second.svg
# from every scale*.json kept there (bench/scale_plot.py).
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
source "$REPO/bench/peer.sh"
SIZES="${SIZES:-135m 1b}"
TYPES="${TYPES:-Q4_0 Q4_K_M}"
RUNS="${RUNS:-3}"
THREADS="${THREADS:-2}"
DECODE_TOKENS="${DECODE_TOKENS:-128}"
OUT="${OUT:-scale}"
GGUF_VERSION="0.19.0"   # the PyPI `gguf` package that writes the random models

bench_tools
peer_llama_cpp_python
"$peer_python" -c "import gguf, sys; sys.exit(gguf.__version__ != '$GGUF_VERSION')" 2>/dev/null \
  || "$peer_python" -m pip install -q --disable-pip-version-check "gguf==$GGUF_VERSION" >&2 \
  || die "cannot install gguf==$GGUF_VERSION into the peer's Python"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cc -O2 -mavx2 "$REPO/bench/roofline.c" $(pkg-config --cflags --libs openblas) -lpthread -o "$work/roofline" \
  || die "cannot build bench/roofline.c (needs gcc and libopenblas-dev)"
log "rooflines: DRAM read bandwidth and sgemm rate ($THREADS threads)"
"$work/roofline" "$THREADS" >"$work/roofline.json"
cat "$work/roofline.json" >&2

# A signing key for this run only: the random models are signed like any other model.
openssl ecparam -name prime256v1 -genkey -noout -out "$work/key.pem" 2>/dev/null
openssl ec -in "$work/key.pem" -pubout -out "$work/pub.pem" 2>/dev/null
models=()
dir="${SCALE_DIR:-$SECURENODE_CACHE/scale}"
mkdir -p "$dir"
for size in $SIZES; do
  if [[ "$size" == 135m ]]; then
    [[ -f "$DEFAULT_MODEL_FILE" ]] || die "default model missing: run scripts/setup.sh first"
    cp "$DEFAULT_MODEL_FILE" "$work/135m-q4_1.gguf"
    "$bin" model sign "$work/135m-q4_1.gguf" --private-key "$work/key.pem" --signature "$work/135m-q4_1.sig" >/dev/null
    models+=(--model "135m-Q4_1=$work/135m-q4_1.gguf=$work/135m-q4_1.sig")
    continue
  fi
  log "model $size: ${TYPES// /, } (written and quantized once, then reused)"
  (cd "$dir" && nice -n 10 "$peer_python" "$REPO/bench/scale_model.py" --shape "$size" --out "$dir" --types "${TYPES// /,}") \
    2> >(grep -E '^==>|error' >&2) || die "making the $size models failed"
  for type in $TYPES; do
    file="$dir/$size-${type,,}.gguf"
    sig="$work/$size-${type,,}.sig"
    "$bin" model sign "$file" --private-key "$work/key.pem" --signature "$sig" >/dev/null || die "signing $file failed"
    models+=(--model "$size-$type=$file=$sig")
  done
done

log "benchmark: $RUNS runs per engine and model, $THREADS threads, load average $(cut -d' ' -f1 /proc/loadavg)"
"$peer_python" "$REPO/bench/scale_bench.py" --securenode "$bin" --peer-python "$peer_python" \
  --roofline "$work/roofline.json" --runs "$RUNS" --threads "$THREADS" --decode-tokens "$DECODE_TOKENS" \
  "${models[@]}" --public-key "$work/pub.pem" --out "$REPO/bench/results/$OUT"
log "wrote bench/results/$OUT.md"
python3 "$REPO/bench/scale_plot.py" || die "drawing bench/results/scale-tokens-per-second.svg failed"
