"""bench/_bench.label and bench/summary.py: what a bench records is what the summary prints.

Both files are loaded by path (bench/ is not a package), so this runs under every import mode.
"""
import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name):
    path = BENCH / f"{name}.py"
    if not path.is_file():
        pytest.skip(f"{path} is not beside the tests")
    spec = importlib.util.spec_from_file_location(f"_rank_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _FakeBenchmark:
    def __init__(self):
        self.group = None
        self.extra_info = {}


def _entry(name, mean, bench):
    return {"name": name, "group": bench.group, "stats": {"mean": mean}, "extra_info": bench.extra_info}


def test_label_names_the_group_and_records_every_figure():
    label = _load("_bench").label
    b = _FakeBenchmark()
    label(b, "bm25-scifact-query-k100", 2, items=300, unit="queries", bytes_total=123, n_threads=2)
    assert b.group == "bm25-scifact-query-k100-t2"
    assert b.extra_info == {"threads": 2, "items": 300, "unit": "queries", "bytes_total": 123, "n_threads": 2}
    b = _FakeBenchmark()
    label(b, "maxsim-python-threads", items=10, flops=4e9)
    assert b.group == "maxsim-python-threads"  # no thread count, no suffix
    assert b.extra_info == {"items": 10, "unit": "docs", "flops": 4e9}


def test_summary_prints_rates_ratios_and_every_recorded_field(tmp_path, capsys):
    bench, summary = _load("_bench"), _load("summary")
    ours, theirs, other = _FakeBenchmark(), _FakeBenchmark(), _FakeBenchmark()
    bench.label(ours, "fuse-rrf", 2, items=1000, unit="queries", max_abs_diff_vs_anchor=0.0)
    bench.label(theirs, "fuse-rrf", 2, items=1000, unit="queries", first_call_s=1.5,
                bytes_per_shard=[1, 2, 3, 4, 5, 6, 7, 8])
    bench.label(other, "dense-scores", 1, flops=2e9)
    data = {"benchmarks": [_entry("test_ranx_fuse", 0.004, theirs), _entry("test_rank_fuse", 0.001, ours),
                           _entry("test_rank_dense", 0.5, other)]}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    summary.main(str(path))
    out = capsys.readouterr().out
    assert "[fuse-rrf-t2]" in out and "[dense-scores-t1]" in out
    assert "1,000,000 queries/s" in out and "250,000 queries/s" in out  # 1000 per 1 ms and per 4 ms
    assert "4.0 GFLOP/s" in out
    assert "test_rank_fuse is 4.00x faster" in out and "(reference)" in out
    for field in ("threads=2", "max_abs_diff_vs_anchor=0", "first_call_s=1.5", "threads=1",
                  "bytes_per_shard=[1, 2, 3, 4, 5, 6, ... (8 values)]"):
        assert field in out, field


def test_summary_reads_files_written_before_label():
    summary = _load("summary")
    old = {"name": "test_rank_bm25", "group": "bm25-t2", "stats": {"mean": 0.5},
           "extra_info": {"queries": 100, "n_threads": 2, "ours_load_s": 0.25}}
    lines = summary.summarize({"benchmarks": [old]})
    text = "\n".join(lines)
    assert "200 queries/s" in text and "n_threads=2" in text and "ours_load_s=0.25" in text
    assert "queries=" not in text  # the work of one call is the rate, not repeated as a field
