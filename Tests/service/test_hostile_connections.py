"""End-to-end tests of the node's connection limits against hostile clients, each named after the
attack it survives.

Run by scripts/e2e-service.sh against a node started with small connection limits
(server.max_connections 16, header 2 s, body 3 s, idle 3 s, TLS handshake 2 s, limits.max_body_bytes
65536); it exports NODE_URL and NODE_API_KEY (and, for the TLS tests, NODE_TLS_URL). Every attack is
bounded in connections and time and stays on loopback. No assertion is about how fast something
happened: each checks that the node answered, refused or closed, and a client that would hang fails
on its socket timeout instead.
"""
import json
import os
import socket
import ssl
import sys
import threading
import time
import traceback
import urllib.parse

URL = os.environ["NODE_URL"]
KEY = os.environ["NODE_API_KEY"]
MODEL = "smollm2-135m-instruct"
HOST, PORT = urllib.parse.urlsplit(URL).hostname, urllib.parse.urlsplit(URL).port
MAX_CONNECTIONS = int(os.environ.get("NODE_MAX_CONNECTIONS", "16"))
MAX_BODY = int(os.environ.get("NODE_MAX_BODY", "65536"))
HANG = 60  # a client that waits this long is hung: the test fails


def connect(timeout=HANG, host=HOST, port=PORT):
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_until_closed(s, limit=1 << 20):
    """Everything the server sends until it closes the connection (raises on a hang)."""
    data = b""
    while len(data) < limit:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def request(method, path, body=b"", headers=None, timeout=HANG):
    """One request on a fresh connection with Connection: close: (status, body)."""
    s = connect(timeout)
    try:
        h = {"Host": f"{HOST}:{PORT}", "Connection": "close", "Authorization": "Bearer " + KEY}
        if body:
            h["Content-Type"] = "application/json"
            h["Content-Length"] = str(len(body))
        h.update(headers or {})
        s.sendall(f"{method} {path} HTTP/1.1\r\n".encode() + "".join(f"{k}: {v}\r\n" for k, v in h.items()).encode() + b"\r\n" + body)
        data = read_until_closed(s)
    finally:
        s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), rest


def healthz():
    status, body = request("GET", "/healthz", timeout=HANG)
    return status


def completion():
    body = json.dumps({"model": MODEL, "prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}).encode()
    status, answer = request("POST", "/v1/completions", body)
    assert status == 200, (status, answer[:300])
    return json.loads(answer)


class Slowloris:
    """`count` connections that each send a request head one byte every `interval` seconds and never
    finish it; a connection the node closes is opened again, up to `reconnects` times in all; stops
    after `seconds`. Counts how many connections the node cut and how many 408 answers it sent."""

    HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 4000

    def __init__(self, count, seconds, interval=0.5, reconnects=4000, host=HOST, port=PORT, tls=None):
        self.count, self.seconds, self.interval, self.reconnects = count, seconds, interval, reconnects
        self.host, self.port, self.tls = host, port, tls
        self.cut = self.timeouts = self.opened = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def open(self):
        self.opened += 1
        s = socket.create_connection((self.host, self.port), timeout=5)
        if self.tls:
            s = self.tls.wrap_socket(s, server_hostname=self.host)
        s.setblocking(False)
        return [s, 0]

    def run(self):
        end = time.time() + self.seconds
        conns = []
        while len(conns) < self.count and not self.stop.is_set():
            try:
                conns.append(self.open())
            except OSError:
                time.sleep(0.05)
        while time.time() < end and not self.stop.is_set():
            for c in conns:
                s, sent = c
                try:
                    try:
                        got = s.recv(4096)
                        if got == b"":
                            raise ConnectionResetError
                        if b" 408 " in got:
                            self.timeouts += 1
                        raise ConnectionResetError
                    except (BlockingIOError, ssl.SSLWantReadError):
                        pass
                    s.send(self.HEAD[sent % len(self.HEAD):sent % len(self.HEAD) + 1])
                    c[1] = sent + 1
                except (OSError, ssl.SSLError):
                    self.cut += 1
                    s.close()
                    if self.opened < self.reconnects:
                        try:
                            c[0], c[1] = self.open()
                        except OSError:
                            pass
            time.sleep(self.interval)
        for s, _ in conns:
            s.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=30)


def test_cutsSlowlorisHeadAtTheHeaderDeadline():
    """One client trickles a header byte every 0.3 s and never stops: the node answers 408 and
    closes the connection although it was never idle."""
    s = connect()
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 1000
    answer = b""
    for i in range(len(head)):
        try:
            s.send(head[i:i + 1])
        except OSError:
            break
        s.settimeout(0.3)
        try:
            answer = s.recv(4096)
            if answer:
                break
        except socket.timeout:
            continue
        if answer == b"":
            break
    else:
        raise AssertionError("the node read the whole trickled head without cutting the connection")
    s.settimeout(HANG)
    answer += read_until_closed(s)
    s.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]


def test_survivesSlowloris():
    """Three times the connection cap of half-open connections trickling headers, reopened as the node
    cuts them: /healthz and a real completion still answer."""
    with Slowloris(count=3 * MAX_CONNECTIONS, seconds=40) as attack:
        while attack.opened < 3 * MAX_CONNECTIONS and attack.thread.is_alive():
            time.sleep(0.1)
        time.sleep(1)  # the attack holds every slot and the backlog
        for _ in range(5):
            assert healthz() == 200
        r = completion()
        assert r["choices"][0]["text"]
        assert healthz() == 200
    assert attack.cut > 0, "the node never cut an attacking connection"


