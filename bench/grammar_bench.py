"""What a grammar-constrained neighbour costs the other sequences; see grammar.sh.

Starts a software TPM and one `securenode serve` (the default model, no API key, limits.parallel 2),
then runs, for SECONDS seconds each, back-to-back non-streaming chat completions (temperature 0.7,
seeded, max_tokens 128) from a measured plain client, in four phases:

- alone: the measured client only;
- plain-neighbour: beside it, a second client sending the same kind of unconstrained requests;
- json-object-neighbour: the neighbour asks for `response_format: {"type": "json_object"}`;
- json-schema-neighbour: the neighbour asks for a `json_schema` (an object with strings bounded in
  length, an integer, an enum, an array and a $ref'd nested object).

For each phase: the measured client's tokens/s (completion tokens / wall time) and the neighbour's,
and the number of requests. The question is whether the measured client keeps its tokens/s when the
neighbour is constrained rather than plain (the mask is computed on the scheduler thread, between
engine steps, so its cost is paid by every sequence of the batch). Writes OUT.json and OUT.md.
"""
import argparse, datetime, json, os, sys, tempfile, threading, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_bench import Server, free_port, start_dev_tpm, stop  # noqa: E402
from inference_bench import git_info, machine_info, write_atomic  # noqa: E402

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 40},
        "age": {"type": "integer"},
        "colour": {"enum": ["red", "green", "blue"]},
        "pets": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 3},
        "address": {"anyOf": [{"$ref": "#/$defs/address"}, {"type": "null"}]},
    },
    "required": ["name", "age", "colour", "pets", "address"],
    "additionalProperties": False,
    "$defs": {"address": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}}, "required": ["city"],
                          "additionalProperties": False}},
}
FORMATS = {
    "plain": None,
    "json-object": {"type": "json_object"},
    "json-schema": {"type": "json_schema", "json_schema": {"name": "person", "strict": True, "schema": SCHEMA}},
}


def log(msg):
    print(f"[grammar-bench] {msg}", file=sys.stderr, flush=True)


def client(port, model, fmt, stop_event, out, seed0):
    seed = seed0
    while not stop_event.is_set():
        body = {"model": model, "messages": [{"role": "user", "content": "Invent a person and describe them in JSON."}],
                "temperature": 0.7, "seed": seed, "max_tokens": 128}
        if fmt:
            body["response_format"] = fmt
        seed += 1
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                answer = json.loads(r.read())
            out["tokens"] += answer["usage"]["completion_tokens"]
            out["requests"] += 1
            out["finish"][answer["choices"][0]["finish_reason"]] = out["finish"].get(answer["choices"][0]["finish_reason"], 0) + 1
        except Exception as e:  # counted, not hidden
            out["errors"] += 1
            out["lastError"] = str(e)


def phase(port, model, neighbour, seconds):
    stop_event = threading.Event()
    measured = {"tokens": 0, "requests": 0, "errors": 0, "finish": {}}
    other = {"tokens": 0, "requests": 0, "errors": 0, "finish": {}}
    threads = [threading.Thread(target=client, args=(port, model, None, stop_event, measured, 1000))]
    if neighbour is not None:
        threads.append(threading.Thread(target=client, args=(port, model, FORMATS[neighbour], stop_event, other, 1)))
    started = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop_event.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    res = {"neighbour": neighbour or "none", "wallSeconds": wall, "measured": measured,
           "measuredTokensPerSecond": measured["tokens"] / wall}
    if neighbour is not None:
        res["neighbourStats"] = other
        res["neighbourTokensPerSecond"] = other["tokens"] / wall
    return res


def markdown(res):
    lines = [f"# Grammar-constrained neighbour ({res['date']})", "",
             f"`{res['securenode']}`, {res['seconds']} s per phase, limits.parallel 2, chat completions at temperature 0.7, max_tokens 128; "
             f"load before: {res['loadBefore']}.", "",
             "| phase | measured client tokens/s | vs alone | vs plain neighbour | neighbour tokens/s | neighbour requests (finish reasons) |",
             "|---|---|---|---|---|---|"]
    alone = res["phases"][0]["measuredTokensPerSecond"]
    plain = next((p["measuredTokensPerSecond"] for p in res["phases"] if p["neighbour"] == "plain"), None)
    for p in res["phases"]:
        tps = p["measuredTokensPerSecond"]
        n = p.get("neighbourStats")
        lines.append(f"| {p['neighbour']} | {tps:.1f} | {tps / alone:.2f}x | " + (f"{tps / plain:.2f}x" if plain and p["neighbour"] != "none" else "") +
                     f" | {p.get('neighbourTokensPerSecond', 0):.1f} | " + (f"{n['requests']} ({n['finish']}, errors {n['errors']})" if n else "") + " |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    for name in ("--securenode", "--model-dir", "--signature", "--public-key", "--profile", "--out"):
        ap.add_argument(name, required=True)
    ap.add_argument("--seconds", type=int, default=30)
    a = ap.parse_args()
    load_before = " ".join(open("/proc/loadavg").read().split()[:3])
    tmp = tempfile.mkdtemp(prefix="securenode-grammar-")
    state = os.path.join(tmp, "state")
    os.makedirs(state, mode=0o700)
    os.makedirs(os.path.join(tmp, "tpm"), mode=0o700)
    tpm, tcti = start_dev_tpm(a.securenode, os.path.join(tmp, "tpm"), tmp)
    port = free_port()
    config = os.path.join(tmp, "securenode.yaml")
    with open(config, "w") as f:
        f.write("\n".join(["# written by bench/grammar_bench.py", f"profile: {json.dumps(a.profile)}", f"tcti: {json.dumps(tcti)}",
                           f"state_dir: {json.dumps(state)}", "model:", f"  path: {json.dumps(a.model_dir)}",
                           f"  signature: {json.dumps(a.signature)}", f"  public_key: {json.dumps(a.public_key)}",
                           "server:", "  host: 127.0.0.1", f"  port: {port}", "limits:", "  parallel: 2", "  queue_depth: 8",
                           "  threads: 2", ""]))
    server = Server("securenode", [a.securenode, "serve", "--config", config], port, "/readyz", tmp)
    try:
        server.wait_ready(180)
        model = server.model_id()
        phase(port, model, None, 3)  # warm-up
        phases = []
        for neighbour in [None, "plain", "json-object", "json-schema"]:
            log(f"phase: neighbour {neighbour or 'none'}")
            p = phase(port, model, neighbour, a.seconds)
            log(f"  measured {p['measuredTokensPerSecond']:.1f} tokens/s, neighbour {p.get('neighbourTokensPerSecond', 0):.1f}")
            phases.append(p)
    finally:
        server.stop()
        stop(tpm)
    res = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "git": git_info(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "machine": machine_info(),
           "securenode": a.securenode, "seconds": a.seconds, "loadBefore": load_before, "phases": phases}
    write_atomic(a.out + ".json", json.dumps(res, indent=2) + "\n")
    write_atomic(a.out + ".md", markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
