"""The `rank` command (also `python -m rank`).

    rank demo [--docs N] [--query-tokens LQ] [--dim D] [--min-tokens A] [--max-tokens B]
              [--top K] [--threads T] [--seed S]

`demo` generates a late-interaction workload (one query against N documents of random
length, L2-normalised token vectors), scores it with MaxSim and prints the top of the
ranking and the timings.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np


def _demo(args: argparse.Namespace) -> int:
    import rank
    from rank._validate import resolve_threads
    from rank_kernels.maxsim import isa

    rng = np.random.default_rng(args.seed)
    lengths = rng.integers(args.min_tokens, args.max_tokens + 1, size=args.docs)
    flat = rng.standard_normal((int(lengths.sum()), args.dim), dtype=np.float32)
    flat /= np.linalg.norm(flat, axis=1, keepdims=True)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    docs = [flat[offsets[i]:offsets[i + 1]] for i in range(args.docs)]
    query = rng.standard_normal((args.query_tokens, args.dim), dtype=np.float32)
    query /= np.linalg.norm(query, axis=1, keepdims=True)
    threads = resolve_threads(args.threads)

    print(f"rank-kernels {rank.__version__} demo: MaxSim late interaction ({isa()} kernels, {threads} threads)")
    print(f"  query {args.query_tokens} x {args.dim}, {args.docs} documents of "
          f"{args.min_tokens}-{args.max_tokens} tokens ({int(lengths.sum())} token vectors)")
    rank.rerank_maxsim(query, docs[:2], top_k=1, n_threads=threads)  # warm up
    best = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        idx, scores = rank.rerank_maxsim(query, docs, top_k=args.top, n_threads=threads)
        best = min(best, time.perf_counter() - t0)
    flops = 2.0 * args.query_tokens * args.dim * lengths.sum()
    print(f"\n  rank  doc   tokens  score")
    for r, (i, s) in enumerate(zip(idx, scores), 1):
        print(f"  {r:>4}  {i:>4}  {lengths[i]:>6}  {s:.4f}")
    print(f"\n  scored {args.docs} documents in {best * 1e3:.1f} ms (best of {args.repeat}): "
          f"{args.docs / best:,.0f} docs/s, {flops / best / 1e9:.1f} GFLOP/s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `rank` command; returns the exit code."""
    parser = argparse.ArgumentParser(prog="rank", description="Fast ranking primitives.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="score a generated late-interaction workload and print the ranking")
    demo.add_argument("--docs", type=int, default=2000, help="number of documents (default 2000)")
    demo.add_argument("--query-tokens", type=int, default=32, help="query tokens (default 32)")
    demo.add_argument("--dim", type=int, default=128, help="token vector dimension (default 128)")
    demo.add_argument("--min-tokens", type=int, default=128, help="shortest document (default 128)")
    demo.add_argument("--max-tokens", type=int, default=512, help="longest document (default 512)")
    demo.add_argument("--top", type=int, default=10, help="documents to print (default 10)")
    demo.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    demo.add_argument("--repeat", type=int, default=5, help="timed repetitions (default 5)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        for name in ("docs", "query_tokens", "dim", "min_tokens", "top", "repeat"):
            if getattr(args, name) < 1:
                parser.error(f"--{name.replace('_', '-')} must be at least 1")
        if args.max_tokens < args.min_tokens:
            parser.error("--max-tokens must be at least --min-tokens")
        if args.threads is not None and args.threads < 1:
            parser.error("--threads must be at least 1")
        return _demo(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
