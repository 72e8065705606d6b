"""End-to-end tests of `securenode proxy` with the unchanged `openai` client.

Run by scripts/e2e-proxy.sh, which starts a software TPM and `securenode serve` over TLS with a
self-signed certificate made at test time (its key bound into the evidence), enrolls the node over
https (the certificate accepted only because the evidence binds its key), and exports NODE_URL,
NODE_API_KEY_FILE, NODE_PROFILE, ENROLLED, SECURENODE_BIN, NODE_WORK, NODE_PID, NODE_SERVE_ARGS (JSON),
NODE_CERT, NODE_KEY, MITM_CERT, MITM_KEY, MODEL2_ARGS (JSON: a second model signed by a key the
profile does not name). Every test runs against real processes: proxies started here, a
man-in-the-middle TLS relay with another certificate, and a tampering relay that holds the node's
own key (the worst case: the TLS key leaked) and alters responses. The node restart runs last.
"""
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request

import openai

BIN = os.environ["SECURENODE_BIN"]
NODE = os.environ["NODE_URL"]
WORK = os.environ["NODE_WORK"]
PROFILE = os.environ["NODE_PROFILE"]
ENROLLED = os.environ["ENROLLED"]
KEY_FILE = os.environ["NODE_API_KEY_FILE"]
MODEL = "smollm2-135m-instruct"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Proxy:
    """A `securenode proxy` process in front of `node`."""

    def __init__(self, node, reattest=60, profile=PROFILE):
        self.port = free_port()
        self.log_path = os.path.join(WORK, f"proxy-{self.port}.log")
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen([BIN, "proxy", "--node", node, "--profile", profile, "--enrolled", ENROLLED,
                                         "--listen", f"127.0.0.1:{self.port}", "--api-key-file", KEY_FILE,
                                         "--reattest-seconds", str(reattest)], stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        for _ in range(300):
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=2).read()
                break
            except Exception:
                if self.process.poll() is not None:
                    raise RuntimeError("proxy exited: " + open(self.log_path).read())
                time.sleep(0.1)
        self.client = openai.OpenAI(base_url=self.url + "/v1", api_key="unused-the-proxy-holds-the-key", max_retries=0, timeout=120)

    def get(self, path):
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()

    def text_of_log(self):
        return open(self.log_path).read()


class Relay(threading.Thread):
    """A TLS endpoint with its own certificate that relays HTTP/1.1 requests to the node (one request per
    connection) and records every request it sees; `tamper` may rewrite a response body."""

    def __init__(self, cert, key, tamper=None):
        super().__init__(daemon=True)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self.tamper = tamper
        self.seen = []  # (method, target, body bytes)
        self.lock = threading.Lock()
        self.start()

    def run(self):
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(raw,), daemon=True).start()

    def serve(self, raw):
        try:
            conn = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        try:
            data = b""
            while True:  # keep-alive: one request after the other, as the node does
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, data = data.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
                length = int(headers.get("content-length", "0"))
                while len(data) < length:
                    data += conn.recv(65536)
                body, data = data[:length], data[length:]
                with self.lock:
                    self.seen.append((method, target, body))
                status, response_headers, response = self.forward(method, target, headers, body)
                if self.tamper:
                    response = self.tamper(target, response_headers, response)
                out = f"HTTP/1.1 {status}\r\n"
                for name, value in response_headers:
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        out += f"{name}: {value}\r\n"
                out += f"Content-Length: {len(response)}\r\n\r\n"
                conn.sendall(out.encode("latin-1") + response)
        except (OSError, ssl.SSLError):
            pass
        except Exception:
            traceback.print_exc()
        finally:
            conn.close()

    def forward(self, method, target, headers, body):
        upstream = ssl.create_default_context()
        upstream.check_hostname = False
        upstream.verify_mode = ssl.CERT_NONE
        host, port = NODE.split("//")[1].split(":")
        with socket.create_connection((host, int(port))) as raw, upstream.wrap_socket(raw) as s:
            request = f"{method} {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\nContent-Length: {len(body)}\r\n"
            for name in ("content-type", "authorization", "accept"):
                if name in headers:
                    request += f"{name}: {headers[name]}\r\n"
            s.sendall(request.encode("latin-1") + b"\r\n" + body)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, rest = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0].split(" ", 1)[1]
        response_headers = [(l.split(":", 1)[0].strip(), l.split(":", 1)[1].strip()) for l in lines[1:] if ":" in l]
        if any(n.lower() == "transfer-encoding" and "chunked" in v for n, v in response_headers):
            body, rest = b"", rest
            while True:
                size_line, rest = rest.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    break
                body += rest[:size]
                rest = rest[size + 2:]
            rest = body
        return status, response_headers, rest

    def stop(self):
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread (close alone does not on Linux)
        except OSError:
            pass
        self.listener.close()


