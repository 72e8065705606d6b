"""Serving throughput, `securenode serve` against llama.cpp's `llama-server`, same model, same threads,
same load, in the same run; see serve.sh.

Two workloads (`--workloads`, default both):

- fixed: N concurrent streaming clients each send POST /v1/completions requests back to back (the
  same raw ~64-token prompt, max_tokens M, temperature 0, stream: true, stream_options.include_usage).
  Prompt caches are off on both sides (the node's `limits.prompt_cache: false`, llama-server's
  `--no-cache-prompt --cache-ram 0`): every request repeats the prompt, which a real mix of users
  would not let a cache skip.
- chat: N concurrent clients each hold multi-turn conversations through POST /v1/chat/completions
  (streaming, max_tokens M, temperature 0): a system prompt shared by every client, a first question
  of the client's own, then follow-ups, each request carrying the whole history so far (the answers
  the server gave included), TURNS turns per conversation, then a new conversation. Prompt caches are
  on on both sides (the node's `limits.prompt_cache: true`, llama-server's `--cache-prompt` with its
  default host-memory cache): each turn may reuse the previous turn's prefix.

For every run, workload, concurrency level N (default 1, 4, 16) and both engines (alternating which
goes first), the driver starts a fresh server with N parallel slots:

    securenode serve --config F (limits.parallel N, threads T, context_length C, prompt_cache) --tcti T
                     --profile P --model DIR --signature S --public-key K   (one software TPM for the run)
    llama-server -m FILE -np N -c N*C -t T -tb T --cont-batching (+ the workload's cache flags)

waits until it is ready, sends one warm-up request, then runs the workload's N clients until DURATION
seconds have passed; requests already started then run to completion and are counted. Then the server
is stopped (SIGTERM, then SIGKILL after a grace period).

Per level: aggregate generated tokens/s = sum of completion tokens of the successful requests / wall
time from the first request sent to the last response finished; time to first token (request sent
to the first SSE event carrying text) p50 and p99; requests completed; errors. Medians over runs;
issue 20's targets (>= 1.3x llama-server's aggregate tokens/s at 1 stream, >= 2.5x at 16) per workload.
The HTTP/1.1 + SSE client is written here on asyncio streams (no third-party package): one connection
per request, chunked or length-delimited bodies, SSE events split on blank lines.
Writes OUT.json, OUT.md and OUT-throughput.svg (see serve.sh for the file names); `--render OUT.json
[--note TEXT ...]` only rewrites the three from an earlier OUT.json (adding notes, e.g. about the machine).
"""
import argparse, asyncio, bisect, datetime, itertools, json, math, os, platform, signal, socket, subprocess, sys, tempfile, time
import urllib.error, urllib.request
from xml.sax.saxutils import escape

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from inference_bench import git_info, machine_info, nice_ticks, plural, sha256_file, summarize, tick_label, write_atomic  # noqa: E402

OURS, PEER = "securenode", "llama.cpp"
ENGINES = (OURS, PEER)
COLORS = {OURS: "#1f77b4", PEER: "#d62728"}

# A raw completion prompt of about 64 tokens that a small instruct model continues for well over 64
# tokens with greedy decoding (a list that goes on), so that every request generates max_tokens tokens
# and neither engine is favoured by an early end of sequence. The driver checks finish_reason and the
# completion token counts, and reports any request that ended early.
PROMPT = ("Below are the numbers from one to one hundred, written out in English words and separated by "
          "commas, with nothing else: "
          "one, two, three, four, five, six, seven, eight, nine, ten, eleven, twelve, thirteen, fourteen, "
          "fifteen, sixteen, seventeen, eighteen, nineteen, twenty,")

WORKLOADS = ("fixed", "chat")
WORKLOAD_TITLES = {"fixed": "fixed prompt, /v1/completions, prompt caches off",
                   "chat": "multi-turn chat, /v1/chat/completions, growing history, prompt caches on"}
# TARGETS[n]: issue 20's required ratio securenode / llama.cpp of aggregate tokens/s at n streams.
TARGETS = {1: 1.3, 16: 2.5}

# The chat workload: one system prompt for every client (a deployment's shared instructions), a first
# question of each conversation's own, then follow-ups about the answer so far.
CHAT_SYSTEM = ("You are a helpful assistant for a science museum. Answer visitors' questions clearly and "
               "accurately in a few sentences, and stay on the topic of the question.")
CHAT_QUESTIONS = [
    "Why is the sky blue?", "How do bees make honey?", "What causes the seasons on Earth?",
    "How does a rainbow form?", "Why do cats purr?", "How do volcanoes erupt?",
    "What is photosynthesis?", "How do airplanes stay in the air?", "Why does the moon change shape?",
    "How do magnets work?", "What makes thunder?", "How do fish breathe underwater?",
    "Why do leaves change color in autumn?", "How does the heart pump blood?", "What is a black hole?",
    "How do plants drink water?", "Why is the ocean salty?", "How do birds know where to migrate?",
    "What are clouds made of?", "How does sound travel?", "Why do we have tides?",
    "How do glaciers move?", "What is an echo?", "How do batteries store energy?",
]
CHAT_FOLLOWUPS = ["Can you explain that more simply?", "Can you give me an example?",
                  "Why does that happen?", "What is one surprising fact about it?"]


