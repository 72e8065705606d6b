"""Fleet attestation end to end: the real Keylime 7.14.3 registrar, verifier and tenant (PyPI) attest
a running SecureNode node through its Keylime agent API, on 127.0.0.1, with sqlite and a swtpm.

Run by scripts/e2e-keylime.sh with the Keylime venv's Python. Steps (each prints ok/FAIL):
  1. start a swtpm (`securenode dev-tpm`), Keylime's verifier (which makes Keylime's CA) and registrar;
  2. start the node with a `keylime:` section: it registers, activates its AK with the EK
     (TPM2_ActivateCredential) and serves the agent API with mutual TLS;
  3. probe the agent API: TLS without a Keylime client certificate is refused; malformed or unknown
     requests get Keylime's JSON envelope; the OpenAI API is not reachable there;
  4. `keylime_tenant -c add` with a tpm_policy pinning the model PCR to the value that
     `securenode keylime-policy` computes from the signed model alone, a payload and --verify;
  5. the verifier reports the node attested, again and again (attestation_count grows), also across
     a node restart with the same model;
  6. the node restarts with a different model (same weights, another manifest and signer): the
     verifier reports the failure on the model PCR and sends its revocation notice; the node then
     refuses completions (503) and /readyz says why;
  7. the revocation survives the process: the node is killed (kill -9) and restarted, even with the
     allowed model, and is still not ready (503) and refuses completions, because the revocation is
     persisted in its state directory (Keylime's verifier no longer polls a failed agent, so nothing
     else would tell it); `securenode revocation clear` (the operator) ends it;
  8. a confidential model (`securenode model encrypt`) whose data key Keylime releases: the node
     starts its agent and waits; `keylime_tenant -c add -f MODEL_KEY` with the `keylime-policy
     --key-release` policy delivers it; the node decrypts in memory, serves the same greedy answer as
     the plaintext model, stays attested, and neither its state, its logs nor /tmp hold the model's
     bytes or the key.
Every process started here is stopped at the end, whatever happens.
"""
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

import requests
import urllib3

urllib3.disable_warnings()

BIN = os.environ["SECURENODE_BIN"]
REPO = os.environ["REPO"]
KEYLIME_VENV = os.environ["SECURENODE_KEYLIME_VENV"]
MODEL_DIR = os.environ["DEFAULT_MODEL_DIR"]
MODEL_SIG = os.environ["DEFAULT_MODEL_SIGNATURE"]
MODEL_KEY = os.environ["DEFAULT_MODEL_PUBLISHER_KEY"]
PROFILE = os.path.join(REPO, "firmware-profiles", "swtpm-dev.json")
UUID = "d432fbb3-d2f1-4a97-9ef7-75bd81c00001"
API = "2.5"

failures = []
processes = []


def check(name, condition, detail=""):
    print(("ok    " if condition else "FAIL  ") + name + ("" if condition else f": {detail}"), flush=True)
    if not condition:
        failures.append(name)
    return condition


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name, argv, env=None, log_dir=None):
    log = open(os.path.join(log_dir, f"{name}.log"), "ab")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    processes.append((name, proc))
    return proc


def stop(proc, timeout=20):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # Children left in the group (the verifier's workers) get the same end.
    end = time.time() + timeout
    while group_alive(proc.pid) and time.time() < end:
        time.sleep(0.1)
    if group_alive(proc.pid):
        os.killpg(proc.pid, signal.SIGKILL)


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def wait_for(what, predicate, timeout, interval=0.5):
    end = time.time() + timeout
    last = None
    while time.time() < end:
        try:
            last = predicate()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - reported below
            last = e
        time.sleep(interval)
    raise TimeoutError(f"{what} (waited {timeout} s; last: {last!r})")


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def tail(path, lines=40):
    try:
        with open(path, "rb") as f:
            return b"\n".join(f.read().splitlines()[-lines:]).decode(errors="replace")
    except OSError:
        return ""


def main():
    work = tempfile.mkdtemp(prefix="securenode-keylime-")
    logs = os.path.join(work, "logs")
    os.makedirs(logs)
    try:
        run(work, logs)
    except Exception:  # noqa: BLE001 - any error fails the suite, with context
        traceback.print_exc()
        failures.append("unexpected error")
    finally:
        for name, proc in reversed(processes):
            stop(proc)
        leftover = [name for name, proc in processes if proc.poll() is None or group_alive(proc.pid)]
        check("every process started here has stopped (and every process of their groups: verifier workers, swtpm)",
              not leftover, leftover)
        if failures:
            for name in ("node", "verifier", "registrar", "dev-tpm"):
                print(f"---- {name} log (tail) ----\n{tail(os.path.join(logs, name + '.log'))}")
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'FAILED' if failures else 'passed'}: keylime end-to-end ({len(failures)} failure(s))")
    return 1 if failures else 0