def tamper_completion(target, headers, body):
    """Alters the generated text (and leaves the node's receipt as it was)."""
    if not target.startswith("/v1/chat/completions"):
        return body
    if body.startswith(b"data: "):
        events = body.decode().split("\n\n")
        for i, event in enumerate(events):
            if event.startswith("data: {"):
                chunk = json.loads(event[6:])
                delta = (chunk.get("choices") or [{}])[0].get("delta", {})
                if delta.get("content"):
                    delta["content"] = "Transfer the funds to account 666. " + delta["content"]
                    events[i] = "data: " + json.dumps(chunk)
                    break
        return "\n\n".join(events).encode()
    response = json.loads(body)
    if "choices" in response:
        response["choices"][0]["message"]["content"] = "Transfer the funds to account 666."
    return json.dumps(response).encode()


def chat(proxy, content="Say hello.", **kwargs):
    kwargs.setdefault("max_tokens", 8)
    return proxy.client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}],
                                                temperature=0, **kwargs)


proxy = None


def test_chat_through_the_attested_channel():
    r = chat(proxy)
    assert r.choices[0].message.content, r
    status, body = proxy.get("/readyz")
    assert status == 200 and json.loads(body)["tlsKeySHA256"] == os.environ["NODE_TLS_KEY_SHA256"], body


def test_streaming_through_the_attested_channel():
    stream = chat(proxy, stream=True, max_tokens=12)
    text, receipts = "", 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if getattr(chunk, "receipt", None) or (chunk.model_extra or {}).get("receipt"):
            receipts += 1
    assert text and receipts == 1, (text, receipts)


def test_node_errors_pass_through():
    try:
        proxy.client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        raise AssertionError("an unknown model was accepted")
    except openai.NotFoundError as e:
        assert "does not exist on this node" in str(e) and e.body["code"] == "model_not_found", e.body
    try:
        chat(proxy, max_tokens=-1)
        raise AssertionError("max_tokens -1 was accepted")
    except openai.BadRequestError as e:
        assert "max_tokens" in str(e), e
    assert [m.id for m in proxy.client.models.list().data] == [MODEL]


def test_metrics_count_attestations_and_receipts():
    status, text = proxy.get("/metrics")
    assert status == 200, text
    assert re.search(r"^securenode_proxy_node_attested 1", text, re.M), text
    assert re.search(r"^securenode_proxy_attestations_total [1-9]", text, re.M), text
    assert re.search(r"^securenode_proxy_verified_receipts_total [1-9]", text, re.M), text


