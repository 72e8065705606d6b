"""What one stream loses through `securenode serve`, in one run: the in-process engine benchmark
(`securenode bench-engine`), `securenode generate`, and a streaming request to `securenode serve`, on
the same model, prompt length and threads; see serve-overhead.sh.

Every run measures the three, in a rotating order, each in a fresh process:

- engine: `bench-engine --prompt-lengths P,P,P --decode-tokens T-1 --decode-after P`: decode tokens/s
  over the positions the served request decodes at (attention grows with the position), and time to
  first token = the last of the three evaluations of a P-token prompt from an empty context (warm, as
  a served request is); and `--decode-after 1` (bench/inference.sh's tg, from position 1), shown beside.
- generate: `generate --prompt PROMPT --max-tokens T` (greedy), stdout read as it comes: decode
  tokens/s = (T - 1) / (time of the last output byte - time of the first). The token count comes from
  one `--json` run of the same command before the measurements.
- serve: a fresh node (`limits.parallel` 1, `limits.prompt_cache` false, so that every request
  evaluates its prompt as the engine does), one warm-up request, then REQUESTS streaming
  `POST /v1/completions` (the same raw prompt, max_tokens T, temperature 0), one after the other.
  Client side (a blocking socket whose `recv` times and bytes are parsed after the stream, to take as
  little as possible of the cores the node shares): time to first token (request written to the first
  SSE event with text) and decode tokens/s = (tokens - 1) / (last text event - first text event). Node side: the generation loop's
  own decode tokens/s, (tokens - 1) / `decode_seconds` from the node's "completion finished" log line
  (the scheduler's time from choosing the first token to choosing the last: engine steps, sampling,
  detokenizing and handing each piece to the HTTP side). Medians over the run's requests.

Medians over runs; targets (issue 20): serve decode >= 95% of generate's, the node's generation loop
>= 95% of the engine's decode, serve TTFT <= engine TTFT + 10 ms (reported PASS/FAIL; a FAIL does not
fail the script). Writes OUT.json and OUT.md.
"""
import argparse, datetime, json, os, platform, re, select, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from inference_bench import git_info, machine_info, sha256_file, summarize, write_atomic  # noqa: E402
from serve_bench import PROMPT, Server, free_port, start_dev_tpm, stop, stream_completion_blocking, tail  # noqa: E402

KINDS = ("engine", "generate", "serve")


