"""Inference speed, securenode against llama.cpp on the same GGUF, the same threads, the same machine,
in the same run; see inference.sh.

Each run of each engine is a fresh process (so cold start is measured the same way for both), and
the runs alternate (securenode first on even runs, llama.cpp first on odd ones) so that both see
the same machine state. securenode runs as

    securenode bench-engine --model DIR --signature S --public-key K --threads N
                            --prompt-lengths 16,32,... --decode-tokens 128

and llama.cpp as inference_peer.py under the peer's Python (llama-cpp-python); both print one JSON
object (engine, threads, modelBytes, kvCacheBytes, coldStartSeconds, verifySeconds, prefill[{tokens,
seconds}], ttft128Seconds, decode{tokens, seconds}, peakRSSBytes). The driver also reads each
process's peak RSS itself (wait4), and writes OUT.json, OUT.md and OUT-tokens-per-second.svg.
"""
import argparse, datetime, hashlib, json, math, os, platform, statistics, subprocess, sys, tempfile, threading, time
from xml.sax.saxutils import escape

MiB = 1 << 20
OURS, PEER = "securenode", "llama.cpp"
ENGINES = (OURS, PEER)
RSS_ALLOWANCE = 150 * MiB  # issue 5: peak RSS <= model file + KV cache + 150 MiB
SPEEDUP_TARGET = 1.5       # issue 5: decode and pp512 tokens/s >= 1.5x llama.cpp's
REQUIRED = ("engine", "threads", "modelBytes", "kvCacheBytes", "coldStartSeconds", "prefill",
            "ttft128Seconds", "decode", "peakRSSBytes")


