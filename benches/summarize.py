#!/usr/bin/env python3
"""Turns benches/compare.sh's results.jsonl into Markdown tables (summary.md) and a plot of
throughput against concurrency (concurrency.svg), both in the results folder.

Every figure is the median over the runs; the runs are listed beside it so the spread
shows. Ratios are graven's median over the peer's median.

    python3 benches/summarize.py target/compare
"""

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

TARGETS = ["graven", "graven-indexes", "graven-postgres", "redb", "postgres", "postgres-no-chain"]
LABELS = {
    "graven": "graven (gRPC)",
    "graven-indexes": "graven, the table with 2 indexes (gRPC)",
    "graven-postgres": "graven on PostgreSQL (gRPC)",
    "redb": "raw redb floor",
    "postgres": "PostgreSQL + hash chain",
    "postgres-no-chain": "PostgreSQL audit table, no chain",
}
WORKLOADS = {
    "w1": "W1: 1 client, 1-document insert transactions",
    "w2": "W2: 64 clients, 1-document insert transactions",
    "w3": "W3: 8 clients, 100 documents of 1 KiB per transaction",
    "w4": "W4: 32 clients, updates with expected version on 100 hot documents",
    "w5": "W5: 32 clients, reads (graven: with an inclusion proof) on a preloaded table",
    "w6": "W6: 32 clients, indexed equality lookups on the preloaded table (PostgreSQL: btree expression index on the JSONB field)",
    "w7": "W7: 32 clients, indexed range queries of 100 documents on the preloaded table",
}


def median(values):
    return statistics.median(values) if values else float("nan")


def fmt(x, unit=""):
    if x != x:  # NaN
        return "–"
    if unit == "ms":
        return f"{x:.3f}"
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.2f}"


def runs_text(values, unit=""):
    return ", ".join(fmt(v, unit) for v in values)


def load(folder):
    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines() if line.strip()]
    main = defaultdict(list)
    sweep = defaultdict(list)
    audit = []
    for r in rows:
        if r["phase"] == "audit":
            audit.append(r)
            continue
        rep = r["report"]
        key = (rep["workload"], rep["target"], rep["clients"])
        (main if r["phase"] == "main" else sweep)[key].append(rep)
    return main, sweep, audit


def workload_table(w, main):
    out = [f"### {WORKLOADS[w]}", ""]
    present = [(t, reps) for t in TARGETS for (wl, tt, _), reps in main.items() if wl == w and tt == t]
    if not present:
        return []
    metric = "revisions_per_sec" if w == "w3" else "throughput"
    unit = {"w3": "revisions/s", "w5": "reads/s", "w6": "queries/s", "w7": "queries/s"}.get(w, "tx/s")
    graven = next((reps for t, reps in present if t == "graven"), None)
    g_thr = median([r[metric] for r in graven]) if graven else float("nan")
    g_p50 = median([r["p50_ms"] for r in graven]) if graven else float("nan")
    out.append(f"| target | {unit} (median; runs) | p50 ms | p99 ms | errors | graven ÷ target, {unit} | target p50 ÷ graven p50 |")
    out.append("|---|---:|---:|---:|---:|---:|---:|")
    for t, reps in present:
        thr = [r[metric] for r in reps]
        p50 = median([r["p50_ms"] for r in reps])
        p99 = median([r["p99_ms"] for r in reps])
        errors = sum(r["errors"] for r in reps)
        extra = ""
        if w == "w4":
            committed = sum(r.get("committed", 0) for r in reps)
            aborted = sum(r.get("aborted", 0) for r in reps)
            extra = f" ({100 * aborted / max(1, committed + aborted):.0f}% aborted)"
        ratio = "" if t == "graven" else fmt(g_thr / median(thr))
        lat = "" if t == "graven" else fmt(p50 / g_p50)
        name = f"**{LABELS[t]}**" if t == "graven" else LABELS[t]
        out.append(
            f"| {name} | {fmt(median(thr))} ({runs_text(thr)}){extra} | {fmt(p50, 'ms')} | {fmt(p99, 'ms')} | {errors} | {ratio} | {lat} |"
        )
    out.append("")
    return out


def sweep_table(sweep):
    clients = sorted({c for (_, _, c) in sweep})
    targets = [t for t in TARGETS if any(tt == t for (_, tt, _) in sweep)]
    out = ["### W2 throughput against concurrency (tx/s, median; p50 ms in brackets)", ""]
    out.append("| clients | " + " | ".join(LABELS[t] for t in targets) + " | graven ÷ PostgreSQL |")
    out.append("|---:|" + "---:|" * len(targets) + "---:|")
    series = {t: [] for t in targets}
    for c in clients:
        cells = []
        for t in targets:
            reps = sweep.get(("w2", t, c), [])
            thr = median([r["throughput"] for r in reps])
            p50 = median([r["p50_ms"] for r in reps])
            series[t].append((c, thr))
            cells.append(f"{fmt(thr)} ({fmt(p50, 'ms')})")
        g = dict(series.get("graven", [])).get(c, float("nan"))
        p = dict(series.get("postgres", [])).get(c, float("nan"))
        out.append(f"| {c} | " + " | ".join(cells) + f" | {fmt(g / p) if p == p and p else '–'} |")
    out.append("")
    return out, series