def log(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


def trust_args(a):
    return ["--signature", a.signature, "--public-key", a.public_key]


def run_engine(a, prompt_tokens):
    """Two bench-engine processes: decode from position 1 (bench/inference.sh's tg128) and after a
    prompt as long as the served one (the positions, hence the attention work, of the served request)."""
    out = {}
    for after in (1, prompt_tokens):
        cmd = [a.securenode, "bench-engine", "--model", a.model_dir, *trust_args(a), "--threads", str(a.threads),
               "--prompt-lengths", ",".join([str(prompt_tokens)] * 3), "--decode-tokens", str(a.max_tokens - 1),
               "--decode-after", str(after), *decoding_args(a)]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            raise SystemExit(f"error: bench-engine exited {p.returncode}:\n{p.stderr[-2000:]}")
        r = json.loads(p.stdout.strip().splitlines()[-1])
        rate = r["decode"]["tokens"] / r["decode"]["seconds"]
        if after == 1:
            out["decodeFromStartTokensPerSecond"] = rate
        else:
            out["decodeTokensPerSecond"] = rate
            out["ttftSeconds"] = r["prefill"][-1]["seconds"]
            out["prefillSeconds"] = [x["seconds"] for x in r["prefill"]]
            out["prefillMode"] = r.get("prefillMode")
    return out


def decoding_args(a):
    """`--decoding` for bench-engine and generate when asked for (else each one's default, the node's)."""
    return ["--decoding", a.decoding] if a.decoding else []


def generate_cmd(a, extra=()):
    return [a.securenode, "generate", "--model", a.model_dir, *trust_args(a), "--prompt", PROMPT,
            "--max-tokens", str(a.max_tokens), *decoding_args(a), *extra]


def generate_tokens(a):
    """Prompt and output token counts of the greedy generation (one untimed --json run)."""
    p = subprocess.run(generate_cmd(a, ["--json"]), capture_output=True, text=True, timeout=600,
                       env=dict(os.environ))
    if p.returncode != 0:
        raise SystemExit(f"error: generate --json exited {p.returncode}:\n{p.stderr[-2000:]}")
    r = json.loads(p.stdout.strip().splitlines()[-1])
    return len(r["prompt_ids"]), len(r["output_ids"])


def run_generate(a, tokens):
    """The generate command with its stdout read as it comes; decode rate from the first to the last byte."""
    proc = subprocess.Popen(generate_cmd(a), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    fd = proc.stdout.fileno()
    first = last = None
    out = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 600)
        if not ready:
            proc.kill()
            raise SystemExit("error: generate produced nothing for 600 s")
        chunk = os.read(fd, 65536)
        now = time.perf_counter()
        if not chunk:
            break
        # The command ends with one newline of its own after the text: a chunk of only that is not a token.
        if chunk.strip(b"\n"):
            if first is None:
                first = now
            last = now
        out += chunk
    err = proc.stderr.read().decode(errors="replace")
    if proc.wait() != 0:
        raise SystemExit(f"error: generate exited {proc.returncode}:\n{err[-2000:]}")
    if first is None or last is None or last <= first:
        raise SystemExit("error: generate's output could not be timed")
    return {"decodeTokensPerSecond": (tokens - 1) / (last - first), "firstToLastSeconds": last - first,
            "outputBytes": len(out)}


def node_config(path, a, port, state_dir, tcti):
    text = "\n".join([
        "# written by bench/serve_overhead.py",
        f"profile: {json.dumps(a.profile)}",
        f"tcti: {json.dumps(tcti)}",
        f"state_dir: {json.dumps(state_dir)}",
        "model:",
        f"  path: {json.dumps(a.model_dir)}",
        f"  signature: {json.dumps(a.signature)}",
        f"  public_key: {json.dumps(a.public_key)}",
        "server:",
        "  host: 127.0.0.1",
        f"  port: {port}",
        "limits:",
        "  context_length: 2048",
        "  parallel: 1",
        f"  threads: {a.threads}",
        f"  max_tokens: {max(a.max_tokens, 64)}",
        "  prompt_cache: false",
        *([f"  decoding: {a.decoding}"] if a.decoding else []),
        "",
    ])
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


DECODE_RE = re.compile(r"completion_tokens=(\d+).*?decode_seconds=([0-9.]+)")


def run_serve(a, tmp, tcti):
    port = free_port()
    config = os.path.join(tmp, "serve-overhead.yaml")
    state = os.path.join(tmp, "state")
    node_config(config, a, port, state, tcti)
    cmd = [a.securenode, "serve", "--config", config, "--tcti", tcti, "--profile", a.profile, "--model", a.model_dir,
           *trust_args(a), "--port", str(port)]
    server = Server(OURS_NAME, cmd, port, "/readyz", tmp, dict(os.environ, SECURENODE_STATE_DIR=state))
    records = []
    try:
        server.wait_ready(180)
        model = server.model_id()
        body = {"model": model, "prompt": PROMPT, "max_tokens": a.max_tokens, "temperature": 0, "stream": True,
                "stream_options": {"include_usage": True}}
        warm = stream_completion_blocking(port, body, 300)
        if warm["error"]:
            raise SystemExit(f"error: the warm-up request failed: {warm['error']}\n{tail(server.log_path)}")
        for _ in range(a.requests):
            rec = stream_completion_blocking(port, body, 300)
            if rec["error"]:
                raise SystemExit(f"error: a request failed: {rec['error']}\n{tail(server.log_path)}")
            records.append(rec)
    finally:
        server.stop()
    with open(server.log_path, errors="replace") as f:
        loops = [(int(m.group(1)), float(m.group(2))) for line in f if "completion finished" in line
                 for m in [DECODE_RE.search(line)] if m]
    loops = loops[1:]  # the warm-up request's
    n = len(records)
    client = [(r["completionTokens"] - 1) / (r["lastText"] - r["ttft"]) for r in records
              if r["completionTokens"] and r["completionTokens"] > 1 and r["lastText"] and r["lastText"] > r["ttft"]]
    node = [(t - 1) / s for t, s in loops if t > 1 and s > 0]
    med = lambda v: summarize(v)["median"] if v else None
    return {"decodeTokensPerSecond": med(client), "loopDecodeTokensPerSecond": med(node),
            "ttftSeconds": med([r["ttft"] for r in records]),
            "completionTokens": sorted({r["completionTokens"] for r in records}),
            "promptTokens": sorted({r["promptTokens"] for r in records if r["promptTokens"] is not None}),
            "requests": n, "loopsLogged": len(loops),
            "records": [{k: (round(r[k], 5) if isinstance(r[k], float) else r[k])
                         for k in ("ttft", "lastText", "seconds", "completionTokens")} for r in records]}


OURS_NAME = "securenode"


def fmt(v, unit):
    if v is None:
        return "n/a"
    if unit == "s":
        return f"{v * 1000:.1f} ms"
    return f"{v:.1f}"


def cell(s, unit):
    if s is None:
        return "n/a"
    return f"{fmt(s['median'], unit)} ({fmt(s['min'], unit).split()[0]}–{fmt(s['max'], unit)})"


def analyze(res):
    raw = res["raw"]
    m = {
        "engineDecode": summarize([r["engine"]["decodeTokensPerSecond"] for r in raw]),
        "engineDecodeFromStart": summarize([r["engine"]["decodeFromStartTokensPerSecond"] for r in raw]),
        "engineTTFT": summarize([r["engine"]["ttftSeconds"] for r in raw]),
        "generateDecode": summarize([r["generate"]["decodeTokensPerSecond"] for r in raw]),
        "serveDecode": summarize([r["serve"]["decodeTokensPerSecond"] for r in raw]),
        "serveLoopDecode": summarize([r["serve"]["loopDecodeTokensPerSecond"] for r in raw]),
        "serveTTFT": summarize([r["serve"]["ttftSeconds"] for r in raw]),
    }
    # Per-run ratios (the three ran back to back), then their median: less sensitive to a slow run.
    def ratio(f):
        v = [x for x in (f(r) for r in raw) if x is not None]
        return summarize(v)

    m["serveOverGenerate"] = ratio(lambda r: r["serve"]["decodeTokensPerSecond"] / r["generate"]["decodeTokensPerSecond"]
                                   if r["serve"]["decodeTokensPerSecond"] else None)
    m["loopOverEngine"] = ratio(lambda r: r["serve"]["loopDecodeTokensPerSecond"] / r["engine"]["decodeTokensPerSecond"]
                                if r["serve"]["loopDecodeTokensPerSecond"] else None)
    m["generateOverEngine"] = ratio(lambda r: r["generate"]["decodeTokensPerSecond"] / r["engine"]["decodeTokensPerSecond"])
    m["serveOverEngine"] = ratio(lambda r: r["serve"]["decodeTokensPerSecond"] / r["engine"]["decodeTokensPerSecond"]
                                 if r["serve"]["decodeTokensPerSecond"] else None)
    m["ttftExcess"] = ratio(lambda r: r["serve"]["ttftSeconds"] - r["engine"]["ttftSeconds"])
    targets = []

    def target(name, required, s, ok, shown):
        targets.append({"name": name, "required": required, "measured": "n/a" if s is None else shown(s),
                        "pass": None if s is None else ok(s["median"]),
                        "result": "n/a" if s is None else ("PASS" if ok(s["median"]) else "FAIL")})

    target("single-stream decode through serve (client) / generate", ">= 0.95", m["serveOverGenerate"],
           lambda v: v >= 0.95, lambda s: f"{s['median']:.3f} (runs {s['min']:.3f}–{s['max']:.3f})")
    target("the node's generation loop / in-process engine decode", ">= 0.95", m["loopOverEngine"],
           lambda v: v >= 0.95, lambda s: f"{s['median']:.3f} (runs {s['min']:.3f}–{s['max']:.3f})")
    target("serve TTFT - engine TTFT (same prompt length)", "<= 10 ms", m["ttftExcess"],
           lambda v: v <= 0.010, lambda s: f"{s['median'] * 1000:+.1f} ms (runs {s['min'] * 1000:+.1f}–{s['max'] * 1000:+.1f} ms)")
    res.update(metrics=m, targets=targets)
    return res


def markdown(res):
    m, mach, ver = res["metrics"], res["machine"], res["versions"]
    commit = (ver["securenodeCommit"] or "unknown")[:12] + (" + uncommitted changes in Sources/" if ver["uncommittedSourceChanges"] else "")
    out = [
        "# One stream: engine, `generate`, `serve`",
        "",
        f"{res['model']['file']}, {res['threads']} engine threads, {res['promptTokens']}-token prompt, {res['maxTokens']} generated "
        f"tokens (greedy), median of {res['runs']} runs (min–max in parentheses), the three alternating in each run, each a fresh process; "
        f"decoding: {res.get('decoding', 'default')} (`--decoding`, `limits.decoding`; default: one-token, a single slot's).",
        "",
        f"- date: {res['date']}",
        f"- CPU: {mach['cpuModel']}, {mach['logicalCpus']} logical CPUs; Linux {mach['kernel']}",
        f"- load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in mach['loadAverageBefore'])}; "
        f"after: {', '.join(f'{x:.2f}' for x in mach['loadAverageAfter'])}",
        f"- securenode: commit {commit}, release build; engine prefill mode {res['prefillMode']}",
        "",
        "| | decode tokens/s | time to first token |",
        "|---|---|---|",
        f"| engine (`bench-engine`, in process), decoding from position 1 (`inference.sh`'s tg) | {cell(m['engineDecodeFromStart'], 't')} | |",
        f"| engine (`bench-engine --decode-after {res['promptTokens']}`: the served request's positions) | {cell(m['engineDecode'], 't')} "
        f"| {cell(m['engineTTFT'], 's')} |",
        f"| `generate` (stdout, first to last byte) | {cell(m['generateDecode'], 't')} | (includes verify and load: not compared) |",
        f"| `serve`, the node's generation loop (its log) | {cell(m['serveLoopDecode'], 't')} | |",
        f"| `serve`, as the client sees it (SSE) | {cell(m['serveDecode'], 't')} | {cell(m['serveTTFT'], 's')} |",
        "",
        "Ratios (per run, then the median over runs): "
        f"generate / engine {m['generateOverEngine']['median']:.3f}, serve (client) / engine {m['serveOverEngine']['median']:.3f}.",
        "",
        "## Targets (issue 20)",
        "",
        "| target | required | measured | result |",
        "|---|---|---|---|",
    ]
    for t in res["targets"]:
        out.append(f"| {t['name']} | {t['required']} | {t['measured']} | **{t['result']}** |")
    if res.get("notes"):
        out += ["", "## Observed", ""] + [f"- {n}" for n in res["notes"]]
    out += ["", "## Method", "", *[f"- {line}" for line in res["method"]], ""]
    if mach["loadAverageBefore"][0] > 0.5:
        out.insert(4, f"> The machine was not quiet: load average {mach['loadAverageBefore'][0]:.2f} before the run; treat the numbers with care.")
        out.insert(5, "")
    return "\n".join(out)


METHOD = [
    "engine: `securenode bench-engine --prompt-lengths P,P,P --decode-tokens T-1 --decode-after P`: T-1 greedy steps after "
    "a P-token prompt, the positions of the served request's decoding steps (attention grows with the position), which the "
    "targets compare with; and the same with `--decode-after 1` (from position 1, as bench/inference.sh's tg128), shown "
    "beside it. TTFT = the third evaluation of a P-token prompt (ids (1 + 7919 i) mod vocab) from an empty context.",
    "generate: `securenode generate --prompt PROMPT --max-tokens T`, its stdout read as it arrives; decode = (tokens - 1) / "
    "(last output byte - first output byte); the token count from one `--json` run.",
    "serve: a fresh node per run (`limits.parallel` 1, `limits.prompt_cache` false: every request evaluates its prompt, as "
    "the engine does), one warm-up request, then REQUESTS streaming `POST /v1/completions` one after the other (HTTP/1.1, "
    "a new connection each). Client: TTFT = request written to the first SSE event with text; decode = (tokens - 1) / "
    "(last text event - first text event). Node: the scheduler's own decode_seconds (first token chosen to last token chosen), "
    "logged with each completion.",
    "The client runs on the same cores as the node, as a real local client would: a blocking socket that records each "
    "`recv`'s time and bytes and parses them after the stream (`stream_completion_blocking`, about 60 µs of CPU per token; "
    "the asyncio reader bench/serve.sh uses for many streams costs about 230 µs, which the node's two engine threads lose).",
]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--securenode", "--model-dir", "--model-file", "--signature", "--public-key", "--profile", "--out"):
        p.add_argument(flag, required=True)
    p.add_argument("--runs", type=int, default=9)
    p.add_argument("--requests", type=int, default=3, help="measured serve requests per run")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--decoding", choices=("one-token", "prompt-rows"),
                   help="all three sides' decoding (--decoding, limits.decoding); default: their default, one-token "
                        "(one slot)")
    a = p.parse_args()
    for k in ("securenode", "model_dir", "model_file", "signature", "public_key", "profile"):
        setattr(a, k, os.path.abspath(getattr(a, k)))
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    git = git_info(repo)
    machine = machine_info()
    machine["loadAverageBefore"] = os.getloadavg()
    prompt_tokens, gen_tokens = generate_tokens(a)
    log(f"prompt {prompt_tokens} tokens; generate produces {gen_tokens} tokens")
    notes = []
    if gen_tokens != a.max_tokens:
        notes.append(f"generate produced {gen_tokens} tokens, not {a.max_tokens} (end of sequence)")
    raw = []
    prefill_mode = None
    with tempfile.TemporaryDirectory(prefix="serve-overhead-") as tmp:
        state = os.path.join(tmp, "state")
        os.makedirs(state, mode=0o700)
        tpm, tcti = start_dev_tpm(a.securenode, state, tmp)
        try:
            for i in range(a.runs):
                order = KINDS[i % 3:] + KINDS[:i % 3]
                run = {"order": list(order)}
                for kind in order:
                    if kind == "engine":
                        run["engine"] = run_engine(a, prompt_tokens)
                        prefill_mode = run["engine"]["prefillMode"]
                    elif kind == "generate":
                        run["generate"] = run_generate(a, gen_tokens)
                    else:
                        run["serve"] = run_serve(a, tmp, tcti)
                run["loadAverage1mAfter"] = os.getloadavg()[0]
                raw.append(run)
                e, g, s = run["engine"], run["generate"], run["serve"]
                log(f"run {i + 1}/{a.runs}: engine {e['decodeTokensPerSecond']:.1f} tokens/s TTFT {e['ttftSeconds'] * 1000:.1f} ms; "
                    f"generate {g['decodeTokensPerSecond']:.1f}; serve {s['decodeTokensPerSecond'] or 0:.1f} (loop "
                    f"{s['loopDecodeTokensPerSecond'] or 0:.1f}) TTFT {(s['ttftSeconds'] or 0) * 1000:.1f} ms; "
                    f"load average {run['loadAverage1mAfter']:.2f}")
                if s["completionTokens"] != [gen_tokens]:
                    notes.append(f"run {i + 1}: serve generated {s['completionTokens']} tokens (generate: {gen_tokens})")
                if s["promptTokens"] and s["promptTokens"] != [prompt_tokens]:
                    notes.append(f"run {i + 1}: serve's prompt was {s['promptTokens']} tokens (generate: {prompt_tokens})")
        finally:
            stop(tpm)
    machine["loadAverageAfter"] = os.getloadavg()
    res = {
        "benchmark": "one stream: bench-engine vs generate vs serve",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "runs": a.runs, "requestsPerRun": a.requests, "threads": a.threads, "maxTokens": a.max_tokens,
        "promptTokens": prompt_tokens, "generatedTokens": gen_tokens, "prompt": PROMPT, "prefillMode": prefill_mode,
        "decoding": a.decoding or "default",
        "model": {"file": os.path.basename(a.model_file), "bytes": os.path.getsize(a.model_file)},
        "machine": machine,
        "versions": {"securenodeCommit": git["commit"], "uncommittedSourceChanges": git["uncommittedSourceChanges"],
                     "securenodeBinarySha256": sha256_file(a.securenode), "driverPython": platform.python_version()},
        "method": METHOD, "notes": notes, "raw": raw,
    }
    analyze(res)
    md = markdown(res)
    write_atomic(a.out + ".json", json.dumps(res, indent=1) + "\n")
    write_atomic(a.out + ".md", md)
    print(md)


if __name__ == "__main__":
    main()
