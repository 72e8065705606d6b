"""bench/scale.sh's driver: securenode and llama.cpp side by side on each model, in the same run,
RUNS runs each, alternating, each a fresh process (`securenode bench-engine` and inference_peer.py
under llama-cpp-python; both print the same JSON). Medians; writes OUT.json and OUT.md with one
table per model, the DRAM and sgemm rooflines and issue 19's targets.

    python3 scale_bench.py --securenode BIN --peer-python PY --roofline JSON --runs 3 --threads 2 \
        --model NAME=FILE.gguf=SIG (repeatable) --public-key PUB --out PREFIX
"""
import argparse, datetime, json, os, platform, statistics, subprocess, sys, tempfile, time

MiB = 1 << 20
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from inference_bench import run_engine  # noqa: E402  (fresh process, wait4 peak RSS)

# Issue 19's targets by model size: (pp512 ratio, decode ratio) against llama.cpp.
TARGETS = {"135m": (3.0, 2.0), "1b": (2.0, 1.2), "8b": (1.5, None)}
RSS_ALLOWANCE = 150 * MiB


def log(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


def gguf_facts(path):
    """Tensor types and the bytes a decode step reads (every matrix once; the embedding's one row
    is negligible unless it is also the output matrix), and multiply-accumulates per token."""
    import gguf
    r = gguf.GGUFReader(path)
    types, read, macs = {}, 0, 0
    names = {t.name for t in r.tensors}
    tied = "output.weight" not in names
    for t in r.tensors:
        name = t.tensor_type.name
        types[name] = types.get(name, 0) + 1
        if len(t.shape) != 2:
            continue
        if t.name == "token_embd.weight" and not tied:
            continue
        read += int(t.n_bytes)
        macs += int(t.shape[0]) * int(t.shape[1])
    return {"tensorTypes": types, "decodeBytes": read, "macsPerToken": macs}


def tps(r, key, n=None):
    if key == "decode":
        return r["decode"]["tokens"] / r["decode"]["seconds"]
    if key == "ttft":
        return r["ttft128Seconds"]
    for p in r["prefill"]:
        if p["tokens"] == n:
            return n / p["seconds"]
    return None


def med(runs, key, n=None):
    vals = [tps(r, key, n) for r in runs]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--securenode", required=True)
    a.add_argument("--peer-python", required=True)
    a.add_argument("--roofline", required=True)
    a.add_argument("--runs", type=int, default=3)
    a.add_argument("--threads", type=int, default=2)
    a.add_argument("--decode-tokens", type=int, default=128)
    a.add_argument("--model", action="append", required=True, help="NAME=FILE=SIGNATURE")
    a.add_argument("--public-key", required=True)
    a.add_argument("--out", required=True)
    a.add_argument("--timeout", type=int, default=1800)
    a = a.parse_args()
    roof = json.load(open(a.roofline))
    lengths = "128,512"
    results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                           "load1": os.getloadavg()[0], "note": "shared with other builds and helpers: noisy"},
               "threads": a.threads, "runs": a.runs, "roofline": roof, "models": {}}
    for spec in a.model:
        name, path, sig = spec.split("=")
        facts = gguf_facts(path)
        ours_cmd = [a.securenode, "bench-engine", "--model", path, "--signature", sig, "--public-key", a.public_key,
                    "--threads", str(a.threads), "--prompt-lengths", lengths, "--decode-tokens", str(a.decode_tokens)]
        peer_cmd = [a.peer_python, os.path.join(HERE, "inference_peer.py"), "--model", path, "--threads", str(a.threads),
                    "--prompt-lengths", lengths, "--decode-tokens", str(a.decode_tokens)]
        runs = {"securenode": [], "llama.cpp": []}
        for i in range(a.runs):
            order = [("securenode", ours_cmd), ("llama.cpp", peer_cmd)]
            if i % 2:
                order.reverse()
            for engine, cmd in order:
                log(f"{name}: {engine} run {i + 1}/{a.runs} (load average {os.getloadavg()[0]:.2f})")
                runs[engine].append(run_engine(engine, cmd, a.timeout))
        results["models"][name] = {"file": os.path.basename(path), "bytes": os.path.getsize(path), **facts, "runs": runs}
        json.dump(results, open(a.out + ".json", "w"), indent=1)
    write_markdown(results, a.out + ".md")


