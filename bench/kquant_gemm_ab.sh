#!/usr/bin/env bash
# Issue 19: the exact Q4_K/Q6_K prompt GEMM end to end, A/B in one binary on the 1B-shaped Q4_K_M
# model (bench/scale.sh's, from $SECURENODE_CACHE/scale): `securenode bench-engine` as shipped (BLAS
# prompt passes, Q4_K/Q6_K projections on the exact VNNI GEMM, GEMM attention), with
# SECURENODE_KERNEL_ISA=avx2 (no VNNI: every projection of a BLAS pass through dequantize + sgemm,
# the path before the GEMM), and with --exact (everything exact: the GEMM and the exact attention
# kernels). Fresh processes, alternating, median of RUNS; writes bench/results/$OUT.md.
#
#   bench/kquant_gemm_ab.sh    RUNS=3 THREADS=2 LENGTHS=128,512 OUT=kquant-gemm-ab SECURENODE_BIN=path
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
RUNS="${RUNS:-3}"; THREADS="${THREADS:-2}"; LENGTHS="${LENGTHS:-128,512}"; OUT="${OUT:-kquant-gemm-ab}"
bench_tools
model="${SCALE_DIR:-$SECURENODE_CACHE/scale}/1b-q4_k_m.gguf"
[[ -f "$model" ]] || die "no $model: run SIZES=1b TYPES=Q4_K_M bench/scale.sh first"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
openssl ecparam -name prime256v1 -genkey -noout -out "$work/key.pem" 2>/dev/null
openssl ec -in "$work/key.pem" -pubout -out "$work/pub.pem" 2>/dev/null
"$bin" model sign "$model" --private-key "$work/key.pem" --signature "$work/sig" >/dev/null || die "signing failed"
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
for run in $(seq "$RUNS"); do
  for mode in gemm avx2-blas exact; do
    env=(); flags=()
    [[ "$mode" == avx2-blas ]] && env=(SECURENODE_KERNEL_ISA=avx2)
    [[ "$mode" == exact ]] && flags=(--exact)
    env "${env[@]}" "$bin" bench-engine --model "$model" --signature "$work/sig" --public-key "$work/pub.pem" \
      --threads "$THREADS" --prompt-lengths "$LENGTHS" --decode-tokens 8 "${flags[@]}" > "$work/$mode-$run.json" \
      || die "bench-engine ($mode) failed"
    log "run $run $mode done"
  done
done
load_end="$(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$work" "$RUNS" "$LENGTHS" "$load_start" "$load_end" > "$REPO/bench/results/$OUT.md" <<'PY'
import json, statistics, sys
work, runs, lengths, l0, l1 = sys.argv[1], int(sys.argv[2]), [int(x) for x in sys.argv[3].split(",")], sys.argv[4], sys.argv[5]
modes = {"gemm": "BLAS passes, Q4_K/Q6_K on the exact VNNI GEMM (default)",
         "avx2-blas": "SECURENODE_KERNEL_ISA=avx2: dequantize + sgemm (before)",
         "exact": "--exact: exact GEMM + exact attention"}
rate = {}
for m in modes:
    for n in lengths:
        xs = []
        for r in range(1, runs + 1):
            d = json.load(open(f"{work}/{m}-{r}.json"))
            p = next(p for p in d["prefill"] if p["tokens"] == n)
            xs.append(p["tokens"] / p["seconds"])
        rate[m, n] = (statistics.median(xs), xs)
print(f"# Exact Q4_K/Q6_K prompt GEMM, 1B shapes Q4_K_M, A/B in one binary (bench/kquant_gemm_ab.sh)\n")
print(f"`securenode bench-engine`, median of {runs} fresh processes per mode, alternating; load average {l0} at the start, {l1} at the end.\n")
print("| mode | " + " | ".join(f"pp{n} tokens/s (runs)" for n in lengths) + " |")
print("|---|" + "---|" * len(lengths))
for m, label in modes.items():
    print(f"| {label} | " + " | ".join(f"{rate[m, n][0]:.1f} ({', '.join(f'{x:.1f}' for x in rate[m, n][1])})" for n in lengths) + " |")
for n in lengths:
    print(f"\npp{n}: GEMM / before {rate['gemm', n][0] / rate['avx2-blas', n][0]:.2f}x; --exact / before {rate['exact', n][0] / rate['avx2-blas', n][0]:.2f}x")
PY
cat "$REPO/bench/results/$OUT.md"
