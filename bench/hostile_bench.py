"""The node under attack (issue 14); see hostile.sh.

Starts a software TPM (`securenode dev-tpm`) and `securenode serve` (release build, the default model,
no API key, limits.parallel 4, queue_depth 64, server.max_connections CAP), then measures an
unattacked baseline and each attack in turn for SECONDS seconds. During every phase two measuring
clients run:

- the probe: GET /healthz on a fresh connection every 50 ms (timeout 5 s; a timeout or an error
  counts as a failure and as 5 s); p50, p99, max, failures;
- the legitimate client: back-to-back non-streaming POST /v1/completions (a fixed ~40-token prompt,
  max_tokens 32, temperature 0) on fresh connections (timeout 60 s); requests ok and failed (with
  status), latency p50/p99, tokens/s = completion tokens / phase wall time.

The attacks, each with its own clients, loopback only, bounded in count and time:

- long-word: 2 clients send completions whose prompt is one word of 200,000 letters, back to back;
Every phase gets a fresh node (same software TPM); the node is stopped with SIGTERM after the phase
(killed after 20 s: the stop time and exit code are recorded).

- slowloris: 3 x CAP connections trickle a request head, one byte per connection every 0.5 s,
  reopened when the node cuts them (at most 20,000 connections in all);
- oversized-close: 4 clients send an 8 MiB body with Connection: close, all of it before reading;
- deep-json: 2 clients send a prompt nested 100,000 arrays deep;
- token-ids: 2 clients send a prompt of 150,000 token ids (just under limits.max_body_bytes);
- attestation-flood: 16 clients request /v1/attestation back to back;
- abandoned: 80 clients send a non-streaming request for 1024 tokens and hang up, twice per phase;
- stop-strings: 2 clients send completions with 4 stop strings of 20,000 characters each, max_tokens 256.

Targets (issue 14): /healthz p99 < 100 ms and legitimate tokens/s >= 70% of the baseline in every
attack. Writes OUT.json and OUT.md. A FAIL is a measurement, not an error of the script.
"""
import argparse, datetime, json, os, random, resource, socket, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_bench import Server, free_port, start_dev_tpm, stop, tail  # noqa: E402
from inference_bench import git_info, machine_info, write_atomic  # noqa: E402

PROMPT = ("Below are the numbers from one to one hundred, written out in English words and separated by "
          "commas: one, two, three, four, five, six, seven, eight, nine, ten,")
PROBE_TIMEOUT = 5.0


