"""ColBERT late-interaction encoding on ONNX Runtime, feeding the MaxSim kernels.

:func:`export_colbert_encoder` turns a ColBERT checkpoint into a token-level ONNX encoder
(transformer + linear projection, per-token output, no pooling) plus tokenizer.json and a
config; :class:`ColBERTEncoder` runs it and returns L2-normalised float32 token matrices that
:func:`rank.maxsim_batch` / :func:`rank.maxsim_matrix` score directly; :class:`ColBERTReranker`
ties both together.

Conventions (shared by the PyLate and Stanford ColBERT implementations):

- a marker token follows [CLS]: ``[CLS] [Q] query tokens [SEP]`` / ``[CLS] [D] doc tokens [SEP]``;
- queries are padded with [MASK] to ``query_maxlen`` (query augmentation); the [MASK] tokens
  are not attended to unless the checkpoint says so, but their output vectors are kept;
- documents drop padding and the punctuation skiplist tokens;
- every kept vector is L2-normalised.
"""
from __future__ import annotations

import json
import os
import string
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rank import _truncation
from rank._validate import check_positive_int
from rank.errors import CorruptFileError, DTypeError, InvalidValueError
from rank.onnx import _runtime as _onnx
from rank.onnx._calibration import CALIBRATION_PAIRS
from rank.onnx._export import (QUANTIZED_NAME, check_precision, export_module, finish_model, fuse_transformer,
                                 load_checkpoint, save_tokenizer, staged_dir, write_config)
from rank.rerank.maxsim import rerank_maxsim

__all__ = ["ColBERTEncoder", "ColBERTReranker", "export_colbert_encoder"]


