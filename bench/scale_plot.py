"""Tokens/s against model size for both engines, from every bench/scale.sh run kept in bench/results
(scale*.json: raw runs, medians taken here): decode (tg128) and prompt processing (pp512), both axes
log scale, one marker shape per run file, one colour per engine; lines join one engine's models
within one run. Writes bench/results/scale-tokens-per-second.svg (plain SVG, no plotting library).

    python3 bench/scale_plot.py [--results bench/results] [--out bench/results/scale-tokens-per-second.svg]
"""
import argparse, glob, json, math, os, statistics, sys
from xml.sax.saxutils import escape

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from inference_bench import COLORS, ENGINES, write_atomic  # noqa: E402
from scale_bench import med  # noqa: E402

MARKERS = ("circle", "square", "triangle", "diamond", "cross")


def load_runs(results_dir):
    """[(file name, results)] for every scale*.json that holds runs, oldest first."""
    runs = []
    for path in sorted(glob.glob(os.path.join(results_dir, "scale*.json"))):
        try:
            data = json.load(open(path))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("models"):
            runs.append((os.path.basename(path), data))
    return sorted(runs, key=lambda r: r[1].get("date", ""))


def points(data, key, n=None):
    """{engine: [(GB, tokens/s, model name)]} for one run and one metric."""
    out = {e: [] for e in ENGINES}
    for name, m in data["models"].items():
        for e in ENGINES:
            v = med(m["runs"].get(e, []), key, n)
            if v:
                out[e].append((m["bytes"] / 1e9, v, name))
    for e in out:
        out[e].sort()
    return out


def log_ticks(lo, hi):
    """1-2-5 ticks covering [lo, hi]."""
    ticks = []
    e = math.floor(math.log10(lo))
    while 10 ** e <= hi * 10:
        for m in (1, 2, 5):
            v = m * 10 ** e
            if lo <= v <= hi:
                ticks.append(v)
        e += 1
    return ticks


def fmt(v):
    return f"{v:g}" if v >= 1 else f"{v:.2g}"


def marker(shape, x, y, color, r=5):
    if shape == "circle":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{color}"/>'
    if shape == "square":
        return f'<rect x="{x - r:.1f}" y="{y - r:.1f}" width="{2 * r}" height="{2 * r}" fill="{color}"/>'
    if shape == "triangle":
        return f'<polygon points="{x:.1f},{y - r - 1:.1f} {x - r - 1:.1f},{y + r:.1f} {x + r + 1:.1f},{y + r:.1f}" fill="{color}"/>'
    if shape == "diamond":
        return f'<polygon points="{x:.1f},{y - r - 1:.1f} {x - r - 1:.1f},{y:.1f} {x:.1f},{y + r + 1:.1f} {x + r + 1:.1f},{y:.1f}" fill="{color}"/>'
    return (f'<line x1="{x - r:.1f}" y1="{y - r:.1f}" x2="{x + r:.1f}" y2="{y + r:.1f}" stroke="{color}" stroke-width="2.5"/>'
            f'<line x1="{x - r:.1f}" y1="{y + r:.1f}" x2="{x + r:.1f}" y2="{y - r:.1f}" stroke="{color}" stroke-width="2.5"/>')


