"""Shared ONNX Runtime plumbing for the model-based rerankers (cross-encoder, ColBERT encoder).

Everything here imports onnxruntime, tokenizers and huggingface-hub lazily, so ``import rank``
never loads them. The pieces:

- :func:`require` imports an optional dependency or raises MissingDependencyError;
- :func:`resolve_model_dir` turns a local directory or a hub id into a directory holding the
  files a model needs (through the huggingface-hub cache; HF_HUB_OFFLINE is honoured);
- :func:`make_engine` builds an onnxruntime inference object with graph optimisation, a thread count and
  providers, turning a corrupt file into CorruptFileError;
- :func:`load_tokenizer` reads tokenizer.json with padding and truncation switched off (the
  callers pad and truncate themselves);
- :func:`length_batches` is the length bucketing shared by every encoder: sort by token count,
  cut into batches, so each batch is padded only to its own longest entry;
- :class:`OnnxRunner` feeds padded id batches to an onnxruntime model with the inputs its graph takes.
"""
from __future__ import annotations

import importlib
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from rank._validate import check_positive_int
from rank.errors import (CorruptFileError, DTypeError, Int8SaturationWarning, InvalidValueError, MissingDependencyError,
                         ModelNotFoundError)

__all__ = ["ModelNotFoundError", "require", "resolve_model_dir", "make_engine", "load_tokenizer",
           "length_batches", "OnnxRunner", "read_json", "check_texts", "pad_token_id", "check_int8_model"]

#: The optional dependency behind each module this package imports lazily.
_EXTRAS = {"onnxruntime": "onnx", "tokenizers": "onnx", "huggingface_hub": "onnx",
           "torch": "export", "transformers": "export", "onnx": "export"}

#: Model input names the encoders know how to fill.
KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def require(module: str, purpose: str = "this feature") -> Any:
    """Import `module` or raise MissingDependencyError naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        extra = _EXTRAS.get(module.split(".")[0], "onnx")
        raise MissingDependencyError(
            f"{purpose} needs the Python package {module.split('.')[0]!r} ({e}): "
            f"install rank-kernels[{extra}]") from None


def read_json(path: Path) -> dict:
    """A JSON object from `path`; CorruptFileError when it is not one."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise CorruptFileError(f"{path}: not a readable JSON file ({e})") from None
    if not isinstance(data, dict):
        raise CorruptFileError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _first(root: Path, names: Sequence[str]) -> Path | None:
    for name in names:
        if (root / name).is_file():
            return root / name
    return None


