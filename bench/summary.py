"""Print throughput and ratios from a pytest-benchmark JSON file.

    python bench/summary.py results.json

For each group: mean time, items/s and GFLOP/s (when the bench recorded them), and each
entry's speed relative to the first `test_rank_*` entry of the group.
"""
import json
import sys
from collections import defaultdict


def main(path):
    with open(path) as f:
        data = json.load(f)
    groups = defaultdict(list)
    for b in data["benchmarks"]:
        groups[b["group"] or "-"].append(b)
    for group, items in groups.items():
        print(f"\n[{group}]")
        base = next((b for b in items if b["name"].startswith("test_rank")), items[0])
        for b in items:
            mean = b["stats"]["mean"]
            info = b.get("extra_info", {})
            parts = [f"{b['name']:<45} {mean * 1e3:9.2f} ms"]
            if "docs" in info:
                parts.append(f"{info['docs'] / mean:12,.0f} docs/s")
            if "flops" in info:
                parts.append(f"{info['flops'] / mean / 1e9:7.1f} GFLOP/s")
            ratio = mean / base["stats"]["mean"]
            parts.append("(reference)" if b is base else f"{base['name']} is {ratio:.2f}x faster")
            print("  " + "  ".join(parts))


if __name__ == "__main__":
    main(sys.argv[1])