def index_build_table(main):
    builds = [
        (rep["target"], rep["index_build_docs"], rep["index_build_s"])
        for (_, _, _), reps in main.items()
        for rep in reps
        if rep.get("index_build_docs")
    ]
    if not builds:
        return []
    out = ["### Building an index on the preloaded table (W6's first run)", ""]
    out.append("| target | documents | seconds | documents/s |")
    out.append("|---|---:|---:|---:|")
    for t, docs, secs in builds:
        out.append(f"| {LABELS[t]} | {docs:,} | {secs:.1f} | {docs / secs:,.0f} |")
    out.append("")
    return out


def audit_table(audit):
    if not audit:
        return []
    a = median([r["audit_s"] for r in audit])
    s = median([r["sha256sum_s"] for r in audit])
    mb = audit[0]["bytes"] / 1e6
    out = ["### Audit of one export file", ""]
    out.append("| tool | seconds (median; runs) | MB/s | max RSS |")
    out.append("|---|---:|---:|---:|")
    out.append(
        f"| **graven-verify audit** | {a:.2f} ({', '.join(str(r['audit_s']) for r in audit)}) | {mb / a:.0f} | {median([r['audit_kb'] for r in audit]) / 1024:.1f} MB |"
    )
    out.append(
        f"| sha256sum | {s:.2f} ({', '.join(str(r['sha256sum_s']) for r in audit)}) | {mb / s:.0f} | {median([r['sha256sum_kb'] for r in audit]) / 1024:.1f} MB |"
    )
    out.append("")
    out.append(
        f"{audit[0]['revisions']:,} revisions, {mb:.1f} MB; audit ÷ sha256sum throughput: {s / a:.2f}."
    )
    out.append("")
    return out


def svg_plot(series, path):
    """A log2-x, linear-y line chart of throughput against clients, no dependencies."""
    w, h, left, right, top, bottom = 640, 400, 70, 190, 30, 50
    xs = sorted({c for pts in series.values() for c, _ in pts})
    ymax = max((y for pts in series.values() for _, y in pts if y == y), default=1.0)
    ymax = 10 ** len(str(int(ymax))) / 10
    while ymax < max((y for pts in series.values() for _, y in pts if y == y), default=1.0):
        ymax *= 2
    import math

    lx = [math.log2(x) for x in xs]
    x0, x1 = min(lx), max(lx) if len(lx) > 1 else min(lx) + 1

    def px(c):
        return left + (math.log2(c) - x0) / (x1 - x0) * (w - left - right)

    def py(y):
        return h - bottom - y / ymax * (h - top - bottom)

    colors = {"graven": "#1f77b4", "postgres": "#d62728", "postgres-no-chain": "#ff9896", "redb": "#7f7f7f"}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<text x="{left}" y="18" font-size="14">W2 insert transactions/s against concurrent clients</text>',
    ]
    for i in range(5):
        y = ymax * i / 4
        parts.append(f'<line x1="{left}" y1="{py(y):.1f}" x2="{w - right}" y2="{py(y):.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:,.0f}</text>')
    for c in xs:
        parts.append(f'<text x="{px(c):.1f}" y="{h - bottom + 18}" text-anchor="middle">{c}</text>')
    parts.append(f'<text x="{(left + w - right) / 2}" y="{h - 12}" text-anchor="middle">clients (log scale)</text>')
    parts.append(f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" stroke="black"/>')
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="black"/>')
    for i, (t, pts) in enumerate(series.items()):
        pts = [(c, y) for c, y in pts if y == y]
        color = colors.get(t, "black")
        d = " ".join(f"{px(c):.1f},{py(y):.1f}" for c, y in pts)
        parts.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="2"/>')
        for c, y in pts:
            parts.append(f'<circle cx="{px(c):.1f}" cy="{py(y):.1f}" r="3" fill="{color}"/>')
        ly = top + 20 + 20 * i
        parts.append(f'<line x1="{w - right + 15}" y1="{ly}" x2="{w - right + 35}" y2="{ly}" stroke="{color}" stroke-width="2"/>')
        parts.append(f'<text x="{w - right + 40}" y="{ly + 4}">{LABELS[t]}</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")


def main():
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "target/compare")
    main_runs, sweep, audit = load(folder)
    lines = ["## Results", ""]
    machine = folder / "machine.txt"
    if machine.exists():
        lines += ["```text", machine.read_text().rstrip(), "```", ""]
    for w in WORKLOADS:
        lines += workload_table(w, main_runs)
    if sweep:
        table, series = sweep_table(sweep)
        lines += table
        svg_plot(series, folder / "concurrency.svg")
        lines += [f"Plot: {folder / 'concurrency.svg'}", ""]
    lines += index_build_table(main_runs)
    lines += audit_table(audit)
    (folder / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
