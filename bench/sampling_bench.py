"""bench/sampling.sh's driver: what drawing a token costs beside the forward pass. For each binary
(the current one, and BASELINE if given: the same measurement of the code before a change, in the
same run), `securenode generate` on the default model, greedy and at temperature 0.7 with OpenAI's
defaults as `serve` applies them (no top-k, top_p 1, no min-p), alternating, RUNS runs, fresh
processes. Milliseconds per generated token = (wall time of a MAX_TOKENS run - wall time of a
1-token run) / (tokens generated - 1), so load and prompt cancel out and an early end of text does
not matter. Writes OUT.json (every raw run) and OUT.md.
"""
import argparse, datetime, json, os, statistics, subprocess, time


def timed(cmd):
    start = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return time.monotonic() - start, len(json.loads(out.strip().splitlines()[-1])["output_ids"])


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--securenode", required=True)
    a.add_argument("--baseline")
    a.add_argument("--model-dir", required=True)
    a.add_argument("--signature", required=True)
    a.add_argument("--public-key", required=True)
    a.add_argument("--runs", type=int, default=5)
    a.add_argument("--max-tokens", type=int, default=256)
    a.add_argument("--out", required=True)
    a = a.parse_args()
    binaries = {"current": a.securenode} | ({"baseline": a.baseline} if a.baseline else {})
    modes = {"greedy": ["--temperature", "0"], "sampled (T 0.7, OpenAI defaults)": ["--temperature", "0.7", "--top-k", "0", "--top-p", "1", "--min-p", "0"]}
    raw = {b: {m: [] for m in modes} for b in binaries}
    load_before = os.getloadavg()
    for run in range(a.runs):
        for b, path in (list(binaries.items()) if run % 2 == 0 else list(reversed(binaries.items()))):
            for m, flags in modes.items():
                base = [path, "generate", "--model", a.model_dir, "--signature", a.signature, "--public-key", a.public_key,
                        "--prompt", "Once upon a time", "--seed", str(run + 1), "--json"] + flags
                t1, _ = timed(base + ["--max-tokens", "1"])
                tn, n = timed(base + ["--max-tokens", str(a.max_tokens)])
                raw[b][m].append({"seconds_1": t1, "seconds_n": tn, "tokens": n, "ms_per_token": 1000 * (tn - t1) / max(n - 1, 1)})
                print(f"run {run + 1} {b} {m}: {raw[b][m][-1]['ms_per_token']:.2f} ms/token ({n} tokens)", flush=True)
    med = {b: {m: statistics.median(r["ms_per_token"] for r in raw[b][m]) for m in modes} for b in binaries}
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "runs": a.runs,
              "max_tokens": a.max_tokens, "load_before": load_before, "load_after": os.getloadavg(),
              "binaries": binaries, "median_ms_per_token": med, "raw": raw}
    json.dump(result, open(a.out + ".json", "w"), indent=1)
    lines = [f"# Sampling cost per token ({result['date']})", "",
             f"`securenode generate`, default model, {a.max_tokens} tokens, median of {a.runs} runs, alternating; "
             f"load average before / after: {load_before[0]:.2f} / {result['load_after'][0]:.2f}.", "",
             "| binary | greedy ms/token | sampled ms/token | sampling's share |", "|---|---|---|---|"]
    for b in binaries:
        g, s = med[b]["greedy"], med[b]["sampled (T 0.7, OpenAI defaults)"]
        lines.append(f"| {b} (`{binaries[b]}`) | {g:.2f} | {s:.2f} | {s - g:+.2f} ms ({s / g:.2f}x) |")
    open(a.out + ".md", "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
