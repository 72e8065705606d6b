#!/usr/bin/env python3
"""Report of bench/accelerators.sh: modeled prefill and decode tokens/s per firmware profile.

Inputs: `securenode backends estimate --json` (the roofline estimates, computed in Swift by the
same code the ModeledBackend charges), `securenode backends list --json` (the device models with
their sources), the profiles (which backend each selects), and bench/results/inference.json (the
measured CPU engine) when present. Writes <out>.json, <out>.md and <out>.svg (drawn by hand, no
plotting library). Nothing here computes a modeled number: it selects, labels and draws.
"""
import argparse
import datetime
import glob
import json
import math
import os

SHAPES = [("SmolLM2-135M", "q4_1"), ("Llama-2-7B", "q4_1"), ("Llama-2-7B", "f16"), ("Llama-2-70B", "q4_1"), ("Llama-2-70B", "f16")]
SHAPE_LABEL = {("SmolLM2-135M", "q4_1"): "SmolLM2-135M Q4_1 (default model)", ("Llama-2-7B", "q4_1"): "Llama-2-7B Q4_1",
               ("Llama-2-7B", "f16"): "Llama-2-7B F16", ("Llama-2-70B", "q4_1"): "Llama-2-70B Q4_1", ("Llama-2-70B", "f16"): "Llama-2-70B F16"}
COLORS = {"cpu": "#7f7f7f", "bluefield-3": "#1f77b4", "bluefield-4": "#2ca02c", "vera": "#d62728"}


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def load_profiles(directory):
    out = []
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
        with open(path) as f:
            p = json.load(f)
        backend = p["backend"]
        kind = backend if isinstance(backend, str) else backend["kind"]
        out.append({"id": p["id"], "file": os.path.basename(path), "backend": kind})
    return out


def measured_cpu(path):
    """Median tokens/s of the securenode engine from bench/inference.sh, or None."""
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        r = json.load(f)
    m = r.get("metrics", {})

    def median(key):
        v = (m.get(key) or {}).get("securenode") or {}
        return v.get("median")

    lengths = sorted(r.get("promptLengths") or [])
    prefill_len = 512 if 512 in lengths else (max(lengths) if lengths else None)
    return {
        "source": "bench/results/inference.json",
        "date": r.get("date"),
        "threads": r.get("threads"),
        "cpu": (r.get("machine") or {}).get("cpuModel"),
        "decodeTokensPerSecond": median("decode"),
        "decodeTokens": r.get("decodeTokens"),
        "prefillTokens": prefill_len,
        "prefillTokensPerSecond": median(f"pp{prefill_len}") if prefill_len else None,
    }


def fmt_rate(v):
    if v is None:
        return "—"
    return f"{v:,.0f}" if v >= 100 else (f"{v:.1f}" if v >= 10 else f"{v:.2f}")


def fmt_bytes(v):
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if v >= scale:
            return f"{v / scale:.1f} {unit}"
    return f"{v:.0f} B"


def fmt_binary(v):
    for unit, scale in (("TiB", 2 ** 40), ("GiB", 2 ** 30), ("MiB", 2 ** 20)):
        if v >= scale:
            return f"{v / scale:.1f} {unit}".replace(".0 ", " ")
    return f"{v:.0f} B"


def fmt_seconds(v):
    return f"{v:.2f} s" if v >= 1 else (f"{v * 1e3:.1f} ms" if v >= 1e-3 else f"{v * 1e6:.0f} µs")


def share(breakdown, bound):
    total = breakdown["seconds"]
    return breakdown["byBound"].get(bound, 0) / total if total else 0


def bound_text(e, phase):
    b = e[phase + "Bound"]
    return f"{b} {share(e[phase], b) * 100:.0f}%"


