"""bench/gemm-attention.sh's driver: `securenode bench-engine` on one model, BLAS prompt batches with
GEMM-shaped attention (the default) against the same with `--exact-attention`, alternating (the
order flips every run), RUNS runs each, fresh processes; medians of prompt tokens/s per length.
Writes OUT.json (every raw run) and OUT.md.
"""
import argparse, datetime, json, os, statistics, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from inference_bench import run_engine  # noqa: E402


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--securenode", required=True)
    a.add_argument("--model", required=True)
    a.add_argument("--signature", required=True)
    a.add_argument("--public-key", required=True)
    a.add_argument("--lengths", default="128,512,1024,2048")
    a.add_argument("--runs", type=int, default=3)
    a.add_argument("--threads", type=int, default=2)
    a.add_argument("--out", required=True)
    a = a.parse_args()
    lengths = [int(x) for x in a.lengths.split(",")]
    context = max(2048, max(lengths))
    base = [a.securenode, "bench-engine", "--model", a.model, "--signature", a.signature, "--public-key", a.public_key,
            "--threads", str(a.threads), "--prompt-lengths", a.lengths, "--decode-tokens", "1", "--context", str(context)]
    modes = {"exact attention": base + ["--exact-attention"], "GEMM attention": base}
    runs = {m: [] for m in modes}
    loads = []
    for i in range(a.runs):
        order = list(modes.items()) if i % 2 == 0 else list(reversed(modes.items()))
        for mode, cmd in order:
            loads.append(os.getloadavg()[0])
            print(f"==> {mode} run {i + 1}/{a.runs} (load average {loads[-1]:.2f})", file=sys.stderr, flush=True)
            runs[mode].append(run_engine(mode, cmd, 1800))
    per = {m: {n: [n / next(p["seconds"] for p in r["prefill"] if p["tokens"] == n) for r in rs] for n in lengths}
           for m, rs in runs.items()}
    med = {m: {n: statistics.median(v) for n, v in d.items()} for m, d in per.items()}
    out = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "model": os.path.basename(a.model),
           "threads": a.threads, "context": context, "runs": runs, "tokensPerSecond": per, "medianTokensPerSecond": med,
           "blasCore": runs["GEMM attention"][0].get("blasCore"), "promptBatch": runs["GEMM attention"][0].get("promptBatch"),
           "loadAverages": loads + [os.getloadavg()[0]]}
    json.dump(out, open(a.out + ".json", "w"), indent=1)
    lo, hi = min(out["loadAverages"]), max(out["loadAverages"])
    lines = [f"# GEMM-shaped attention on the BLAS prompt path ({out['date']}, {out['model']})", "",
             f"`securenode bench-engine`, {a.threads} threads, BLAS prompt batches of up to {out['promptBatch']} rows, "
             f"median of {a.runs} runs per mode (fresh processes, alternating), OpenBLAS {out['blasCore']}; "
             f"machine shared (load average {lo:.1f}-{hi:.1f} during the run).", "",
             "| prompt tokens | exact attention tokens/s | GEMM attention tokens/s | GEMM / exact | runs (exact; GEMM) |",
             "|---|---|---|---|---|"]
    for n in lengths:
        e, g = med["exact attention"][n], med["GEMM attention"][n]
        raw = "; ".join(", ".join(f"{v:.0f}" for v in per[m][n]) for m in modes)
        lines.append(f"| {n} | {e:.1f} | {g:.1f} | {g / e:.2f}x | {raw} |")
    open(a.out + ".md", "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