def write_markdown(results, path):
    roof = results["roofline"]
    lines = [f"# bench/scale.sh ({results['date']})", "",
             f"{results['threads']} threads, median of {results['runs']} runs per engine, alternating, fresh processes. "
             f"Machine: {results['machine']['cores']} cores, load average {results['machine']['load1']:.2f} at the start; "
             "shared with other builds at the time, so numbers are noisy (ratios are from the same run).",
             f"Rooflines measured here: DRAM read {roof['readGBps']:.1f} GB/s, sgemm {roof['sgemmGFLOPS']:.0f} GFLOP/s "
             f"({roof['threads']} threads, OpenBLAS {roof['openblasCore']}).", ""]
    for name, m in results["models"].items():
        ours, peer = m["runs"]["securenode"], m["runs"]["llama.cpp"]
        size = name.split("-")[0]
        pp_target, tg_target = TARGETS.get(size, (None, None))
        dram_tg = roof["readGBps"] * 1e9 / m["decodeBytes"]
        sgemm_pp = roof["sgemmGFLOPS"] * 1e9 / (2 * m["macsPerToken"])
        lines += [f"## {name}: {m['file']} ({m['bytes'] / 1e9:.2f} GB; tensor types {m['tensorTypes']})", "",
                  "| metric | securenode | llama.cpp | ratio | bound (roofline) | target |", "|---|---|---|---|---|---|"]
        for label, key, n, bound, target in [("pp128 (tokens/s)", "pp", 128, sgemm_pp, None),
                                             ("pp512 (tokens/s)", "pp", 512, sgemm_pp, pp_target),
                                             (f"tg{ours[0]['decode']['tokens']} (tokens/s)", "decode", None, dram_tg, tg_target)]:
            o, p = med(ours, key, n), med(peer, key, n)
            ratio = o / p if o and p else None
            tgt = ""
            if target:
                tgt = f">= {target}x: {'met' if ratio and ratio >= target else 'MISSED'}"
            lines.append(f"| {label} | {o:.1f} | {p:.1f} | {ratio:.2f}x | {bound:.1f} ({o / bound * 100:.0f}% of it) | {tgt} |")
        o, p = med(ours, "ttft"), med(peer, "ttft")
        lines.append(f"| TTFT, 128-token prompt | {o * 1000:.0f} ms | {p * 1000:.0f} ms | {o / p:.2f}x | | |")
        lo = statistics.median(r["coldStartSeconds"] for r in ours)
        lp = statistics.median(r["coldStartSeconds"] for r in peer)
        lines.append(f"| load (ours: verify + map) | {lo:.2f} s | {lp:.2f} s | | | |")
        ro = statistics.median(r["_driver"]["maxRSSBytes"] for r in ours)
        rp = statistics.median(r["_driver"]["maxRSSBytes"] for r in peer)
        allowed = m["bytes"] + ours[0]["kvCacheBytes"] + RSS_ALLOWANCE
        lines.append(f"| peak RSS | {ro / MiB:.0f} MiB | {rp / MiB:.0f} MiB | | model + KV + 150 MiB = {allowed / MiB:.0f} MiB | "
                     f"{'met' if ro <= allowed else 'MISSED by %.0f MiB' % ((ro - allowed) / MiB)} |")
        lines += ["", f"securenode: {ours[0].get('prefillMode')}, prompt batch {ours[0].get('promptBatch')}, "
                      f"OpenBLAS {ours[0].get('blasCore')}.", ""]
    open(path, "w").write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
