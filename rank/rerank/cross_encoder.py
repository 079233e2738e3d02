"""Cross-encoder reranking on ONNX Runtime, and export of Hugging Face checkpoints to it.

A cross-encoder reads the query and a document together (``[CLS] query [SEP] doc [SEP]``) and
outputs relevance logits. :class:`CrossEncoder` runs an exported model with onnxruntime and
tokenizes with the ``tokenizers`` library (extra ``onnx``); :func:`export_cross_encoder`
writes such a model from a transformers sequence-classification checkpoint (extra ``export``).

Pairs are sorted by token length and batched so that each batch is padded only to its own
longest pair; scores come back in input order.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rank import _truncation
from rank._topk import top_k as _top_k
from rank._validate import check_positive_int, check_choice
from rank.errors import DTypeError, InvalidValueError
from rank.onnx import _runtime as _onnx
from rank.onnx._calibration import CALIBRATION_PAIRS
from rank.onnx._export import (QUANTIZED_NAME, check_precision, export_module, finish_model, first_token_only,
                                 fuse_transformer, load_checkpoint, save_tokenizer, staged_dir, write_config)

__all__ = ["CrossEncoder", "export_cross_encoder"]

_ACTIVATIONS = ("auto", "sigmoid", "softmax", None)
#: Models whose position table holds two entries before the first token (RoBERTa family).
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "longformer"}


def _model_limit(config: dict) -> int | None:
    """Longest sequence the model accepts, from our export settings or the model config."""
    section = config.get("rank_kernels") or {}
    if isinstance(section.get("max_length"), int):
        return int(section["max_length"])
    n = config.get("max_position_embeddings")
    if isinstance(n, int) and n > 0:
        return n - 2 if config.get("model_type") in _OFFSET_POSITIONS else n
    return None


def _saved_activation(config: dict) -> str | None:
    """The activation a sentence-transformers CrossEncoder saved in the model config, else "auto"."""
    st = config.get("sentence_transformers")
    path = st.get("activation_fn") if isinstance(st, dict) else config.get("sbert_ce_default_activation_function")
    if not isinstance(path, str):
        return "auto"
    name = path.rsplit(".", 1)[-1].lower()
    return {"sigmoid": "sigmoid", "softmax": "softmax", "identity": None}.get(name, "auto")


class CrossEncoder:
    """A cross-encoder reranker running on ONNX Runtime (create with :meth:`from_pretrained`).

    One instance may be shared by many Python threads: it holds no per-call state, and
    onnxruntime releases the GIL while it runs, so concurrent ``predict`` / ``rerank`` calls
    overlap (each uses up to ``intra_op_threads`` cores). What a call truncated comes back
    from that call (``return_info=True``), never as state on the instance.
    """

    def __init__(self, engine: Any, tokenizer: Any, config: dict, model_path: Path, *,
                 max_length: int, batch_size: int, activation: str | None, truncation: str = "warn") -> None:
        self.model_path = model_path
        self.config = config
        self.tokenizer = tokenizer
        self._runner = _onnx.OnnxRunner(engine, _onnx.pad_token_id(tokenizer, config), model_path)
        self.max_length = max_length
        self.batch_size = batch_size
        self.num_labels = int(engine.get_outputs()[0].shape[-1]) if isinstance(
            engine.get_outputs()[0].shape[-1], int) else int(config.get("num_labels", len(config.get("id2label", {})) or 1))
        if activation == "auto":
            saved = _saved_activation(config)
            activation = ("sigmoid" if self.num_labels == 1 else "softmax") if saved == "auto" else saved
        if activation == "softmax" and self.num_labels == 1:
            raise InvalidValueError("activation='softmax' needs a model with 2 or more logits; this one has 1 "
                                    "(use 'sigmoid' or None)")
        self.activation = activation
        self.truncation = _truncation.check_mode(truncation)
        self._special = tokenizer.num_special_tokens_to_add(is_pair=True)
        if self.max_length < self._special + 2:
            raise InvalidValueError(f"max_length: expected at least {self._special + 2} (room for the special "
                                    f"tokens and one token of each text), got {max_length}")

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, max_length: int = 512, batch_size: int = 4,
                        providers: Sequence[Any] | None = None, intra_op_threads: int | None = None,
                        activation: str | None = "auto", quantized: bool = False,
                        truncation: str = "warn") -> "CrossEncoder":
        """Load an exported cross-encoder from a local directory or a hub id.

        Parameters
        ----------
        name_or_path : str or path
            A directory holding ``model.onnx`` (or ``onnx/model.onnx``) and ``tokenizer.json``,
            with an optional ``config.json`` — what :func:`export_cross_encoder` writes — or a
            hub id, fetched through the huggingface-hub cache (HF_HUB_OFFLINE=1 reads only the
            cache). A missing model raises ``ModelNotFoundError`` (a FileNotFoundError) naming
            the files looked for and where; a corrupt file raises CorruptFileError.
        max_length : int, default 512
            Longest pair in tokens, special tokens included (capped by the model's own limit).
            Longer pairs are truncated, the document first (see `truncation`).
        batch_size : int, default 4
            Pairs per onnxruntime run (pairs are sorted by length first). Small batches are
            fastest on CPU (little padding; the attention scores stay in cache): on MiniLM-L6
            with 2 threads, 4 scores 100 pairs about 1.3x faster than 32. The int8 model
            quantizes each token's activations with its own scale, so a pair's score does not
            depend on the other pairs of its run (beyond float rounding).
        providers : list, optional
            onnxruntime execution providers in order of preference (default: CPU). Providers
            this onnxruntime build lacks are skipped; CPU is always the fallback.
        intra_op_threads : int, optional
            Threads one run may use (default: onnxruntime's, every core).
        activation : {"auto", "sigmoid", "softmax", None}, default "auto"
            Score from the logits. One logit: "sigmoid" or None (raw logit). Two or more:
            "softmax" is the probability of the positive class (index 1), "sigmoid" the
            sigmoid of its logit, None its raw logit. "auto" follows the activation a
            sentence-transformers CrossEncoder saved in config.json, else "sigmoid" for one
            logit and "softmax" for more (sentence-transformers' own default for one logit).
        quantized : bool, default False
            Load the int8 model (``model_quantized.onnx``) instead of ``model.onnx``. A file
            from an older export, whose integer products can saturate on AVX2 CPUs without
            VNNI, loads with an ``rank.errors.Int8SaturationWarning`` naming the command that
            re-exports it.
        truncation : {"warn", "error", "ignore"}, default "warn"
            What a call does when some pairs are longer than `max_length`: "warn" issues one
            ``rank.errors.TruncationWarning`` per call with the count, "error" raises
            ``rank.errors.TruncationError`` naming the first such pair (before running the
            model), "ignore" cuts silently. A call may override it; ``return_info=True`` gives
            the count either way.

        >>> CrossEncoder.from_pretrained("/no/such/dir")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        rank.errors.ModelNotFoundError: cross-encoder directory /no/such/dir does not exist ...
        """
        truncation = _truncation.check_mode(truncation)
        check_choice("activation", activation, _ACTIVATIONS)
        max_length = check_positive_int(max_length, "max_length")
        batch_size = check_positive_int(batch_size, "batch_size")
        files = [QUANTIZED_NAME] if quantized else ["model.onnx"]
        root, model_path = _onnx.resolve_model_dir(name_or_path, files, what="cross-encoder")
        config = _onnx.read_json(root / "config.json") if (root / "config.json").is_file() else {}
        limit = _model_limit(config)
        if limit is not None:
            max_length = min(max_length, limit)
        tokenizer = _onnx.load_tokenizer(root / "tokenizer.json")
        engine = _onnx.make_engine(model_path, providers=providers, intra_op_threads=intra_op_threads)
        if quantized:
            _onnx.check_int8_model(engine, model_path, f"rank.rerank.export_cross_encoder(<checkpoint>, "
                                                       f"{os.fspath(root)!r}, quantize='int8')")
        return cls(engine, tokenizer, config, model_path, max_length=max_length, batch_size=batch_size,
                   activation=activation, truncation=truncation)

    def __repr__(self) -> str:
        return (f"CrossEncoder({str(self.model_path)!r}, max_length={self.max_length}, "
                f"batch_size={self.batch_size}, activation={self.activation!r}, truncation={self.truncation!r})")

    # -- tokenization -------------------------------------------------------------------------
    def _encode_pairs(self, queries: list[str], q_index: np.ndarray, docs: list[str]) -> tuple[list, list, list]:
        """Token ids and type ids of each (queries[q_index[i]], docs[i]) pair, truncated, and
        the ``(i, full length)`` of each pair that was cut."""
        tok = self.tokenizer
        q_enc = tok.encode_batch(queries, add_special_tokens=False)
        d_enc = tok.encode_batch(docs, add_special_tokens=False)
        budget = self.max_length - self._special
        ids, type_ids, cut = [], [], []
        for i, (qi, d) in enumerate(zip(q_index.tolist(), d_enc)):
            q = q_enc[qi]
            nq, nd = len(q), len(d)
            if nq + nd > budget:
                cut.append((i, nq + nd + self._special))
                keep_d = min(nd, max(budget - nq, budget // 2))  # the document gives way first
                d.truncate(keep_d)
                if nq > budget - keep_d:  # a query too long even alone: a truncated copy
                    q = tok.encode(queries[qi], add_special_tokens=False)
                    q.truncate(budget - keep_d)
            pair = tok.post_process(q, d, add_special_tokens=True)
            ids.append(np.asarray(pair.ids, np.int64))
            type_ids.append(np.asarray(pair.type_ids, np.int64))
        return ids, type_ids, cut

    def _activate(self, logits: np.ndarray) -> np.ndarray:
        logits = logits.astype(np.float32, copy=False).reshape(logits.shape[0], -1)
        if logits.shape[1] == 1:
            x = logits[:, 0]
        elif self.activation == "softmax":
            z = logits - logits.max(axis=1, keepdims=True)
            e = np.exp(z)
            return (e[:, 1] / e.sum(axis=1)).astype(np.float32)
        else:
            x = logits[:, 1]
        if self.activation == "sigmoid":
            x = (1.0 / (1.0 + np.exp(-x))).astype(np.float32)
        return np.ascontiguousarray(x, dtype=np.float32)

    def _score(self, queries: list[str], q_index: np.ndarray, docs: list[str], batch_size: int, truncation: str,
               item: str) -> tuple[np.ndarray, _truncation.TruncationInfo]:
        ids, type_ids, cut = self._encode_pairs(queries, q_index, docs)
        info = _truncation.report(truncation, "pairs", "max_length", self.max_length, len(ids), cut, item=item,
                                  stacklevel=3)
        out = np.empty(len(ids), np.float32)
        lengths = np.fromiter((len(r) for r in ids), np.int64, len(ids))
        for batch in _onnx.length_batches(lengths, batch_size):
            logits = self._runner.run([ids[i] for i in batch], [type_ids[i] for i in batch])
            out[batch] = self._activate(logits)
        return out, info

    def _mode(self, truncation: str | None) -> str:
        return self.truncation if truncation is None else _truncation.check_mode(truncation)

    # -- public -------------------------------------------------------------------------------
    def predict(self, pairs: Sequence[tuple[str, str]], batch_size: int | None = None, *,
                truncation: str | None = None, return_info: bool = False) -> Any:
        """Relevance score of each (query, document) pair.

        Parameters
        ----------
        pairs : sequence of (str, str)
            Query and document texts; empty strings are allowed.
        batch_size : int, optional
            Pairs per run (default: the instance's ``batch_size``).
        truncation : {"warn", "error", "ignore"}, optional
            Overrides the instance's setting for this call: pairs longer than ``max_length``
            warn once (``rank.errors.TruncationWarning``), raise ``rank.errors.TruncationError``
            or are cut silently.
        return_info : bool, default False
            Also return the :class:`rank._truncation.TruncationInfo` of this call (positions
            and full lengths of the pairs cut), for callers who log it.

        Returns
        -------
        float32 array (n,)
            Scores in input order, after the configured activation; with ``return_info=True``
            a ``(scores, info)`` pair.

        Cost: one transformer pass per pair, O(sum of pair lengths squared) attention; pairs
        are bucketed by length so padding adds little.
        """
        bs = self.batch_size if batch_size is None else check_positive_int(batch_size, "batch_size")
        mode = self._mode(truncation)
        if isinstance(pairs, (str, bytes)):
            raise InvalidValueError("pairs: expected a sequence of (query, document) pairs, got a string")
        items = list(pairs)
        if not items:
            empty = np.empty(0, np.float32)
            return (empty, _truncation.report(mode, "pairs", "max_length", self.max_length, 0, [], item="")) \
                if return_info else empty
        uniq: dict[str, int] = {}
        q_index = np.empty(len(items), np.int64)
        docs = []
        for i, p in enumerate(items):
            if not isinstance(p, (tuple, list)) or len(p) != 2:
                raise InvalidValueError(f"pairs[{i}]: expected a (query, document) pair, got {type(p).__name__}")
            q, d = p
            if not isinstance(q, str) or not isinstance(d, str):
                bad = type(q if not isinstance(q, str) else d).__name__
                raise DTypeError(f"pairs[{i}]: expected two strings, got a {bad}")
            q_index[i] = uniq.setdefault(q, len(uniq))
            docs.append(d)
        scores, info = self._score(list(uniq), q_index, docs, bs, mode, "pairs[{i}]")
        return (scores, info) if return_info else scores

    def rerank(self, query: str, documents: Sequence[str], top_k: int | None = None,
               return_documents: bool = False, batch_size: int | None = None, *, truncation: str | None = None,
               return_info: bool = False) -> tuple:
        """Rank `documents` by relevance to `query`.

        Returns ``(indices int64, scores float32)`` sorted by score descending, ties by the
        smaller index, or ``(indices, scores, texts)`` with ``return_documents=True``; with
        ``return_info=True`` the :class:`rank._truncation.TruncationInfo` of the call comes
        last (its positions index `documents`). `truncation` overrides the instance's
        setting as in :meth:`predict`. ``top_k=None`` ranks every document. An empty
        `documents` gives empty arrays. Cost: :meth:`predict` on every pair plus O(n + k log k).
        """
        if not isinstance(query, str):
            raise DTypeError(f"query: expected a string, got {type(query).__name__}")
        k = check_positive_int(top_k, "top_k", allow_none=True)
        bs = self.batch_size if batch_size is None else check_positive_int(batch_size, "batch_size")
        mode = self._mode(truncation)
        docs = _onnx.check_texts(documents, "documents")
        if docs:
            scores, info = self._score([query], np.zeros(len(docs), np.int64), docs, bs, mode, "documents[{i}]")
        else:
            scores = np.empty(0, np.float32)
            info = _truncation.report(mode, "pairs", "max_length", self.max_length, 0, [], item="")
        idx, top = _top_k(scores, scores.shape[0] if k is None else k)
        out: tuple = (idx, top, [docs[i] for i in idx.tolist()]) if return_documents else (idx, top)
        return (*out, info) if return_info else out


def export_cross_encoder(checkpoint_or_id: str | os.PathLike, out_dir: str | os.PathLike, *, opset: int = 17,
                         quantize: bool | str | None = None, fp16: bool = False, max_length: int | None = None,
                         calibration: Sequence[tuple[str, str]] | None = None) -> Path:
    """Export a transformers sequence-classification checkpoint to a :class:`CrossEncoder` directory.

    Parameters
    ----------
    checkpoint_or_id : str or path
        Anything ``AutoModelForSequenceClassification.from_pretrained`` loads: a local
        checkpoint directory (a sentence-transformers CrossEncoder saves one) or a hub id.
        Its tokenizer must be a fast (``tokenizers``) one.
    out_dir : str or path
        Created if needed; receives model.onnx, tokenizer.json and config.json (the model
        config plus a "rank_kernels" section). Files are written under a temporary name and
        renamed into place only when the whole export succeeded.
    opset : int, default 17
        ONNX opset.
    quantize : None, False, True or "int8"
        True or "int8" also writes ``model_quantized.onnx``, an int8 model loaded by
        ``CrossEncoder.from_pretrained(..., quantized=True)``: activations quantized per token
        (uint8), weights per output column (int8) with every two adjacent weights the AVX2
        kernel pairs bounded to |w_2i| + |w_2i+1| <= 128, so that no integer product can
        saturate on any onnxruntime CPU kernel (AVX2 without VNNI adds such pairs in a
        saturating int16; VNNI and ARM in int32) and the file ranks the same on every CPU.
        Chosen over 7-bit weights (``reduce_range``: twice the weight error of 8 bits, where
        this costs 1.4x) and uint8 x uint8 products (exact too, but a slower AVX2 kernel), at
        the speed of the usual uint8 x int8 kernel. On MiniLM-L6 (ten SciFact claims, their
        BM25 top 100) it ranks like fp32 at a mean Spearman of 0.998. Other values raise
        UnknownMethodError.
    fp16 : bool, default False
        Store model.onnx in float16 (inputs and outputs stay int64 / float32); mainly for GPU
        providers.
    max_length : int, optional
        Longest sequence to record (default: the tokenizer's model_max_length or the position
        table size).
    calibration : sequence of (query, document) pairs, optional
        Text run through the fp32 model to measure activation ranges before int8 quantization
        (default: a small built-in set of English pairs). Only used with ``quantize="int8"``.

    When the classification head reads only the first token (BERT, RoBERTa, ELECTRA and their
    kin), the layers after the last attention are computed for that token alone, which is
    exact and saves about an eighth of the work of a six-layer model. For int8, activation
    outliers are first moved into the weights (SmoothQuant-style smoothing, migration
    strength 0.7), the fused attention's input projection is split out so that it is
    quantized per token too, and those first-token layers stay fp32. A model loaded from an
    int8 file of an older export (full-range weights, which saturate on AVX2 CPUs) warns with
    ``rank.errors.Int8SaturationWarning`` naming this call to re-export it.

    Returns
    -------
    Path of `out_dir`. Cost: one traced forward pass, plus quantization.

    Examples
    --------
    >>> export_cross_encoder("cross-encoder/ms-marco-MiniLM-L-6-v2", "ce-onnx", quantize="int8")  # doctest: +SKIP
    """
    quantize = check_precision(quantize, fp16)
    opset = check_positive_int(opset, "opset")
    torch = _onnx.require("torch", "export_cross_encoder")
    transformers = _onnx.require("transformers", "export_cross_encoder")
    model = load_checkpoint(checkpoint_or_id, transformers.AutoModelForSequenceClassification,
                            "cross-encoder", attn_implementation="eager")
    tokenizer = load_checkpoint(checkpoint_or_id, transformers.AutoTokenizer, "cross-encoder tokenizer")
    model.eval()
    config = model.config
    limit = _model_limit(config.to_dict())
    tmax = getattr(tokenizer, "model_max_length", None)
    if max_length is None:
        max_length = min(x for x in (limit, tmax if isinstance(tmax, int) and tmax < 10**6 else None, 512)
                         if x is not None)
    max_length = check_positive_int(max_length, "max_length")
    sample = tokenizer(["a query", "another query"], ["a document", "a longer document text"],
                       padding=True, return_tensors="pt")
    names = [n for n in _onnx.KNOWN_INPUTS if n in sample]
    args = tuple(sample[n] for n in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["logits"] = {0: "batch"}

    class _Logits(torch.nn.Module):  # type: ignore[name-defined]
        def __init__(self, inner: Any):
            super().__init__()
            self.inner = inner

        def forward(self, *tensors: Any) -> Any:
            return self.inner(**dict(zip(names, tensors))).logits

    feeds = None
    if quantize == "int8":
        pairs = list(CALIBRATION_PAIRS if calibration is None else calibration)
        if not pairs or not all(isinstance(p, (tuple, list)) and len(p) == 2 and all(isinstance(t, str) for t in p)
                                for p in pairs):
            raise InvalidValueError("calibration: expected a non-empty sequence of (query, document) string pairs")
        feeds = [dict(tokenizer(q, d, truncation="only_second", max_length=max_length, return_tensors="np"))
                 for q, d in pairs]
    out = Path(out_dir)
    with staged_dir(out) as tmp:
        export_module(_Logits(model), args, tmp / "model.onnx", input_names=names, output_names=["logits"],
                      dynamic_axes=axes, opset=opset)
        fused = fuse_transformer(tmp / "model.onnx", config)
        onnx = _onnx.require("onnx", "export_cross_encoder")
        graph = onnx.load(os.fspath(tmp / "model.onnx"))
        first_token = first_token_only(graph)
        if first_token:
            onnx.save(graph, os.fspath(tmp / "model.onnx"))
        files = finish_model(tmp, quantize=quantize, fp16=fp16, calibration=feeds, keep_fp32=first_token)
        save_tokenizer(tokenizer, tmp, "cross-encoder")
        write_config(config, tmp, {"kind": "cross-encoder", "format": 1, "max_length": max_length,
                                   "num_labels": int(config.num_labels), "inputs": names,
                                   "pad_token_id": tokenizer.pad_token_id, "files": files,
                                   "fp16": fp16, "quantize": quantize, "opset": opset, "fused": fused,
                                   "first_token_rows": bool(first_token)})
    return out
