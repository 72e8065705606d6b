"""Times `securenode model verify` against `sha256sum` on the same file; see verify-throughput.sh."""
import argparse, json, os, platform, statistics, subprocess, time


def timed(cmd):
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main():
    p = argparse.ArgumentParser()
    for flag in ("--securenode", "--model-dir", "--model-file", "--signature", "--public-key", "--out"):
        p.add_argument(flag, required=True)
    p.add_argument("--runs", type=int, default=9)
    a = p.parse_args()
    size = os.path.getsize(a.model_file)
    ours_cmd = [a.securenode, "model", "verify", a.model_dir, "--signature", a.signature, "--public-key", a.public_key]
    peer_cmd = ["sha256sum", a.model_file]
    for cmd in (ours_cmd, peer_cmd):  # warm the page cache and the binaries
        timed(cmd)
    ours, peer = [], []
    for _ in range(a.runs):
        ours.append(timed(ours_cmd))
        peer.append(timed(peer_cmd))
    mo, mp = statistics.median(ours), statistics.median(peer)
    result = {
        "benchmark": "model verification throughput (whole command, warm page cache)",
        "file_bytes": size,
        "runs": a.runs,
        "cpu": platform.processor() or platform.machine(),
        "securenode_verify": {"median_s": mo, "MB_per_s": size / mo / 1e6, "samples_s": ours},
        "sha256sum": {"median_s": mp, "MB_per_s": size / mp / 1e6, "samples_s": peer},
        "speedup_vs_sha256sum": mp / mo,
        "date": time.strftime("%Y-%m-%d"),
    }
    with open(a.out + ".json", "w") as f:
        json.dump(result, f, indent=2)
    table = (
        f"| command ({size/1e6:.1f} MB model, median of {a.runs}) | time | throughput |\n|---|---|---|\n"
        f"| `securenode model verify` (signature + SHA-256) | {mo*1000:.0f} ms | {size/mo/1e6:.0f} MB/s |\n"
        f"| `sha256sum` | {mp*1000:.0f} ms | {size/mp/1e6:.0f} MB/s |\n"
        f"| ratio | | **{mp/mo:.2f}x** sha256sum |\n"
    )
    with open(a.out + ".md", "w") as f:
        f.write(table)
    print(table)


if __name__ == "__main__":
    main()
