"""Exporting PyTorch checkpoints to the ONNX directories the encoders load.

Needs the ``export`` extra (torch, transformers) plus onnx and onnxruntime for fp16 / int8
conversion. Everything is imported lazily. A directory is written atomically: files are
built in a temporary sibling directory and renamed into `out_dir` only when all succeeded,
so a failed export never leaves a half-written model behind.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from rank.errors import InvalidValueError, UnknownMethodError
from rank.rerank._onnx import ModelNotFoundError, require

__all__ = ["check_precision", "load_checkpoint", "export_module", "finish_model", "staged_dir",
           "save_tokenizer", "write_config", "fuse_transformer"]

#: Name of the int8 model beside model.onnx (the name Optimum-style hub repositories use too).
QUANTIZED_NAME = "model_quantized.onnx"


def check_precision(quantize: str | None, fp16: bool) -> None:
    """Validate the quantize / fp16 export options."""
    if quantize not in (None, "int8"):
        raise UnknownMethodError(f"quantize: expected None or 'int8', got {quantize!r}")
    if not isinstance(fp16, bool):
        raise InvalidValueError(f"fp16: expected a bool, got {fp16!r}")
    if fp16 and quantize is not None:
        raise InvalidValueError("fp16=True and quantize='int8' are exclusive: int8 quantizes the fp32 graph")


def load_checkpoint(checkpoint_or_id: str | os.PathLike, loader: Any, what: str, **kwargs: Any) -> Any:
    """`loader.from_pretrained(checkpoint_or_id)` in eval mode; ModelNotFoundError when absent."""
    try:
        return loader.from_pretrained(os.fspath(checkpoint_or_id), **kwargs)
    except (OSError, ValueError) as e:
        raise ModelNotFoundError(f"{what} checkpoint {os.fspath(checkpoint_or_id)!r} could not be loaded "
                                 f"as a local directory or hub id ({type(e).__name__}: {e})") from None


@contextlib.contextmanager
def staged_dir(out_dir: str | os.PathLike) -> Iterator[Path]:
    """A temporary directory beside `out_dir`; on success its files replace those in `out_dir`."""
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
    try:
        yield tmp
        for item in sorted(tmp.rglob("*")):
            if item.is_file():
                dest = out / item.relative_to(tmp)
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(item, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def export_module(module: Any, args: tuple, path: Path, *, input_names: Sequence[str],
                  output_names: Sequence[str], dynamic_axes: Mapping[str, Mapping[int, str]],
                  opset: int) -> None:
    """torch.onnx.export of `module` (eval, no grad) to one self-contained file at `path`.

    The TorchScript-based exporter is used: it is fast, keeps the dynamic axes and produces the
    attention pattern onnxruntime's graph optimiser fuses.
    """
    torch = require("torch", "exporting a model")
    module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, os.fspath(path), input_names=list(input_names),
                          output_names=list(output_names), dynamic_axes=dict(dynamic_axes),
                          opset_version=int(opset), do_constant_folding=True, dynamo=False)


#: transformers model types whose attention / layer-norm / GELU patterns onnxruntime can fuse.
_FUSABLE = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "camembert": "bert",
            "distilbert": "bert", "electra": "bert", "mpnet": "bert", "deberta-v2": "bert"}


def fuse_transformer(path: Path, model_config: Any) -> bool:
    """Fuse attention, skip layer norm and bias GELU in ``path`` in place (onnxruntime's
    transformer optimizer). Returns False (model untouched) when the architecture is not one
    it knows or the fusion fails; the result runs only on onnxruntime (contrib operators).
    """
    kind = _FUSABLE.get(getattr(model_config, "model_type", ""))
    heads = getattr(model_config, "num_attention_heads", None)
    hidden = getattr(model_config, "hidden_size", None)
    if kind is None or not isinstance(heads, int) or not isinstance(hidden, int):
        return False
    try:
        opt = require("onnxruntime.transformers.optimizer", "fusing transformer operators")
        import logging

        quiet = logging.getLogger("onnxruntime.transformers")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            model = opt.optimize_model(os.fspath(path), model_type=kind, num_heads=heads, hidden_size=hidden,
                                       opt_level=0)
        finally:
            quiet.setLevel(level)
        model.save_model_to_file(os.fspath(path))
    except Exception:  # an unknown pattern leaves the plain, still correct graph
        return False
    return True


def finish_model(out: Path, *, quantize: str | None, fp16: bool) -> list[str]:
    """Apply the precision options to the fp32 ``out/model.onnx``; returns the files written.

    fp16: model.onnx is rewritten with float16 weights and compute, float32 inputs and
    outputs. int8: model.onnx stays fp32 and model_quantized.onnx holds dynamically quantized
    MatMul / Gemm / Attention nodes (int8 weights per output channel, uint8 activations
    quantized per batch).
    """
    path = out / "model.onnx"
    written = ["model.onnx"]
    if fp16:
        onnx = require("onnx", "converting a model to float16")
        f16 = require("onnxruntime.transformers.float16", "converting a model to float16")
        model = onnx.load(os.fspath(path))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = f16.convert_float_to_float16(model, keep_io_types=True)
        onnx.save(model, os.fspath(path))
    if quantize == "int8":
        q = require("onnxruntime.quantization", "quantizing a model to int8")
        q.quantize_dynamic(os.fspath(path), os.fspath(out / QUANTIZED_NAME),
                           weight_type=q.QuantType.QInt8, per_channel=True,
                           op_types_to_quantize=["MatMul", "Gemm", "Attention"],
                           extra_options={"DefaultTensorType": 1})  # float, for contrib-op outputs
        written.append(QUANTIZED_NAME)
    return written


def save_tokenizer(tokenizer: Any, out: Path, what: str) -> None:
    """Write tokenizer.json of a transformers fast tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise InvalidValueError(f"{what}: the checkpoint's tokenizer is not a fast (tokenizers) tokenizer, "
                                "which the ONNX encoders need")
    backend.save(os.fspath(out / "tokenizer.json"))


def write_config(model_config: Any, out: Path, section: dict) -> None:
    """config.json: the transformers model config plus our settings under "rank_kernels"."""
    data = model_config.to_dict() if model_config is not None else {}
    data["rank_kernels"] = section
    with open(out / "config.json", "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True, default=str)
