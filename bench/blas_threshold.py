"""bench/blas-threshold.sh's driver: `securenode bench-engine` on one model, exact kernels
(`--exact`) against BLAS for every prompt batch (`--blas-min-rows 1`), alternating, RUNS runs each;
the threshold is the smallest prompt length from which the BLAS median is faster at that length and
every longer one measured. Writes OUT.json and OUT.md.
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
    a.add_argument("--lengths", default="8,16,32,64,128,256,512")
    a.add_argument("--runs", type=int, default=3)
    a.add_argument("--threads", type=int, default=2)
    a.add_argument("--out", required=True)
    a = a.parse_args()
    lengths = [int(x) for x in a.lengths.split(",")]
    base = [a.securenode, "bench-engine", "--model", a.model, "--signature", a.signature, "--public-key", a.public_key,
            "--threads", str(a.threads), "--prompt-lengths", a.lengths, "--decode-tokens", "1"]
    modes = {"exact": base + ["--exact"], "blas": base + ["--blas-min-rows", "1"]}
    runs = {m: [] for m in modes}
    for i in range(a.runs):
        order = list(modes.items()) if i % 2 == 0 else list(reversed(modes.items()))
        for mode, cmd in order:
            print(f"==> {mode} run {i + 1}/{a.runs} (load average {os.getloadavg()[0]:.2f})", file=sys.stderr, flush=True)
            runs[mode].append(run_engine(mode, cmd, 1800))
    med = {m: {n: statistics.median(n / next(p["seconds"] for p in r["prefill"] if p["tokens"] == n) for r in rs)
               for n in lengths} for m, rs in runs.items()}
    threshold = None
    for n in lengths:
        if all(med["blas"][k] > med["exact"][k] for k in lengths if k >= n):
            threshold = n
            break
    out = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "model": os.path.basename(a.model),
           "threads": a.threads, "runs": runs, "medianTokensPerSecond": med, "threshold": threshold,
           "blasCore": runs["blas"][0].get("blasCore"), "load1": os.getloadavg()[0]}
    json.dump(out, open(a.out + ".json", "w"), indent=1)
    lines = [f"# BLAS threshold ({out['date']}, {out['model']})", "",
             f"`securenode bench-engine`, {a.threads} threads, median of {a.runs} runs per mode, alternating; "
             f"OpenBLAS {out['blasCore']}; machine shared with other builds (load average {out['load1']:.1f} at the end).", "",
             "| prompt tokens | exact tokens/s | BLAS tokens/s | BLAS / exact |", "|---|---|---|---|"]
    for n in lengths:
        lines.append(f"| {n} | {med['exact'][n]:.1f} | {med['blas'][n]:.1f} | {med['blas'][n] / med['exact'][n]:.2f}x |")
    lines += ["", f"Threshold (smallest length from which BLAS wins at every longer length): **{threshold}**"]
    open(a.out + ".md", "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
