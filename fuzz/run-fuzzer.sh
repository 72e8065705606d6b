#!/usr/bin/env bash
# Builds one of the node's parsers with libFuzzer + AddressSanitizer and fuzzes it.
#
# usage: fuzz/run-fuzzer.sh TARGET [seconds]        (default 60)
#   TARGET gguf    the GGUF reader (Sources/ModelFormat), seeded with make-seeds.py's files and the
#                  first 64 KiB of the test model when it is there
#   TARGET jinja   the chat-template interpreter (Sources/Generation/Jinja), seeded with the real
#                  chat templates the tests use (Tests/GenerationTests/Fixtures/ChatTemplates)
#   TARGET schema  the response_format JSON Schema compiler (Sources/NodeService/JSONSchemaGrammar.swift)
#                  and the grammar matcher (Sources/Generation/Grammar), seeded with fuzz/schema/seeds
#
# Compiles the target's sources and fuzz/TARGET/*.swift into one module with swiftc (no SwiftPM, so
# it does not touch .build/ locks), writes the seeds, then runs the fuzzer. New interesting inputs
# accumulate in .build/fuzz/TARGET-corpus/; crashes go to .build/fuzz/artifacts/TARGET-*.
set -euo pipefail

target="${1:?usage: fuzz/run-fuzzer.sh gguf|jinja|schema [seconds]}"
seconds="${2:-60}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/.build/fuzz"
seeds="$out/$target-seeds"
corpus="$out/$target-corpus"
artifacts="$out/artifacts"

case "$target" in
gguf)
    module=GGUFFuzz
    sources=("$root"/Sources/ModelFormat/*.swift)
    limits=(-max_len=65536)
    ;;
jinja)
    module=JinjaFuzz
    sources=("$root"/Sources/Generation/Jinja/*.swift)
    limits=(-max_len=16384 -timeout=10 -rss_limit_mb=2560)
    ;;
schema)
    # The compiler lives in NodeService, whose other files need the whole node: it is compiled with
    # the grammar files it uses, its `import Generation` dropped (one module here).
    module=SchemaFuzz
    mkdir -p "$out/schema-src"
    sed '/^import Generation$/d' "$root/Sources/NodeService/JSONSchemaGrammar.swift" > "$out/schema-src/JSONSchemaGrammar.swift"
    sources=("$out/schema-src/JSONSchemaGrammar.swift" "$root/Sources/NodeService/JSONValue.swift"
             "$root/Sources/Generation/InferenceError.swift" "$root"/Sources/Generation/Grammar/{ByteSet,Grammar,GrammarBuilder,GrammarMatcher,JSONRules}.swift)
    limits=(-max_len=8192 -timeout=10 -rss_limit_mb=2560)
    ;;
*)
    echo "run-fuzzer.sh: unknown target '$target' (gguf, jinja or schema)" >&2
    exit 2
    ;;
esac
mkdir -p "$out" "$seeds" "$corpus" "$artifacts"

echo "building $out/$target-fuzzer"
# lld (shipped with the toolchain) instead of gold, which prints a warning per ASan symbol.
linker=()
if command -v ld.lld > /dev/null; then linker=(-use-ld=lld); fi
swiftc -sanitize=fuzzer,address -parse-as-library -O -g "${linker[@]}" \
    -swift-version 6 \
    -enable-upcoming-feature ExistentialAny -enable-upcoming-feature MemberImportVisibility \
    -module-name "$module" \
    "${sources[@]}" "$root/fuzz/$target"/*.swift \
    -o "$out/$target-fuzzer"

case "$target" in
gguf)
    python3 "$root/fuzz/gguf/make-seeds.py" "$seeds"
    model="${SECURENODE_TEST_MODEL:-$root/models/cache/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf}"
    if [[ -f "$model" ]]; then
        head -c 65536 "$model" > "$seeds/real-model-head-64k.gguf"
        echo "seeded with the first 64 KiB of $model"
    fi
    ;;
jinja)
    # Every real template, alone and followed by a NUL and a message content.
    for template in "$root"/Tests/GenerationTests/Fixtures/ChatTemplates/*.jinja; do
        name="$(basename "$template" .jinja)"
        cp "$template" "$seeds/$name"
        { cat "$template"; printf '\0<|im_end|>\n{{ x }} {%% raw %%}'; } > "$seeds/$name-content"
    done
    printf '%s' '{% for m in messages %}{{ m.role }}: {{ m.content | trim }}{% endfor %}{{ messages | tojson }}{{ tools | tojson(indent=2) }}' \
        > "$seeds/hand-written"
    ;;
schema)
    cp "$root"/fuzz/schema/seeds/* "$seeds/"
    ;;
esac

echo "fuzzing for $seconds s"
exec "$out/$target-fuzzer" \
    "${limits[@]}" \
    -max_total_time="$seconds" \
    -dict="$root/fuzz/$target/$target.dict" \
    -artifact_prefix="$artifacts/$target-" \
    -print_final_stats=1 \
    "$corpus" "$seeds"