def svg(runs):
    W, H = 920, 470 + 18 * len(runs)
    top, bottom = 70, 370
    panels = [("decode tg128, tokens/s", "decode", None, (90, 430)), ("prompt processing pp512, tokens/s", "pp", 512, (540, 880))]
    el = []

    def text(x, y, s, size=12, anchor="middle", weight="normal", extra=""):
        el.append(f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" font-weight="{weight}" {extra}>{escape(s)}</text>')

    def line(x1, y1, x2, y2, stroke="#000", width=1, extra=""):
        el.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}" stroke-width="{width}" {extra}/>')

    text(W / 2, 24, "Tokens/s against model size: securenode vs llama.cpp (bench/scale.sh)", 16, weight="bold")
    text(W / 2, 44, "medians of each run's fresh processes; both axes log scale; machine shared (see each run's load average)", 12,
         extra='fill="#444"')
    every = [(name, data, points(data, key, n)) for name, data in runs for _, key, n, _ in panels]
    sizes = [p[0] for _, _, pts in every for e in ENGINES for p in pts[e]] or [0.1, 1]
    xlo, xhi = min(sizes) / 1.5, max(sizes) * 1.5
    for title, key, n, (x0, x1) in panels:
        values = [p[1] for name, data in runs for e, pts in points(data, key, n).items() for p in pts] or [1, 10]
        ylo, yhi = min(values) / 1.5, max(values) * 1.5
        xs = lambda v: x0 + (math.log(v) - math.log(xlo)) / (math.log(xhi) - math.log(xlo)) * (x1 - x0)
        ys = lambda v: bottom - (math.log(v) - math.log(ylo)) / (math.log(yhi) - math.log(ylo)) * (bottom - top)
        for v in log_ticks(ylo, yhi):
            line(x0, ys(v), x1, ys(v), "#ddd")
            line(x0 - 5, ys(v), x0, ys(v))
            text(x0 - 8, ys(v) + 4, fmt(v), 11, "end")
        for v in log_ticks(xlo, xhi):
            line(xs(v), top, xs(v), bottom, "#eee")
            line(xs(v), bottom, xs(v), bottom + 5)
            text(xs(v), bottom + 19, fmt(v), 11)
        line(x0, top, x0, bottom)
        line(x0, bottom, x1, bottom)
        el.append(f'<text x="{x0 - 50:.1f}" y="{(top + bottom) / 2:.1f}" font-size="12" text-anchor="middle" '
                  f'transform="rotate(-90 {x0 - 50:.1f} {(top + bottom) / 2:.1f})">{escape(title)}</text>')
        text((x0 + x1) / 2, bottom + 38, "model file size, GB (log scale)", 12)
        for i, (name, data) in enumerate(runs):
            shift = 1.035 ** (i - (len(runs) - 1) / 2)  # runs of the same model side by side
            for e, pts in points(data, key, n).items():
                coords = [(xs(gb * shift), ys(v)) for gb, v, _ in pts]
                if len(coords) > 1:
                    el.append(f'<polyline fill="none" stroke="{COLORS[e]}" stroke-width="1.5" stroke-opacity="0.6" points="'
                              + " ".join(f"{x:.1f},{y:.1f}" for x, y in coords) + '"/>')
                for (x, y), (gb, v, model) in zip(coords, pts):
                    el.append(f"<g><title>{escape(f'{name} {model} {e}: {v:.1f} tokens/s')}</title>"
                              + marker(MARKERS[i % len(MARKERS)], x, y, COLORS[e]) + "</g>")

    ly = H - 40 - 18 * len(runs)
    lx = 90
    for e in ENGINES:
        line(lx, ly, lx + 28, ly, COLORS[e], 2.5)
        text(lx + 36, ly + 4, e, 12, "start")
        lx += 150
    for i, (name, data) in enumerate(runs):
        y = ly + 22 + 18 * i
        el.append(marker(MARKERS[i % len(MARKERS)], 96, y - 4, "#555"))
        load = data.get("machine", {}).get("load1")
        models = ", ".join(data["models"])
        text(110, y, f"{name} ({data.get('date', '')[:16].replace('T', ' ')}, load {load:.1f}): {models}" if load is not None
             else f"{name}: {models}", 11, "start")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
            f'font-family="DejaVu Sans, Helvetica, Arial, sans-serif">\n'
            f'<rect width="{W}" height="{H}" fill="#fff"/>\n' + "\n".join(el) + "\n</svg>\n")


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--results", default=os.path.join(HERE, "results"))
    a.add_argument("--out", default=os.path.join(HERE, "results", "scale-tokens-per-second.svg"))
    args = a.parse_args()
    runs = load_runs(args.results)
    if not runs:
        sys.exit(f"no scale*.json with runs in {args.results}")
    write_atomic(args.out, svg(runs))
    print(f"wrote {args.out} ({len(runs)} runs)", file=sys.stderr)


if __name__ == "__main__":
    main()
