"""Soak (issue 14); see soak.sh.

Starts a software TPM (`securenode dev-tpm`) and `securenode serve` (the default model, no API key,
limits.parallel 16, queue_depth 64), then 16 clients each stream POST /v1/completions requests back to
back (stream: true, a prompt that varies per request, max_tokens 48, temperature 0.7 with a seed) for
DURATION seconds. Every response is checked against its receipt: the final SSE event's receipt must
have requestSHA256 = SHA-256 of the exact request body sent and responseSHA256 = SHA-256 of the
concatenated streamed text, and the stream must end with `data: [DONE]`. Any other status, a
connection error, a missing or mismatched receipt, or a truncated stream is an error. The node's RSS
is sampled every 2 s. Writes OUT.json and OUT.md; exits 1 when there was any error.
"""
import argparse, datetime, hashlib, json, os, socket, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_bench import Server, free_port, start_dev_tpm, stop  # noqa: E402
from inference_bench import git_info, machine_info, write_atomic  # noqa: E402
from hostile_bench import raw_request  # noqa: E402

WORDS = ["river", "mountain", "lantern", "orchard", "harbor", "meadow", "compass", "glacier", "violin", "canyon"]


def log(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


def stream_once(port, body):
    """POST a streaming completion; returns (text, receipt, done) or raises with the reason."""
    s = socket.create_connection(("127.0.0.1", port), timeout=120)
    try:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/1.1 ") else None
    if status != 200:
        raise RuntimeError(f"status {status}: {rest[:200]!r}")
    if b"transfer-encoding: chunked" in head.lower():
        out, buf = b"", rest
        while True:
            size_line, sep, buf = buf.partition(b"\r\n")
            if not sep:
                raise RuntimeError("truncated chunked body")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            out, buf = out + buf[:size], buf[size + 2:]
        rest = out
    text, receipt, done = "", None, False
    for event in rest.decode().split("\n\n"):
        event = event.strip()
        if not event.startswith("data: "):
            continue
        payload = event[6:]
        if payload == "[DONE]":
            done = True
            continue
        obj = json.loads(payload)
        for choice in obj.get("choices") or []:
            text += choice.get("text") or ""
        receipt = obj.get("receipt", receipt)
    return text, receipt, done


def client(port, model, index, deadline, results, lock):
    n = 0
    while time.time() < deadline:
        n += 1
        prompt = f"Request {index}-{n}. Write one sentence about a {WORDS[(index + n) % len(WORDS)]}:"
        body = json.dumps({"model": model, "prompt": prompt, "max_tokens": 48, "temperature": 0.7, "seed": index * 100000 + n,
                           "stream": True}).encode()
        started = time.perf_counter()
        try:
            text, receipt, done = stream_once(port, body)
            if not done:
                raise RuntimeError("the stream did not end with data: [DONE]")
            if receipt is None:
                raise RuntimeError("no receipt in the stream")
            if receipt["requestSHA256"] != hashlib.sha256(body).hexdigest():
                raise RuntimeError("receipt requestSHA256 is not the SHA-256 of the request body")
            if receipt["responseSHA256"] != hashlib.sha256(text.encode()).hexdigest():
                raise RuntimeError("receipt responseSHA256 is not the SHA-256 of the streamed text")
            outcome = None
        except Exception as e:  # noqa: BLE001 - every failure is counted with its reason
            outcome = f"{type(e).__name__}: {e}"
        with lock:
            results.append((outcome, time.perf_counter() - started))


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--securenode", required=True)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--signature", required=True)
    ap.add_argument("--public-key", required=True)
    ap.add_argument("--profile", required=True)
    ap.add_argument("--duration", type=int, default=1800)
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="securenode-soak-")
    state = os.path.join(tmp, "state")
    os.makedirs(state, mode=0o700)
    os.makedirs(os.path.join(tmp, "tpm"), mode=0o700)
    tpm, tcti = start_dev_tpm(a.securenode, os.path.join(tmp, "tpm"), tmp)
    port = free_port()
    config = os.path.join(tmp, "securenode.yaml")
    with open(config, "w") as f:
        f.write("\n".join([
            "# written by bench/soak_bench.py",
            f"profile: {json.dumps(a.profile)}", f"tcti: {json.dumps(tcti)}", f"state_dir: {json.dumps(state)}",
            "model:", f"  path: {json.dumps(a.model_dir)}", f"  signature: {json.dumps(a.signature)}",
            f"  public_key: {json.dumps(a.public_key)}",
            "server:", "  host: 127.0.0.1", f"  port: {port}",
            "limits:", f"  parallel: {a.streams}", "  queue_depth: 64", "  threads: 2", "  context_length: 1024", ""]))
    server = Server("securenode", [a.securenode, "serve", "--config", config], port, "/readyz", tmp)
    results, lock, rss = [], threading.Lock(), []
    try:
        server.wait_ready(120)
        _, models = raw_request(port, "GET", "/v1/models", timeout=10)
        model = json.loads(models)["data"][0]["id"]
        log(f"soak: {a.streams} streams for {a.duration} s on port {port}")
        started = time.time()
        deadline = started + a.duration
        threads = [threading.Thread(target=client, args=(port, model, i, deadline, results, lock), daemon=True)
                   for i in range(a.streams)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            if server.proc.poll() is not None:
                break
            rss.append((round(time.time() - started, 1), rss_mib(server.proc.pid)))
            time.sleep(2)
        for t in threads:
            t.join(timeout=150)
        wall = time.time() - started
        exited = server.proc.poll()
    finally:
        server.stop()
        stop(tpm)
    errors = {}
    for outcome, _ in results:
        if outcome:
            errors[outcome] = errors.get(outcome, 0) + 1
    values = [r for _, r in rss if r is not None]
    res = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "git": git_info(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "machine": machine_info(),
           "durationSeconds": a.duration, "wallSeconds": wall, "streams": a.streams, "requests": len(results),
           "errors": sum(errors.values()), "errorKinds": errors, "nodeExitedDuringSoak": exited is not None,
           "rssMiB": {"first": values[0] if values else None, "last": values[-1] if values else None,
                      "max": max(values) if values else None, "samples": rss}}
    md = "\n".join([
        f"# Soak, {res['date']}", "",
        f"- commit {res['git']['commit']}, {a.streams} concurrent streams for {a.duration} s ({wall:.0f} s wall), "
        f"limits.parallel {a.streams}, max_tokens 48, every response checked against its receipt",
        "", "| requests | errors | RSS first | RSS last | RSS max |", "|---|---|---|---|---|",
        f"| {len(results)} | {res['errors']} | {res['rssMiB']['first']:.1f} MiB | {res['rssMiB']['last']:.1f} MiB | "
        f"{res['rssMiB']['max']:.1f} MiB |" if values else f"| {len(results)} | {res['errors']} | n/a | n/a | n/a |",
        "", "Errors: " + (", ".join(f"{k} ({v})" for k, v in errors.items()) or "none"), ""])
    write_atomic(a.out + ".json", json.dumps(res, indent=2) + "\n")
    write_atomic(a.out + ".md", md)
    print(md)
    sys.exit(0 if res["errors"] == 0 and exited is None and results else 1)


if __name__ == "__main__":
    main()