def resolve_model_dir(name_or_path: str | os.PathLike, model_files: Sequence[str], *,
                      extra_files: Sequence[str] = (), what: str = "model") -> tuple[Path, Path]:
    """(directory, model file) for a local directory or a hub id.

    A local directory must hold one of `model_files` (tried in order, at its top or in an
    ``onnx/`` subfolder) and tokenizer.json. Anything else is taken as a hub id and fetched
    through huggingface-hub's cache with only those files (plus `extra_files` when present);
    with HF_HUB_OFFLINE=1 only the cache is read. A model that cannot be found raises
    ModelNotFoundError naming the files looked for and where.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise InvalidValueError(f"name_or_path: expected a directory or a hub id string, got {type(name_or_path).__name__}")
    wanted = " or ".join(model_files)
    candidates = [f for name in model_files for f in (name, f"onnx/{name}")]
    path = Path(name_or_path).expanduser()
    text = os.fspath(name_or_path)
    if path.exists() or isinstance(name_or_path, os.PathLike) or not _HUB_ID.fullmatch(text):
        if not path.is_dir():
            raise ModelNotFoundError(f"{what} directory {path} does not exist or is not a directory "
                                     f"(expected a directory holding {wanted} and tokenizer.json)")
        model = _first(path, candidates)
        if model is None:
            raise ModelNotFoundError(f"{what}: no {wanted} in {path} (looked at its top and in onnx/)")
        if not (path / "tokenizer.json").is_file():
            raise ModelNotFoundError(f"{what}: no tokenizer.json in {path}")
        return path, model
    hub = require("huggingface_hub", f"loading the {what} {name_or_path!r} from the hub")
    repo = text
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    patterns = list(candidates) + ["tokenizer.json", "config.json", *extra_files]
    try:
        local = Path(hub.snapshot_download(repo, allow_patterns=patterns, local_files_only=offline))
    except Exception as e:  # offline cache miss, unknown repo, no network: one clear message
        where = "the huggingface-hub cache (HF_HUB_OFFLINE is set)" if offline else "the hub or its cache"
        raise ModelNotFoundError(
            f"{what} {repo!r}: no such local directory, and not found in {where}; looked for {wanted} "
            f"and tokenizer.json ({type(e).__name__}: {e})") from None
    model = _first(local, candidates)
    if model is None or not (local / "tokenizer.json").is_file():
        missing = wanted if model is None else "tokenizer.json"
        raise ModelNotFoundError(f"{what} {repo!r}: the hub repository (cached at {local}) has no {missing}")
    return local, model


def make_engine(model_path: Path, *, providers: Sequence[Any] | None = None,
                 intra_op_threads: int | None = None) -> Any:
    """An onnxruntime inference object for `model_path`, with full graph optimisation.

    `providers` defaults to the CPU provider; requested providers that this onnxruntime build
    lacks are left out (CPU always remains as the fallback). `intra_op_threads` sets the
    threads one run may use (None: onnxruntime's default, every core). A file that is not a
    valid ONNX model raises CorruptFileError.
    """
    ort = require("onnxruntime", "running ONNX models")
    threads = check_positive_int(intra_op_threads, "intra_op_threads", allow_none=True)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.inter_op_num_threads = 1
    if threads is not None:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    available = set(ort.get_available_providers())
    if providers is None:
        chosen: list[Any] = ["CPUExecutionProvider"]
    else:
        if isinstance(providers, str):
            providers = [providers]
        chosen = [p for p in providers if (p[0] if isinstance(p, tuple) else p) in available]
        if not any((p[0] if isinstance(p, tuple) else p) == "CPUExecutionProvider" for p in chosen):
            chosen.append("CPUExecutionProvider")
    try:
        return ort.InferenceSession(os.fspath(model_path), opts, providers=chosen)
    except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
        raise CorruptFileError(f"{model_path}: not a loadable ONNX model ({type(e).__name__}: {e})") from None


def check_int8_model(engine: Any, model_path: Path, command: str) -> bool:
    """Warn (Int8SaturationWarning) when an int8 model may saturate on some CPUs; True if safe.

    A file written by this version's export carries the int8 scheme in its metadata and is
    accepted at once. Any other file (an older export, another tool's) is checked from its
    weights (:func:`rank.onnx._export.product_bounds`, needs the ``onnx`` package): if an
    integer product can exceed the int16 pair sums of AVX2 CPUs without VNNI, or when the
    weights cannot be read, a warning names `command`, the export call that writes a safe
    file. Never silent, never an error: the model still loads and runs. O(weights) for a
    file without the metadata, O(1) otherwise.
    """
    from rank.onnx._export import INT8_SCHEME, SCHEME_KEY, product_bounds

    try:
        meta = dict(engine.get_modelmeta().custom_metadata_map)
    except Exception:
        meta = {}
    if meta.get(SCHEME_KEY) == INT8_SCHEME:
        return True
    try:
        onnx = importlib.import_module("onnx")
        bounds = product_bounds(onnx.load(os.fspath(model_path)))
    except Exception as e:
        detail = (f"it was not written by this version's export, and its weights could not be checked "
                  f"({type(e).__name__}: {e})")
    else:
        bad = [b for b in bounds if not b["fits"]]
        if not bad:
            return True
        worst = max((b["bound"] for b in bad if b["bound"] is not None), default=None)
        detail = (f"{len(bad)} of its {len(bounds)} integer products can overflow the 16-bit pair sums of "
                  f"x86-64 CPUs without AVX-512 VNNI" + (f" (largest pair sum {worst} > 32767)" if worst else "")
                  + ", where its scores then drift far from fp32")
    warnings.warn(f"{model_path}: int8 model from an older export or another tool: {detail}. Re-export it "
                  f"with this version: {command}", Int8SaturationWarning, stacklevel=3)
    return False


def load_tokenizer(path: Path) -> Any:
    """tokenizers.Tokenizer from tokenizer.json, with its own padding and truncation off."""
    tokenizers = require("tokenizers", "tokenizing text")
    try:
        tok = tokenizers.Tokenizer.from_file(os.fspath(path))
    except Exception as e:
        raise CorruptFileError(f"{path}: not a readable tokenizer.json ({e})") from None
    tok.no_padding()
    tok.no_truncation()
    return tok


def pad_token_id(tokenizer: Any, config: dict) -> int:
    """The padding id: the exported config's, else the model config's, else the tokenizer's."""
    for key in ("pad_token_id",):
        if isinstance(config.get(key), int):
            return int(config[key])
    for token in ("[PAD]", "<pad>", "<|pad|>"):
        i = tokenizer.token_to_id(token)
        if i is not None:
            return int(i)
    return 0


def check_texts(texts: Any, name: str) -> list[str]:
    """`texts` as a list of str; a bare string raises InvalidValueError, a non-string entry DTypeError."""
    if isinstance(texts, (str, bytes)):
        raise InvalidValueError(f"{name}: expected a sequence of strings, got a single {type(texts).__name__}")
    try:
        items = list(texts)
    except TypeError:
        raise InvalidValueError(f"{name}: expected a sequence of strings, got {type(texts).__name__}") from None
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise DTypeError(f"{name}[{i}]: expected a string, got {type(t).__name__}")
    return items


def length_batches(lengths: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Indices of the entries, sorted by length (stable), cut into batches of `batch_size`.

    Each batch is then padded only to its own longest entry, so total padding is minimal
    for the given batch size. O(n log n).
    """
    order = np.argsort(lengths, kind="stable")
    for start in range(0, order.shape[0], batch_size):
        yield order[start:start + batch_size]


class OnnxRunner:
    """Feeds batches of token ids to an onnxruntime model, with only the inputs its graph declares.

    Thread-safe: `run` keeps no state between calls, and onnxruntime's ``run`` releases the
    GIL, so many Python threads may share one runner.
    """

    def __init__(self, engine: Any, pad_id: int, model_path: Path):
        self.engine = engine
        self.pad_id = int(pad_id)
        self.inputs: dict[str, Any] = {}
        for inp in engine.get_inputs():
            if inp.name not in KNOWN_INPUTS:
                raise CorruptFileError(
                    f"{model_path}: the model takes an input {inp.name!r}; expected only "
                    f"{', '.join(KNOWN_INPUTS)}")
            self.inputs[inp.name] = np.int32 if inp.type == "tensor(int32)" else np.int64
        if "input_ids" not in self.inputs:
            raise CorruptFileError(f"{model_path}: the model does not take input_ids")
        self.output = engine.get_outputs()[0].name

    def run(self, ids: Sequence[np.ndarray], type_ids: Sequence[np.ndarray] | None = None,
            masks: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """First output for rows `ids` (1-D int arrays), right-padded to the longest row.

        `masks` (optional) replaces the all-ones attention of the real tokens.
        """
        n = len(ids)
        width = max(len(r) for r in ids)
        feed_ids = np.full((n, width), self.pad_id, np.int64)
        attention = np.zeros((n, width), np.int64)
        tt = np.zeros((n, width), np.int64) if "token_type_ids" in self.inputs else None
        for i, row in enumerate(ids):
            k = len(row)
            feed_ids[i, :k] = row
            attention[i, :k] = 1 if masks is None else masks[i]
            if tt is not None and type_ids is not None:
                tt[i, :k] = type_ids[i]
        arrays = {"input_ids": feed_ids, "attention_mask": attention}
        if tt is not None:
            arrays["token_type_ids"] = tt
        feed = {k: arrays[k].astype(t, copy=False) for k, t in self.inputs.items()}
        return self.engine.run([self.output], feed)[0]