def test_refuses_man_in_the_middle_before_any_prompt():
    """A TLS endpoint with another certificate relays the real node (so it can answer with the node's
    real evidence for the proxy's nonce): the evidence binds another key, the proxy refuses, and the
    endpoint never sees a prompt."""
    mitm = Relay(os.environ["MITM_CERT"], os.environ["MITM_KEY"])
    p = Proxy(mitm.url)
    try:
        try:
            chat(p, content="my account number is 12345678")
            raise AssertionError("the proxy forwarded through a man in the middle")
        except openai.InternalServerError as e:
            assert e.status_code == 503 and "tls-key-bound" in str(e), e
        with mitm.lock:
            seen = list(mitm.seen)
        assert seen and all(m == "GET" and t.startswith("/v1/attestation?nonce=") and not b for m, t, b in seen), seen
        assert "12345678" not in p.text_of_log()
        assert "check=evidence:tls-key-bound" in p.text_of_log() or "evidence:tls-key-bound" in p.text_of_log(), p.text_of_log()
    finally:
        p.stop()
        mitm.stop()


def test_refuses_tampered_response():
    """A relay holding the node's own TLS key (attestation passes) alters the generated text: the receipt
    no longer matches, the proxy answers 503 (JSON) or ends the stream with an error event."""
    relay = Relay(os.environ["NODE_CERT"], os.environ["NODE_KEY"], tamper=tamper_completion)
    p = Proxy(relay.url)
    try:
        try:
            chat(p)
            raise AssertionError("a tampered response was returned")
        except openai.InternalServerError as e:
            assert e.status_code == 503 and "response-digest" in str(e), e
        stream = chat(p, stream=True)
        try:
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            raise AssertionError("a tampered stream ended normally: " + text)
        except openai.APIError as e:
            assert "response-digest" in str(e), e
    finally:
        p.stop()
        relay.stop()


def test_refuses_node_restarted_with_a_model_the_profile_does_not_allow():
    """Last: the node restarts with a second model signed by a key the profile does not name; the proxy's
    next connection re-attests and refuses (503 naming model-allowed)."""
    r = chat(proxy)
    assert r.choices[0].message.content
    pid = int(os.environ["NODE_PID"])
    os.kill(pid, signal.SIGTERM)
    for _ in range(300):
        try:
            os.kill(pid, 0)
            time.sleep(0.1)
        except ProcessLookupError:
            break
    args = json.loads(os.environ["NODE_SERVE_ARGS"]) + json.loads(os.environ["MODEL2_ARGS"])
    log = open(os.path.join(WORK, "serve-model2.log"), "w")
    node = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    open(os.path.join(WORK, "serve-model2.pid"), "w").write(str(node.pid))
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    for _ in range(600):
        try:
            urllib.request.urlopen(NODE + "/readyz", timeout=2, context=ctx).read()
            break
        except Exception:
            assert node.poll() is None, open(os.path.join(WORK, "serve-model2.log")).read()
            time.sleep(0.1)
    try:
        chat(proxy)
        raise AssertionError("the proxy forwarded to a node serving a model its profile does not allow")
    except openai.InternalServerError as e:
        assert e.status_code == 503 and "model-allowed" in str(e), e
    status, body = proxy.get("/readyz")
    assert status == 503 and "model-allowed" in body, body


if __name__ == "__main__":
    proxy = Proxy(NODE, reattest=2)
    tests = [(name, fn) for name, fn in globals().items() if name.startswith("test_") and callable(fn)]
    tests.sort(key=lambda t: t[0] == "test_refuses_node_restarted_with_a_model_the_profile_does_not_allow")
    if os.environ.get("PROXY_TESTS"):  # a subset, by name, for debugging
        tests = [t for t in tests if t[0] in os.environ["PROXY_TESTS"].split(",")]
    failed = 0
    try:
        for name, fn in tests:
            started = time.time()
            try:
                fn()
                print(f"ok   {name} ({time.time() - started:.1f} s)")
            except Exception:
                failed += 1
                print(f"FAIL {name}")
                traceback.print_exc()
    finally:
        log = proxy.text_of_log()
        proxy.stop()
    if failed:
        print("---- proxy log (tail) ----")
        print("\n".join(log.splitlines()[-30:]))
    print(f"proxy e2e: {len(tests) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
