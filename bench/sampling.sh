#!/usr/bin/env bash
# What drawing a token at temperature > 0 costs beside the forward pass: bench/sampling_bench.py
# (`securenode generate`, greedy against temperature 0.7 with OpenAI's defaults, ms per generated
# token, median of RUNS). Writes bench/results/sampling.{json,md}.
#
#   bench/sampling.sh
#     RUNS=5 MAX_TOKENS=256
#     SECURENODE_BIN=path     use this binary instead of building release
#     BASELINE_BIN=path       also measure this binary (the code before a change), alternating
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
[[ -f "$DEFAULT_MODEL_FILE" ]] || die "default model missing: run scripts/setup.sh first"
bench_tools  # sets $bin (release, or $SECURENODE_BIN) and $python
mkdir -p "$REPO/bench/results"
python3 "$REPO/bench/sampling_bench.py" --securenode "$bin" ${BASELINE_BIN:+--baseline "$BASELINE_BIN"} \
  --model-dir "$DEFAULT_MODEL_DIR" --signature "$DEFAULT_MODEL_SIGNATURE" --public-key "$DEFAULT_MODEL_PUBLISHER_KEY" \
  --runs "${RUNS:-5}" --max-tokens "${MAX_TOKENS:-256}" --out "$REPO/bench/results/sampling"
