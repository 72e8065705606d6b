"""Times decrypt + verify of the encrypted default model against peers; see bench/decrypt.sh."""
import argparse, json, os, platform, re, statistics, subprocess, sys, time


def timed(cmd, shell=False):
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, shell=shell,
                   executable="/bin/bash" if shell else None)
    return time.perf_counter() - start


def main():
    p = argparse.ArgumentParser()
    for flag in ("--securenode", "--encrypted", "--key", "--model-file", "--public-key", "--work", "--out"):
        p.add_argument(flag, required=True)
    p.add_argument("--runs", type=int, default=9)
    a = p.parse_args()
    size = os.path.getsize(a.model_file)
    key_hex = open(a.key, "rb").read().hex()
    ctr = os.path.join(a.work, "model.aes-256-ctr")
    iv = "00" * 16
    subprocess.run(["openssl", "enc", "-aes-256-ctr", "-K", key_hex, "-iv", iv, "-in", a.model_file, "-out", ctr], check=True)
    peer_script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "decrypt_peer.py")
    # The peer reads our format independently: its digest must be the plaintext's.
    expected = subprocess.run(["sha256sum", a.model_file], capture_output=True, text=True, check=True).stdout.split()[0]
    got = subprocess.run([sys.executable, peer_script, a.encrypted, a.key], capture_output=True, text=True, check=True).stdout.split()[0]
    assert got == expected, f"the Python peer decrypted to {got}, the plaintext is {expected}"
    commands = {
        "securenode": [a.securenode, "model", "verify", a.encrypted, "--signature", os.path.join(a.encrypted, "model.sig"),
                       "--public-key", a.public_key, "--key", a.key],
        "openssl_ctr_sha256sum": f"set -o pipefail; openssl enc -d -aes-256-ctr -K {key_hex} -iv {iv} -in {ctr} | sha256sum",
        "python_cryptography_aesgcm": [sys.executable, peer_script, a.encrypted, a.key],
    }
    for name, cmd in commands.items():  # warm the page cache and the binaries
        timed(cmd, shell=isinstance(cmd, str))
    samples = {name: [] for name in commands}
    for _ in range(a.runs):
        for name, cmd in commands.items():
            samples[name].append(timed(cmd, shell=isinstance(cmd, str)))
    speed = subprocess.run(["openssl", "speed", "-evp", "aes-256-gcm", "-bytes", "1048576", "-seconds", "3"],
                           capture_output=True, text=True).stdout
    match = re.search(r"aes-256-gcm\s+([0-9.]+)k", speed, re.IGNORECASE)
    gcm_bound = float(match.group(1)) * 1000 if match else None  # bytes/s
    medians = {name: statistics.median(v) for name, v in samples.items()}
    load = os.getloadavg()[0]
    result = {
        "benchmark": "decrypt + verify of the encrypted default model (whole commands, warm page cache, interleaved)",
        "file_bytes": size, "runs": a.runs, "cpu": platform.processor() or platform.machine(),
        "results": {name: {"median_s": medians[name], "MB_per_s": size / medians[name] / 1e6, "samples_s": samples[name]}
                    for name in commands},
        "openssl_speed_aes_256_gcm_1MiB_bytes_per_s": gcm_bound,
        "load_average_1min_after": load,
        "date": time.strftime("%Y-%m-%d"),
    }
    with open(a.out + ".json", "w") as f:
        json.dump(result, f, indent=2)
    ours = medians["securenode"]
    rows = [
        ("`securenode model verify --key` (signature, AES-256-GCM per 1 MiB chunk into private memory, SHA-256 of it)", "securenode"),
        ("`openssl enc -d -aes-256-ctr \\| sha256sum` (CTR: no authentication)", "openssl_ctr_sha256sum"),
        ("Python `cryptography` AESGCM + hashlib SHA-256, same format and chunks", "python_cryptography_aesgcm"),
    ]
    table = f"| command ({size/1e6:.1f} MB model, median of {a.runs}) | time | throughput | vs securenode |\n|---|---|---|---|\n"
    for label, name in rows:
        m = medians[name]
        table += f"| {label} | {m*1000:.0f} ms | {size/m/1e6:.0f} MB/s | {m/ours:.2f}x the time |\n"
    if gcm_bound:
        table += f"| bound: `openssl speed -evp aes-256-gcm -bytes 1048576` (AES-GCM alone, no hashing, no I/O) | {size/gcm_bound*1000:.0f} ms | {gcm_bound/1e6:.0f} MB/s | |\n"
    table += f"\n(2 cores, load average {load:.2f} after the runs: other work shared the machine; all commands are whole processes.)\n"
    with open(a.out + ".md", "w") as f:
        f.write(table)
    print(table)


if __name__ == "__main__":
    main()
