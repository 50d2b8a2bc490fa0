#!/usr/bin/env python3
"""The table of benches/side-by-side.sh: medians over the rounds of each measurement, for
postfix-mta-sts-resolver ("theirs") and `mta-sts daemon` ("ours"), and the ratio ours/theirs.

usage: side-by-side-table.py results.jsonl ceiling.json machine.txt
"""

import json
import statistics
import sys


def load(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    runs = load(sys.argv[1])
    with open(sys.argv[2], encoding="utf-8") as f:
        ceiling = json.load(f)
    with open(sys.argv[3], encoding="utf-8") as f:
        machine = f.read().strip()

    def values(row, impl, key):
        return [r[key] for r in runs if r["row"] == row and r["impl"] == impl and key in r]

    def cell(vals, fmt):
        if not vals:
            return "n/a"
        med = statistics.median(vals)
        if len(vals) == 1:
            return fmt.format(med)
        return f"{fmt.format(med)} ({fmt.format(min(vals))}–{fmt.format(max(vals))})"

    lines = []
    rounds = max((r["round"] for r in runs), default=0)
    lines.append(f"Medians of {rounds} rounds (min–max in brackets); each round ran both "
                 "daemons fresh, one after the other for every row.")
    lines.append("")
    lines.append("| measurement | postfix-mta-sts-resolver | mta-sts daemon | ours/theirs "
                 "| no-op floor | ours/floor |")
    lines.append("|---|---|---|---|---|---|")

    # (label, row, key, format, scale, higher is better)
    table = [
        ("cached 1×1, queries/s", "cached-1x1", "qps", "{:,.0f}", 1, True),
        ("cached 1×1, p99 latency (µs)", "cached-1x1", "request_p99_us", "{:,.0f}", 1, False),
        ("cached 64×1, queries/s", "cached-64x1", "qps", "{:,.0f}", 1, True),
        ("cached 64×1, p50 latency (µs)", "cached-64x1", "request_p50_us", "{:,.0f}", 1, False),
        ("cached 64×1, p99 latency (µs)", "cached-64x1", "request_p99_us", "{:,.0f}", 1, False),
        ("cached 64×16, queries/s", "cached-64x16", "qps", "{:,.0f}", 1, True),
        ("cached 64×16, p99 batch latency (µs)", "cached-64x16", "batch_p99_us", "{:,.0f}", 1,
         False),
        ("cold 1,000 domains at 64, lookups/s", "cold-1000", "qps", "{:,.0f}", 1, True),
        ("cold 1,000 domains at 64, p99 latency (ms)", "cold-1000", "request_p99_us", "{:,.1f}",
         1e-3, False),
        ("3,000 first lookups at 64, lookups/s", "warm-3000", "qps", "{:,.0f}", 1, True),
        ("3,000 first lookups one at a time, lookups/s", "serial-3000", "qps", "{:,.0f}", 1,
         True),
        ("3,000 first lookups one at a time, p50 latency (ms)", "serial-3000",
         "request_p50_us", "{:,.2f}", 1e-3, False),
        ("RSS with 3,000 cached policies (MiB), fetched 64 at a time", "rss-warm-3000", "rss_kib",
         "{:,.1f}", 1 / 1024, False),
        ("RSS with 3,000 cached policies (MiB), fetched one at a time", "rss-serial-3000",
         "rss_kib", "{:,.1f}", 1 / 1024, False),
    ]
    def ratio(a, b):
        if a and b and statistics.median(b) > 0:
            return f"{statistics.median(a) / statistics.median(b):.2f}×"
        return ""

    for label, row, key, fmt, scale, _higher in table:
        theirs = [v * scale for v in values(row, "theirs", key)]
        ours = [v * scale for v in values(row, "ours", key)]
        floor = [v * scale for v in values(row, "floor", key)]
        lines.append(f"| {label} | {cell(theirs, fmt)} | {cell(ours, fmt)} | "
                     f"{ratio(ours, theirs)} | {cell(floor, fmt) if floor else ''} | "
                     f"{ratio(ours, floor)} |")

    lines.append("")
    lines.append("CPU used during the runs, in cores (median CPU seconds per second of run): the "
                 "server / the load generator / the world.")
    lines.append("")
    lines.append("| run | postfix-mta-sts-resolver | mta-sts daemon | no-op floor |")
    lines.append("|---|---|---|---|")

    def cores(row, impl):
        rs = [r for r in runs if r["row"] == row and r["impl"] == impl and r.get("seconds")]
        if not rs:
            return ""
        parts = []
        for key in ["daemon_cpu_s", "generator_cpu_s", "world_cpu_s"]:
            vals = [r[key] / r["seconds"] for r in rs if r.get(key) is not None]
            parts.append(f"{statistics.median(vals):.2f}" if vals else "?")
        return " / ".join(parts)

    for row in ["cached-1x1", "cached-64x1", "cached-64x16", "cold-1000", "warm-3000",
                "serial-3000"]:
        lines.append(f"| {row} | {cores(row, 'theirs')} | {cores(row, 'ours')} | "
                     f"{cores(row, 'floor')} |")

    wrong = sum(r.get("wrong", 0) for r in runs)
    errors = sum(r.get("errors", 0) for r in runs)
    answered = sum(r.get("answered", 0) for r in runs)
    lines.append("")
    lines.append(f"Every reply was checked: {answered:,} answered, {wrong} wrong, {errors} errors.")
    lines.append("")
    lines.append(f"World ceiling (same world, same addresses, {ceiling['client_threads']} client "
                 f"threads, before the daemons started): DNS over UDP "
                 f"{ceiling['dns_udp_qps']:,.0f} queries/s, HTTPS "
                 f"{ceiling['https_fetches_per_s']:,.0f} policy fetches/s (new TLS connection "
                 "each).")
    lines.append("")
    lines.append("```text")
    lines.append(machine)
    lines.append("```")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
