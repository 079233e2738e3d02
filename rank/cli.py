"""The ``rank`` command (also ``python -m rank``): a thin layer over :mod:`rank.pipeline`.

    rank index CORPUS -o INDEX        build a BM25 index (BEIR jsonl, .txt, .tsv, .csv)
    rank index CORPUS --colbert MODEL_DIR -o INDEX
                                      build a ColBERTIndex (PLAID-style) with a ColBERT encoder
    rank index CORPUS --dense VECTORS.npy -o INDEX [--index-kind hnsw]
                                      a DenseIndex of precomputed document vectors (one row per
                                      document of CORPUS, which gives the ids)
    rank search INDEX QUERIES -o RUN  top-k documents per query, as a TREC run
    rank rerank RUN --corpus C --queries Q --model DIR -o RUN
                                      rerank a run with a cross-encoder or a ColBERT encoder
    rank fuse RUN RUN... -o RUN       fuse runs (rrf, combsum, ...)
    rank eval QRELS RUN...            evaluation table (ndcg@10, map, ...); --json
    rank check INDEX                  validate a saved index (structure and checksums)
    rank demo ["your question"]       BM25 over the standard library's documentation
    rank bench-maxsim                 time MaxSim on a generated late-interaction workload

Data go to stdout or to the ``-o`` file (written to a temporary name, then renamed into place);
progress and timings go to stderr (``--quiet`` silences them). A user error (a missing or
malformed file, a bad option) prints one line ``rank CMD: error: ...`` to stderr and exits
with status 2.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from rank.errors import InvalidValueError, RankError

__all__ = ["main"]

Run = dict[str, dict[str, float]]


class _UserError(Exception):
    """An error to report in one line (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the example epilogs as written; appends a default the help text does not state."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if ("default" not in text and action.default not in (None, False, argparse.SUPPRESS)
                and action.option_strings):
            text += " (default: %(default)s)"
        return text


def _log(args: argparse.Namespace, message: str) -> None:
    if not getattr(args, "quiet", False):
        print(message, file=sys.stderr, flush=True)


# --- output --------------------------------------------------------------------------------------

def _write_trec(run: Run, path: str | None, tag: str) -> int:
    """Write `run` in TREC format with :func:`rank.evaluate.write_run` (atomically) to `path`,
    or to stdout for None / '-'; returns the number of lines."""
    from rank.evaluate.io import write_run

    if any(c.isspace() for c in tag) or not tag:
        raise InvalidValueError(f"--run-name: must be a non-empty word without spaces, got {tag!r}")
    n = sum(len(docs) for docs in run.values())
    write_run(run, "-" if path is None else path, tag=tag)
    return n


# --- index ---------------------------------------------------------------------------------------

def _nbits_arg(value: str) -> int | float:
    """--nbits: a whole number stays an int (1, 2, 3, 4, 8), anything else a float (3.5); the
    index validates it."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 2 or 3.5, got {value!r}") from None
    return int(number) if number.is_integer() else number


def _colbert_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ColBERTIndex options given on the command line (the others keep the class defaults)."""
    return {name: getattr(args, name) for name in ("nbits", "n_centroids", "n_candidates", "nprobe")
            if getattr(args, name) is not None}


def _none_or(value: str) -> str | None:
    return None if value.lower() in ("none", "") else value


def _cli_tokenizer(args: argparse.Namespace) -> Any:
    """The Tokenizer of `rank index`: --language gives the defaults, --stemmer / --stopwords
    override them ('none' turns one off)."""
    from rank.retrieve import Tokenizer

    kw: dict[str, Any] = {"language": args.language}
    if args.stemmer is not None:
        kw["stemmer"] = _none_or(args.stemmer)
    if args.stopwords is not None:
        kw["stopwords"] = _none_or(args.stopwords)
    return Tokenizer(**kw)


def _check_index_target(path: str) -> None:
    """Refuse to replace anything but a previously saved index (saving replaces the target)."""
    from rank.retrieve._index import check_replaceable

    check_replaceable(path)


def _cmd_index_sharded(args: argparse.Namespace) -> int:
    """`rank index --shards N`: shards built by Ray tasks (rank.distributed, extra `ray`)."""
    from rank.distributed import ShardedBM25, init

    tokenizer = _cli_tokenizer(args)
    init(args.address, log_to_driver=False)
    t0 = time.perf_counter()
    index = ShardedBM25.build(args.corpus, args.output, args.shards, fmt=args.format, method=args.method,
                              k1=args.k1, b=args.b, delta=args.delta, tokenizer=tokenizer)
    t1 = time.perf_counter()
    _log(args, f"indexed {index.n_docs:,} documents into {index.n_shards} shards in {t1 - t0:.2f} s, "
               f"saved to {args.output}")
    return 0


def _cmd_index(args: argparse.Namespace) -> int:
    from rank._io_corpus import read_corpus
    from rank.retrieve import BM25

    if args.colbert is None:
        given = [f"--{name.replace('_', '-')}" for name in _colbert_options(args)]
        if given:
            raise InvalidValueError(f"{', '.join(given)}: options of a ColBERTIndex (--colbert MODEL_DIR)")
    if getattr(args, "shards", None) is not None:
        return _cmd_index_sharded(args)
    _check_index_target(args.output)
    if args.colbert is not None or args.dense is not None:
        return _cmd_index_vectors(args)
    tokenizer = _cli_tokenizer(args)
    bm25 = BM25(method=args.method, k1=args.k1, b=args.b, delta=args.delta, tokenizer=tokenizer)
    t0 = time.perf_counter()
    ids, texts = read_corpus(args.corpus, args.format, show_progress=not args.quiet)
    t1 = time.perf_counter()
    _log(args, f"read {len(ids):,} documents from {args.corpus} in {t1 - t0:.2f} s")
    bm25.index(texts, ids=ids, show_progress=not args.quiet)
    t2 = time.perf_counter()
    bm25.save(args.output)
    _log(args, f"indexed in {t2 - t1:.2f} s ({len(ids) / max(t2 - t1, 1e-9):,.0f} docs/s), saved to {args.output}")
    return 0


