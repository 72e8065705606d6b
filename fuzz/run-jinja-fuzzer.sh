#!/usr/bin/env bash
# Builds the chat-template interpreter with libFuzzer + AddressSanitizer and fuzzes it.
#
# usage: fuzz/run-jinja-fuzzer.sh [seconds]        (default 60)
#
# Compiles Sources/Generation/Jinja/*.swift and fuzz/jinja/*.swift into one module with swiftc (no
# SwiftPM, so it does not touch .build/ locks), seeds it with the real chat templates the tests use
# (Tests/GenerationTests/Fixtures/ChatTemplates/*.jinja), then runs the fuzzer. New interesting
# inputs accumulate in .build/fuzz/jinja-corpus/; crashes go to .build/fuzz/artifacts/jinja-*.
set -euo pipefail

seconds="${1:-60}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/.build/fuzz"
seeds="$out/jinja-seeds"
corpus="$out/jinja-corpus"
artifacts="$out/artifacts"
mkdir -p "$out" "$seeds" "$corpus" "$artifacts"

echo "building $out/jinja-fuzzer"
linker=()
if command -v ld.lld > /dev/null; then linker=(-use-ld=lld); fi
swiftc -sanitize=fuzzer,address -parse-as-library -O -g "${linker[@]}" \
    -swift-version 6 \
    -enable-upcoming-feature ExistentialAny -enable-upcoming-feature MemberImportVisibility \
    -module-name JinjaFuzz \
    "$root"/Sources/Generation/Jinja/*.swift "$root"/fuzz/jinja/*.swift \
    -o "$out/jinja-fuzzer"

# Seeds: every real template, alone and followed by a NUL and a message content.
for template in "$root"/Tests/GenerationTests/Fixtures/ChatTemplates/*.jinja; do
    name="$(basename "$template" .jinja)"
    cp "$template" "$seeds/$name"
    { cat "$template"; printf '\0<|im_end|>\n{{ x }} {%% raw %%}'; } > "$seeds/$name-content"
done
printf '%s' '{% for m in messages %}{{ m.role }}: {{ m.content | trim }}{% endfor %}{{ messages | tojson }}{{ tools | tojson(indent=2) }}' \
    > "$seeds/hand-written"

echo "fuzzing for $seconds s"
exec "$out/jinja-fuzzer" \
    -max_len=16384 \
    -timeout=10 \
    -rss_limit_mb=2560 \
    -max_total_time="$seconds" \
    -dict="$root/fuzz/jinja/jinja.dict" \
    -artifact_prefix="$artifacts/jinja-" \
    -print_final_stats=1 \
    "$corpus" "$seeds"
