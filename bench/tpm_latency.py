"""TPM latency: securenode commands against tpm2-tools on the same TPM; see tpm-latency.sh."""
import argparse, base64, json, os, statistics, subprocess, time


def run(cmd, **kw):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)


def timed(steps):
    start = time.perf_counter()
    for cmd in steps:
        run(cmd)
    return time.perf_counter() - start


def pcr_blob(values):
    """tpm2-tools serialized PCR file for one SHA-256 bank."""
    idx = sorted(values)
    sel = bytearray(3)
    for i in idx:
        sel[i // 8] |= 1 << (i % 8)
    out = bytearray((1).to_bytes(4, "little") + (0x0B).to_bytes(2, "little") + bytes([3]) + sel + b"\0\0" + bytes(15 * 8))
    chunks = [idx[i:i + 8] for i in range(0, len(idx), 8)]
    out += len(chunks).to_bytes(4, "little")
    for chunk in chunks:
        out += len(chunk).to_bytes(4, "little")
        for slot in range(8):
            v = bytes.fromhex(values[chunk[slot]]) if slot < len(chunk) else b""
            out += len(v).to_bytes(2, "little") + v + bytes(64 - len(v))
    return bytes(out)


def main():
    p = argparse.ArgumentParser()
    for flag in ("--securenode", "--tcti", "--profile", "--work", "--model", "--signature", "--public-key", "--out"):
        p.add_argument(flag, required=True)
    p.add_argument("--runs", type=int, default=15)
    a = p.parse_args()
    w, sn, T, P = a.work, a.securenode, a.tcti, a.profile
    f = lambda name: os.path.join(w, name)
    nonce = "00112233445566778899aabbccddeeff"
    pcrs = "0,1,2,3,4,5,6,7,15"
    seal_pcrs = "sha256:0,2,4,7,15"

    # Node state: a measured model, an AK, evidence, and an enrollment-equivalent trust (profile copy).
    run([sn, "measure", "--tcti", T, "--profile", P, "--model", a.model, "--signature", a.signature, "--public-key", a.public_key])
    ev = subprocess.run([sn, "quote", "--tcti", T, "--profile", P, "--nonce", nonce], check=True, capture_output=True).stdout
    open(f("evidence.json"), "wb").write(ev)
    evidence = json.loads(ev)
    prof = json.load(open(P))
    prof["trustedAKs"] = [evidence["ak"]["name"]]
    json.dump(prof, open(f("profile.json"), "w"))
    open(f("q.msg"), "wb").write(base64.b64decode(evidence["quote"]["attest"]))
    open(f("q.sig"), "wb").write(base64.b64decode(evidence["quote"]["signature"]))
    open(f("ak.pem"), "w").write(evidence["ak"]["pem"])
    open(f("q.pcrs"), "wb").write(pcr_blob({int(k): v for k, v in evidence["pcrs"]["values"].items()}))
    open(f("secret"), "wb").write(os.urandom(32))
    tools_env = ["-T", T]

    cases = {
        "quote": (
            [[sn, "quote", "--tcti", T, "--profile", P, "--nonce", nonce]],
            [["tpm2_quote", "-c", "0x81010002", "-l", "sha256:" + pcrs, "-q", nonce, "-m", f("t.msg"), "-s", f("t.sig"),
              "-o", f("t.pcrs"), "-g", "sha256"] + tools_env],
        ),
        "verify": (
            [[sn, "verify", "--evidence", f("evidence.json"), "--nonce", nonce, "--profile", f("profile.json")]],
            [["tpm2_checkquote", "-u", f("ak.pem"), "-m", f("q.msg"), "-s", f("q.sig"), "-f", f("q.pcrs"), "-g", "sha256", "-q", nonce]],
        ),
        "seal": ([[sn, "seal", "--tcti", T, "--profile", P, "--in", f("secret"), "--out", f("sealed.json")]], None),
        "unseal": ([[sn, "unseal", "--tcti", T, "--profile", P, "--in", f("sealed.json"), "--out", f("unsealed")]], None),
    }
    # The peers are tpm2_quote and tpm2_checkquote; seal and unseal are reported alone.
    results = {}
    for name, (ours, peer) in cases.items():
        timed(ours)  # warm up, and create the files the next step reads
        if peer:
            timed(peer)
        o, q = [], []
        for _ in range(a.runs):
            if name == "seal" and os.path.exists(f("sealed.json")):
                os.remove(f("sealed.json"))
            o.append(timed(ours))
            if peer:
                q.append(timed(peer))
        results[name] = {"securenode_ms": statistics.median(o) * 1000,
                         "tpm2_tools_ms": statistics.median(q) * 1000 if q else None,
                         "samples_ms": {"securenode": [x * 1000 for x in o], "tpm2_tools": [x * 1000 for x in q]}}
    out = {"benchmark": "TPM operation latency, whole commands, swtpm on loopback", "runs": a.runs, "date": time.strftime("%Y-%m-%d"),
           "results": results}
    json.dump(out, open(a.out + ".json", "w"), indent=2)
    lines = [f"| operation (median of {a.runs}) | securenode | tpm2-tools | ratio (tools / ours) |", "|---|---|---|---|"]
    what = {"quote": "`quote` (full evidence) vs `tpm2_quote`", "verify": "`verify` (all checks) vs `tpm2_checkquote`",
            "seal": "`seal` (SRK, PCR policy, create)", "unseal": "`unseal` (SRK, load, PolicyPCR, unseal)"}
    for name, r in results.items():
        peer = r["tpm2_tools_ms"]
        lines.append(f"| {what[name]} | {r['securenode_ms']:.0f} ms | " + (f"{peer:.0f} ms | {peer / r['securenode_ms']:.2f}x |" if peer else "n/a | n/a |"))
    table = "\n".join(lines) + "\n"
    open(a.out + ".md", "w").write(table)
    print(table)


if __name__ == "__main__":
    main()