def log(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# HTTP/1.1 + SSE client on asyncio streams


class SSEParser:
    """Incremental server-sent events parser: feed bytes, get the data of each complete event."""

    def __init__(self):
        self.buf = b""
        self.data = []

    def feed(self, chunk):
        self.buf += chunk
        events = []
        while True:
            # A line ends at \r\n, \n or \r (a lone \r at the very end may be half of \r\n: wait).
            i = min((p for p in (self.buf.find(b"\n"), self.buf.find(b"\r")) if p >= 0), default=-1)
            if i < 0 or (self.buf[i:i + 1] == b"\r" and i + 1 == len(self.buf)):
                break
            line = self.buf[:i]
            skip = 2 if self.buf[i:i + 2] == b"\r\n" else 1
            self.buf = self.buf[i + skip:]
            if not line:  # blank line: dispatch the event
                if self.data:
                    events.append("\n".join(self.data))
                self.data = []
                continue
            if line.startswith(b":"):
                continue  # comment
            field, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if field == b"data":
                self.data.append(value.decode("utf-8", errors="replace"))
            # other fields (event, id, retry) are not used by either server
        return events


async def read_body(reader, headers):
    """Yields the decoded response body in pieces as they arrive (chunked, length or until EOF)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = await reader.readline()
            if not size_line:
                raise ConnectionError("connection closed inside a chunked body")
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return
            data = await reader.readexactly(size)
            await reader.readexactly(2)
            yield data
    elif "content-length" in headers:
        remaining = int(headers["content-length"])
        while remaining > 0:
            data = await reader.read(min(remaining, 65536))
            if not data:
                raise ConnectionError("connection closed before the end of the body")
            remaining -= len(data)
            yield data
    else:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            yield data


def read_events(arrivals, rec):
    """Fills a stream's record from its body's pieces and their arrival times (seconds since the
    request was sent): the first and last text events, the text, the tokens (from `usage`, else the
    text events), the finish reason, `data: [DONE]`, and an error event or a missing end as `error`."""
    pieces = []
    sse = SSEParser()
    for now, chunk in arrivals:
        for data in sse.feed(chunk):
            if data.strip() == "[DONE]":
                rec["done"] = True
                continue
            obj = json.loads(data)
            if "error" in obj:
                rec["error"] = f"error event: {json.dumps(obj['error'])[:200]}"
                continue
            for choice in obj.get("choices") or []:
                text = choice.get("text")
                if text is None:
                    text = (choice.get("delta") or {}).get("content")
                if text:
                    rec["textEvents"] += 1
                    pieces.append(text)
                    rec["lastText"] = now
                    if rec["ttft"] is None:
                        rec["ttft"] = now
                if choice.get("finish_reason"):
                    rec["finishReason"] = choice["finish_reason"]
            usage = obj.get("usage")
            if usage:
                rec["completionTokens"] = usage.get("completion_tokens")
                rec["promptTokens"] = usage.get("prompt_tokens")
    rec["text"] = "".join(pieces)
    if rec["error"] is None and not rec["done"]:
        rec["error"] = "the stream ended without data: [DONE]"
    if rec["error"] is None and rec["completionTokens"] is None:
        rec["completionTokens"] = rec["textEvents"]  # no usage: count text events
        rec["tokensCountedFromEvents"] = True


async def stream_completion(port, payload, timeout, path="/v1/completions"):
    """One streaming request. Returns a record: times relative to the send (first and last text event,
    end of stream), tokens, the text received, errors."""
    body = json.dumps(payload).encode()
    rec = {"status": None, "ttft": None, "lastText": None, "seconds": None, "completionTokens": None, "promptTokens": None,
           "textEvents": 0, "finishReason": None, "done": False, "error": None, "text": ""}
    t0 = time.perf_counter()
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                          f"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
                          f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body)
            await writer.drain()
            status_line = await reader.readline()
            parts = status_line.decode("latin-1").split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/"):
                raise ConnectionError(f"bad status line {status_line[:80]!r}")
            rec["status"] = int(parts[1])
            headers = {}
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                k, _, v = line.decode("latin-1").partition(":")
                headers[k.strip().lower()] = v.strip()
            if rec["status"] != 200:
                text = b"".join([c async for c in read_body(reader, headers)]).decode(errors="replace")
                rec["error"] = f"HTTP {rec['status']}: {text[:200]}"
                return rec
            # The body's pieces with their arrival times, parsed after the stream: the client shares the
            # server's cores, and parsing each event as it comes would take them while it generates.
            arrivals = []
            async for chunk in read_body(reader, headers):
                arrivals.append((time.perf_counter() - t0, chunk))
            rec["seconds"] = time.perf_counter() - t0
            read_events(arrivals, rec)
    except TimeoutError:
        rec["error"] = f"timed out after {timeout} s"
    except (OSError, ConnectionError, ValueError, asyncio.IncompleteReadError) as e:
        rec["error"] = f"{type(e).__name__}: {e}"
    finally:
        if writer is not None:
            writer.close()
    return rec


def stream_completion_blocking(port, payload, timeout, path="/v1/completions"):
    """One streaming request read with a blocking socket, for a single stream: each `recv`'s time and
    bytes, parsed after the end (status, headers, chunked or plain body, SSE events) into
    stream_completion's record. A piece's time is that of the `recv` holding its last byte. Lighter
    on the cores the server shares than the asyncio reader (which costs about 0.23 ms of Python CPU
    per streamed token on this kind of machine: bench/README.md)."""
    body = json.dumps(payload).encode()
    rec = {"status": None, "ttft": None, "lastText": None, "seconds": None, "completionTokens": None, "promptTokens": None,
           "textEvents": 0, "finishReason": None, "done": False, "error": None, "text": ""}
    t0 = time.perf_counter()
    deadline = t0 + timeout
    recvs = []
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                          f"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
                          f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body)
            while True:
                left = deadline - time.perf_counter()
                if left <= 0:
                    raise TimeoutError
                sock.settimeout(left)
                data = sock.recv(65536)
                if not data:
                    break
                recvs.append((time.perf_counter() - t0, data))
        rec["seconds"] = time.perf_counter() - t0
        raw = b"".join(d for _, d in recvs)
        ends = list(itertools.accumulate(len(d) for _, d in recvs))

        def arrived(offset):
            return recvs[bisect.bisect_right(ends, offset)][0]

        head_end = raw.find(b"\r\n\r\n")
        if head_end < 0:
            raise ConnectionError("the connection closed inside the response head")
        lines = raw[:head_end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise ConnectionError(f"bad status line {lines[0][:80]!r}")
        rec["status"] = int(parts[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        pos = head_end + 4
        arrivals = []
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                eol = raw.find(b"\r\n", pos)
                if eol < 0:
                    raise ConnectionError("connection closed inside a chunked body")
                size = int(raw[pos:eol].split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    break
                start, end = eol + 2, eol + 2 + size
                if end + 2 > len(raw):
                    raise ConnectionError("connection closed inside a chunked body")
                arrivals.append((arrived(end - 1), raw[start:end]))
                pos = end + 2
        else:
            for (t, _), end in zip(recvs, ends):
                if end > pos:
                    arrivals.append((t, raw[pos:end]))
                    pos = end
        if rec["status"] != 200:
            rec["error"] = f"HTTP {rec['status']}: {b''.join(c for _, c in arrivals).decode(errors='replace')[:200]}"
            return rec
        read_events(arrivals, rec)
    except TimeoutError:
        rec["error"] = f"timed out after {timeout} s"
    except (OSError, ConnectionError, ValueError) as e:
        rec["error"] = f"{type(e).__name__}: {e}"
    return rec


async def run_load(port, payload, clients, duration, timeout, max_requests_per_client):
    """N clients, each sending requests back to back until `duration` has passed."""
    records = []
    start = time.perf_counter()
    deadline = start + duration

    async def client(k):
        for _ in range(max_requests_per_client):
            if time.perf_counter() >= deadline:
                return
            sent = time.perf_counter() - start
            rec = await stream_completion(port, payload, timeout)
            rec["client"], rec["sentAt"] = k, sent
            records.append(rec)
            if rec["error"]:
                await asyncio.sleep(0.1)  # no hot loop against a failing server

    await asyncio.gather(*(client(k) for k in range(clients)))
    wall = time.perf_counter() - start
    return records, wall


async def run_chat_load(port, model, clients, duration, timeout, max_tokens, turns, think=0.0):
    """N clients, each holding conversations of `turns` turns back to back until `duration` has passed:
    every request carries the whole history (the server's own earlier answers included); `think`
    seconds pass between an answer and the follow-up (a user reading it)."""
    records = []
    start = time.perf_counter()
    deadline = start + duration

    async def client(k):
        conversation = 0
        while time.perf_counter() < deadline:
            question = CHAT_QUESTIONS[(k + conversation * clients) % len(CHAT_QUESTIONS)]
            messages = [{"role": "system", "content": CHAT_SYSTEM}]
            for turn in range(turns):
                if turn > 0 and think > 0:
                    await asyncio.sleep(think)
                if time.perf_counter() >= deadline:
                    return
                messages.append({"role": "user", "content": question if turn == 0 else CHAT_FOLLOWUPS[(turn - 1) % len(CHAT_FOLLOWUPS)]})
                payload = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0,
                           "stream": True, "stream_options": {"include_usage": True}}
                sent = time.perf_counter() - start
                rec = await stream_completion(port, payload, timeout, "/v1/chat/completions")
                rec["client"], rec["sentAt"], rec["turn"] = k, sent, turn
                records.append(rec)
                if rec["error"]:
                    await asyncio.sleep(0.1)  # no hot loop against a failing server
                    break
                messages.append({"role": "assistant", "content": rec["text"]})
            conversation += 1

    await asyncio.gather(*(client(k) for k in range(clients)))
    wall = time.perf_counter() - start
    return records, wall


def percentile(values, q):
    """Linear interpolation between closest ranks (numpy's default); None for no values."""
    v = sorted(values)
    if not v:
        return None
    pos = (len(v) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def level_metrics(records, wall, max_tokens):
    ok = [r for r in records if r["error"] is None]
    tokens = sum(r["completionTokens"] or 0 for r in ok)
    ttfts = [r["ttft"] for r in ok if r["ttft"] is not None]
    per_stream = [(r["completionTokens"] - 1) / (r["seconds"] - r["ttft"]) for r in ok
                  if r["ttft"] is not None and r["completionTokens"] and r["completionTokens"] > 1 and r["seconds"] > r["ttft"]]
    errors = [r["error"] for r in records if r["error"]]
    return {
        "tokensPerSecond": tokens / wall if wall > 0 else None,
        "ttftP50": percentile(ttfts, 0.50),
        "ttftP99": percentile(ttfts, 0.99),
        "latencyP50": percentile([r["seconds"] for r in ok], 0.50),
        "streamTokensPerSecondP50": percentile(per_stream, 0.50),
        "requestsCompleted": len(ok),
        "errors": len(errors),
        "completionTokens": tokens,
        "wallSeconds": wall,
        "endedEarly": sum(1 for r in ok if (r["completionTokens"] or 0) < max_tokens),
        "promptTokens": sorted({r["promptTokens"] for r in ok if r["promptTokens"] is not None}),
        "promptTokensMean": (sum(r["promptTokens"] for r in ok if r["promptTokens"] is not None)
                             / max(1, sum(1 for r in ok if r["promptTokens"] is not None))),
        "errorSamples": sorted(set(errors))[:5],
    }


# ---------------------------------------------------------------------------------------------
# Servers


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path, timeout=2.0):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, urllib.error.URLError):
        return None, b""


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "\n".join(f.read().strip().splitlines()[-n:])
    except OSError:
        return ""


def stop(proc, grace=20.0):
    """SIGTERM, wait, then SIGKILL the process's own group (it was started in a new session)."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(grace)
    except subprocess.TimeoutExpired:
        log(f"pid {proc.pid} did not stop within {grace:.0f} s of SIGTERM: SIGKILL")
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return proc.wait(10)


class Server:
    """One server process, started in its own session, with its output in a log file."""

    def __init__(self, name, cmd, port, ready_path, logdir, env=None):
        self.name, self.port, self.ready_path = name, port, ready_path
        self.log_path = os.path.join(logdir, f"{name.replace('.', '')}-{port}.log")
        self.log_file = open(self.log_path, "wb")
        self.cmd = cmd
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log_file, stderr=subprocess.STDOUT,
                                     start_new_session=True, env=env)

    def wait_ready(self, timeout):
        deadline = self.started + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"error: {self.name} exited {self.proc.returncode} before it was ready:\n{tail(self.log_path)}")
            status, _ = http_get(self.port, self.ready_path, timeout=1.0)
            if status == 200:
                return time.perf_counter() - self.started
            time.sleep(0.1)
        self.stop()
        raise SystemExit(f"error: {self.name} was not ready after {timeout:.0f} s:\n{tail(self.log_path)}")

    def model_id(self):
        status, body = http_get(self.port, "/v1/models", timeout=5.0)
        if status != 200:
            raise SystemExit(f"error: {self.name}: GET /v1/models answered {status}")
        data = json.loads(body).get("data") or []
        if not data:
            raise SystemExit(f"error: {self.name}: GET /v1/models lists no model")
        return data[0]["id"]

    def stop(self):
        code = stop(self.proc)
        self.log_file.close()
        return code


def start_dev_tpm(securenode, state_dir, logdir):
    """`securenode dev-tpm` (provisions and runs swtpm), as scripts/start.sh does; returns (proc, tcti)."""
    tcti_path = os.path.join(state_dir, "dev-tpm.tcti")
    out = open(tcti_path, "wb")
    err = open(os.path.join(logdir, "dev-tpm.log"), "wb")
    env = dict(os.environ, SECURENODE_STATE_DIR=state_dir)
    proc = subprocess.Popen([securenode, "dev-tpm", "--state-dir", state_dir], stdin=subprocess.DEVNULL,
                            stdout=out, stderr=err, start_new_session=True, env=env)
    out.close()
    err.close()
    deadline = time.perf_counter() + 30
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"error: the software TPM exited {proc.returncode}:\n{tail(os.path.join(logdir, 'dev-tpm.log'))}")
        with open(tcti_path) as f:
            text = f.read()
        if "\n" in text and text.split("\n", 1)[0].strip():
            return proc, text.split("\n", 1)[0].strip()
        time.sleep(0.05)
    stop(proc)
    raise SystemExit("error: the software TPM did not report its TCTI within 30 s")


def node_config(path, a, parallel, port, state_dir, tcti, prompt_cache):
    """The YAML configuration for `securenode serve --config` (shape: deploy/securenode.yaml.example)."""
    text = "\n".join([
        "# written by bench/serve_bench.py",
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
        f"  context_length: {a.ctx}",
        f"  parallel: {parallel}",
        f"  threads: {a.threads}",
        f"  max_tokens: {max(a.max_tokens, 64)}",
        "  queue_depth: 64",
        "  drain_seconds: 5",
        f"  prompt_cache: {'true' if prompt_cache else 'false'}",
        *([f"  decoding: {a.decoding}"] if a.decoding else []),
        "",
    ])
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


# llama-server's prompt cache flags per workload (the node's limits.prompt_cache matches: off, on).
PEER_CACHE_FLAGS = {"fixed": ["--no-cache-prompt", "--cache-ram", "0"], "chat": ["--cache-prompt"]}


def start_server(eng, a, parallel, tmp, tcti, workload):
    port = free_port()
    if eng == OURS:
        config = os.path.join(tmp, f"securenode-{parallel}.yaml")
        node_config(config, a, parallel, port, os.path.join(tmp, "state"), tcti, prompt_cache=workload == "chat")
        # The flags are those of scripts/start.sh; the file carries the limits (and the same values).
        cmd = [a.securenode, "serve", "--config", config, "--tcti", tcti, "--profile", a.profile,
               "--model", a.model_dir, "--signature", a.signature, "--public-key", a.public_key, "--port", str(port)]
        env = dict(os.environ, SECURENODE_STATE_DIR=os.path.join(tmp, "state"))
        return Server(eng, cmd, port, "/readyz", tmp, env)
    cmd = [a.peer_server, "-m", a.model_file, "--host", "127.0.0.1", "--port", str(port),
           "-np", str(parallel), "-c", str(parallel * a.ctx), "-t", str(a.threads), "-tb", str(a.threads),
           "--cont-batching", *PEER_CACHE_FLAGS[workload], "--no-webui"]
    return Server(eng, cmd, port, "/health", tmp)


# ---------------------------------------------------------------------------------------------
# Formatting


def fmt_s(v):
    if v is None:
        return "n/a"
    return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"


def fmt_tps(v):
    return "n/a" if v is None else f"{v:.1f}"


def cell(s, fmt):
    if s is None:
        return "n/a"
    if s["min"] == s["max"]:
        return fmt(s["median"])
    lo, hi = fmt(s["min"]), fmt(s["max"])
    if lo.split()[1:] == hi.split()[1:]:
        lo = lo.split()[0]
    return f"{fmt(s['median'])} ({lo}–{hi})"


def markdown(res):
    mach, ver, levels = res["machine"], res["versions"], res["levels"]
    commit = (ver["securenodeCommit"] or "unknown")[:12]
    if ver["uncommittedSourceChanges"]:
        commit += " + uncommitted changes in Sources/"
    out = [
        "# Serving: securenode against llama.cpp's server",
        "",
        f"{res['model']['file']} ({res['model']['bytes'] / 1e6:.1f} MB), {res['threads']} engine threads each, "
        f"{res['durationSeconds']:g} s of load per workload, level and engine, median of {plural(res['runs'], 'run')} "
        "(min–max in parentheses); every measurement on a freshly started server, engines alternating.",
        "",
        f"- date: {res['date']}",
        f"- CPU: {mach['cpuModel']}, {mach['logicalCpus']} logical CPUs ({', '.join(mach['cpuFeatures'])}); Linux {mach['kernel']}",
        f"- load average (1 min) before / after: {mach['loadAverageBefore'][0]:.2f} / {mach['loadAverageAfter'][0]:.2f}",
        f"- securenode: commit {commit}, `securenode serve` with `limits.parallel` = N (a fresh node per level), "
        f"`limits.threads` {res['threads']}, `limits.context_length` {res['ctx']}, software TPM (`securenode dev-tpm`)",
        f"- llama.cpp: `llama-server` ({ver['llamaServer']}), `-np N -c N*{res['ctx']} -t {res['threads']} -tb {res['threads']} "
        "--cont-batching` plus the workload's cache flags, other settings default",
        f"- start to ready (median): securenode {fmt_s(res['readySeconds'][OURS]['median'])} (verifies the signature, "
        f"hashes the model, measures it into the TPM), llama.cpp {fmt_s(res['readySeconds'][PEER]['median'])} (maps the file)",
    ]
    for w in res["workloads"]:
        out += ["", f"## Workload: {WORKLOAD_TITLES[w]}", "",
                "| concurrent streams | securenode tokens/s | llama.cpp tokens/s | ratio | TTFT p50 securenode | TTFT p50 llama.cpp "
                "| TTFT p99 securenode | TTFT p99 llama.cpp | requests (errors) securenode | requests (errors) llama.cpp |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for n in levels:
            m = res["metrics"][w][str(n)]
            ratio = m["ratio"]
            rq = {e: f"{m[e]['requestsCompleted']['median']:g} ({m[e]['errors']['median']:g})" if m[e] else "n/a" for e in ENGINES}
            out.append(f"| {n} | {cell(m[OURS] and m[OURS]['tokensPerSecond'], fmt_tps)} | "
                       f"{cell(m[PEER] and m[PEER]['tokensPerSecond'], fmt_tps)} | "
                       f"{f'**{ratio:.2f}x**' if ratio is not None else 'n/a'} | "
                       f"{cell(m[OURS] and m[OURS]['ttftP50'], fmt_s)} | {cell(m[PEER] and m[PEER]['ttftP50'], fmt_s)} | "
                       f"{cell(m[OURS] and m[OURS]['ttftP99'], fmt_s)} | {cell(m[PEER] and m[PEER]['ttftP99'], fmt_s)} | "
                       f"{rq[OURS]} | {rq[PEER]} |")
        out += ["", "Per-stream decode rate (p50 over requests, tokens after the first / time after the first), "
                "end-to-end request latency p50 and mean prompt tokens per request:", "",
                "| concurrent streams | stream tokens/s securenode | stream tokens/s llama.cpp | latency p50 securenode "
                "| latency p50 llama.cpp | prompt tokens securenode | prompt tokens llama.cpp |",
                "|---|---|---|---|---|---|---|"]
        for n in levels:
            m = res["metrics"][w][str(n)]
            pt = {e: f"{m[e]['promptTokensMean']['median']:.0f}" if m[e] and m[e].get("promptTokensMean") else "n/a" for e in ENGINES}
            out.append(f"| {n} | {cell(m[OURS] and m[OURS]['streamTokensPerSecondP50'], fmt_tps)} | "
                       f"{cell(m[PEER] and m[PEER]['streamTokensPerSecondP50'], fmt_tps)} | "
                       f"{cell(m[OURS] and m[OURS]['latencyP50'], fmt_s)} | {cell(m[PEER] and m[PEER]['latencyP50'], fmt_s)} | "
                       f"{pt[OURS]} | {pt[PEER]} |")
    out += ["", "## Targets (issue 20)", "", "| workload | target | required | measured | result |", "|---|---|---|---|---|"]
    for t in res["targets"]:
        out.append(f"| {t['workload']} | {t['name']} | {t['required']} | {t['measured']} | **{t['result']}** |")
    notes = res.get("notes") or []
    if notes:
        out += ["", "## Observed", ""] + [f"- {n}" for n in notes]
    out += [
        "",
        "## Method",
        "",
        f"- fixed: N concurrent clients, each sending `POST /v1/completions` back to back for {res['durationSeconds']:g} s "
        f"(requests started before then run to completion and count); body `{json.dumps(res['requestBody'])}` plus `prompt` "
        f"with a fixed raw prompt of {res['promptTokensObserved'] or '?'} tokens (a number list that a greedy model continues) "
        f"and `max_tokens` {res['maxTokens']}. Prompt caches off on both sides (`limits.prompt_cache: false`; "
        "`--no-cache-prompt --cache-ram 0`): every request repeats the same prompt, which a cache would skip and a real mix of "
        "users would not let it.",
        f"- chat: N concurrent clients, each holding conversations of {res.get('turns', '?')} turns through "
        "`POST /v1/chat/completions` (stream, `max_tokens` "
        f"{res['maxTokens']}, temperature 0): one system prompt shared by every client, a first question of the conversation's own "
        "(a list of 24), then follow-ups (\"Can you explain that more simply?\", ...); each request carries the whole history, "
        "the server's own earlier answers included, so each turn's prompt extends the previous turn's. Prompt caches on on both "
        "sides: the node's `limits.prompt_cache: true` "
        + ("with `limits.decoding: one-token` (an idle slot keeps the prompt rows it evaluated; generated rows are not "
           "kept, but an idle node evaluates the last answer again as prompt rows), " if res.get("decoding") == "one-token" else
           "with the node's default decoding (`limits.decoding`: prompt rows with several slots, so a slot keeps its prompt's "
           "and its answer's rows; one-token with one slot, where an idle node evaluates the last answer again as prompt "
           "rows), " if res.get("decoding", "default") == "default" else
           "with `limits.decoding: prompt-rows` (decoding rows are computed as prompt rows, and a slot keeps its prompt's "
           "and its answer's rows), ")
        + "llama-server's `--cache-prompt` with its default `--cache-ram` "
        "(a slot keeps prompt and generated rows, plus a host-memory cache). Answers may end before max_tokens (end of turn). "
        + (f"Each client waits {res['thinkSeconds']:g} s between an answer and its follow-up (a user reading); the wall time "
           "includes those pauses." if res.get("thinkSeconds") else "Follow-ups are sent as soon as the answer ends."),
        "- One warm-up request per server start, not counted.",
        "- Aggregate tokens/s: completion tokens (from each stream's `usage`) of the successful requests / wall time from the "
        "first request sent to the last stream finished. TTFT: from writing the request to the first SSE event that carries "
        "text, on a fresh connection; p50 and p99 by linear interpolation over that run's requests (with few requests p99 is "
        "close to the maximum). Medians over runs; ratio = securenode / llama.cpp of the medians (above 1: securenode faster).",
        "- Both servers are started fresh for every measurement, with N slots, and stopped (SIGTERM) after it.",
        "- The client is Python asyncio on the same 2 cores (HTTP/1.1, one connection per request, `Connection: close`); "
        "it takes the same share from both engines.",
        "- securenode's responses carry a signed receipt (final SSE event), included in its numbers.",
        "",
    ]
    load = mach["loadAverageBefore"][0]
    if load > 0.5:
        out.insert(4, f"> The machine was not quiet: load average {load:.2f} before the run; treat the numbers with care.")
        out.insert(5, "")
    return "\n".join(out)


def svg_plot(res, workload):
    """Aggregate tokens/s (left) and TTFT p50 (right) of one workload against concurrent streams, log2 x."""
    levels = res["levels"]
    W, H = 920, 470
    top, bottom = 70, 360
    L, R = (80, 500), (600, 880)
    el = []
    text = lambda x, y, s, size=12, anchor="middle", weight="normal", extra="": el.append(
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" font-weight="{weight}" {extra}>{escape(s)}</text>')
    line = lambda x1, y1, x2, y2, stroke="#000", width=1, extra="": el.append(
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}" stroke-width="{width}" {extra}/>')
    mach = res["machine"]
    text(W / 2, 24, f"Serving throughput ({workload}), securenode vs llama-server: {res['model']['file']}, {res['threads']} threads",
         16, weight="bold")
    text(W / 2, 44, f"{mach['cpuModel']}, median of {plural(res['runs'], 'run')} (bars: min–max), {res['date'][:10]}",
         12, extra='fill="#444"')

    def stat(n, eng, key, field="median"):
        e = res["metrics"][workload][str(n)].get(eng)
        s = e and e.get(key)
        return s[field] if s else None

    def panel(x0, x1, key, label, scale, fmt):
        peaks = [stat(n, e, key, "max") for n in levels for e in ENGINES]
        ticks, step = nice_ticks(max([v * scale for v in peaks if v] or [1]))
        ymax = ticks[-1]
        ys = lambda v: bottom - (v * scale / ymax) * (bottom - top)
        for v in ticks:
            y = bottom - (v / ymax) * (bottom - top)
            line(x0, y, x1, y, "#ddd")
            line(x0 - 5, y, x0, y)
            text(x0 - 8, y + 4, tick_label(v, step), 11, "end")
        line(x0, top, x0, bottom)
        line(x0, bottom, x1, bottom)
        el.append(f'<text x="{x0 - 52:.1f}" y="{(top + bottom) / 2:.1f}" font-size="12" text-anchor="middle" '
                  f'transform="rotate(-90 {x0 - 52:.1f} {(top + bottom) / 2:.1f})">{escape(label)}</text>')
        lo, hi, pad = math.log2(min(levels)), math.log2(max(levels)), 24
        xs = lambda n: x0 + pad + ((math.log2(n) - lo) / (hi - lo) if hi > lo else 0.5) * (x1 - x0 - 2 * pad)
        for n in levels:
            line(xs(n), bottom, xs(n), bottom + 5)
            text(xs(n), bottom + 19, str(n), 11)
        text((x0 + x1) / 2, bottom + 38, "concurrent streams (log scale)", 12)
        for k, eng in enumerate(ENGINES):
            pts = [(xs(n), ys(stat(n, eng, key))) for n in levels if stat(n, eng, key) is not None]
            dx = -3 if k == 0 else 3  # the two engines' min–max bars side by side, not on top of each other
            for n in levels:
                if stat(n, eng, key, "min") is not None:
                    line(xs(n) + dx, ys(stat(n, eng, key, "min")), xs(n) + dx, ys(stat(n, eng, key, "max")), COLORS[eng], 1.5)
            if len(pts) > 1:
                el.append(f'<polyline fill="none" stroke="{COLORS[eng]}" stroke-width="2.5" points="'
                          + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
            for x, y in pts:
                el.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{COLORS[eng]}"/>')
        n_last = levels[-1]
        labels = sorted((ys(stat(n_last, e, key)) + 4, e) for e in ENGINES if stat(n_last, e, key) is not None)
        if len(labels) == 2 and labels[1][0] - labels[0][0] < 13:
            mid = (labels[0][0] + labels[1][0]) / 2
            labels = [(mid - 6.5, labels[0][1]), (mid + 6.5, labels[1][1])]
        for y, eng in labels:
            text(xs(n_last) + 8, y, fmt(stat(n_last, eng, key)), 11, "start", "bold", f'fill="{COLORS[eng]}"')

    panel(L[0], L[1], "tokensPerSecond", "aggregate generated tokens/s", 1, lambda v: f"{v:.0f}")
    panel(R[0], R[1], "ttftP50", "time to first token p50, ms", 1000, lambda v: f"{v * 1000:.0f}")
    lx, ly = L[0], H - 40
    for eng, name in ((OURS, "securenode serve"), (PEER, "llama.cpp llama-server")):
        line(lx, ly, lx + 28, ly, COLORS[eng], 2.5)
        el.append(f'<circle cx="{lx + 14:.1f}" cy="{ly:.1f}" r="4" fill="{COLORS[eng]}"/>')
        text(lx + 36, ly + 4, name, 12, "start")
        lx += 230
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
            f'font-family="DejaVu Sans, Helvetica, Arial, sans-serif">\n'
            f'<rect width="{W}" height="{H}" fill="#fff"/>\n' + "\n".join(el) + "\n</svg>\n")


# ---------------------------------------------------------------------------------------------


def compact(rec):
    """A request's record as stored in the JSON: times in seconds rounded to 0.1 ms, no redundant fields."""
    out = {"client": rec.get("client"), "sentAt": rec.get("sentAt"), "ttft": rec.get("ttft"), "seconds": rec.get("seconds"),
           "completionTokens": rec.get("completionTokens"), "promptTokens": rec.get("promptTokens"),
           "finishReason": rec.get("finishReason")}
    if rec.get("error"):
        out["error"] = rec["error"]
    if rec.get("tokensCountedFromEvents"):
        out["tokensCountedFromEvents"] = True
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


METRIC_KEYS = ("tokensPerSecond", "ttftP50", "ttftP99", "latencyP50", "streamTokensPerSecondP50", "requestsCompleted",
               "errors", "completionTokens", "wallSeconds", "endedEarly", "promptTokensMean")


def analyze(res):
    """Medians over runs, ratios, issue 20's targets and notes, from res["raw"]."""
    levels, raw, max_tokens = res["levels"], res["raw"], res["maxTokens"]
    metrics, targets, notes = {}, [], []
    for w in res["workloads"]:
        metrics[w] = {}
        for n in levels:
            entry = {}
            for eng in ENGINES:
                runs = raw[w][str(n)][eng]
                entry[eng] = {k: summarize([r.get(k) for r in runs]) for k in METRIC_KEYS} if runs else None
            o, q = entry[OURS], entry[PEER]
            entry["ratio"] = (o["tokensPerSecond"]["median"] / q["tokensPerSecond"]["median"]
                              if o and q and q["tokensPerSecond"]["median"] else None)
            metrics[w][str(n)] = entry
            r = entry["ratio"]
            required = TARGETS.get(n)
            measured = "n/a"
            if r is not None:
                measured = f"{r:.2f}x ({o['tokensPerSecond']['median']:.1f} vs {q['tokensPerSecond']['median']:.1f} tokens/s)"
                overlap = o["tokensPerSecond"]["min"] <= q["tokensPerSecond"]["max"] and q["tokensPerSecond"]["min"] <= o["tokensPerSecond"]["max"]
                if overlap and res["runs"] > 1:
                    measured += "; the two engines' min–max ranges overlap: a tie within this machine's noise"
            result = "n/a" if r is None else ("reported" if required is None else ("PASS" if r >= required else "FAIL"))
            targets.append({"workload": w, "name": f"aggregate tokens/s at {n} concurrent stream{'s' if n > 1 else ''}",
                            "required": "reported" if required is None else f">= {required}x llama.cpp", "value": r,
                            "pass": None if r is None or required is None else r >= required,
                            "measured": measured, "result": result})
            for eng in ENGINES:
                for j, run in enumerate(raw[w][str(n)][eng]):
                    if run["errors"]:
                        notes.append(f"{w}, {eng}, {n} streams, run {j + 1}: {run['errors']} failed request(s): {'; '.join(run['errorSamples'])}")
                    if run["endedEarly"] and w == "fixed":
                        notes.append(f"{w}, {eng}, {n} streams, run {j + 1}: {run['endedEarly']} request(s) generated fewer than "
                                     f"{max_tokens} tokens (end of sequence or stop)")
                    if (run.get("loadAverage1mAfter") or 0) > 3.0:
                        notes.append(f"{w}, {eng}, {n} streams, run {j + 1}: load average {run['loadAverage1mAfter']:.2f} just after "
                                     "(the bench alone keeps about 2-2.5): other work shared the CPUs")
                    if run.get("serverExit") not in (0, None):
                        notes.append(f"{w}, {eng}, {n} streams, run {j + 1}: the server exited {run['serverExit']} when stopped")
    prompt_tokens = {eng: sorted({t for n in levels for r in raw.get("fixed", {}).get(str(n), {}).get(eng, []) for t in r["promptTokens"]})
                     for eng in ENGINES}
    if prompt_tokens[OURS] and prompt_tokens[PEER] and prompt_tokens[OURS] != prompt_tokens[PEER]:
        notes.append(f"fixed prompt token counts differ: securenode {prompt_tokens[OURS]}, llama.cpp {prompt_tokens[PEER]}")
    if not any(run["errors"] or (run["endedEarly"] and w == "fixed") for w in res["workloads"] for n in levels
               for eng in ENGINES for run in raw[w][str(n)][eng]):
        notes.append("no failed request in any run of either engine, and no fixed-workload request that ended before max_tokens")
    notes += res.get("extraNotes") or []
    res.update(metrics=metrics, targets=targets, notes=notes, promptTokens=prompt_tokens,
               promptTokensObserved=(prompt_tokens[OURS] or prompt_tokens[PEER] or [None])[0],
               readySeconds={eng: summarize([run["readySeconds"] for w in res["workloads"] for n in levels
                                             for run in raw[w][str(n)][eng]]) for eng in ENGINES})
    return res


def dumps(res):
    """Indented JSON, with each request record on one line (a run has hundreds of them)."""
    records, clone = {}, json.loads(json.dumps(res))
    for w in clone["workloads"]:
        for n in clone["levels"]:
            for eng in ENGINES:
                for run in clone["raw"][w][str(n)][eng]:
                    key = f"@records{len(records)}@"
                    records[key], run["records"] = run["records"], key
    text = json.dumps(clone, indent=1)
    for key, recs in records.items():
        text = text.replace(json.dumps(key), "[" + ",".join("\n  " + json.dumps(r, separators=(",", ":")) for r in recs) + "\n ]", 1)
    return text + "\n"


def write_results(res, out):
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    md = markdown(res)
    write_atomic(out + ".json", dumps(res))
    write_atomic(out + ".md", md)
    for w in res["workloads"]:
        write_atomic(out + ("-throughput.svg" if w == "fixed" else f"-{w}-throughput.svg"), svg_plot(res, w))
    print(md)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--render", metavar="OUT.json", help="only rewrite OUT.json/.md/-throughput.svg from an earlier OUT.json")
    p.add_argument("--note", action="append", default=[], help="with --render: add this note to the results (kept in the JSON)")
    for flag in ("--securenode", "--peer-server", "--model-dir", "--model-file", "--signature", "--public-key",
                 "--profile", "--out"):
        p.add_argument(flag)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--levels", default="1,4,16", help="concurrent streams")
    p.add_argument("--workloads", default="fixed,chat", help="fixed, chat, or both")
    p.add_argument("--turns", type=int, default=4, help="chat: turns per conversation")
    p.add_argument("--think", type=float, default=0.0, help="chat: seconds between an answer and the follow-up")
    p.add_argument("--decoding", choices=("one-token", "prompt-rows"),
                   help="the node's limits.decoding (default: the node's own: prompt rows with several slots, "
                        "one-token with one; with the prompt cache, prompt rows keep answers for the next turn)")
    p.add_argument("--duration", type=float, default=40, help="seconds of load per workload, level and engine")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ctx", type=int, default=2048, help="context per sequence (slot)")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--request-timeout", type=float, default=300)
    p.add_argument("--ready-timeout", type=float, default=180)
    a = p.parse_args()
    # SIGTERM unwinds like Ctrl-C, so that the servers and the software TPM are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if a.render:
        with open(a.render) as f:
            res = json.load(f)
        if "workloads" not in res:  # a result from before the chat workload: one fixed workload
            res["workloads"], res["raw"] = ["fixed"], {"fixed": res["raw"]}
        for w in res["workloads"]:
            for n in res["levels"]:
                for eng in ENGINES:
                    for run in res["raw"][w][str(n)][eng]:
                        run["records"] = [compact(r) for r in run["records"]]
        res["extraNotes"] = (res.get("extraNotes") or []) + a.note
        write_results(analyze(res), a.render[:-len(".json")] if a.render.endswith(".json") else a.render)
        return
    missing = [f for f in ("securenode", "peer_server", "model_dir", "model_file", "signature", "public_key", "profile", "out")
               if not getattr(a, f)]
    if missing:
        p.error("required: " + ", ".join("--" + f.replace("_", "-") for f in missing))
    for k in ("securenode", "peer_server", "model_dir", "model_file", "signature", "public_key", "profile"):
        setattr(a, k, os.path.abspath(getattr(a, k)))
    levels = sorted(int(x) for x in a.levels.split(","))
    workloads = [w for w in WORKLOADS if w in a.workloads.split(",")]
    if not workloads or set(a.workloads.split(",")) - set(WORKLOADS):
        p.error(f"--workloads: a comma-separated list of {', '.join(WORKLOADS)}")
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(here)

    version = subprocess.run([a.peer_server, "--version"], capture_output=True, text=True)
    peer_version = " ".join((version.stdout + version.stderr).split())[:200] or "unknown"
    git = git_info(repo)  # at the start: what the binary was (presumably) built from, not what landed since
    machine = machine_info()
    machine["loadAverageBefore"] = os.getloadavg()
    raw = {w: {str(n): {OURS: [], PEER: []} for n in levels} for w in workloads}
    order, model_ids, bodies = [], {}, {}
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        state = os.path.join(tmp, "state")
        os.makedirs(state, mode=0o700)
        tpm, tcti = start_dev_tpm(a.securenode, state, tmp)
        log(f"software TPM at {tcti}")
        try:
            step = 0
            for i in range(a.runs):
                for w in workloads:
                    for n in levels:
                        for eng in (ENGINES if step % 2 == 0 else ENGINES[::-1]):
                            server = start_server(eng, a, n, tmp, tcti, w)
                            try:
                                ready = server.wait_ready(a.ready_timeout)
                                model = model_ids.setdefault(eng, server.model_id())
                                body = {"model": model, "prompt": PROMPT, "max_tokens": a.max_tokens, "temperature": 0,
                                        "stream": True, "stream_options": {"include_usage": True}}
                                bodies[eng] = body
                                # The warm-up is the fixed request in both workloads (a chat warm-up would fill the cache).
                                warm = asyncio.run(stream_completion(server.port, body, a.request_timeout))
                                if warm["error"]:
                                    raise SystemExit(f"error: {eng}: the warm-up request failed: {warm['error']}\n{tail(server.log_path)}")
                                if w == "fixed":
                                    records, wall = asyncio.run(run_load(server.port, body, n, a.duration, a.request_timeout, 100000))
                                else:
                                    records, wall = asyncio.run(run_chat_load(server.port, model, n, a.duration, a.request_timeout,
                                                                              a.max_tokens, a.turns, a.think))
                            finally:
                                code = server.stop()
                            m = level_metrics(records, wall, a.max_tokens)
                            m["serverExit"] = code
                            m["readySeconds"] = ready
                            # The bench itself keeps about 2 to 2.5 runnable; well above that, something else ran too.
                            m["loadAverage1mAfter"] = os.getloadavg()[0]
                            m["records"] = [compact(r) for r in records]
                            raw[w][str(n)][eng].append(m)
                            order.append(f"{w}:{eng}@{n}")
                            log(f"run {i + 1}/{a.runs} {w:5s} N={n:<2d} {eng:10s}: {m['tokensPerSecond']:.1f} tokens/s, "
                                f"TTFT p50 {fmt_s(m['ttftP50'])} p99 {fmt_s(m['ttftP99'])}, {m['requestsCompleted']} requests, "
                                f"{m['errors']} errors, {m['endedEarly']} ended early, {wall:.1f} s (ready in {ready:.1f} s, "
                                f"load average {m['loadAverage1mAfter']:.2f})")
                            if m["errors"]:
                                log(f"  errors: {m['errorSamples']}")
                        step += 1
        finally:
            stop(tpm)
    machine["loadAverageAfter"] = os.getloadavg()

    model_file = os.path.abspath(a.model_file)
    res = {
        "benchmark": "serving: securenode serve against llama.cpp llama-server, streaming, same load (fixed prompt; multi-turn chat)",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "runs": a.runs,
        "levels": levels,
        "workloads": workloads,
        "turns": a.turns,
        "thinkSeconds": a.think,
        "decoding": a.decoding or "default",
        "durationSeconds": a.duration,
        "threads": a.threads,
        "ctx": a.ctx,
        "maxTokens": a.max_tokens,
        "prompt": PROMPT,
        "chat": {"system": CHAT_SYSTEM, "questions": CHAT_QUESTIONS, "followUps": CHAT_FOLLOWUPS},
        "requestBody": {k: v for k, v in bodies.get(OURS, {}).items() if k != "prompt"},
        "requestBodies": bodies,
        "modelIds": model_ids,
        "order": order,
        "model": {"file": os.path.basename(model_file), "bytes": os.path.getsize(model_file), "sha256": sha256_file(model_file)},
        "machine": machine,
        "versions": {
            "securenodeCommit": git["commit"],
            "uncommittedSourceChanges": git["uncommittedSourceChanges"],
            "securenodeBinarySha256": sha256_file(a.securenode),
            "llamaServer": f"llama.cpp vendored in llama-cpp-python {os.environ.get('PEER_VERSION', '0.3.36')}, "
                           f"built here with GGML_NATIVE=ON; --version: {peer_version}",
            "llamaServerBinarySha256": sha256_file(a.peer_server),
            "driverPython": platform.python_version(),
        },
        "servers": {
            OURS: {"parallel": "N (fresh node per level)", "threads": a.threads, "contextLength": a.ctx, "queueDepth": 64,
                   "promptCache": {"fixed": False, "chat": True}},
            PEER: {"command": "llama-server -m FILE --host 127.0.0.1 --port P -np N -c N*CTX -t T -tb T --cont-batching "
                              "CACHE_FLAGS --no-webui", "cacheFlags": PEER_CACHE_FLAGS},
        },
        "ratioConvention": "securenode / llama.cpp of the median aggregate tokens/s (above 1: securenode faster)",
        "raw": raw,
    }
    write_results(analyze(res), a.out)


if __name__ == "__main__":
    main()