def run(work, logs):
    state = os.path.join(work, "state")
    os.makedirs(state, mode=0o700)
    keylime_dir = os.path.join(work, "keylime")
    os.makedirs(keylime_dir)
    etc = os.path.join(KEYLIME_VENV, "etc", "keylime")

    # 1. The software TPM, then Keylime's verifier (it makes Keylime's CA) and registrar.
    tpm_env = dict(os.environ, SECURENODE_STATE_DIR=state)
    tcti_file = os.path.join(work, "tcti")
    with open(tcti_file, "wb") as out:
        dev_tpm = subprocess.Popen([BIN, "dev-tpm"], env=tpm_env, stdout=out,
                                   stderr=open(os.path.join(logs, "dev-tpm.log"), "ab"), start_new_session=True)
    processes.append(("dev-tpm", dev_tpm))
    tcti = wait_for("the software TPM", lambda: open(tcti_file).read().strip(), 30)

    cert_store = os.path.join(work, "tpm_cert_store")
    os.makedirs(cert_store)
    for name in ("swtpm-localca-rootca-cert.pem", "issuercert.pem"):
        shutil.copy(os.path.join(state, "swtpm", "ca", name), cert_store)

    verifier_port, registrar_port, registrar_tls_port, agent_port, node_port = (free_port() for _ in range(5))
    env = dict(os.environ)
    env.update({
        "KEYLIME_DIR": keylime_dir,
        "KEYLIME_VERIFIER_CONFIG": os.path.join(etc, "verifier.conf"),
        "KEYLIME_REGISTRAR_CONFIG": os.path.join(etc, "registrar.conf"),
        "KEYLIME_TENANT_CONFIG": os.path.join(etc, "tenant.conf"),
        "KEYLIME_CA_CONFIG": os.path.join(etc, "ca.conf"),
        "KEYLIME_LOGGING_CONFIG": os.path.join(etc, "logging.conf"),
        "KEYLIME_VERIFIER_PORT": str(verifier_port),
        "KEYLIME_VERIFIER_REGISTRAR_PORT": str(registrar_tls_port),
        "KEYLIME_VERIFIER_QUOTE_INTERVAL": "1",
        "KEYLIME_VERIFIER_NUM_WORKERS": "1",
        "KEYLIME_REGISTRAR_PORT": str(registrar_port),
        "KEYLIME_REGISTRAR_TLS_PORT": str(registrar_tls_port),
        "KEYLIME_TENANT_VERIFIER_PORT": str(verifier_port),
        "KEYLIME_TENANT_REGISTRAR_PORT": str(registrar_tls_port),
        "KEYLIME_TENANT_TPM_CERT_STORE": cert_store,
        "KEYLIME_TENANT_REQUIRE_EK_CERT": "True",
    })
    kbin = os.path.join(KEYLIME_VENV, "bin")
    start("verifier", [os.path.join(kbin, "keylime_verifier")], env=env, log_dir=logs)
    cv_ca = os.path.join(keylime_dir, "cv_ca")
    wait_for("Keylime's verifier", lambda: port_open(verifier_port) and os.path.exists(os.path.join(cv_ca, "client-cert.crt")), 90)
    start("registrar", [os.path.join(kbin, "keylime_registrar")], env=env, log_dir=logs)
    wait_for("Keylime's registrar", lambda: port_open(registrar_port) and port_open(registrar_tls_port), 90)
    check("Keylime verifier and registrar are up (sqlite, 127.0.0.1)", True)

    client_cert = (os.path.join(cv_ca, "client-cert.crt"), os.path.join(cv_ca, "client-private.pem"))
    ca_cert = os.path.join(cv_ca, "cacert.crt")

    # 2. The node, with its Keylime agent.
    node_log = os.path.join(logs, "node.log")

    def node_config(model_dir, signature, public_key, name, model_extra=""):
        path = os.path.join(work, f"{name}.yaml")
        with open(path, "w") as f:
            f.write(f"""profile: {PROFILE}
state_dir: {state}
model:
  id: smollm2-135m-instruct
  path: {model_dir}
  signature: {signature}
  public_key: {public_key}
{model_extra}server:
  host: 127.0.0.1
  port: {node_port}
limits:
  max_tokens: 16
  context_length: 512
  parallel: 1
  queue_depth: 2
  drain_seconds: 2
keylime:
  uuid: {UUID}
  registrar: http://127.0.0.1:{registrar_port}
  host: 127.0.0.1
  port: {agent_port}
  trusted_client_ca: {ca_cert}
""")
        os.chmod(path, 0o600)
        return path

    def start_node(config, expect_ready=True):
        with open(node_log, "ab") as f:
            f.write(f"==== start {config}\n".encode())
        registered_before = open(node_log, "rb").read().count(b"registered and activated")
        proc = start("node", [BIN, "serve", "--config", config, "--tcti", tcti], env=tpm_env, log_dir=logs)
        # The HTTP server starts only once the model is verified, measured and loaded; from then on
        # /readyz answers 200, or 503 if the verifier has already revoked the node (it polls every second).
        wait_for("the node to serve", lambda: node_get("/readyz")[0] in (200, 503) or proc.poll() is not None, 180)
        check("the node is serving", proc.poll() is None, tail(node_log))
        if expect_ready:
            check("... and ready", node_get("/readyz")[0] == 200, node_get("/readyz"))
        wait_for("the node to register with the registrar",
                 lambda: open(node_log, "rb").read().count(b"registered and activated") > registered_before
                 or proc.poll() is not None, 60)
        return proc

    def node_get(path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{node_port}{path}", timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except OSError as e:
            return 0, str(e).encode()

    def completion():
        body = json.dumps({"model": "smollm2-135m-instruct", "prompt": "The capital of France is", "max_tokens": 4,
                           "temperature": 0}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{node_port}/v1/completions", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=120) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    config_a = node_config(MODEL_DIR, MODEL_SIG, MODEL_KEY, "node-a")
    node = start_node(config_a)
    log_text = open(node_log, "rb").read().decode(errors="replace")
    check("the node registered with Keylime's registrar and activated its AK (credential activation with the EK)",
          "registered and activated with the Keylime registrar" in log_text, tail(node_log))

    # 3. The agent API: mutual TLS, Keylime's envelope, nothing of the OpenAI API.
    agent = f"https://127.0.0.1:{agent_port}"

    def agent_get(path, **kwargs):
        return requests.get(agent + path, cert=client_cert, verify=False, timeout=30, **kwargs)

    try:
        requests.get(agent + "/version", verify=False, timeout=10)
        check("the agent API refuses a client without a Keylime certificate", False, "the TLS handshake succeeded")
    except requests.exceptions.SSLError:
        check("the agent API refuses a client without a Keylime certificate", True)
    except requests.exceptions.ConnectionError:
        check("the agent API refuses a client without a Keylime certificate", True)

    r = agent_get("/version")
    body = r.json()
    check("GET /version answers with the agent's API versions", r.status_code == 200 and API in body["results"]["supported_versions"], r.text)
    r = agent_get(f"/v{API}/agent/info")
    check("GET /agent/info names the agent and its algorithms",
          r.status_code == 200 and r.json()["results"].get("agent_uuid") == UUID and r.json()["results"].get("tpm_sign_alg") == "rsassa", r.text)
    for path, status, words in [
        (f"/v{API}/quotes/identity?nonce=bad!nonce", 400, "nonce"),
        (f"/v{API}/quotes/identity", 400, "nonce"),
        (f"/v{API}/quotes/integrity?nonce=abc&mask=zz", 400, "mask"),
        (f"/v{API}/quotes/integrity?nonce=abc&mask=0x8000&partial=7", 400, "partial"),
        ("/v9.9/quotes/identity?nonce=abc", 400, "API version not supported"),
        (f"/v{API}/keys/verify?challenge=abc", 400, "not derived"),
        ("/v1/completions", 404, "Not Found"),
        ("/v1/models", 404, "Not Found"),
        ("/metrics", 404, "Not Found"),
        (f"/v{API}/no/such/thing", 404, "Not Found"),
    ]:
        r = agent_get(path)
        try:
            envelope = r.json()
            ok = r.status_code == status and envelope.get("code") == status and words in envelope.get("status", "") \
                and isinstance(envelope.get("results"), dict)
        except ValueError:
            ok = False
        check(f"GET {path} -> {status} in Keylime's envelope", ok, f"{r.status_code} {r.text[:200]}")
    for path, payload in [(f"/v{API}/keys/ukey", b"{not json"), (f"/v{API}/keys/vkey", b'{"encrypted_key": "%%%"}'),
                          (f"/v{API}/keys/ukey", b'{"encrypted_key": "AAAA", "auth_tag": "00"}'),
                          (f"/v{API}/notifications/revocation", b'{"msg": "not json"}'),
                          ("/v1/chat/completions", b'{"model": "x", "messages": []}')]:
        r = requests.post(agent + path, data=payload, cert=client_cert, verify=False, timeout=30,
                          headers={"Content-Type": "application/json"})
        ok = r.status_code in (400, 404) and r.json().get("code") == r.status_code
        check(f"POST {path} with a bad body -> {r.status_code} in Keylime's envelope, no crash", ok, r.text[:200])
    check("the node still answers after the malformed requests", node_get("/readyz")[0] == 200)

    # 4. The tenant adds the node with a policy pinning the model PCR to the signed model's value.
    policy = subprocess.run([BIN, "keylime-policy", "--profile", PROFILE, "--model", MODEL_DIR, "--signature", MODEL_SIG,
                             "--public-key", MODEL_KEY], capture_output=True, text=True, check=True).stdout.strip()
    check("securenode keylime-policy pins PCR 15", list(json.loads(policy).keys()) == ["15"], policy)
    print(f"      tpm_policy {policy}")
    payload = os.path.join(work, "payload.txt")
    with open(payload, "w") as f:
        f.write("delivered by keylime_tenant to " + UUID + "\n")
    tenant = subprocess.run([os.path.join(kbin, "keylime_tenant"), "-c", "add", "-t", "127.0.0.1", "-tp", str(agent_port),
                             "-u", UUID, "--tpm_policy", policy, "-f", payload, "--verify"],
                            env=env, capture_output=True, text=True, timeout=300)
    check("keylime_tenant -c add --tpm_policy ... --verify succeeds (identity quote, EK certificate, U/V, K verified)",
          tenant.returncode == 0, tenant.stdout[-3000:] + tenant.stderr[-3000:])

    def status():
        r = requests.get(f"https://127.0.0.1:{verifier_port}/v{API}/agents/{UUID}", cert=client_cert, verify=False, timeout=10)
        return r.json()["results"][UUID] if UUID in r.json().get("results", {}) else r.json()["results"]

    # 5. Attested, again and again.
    first = wait_for("the verifier to attest the node", lambda: (s := status())["attestation_count"] >= 2 and s, 90)
    check("Keylime's verifier reports the node attested (PASS)", first["attestation_status"] == "PASS", first)
    later = wait_for("more attestations", lambda: (s := status())["attestation_count"] >= first["attestation_count"] + 3 and s, 60)
    check(f"... again and again (attestation_count {first['attestation_count']} -> {later['attestation_count']}, still PASS)",
          later["attestation_status"] == "PASS", later)
    delivered = os.path.join(state, "keylime", "payload.zip")
    check("the tenant's payload arrived, decrypted with K = U xor V",
          os.path.exists(delivered) and open(delivered).read() == open(payload).read())
    status_code, answer = completion()
    check("an attested node serves completions", status_code == 200 and answer["choices"][0]["text"], answer)
    plain_text = answer["choices"][0]["text"] if status_code == 200 else None

    # A restart with the same model keeps the model PCR (and the agent key behind PCR 16): still attested.
    stop(node)
    node = start_node(config_a)
    count = status()["attestation_count"]
    after = wait_for("attestations after the restart", lambda: (s := status())["attestation_count"] >= count + 3 and s, 90)
    check("after a restart with the same model the node is still attested", after["attestation_status"] == "PASS", after)
    # The agent's keys are the TPM-sealed node keys (README "Node keys"): nothing private in the clear.
    files = [os.path.join(d, f) for d, _, fs in os.walk(state) if "swtpm" not in d.split(os.sep) for f in fs]
    check("the agent's keys are sealed node keys: keys/index.json, no agent-key.pem, no PRIVATE KEY in the state directory",
          os.path.exists(os.path.join(state, "keys", "index.json"))
          and not os.path.exists(os.path.join(state, "keylime", "agent-key.pem"))
          and not any(b"PRIVATE KEY" in open(f, "rb").read() for f in files),
          sorted(os.path.relpath(f, state) for f in files))

    # 6. A different model: another manifest (an extra file) signed by another (test-only) key.
    other = os.path.join(work, "other-model")
    shutil.copytree(MODEL_DIR, other)
    with open(os.path.join(other, "NOTICE-test-only.txt"), "w") as f:
        f.write("same weights, different signed model\n")
    key = os.path.join(work, "test-only-signing-key.pem")
    pub = os.path.join(work, "test-only-signing-key.pub.pem")
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key], check=True)
    subprocess.run(["openssl", "ec", "-in", key, "-pubout", "-out", pub], check=True, capture_output=True)
    other_sig = os.path.join(work, "other-model.sig")
    subprocess.run([BIN, "model", "sign", other, "--private-key", key, "--signature", other_sig], check=True, capture_output=True)
    stop(node)
    node = start_node(node_config(other, other_sig, pub, "node-b"), expect_ready=False)
    failed = wait_for("the verifier to report the failure", lambda: (s := status())["attestation_status"] == "FAIL" and s, 90)
    check("Keylime's verifier reports the node failed, on PCR 15", "15" in str(failed.get("last_event_id")), failed)
    ready = wait_for("the node to act on the revocation notice", lambda: (r := node_get("/readyz"))[0] == 503 and r, 60)
    reason = json.loads(ready[1]).get("reason", "")
    print(f"      verifier: last_event_id {failed.get('last_event_id')}; node /readyz: {reason}")
    check("/readyz answers 503 and says the Keylime verifier revoked the node",
          "revoked by the Keylime verifier" in reason and "15" in reason, reason)
    status_code, answer = completion()
    check("a revoked node refuses completions (503, fail closed)",
          status_code == 503 and "revoked" in answer.get("error", {}).get("message", ""), answer)
    metrics = node_get("/metrics")[1].decode()
    check("/metrics reports attestation_ready 0", "securenode_attestation_ready 0" in metrics)

    # 7. Revoke, kill -9, restart (with the allowed model): still revoked.
    os.killpg(node.pid, signal.SIGKILL)
    node.wait()
    check("the revocation is persisted in the state directory (revocation.json)",
          os.path.exists(os.path.join(state, "revocation.json")))
    node = start_node(config_a, expect_ready=False)
    code, body = node_get("/readyz")
    reason = json.loads(body or b"{}").get("reason", "")
    print(f"      after kill -9 and restart: /readyz {code}: {reason}")
    check("after kill -9 and a restart the node is still not ready (503) and says it was revoked",
          code == 503 and "revoked by the Keylime verifier" in reason and "securenode revocation clear" in reason, (code, reason))
    status_code, answer = completion()
    check("... and still refuses completions (503)",
          status_code == 503 and "revoked" in answer.get("error", {}).get("message", ""), answer)
    metrics = node_get("/metrics")[1].decode()
    check("... and /metrics reports attestation_ready 0", "securenode_attestation_ready 0" in metrics)
    stop(node)
    cleared = subprocess.run([BIN, "revocation", "clear", "--state-dir", state], capture_output=True, text=True)
    check("securenode revocation clear --state-dir clears it (operator)",
          cleared.returncode == 0 and "cleared" in cleared.stdout, cleared.stdout + cleared.stderr)
    node = start_node(config_a)

    # 8. A confidential model whose data key only Keylime releases (README "Confidential models"): the
    # node starts its agent, waits for the key (keylime_tenant -f), keeps it in memory only, then
    # decrypts, verifies, measures and serves; the answer equals the plaintext model's.
    stop(node)
    # A reboot first: the software TPM restarts on its state (same EK, same AK) with its PCRs reset, as
    # at boot. (PCR 15 still holds the history of steps 4-7, another model among them: the
    # --key-release policy rightly refuses such a node, which the verifier showed while this was written.)
    stop(dev_tpm)
    tcti_file = os.path.join(work, "tcti-after-reboot")
    with open(tcti_file, "wb") as out:
        dev_tpm = subprocess.Popen([BIN, "dev-tpm"], env=tpm_env, stdout=out,
                                   stderr=open(os.path.join(logs, "dev-tpm.log"), "ab"), start_new_session=True)
    processes.append(("dev-tpm", dev_tpm))
    tcti = wait_for("the software TPM after the reboot", lambda: open(tcti_file).read().strip(), 30)
    marker = os.path.join(work, "confidential-started")
    open(marker, "w").close()
    enc, model_key = os.path.join(work, "enc"), os.path.join(work, "model.key")
    subprocess.run([BIN, "model", "encrypt", MODEL_DIR, "--out", enc, "--key-out", model_key, "--signature", MODEL_SIG],
                   check=True, capture_output=True)
    subprocess.run([os.path.join(kbin, "keylime_tenant"), "-c", "delete", "-u", UUID], env=env, capture_output=True, timeout=120)
    # The node is provisioned again for its confidential model: its registrar entry too. Keylime 7.14.3's
    # registrar counts every re-registration that sends an EK as a new one (RegistrarAgent.update records
    # each given field as a change, equal or not: regcount 6 after the 6 starts above, same EK and AK), and
    # its tenant refuses `-c add` for an agent with regcount > 1 ("more than one ek-ekcert").
    subprocess.run([os.path.join(kbin, "keylime_tenant"), "-c", "regdelete", "-u", UUID], env=env, capture_output=True, timeout=120)
    stored_payload = os.path.join(state, "keylime", "payload.zip")
    if os.path.exists(stored_payload):
        os.remove(stored_payload)
    config_enc = node_config(enc, os.path.join(enc, "model.sig"), MODEL_KEY, "node-enc",
                             model_extra="  key:\n    keylime: true\n    wait_seconds: 240\n")
    with open(node_log, "ab") as f:
        f.write(f"==== start {config_enc}\n".encode())
    registered_before = open(node_log, "rb").read().count(b"registered and activated")
    os.makedirs(os.path.join(work, "node-tmp"), exist_ok=True)
    node = start("node", [BIN, "serve", "--config", config_enc, "--tcti", tcti], env=dict(tpm_env, TMPDIR=os.path.join(work, "node-tmp")),
                 log_dir=logs)
    wait_for("the node to register and wait for its model key",
             lambda: open(node_log, "rb").read().count(b"registered and activated") > registered_before or node.poll() is not None, 90)
    check("the node with an encrypted model runs its Keylime agent before it has the key, and is not serving yet",
          node.poll() is None and node_get("/readyz")[0] == 0 and b"waiting up to" in open(node_log, "rb").read(), tail(node_log))
    key_policy = subprocess.run([BIN, "keylime-policy", "--profile", PROFILE, "--model", enc, "--signature", os.path.join(enc, "model.sig"),
                                 "--public-key", MODEL_KEY, "--key-release"], capture_output=True, text=True, check=True).stdout.strip()
    check("keylime-policy --key-release accepts PCR 15 unextended or holding this model",
          json.loads(key_policy)["15"][0] == "0" * 64 and json.loads(key_policy)["15"][1] == json.loads(policy)["15"][0], key_policy)
    tenant = subprocess.run([os.path.join(kbin, "keylime_tenant"), "-c", "add", "-t", "127.0.0.1", "-tp", str(agent_port),
                             "-u", UUID, "--tpm_policy", key_policy, "-f", model_key, "--verify"],
                            env=env, capture_output=True, text=True, timeout=300)
    check("keylime_tenant -c add -f MODEL_KEY --verify delivers the data key (K = U xor V, V only after a passing quote)",
          tenant.returncode == 0, tenant.stdout[-3000:] + tenant.stderr[-3000:])
    wait_for("the node to decrypt, verify, measure and serve", lambda: node_get("/readyz")[0] == 200 or node.poll() is not None, 180)
    check("the node serves the confidential model once Keylime released its key", node_get("/readyz")[0] == 200, tail(node_log))
    status_code, answer = completion()
    check("greedy output of the decrypted model equals the plaintext model's",
          status_code == 200 and plain_text is not None and answer["choices"][0]["text"] == plain_text, (answer, plain_text))
    count = status()["attestation_count"]
    after = wait_for("attestations of the confidential node", lambda: (s := status())["attestation_count"] >= count + 3 and s, 90)
    check("the verifier keeps attesting the node after it measured the model (PASS)", after["attestation_status"] == "PASS", after)
    check("the payload (the data key) was kept in memory: no payload.zip in the state directory", not os.path.exists(stored_payload))
    stop(node)
    for label, args in [("the state directory, the logs and the node's TMPDIR", [state, logs, os.path.join(work, "node-tmp")]),
                        ("files that appeared in /tmp meanwhile", ["--newer", marker, "--exclude", work, "/tmp"])]:
        leaks = subprocess.run([sys.executable, os.path.join(REPO, "Tests", "confidential", "no_leaks.py"),
                                "--model", os.path.join(MODEL_DIR, "SmolLM2-135M-Instruct.Q4_1.gguf"), "--key", model_key] + args,
                               capture_output=True, text=True)
        check(f"no GGUF magic, model bytes or data key in {label}", leaks.returncode == 0, leaks.stdout[-2000:] + leaks.stderr[-1000:])


if __name__ == "__main__":
    sys.exit(main())