def test_refusesConnectionsBeyondCap():
    """The cap held by requests being answered (streaming completions, which are never displaced): a
    new connection is not served while they run, and is served as soon as one of them ends."""
    # A prompt the model continues for all of max_tokens (a list that goes on), so no holder's answer
    # ends early and frees its slot.
    prompt = ("Below are the numbers from one to one hundred, written out in English words and separated by commas: "
              "one, two, three, four, five, six, seven, eight, nine, ten,")
    body = json.dumps({"model": MODEL, "prompt": prompt, "max_tokens": 256, "temperature": 0, "stream": True}).encode()
    holders = []
    for _ in range(MAX_CONNECTIONS):
        s = connect()
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode() +
                  b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        holders.append(s)
    time.sleep(1)  # setup: the node has read every request (not an assertion)
    probe = connect()
    probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    probe.settimeout(2)
    try:
        early = probe.recv(4096)
    except socket.timeout:
        early = None
    assert early is None, f"served beyond the cap: {early[:100]!r}"
    holders.pop().close()  # one request ends (its client hangs up): its slot frees
    probe.settimeout(HANG)
    answer = read_until_closed(probe)
    probe.close()
    for s in holders:
        s.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:100]


def test_cutsSlowBodyUpload():
    """A client sends its head and then one body byte a second: the node closes the connection at
    the body deadline (the route never gets the whole body)."""
    s = connect()
    body = json.dumps({"model": MODEL, "prompt": "x" * 200, "max_tokens": 2}).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode() +
              b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
    closed = False
    for i in range(len(body)):
        try:
            s.send(body[i:i + 1])
        except OSError:
            closed = True
            break
        s.settimeout(1)
        try:
            got = s.recv(4096)
            if got == b"" or not got.startswith(b"HTTP/1.1 200"):
                closed = True
                break
        except socket.timeout:
            continue
        except OSError:
            closed = True
            break
    s.close()
    assert closed, "the node waited for the whole trickled body"


def oversized(chunked):
    s = connect()
    size = 4 * MAX_BODY + 12345
    body = b'{"model": "' + MODEL.encode() + b'", "prompt": "' + b"a" * (size - 40) + b'"}'
    head = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer " + KEY.encode() + \
        b"\r\nContent-Type: application/json\r\n"
    if chunked:
        s.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(body), 8192):
            piece = body[i:i + 8192]
            s.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        s.sendall(b"0\r\n\r\n")
    else:
        s.sendall(head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    # The whole body is written before anything is read (sendall would raise on the socket timeout).
    answer = read_until_closed(s)
    s.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    error = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert error["error"]["code"] == "request_too_large", error


def test_closesOversizedBodyWithConnectionClose():
    """Connection: close, a Content-Length over limits.max_body_bytes, the whole body written before
    reading: 413 and the connection is closed (the client is not left hanging)."""
    oversized(chunked=False)


def test_closesOversizedChunkedBodyWithConnectionClose():
    """The same with a chunked body (no length to check up front): counted as it arrives."""
    oversized(chunked=True)


def test_unauthorizedLargeBodyWithConnectionCloseIsNotHung():
    """A body the route never reads (401: no key) under the limit, Connection: close, written whole
    before reading: the client gets its 401 and the connection closes."""
    s = connect()
    body = b'{"prompt": "' + b"a" * (MAX_BODY - 100) + b'"}'
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    answer = read_until_closed(s)
    s.close()
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]


def test_cutsStalledTLSHandshake():
    """On the TLS listener, a client that connects and sends half a ClientHello is closed at the
    handshake deadline."""
    tls_url = os.environ.get("NODE_TLS_URL")
    if not tls_url:
        raise SkipTest("no TLS listener (NODE_TLS_URL)")
    parts = urllib.parse.urlsplit(tls_url)
    s = socket.create_connection((parts.hostname, parts.port), timeout=HANG)
    s.sendall(bytes.fromhex("160301"))  # the start of a TLS record, never finished
    assert read_until_closed(s) == b""
    s.close()


def test_survivesSlowlorisOnTheTLSListener():
    """Stalled handshakes at three times the cap on the TLS listener: a real client still gets /healthz."""
    tls_url = os.environ.get("NODE_TLS_URL")
    if not tls_url:
        raise SkipTest("no TLS listener (NODE_TLS_URL)")
    parts = urllib.parse.urlsplit(tls_url)
    context = ssl.create_default_context(cafile=os.environ["NODE_TLS_CA"])
    context.load_cert_chain(os.environ["NODE_TLS_CLIENT_CERT"], os.environ["NODE_TLS_CLIENT_KEY"])
    stalled = []
    for _ in range(3 * MAX_CONNECTIONS):
        c = socket.create_connection((parts.hostname, parts.port), timeout=HANG)
        c.sendall(bytes.fromhex("160301"))
        stalled.append(c)
    try:
        for _ in range(3):
            s = context.wrap_socket(socket.create_connection((parts.hostname, parts.port), timeout=HANG), server_hostname=parts.hostname)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = read_until_closed(s)
            s.close()
            assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
    finally:
        for c in stalled:
            c.close()


class SkipTest(Exception):
    pass


if __name__ == "__main__":
    only = sys.argv[1:]
    tests = [(name, fn) for name, fn in globals().items() if name.startswith("test_") and callable(fn)
             and (not only or name in only)]
    failed = skipped = 0
    for name, fn in tests:
        started = time.time()
        try:
            fn()
            print(f"ok   {name} ({time.time() - started:.1f}s)", flush=True)
        except SkipTest as e:
            skipped += 1
            print(f"skip {name}: {e}", flush=True)
        except Exception:
            failed += 1
            print(f"FAIL {name} ({time.time() - started:.1f}s)", flush=True)
            traceback.print_exc()
    print(f"hostile connections: {len(tests) - failed - skipped} passed, {failed} failed, {skipped} skipped")
    sys.exit(1 if failed else 0)
