"""The attested channel's cost: the same requests straight to the node (TLS, keep-alive) and through
`securenode proxy` (loopback HTTP, then the pinned, attested TLS connection, receipts verified),
interleaved so that both see the same machine. Reports medians of per-request latency and of
the time per streamed token, and the proxy's added latency. Run by bench/proxy.sh."""
import argparse
import json
import os
import ssl
import statistics
import time

try:
    import httpx
except ImportError:  # openai 3.x ships its HTTP client as httpx2
    import httpx2 as httpx

parser = argparse.ArgumentParser()
parser.add_argument("--node", required=True)
parser.add_argument("--proxy", required=True)
parser.add_argument("--api-key", required=True)
parser.add_argument("--runs", type=int, default=41)
parser.add_argument("--stream-tokens", type=int, default=64)
parser.add_argument("--out", required=True)
parser.add_argument("--binary", default="", help="the securenode binary measured (named in the report)")
args = parser.parse_args()

MODEL = "smollm2-135m-instruct"
headers = {"Authorization": "Bearer " + args.api_key}
# Direct: the client trusts the node's certificate as it is (no attestation): the baseline.
direct = httpx.Client(base_url=args.node, headers=headers, verify=False, timeout=120)
proxied = httpx.Client(base_url=args.proxy, headers=headers, timeout=120)


def once(client, kind):
    if kind == "models":
        t = time.perf_counter()
        r = client.get("/v1/models")
        assert r.status_code == 200, r.text
        return time.perf_counter() - t, None
    if kind == "completion":
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Say yes."}], "max_tokens": 1, "temperature": 0}
        t = time.perf_counter()
        r = client.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        return time.perf_counter() - t, None
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Count from one to one hundred in words."}],
            "max_tokens": args.stream_tokens, "temperature": 0, "stream": True}
    t = time.perf_counter()
    stamps = []
    with client.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: {") and '"content"' in line and '"receipt"' not in line:
                stamps.append(time.perf_counter())
            if "error" in line[:20]:
                raise AssertionError(line)
    total = time.perf_counter() - t
    per_token = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else None
    return total, per_token


results = {}
for kind in ["models", "completion", "stream"]:
    samples = {"direct": [], "proxy": []}
    tokens = {"direct": [], "proxy": []}
    for name, client in [("direct", direct), ("proxy", proxied)]:
        once(client, kind)  # warm: connections open (the proxy attests its first connection here)
    for i in range(args.runs):
        order = [("direct", direct), ("proxy", proxied)] if i % 2 == 0 else [("proxy", proxied), ("direct", direct)]
        for name, client in order:
            total, per_token = once(client, kind)
            samples[name].append(total)
            if per_token is not None:
                tokens[name].append(per_token)
    entry = {name: {"median_ms": statistics.median(v) * 1000, "p90_ms": sorted(v)[int(0.9 * (len(v) - 1))] * 1000} for name, v in samples.items()}
    entry["added_ms"] = entry["proxy"]["median_ms"] - entry["direct"]["median_ms"]
    if tokens["direct"] and tokens["proxy"]:
        entry["per_token_ms"] = {name: statistics.median(v) * 1000 for name, v in tokens.items()}
        entry["per_token_added_ms"] = entry["per_token_ms"]["proxy"] - entry["per_token_ms"]["direct"]
    results[kind] = entry
    print(kind, json.dumps(entry))

results["runs"] = args.runs
results["stream_tokens"] = args.stream_tokens
results["binary"] = args.binary
with open(args.out + ".json", "w") as f:
    json.dump(results, f, indent=2)
with open(args.out + ".md", "w") as f:
    f.write(f"| request (median of {args.runs}, interleaved) | direct (TLS) | through `securenode proxy` | added |\n|---|---|---|---|\n")
    labels = {"models": "`GET /v1/models` (forwarding only)", "completion": "chat completion, 1 token (receipt verified)",
              "stream": f"streamed chat completion, {args.stream_tokens} tokens (receipt verified at the end)"}
    for kind in ["models", "completion", "stream"]:
        e = results[kind]
        f.write(f"| {labels[kind]} | {e['direct']['median_ms']:.2f} ms | {e['proxy']['median_ms']:.2f} ms | {e['added_ms']:+.2f} ms |\n")
    s = results["stream"]
    if "per_token_ms" in s:
        f.write(f"| per streamed token (median gap between content events) | {s['per_token_ms']['direct']:.2f} ms | "
                f"{s['per_token_ms']['proxy']:.2f} ms | {s['per_token_added_ms']:+.3f} ms |\n")
    f.write(f"\nBinary: `{args.binary}`; the node and the proxy on the same 2-core machine, measured by bench/proxy.sh.\n")
