"""Print throughput, ratios and every recorded figure from a pytest-benchmark JSON file.

    python bench/summary.py results.json

For each group: each entry's mean time, its rate (items/s in the unit the bench recorded, e.g.
queries/s, and GFLOP/s when it recorded flops), its speed relative to the first `test_rank_*`
entry of the group, and then every other field of its ``extra_info`` as ``key=value`` (sizes,
accuracy against an anchor, first-call times...): nothing a bench recorded is dropped. The
fields are the ones `bench/_bench.py`'s ``label`` writes; files written before it (``docs`` or
``queries`` as the work of one call) are read too.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _bench import FLOPS, ITEMS, LEGACY_UNITS, RATE_KEYS, UNIT  # noqa: E402


def _format(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and len(value) > 6:
        return "[" + ", ".join(map(_format, value[:6])) + f", ... ({len(value)} values)]"
    if isinstance(value, list):
        return "[" + ", ".join(map(_format, value)) + "]"
    return str(value)


def rate(info):
    """(items, unit) of one call from an entry's extra_info, or None."""
    if ITEMS in info:
        return info[ITEMS], info.get(UNIT, "items")
    for unit in LEGACY_UNITS:
        if unit in info:
            return info[unit], unit
    return None


def describe(b, base):
    """The lines of one entry: timing, rates, ratio to `base`, then its other figures."""
    mean = b["stats"]["mean"]
    info = dict(b.get("extra_info") or {})
    parts = [f"{b['name']:<45} {mean * 1e3:9.2f} ms"]
    work = rate(info)
    used = set(RATE_KEYS)
    if work is not None:
        n, unit = work
        parts.append(f"{n / mean:12,.0f} {unit}/s")
        used.add(unit)
    if FLOPS in info:
        parts.append(f"{info[FLOPS] / mean / 1e9:7.1f} GFLOP/s")
    ratio = mean / base["stats"]["mean"]
    parts.append("(reference)" if b is base else f"{base['name']} is {ratio:.2f}x faster")
    lines = ["  " + "  ".join(parts)]
    rest = {k: v for k, v in info.items() if k not in used}
    if rest:
        lines.append("      " + "  ".join(f"{k}={_format(v)}" for k, v in rest.items()))
    return lines


def summarize(data):
    """The summary of a pytest-benchmark result (a parsed JSON object), as a list of lines."""
    groups = {}
    for b in data["benchmarks"]:
        groups.setdefault(b["group"] or "-", []).append(b)
    out = []
    for group, items in groups.items():
        out.append(f"\n[{group}]")
        base = next((b for b in items if b["name"].startswith("test_rank")), items[0])
        for b in items:
            out.extend(describe(b, base))
    return out


def main(path):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    print("\n".join(summarize(data)))


if __name__ == "__main__":
    main(sys.argv[1])