def log(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


def percentile(values, q):
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def raw_request(port, method, path, body=b"", headers=None, timeout=60.0, read=True):
    """One request on a fresh connection (Connection: close): (status, body bytes); raises on errors."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        h = {"Host": f"127.0.0.1:{port}", "Connection": "close"}
        if body:
            h["Content-Type"] = "application/json"
            h["Content-Length"] = str(len(body))
        h.update(headers or {})
        s.sendall(f"{method} {path} HTTP/1.1\r\n".encode() + "".join(f"{k}: {v}\r\n" for k, v in h.items()).encode()
                  + b"\r\n" + body)
        if not read:
            return None, b""
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 "):
        raise ConnectionError("no HTTP answer")
    status = int(head.split(b" ")[1])
    if b"transfer-encoding: chunked" in head.lower():
        out, buf = b"", rest
        while buf:
            size_line, _, buf = buf.partition(b"\r\n")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            out, buf = out + buf[:size], buf[size + 2:]
        rest = out
    return status, rest


class Counter:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}

    def add(self, key):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1


# ---------------------------------------------------------------------------------------------
# Measuring clients


def probe(port, stop_event, out):
    while not stop_event.is_set():
        started = time.perf_counter()
        try:
            status, _ = raw_request(port, "GET", "/healthz", timeout=PROBE_TIMEOUT)
            ok = status == 200
        except OSError:
            ok = False
        elapsed = time.perf_counter() - started
        out.append((ok, elapsed if ok else max(elapsed, PROBE_TIMEOUT)))
        stop_event.wait(max(0.0, 0.05 - elapsed))


def legitimate(port, model, stop_event, out):
    body = json.dumps({"model": model, "prompt": PROMPT, "max_tokens": 32, "temperature": 0}).encode()
    while not stop_event.is_set():
        started = time.perf_counter()
        try:
            status, answer = raw_request(port, "POST", "/v1/completions", body, timeout=60.0)
            tokens = json.loads(answer)["usage"]["completion_tokens"] if status == 200 else 0
        except (OSError, ValueError, KeyError):
            status, tokens = "error", 0
        out.append((status, time.perf_counter() - started, tokens))
        if status != 200:
            stop_event.wait(0.2)


# ---------------------------------------------------------------------------------------------
# Attacks: each runs until stop_event, bounded, and counts what happened


def repeat_request(port, body_fn, stop_event, stats, limit, headers=None):
    """A client that sends body_fn() back to back, at most `limit` times."""
    for _ in range(limit):
        if stop_event.is_set():
            return
        try:
            status, _ = raw_request(port, "POST", "/v1/completions", body_fn(), headers=headers, timeout=30.0)
            stats.add(status)
        except OSError as e:
            stats.add(type(e).__name__)
            stop_event.wait(0.1)


def attack_long_word(a, model, stop_event, stats):
    body = json.dumps({"model": model, "prompt": "a" * 200_000, "max_tokens": 4}).encode()
    return [threading.Thread(target=repeat_request, args=(a.port, lambda: body, stop_event, stats, 200)) for _ in range(2)]


def attack_deep_json(a, model, stop_event, stats):
    depth = 100_000
    body = (b'{"model": "' + model.encode() + b'", "max_tokens": 4, "prompt": ' + b"[" * depth + b"1" + b"]" * depth + b"}")
    return [threading.Thread(target=repeat_request, args=(a.port, lambda: body, stop_event, stats, 500)) for _ in range(2)]


def attack_token_ids(a, model, stop_event, stats):
    ids = [random.randrange(1000, 40000) for _ in range(150_000)]
    body = json.dumps({"model": model, "prompt": ids, "max_tokens": 4}, separators=(",", ":")).encode()
    return [threading.Thread(target=repeat_request, args=(a.port, lambda: body, stop_event, stats, 500)) for _ in range(2)]


def attack_stop_strings(a, model, stop_event, stats):
    body = json.dumps({"model": model, "prompt": PROMPT, "max_tokens": 256, "temperature": 0,
                       "stop": [("z%d" % i) * 10_000 for i in range(4)]}).encode()
    return [threading.Thread(target=repeat_request, args=(a.port, lambda: body, stop_event, stats, 500)) for _ in range(2)]


def attack_attestation(a, model, stop_event, stats):
    def client():
        for _ in range(5000):
            if stop_event.is_set():
                return
            try:
                status, _ = raw_request(a.port, "GET", "/v1/attestation?nonce=" + os.urandom(16).hex(), timeout=30.0)
                stats.add(status)
            except OSError as e:
                stats.add(type(e).__name__)
    return [threading.Thread(target=client) for _ in range(16)]


def attack_oversized(a, model, stop_event, stats):
    body = b'{"model": "x", "prompt": "' + b"a" * (8 << 20) + b'"}'

    def client():
        for _ in range(200):
            if stop_event.is_set():
                return
            try:
                status, _ = raw_request(a.port, "POST", "/v1/completions", body, timeout=15.0)
                stats.add(status)
            except socket.timeout:
                stats.add("hung (15 s)")
            except OSError as e:
                stats.add(type(e).__name__)
    return [threading.Thread(target=client) for _ in range(4)]


def attack_abandoned(a, model, stop_event, stats):
    body = json.dumps({"model": model, "prompt": PROMPT, "max_tokens": 1024, "temperature": 0.8}).encode()

    def wave():
        for i in range(2):
            if stop_event.is_set():
                return
            for _ in range(80):
                try:
                    raw_request(a.port, "POST", "/v1/completions", body, timeout=5.0, read=False)  # sends, hangs up
                    stats.add("sent and hung up")
                except OSError as e:
                    stats.add(type(e).__name__)
            stop_event.wait(a.seconds / 2)
    return [threading.Thread(target=wave)]


def attack_slowloris(a, model, stop_event, stats):
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 8000
    count = 3 * a.cap

    def run():
        conns, opened = [], 0

        def open_one():
            nonlocal opened
            opened += 1
            s = socket.create_connection(("127.0.0.1", a.port), timeout=2)
            s.setblocking(False)
            return [s, 0]
        while len(conns) < count and not stop_event.is_set() and opened < 20_000:
            try:
                conns.append(open_one())
            except OSError:
                stats.add("connect failed")
                stop_event.wait(0.05)
        stats.add("connections opened at start: %d" % len(conns))
        while not stop_event.is_set():
            for c in conns:
                try:
                    try:
                        if c[0].recv(4096) == b"":
                            raise ConnectionResetError
                        raise ConnectionResetError  # an answer (408): the node cut it
                    except BlockingIOError:
                        pass
                    c[0].send(head[c[1] % len(head):c[1] % len(head) + 1])
                    c[1] += 1
                except OSError:
                    stats.add("cut by the node")
                    c[0].close()
                    if opened < 20_000:
                        try:
                            c[0], c[1] = open_one()
                        except OSError:
                            stats.add("reconnect failed")
            stop_event.wait(0.5)
        for c in conns:
            c[0].close()
    return [threading.Thread(target=run)]


ATTACKS = [
    ("long-word", "2 clients: a prompt of one 200,000-letter word", attack_long_word),
    ("slowloris", "3 x max_connections half-open connections trickling a head, reopened when cut", attack_slowloris),
    ("oversized-close", "4 clients: 8 MiB bodies with Connection: close, written whole before reading", attack_oversized),
    ("deep-json", "2 clients: a prompt nested 100,000 arrays deep", attack_deep_json),
    ("token-ids", "2 clients: a prompt of 150,000 token ids", attack_token_ids),
    ("attestation-flood", "16 clients: /v1/attestation back to back", attack_attestation),
    ("abandoned", "2 waves of 80 clients: non-streaming 1024-token requests, hung up at once", attack_abandoned),
    ("stop-strings", "2 clients: 4 stop strings of 20,000 characters, max_tokens 256", attack_stop_strings),
]


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None


def run_phase(a, model, pid, name, make_attack):
    stop_event, attack_stop = threading.Event(), threading.Event()
    probes, legit, stats = [], [], Counter()
    attackers = make_attack(a, model, attack_stop, stats) if make_attack else []
    for t in attackers:
        t.daemon = True
        t.start()
    if attackers:
        time.sleep(2)  # the attack is under way before measuring
    measuring = [threading.Thread(target=probe, args=(a.port, stop_event, probes), daemon=True),
                 threading.Thread(target=legitimate, args=(a.port, model, stop_event, legit), daemon=True)]
    started = time.perf_counter()
    for t in measuring:
        t.start()
    rss = []
    while time.perf_counter() - started < a.seconds:
        rss.append(rss_mib(pid))
        time.sleep(1)
    stop_event.set()
    for t in measuring:
        t.join(timeout=70)
    wall = time.perf_counter() - started
    attack_stop.set()
    for t in attackers:
        t.join(timeout=30)
    lat = [e for ok, e in probes]
    ok_legit = [(s, e, n) for s, e, n in legit if s == 200]
    failed = {}
    for s, _, _ in legit:
        if s != 200:
            failed[str(s)] = failed.get(str(s), 0) + 1
    return {
        "attack": name,
        "healthz": {"count": len(probes), "failures": sum(1 for ok, _ in probes if not ok),
                    "p50": percentile(lat, 0.5), "p99": percentile(lat, 0.99), "max": max(lat) if lat else None},
        "legitimate": {"ok": len(ok_legit), "failed": failed, "tokens": sum(n for _, _, n in ok_legit),
                       "tokensPerSecond": sum(n for _, _, n in ok_legit) / wall,
                       "latencyP50": percentile([e for _, e, _ in ok_legit], 0.5),
                       "latencyP99": percentile([e for _, e, _ in ok_legit], 0.99)},
        "attackResults": dict(sorted(((str(k), v) for k, v in stats.counts.items()))),
        "rssMiB": {"max": max((r for r in rss if r), default=None)},
        "seconds": wall,
    }


def ms(v):
    return "n/a" if v is None else f"{v * 1000:.1f} ms"


def baseline_tps(res):
    """The unattacked throughput: the mean of the baseline measured first and again last (this VM
    is shared: one measurement alone moved by 1.5x between runs)."""
    values = [p["legitimate"]["tokensPerSecond"] for p in res["phases"] if p["attack"].startswith("baseline")]
    return sum(values) / len(values) if values else None


def markdown(res):
    base_tps = baseline_tps(res)
    out = [f"# Hostile clients (issue 14), {res['date']}", "",
           f"- commit {res['git']['commit']}{' (with uncommitted source changes)' if res['git'].get('uncommittedSourceChanges') else ''}, "
           f"machine: {res['machine'].get('cpuModel', '?')}, {res['machine'].get('logicalCpus', '?')} logical CPUs, "
           f"load average before: {res['loadBefore']}",
           f"- node: `{res['securenode']}` (fresh for every phase), default model, software TPM, limits.parallel 4, queue_depth 64, server.max_connections "
           f"{res['cap']}, other server.* limits default; {res['seconds']} s per phase",
           "- probe: GET /healthz on a fresh connection every 50 ms (failure = no 200 within 5 s, counted as 5 s); "
           "legitimate client: back-to-back non-streaming completions, max_tokens 32",
           "- targets: /healthz p99 < 100 ms, no probe failure, and legitimate tokens/s >= 70% of the baseline "
           f"(the mean of the two baseline phases, first and last: {base_tps:.1f} tokens/s)", "",
           "| phase | attack | /healthz p50 | /healthz p99 | /healthz max | probe failures | legit ok (failed) | legit latency p50 | "
           "legit tokens/s | vs baseline | node RSS max | verdict |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for p in res["phases"]:
        h, l_ = p["healthz"], p["legitimate"]
        is_base = p["attack"].startswith("baseline")
        ratio = l_["tokensPerSecond"] / base_tps if base_tps else None
        verdict = "" if is_base else ("PASS" if (h["p99"] or 9) < 0.1 and ratio is not None and ratio >= 0.7 and h["failures"] == 0 else "FAIL")
        failed = ", ".join(f"{k}: {v}" for k, v in l_["failed"].items()) or "0"
        rss = "n/a" if p["rssMiB"]["max"] is None else f"{p['rssMiB']['max']:.0f} MiB"
        out.append(f"| {p['attack']} | {p.get('description', 'none')} | {ms(h['p50'])} | {ms(h['p99'])} | {ms(h['max'])} | "
                   f"{h['failures']}/{h['count']} | {l_['ok']} ({failed}) | {ms(l_['latencyP50'])} | {l_['tokensPerSecond']:.1f} | "
                   f"{'' if ratio is None or is_base else f'{ratio * 100:.0f}%'} | "
                   f"{rss} | {verdict} |")
        if p.get("stopExitCode") not in (0, None) or p.get("nodeExited"):
            notes.append(f"- {p['attack']}: the node {'exited during the phase' if p.get('nodeExited') else 'did not stop within 20 s of SIGTERM (killed)'}; "
                         f"stop took {p.get('stopSeconds', 0):.1f} s, exit code {p.get('stopExitCode')}")
    out += ["", "Stopping the node after each phase (SIGTERM, drain):", ""] + (notes or ["- every node stopped cleanly"])
    out += ["", "What the attack clients saw (status or outcome: count):", ""]
    for p in res["phases"]:
        if p["attack"].startswith("baseline"):
            continue
        out.append(f"- {p['attack']}: " + (", ".join(f"{k}: {v}" for k, v in p["attackResults"].items()) or "nothing"))
    out += ["", "Re-run: `bench/hostile.sh` (no arguments; SECONDS_PER_PHASE=20 CAP=128 by default)."]
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--securenode", required=True)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--signature", required=True)
    ap.add_argument("--public-key", required=True)
    ap.add_argument("--profile", required=True)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--cap", type=int, default=128)
    ap.add_argument("--only", default="", help="comma-separated attack names")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * a.cap + 1024)), hard))
    load_before = " ".join(open("/proc/loadavg").read().split()[:3])
    tmp = tempfile.mkdtemp(prefix="securenode-hostile-")
    state = os.path.join(tmp, "state")
    os.makedirs(state, mode=0o700)
    os.makedirs(os.path.join(tmp, "tpm"), mode=0o700, exist_ok=True)
    tpm, tcti = start_dev_tpm(a.securenode, os.path.join(tmp, "tpm"), tmp)
    config = os.path.join(tmp, "securenode.yaml")

    def start_node():
        """A fresh node for every phase (on the same software TPM), so that nothing one attack left
        behind (queued requests, cached state) weighs on the next."""
        a.port = free_port()
        with open(config, "w") as f:
            f.write("\n".join([
                "# written by bench/hostile_bench.py",
                f"profile: {json.dumps(a.profile)}", f"tcti: {json.dumps(tcti)}", f"state_dir: {json.dumps(state)}",
                "model:", f"  path: {json.dumps(a.model_dir)}", f"  signature: {json.dumps(a.signature)}",
                f"  public_key: {json.dumps(a.public_key)}",
                "server:", "  host: 127.0.0.1", f"  port: {a.port}", f"  max_connections: {a.cap}",
                "limits:", "  parallel: 4", "  queue_depth: 64", "  threads: 2", ""]))
        server = Server("securenode", [a.securenode, "serve", "--config", config], a.port, "/readyz", tmp)
        server.wait_ready(120)
        _, models = raw_request(a.port, "GET", "/v1/models", timeout=10)
        model = json.loads(models)["data"][0]["id"]
        raw_request(a.port, "POST", "/v1/completions", json.dumps({"model": model, "prompt": "Hi", "max_tokens": 4}).encode())
        return server, model

    phases = []
    only = set(filter(None, a.only.split(",")))
    try:
        for name, description, make in [("baseline", "none", None)] + ATTACKS + [("baseline-again", "none (after the attacks)", None)]:
            if only and not name.startswith("baseline") and name not in only:
                continue
            server, model = start_node()
            log(f"phase {name}: {description} (node on port {a.port})")
            p = {"attack": name}
            try:
                p = run_phase(a, model, server.proc.pid, name, make)
                p["description"] = description
                p["nodeExited"] = server.proc.poll() is not None
                if p["nodeExited"]:
                    log("the node exited:\n" + tail(server.log_path))
            finally:
                # A node that does not drain within 20 s of SIGTERM is killed: counted, not hidden.
                started = time.perf_counter()
                code = server.stop()
                p["stopSeconds"] = time.perf_counter() - started
                p["stopExitCode"] = code
            phases.append(p)
            log(f"  /healthz p99 {ms(p['healthz']['p99'])}, failures {p['healthz']['failures']}, legit {p['legitimate']['tokensPerSecond']:.1f} tokens/s "
                f"({p['legitimate']['ok']} ok, failed {p['legitimate']['failed']}), attack {p['attackResults']}")
        res = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "git": git_info(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "machine": machine_info(),
               "securenode": a.securenode, "seconds": a.seconds, "cap": a.cap, "loadBefore": load_before, "phases": phases}
    finally:
        stop(tpm)
    write_atomic(a.out + ".json", json.dumps(res, indent=2) + "\n")
    write_atomic(a.out + ".md", markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