class ColBERTEncoder:
    """Token-level ColBERT encoder on ONNX Runtime (a directory from :func:`export_colbert_encoder`).

    Parameters
    ----------
    path_or_id : str or path
        Directory with model.onnx, tokenizer.json and config.json, or a hub id holding them
        (fetched through the huggingface-hub cache; HF_HUB_OFFLINE=1 reads only the cache).
    query_maxlen, doc_maxlen : int, optional
        Query length after [MASK] padding and longest document, in tokens with the special
        tokens (default: the checkpoint's, else 32 and 180). Longer texts are truncated (see
        `truncation`).
    providers : list, optional
        onnxruntime execution providers (default CPU; unavailable ones are skipped).
    batch_size : int, default 8
        Texts per onnxruntime run, after sorting by length (length bucketing). Small batches
        are fastest on CPU (little padding; the attention scores stay in cache): on MiniLM-L6
        with 2 threads, 8 encodes 100 passages about 1.3x faster than 32. The int8 model
        quantizes each token's activations with its own scale, so a text's embeddings do not
        depend on the other texts of its batch (beyond float rounding).
    intra_op_threads : int, optional
        Threads per run (default: onnxruntime's, every core).
    quantized : bool, default False
        Load the int8 model (model_quantized.onnx). A file from an older export, whose
        integer products can saturate on AVX2 CPUs without VNNI, loads with an
        ``rank.errors.Int8SaturationWarning`` naming the command that re-exports it.
    truncation : {"warn", "error", "ignore"}, default "warn"
        What an encoding call does with texts longer than ``doc_maxlen`` / ``query_maxlen``:
        "warn" issues one ``rank.errors.TruncationWarning`` per call with the count, "error"
        raises ``rank.errors.TruncationError`` naming the first such text (before running the
        model), "ignore" cuts silently. A call may override it; ``return_info=True`` returns
        the count either way. (Queries shorter than ``query_maxlen`` are padded, never counted.)

    Thread-safe: one encoder may serve many Python threads (onnxruntime releases the GIL);
    what a call truncated comes back from that call, never as state on the encoder.
    """

    def __init__(self, path_or_id: str | os.PathLike, *, query_maxlen: int | None = None,
                 doc_maxlen: int | None = None, providers: Sequence[Any] | None = None, batch_size: int = 8,
                 intra_op_threads: int | None = None, quantized: bool = False, truncation: str = "warn") -> None:
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.truncation = _truncation.check_mode(truncation)
        files = [QUANTIZED_NAME] if quantized else ["model.onnx"]
        root, self.model_path = _onnx.resolve_model_dir(path_or_id, files, what="ColBERT encoder")
        cfg_path = root / "config.json"
        if not cfg_path.is_file():
            raise _onnx.ModelNotFoundError(f"ColBERT encoder: no config.json in {root} (write one with export_colbert_encoder)")
        config = _onnx.read_json(cfg_path)
        section = config.get("rank_kernels")
        if not isinstance(section, dict) or section.get("kind") != "colbert":
            raise CorruptFileError(f"{cfg_path}: not a ColBERT encoder config (no 'rank_kernels' section of kind 'colbert')")
        self.config = section
        try:
            self.dim = int(section["dim"])
            self.cls_id, self.sep_id = int(section["cls_token_id"]), int(section["sep_token_id"])
            self.mask_id = int(section["mask_token_id"])
            q_marker, d_marker = section.get("query_marker_id"), section.get("document_marker_id")
            self.query_marker = None if q_marker is None else int(q_marker)
            self.doc_marker = None if d_marker is None else int(d_marker)
            self.skiplist = np.asarray(sorted(int(i) for i in section.get("skiplist_ids", [])), np.int64)
            self.attend_to_mask = bool(section.get("attend_to_expansion_tokens", False))
            self.normalize = bool(section.get("normalize", True))
            limit = int(section.get("max_length", 512))
            default_q, default_d = int(section.get("query_maxlen", 32)), int(section.get("doc_maxlen", 180))
        except (KeyError, TypeError, ValueError) as e:
            raise CorruptFileError(f"{cfg_path}: malformed ColBERT settings ({type(e).__name__}: {e})") from None
        q = default_q if query_maxlen is None else check_positive_int(query_maxlen, "query_maxlen")
        d = default_d if doc_maxlen is None else check_positive_int(doc_maxlen, "doc_maxlen")
        self._fixed = 2 + (self.query_marker is not None)  # [CLS] (+ marker) ... [SEP]
        for name, value in (("query_maxlen", q), ("doc_maxlen", d)):
            if value < self._fixed + 1 or value > limit:
                raise InvalidValueError(f"{name}: expected {self._fixed + 1} <= {name} <= {limit} (the model's "
                                        f"position limit), got {value}")
        self.query_maxlen, self.doc_maxlen = q, d
        self.tokenizer = _onnx.load_tokenizer(root / "tokenizer.json")
        engine = _onnx.make_engine(self.model_path, providers=providers, intra_op_threads=intra_op_threads)
        if quantized:
            _onnx.check_int8_model(engine, self.model_path, f"rank.rerank.export_colbert_encoder(<checkpoint>, "
                                                            f"{os.fspath(root)!r}, quantize=True)")
        pad = section.get("pad_token_id")
        self._runner = _onnx.OnnxRunner(engine, pad if isinstance(pad, int) else 0, self.model_path)

    @classmethod
    def from_pretrained(cls, path_or_id: str | os.PathLike, *, query_maxlen: int | None = None,
                        doc_maxlen: int | None = None, providers: Sequence[Any] | None = None, batch_size: int = 8,
                        intra_op_threads: int | None = None, quantized: bool = False) -> ColBERTEncoder:
        """Load an exported ColBERT encoder: the construction every model class shares.

        ``ColBERTEncoder.from_pretrained(path)`` is ``ColBERTEncoder(path)`` (both work), as
        :meth:`rank.rerank.CrossEncoder.from_pretrained` loads a cross-encoder; the arguments
        are those of the class (a directory written by :func:`export_colbert_encoder` or a hub
        id). Cost: reading the model and creating one ONNX Runtime session.

        >>> ColBERTEncoder.from_pretrained("/no/such/dir")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        rank.errors.ModelNotFoundError: ...
        """
        return cls(path_or_id, query_maxlen=query_maxlen, doc_maxlen=doc_maxlen, providers=providers,
                   batch_size=batch_size, intra_op_threads=intra_op_threads, quantized=quantized)

    def __repr__(self) -> str:
        return (f"ColBERTEncoder({str(self.model_path)!r}, dim={self.dim}, query_maxlen={self.query_maxlen}, "
                f"doc_maxlen={self.doc_maxlen})")

    def _ids(self, texts: list[str], marker: int | None, maxlen: int, truncation: str | None,
             is_query: bool) -> tuple[list[np.ndarray], _truncation.TruncationInfo]:
        """Token ids of each text with its special tokens, cut at `maxlen`, and the record of
        the cuts (after the warning or error `truncation` asks for)."""
        mode = self.truncation if truncation is None else _truncation.check_mode(truncation)
        head = [self.cls_id] + ([] if marker is None else [marker])
        room = maxlen - self._fixed
        out, cut = [], []
        for i, enc in enumerate(self.tokenizer.encode_batch(texts, add_special_tokens=False)):
            if len(enc.ids) > room:
                cut.append((i, len(enc.ids) + self._fixed))
            out.append(np.asarray(head + enc.ids[:room] + [self.sep_id], np.int64))
        what, limit = ("queries", "query_maxlen") if is_query else ("documents", "doc_maxlen")
        info = _truncation.report(mode, what, limit, maxlen, len(texts), cut, item="texts[{i}]", stacklevel=3)
        return out, info

    def _finish(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.normalize:
            norm = np.sqrt(np.einsum("ij,ij->i", x, x))
            x /= np.maximum(norm, 1e-12)[:, None]
        return x

    @staticmethod
    def _pack(mats: list[np.ndarray], packed: bool, dim: int) -> Any:
        if not packed:
            return mats
        offsets = np.zeros(len(mats) + 1, np.int64)
        np.cumsum([m.shape[0] for m in mats], out=offsets[1:])
        flat = np.concatenate(mats) if mats else np.empty((0, dim), np.float32)
        return flat, offsets

    def encode_queries(self, texts: Sequence[str], *, packed: bool = False, truncation: str | None = None,
                       return_info: bool = False) -> Any:
        """Query token matrices: ``[CLS] [Q] tokens [SEP] [MASK]...`` padded to query_maxlen.

        Returns a list of float32 arrays (query_maxlen, dim), one per text, L2-normalised, or
        with ``packed=True`` a ``(flat (n * query_maxlen, dim), offsets (n + 1,))`` pair.
        Empty strings are allowed. Queries longer than query_maxlen are cut; `truncation`
        ("warn", "error", "ignore"; default the encoder's) says what else happens, and
        ``return_info=True`` returns ``(result, info)`` with the call's
        :class:`rank._truncation.TruncationInfo`. Cost: one transformer pass of query_maxlen
        tokens per text.
        """
        items = _onnx.check_texts(texts, "texts")
        ids, info = self._ids(items, self.query_marker, self.query_maxlen, truncation, True)
        if not items:
            empty = self._pack([], packed, self.dim)
            return (empty, info) if return_info else empty
        rows, masks = [], []
        for r in ids:
            full = np.full(self.query_maxlen, self.mask_id, np.int64)
            full[:r.shape[0]] = r
            m = np.ones(self.query_maxlen, np.int64)
            if not self.attend_to_mask:
                m[r.shape[0]:] = 0
            rows.append(full)
            masks.append(m)
        out: list[np.ndarray] = [None] * len(items)  # type: ignore[list-item]
        for start in range(0, len(items), self.batch_size):  # all queries have the same length
            emb = self._runner.run(rows[start:start + self.batch_size], masks=masks[start:start + self.batch_size])
            for j in range(emb.shape[0]):
                out[start + j] = self._finish(emb[j])
        result = self._pack(out, packed, self.dim)
        return (result, info) if return_info else result

    def encode_documents(self, texts: Sequence[str], *, packed: bool = False, truncation: str | None = None,
                         return_info: bool = False) -> Any:
        """Document token matrices: ``[CLS] [D] tokens [SEP]`` truncated to doc_maxlen, with
        padding and punctuation-skiplist tokens dropped.

        Returns a list of float32 arrays (L_i, dim), L2-normalised, in input order, or with
        ``packed=True`` a ``(flat (sum L_i, dim), offsets (n + 1,))`` pair; both go straight
        into :func:`rank.maxsim_batch`. Texts are sorted by token length and batched, so each
        batch is padded only to its own longest text. Documents longer than doc_maxlen are
        cut; `truncation` ("warn", "error", "ignore"; default the encoder's) says what else
        happens, and ``return_info=True`` returns ``(result, info)`` with the call's
        :class:`rank._truncation.TruncationInfo`. Cost: one transformer pass per text.
        """
        items = _onnx.check_texts(texts, "texts")
        ids, info = self._ids(items, self.doc_marker, self.doc_maxlen, truncation, False)
        if not items:
            empty = self._pack([], packed, self.dim)
            return (empty, info) if return_info else empty
        lengths = np.fromiter((r.shape[0] for r in ids), np.int64, len(ids))
        out: list[np.ndarray] = [None] * len(items)  # type: ignore[list-item]
        for batch in _onnx.length_batches(lengths, self.batch_size):
            emb = self._runner.run([ids[i] for i in batch])
            for j, i in enumerate(batch.tolist()):
                keep = ~np.isin(ids[i], self.skiplist) if self.skiplist.size else slice(None)
                out[i] = self._finish(emb[j, :ids[i].shape[0]][keep])
        result = self._pack(out, packed, self.dim)
        return (result, info) if return_info else result


    def encode(self, texts: Sequence[str], is_query: bool = True, *, packed: bool = False,
               truncation: str | None = None, return_info: bool = False) -> Any:
        """Token embeddings of queries (``is_query=True``) or documents, PyLate's calling convention.

        Same as :meth:`encode_queries` / :meth:`encode_documents` (see them for the shapes):
        a list of float32 (L_i, dim) arrays, L2-normalised, or with ``packed=True`` a
        ``(flat, offsets)`` pair; `truncation` and `return_info` as there. `is_query` must be
        a bool.

        >>> encoder.encode(["a document"], is_query=False)  # doctest: +SKIP
        """
        if not isinstance(is_query, (bool, np.bool_)):
            raise InvalidValueError(f"is_query: expected a bool, got {type(is_query).__name__}")
        if is_query:
            return self.encode_queries(texts, packed=packed, truncation=truncation, return_info=return_info)
        return self.encode_documents(texts, packed=packed, truncation=truncation, return_info=return_info)


class ColBERTReranker:
    """Rerank candidates by ColBERT MaxSim: encode with a :class:`ColBERTEncoder`, score with
    the MaxSim kernel.

    >>> ColBERTReranker("not an encoder")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    rank.errors.DTypeError: encoder: expected a ColBERTEncoder, got str
    """

    def __init__(self, encoder: ColBERTEncoder, *, n_threads: int | None = None) -> None:
        if not isinstance(encoder, ColBERTEncoder):
            raise DTypeError(f"encoder: expected a ColBERTEncoder, got {type(encoder).__name__}")
        self.encoder = encoder
        self.n_threads = n_threads

    def rerank(self, query: str, documents: Sequence[str], top_k: int | None = None, *,
               truncation: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(indices int64, scores float32)`` of `documents` by MaxSim against `query`, sorted
        descending, ties by the smaller index; ``top_k=None`` ranks all. An empty `documents`
        gives empty arrays. `truncation` ("warn", "error", "ignore") overrides the encoder's
        setting for the query and the documents (see :class:`ColBERTEncoder`). Cost: encoding
        (dominant) plus 2 * Lq * dim * sum(L_i) flops."""
        if not isinstance(query, str):
            raise DTypeError(f"query: expected a string, got {type(query).__name__}")
        k = check_positive_int(top_k, "top_k", allow_none=True)
        docs = _onnx.check_texts(documents, "documents")
        if not docs:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        q = self.encoder.encode_queries([query], truncation=truncation)[0]
        flat, offsets = self.encoder.encode_documents(docs, packed=True, truncation=truncation)
        return rerank_maxsim(q, (flat, offsets), top_k=k, n_threads=self.n_threads)


# -- export ------------------------------------------------------------------------------------

def _read_json_if(path: Path) -> dict:
    return _onnx.read_json(path) if path.is_file() else {}


def _load_weights(folder: Path) -> dict:
    """State dict of a folder's model.safetensors or pytorch_model.bin (torch tensors)."""
    torch = _onnx.require("torch", "export_colbert_encoder")
    if (folder / "model.safetensors").is_file():
        st = _onnx.require("safetensors.torch", "reading safetensors weights")
        return st.load_file(os.fspath(folder / "model.safetensors"))
    if (folder / "pytorch_model.bin").is_file():
        return torch.load(os.fspath(folder / "pytorch_model.bin"), map_location="cpu", weights_only=True)
    return {}


def _local_checkpoint(checkpoint_or_id: str | os.PathLike) -> Path:
    path = Path(checkpoint_or_id).expanduser()
    if path.is_dir():
        return path
    hub = _onnx.require("huggingface_hub", "loading a checkpoint from the hub")
    try:
        return Path(hub.snapshot_download(os.fspath(checkpoint_or_id),
                                          local_files_only=os.environ.get("HF_HUB_OFFLINE", "") in ("1", "true", "TRUE")))
    except Exception as e:
        raise _onnx.ModelNotFoundError(f"ColBERT checkpoint {os.fspath(checkpoint_or_id)!r}: not a local directory "
                                       f"and not found on the hub or in its cache ({type(e).__name__}: {e})") from None


def _projection(root: Path) -> tuple[Any, str, dict]:
    """(weight, bias) of the ColBERT projection, the layout name and its settings."""
    modules = root / "modules.json"
    if modules.is_file():  # PyLate: sentence-transformers modules, a Dense layer after the transformer
        try:
            with open(modules, encoding="utf-8") as f:
                entries = json.load(f)
        except ValueError as e:
            raise CorruptFileError(f"{modules}: not valid JSON ({e})") from None
        settings = _read_json_if(root / "config_sentence_transformers.json")
        for entry in entries:
            if "Dense" in str(entry.get("type", "")):
                folder = root / entry.get("path", "")
                state = _load_weights(folder)
                w = state.get("linear.weight")
                if w is None:
                    raise CorruptFileError(f"{folder}: the Dense module has no linear.weight")
                return (w, state.get("linear.bias")), "pylate", settings
        return (None, None), "pylate", settings
    state = _load_weights(root)
    meta = _read_json_if(root / "artifact.metadata")
    if "linear.weight" in state:  # Stanford ColBERT: BertModel + linear
        return (state["linear.weight"], state.get("linear.bias")), "stanford", meta
    return (None, None), "plain", meta


def _calibration_feeds(tokenizer: Any, names: Sequence[str], q_id: int | None, d_id: int | None, q_len: int,
                       d_len: int, attend: bool) -> list[dict[str, np.ndarray]]:
    """Model inputs for measuring activation ranges before int8 quantization: the built-in
    calibration texts as ColBERT queries ([MASK]-padded) and documents, one text per batch."""
    feeds = []
    for q, d in CALIBRATION_PAIRS:
        for text, marker, length, is_query in ((q, q_id, q_len, True), (d, d_id, d_len, False)):
            head = [tokenizer.cls_token_id] + ([] if marker is None else [marker])
            body = tokenizer(text, add_special_tokens=False)["input_ids"][:length - len(head) - 1]
            ids = head + body + [tokenizer.sep_token_id]
            mask = [1] * len(ids)
            if is_query:
                pad = length - len(ids)
                ids, mask = ids + [tokenizer.mask_token_id] * pad, mask + [int(attend)] * pad
            arrays = {"input_ids": np.array([ids], np.int64), "attention_mask": np.array([mask], np.int64),
                      "token_type_ids": np.zeros((1, len(ids)), np.int64)}
            feeds.append({n: arrays[n] for n in names})
    return feeds


def export_colbert_encoder(checkpoint_or_id: str | os.PathLike, out_dir: str | os.PathLike, *,
                           quantize: bool | str | None = None, fp16: bool = False, opset: int = 17) -> Path:
    """Export a ColBERT checkpoint to a token-level ONNX encoder that :class:`ColBERTEncoder` loads.

    Layouts recognised in the checkpoint directory (or hub id):

    - PyLate: sentence-transformers modules (modules.json) with a Dense layer; markers, query
      and document lengths, expansion attention and skiplist from config_sentence_transformers.json
      (defaults "[Q] ", "[D] ", 32, 180, punctuation);
    - Stanford ColBERT: a BertModel whose weights come with ``linear.weight``; settings from
      artifact.metadata when present (markers "[unused0]" / "[unused1]");
    - anything else: the bare transformer, exported without a projection (dim = hidden size),
      with "[unused0]" / "[unused1]" markers when the vocabulary has them, else none.

    Writes model.onnx (output ``embeddings``: batch x tokens x dim, not normalised),
    tokenizer.json and config.json (the model config plus a "rank_kernels" section: dim,
    marker tokens and ids, query/document max lengths, skiplist ids, normalisation);
    ``quantize=True`` (or "int8") adds model_quantized.onnx, ``fp16=True`` stores model.onnx
    in float16; ``quantize`` None / False writes no int8 model, any other value raises
    UnknownMethodError. Files are renamed into `out_dir` only when the whole export succeeded.

    The int8 model (``ColBERTEncoder(..., quantized=True)``) quantizes activations per token
    (uint8) and weights per output column (int8, every two adjacent weights bounded to
    |w_2i| + |w_2i+1| <= 128), after moving activation outliers into the weights
    (SmoothQuant-style, migration strength 0.5, measured on built-in English texts): no
    integer product can saturate on any onnxruntime CPU kernel, so the file ranks the same on
    AVX2, AVX-512 VNNI and ARM CPUs (see :func:`rank.onnx._export.quantize_weight`). On a
    MiniLM-L6 PyLate checkpoint, MaxSim over ten SciFact claims' BM25 top 100 follows fp32 at
    a mean Spearman of 0.994.

    >>> export_colbert_encoder("lightonai/colbertv2.0", "colbert-onnx", quantize=True)  # doctest: +SKIP
    """
    quantize = check_precision(quantize, fp16)
    opset = check_positive_int(opset, "opset")
    torch = _onnx.require("torch", "export_colbert_encoder")
    transformers = _onnx.require("transformers", "export_colbert_encoder")
    root = _local_checkpoint(checkpoint_or_id)
    (weight, bias), layout, settings = _projection(root)
    base = load_checkpoint(root, transformers.AutoModel, "ColBERT", attn_implementation="eager")
    tokenizer = load_checkpoint(root, transformers.AutoTokenizer, "ColBERT tokenizer")
    base.eval()
    hidden = int(base.config.hidden_size)
    if weight is not None and (weight.ndim != 2 or weight.shape[1] != hidden):
        raise CorruptFileError(f"{root}: projection weight of shape {tuple(weight.shape)} does not fit the "
                               f"transformer's hidden size {hidden}")
    dim = hidden if weight is None else int(weight.shape[0])

    if layout == "pylate":
        q_marker, d_marker = settings.get("query_prefix", "[Q] "), settings.get("document_prefix", "[D] ")
        q_len, d_len = settings.get("query_length", 32), settings.get("document_length", 180)
        attend = bool(settings.get("attend_to_expansion_tokens", False))
        skip_words = settings.get("skiplist_words", list(string.punctuation))
    else:
        q_marker, d_marker = settings.get("query_token_id", "[unused0]"), settings.get("doc_token_id", "[unused1]")
        q_len, d_len = settings.get("query_maxlen", 32), settings.get("doc_maxlen", 180)
        attend = bool(settings.get("attend_to_mask_tokens", False))
        skip_words = list(string.punctuation) if settings.get("mask_punctuation", True) else []
    unk = tokenizer.unk_token_id
    vocab = tokenizer.get_vocab()

    def token_id(tok: Any) -> int | None:
        return vocab.get(tok) if isinstance(tok, str) else None

    q_id, d_id = token_id(q_marker), token_id(d_marker)
    if (q_id is None) != (d_id is None):
        raise CorruptFileError(f"{root}: only one of the markers {q_marker!r} / {d_marker!r} is in the vocabulary")
    if q_id is None and layout != "plain":
        raise CorruptFileError(f"{root}: the marker tokens {q_marker!r} / {d_marker!r} are not in the vocabulary")
    skip_ids = sorted({i for w in skip_words if (i := token_id(w)) is not None and i != unk})
    if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None or tokenizer.mask_token_id is None:
        raise CorruptFileError(f"{root}: the tokenizer lacks a [CLS], [SEP] or [MASK] token")
    limit = int(getattr(base.config, "max_position_embeddings", 512))
    if base.config.model_type in ("roberta", "xlm-roberta", "camembert"):
        limit -= 2
    q_len, d_len = min(int(q_len), limit), min(int(d_len), limit)

    sample = tokenizer(["a query", "a longer document text"], padding=True, return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]

    class _Tokens(torch.nn.Module):  # type: ignore[name-defined]
        def __init__(self, inner: Any, w: Any, b: Any):
            super().__init__()
            self.inner = inner
            self.linear = None
            if w is not None:
                self.linear = torch.nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
                with torch.no_grad():
                    self.linear.weight.copy_(w)
                    if b is not None:
                        self.linear.bias.copy_(b)

        def forward(self, *tensors: Any) -> Any:
            h = self.inner(**dict(zip(names, tensors))).last_hidden_state
            return h if self.linear is None else self.linear(h)

    module = _Tokens(base, weight, bias).eval()
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["embeddings"] = {0: "batch", 1: "sequence"}
    out = Path(out_dir)
    with staged_dir(out) as tmp:
        export_module(module, tuple(sample[n] for n in names), tmp / "model.onnx", input_names=names,
                      output_names=["embeddings"], dynamic_axes=axes, opset=opset)
        fused = fuse_transformer(tmp / "model.onnx", base.config)
        feeds = None
        if quantize == "int8":
            feeds = _calibration_feeds(tokenizer, names, q_id, d_id, int(q_len), int(d_len), attend)
        # migration strength 0.5: on MiniLM-L6 ColBERT a tenth less embedding error than 0.7 (best of 0.3-0.9)
        files = finish_model(tmp, quantize=quantize, fp16=fp16, calibration=feeds, smooth_alpha=0.5)
        save_tokenizer(tokenizer, tmp, "ColBERT")
        write_config(base.config, tmp, {
            "kind": "colbert", "format": 1, "layout": layout, "dim": dim, "projection": weight is not None,
            "query_marker": q_marker if q_id is not None else None, "document_marker": d_marker if d_id is not None else None,
            "query_marker_id": q_id, "document_marker_id": d_id, "cls_token_id": tokenizer.cls_token_id,
            "sep_token_id": tokenizer.sep_token_id, "mask_token_id": tokenizer.mask_token_id,
            "pad_token_id": tokenizer.pad_token_id, "query_maxlen": int(q_len), "doc_maxlen": int(d_len),
            "max_length": limit, "attend_to_expansion_tokens": attend, "skiplist_ids": skip_ids,
            "skiplist_words": [w for w in skip_words if token_id(w) is not None], "normalize": True,
            "inputs": names, "files": files, "fp16": fp16, "quantize": quantize, "opset": opset, "fused": fused})
    return out