_DENSE_KIND = "rank-kernels dense index directory"


def _cmd_index_vectors(args: argparse.Namespace) -> int:
    """`rank index --colbert MODEL_DIR` / `rank index --dense VECTORS.npy`."""
    from rank._io_corpus import read_corpus

    if args.colbert is not None and args.dense is not None:
        raise InvalidValueError("--colbert and --dense: choose one")
    t0 = time.perf_counter()
    ids, texts = read_corpus(args.corpus, args.format, show_progress=not args.quiet)
    _log(args, f"read {len(ids):,} documents from {args.corpus} in {time.perf_counter() - t0:.2f} s")
    t1 = time.perf_counter()
    if args.colbert is not None:
        from rank.rerank import ColBERTEncoder
        from rank.retrieve import ColBERTIndex

        encoder = ColBERTEncoder(args.colbert, intra_op_threads=args.threads)
        docs = []
        step = 256
        for s in range(0, len(texts), step):
            docs.extend(encoder.encode_documents(texts[s:s + step]))
            if not args.quiet:
                print(f"\rencoded {min(s + step, len(texts)):,}/{len(texts):,}", end="", file=sys.stderr, flush=True)
        if not args.quiet:
            print(file=sys.stderr)
        index = ColBERTIndex(encoder.dim, **_colbert_options(args))
        index.add(docs, ids=ids, n_threads=args.threads, show_progress=not args.quiet)
        index.save(args.output)
        what = f"ColBERTIndex ({index.n_tokens:,} tokens, {index.nbytes / index.n_tokens:.1f} bytes per token)"
    else:
        from rank.retrieve.dense import DenseIndex

        if not Path(args.dense).is_file():
            raise FileNotFoundError(2, "No such vectors file", args.dense)
        try:
            vectors = np.load(args.dense, mmap_mode="r", allow_pickle=False)
        except (ValueError, EOFError) as e:
            raise _UserError(f"{args.dense}: not a .npy array file ({e})") from None
        if vectors.ndim != 2 or vectors.shape[0] != len(ids):
            raise InvalidValueError(f"--dense: expected an (n_documents={len(ids)}, dim) array, got shape {vectors.shape}")
        dense = DenseIndex(vectors.shape[1], metric=args.metric, index=args.index_kind)
        dense.add(np.asarray(vectors), show_progress=not args.quiet)
        from rank._atomic import atomic_dir

        with atomic_dir(args.output) as tmp:  # the target was checked above (_check_index_target)
            dense.save(os.path.join(tmp, "index.rkd"))
            with open(os.path.join(tmp, "ids.json"), "w", encoding="utf-8") as f:
                json.dump(ids, f)
            with open(os.path.join(tmp, "meta.json"), "w", encoding="utf-8") as f:
                json.dump({"kind": _DENSE_KIND, "format_version": 1, "n_docs": len(ids)}, f)
        what = f"DenseIndex ({args.index_kind}, {len(dense):,} vectors of dimension {dense.dim})"
    t2 = time.perf_counter()
    _log(args, f"built a {what} in {t2 - t1:.2f} s, saved to {args.output}")
    return 0


