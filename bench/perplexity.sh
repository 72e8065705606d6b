#!/usr/bin/env bash
# Perplexity of the default model (SmolLM2-135M-Instruct, Q4_1) requantized by llama.cpp to K-quant
# presets: llama.cpp against the node's default prompt path (BLAS: Q4_K and Q6_K in the sixteen-row
# integer groups, `KQuantGroups`, where the CPU has AVX512-VNNI) and its exact path (`--exact`), on
# the same file and tokens (Tests/InferenceTests/Fixtures/perplexity.json: Pride and Prejudice,
# chapter 1, 3 chunks of 256). The issue-19 bar for the tolerance path: within 0.5% of llama.cpp.
#
#   bench/perplexity.sh
#     TYPES="Q4_K_M Q6_K"    llama.cpp presets (Q4_K_M, Q4_K_S, Q5_K_M, Q6_K)
#     SECURENODE_BIN=path    use this binary instead of building release
#     PEER_PYTHON=path       a Python with llama-cpp-python (default: bench/.venv-peer, built on first use)
#     OUT=perplexity         results as bench/results/$OUT.md
#
# The requantized files are kept in $SECURENODE_CACHE/requantized/ (never committed) and signed with a
# P-256 key made for this run.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
source "$REPO/bench/peer.sh"
TYPES="${TYPES:-Q4_K_M Q6_K}"
OUT="${OUT:-perplexity}"
tokens="$REPO/Tests/InferenceTests/Fixtures/perplexity.json"

bench_tools
peer_llama_cpp_python
[[ -f "$DEFAULT_MODEL_FILE" ]] || die "default model missing: run scripts/setup.sh first"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
openssl ecparam -name prime256v1 -genkey -noout -out "$work/key.pem" 2>/dev/null
openssl ec -in "$work/key.pem" -pubout -out "$work/pub.pem" 2>/dev/null
dir="$SECURENODE_CACHE/requantized"
mkdir -p "$dir"
rows=()
for type in $TYPES; do
  file="$dir/smollm2-135m-instruct-${type,,}.gguf"
  if [[ ! -f "$file" ]]; then
    log "requantizing the default model to $type (llama.cpp's quantizer)"
    "$peer_python" "$REPO/bench/perplexity.py" quantize "$DEFAULT_MODEL_FILE" "$file.part" "$type" >/dev/null 2>&1 \
      || die "requantizing to $type failed"
    mv "$file.part" "$file"
  fi
  "$bin" model sign "$file" --private-key "$work/key.pem" --signature "$work/$type.sig" >/dev/null || die "signing $file failed"
  log "$type: llama.cpp"
  peer="$("$peer_python" "$REPO/bench/perplexity.py" measure "$file" "$tokens" 2>/dev/null)" || die "llama.cpp's perplexity failed"
  ours=()
  for mode in default exact; do
    log "$type: securenode ($mode)"
    flag=(); [[ "$mode" == exact ]] && flag=(--exact)
    ours+=("$("$bin" bench-engine --model "$file" --signature "$work/$type.sig" --public-key "$work/pub.pem" \
      --prompt-lengths 16 --decode-tokens 1 --perplexity-tokens "$tokens" "${flag[@]}")") || die "securenode's perplexity failed"
  done
  types="$("$peer_python" "$REPO/bench/perplexity.py" types "$file" 2>/dev/null || echo "types unknown")"
  rows+=("$(python3 - "$type" "$(basename "$file")" "$peer" "${ours[@]}" "$types" <<'PY'
import json, sys
t, name, peer, default, exact = sys.argv[1], sys.argv[2], *map(json.loads, sys.argv[3:6])  # argv[6]: tensor types
p, d, e = peer["value"], default["perplexity"]["value"], exact["perplexity"]["value"]
print(f"| {t} ({name}: {sys.argv[6]}) | {p:.4f} | {d:.4f} ({(d / p - 1) * 100:+.2f}%) | {e:.4f} ({(e / p - 1) * 100:+.2f}%) | {default['prefillMode']}, OpenBLAS {default['blasCore']} |")
PY
)")
done
{
  echo "# Perplexity of requantized SmolLM2-135M-Instruct: llama.cpp against the node (bench/perplexity.sh)"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), 2 threads."
  echo "Tokens: Tests/InferenceTests/Fixtures/perplexity.json ($(python3 -c "import json; d = json.load(open('$tokens')); print(f\"{len(d['token_ids'])} tokens, chunks of {d['n_ctx']}\")"))."
  echo "The default model (Q4_1) requantized by llama.cpp's quantizer (llama-cpp-python $PEER_VERSION, allow_requantize)."
  echo "SmolLM2's width (576) is not a multiple of 256, so only its 1,536-wide feed-forward down matrices can be K-quants;"
  echo "llama.cpp's quantizer gives the others Q5_0 or Q8_0 (the tensor types below)."
  echo
  echo "| file | llama.cpp | securenode default (tolerance path) | securenode --exact | node's prompt path |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} > "$REPO/bench/results/$OUT.md"
cat "$REPO/bench/results/$OUT.md"
