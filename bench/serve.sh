#!/usr/bin/env bash
# Serving throughput (issues 6 and 20): `securenode serve` against llama.cpp's own `llama-server` with
# the same number of parallel slots, the same threads and the same load, in the same run. Two
# workloads: "fixed" (N = 1, 4 and 16 concurrent streaming clients send raw /v1/completions requests,
# a fixed ~64-token prompt, max_tokens 64, temperature 0, back to back; prompt caches off on both
# sides) and "chat" (N clients hold multi-turn conversations through /v1/chat/completions, each
# request carrying the whole history, TURNS turns each; prompt caches on on both sides). DURATION
# seconds per workload, level and engine; aggregate generated tokens/s, time to first token p50/p99,
# requests completed and errors; RUNS runs, engines alternating, a fresh server for every
# measurement; medians, ratios, issue 20's targets (>= 1.3x llama-server at 1 stream, >= 2.5x at 16;
# reported PASS/FAIL: a FAIL does not fail the script, this is a measurement).
#
#   bench/serve.sh
#     RUNS=3 DURATION=40 LEVELS=1,4,16 THREADS=2   runs, seconds of load per workload, level and engine,
#                                                 concurrency levels, engine threads for both
#     WORKLOADS=fixed,chat TURNS=4                workloads, turns per chat conversation
#     THINK=0                     chat: seconds a client waits between an answer and its follow-up
#     DECODING=                   the node's limits.decoding: one-token or prompt-rows (default: the node's own,
#                                 prompt rows with several slots, one-token with one; see README "Decoding")
#     OUT=bench/results/serve     where the results go (OUT.json, OUT.md and the plots)
#     SECURENODE_BIN=path         use this binary instead of building release (scripts/setup.sh --release)
#     LLAMA_SERVER=path           a llama-server binary; by default bench/.venv-peer/llama-server-0.3.36,
#                                 built on first use from the llama.cpp sources vendored in the
#                                 llama-cpp-python 0.3.36 sdist (5-10 min on 2 cores; see bench/peer.sh)
# Our node runs as scripts/start.sh runs it (a software TPM from `securenode dev-tpm`, the swtpm-dev
# profile, the default model), on a free port, with a temporary state directory and a configuration
# file written by the driver (limits.parallel N, limits.threads THREADS, limits.context_length 2048,
# limits.prompt_cache false for fixed, true for chat).
# Writes OUT.json, OUT.md, OUT-throughput.svg and OUT-chat-throughput.svg (OUT: bench/results/serve).
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
# shellcheck source=bench/peer.sh
source "$REPO/bench/peer.sh"
RUNS="${RUNS:-3}"
DURATION="${DURATION:-40}"
LEVELS="${LEVELS:-1,4,16}"
THREADS="${THREADS:-2}"
WORKLOADS="${WORKLOADS:-fixed,chat}"
TURNS="${TURNS:-4}"
THINK="${THINK:-0}"
DECODING="${DECODING:-}"
decoding=()
[[ -n "$DECODING" ]] && decoding=(--decoding "$DECODING")
OUT="${OUT:-$REPO/bench/results/serve}"

bench_binary

peer_llama_server

log "serving benchmark: $RUNS runs, ${DURATION} s per workload, level and engine, workloads $WORKLOADS, levels $LEVELS, $THREADS threads (load average $(cut -d' ' -f1-3 /proc/loadavg))"
PEER_VERSION="$PEER_VERSION" python3 "$REPO/bench/serve_bench.py" --runs "$RUNS" --duration "$DURATION" \
  --levels "$LEVELS" --workloads "$WORKLOADS" --turns "$TURNS" --think "$THINK" "${decoding[@]}" --threads "$THREADS" --securenode "$bin" --peer-server "$peer_server" \
  --model-dir "$DEFAULT_MODEL_DIR" --model-file "$DEFAULT_MODEL_FILE" \
  --signature "$DEFAULT_MODEL_SIGNATURE" --public-key "$DEFAULT_MODEL_PUBLISHER_KEY" \
  --profile "$REPO/firmware-profiles/swtpm-dev.json" --out "$OUT"