def _index_kind(path: str) -> str:
    """'dense', 'colbert' or 'bm25', from the index directory's meta.json."""
    try:
        meta = json.loads((Path(path) / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # the BM25 loader then names the damage
        return "bm25"
    kind = meta.get("kind") if isinstance(meta, dict) else None
    if kind == _DENSE_KIND:
        return "dense"
    if kind == "rank-kernels ColBERTIndex":
        return "colbert"
    return "bm25"


def _finish_search(args: argparse.Namespace, run: dict, n_queries: int, t1: float) -> int:
    """Write the run of a search command (``-o`` or stdout) and log its speed; exit status 0."""
    t2 = time.perf_counter()
    lines = _write_trec(run, args.output, args.run_name)
    _log(args, f"searched in {t2 - t1:.2f} s ({n_queries / max(t2 - t1, 1e-9):,.0f} queries/s), "
               f"{lines:,} results written to {args.output or 'stdout'}")
    return 0


def _search_vectors(args: argparse.Namespace, kind: str) -> int:
    """`rank search` over a dense or ColBERT index directory."""
    from rank._io_corpus import read_queries

    t0 = time.perf_counter()
    qids, texts = read_queries(args.queries, args.format)
    if kind == "colbert":
        from rank.pipeline import Pipeline
        from rank.rerank import ColBERTEncoder
        from rank.retrieve import ColBERTIndex

        if args.colbert is None:
            raise InvalidValueError(f"{args.index}: a ColBERTIndex; pass the encoder with --colbert MODEL_DIR")
        index = ColBERTIndex.load(args.index)
        encoder = ColBERTEncoder(args.colbert, intra_op_threads=args.threads)
        _log(args, f"loaded the index and {len(qids):,} queries in {time.perf_counter() - t0:.2f} s")
        t1 = time.perf_counter()
        run = Pipeline(index, encoder=encoder).run(dict(zip(qids, texts)), k=args.k, n_threads=args.threads,
                                                   show_progress=not args.quiet)
    else:
        from rank.retrieve.dense import DenseIndex

        if args.vectors is None:
            raise InvalidValueError(f"{args.index}: a dense index; pass the query vectors with --vectors Q.npy "
                                    "(one row per query of QUERIES)")
        dense = DenseIndex.load(Path(args.index) / "index.rkd")
        try:
            doc_ids = json.loads((Path(args.index) / "ids.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise _UserError(f"{args.index}/ids.json: unreadable ({type(e).__name__})") from None
        if not isinstance(doc_ids, list) or len(doc_ids) != len(dense):
            raise _UserError(f"{args.index}/ids.json: expected {len(dense)} document ids")
        try:
            q = np.load(args.vectors, allow_pickle=False)
        except (ValueError, EOFError) as e:
            raise _UserError(f"{args.vectors}: not a .npy array file ({e})") from None
        if q.ndim != 2 or q.shape[0] != len(qids):
            raise InvalidValueError(f"--vectors: expected an (n_queries={len(qids)}, dim) array, got shape {q.shape}")
        _log(args, f"loaded the index and {len(qids):,} queries in {time.perf_counter() - t0:.2f} s")
        t1 = time.perf_counter()
        idx, scores = dense.search(q, k=args.k, n_threads=args.threads)
        run = {qid: {str(doc_ids[i]): float(s) for i, s in zip(row_i, row_s) if i >= 0}
               for qid, row_i, row_s in zip(qids, idx.tolist(), scores.tolist())}
    return _finish_search(args, run, len(qids), t1)


# --- search --------------------------------------------------------------------------------------

def _cmd_check(args: argparse.Namespace) -> int:
    from rank.errors import CorruptFileError
    from rank.retrieve import BM25, SparseIndex
    from rank.retrieve._index import read_json

    if not Path(args.index).is_dir():
        raise FileNotFoundError(2, "No such index directory", args.index)
    t0 = time.perf_counter()
    try:
        meta = read_json(args.index, "meta")
        fmt = meta.get("format") if isinstance(meta, dict) else None
        cls: Any = {"rank-kernels.bm25": BM25, "rank-kernels.sparse": SparseIndex}.get(str(fmt))
        if cls is None:
            raise CorruptFileError(f"{args.index}: not a saved index of rank-kernels (format {fmt!r})")
        index = cls.load(args.index, mmap=True, verify=not args.quick)
    except CorruptFileError as e:
        print(f"rank check: {args.index}: CORRUPT: {_describe(e)}", file=sys.stderr)
        return 1
    arrays = meta.get("arrays") if isinstance(meta, dict) else None
    summed = isinstance(arrays, dict) and all(isinstance(v, dict) and "crc32" in v for v in arrays.values())
    what = ("structure" if args.quick else "structure and checksums" if summed
            else "structure; no checksums stored (saved by an older version: save it again to add them)")
    print(f"{args.index}: ok ({fmt}, {index.n_docs:,} documents, {index.n_terms:,} terms; {what} "
          f"verified in {time.perf_counter() - t0:.2f} s)")
    return 0


def _load_index(path: str, mmap: bool = True) -> Any:
    from rank.retrieve import BM25

    if not Path(path).exists():
        raise FileNotFoundError(2, "No such index", path)
    return BM25.load(path, mmap=mmap)


def _cmd_search_sharded(args: argparse.Namespace) -> int:
    """`rank search` on an index written by `rank index --shards N`: one Ray actor per shard."""
    from rank._io_corpus import read_queries
    from rank.distributed import ShardedBM25, init

    t0 = time.perf_counter()
    init(args.address, log_to_driver=False)
    index = ShardedBM25.load(args.index)
    qids, texts = read_queries(args.queries, args.format)
    t1 = time.perf_counter()
    _log(args, f"opened {index.n_shards} shards and read {len(qids):,} queries in {t1 - t0:.2f} s")
    with index:
        _, scores, ids = index.search(texts, k=args.k, return_ids=True)
    run = {q: dict(zip(row, map(float, sc))) for q, row, sc in zip(qids, ids, scores.tolist())}
    return _finish_search(args, run, len(qids), t1)


def _cmd_search(args: argparse.Namespace) -> int:
    from rank._io_corpus import read_queries
    from rank.pipeline import Pipeline

    if (Path(args.index) / "manifest.json").is_file():
        return _cmd_search_sharded(args)
    kind = _index_kind(args.index)
    if kind != "bm25":
        return _search_vectors(args, kind)
    t0 = time.perf_counter()
    bm25 = _load_index(args.index)
    qids, texts = read_queries(args.queries, args.format)
    t1 = time.perf_counter()
    _log(args, f"loaded the index and {len(qids):,} queries in {t1 - t0:.2f} s")
    run = Pipeline(bm25).run(dict(zip(qids, texts)), k=args.k, n_threads=args.threads,
                             show_progress=not args.quiet)
    return _finish_search(args, run, len(qids), t1)


# --- rerank --------------------------------------------------------------------------------------

def _read_run(path: str) -> Run:
    from rank.evaluate import read_run

    if not Path(path).is_file():
        raise FileNotFoundError(2, "No such run file", path)
    return read_run(path)


def _read_qrels(path: str) -> dict[str, dict[str, int]]:
    from rank.evaluate import read_qrels

    if not Path(path).is_file():
        raise FileNotFoundError(2, "No such qrels file", path)
    return read_qrels(path)


def model_kind(path: str | os.PathLike[str]) -> str:
    """``"colbert"`` or ``"cross-encoder"``: the kind of the exported model in directory `path`.

    Read from the ``"rank_kernels"`` section of its ``config.json`` (``{"kind": ...}``, written
    by the export functions); without one, a Hugging Face config whose architecture is a
    sequence classifier is a cross-encoder, and a config mentioning ColBERT is a ColBERT
    encoder. Raises FileNotFoundError for a missing directory, InvalidValueError when the
    directory holds no ONNX model or its kind cannot be told.
    """
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(2, "No such model directory", str(path))
    if not any(p.glob("*.onnx")) and not any(p.glob("onnx/*.onnx")):
        raise InvalidValueError(f"{path}: no ONNX model (model.onnx) in this directory; export one with "
                                f"rank.rerank.export_cross_encoder or export_colbert_encoder")
    from rank.errors import CorruptFileError
    from rank.onnx._export import read_config

    try:
        config, section = read_config(p)
    except CorruptFileError as e:
        raise InvalidValueError(f"unreadable model configuration: {e}") from None
    kind = str(section.get("kind", "")).lower() if section is not None else ""
    if "colbert" in kind or "late" in kind:
        return "colbert"
    if "cross" in kind:
        return "cross-encoder"
    archs = " ".join(map(str, config.get("architectures") or []))
    if "SequenceClassification" in archs:
        return "cross-encoder"
    if "colbert" in json.dumps(config).lower():
        return "colbert"
    raise InvalidValueError(f"{path}: cannot tell a cross-encoder from a ColBERT encoder (config.json has no "
                            f"'rank_kernels' section naming its kind)")


def load_reranker(path: str, *, threads: int | None = None, batch_size: int | None = None,
                  max_length: int | None = None) -> tuple[Any, str]:
    """Load the exported model in directory `path`: ``(model, kind)`` with kind from
    :func:`model_kind`. A ColBERT directory gives a ``ColBERTEncoder``, a cross-encoder
    directory a ``CrossEncoder`` (``max_length`` and ``threads`` go to ONNX Runtime;
    ``batch_size=None`` keeps the model class's default)."""
    kind = model_kind(path)
    if kind == "colbert":
        from rank.rerank import ColBERTEncoder

        kw: dict[str, Any] = {"intra_op_threads": threads}
        if batch_size is not None:
            kw["batch_size"] = batch_size
        if max_length is not None:
            kw["doc_maxlen"] = max_length
        return ColBERTEncoder.from_pretrained(str(path), **kw), kind
    from rank.rerank import CrossEncoder

    kw = {"intra_op_threads": threads}
    if batch_size is not None:
        kw["batch_size"] = batch_size
    if max_length is not None:
        kw["max_length"] = max_length
    return CrossEncoder.from_pretrained(str(path), **kw), kind


def _cmd_rerank(args: argparse.Namespace) -> int:
    from rank._io_corpus import read_corpus, read_queries
    from rank.pipeline import rerank_run

    t0 = time.perf_counter()
    run = _read_run(args.run)
    qids, qtexts = read_queries(args.queries, args.queries_format)
    ids, texts = read_corpus(args.corpus, args.corpus_format)
    model, kind = load_reranker(args.model, threads=args.threads, batch_size=args.batch_size,
                                max_length=args.max_length)
    t1 = time.perf_counter()
    _log(args, f"loaded a run of {len(run):,} queries, {len(qids):,} queries, {len(ids):,} documents "
               f"and a {kind} in {t1 - t0:.2f} s")
    queries = dict(zip(qids, qtexts))
    missing = [q for q in run if q not in queries]
    if missing:
        raise InvalidValueError(f"{args.run}: query {missing[0]!r} is not in {args.queries} "
                                f"({len(missing)} of {len(run)} run queries missing)")
    reranked = rerank_run(model, {q: queries[q] for q in run}, run, dict(zip(ids, texts)), depth=args.depth,
                          k=args.k, n_threads=args.threads, show_progress=not args.quiet)
    t2 = time.perf_counter()
    pairs = sum(min(len(d), args.depth) for d in run.values())
    lines = _write_trec(reranked, args.output, args.run_name)
    _log(args, f"reranked {pairs:,} pairs in {t2 - t1:.2f} s ({pairs / max(t2 - t1, 1e-9):,.0f} pairs/s), "
               f"{lines:,} results written to {args.output or 'stdout'}")
    return 0


# --- fuse ----------------------------------------------------------------------------------------

def _cmd_fuse(args: argparse.Namespace) -> int:
    from rank.fusion import fuse

    if len(args.runs) < 2:
        raise InvalidValueError("fuse needs at least two runs")
    runs = [_read_run(p) for p in args.runs]
    params: dict[str, Any] = {}
    for item in args.param or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidValueError(f"--param: expected NAME=VALUE (e.g. phi=0.8), got {item!r}")
        try:
            params[key.strip()] = int(value) if value.strip().lstrip("-").isdigit() else float(value)
        except ValueError:
            raise InvalidValueError(f"--param {key}: expected a number, got {value!r}") from None
    kw: dict[str, Any] = {"method": args.method, "norm": _none_or(args.norm or "none"), "k": args.rrf_k,
                          "params": params or None}
    if args.weights is not None:
        if len(args.weights) != len(runs):
            raise InvalidValueError(f"--weights: expected {len(runs)} weights, one per run, got {len(args.weights)}")
        kw["weights"] = args.weights
    if args.train_qrels is not None:
        kw["qrels"] = _read_qrels(args.train_qrels)
    t0 = time.perf_counter()
    fused = fuse(runs, n_threads=args.threads, **kw)
    t1 = time.perf_counter()
    if args.depth is not None:
        fused = {q: dict(sorted(d.items(), key=lambda t: -t[1])[:args.depth]) for q, d in fused.items()}
    lines = _write_trec(fused, args.output, args.run_name)
    _log(args, f"fused {len(runs)} runs ({args.method}) in {t1 - t0:.2f} s, {lines:,} results written "
               f"to {args.output or 'stdout'}")
    return 0


# --- eval ----------------------------------------------------------------------------------------

def _gains_arg(text: str) -> dict[int, float]:
    """--gains '1=3,2=9' as {1: 3.0, 2: 9.0}."""
    out: dict[int, float] = {}
    for part in text.split(","):
        level, sep, gain = part.partition("=")
        try:
            if not sep:
                raise ValueError
            out[int(level)] = float(gain)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected gains as 'grade=gain,...' (e.g. 1=3,2=9), got {text!r}") from None
    return out


def _cmd_eval(args: argparse.Namespace) -> int:
    from rank.evaluate import evaluate, format_trec_eval

    qrels = _read_qrels(args.qrels)
    fmt = "json" if args.json else args.format
    kw: dict[str, Any] = {"per_query": args.per_query, "relevance_level": args.relevance_level,
                          "gains": args.gains, "max_docs": args.max_docs, "complete": args.complete,
                          "n_threads": args.threads}
    if fmt == "trec_eval":
        for path in args.runs:
            print(format_trec_eval(qrels, _read_run(path), list(args.metrics), **kw), end="")
        return 0
    table: dict[str, Any] = {}
    for path in args.runs:
        table[path] = evaluate(qrels, _read_run(path), list(args.metrics), **kw)
    if fmt == "json":
        out = table if len(args.runs) > 1 else table[args.runs[0]]
        print(json.dumps(out, indent=2, sort_keys=False))
        return 0
    if args.per_query:
        for path, per in table.items():
            metrics = list(next(iter(per.values())))
            print(f"# {path}")
            _print_table([(q, [vals.get(m, float("nan")) for m in metrics]) for q, vals in per.items()],
                         "query", metrics)
        return 0
    metrics = list(table[args.runs[0]])
    _print_table([(p, [table[p][m] for m in metrics]) for p in args.runs], "run", metrics)
    return 0


def _print_table(rows: list[tuple[str, list[float]]], first: str, metrics: list[str]) -> None:
    width = max([len(first)] + [len(r[0]) for r in rows])
    cols = [max(len(m), 6) for m in metrics]
    print(f"{first:<{width}}  " + "  ".join(f"{m:>{c}}" for m, c in zip(metrics, cols)))
    for name, vals in rows:
        print(f"{name:<{width}}  " + "  ".join(f"{v:>{c}.4f}" for v, c in zip(vals, cols)))


# --- demo ----------------------------------------------------------------------------------------

def _snippet(text: str, width: int) -> str:
    lines = text.split("\n", 1)
    body = " ".join((lines[1] if len(lines) > 1 else lines[0]).split())
    return body if len(body) <= width else body[:width - 3].rstrip(" .,;:") + "..."


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _cmd_demo(args: argparse.Namespace) -> int:
    import rank
    from rank._demo_corpus import DEMO_QUERIES, stdlib_corpus
    from rank._validate import resolve_threads
    from rank.pipeline import Hit, Pipeline, rerank_run
    from rank.retrieve import BM25, Tokenizer

    threads = resolve_threads(args.threads)
    queries = list(args.queries) or list(DEMO_QUERIES)
    t0 = time.perf_counter()
    ids, texts = stdlib_corpus()
    stemmer = "english" if _has_module("Stemmer") else None
    t1 = time.perf_counter()
    bm25 = BM25(tokenizer=Tokenizer(stopwords="en", stemmer=stemmer)).index(texts, ids=ids, show_progress=False)
    t2 = time.perf_counter()
    print(f"rank-kernels {rank.__version__} demo: search the documentation of this Python's standard library")
    print(f"  {len(ids):,} docstrings ({sum(map(len, texts)) / 1e6:.1f} MB of text) collected in "
          f"{(t1 - t0) * 1e3:.0f} ms, BM25 index built in {(t2 - t1) * 1e3:.0f} ms "
          f"({'English stemming' if stemmer else 'no stemming: pip install PyStemmer to add it'})")

    reranker = None
    if args.colbert is not None:
        model, kind = load_reranker(args.colbert, threads=threads)
        if kind != "colbert":
            raise InvalidValueError(f"--colbert: {args.colbert} holds a cross-encoder, not a ColBERT encoder")
        reranker = model
    first = Pipeline(bm25)
    depth = max(args.depth, args.k) if reranker is not None else args.k
    first.search(queries[:1], k=depth, n_threads=threads)  # warm up (thread pool, caches)
    t3 = time.perf_counter()
    bm25_hits = first.search(queries, k=depth, n_threads=threads)
    t4 = time.perf_counter()
    # a document sharing no word with the query scores 0 (BM25 fills k with them): drop it
    results = [[h for h in hits if h.score > 0] for hits in bm25_hits]
    rerank_time = None
    if reranker is not None:
        run = {str(i): {h.id: h.score for h in hits} for i, hits in enumerate(results)}
        t5 = time.perf_counter()
        reranked = rerank_run(reranker, {str(i): q for i, q in enumerate(queries)}, run, dict(zip(ids, texts)),
                              depth=depth, k=args.k, n_threads=threads)
        rerank_time = time.perf_counter() - t5
        results = [[Hit(d, s) for d, s in reranked[str(i)].items()] for i in range(len(queries))]
    text_of = dict(zip(ids, texts))
    name_w = min(40, max([len(h.id) for hits in results for h in hits[:args.k]] + [10]))
    label = "MaxSim" if reranker is not None else "BM25"
    for q, hits in zip(queries, results):
        print(f"\n  {q}")
        if not hits:
            print("     (no document shares a word with this query)")
        for r, h in enumerate(hits[:args.k], 1):
            print(f"  {r:>3}  {h.score:7.3f}  {h.id:<{name_w}}  {_snippet(text_of[h.id], 60)}")
    print(f"\n  {label} ranking; BM25 answered {len(queries)} queries in {(t4 - t3) * 1e3:.2f} ms "
          f"({len(queries) / max(t4 - t3, 1e-9):,.0f} queries/s, {threads} thread{'s' if threads > 1 else ''})")
    if rerank_time is not None:
        print(f"  ColBERT encoding + MaxSim reranking of BM25's top {depth} per query: "
              f"{rerank_time * 1e3:.0f} ms ({rerank_time * 1e3 / len(queries):.0f} ms per query)")
    if not args.queries:
        print('\n  Ask your own: python -m rank demo "how do I sort a dictionary by value"')
    return 0


def _bench_maxsim(args: argparse.Namespace) -> int:
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

    print(f"rank-kernels {rank.__version__}: MaxSim late interaction ({isa()} kernels, {threads} threads)")
    print(f"  query {args.query_tokens} x {args.dim}, {args.docs} documents of "
          f"{args.min_tokens}-{args.max_tokens} tokens ({int(lengths.sum())} token vectors)")
    rank.rerank_maxsim(query, docs[:2], top_k=1, n_threads=threads)  # warm up
    best = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        idx, scores = rank.rerank_maxsim(query, docs, top_k=args.top, n_threads=threads)
        best = min(best, time.perf_counter() - t0)
    flops = 2.0 * args.query_tokens * args.dim * lengths.sum()
    print("\n  rank  doc   tokens  score")
    for r, (i, s) in enumerate(zip(idx, scores), 1):
        print(f"  {r:>4}  {i:>4}  {lengths[i]:>6}  {s:.4f}")
    print(f"\n  scored {args.docs} documents in {best * 1e3:.1f} ms (best of {args.repeat}): "
          f"{args.docs / best:,.0f} docs/s, {flops / best / 1e9:.1f} GFLOP/s")
    return 0


# --- the parser ----------------------------------------------------------------------------------

def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def _threads(text: str) -> int:
    """A --threads value, checked by the package's one thread-count policy
    (:func:`rank._validate.resolve_threads`: clamped to 4x the cores, refused above 4096)."""
    from rank._validate import resolve_threads

    value = _positive(text)
    try:
        return resolve_threads(value)
    except InvalidValueError as e:
        raise argparse.ArgumentTypeError(str(e).replace("n_threads: ", "")) from None


def _common(p: argparse.ArgumentParser, threads: bool = True) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or timings on stderr")
    if threads:
        p.add_argument("--threads", type=_threads, default=None, metavar="N",
                       help="threads (default: all cores; at most 4x the cores are used)")


def _build_parser() -> argparse.ArgumentParser:
    from rank._io_corpus import FORMATS
    from rank._version import __version__

    parser = _Parser(prog="rank", formatter_class=_Formatter,
                     description="Fast ranking: BM25 retrieval, reranking, fusion and evaluation.",
                     epilog="example:\n  rank index corpus.jsonl -o idx && rank search idx queries.jsonl -o run.trec"
                            "\n  rank eval qrels.tsv run.trec -m ndcg@10 recall@100"
                            "\n\nrun 'rank COMMAND --help' for the options of a command")
    parser.add_argument("--version", action="version", version=f"rank-kernels {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def add(name: str, help: str, example: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                              epilog=f"example:\n  {example}", formatter_class=_Formatter)

    p = add("index", "build a BM25 index of a document collection and save it",
            "rank index corpus.jsonl -o scifact.idx   (English stemming and stopwords by default)")
    p.add_argument("corpus", help="BEIR corpus.jsonl (_id, title, text), .txt (one document per line; "
                                  "ids are line numbers), or .tsv/.csv with id and text columns; .gz allowed")
    p.add_argument("-o", "--output", required=True, metavar="INDEX", help="index directory to write")
    p.add_argument("--format", choices=FORMATS, default=None, help="file format (default: from the suffix)")
    from rank_kernels.sparse import BM25_METHODS  # the variants' one table (a compiled module: cheap)
    p.add_argument("--method", default="lucene", help="BM25 variant: " + ", ".join(BM25_METHODS))
    p.add_argument("--k1", type=_nonneg_float, default=1.2, help="term frequency saturation")
    p.add_argument("--b", type=_nonneg_float, default=0.75, help="length normalisation, in [0, 1]")
    p.add_argument("--delta", type=_nonneg_float, default=0.5, help="shift of bm25l and bm25+")
    p.add_argument("--language", default="english", metavar="LANG",
                   help="language of the stemmer and stopwords: a Snowball language, chinese, japanese, korean, "
                        "thai, ..., or 'auto' (each word by its script); default english")
    p.add_argument("--stopwords", default=None, metavar="LANG",
                   help="stopword list of this language instead of --language's, or 'none'")
    p.add_argument("--stemmer", default=None, metavar="LANG",
                   help="Snowball stemmer language instead of --language's, 'auto', or 'none'")
    p.add_argument("--shards", type=_positive, default=None, metavar="N",
                   help="build N shards in parallel on Ray (needs rank-kernels[ray]); same scores as one index")
    p.add_argument("--address", default=None, metavar="ADDR",
                   help="Ray cluster to use with --shards (default: a local cluster)")
    p.add_argument("--colbert", default=None, metavar="MODEL_DIR",
                   help="build a ColBERTIndex with this ColBERT encoder (needs the onnx and ann extras)")
    p.add_argument("--nbits", type=_nbits_arg, default=None,
                   help="ColBERTIndex bits per residual value: 1, 2, 3, 4, 8 or a fraction such as 3.5 (default 2)")
    p.add_argument("--n-centroids", type=_positive, default=None, metavar="N",
                   help="ColBERTIndex k-means centroids (default: 2**floor(log2(4 sqrt(tokens))))")
    p.add_argument("--n-candidates", type=_positive, default=None, metavar="N",
                   help="ColBERTIndex documents scored exactly per query, saved with the index (default 256)")
    p.add_argument("--nprobe", type=_positive, default=None, metavar="N",
                   help="ColBERTIndex centroids per query token that select candidates, saved with the index "
                        "(default 4)")
    p.add_argument("--dense", default=None, metavar="VECTORS.npy",
                   help="build a DenseIndex of these document vectors (one row per document of CORPUS)")
    p.add_argument("--index-kind", choices=("flat", "hnsw", "ivf", "ivfpq"), default="flat",
                   help="DenseIndex kind (approximate kinds need the ann extra)")
    p.add_argument("--metric", choices=("dot", "cosine"), default="cosine", help="DenseIndex metric")
    _common(p, threads=False)
    p.add_argument("--threads", type=_positive, default=None, metavar="N",
                   help="threads for --colbert / --dense (default: all cores)")
    p.set_defaults(func=_cmd_index)

    p = add("search", "retrieve the top k documents of each query as a TREC run",
            "rank search scifact.idx queries.jsonl -k 100 -o bm25.trec")
    p.add_argument("index", help="index directory written by 'rank index'")
    p.add_argument("queries", help="BEIR queries.jsonl, .txt (one query per line), or .tsv/.csv (id, text)")
    p.add_argument("-k", type=_positive, default=100, help="documents per query")
    p.add_argument("-o", "--output", default=None, metavar="RUN", help="TREC run file (default: stdout)")
    p.add_argument("--format", choices=FORMATS, default=None, help="queries file format (default: from the suffix)")
    p.add_argument("--run-name", default="rank", help="tag written in the last column")
    p.add_argument("--address", default=None, metavar="ADDR",
                   help="Ray cluster serving a sharded index (default: a local cluster)")
    p.add_argument("--colbert", default=None, metavar="MODEL_DIR", help="query encoder of a ColBERTIndex")
    p.add_argument("--vectors", default=None, metavar="Q.npy",
                   help="query vectors for a dense index (one row per query of QUERIES)")
    _common(p)
    p.set_defaults(func=_cmd_search)

    p = add("rerank", "rerank a TREC run with a cross-encoder or a ColBERT encoder (ONNX export directory)",
            "rank rerank bm25.trec --corpus corpus.jsonl --queries queries.jsonl --model minilm-ce/ -o ce.trec")
    p.add_argument("run", help="TREC run to rerank")
    p.add_argument("--corpus", required=True, help="the collection the run ranks (same formats as 'rank index')")
    p.add_argument("--queries", required=True, help="the queries of the run")
    p.add_argument("--model", required=True, metavar="DIR",
                   help="model directory (cross-encoder or ColBERT, told apart by its config)")
    p.add_argument("--depth", type=_positive, default=100, help="candidates reranked per query")
    p.add_argument("-k", type=_positive, default=None, help="documents kept per query (default: --depth)")
    p.add_argument("-o", "--output", default=None, metavar="RUN", help="TREC run file (default: stdout)")
    p.add_argument("--batch-size", type=_positive, default=None,
                   help="texts per model run (default: the model's, 4 for a cross-encoder, 8 for ColBERT)")
    p.add_argument("--max-length", type=_positive, default=None, help="maximum tokens per pair or document")
    p.add_argument("--corpus-format", choices=FORMATS, default=None, help="(default: from the suffix)")
    p.add_argument("--queries-format", choices=FORMATS, default=None, help="(default: from the suffix)")
    p.add_argument("--run-name", default="rerank", help="tag written in the last column")
    _common(p)
    p.set_defaults(func=_cmd_rerank)

    p = add("fuse", "fuse several TREC runs into one",
            "rank fuse bm25.trec dense.trec --method rrf -o fused.trec")
    p.add_argument("runs", nargs="+", metavar="RUN", help="TREC runs (two or more)")
    p.add_argument("--method", default="rrf",
                   help="rrf, combsum, combmnz, combmax, combmin, combanz, combmed, combgmnz, wsum, wmnz, mixed, "
                        "isr, log_isr, logn_isr, rbc, borda, wborda, condorcet, wcondorcet, bayesfuse, mapfuse, "
                        "posfuse, probfuse, segfuse, slidefuse (ranx's names also work)")
    p.add_argument("--norm", default=None,
                   help="score normalisation: min-max, min-max-inverted, max, sum, zmuv, rank, borda (default: none)")
    p.add_argument("--weights", type=float, nargs="+", default=None,
                   help="one weight per run (wsum, wmnz, mixed, wborda, wcondorcet)")
    p.add_argument("--param", action="append", default=None, metavar="NAME=VALUE",
                   help="a method parameter: phi=0.8 (rbc), gamma=0.5 (combgmnz), sigma=0.01 (logn_isr), "
                        "w=3 (slidefuse), n_segments=10 (probfuse); repeatable")
    p.add_argument("--train-qrels", default=None, metavar="QRELS",
                   help="judgements to train bayesfuse, mapfuse, posfuse, probfuse, segfuse or slidefuse on the runs")
    p.add_argument("--rrf-k", type=_positive, default=60, help="the k constant of reciprocal rank fusion")
    p.add_argument("--depth", type=_positive, default=None, help="keep the top N documents per query")
    p.add_argument("-o", "--output", default=None, metavar="RUN", help="TREC run file (default: stdout)")
    p.add_argument("--run-name", default="fused", help="tag written in the last column")
    _common(p)
    p.set_defaults(func=_cmd_fuse)

    p = add("eval", "evaluate TREC runs against relevance judgements",
            "rank eval qrels.tsv bm25.trec ce.trec -m ndcg@10 map recall@100")
    p.add_argument("qrels", help="relevance judgements: TREC qrels or BEIR qrels.tsv")
    p.add_argument("runs", nargs="+", metavar="RUN", help="TREC runs")
    p.add_argument("-m", "--metrics", nargs="+", default=["ndcg@10", "map", "recall@100"], metavar="METRIC",
                   help="ours (ndcg@k, map, mrr, precision@k, recall@k, r_precision, hit_rate@k, bpref, ...), "
                        "trec_eval's (ndcg_cut.10, P.5, P, recip_rank, all_trec, ...) or ir_measures' "
                        "(nDCG@10, AP, RR, R@100)")
    p.add_argument("--format", choices=("table", "json", "trec_eval"), default="table",
                   help="table, JSON, or trec_eval's own output (to diff with trec_eval)")
    p.add_argument("--json", action="store_true", help="same as --format json")
    p.add_argument("-q", "--per-query", action="store_true", help="one row per query (trec_eval's -q)")
    p.add_argument("-l", "--relevance-level", type=int, default=1,
                   help="smallest grade counted as relevant (trec_eval's -l)")
    p.add_argument("-c", "--complete", action="store_true",
                   help="score queries of the qrels missing from a run as empty rankings (trec_eval's -c)")
    p.add_argument("-M", "--max-docs", type=_positive, default=None, metavar="N",
                   help="only the first N documents of each ranking count (trec_eval's -M)")
    p.add_argument("--gains", type=_gains_arg, default=None, metavar="G=V,...",
                   help="gain of each grade for nDCG and the other graded measures, e.g. 1=3,2=9")
    p.add_argument("--quiet", action="store_true", help="no progress or timings on stderr")
    p.add_argument("--threads", type=_positive, default=None, metavar="N", help="threads (default: all cores)")
    p.set_defaults(func=_cmd_eval)

    p = add("check", "validate a saved index: structure, bounds and the checksum of every file",
            "rank check scifact.idx")
    p.add_argument("index", help="index directory written by 'rank index' (or SparseIndex.save)")
    p.add_argument("--quick", action="store_true", help="structure and bounds only, no checksums")
    _common(p, threads=False)
    p.set_defaults(func=_cmd_check)

    p = add("demo", "search the documentation of the installed Python standard library with BM25",
            'rank demo "how do I parse a date"')
    p.add_argument("queries", nargs="*", metavar="QUERY", help="your questions (default: a few examples)")
    p.add_argument("-k", type=_positive, default=5, help="results per query")
    p.add_argument("--colbert", default=None, metavar="DIR",
                   help="ColBERT encoder directory: rerank BM25's candidates with MaxSim")
    p.add_argument("--depth", type=_positive, default=50, help="BM25 candidates reranked per query")
    _common(p, threads=False)
    p.add_argument("--threads", type=_threads, default=1, metavar="N",
                   help="threads (default 1: a handful of queries is answered faster by one thread)")
    p.set_defaults(func=_cmd_demo)

    p = add("bench-maxsim", "time MaxSim scoring on a generated late-interaction workload",
            "rank bench-maxsim --docs 2000 --threads 2")
    p.add_argument("--docs", type=_positive, default=2000, help="number of documents")
    p.add_argument("--query-tokens", type=_positive, default=32, help="query tokens")
    p.add_argument("--dim", type=_positive, default=128, help="token vector dimension")
    p.add_argument("--min-tokens", type=_positive, default=128, help="shortest document")
    p.add_argument("--max-tokens", type=_positive, default=512, help="longest document")
    p.add_argument("--top", type=_positive, default=10, help="documents to print")
    p.add_argument("--repeat", type=_positive, default=5, help="timed repetitions")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    _common(p)
    p.set_defaults(func=_bench_maxsim)
    return parser


def _describe(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename is not None:
        return f"{e.strerror or e}: {e.filename}"
    text = str(e).strip() or type(e).__name__
    return " ".join(text.split())  # one line


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rank`` command; returns the exit status (0 ok, 2 user error).

    `argv` defaults to ``sys.argv[1:]``. Usage errors exit through argparse with status 2.
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "bench-maxsim" and args.max_tokens < args.min_tokens:
        parser.error("--max-tokens must be at least --min-tokens")
    prog = f"rank {args.command}"
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except BrokenPipeError:  # the reader of stdout went away (rank search ... | head)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except (RankError, OSError, UnicodeError, _UserError) as e:
        print(f"{prog}: error: {_describe(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
