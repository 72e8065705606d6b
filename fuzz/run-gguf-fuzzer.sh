#!/usr/bin/env bash
# Builds the GGUF reader with libFuzzer + AddressSanitizer and fuzzes it.
#
# usage: fuzz/run-gguf-fuzzer.sh [seconds]        (default 60)
#
# Compiles Sources/ModelFormat/*.swift and fuzz/gguf/*.swift into one module with swiftc (no
# SwiftPM, so it does not touch .build/ locks), writes seeds, then runs the fuzzer. New
# interesting inputs accumulate in .build/fuzz/gguf-corpus/; crashes go to .build/fuzz/artifacts/.
set -euo pipefail

seconds="${1:-60}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/.build/fuzz"
seeds="$out/gguf-seeds"
corpus="$out/gguf-corpus"
artifacts="$out/artifacts"
mkdir -p "$out" "$seeds" "$corpus" "$artifacts"

echo "building $out/gguf-fuzzer"
# lld (shipped with the toolchain) instead of gold, which prints a warning per ASan symbol.
linker=()
if command -v ld.lld > /dev/null; then linker=(-use-ld=lld); fi
swiftc -sanitize=fuzzer,address -parse-as-library -O -g "${linker[@]}" \
    -swift-version 6 \
    -enable-upcoming-feature ExistentialAny -enable-upcoming-feature MemberImportVisibility \
    -module-name GGUFFuzz \
    "$root"/Sources/ModelFormat/*.swift "$root"/fuzz/gguf/*.swift \
    -o "$out/gguf-fuzzer"

python3 "$root/fuzz/gguf/make-seeds.py" "$seeds"
model="${SECURENODE_TEST_MODEL:-$root/models/cache/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf}"
if [[ -f "$model" ]]; then
    head -c 65536 "$model" > "$seeds/real-model-head-64k.gguf"
    echo "seeded with the first 64 KiB of $model"
fi

echo "fuzzing for $seconds s"
exec "$out/gguf-fuzzer" \
    -max_len=65536 \
    -max_total_time="$seconds" \
    -dict="$root/fuzz/gguf/gguf.dict" \
    -artifact_prefix="$artifacts/" \
    -print_final_stats=1 \
    "$corpus" "$seeds"