def build(args):
    with open(args.estimates) as f:
        est = json.load(f)
    with open(args.backends) as f:
        backends = json.load(f)["backends"]
    profiles = load_profiles(args.profiles)
    cpu = measured_cpu(args.inference)
    by_key = {(e["backend"], e["shape"], e["format"], e["linkPolicy"]): e for e in est["estimates"]}

    rows = []
    for p in profiles:
        for shape, fmt in SHAPES:
            row = {"profile": p["id"], "profileFile": p["file"], "backend": p["backend"], "shape": shape, "format": fmt,
                   "label": SHAPE_LABEL[(shape, fmt)]}
            if p["backend"] == "cpu":
                row["kind"] = "measured"
                if cpu and shape == "SmolLM2-135M" and cpu["decodeTokensPerSecond"]:
                    row.update({"prefillTokensPerSecond": cpu["prefillTokensPerSecond"], "prefillTokens": cpu["prefillTokens"],
                                "decodeTokensPerSecond": cpu["decodeTokensPerSecond"], "note": f"measured ({cpu['source']}, {cpu['date']})"})
                else:
                    row["note"] = "not measured" + ("" if shape == "SmolLM2-135M" else " (no weights for this shape here)")
                rows.append(row)
                continue
            e = by_key.get((p["backend"], shape, fmt, "every-operation"))
            if e is None:
                raise SystemExit(f"no estimate for {p['backend']} {shape} {fmt}")
            ends = by_key.get((p["backend"], shape, fmt, "forward-pass-ends"))
            row.update({
                "kind": "modeled", "fits": e["fits"], "residentBytes": e["residentBytes"], "kvCacheBytes": e["kvCacheBytes"],
                "memoryCapacityBytes": e["memoryCapacityBytes"], "placement": e["placement"], "uploadSeconds": e["uploadSeconds"],
                "prefillTokens": e["prefillTokens"], "prefillTokensPerSecond": e["prefillTokensPerSecond"],
                "prefillBound": e["prefillBound"], "prefillBoundShare": share(e["prefill"], e["prefillBound"]),
                "decodeTokensPerSecond": e["decodeTokensPerSecond"], "decodeBound": e["decodeBound"],
                "decodeBoundShare": share(e["decode"], e["decodeBound"]),
                "prefill": e["prefill"], "decode": e["decode"],
            })
            if ends:
                row["wholePassOnDevice"] = {"prefillTokensPerSecond": ends["prefillTokensPerSecond"], "prefillBound": ends["prefillBound"],
                                            "decodeTokensPerSecond": ends["decodeTokensPerSecond"], "decodeBound": ends["decodeBound"]}
            rows.append(row)

    devices = {b["name"]: b["device"] for b in backends if b.get("device")}
    provenance = {}
    for name, d in devices.items():
        counts = {}
        for q in quantities(d):
            counts[q["basis"]] = counts.get(q["basis"], 0) + 1
        provenance[name] = {"status": d["status"], "bases": counts,
                            "assumed": [path for path, q in named_quantities(d) if q["basis"] == "assumed"]}
    return {
        "benchmark": "modeled accelerator speed per firmware profile (roofline upper bounds); cpu profiles measured",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": est["model"],
        "prompt": est["prompt"], "batch": est["batch"], "decodePosition": est["decodePosition"], "fitContext": est["fitContext"],
        "cpuMeasured": cpu,
        "profiles": profiles,
        "provenance": provenance,
        "rows": rows,
    }


def named_quantities(d):
    out = [("cores", d["cores"]), ("clock", d["clock"]), ("memoryBandwidth", d["memoryBandwidth"]), ("memoryCapacity", d["memoryCapacity"]),
           ("launchOverhead", d["launchOverhead"])]
    if d.get("threads"):
        out.append(("threads", d["threads"]))
    out += [(f"peak.{k}", v) for k, v in sorted(d["peak"].items())]
    if d.get("hostLink"):
        out += [("hostLink.bandwidth", d["hostLink"]["bandwidth"]), ("hostLink.latency", d["hostLink"]["latency"])]
    return out


def quantities(d):
    return [q for _, q in named_quantities(d)]