def log(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Running one engine once


def run_engine(name, cmd, timeout):
    """Runs cmd, returns its JSON plus what the driver measured (wall time, wait4 peak RSS)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)  # reaps the child: its own rusage, not a sum
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if proc.returncode != 0:
        why = f"killed after {timeout} s" if wall >= timeout else f"exited {proc.returncode}"
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        raise SystemExit(f"error: {name} {why}: {' '.join(cmd)}\n{tail}")
    result = parse_json(name, stdout)
    result["_driver"] = {"wallSeconds": wall, "maxRSSBytes": usage.ru_maxrss * 1024}
    return result


def parse_json(name, stdout):
    """The one JSON object on stdout (tolerating log lines before it)."""
    candidates = [stdout.strip()] + [l.strip() for l in reversed(stdout.splitlines()) if l.strip().startswith("{")]
    for text in candidates:
        try:
            obj = json.loads(text)
        except ValueError:
            continue
        if isinstance(obj, dict):
            return obj
    raise SystemExit(f"error: {name} printed no JSON object on stdout:\n{stdout[-2000:]}")


def check_result(name, r, threads, lengths, decode_tokens):
    missing = [k for k in REQUIRED if k not in r]
    if missing:
        raise SystemExit(f"error: {name}'s JSON lacks {', '.join(missing)}")
    if r["threads"] != threads:
        raise SystemExit(f"error: {name} ran with {r['threads']} threads, asked for {threads}")
    got = sorted(e["tokens"] for e in r["prefill"])
    if got != sorted(lengths):
        raise SystemExit(f"error: {name} measured prompt lengths {got}, asked for {sorted(lengths)}")
    if r["decode"]["tokens"] != decode_tokens:
        raise SystemExit(f"error: {name} decoded {r['decode']['tokens']} tokens, asked for {decode_tokens}")


# ---------------------------------------------------------------------------------------------
# Metrics: (key, label, unit, better). Per run, then median/min/max over runs.


def metric_defs(lengths, decode_tokens):
    defs = [("decode", f"decode tg{decode_tokens}", "tokens/s", "higher")]
    defs += [(f"pp{n}", f"prompt processing pp{n}", "tokens/s", "higher") for n in lengths]
    defs += [
        ("ttft128", "time to first token, 128-token prompt", "s", "lower"),
        ("coldStart", "cold start (verify + load + build)", "s", "lower"),
        ("load", "load + build (cold start without verify)", "s", "lower"),
        ("verify", "signature verification (in cold start)", "s", "lower"),
        ("peakRSS", "peak RSS (engine's getrusage)", "bytes", "lower"),
        ("peakRSSwait4", "peak RSS (driver's wait4)", "bytes", "lower"),
        ("kvCache", "KV cache", "bytes", "lower"),
        ("processWall", "whole process, wall", "s", "lower"),
    ]
    return defs


def run_metrics(r):
    m = {}
    for e in r["prefill"]:
        m[f"pp{e['tokens']}"] = e["tokens"] / e["seconds"]
    m["decode"] = r["decode"]["tokens"] / r["decode"]["seconds"]
    m["ttft128"] = r["ttft128Seconds"]
    m["coldStart"] = r["coldStartSeconds"]
    verify = r.get("verifySeconds")
    m["verify"] = verify
    m["load"] = r["coldStartSeconds"] - (verify or 0.0)
    m["peakRSS"] = r["peakRSSBytes"]
    m["peakRSSwait4"] = r["_driver"]["maxRSSBytes"]
    m["kvCache"] = r["kvCacheBytes"]
    m["processWall"] = r["_driver"]["wallSeconds"]
    return m


def summarize(samples):
    values = [v for v in samples if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "samples": samples}


# ---------------------------------------------------------------------------------------------
# Machine and versions


def machine_info():
    model, flags, cores = None, set(), None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name" and model is None:
                    model = value
                elif key == "flags" and not flags:
                    flags = set(value.split())
                elif key == "cpu cores" and cores is None:
                    cores = int(value)
    except OSError:
        pass
    wanted = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni", "avx512_bf16")
    return {
        "cpuModel": model or platform.processor() or platform.machine(),
        "logicalCpus": os.cpu_count(),
        "coresPerSocket": cores,
        "cpuFeatures": [f for f in wanted if f in flags],
        "openblasCoretype": os.environ.get("OPENBLAS_CORETYPE"),
        "kernel": platform.release(),
        "machine": platform.machine(),
    }


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_info(repo):
    def git(*args):
        try:
            return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None
    commit = git("rev-parse", "HEAD")
    # What the binary is built from: uncommitted changes there make the commit an approximation.
    changes = git("status", "--porcelain", "--", "Sources", "Package.swift")
    return {"commit": commit, "uncommittedSourceChanges": bool(changes) if changes is not None else None}


# ---------------------------------------------------------------------------------------------
# Formatting


def fmt_value(v, unit):
    if v is None:
        return "n/a"
    if unit == "tokens/s":
        return f"{v:.1f}"
    if unit == "s":
        return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"
    if unit == "bytes":
        return f"{v / MiB:.1f} MiB"
    return f"{v:g}"


def fmt_cell(s, unit):
    if s is None:
        return "n/a"
    if s["min"] == s["max"]:
        return fmt_value(s["median"], unit)
    lo, hi = fmt_value(s["min"], unit), fmt_value(s["max"], unit)
    if lo.split()[1:] == hi.split()[1:]:  # same unit: name it once
        lo = lo.split()[0]
    return f"{fmt_value(s['median'], unit)} ({lo}–{hi})"


def plural(n, word):
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def markdown(res, defs):
    m, mach, ver = res["metrics"], res["machine"], res["versions"]
    model = res["model"]
    feats = ", ".join(mach["cpuFeatures"]) or "none of AVX2/AVX-512 reported"
    commit = (ver["securenodeCommit"] or "unknown")[:12]
    if ver["uncommittedSourceChanges"]:
        commit += " + uncommitted changes in Sources/"
    out = [
        f"# Inference: securenode against llama.cpp",
        "",
        f"{model['file']} ({model['bytes'] / 1e6:.1f} MB), {res['threads']} threads, "
        f"median of {plural(res['runs'], 'run')} per engine (min–max in parentheses), runs interleaved, each a fresh process.",
        "",
        f"- date: {res['date']}",
        f"- CPU: {mach['cpuModel']}, {mach['logicalCpus']} logical CPUs ({feats}); "
        f"`OPENBLAS_CORETYPE={mach['openblasCoretype'] or '(unset)'}`; Linux {mach['kernel']}",
        f"- load average (1 min) before / after: {mach['loadAverageBefore'][0]:.2f} / {mach['loadAverageAfter'][0]:.2f}",
        f"- securenode: commit {commit}, `bench-engine`",
        f"- llama.cpp: llama-cpp-python {ver['llamaCppPython'] or 'unknown'} (compiled here, `GGML_NATIVE=ON`), "
        f"n_ctx {res['peer']['nCtx']}, n_batch {res['peer']['nBatch']}, flash attention off, mmap on",
        "",
        "| metric | better | securenode median | llama.cpp median | ratio securenode / llama.cpp |",
        "|---|---|---|---|---|",
    ]
    for key, label, unit, better in defs:
        e = m[key]
        if e[OURS] is None and e[PEER] is None:
            continue
        ratio = f"**{e['ratio']:.2f}x**" if e["ratio"] is not None else "n/a"
        shown = unit if unit != "bytes" else "MiB"
        out.append(f"| {label}, {shown} | {better} | {fmt_cell(e[OURS], unit)} | {fmt_cell(e[PEER], unit)} | {ratio} |")
    out += ["", "## Targets (issue 5)", "", "| target | required | measured | result |", "|---|---|---|---|"]
    for t in res["targets"]:
        out.append(f"| {t['name']} | {t['required']} | {t['measured']} | **{t['result']}** |")
    peer = res["peer"]
    out += [
        "",
        "## Method",
        "",
        f"- Prompt token ids `ids[i] = (1 + i * 7919) % vocab` (vocab {peer['vocab']}), pseudo-random as in llama-bench. "
        "Every prompt length is evaluated from an empty context; tokens/s = prompt length / time of that evaluation. "
        "No warm-up evaluation in either engine: the first prompt length is the first evaluation after load.",
        f"- Decode: empty context, evaluate token 1, then {res['decodeTokens']} steps of greedy argmax of the last "
        "logits and evaluating that token; the steps are timed. TTFT: a 128-token prompt evaluated and its first greedy token chosen.",
        "- Ratios are securenode / llama.cpp of the medians: above 1 is better for tokens/s, below 1 is better for seconds and bytes.",
        f"- Peak RSS target: worst run of securenode, the larger of its own getrusage and the driver's wait4, against "
        f"its model file + its reported KV cache + 150 MiB.",
        "- llama.cpp runs through llama-cpp-python's low-level `Llama.eval` (one `llama_decode` per batch, no sampler, "
        "not `__call__`). Python overhead that a C++ caller would not pay: filling the batch in a Python loop "
        "(microseconds per eval), a few ctypes calls, and, per decoded token, a NumPy view of the logits and its argmax "
        f"(measured: {peer['argmaxMicroseconds']:.0f} µs per token, {peer['argmaxShareOfDecode'] * 100:.2f}% of the "
        f"decode time). Its peak RSS includes Python, NumPy and the llama.cpp libraries before any model: "
        f"{peer['baselineRSSMiB']:.0f} MiB.",
        "- Cold start: securenode verifies the model's signature and hashes every byte before it uses it; "
        "llama.cpp maps the file (mmap) and verifies nothing, so its load defers reading weights to first use.",
        "",
    ]
    load = mach["loadAverageBefore"][0]
    if load > 0.5:
        out.insert(4, f"> The machine was not quiet: load average {load:.2f} before the run; treat the numbers with care.")
        out.insert(5, "")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# The plot: hand-written SVG, prompt processing by prompt length (left), decode (right).

COLORS = {OURS: "#1f77b4", PEER: "#d62728"}


def nice_ticks(vmax, n=5):
    vmax = vmax if vmax > 0 else 1.0
    raw = vmax / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    count = math.ceil(vmax / step - 1e-9)
    return [i * step for i in range(count + 1)], step


def tick_label(v, step):
    return f"{v:.0f}" if float(step).is_integer() else f"{v:.1f}"


def svg_plot(res, lengths):
    m = res["metrics"]
    W, H = 920, 470
    top, bottom = 70, 360  # plot area, both panels
    L = (80, 590)          # left panel x range
    R = (680, 880)         # right panel x range
    el = []
    text = lambda x, y, s, size=12, anchor="middle", weight="normal", extra="": el.append(
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" font-weight="{weight}" {extra}>{escape(s)}</text>')
    line = lambda x1, y1, x2, y2, stroke="#000", width=1, extra="": el.append(
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}" stroke-width="{width}" {extra}/>')

    mach = res["machine"]
    text(W / 2, 24, f"Tokens/s, securenode vs llama.cpp: {res['model']['file']}, {res['threads']} threads", 16, weight="bold")
    text(W / 2, 44, f"{mach['cpuModel']}, median of {plural(res['runs'], 'run')} (bars: min–max), {res['date'][:10]}", 12, extra='fill="#444"')

    def stat(key, eng, field="median"):
        s = m.get(key, {}).get(eng)
        return s[field] if s else None

    def yaxis(x0, x1, ticks, step, ymax, label):
        ys = lambda v: bottom - (v / ymax) * (bottom - top)
        for v in ticks:
            y = ys(v)
            line(x0, y, x1, y, "#ddd")
            line(x0 - 5, y, x0, y)
            text(x0 - 8, y + 4, tick_label(v, step), 11, "end")
        line(x0, top, x0, bottom)
        line(x0, bottom, x1, bottom)
        el.append(f'<text x="{x0 - 52:.1f}" y="{(top + bottom) / 2:.1f}" font-size="12" text-anchor="middle" '
                  f'transform="rotate(-90 {x0 - 52:.1f} {(top + bottom) / 2:.1f})">{escape(label)}</text>')
        return ys

    # Left: prompt processing.
    pp_keys = [f"pp{n}" for n in lengths]
    peaks = [stat(k, e, "max") for k in pp_keys for e in ENGINES] + [SPEEDUP_TARGET * (stat(k, PEER) or 0) for k in pp_keys]
    ticks, step = nice_ticks(max([v for v in peaks if v] or [1]))
    ys = yaxis(L[0], L[1], ticks, step, ticks[-1], "prompt processing, tokens/s")
    lo, hi = math.log(min(lengths)), math.log(max(lengths))
    pad = 20
    xs = lambda n: L[0] + pad + ((math.log(n) - lo) / (hi - lo) if hi > lo else 0.5) * (L[1] - L[0] - 2 * pad)
    for n in lengths:
        line(xs(n), bottom, xs(n), bottom + 5)
        text(xs(n), bottom + 19, str(n), 11)
    text((L[0] + L[1]) / 2, bottom + 38, "prompt length, tokens (log scale)", 12)
    target = [(xs(n), ys(SPEEDUP_TARGET * stat(f"pp{n}", PEER))) for n in lengths if stat(f"pp{n}", PEER)]
    if len(target) > 1:
        el.append('<polyline fill="none" stroke="#888" stroke-width="1.5" stroke-dasharray="6 4" points="'
                  + " ".join(f"{x:.1f},{y:.1f}" for x, y in target) + '"/>')
    for eng in ENGINES:
        pts = [(xs(n), ys(stat(f"pp{n}", eng))) for n in lengths if stat(f"pp{n}", eng) is not None]
        for n in lengths:
            if stat(f"pp{n}", eng, "min") is not None:
                line(xs(n), ys(stat(f"pp{n}", eng, "min")), xs(n), ys(stat(f"pp{n}", eng, "max")), COLORS[eng], 1.5)
        if len(pts) > 1:
            el.append(f'<polyline fill="none" stroke="{COLORS[eng]}" stroke-width="2.5" points="'
                      + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
        for x, y in pts:
            el.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{COLORS[eng]}"/>')
    n_last = lengths[-1]
    labels = sorted(((ys(stat(f"pp{n_last}", e)) + 4, e) for e in ENGINES if stat(f"pp{n_last}", e) is not None))
    if len(labels) == 2 and labels[1][0] - labels[0][0] < 13:  # keep the two value labels apart
        mid = (labels[0][0] + labels[1][0]) / 2
        labels = [(mid - 6.5, labels[0][1]), (mid + 6.5, labels[1][1])]
    for y, eng in labels:  # value labels at the longest prompt
        text(xs(n_last) + 8, y, f"{stat(f'pp{n_last}', eng):.0f}", 11, "start", "bold", f'fill="{COLORS[eng]}"')

    # Right: decode.
    dk = "decode"
    peaks = [stat(dk, e, "max") for e in ENGINES] + [SPEEDUP_TARGET * (stat(dk, PEER) or 0)]
    ticks, step = nice_ticks(max([v for v in peaks if v] or [1]))
    ys = yaxis(R[0], R[1], ticks, step, ticks[-1], f"decode tg{res['decodeTokens']}, tokens/s")
    slot = (R[1] - R[0]) / len(ENGINES)
    bw = slot * 0.5
    for i, eng in enumerate(ENGINES):
        cx = R[0] + slot * (i + 0.5)
        text(cx, bottom + 19, eng, 11)
        v = stat(dk, eng)
        if v is None:
            continue
        el.append(f'<rect x="{cx - bw / 2:.1f}" y="{ys(v):.1f}" width="{bw:.1f}" height="{bottom - ys(v):.1f}" '
                  f'fill="{COLORS[eng]}" fill-opacity="0.85"/>')
        line(cx, ys(stat(dk, eng, "min")), cx, ys(stat(dk, eng, "max")), "#000", 1.5)
        text(cx, ys(stat(dk, eng, "max")) - 6, f"{v:.1f}", 11, weight="bold")
    if stat(dk, PEER):
        y = ys(SPEEDUP_TARGET * stat(dk, PEER))
        line(R[0], y, R[1], y, "#888", 1.5, 'stroke-dasharray="6 4"')
    text((R[0] + R[1]) / 2, bottom + 38, "engine", 12)

    # Legend, below both panels.
    lx, ly = L[0], H - 40
    for eng in ENGINES:
        line(lx, ly, lx + 28, ly, COLORS[eng], 2.5)
        el.append(f'<circle cx="{lx + 14:.1f}" cy="{ly:.1f}" r="4" fill="{COLORS[eng]}"/>')
        text(lx + 36, ly + 4, eng, 12, "start")
        lx += 150
    line(lx, ly, lx + 28, ly, "#888", 1.5, 'stroke-dasharray="6 4"')
    text(lx + 36, ly + 4, f"{SPEEDUP_TARGET:g}x llama.cpp (issue 5 target)", 12, "start")

    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
            f'font-family="DejaVu Sans, Helvetica, Arial, sans-serif">\n'
            f'<rect width="{W}" height="{H}" fill="#fff"/>\n' + "\n".join(el) + "\n</svg>\n")


# ---------------------------------------------------------------------------------------------


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--securenode", "--peer-python", "--model-dir", "--model-file", "--signature", "--public-key", "--out"):
        p.add_argument(flag, required=True)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1, help="discarded runs of each engine first (page cache, binaries)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt-lengths", default="16,32,64,128,256,512")
    p.add_argument("--decode-tokens", type=int, default=128)
    p.add_argument("--timeout", type=float, default=900, help="seconds for one run of one engine")
    a = p.parse_args()
    lengths = sorted(int(x) for x in a.prompt_lengths.split(","))
    pl = ",".join(map(str, lengths))
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(here)
    cmds = {
        OURS: [a.securenode, "bench-engine", "--model", a.model_dir, "--signature", a.signature,
               "--public-key", a.public_key, "--threads", str(a.threads), "--prompt-lengths", pl,
               "--decode-tokens", str(a.decode_tokens)],
        PEER: [a.peer_python, os.path.join(here, "inference_peer.py"), "--model", a.model_file,
               "--threads", str(a.threads), "--prompt-lengths", pl, "--decode-tokens", str(a.decode_tokens)],
    }

    machine = machine_info()
    machine["loadAverageBefore"] = os.getloadavg()
    for i in range(a.warmup):
        for eng in ENGINES:
            log(f"warm-up {i + 1}/{a.warmup}: {eng}")
            run_engine(eng, cmds[eng], a.timeout)
    raw = {OURS: [], PEER: []}
    order = []
    for i in range(a.runs):
        for eng in (ENGINES if i % 2 == 0 else ENGINES[::-1]):
            r = run_engine(eng, cmds[eng], a.timeout)
            check_result(eng, r, a.threads, lengths, a.decode_tokens)
            raw[eng].append(r)
            order.append(eng)
            mt = run_metrics(r)
            log(f"run {i + 1}/{a.runs} {eng:10s}: decode {mt['decode']:.1f} tok/s, pp{lengths[-1]} "
                f"{mt[f'pp{lengths[-1]}']:.1f} tok/s, TTFT128 {mt['ttft128'] * 1000:.0f} ms, "
                f"cold start {mt['coldStart'] * 1000:.0f} ms, peak RSS {mt['peakRSSwait4'] / MiB:.0f} MiB")
    machine["loadAverageAfter"] = os.getloadavg()

    defs = metric_defs(lengths, a.decode_tokens)
    per_run = {eng: [run_metrics(r) for r in raw[eng]] for eng in ENGINES}
    metrics = {}
    for key, label, unit, better in defs:
        e = {"label": label, "unit": unit, "better": better}
        for eng in ENGINES:
            e[eng] = summarize([mt.get(key) for mt in per_run[eng]])
        o, q = e[OURS], e[PEER]
        e["ratio"] = o["median"] / q["median"] if o and q and q["median"] else None
        metrics[key] = e

    # Targets.
    def speed_target(key, name):
        r = metrics.get(key, {}).get("ratio")
        if r is None:
            return {"name": name, "required": f">= {SPEEDUP_TARGET}x llama.cpp", "measured": "not measured",
                    "value": None, "pass": None, "result": "n/a"}
        o, q = metrics[key][OURS]["median"], metrics[key][PEER]["median"]
        return {"name": name, "required": f">= {SPEEDUP_TARGET}x llama.cpp", "value": r, "pass": r >= SPEEDUP_TARGET,
                "measured": f"{r:.2f}x ({o:.1f} vs {q:.1f} tokens/s)", "result": "PASS" if r >= SPEEDUP_TARGET else "FAIL"}

    targets = [speed_target("decode", f"decode tg{a.decode_tokens} tokens/s"),
               speed_target("pp512", "prompt processing pp512 tokens/s")]
    ours = raw[OURS]
    worst_rss = max(max(r["peakRSSBytes"], r["_driver"]["maxRSSBytes"]) for r in ours)
    limit = max(r["modelBytes"] + r["kvCacheBytes"] for r in ours) + RSS_ALLOWANCE
    targets.append({
        "name": "peak RSS <= model file + KV cache + 150 MiB",
        "required": f"<= {limit / MiB:.1f} MiB ({ours[0]['modelBytes'] / MiB:.1f} + {ours[0]['kvCacheBytes'] / MiB:.1f} + 150)",
        "measured": f"{worst_rss / MiB:.1f} MiB (worst run)", "value": worst_rss, "limit": limit,
        "pass": worst_rss <= limit, "result": "PASS" if worst_rss <= limit else "FAIL"})
    for key, name in (("ttft128", "time to first token, 128-token prompt"), ("coldStart", "cold start (verify + load)")):
        o, q = metrics[key][OURS], metrics[key][PEER]
        targets.append({"name": name, "required": "reported", "value": o["median"], "pass": None, "result": "reported",
                        "measured": f"{fmt_value(o['median'], 's')} (llama.cpp {fmt_value(q['median'], 's')})"})

    peer0 = raw[PEER][0]
    argmax_us = statistics.median(r.get("pythonArgmaxSeconds", 0) / r["decode"]["tokens"] * 1e6 for r in raw[PEER])
    argmax_share = statistics.median(r.get("pythonArgmaxSeconds", 0) / r["decode"]["seconds"] for r in raw[PEER])
    git = git_info(repo)
    model_file = os.path.abspath(a.model_file)
    bin_path = os.path.abspath(a.securenode)
    res = {
        "benchmark": "inference speed: securenode bench-engine against llama.cpp (llama-cpp-python), same GGUF and threads",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "runs": a.runs,
        "warmupRuns": a.warmup,
        "threads": a.threads,
        "promptLengths": lengths,
        "decodeTokens": a.decode_tokens,
        "order": order,
        "model": {"file": os.path.basename(model_file), "bytes": os.path.getsize(model_file), "sha256": sha256_file(model_file)},
        "machine": machine,
        "versions": {
            "securenodeCommit": git["commit"],
            "uncommittedSourceChanges": git["uncommittedSourceChanges"],
            "securenodeBinarySha256": sha256_file(bin_path) if os.path.isfile(bin_path) else None,
            "llamaCppPython": peer0.get("llamaCppPythonVersion"),
            "llamaCppSystemInfo": peer0.get("systemInfo"),
            "driverPython": platform.python_version(),
        },
        "peer": {"nCtx": peer0.get("nCtx"), "nBatch": peer0.get("nBatch"), "vocab": peer0.get("vocab"),
                 "baselineRSSMiB": (peer0.get("baselineRSSBytes") or 0) / MiB,
                 "argmaxMicroseconds": argmax_us, "argmaxShareOfDecode": argmax_share},
        "ratioConvention": "securenode / llama.cpp of the medians; tokens/s: higher is better (ratio > 1 is faster); "
                           "seconds and bytes: lower is better (ratio < 1 is better)",
        "metrics": metrics,
        "targets": targets,
        "raw": raw,
    }
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    md = markdown(res, defs)
    write_atomic(a.out + ".json", json.dumps(res, indent=2) + "\n")
    write_atomic(a.out + ".md", md)
    write_atomic(a.out + "-tokens-per-second.svg", svg_plot(res, lengths))
    print(md)


if __name__ == "__main__":
    main()