def markdown(res):
    lines = [
        "# Modeled accelerator speed",
        "",
        f"Prefill of a {res['prompt']}-token prompt (in the engine's passes of {res['batch']} rows) and one decoding step at position "
        f"{res['decodePosition']}, per firmware profile. Modeled rows come from the roofline of the profile's backend "
        "(`securenode backends estimate`): "
        f"`{res['model']}`, summed over the operations the engine submits. They are **upper bounds** (peak rates, no efficiency "
        "factor) from device numbers that are published, reported by the press, derived, or assumed (`securenode backends --json` "
        "gives each with its source). cpu rows are measured on this machine by `bench/inference.sh`.",
        "",
        f"- date: {res['date']}",
        f"- fits: resident weights plus an F16 KV cache of {res['fitContext']} positions against the device's memory",
        "- bound: what takes most of the modeled time (its share in parentheses): compute, memory (bandwidth), link (host link "
        "bytes and latency), overhead (2 µs launch per operation, assumed)",
        "- decode, whole pass on device: the same attached device if the whole forward pass ran there (only the hidden states "
        "in and the logits out cross PCIe); the main columns are the engine as it is, whose RMSNorm, RoPE and residual adds stay "
        "on the host, so every operation's activations cross the link",
        "",
        "| profile | backend | model | fits | prefill tok/s (bound) | decode tok/s (bound) | decode tok/s, whole pass on device | weights upload |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        if r["kind"] == "measured" and r["shape"] != "SmolLM2-135M":
            continue  # no weights for the Llama-2 shapes here: said once below the table
        if r["kind"] == "measured":
            pre = f"{fmt_rate(r.get('prefillTokensPerSecond'))} (measured, pp{r.get('prefillTokens')})" if r.get("decodeTokensPerSecond") else r["note"]
            dec = f"{fmt_rate(r.get('decodeTokensPerSecond'))} (measured)" if r.get("decodeTokensPerSecond") else r["note"]
            lines.append(f"| {r['profile']} | cpu (real) | {r['label']} | host RAM | {pre} | {dec} | — | — |")
            continue
        fits = "yes" if r["fits"] else f"**no**: {fmt_binary(r['residentBytes'] + r['kvCacheBytes'])} > {fmt_binary(r['memoryCapacityBytes'])}"
        pre = f"{fmt_rate(r['prefillTokensPerSecond'])} ({r['prefillBound']} {r['prefillBoundShare'] * 100:.0f}%)"
        dec = f"{fmt_rate(r['decodeTokensPerSecond'])} ({r['decodeBound']} {r['decodeBoundShare'] * 100:.0f}%)"
        whole = r.get("wholePassOnDevice")
        whole_text = f"{fmt_rate(whole['decodeTokensPerSecond'])} ({whole['decodeBound']})" if whole else "— (no link)"
        upload = fmt_seconds(r["uploadSeconds"]) if r["placement"] == "attached" else "— (in host memory)"
        if not r["fits"]:
            pre, dec = f"({pre})", f"({dec})"
        lines.append(f"| {r['profile']} | {r['backend']} (modeled) | {r['label']} | {fits} | {pre} | {dec} | {whole_text} | {upload} |")
    lines += ["", "Rows that do not fit show in parentheses what the roofline would give if the memory were there. "
              "cpu profiles are measured, and only on the default model: there are no Llama-2 weights here, so their 7B and 70B "
              "rows are \"not measured\" (they are in accelerators.json).", "",
              "## How much of each device model is sourced", "",
              "| backend | status | published | reported | derived | assumed (what) |", "|---|---|---|---|---|---|"]
    for name, p in res["provenance"].items():
        b = p["bases"]
        lines.append(f"| {name} | {p['status']} | {b.get('published', 0)} | {b.get('reported', 0)} | {b.get('derived', 0)} | "
                     f"{b.get('assumed', 0)} ({', '.join(p['assumed'])}) |")
    cpu = res.get("cpuMeasured")
    lines += ["", "cpu: " + (f"measured by bench/inference.sh on {cpu.get('cpu')}, {cpu.get('threads')} threads ({cpu.get('date')})."
                              if cpu and cpu.get("decodeTokensPerSecond") else
                              "not measured (bench/results/inference.json is absent: run bench/inference.sh)."), ""]
    return "\n".join(lines)


def svg_plot(res):
    """Two log-scale panels (prefill, decode): a group per model shape, a bar per profile."""
    profiles = []
    for r in sorted(res["rows"], key=lambda r: (r["backend"] != "cpu", r["profile"])):
        if (r["profile"], r["backend"]) not in profiles:
            profiles.append((r["profile"], r["backend"]))

    def drawn(shape):
        # cpu profiles have no Llama-2 weights here: their slots are left out of those groups.
        return [(pid, b) for pid, b in profiles if b != "cpu" or shape[0] == "SmolLM2-135M"]

    W, panel_h, top, left, right = 980, 330, 70, 200, 190
    H = top + 2 * panel_h + 90
    groups = SHAPES
    values = [r.get(k) for r in res["rows"] for k in ("prefillTokensPerSecond", "decodeTokensPerSecond") if r.get(k)]
    lo = 10 ** math.floor(math.log10(min(values))) if values else 0.1
    hi = 10 ** math.ceil(math.log10(max(values))) if values else 1e5
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif">',
           f'<rect width="{W}" height="{H}" fill="white"/>']

    def text(x, y, s, size=12, anchor="middle", extra=""):
        s = s.replace("&", "&amp;").replace("<", "&lt;")
        out.append(f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" {extra}>{s}</text>')

    text(W / 2, 24, f"Modeled tokens/s per profile (roofline upper bounds); cpu measured", 16, extra='font-weight="bold"')
    text(W / 2, 44, f"prefill: {res['prompt']}-token prompt, passes of {res['batch']}; decode: one step at position {res['decodePosition']}; "
         "log scale; pale bars do not fit the device's memory", 11, extra='fill="#444"')
    plot_w = W - left - right

    def x_of(v):
        return left + plot_w * (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))

    for p_index, (key, title) in enumerate((("prefillTokensPerSecond", "prefill tokens/s"), ("decodeTokensPerSecond", "decode tokens/s"))):
        y0 = top + p_index * panel_h
        text(left + plot_w / 2, y0 + 14, title, 13, extra='font-weight="bold"')
        gy0 = y0 + 24
        e = int(round(math.log10(lo)))
        while 10 ** e <= hi * 1.0001:
            x = x_of(10 ** e)
            out.append(f'<line x1="{x:.1f}" y1="{gy0}" x2="{x:.1f}" y2="{y0 + panel_h - 30}" stroke="#ddd"/>')
            text(x, y0 + panel_h - 16, f"{10 ** e:g}", 10)
            e += 1
        group_h = (panel_h - 60) / len(groups)
        for g, shape in enumerate(groups):
            gy = gy0 + g * group_h
            bar_h = (group_h - 8) / max(1, len(drawn(shape)))
            text(left - 8, gy + group_h / 2 + 4, SHAPE_LABEL[shape].replace(" (default model)", ""), 11, anchor="end")
            for i, (pid, backend) in enumerate(drawn(shape)):
                row = next((r for r in res["rows"] if r["profile"] == pid and (r["shape"], r["format"]) == shape), None)
                y = gy + 4 + i * bar_h
                v = row.get(key) if row else None
                if not v:
                    if backend == "cpu" and shape[0] != "SmolLM2-135M":
                        continue
                    text(left + 4, y + bar_h - 2, f"{pid}: not measured", 9, anchor="start", extra='fill="#999"')
                    continue
                fits = row.get("fits", True)
                color = COLORS.get(backend, "#9467bd")
                opacity = "1" if fits else "0.3"
                out.append(f'<rect x="{left}" y="{y:.1f}" width="{max(1, x_of(v) - left):.1f}" height="{bar_h - 1:.1f}" '
                           f'fill="{color}" fill-opacity="{opacity}"/>')
                bound = row.get(key.replace("TokensPerSecond", "Bound"), "measured")
                text(x_of(v) + 3, y + bar_h - 2, f"{fmt_rate(v)} ({bound}{'' if fits else ', does not fit'})", 9, anchor="start")
    ly, x = top + 2 * panel_h + 20, 20
    for pid, backend in profiles:
        label = f"{pid} ({backend}{', measured' if backend == 'cpu' else ', modeled'})"
        width = 16 + 6 * len(label) + 18
        if x + width > W - 10:
            ly, x = ly + 18, 20
        out.append(f'<rect x="{x}" y="{ly}" width="12" height="12" fill="{COLORS.get(backend, "#9467bd")}"/>')
        text(x + 16, ly + 10, label, 10, anchor="start")
        x += width
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    a = argparse.ArgumentParser(description=__doc__)
    a.add_argument("--estimates", required=True)
    a.add_argument("--backends", required=True)
    a.add_argument("--profiles", required=True)
    a.add_argument("--inference", required=True)
    a.add_argument("--out", required=True)
    args = a.parse_args()
    res = build(args)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    md = markdown(res)
    write_atomic(args.out + ".json", json.dumps(res, indent=2) + "\n")
    write_atomic(args.out + ".md", md)
    write_atomic(args.out + ".svg", svg_plot(res))
    print(md)


if __name__ == "__main__":
    main()
