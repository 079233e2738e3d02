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
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from rank.errors import InvalidValueError, UnknownMethodError
from rank.errors import ModelNotFoundError
from rank.rerank._onnx import require

__all__ = ["check_precision", "load_checkpoint", "export_module", "finish_model", "staged_dir",
           "save_tokenizer", "write_config", "fuse_transformer", "first_token_only", "smooth_activations",
           "split_skip_layer_norm", "per_token_gelu_inputs"]

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
        split_skip_layer_norm(model.model)
        model.save_model_to_file(os.fspath(path))
    except Exception:  # an unknown pattern leaves the plain, still correct graph
        return False
    return True


def split_skip_layer_norm(model: Any) -> int:
    """Replace each SkipLayerNormalization node by Add (input + skip [+ bias]) and a standard
    LayerNormalization, in place; returns the number replaced.

    Same result up to float rounding, and faster: onnxruntime's CPU SkipLayerNormalization
    kernel took 2.3x the time of the two Adds and LayerNormalization on (8, 120, 384) float32
    (onnxruntime 1.32), about a tenth of an int8 MiniLM run. Needs opset 17 (skipped below).
    Nodes whose extra outputs (mean, inverse deviation) are read are left alone.
    """
    from onnx import helper

    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 17:
        return 0
    read = _read(graph)
    nodes, count = [], 0
    for n in graph.node:
        if n.op_type != "SkipLayerNormalization" or any(o in read for o in n.output[1:3] if o):
            nodes.append(n)
            continue
        eps = next((helper.get_attribute_value(a) for a in n.attribute if a.name == "epsilon"), 1e-12)
        x, skip, gamma = n.input[0], n.input[1], n.input[2]
        beta = n.input[3] if len(n.input) > 3 and n.input[3] else ""
        bias = n.input[4] if len(n.input) > 4 and n.input[4] else ""
        total = n.output[3] if len(n.output) > 3 and n.output[3] else f"{n.name}_sum"
        summed = f"{n.name}_input_skip" if bias else total
        nodes.append(helper.make_node("Add", [x, skip], [summed], name=f"{n.name}_add"))
        if bias:
            nodes.append(helper.make_node("Add", [summed, bias], [total], name=f"{n.name}_add_bias"))
        nodes.append(helper.make_node("LayerNormalization", [total, gamma] + ([beta] if beta else []), [n.output[0]],
                                      name=n.name, axis=-1, epsilon=float(eps)))
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return count


#: Operators that act on each token separately (given constant weights), so that the rows of
#: the first token can be computed alone.
_TOKENWISE = {"MatMul", "Add", "Sub", "Mul", "Div", "BiasGelu", "Gelu", "FastGelu", "Erf", "Tanh", "Relu",
              "Sigmoid", "SkipLayerNormalization", "LayerNormalization", "SkipSimplifiedLayerNormalization",
              "SimplifiedLayerNormalization", "Cast", "Identity"}


def _constants(graph: Any) -> dict[str, Any]:
    """Initializers and Constant-node outputs of `graph`, by name, as TensorProtos (not copied)."""
    found = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            found[node.output[0]] = node.attribute[0].t
    return found


def _links(graph: Any) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """The node producing each tensor name, and the nodes reading each, in graph order."""
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in graph.node:
        for x in n.input:
            consumers.setdefault(x, []).append(n)
    return producer, consumers


def _read(graph: Any) -> set[str]:
    """Names read by some node or returned by the graph."""
    return {x for n in graph.node for x in n.input} | {o.name for o in graph.output}


def _topological(graph: Any) -> None:
    """Reorder graph.node so every node follows the producers of its inputs (Kahn's algorithm)."""
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        rest = []
        for node in pending:
            if all(x in ready for x in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ValueError("graph has a cycle or an undefined input")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)


def first_token_only(model: Any) -> list[str]:
    """Run the layers after the last token-mixing operator on the first token only (in place).

    A classification head reads the first token's final state (BERT's pooler, RoBERTa's
    ``features[:, 0]``), so after the last attention only that token's row is needed. The
    rows are selected just after the last attention, and the output projection, feed-forward
    and layer norms of the last layer then run on one row per pair instead of every token (for a
    six-layer model, about an eighth of the matrix products). Exact: the kept rows are computed
    as before. Returns the names of the nodes that now see one row per pair (empty, graph
    untouched, when the pattern is not found). O(nodes).
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    consts = _constants(graph)
    producer, consumers = _links(graph)
    outputs = {o.name for o in graph.output}

    def picks_first(n: Any) -> bool:
        axis = next((helper.get_attribute_value(a) for a in n.attribute if a.name == "axis"), 0)
        if n.op_type != "Gather" or axis != 1 or len(n.input) < 2 or n.input[1] not in consts:
            return False
        idx = numpy_helper.to_array(consts[n.input[1]])
        return idx.ndim == 0 and int(idx) == 0

    def activations(n: Any) -> list[str]:
        return [x for x in n.input if x and x not in consts]

    def tokenwise(n: Any) -> bool:
        if n.op_type not in _TOKENWISE or any(o in outputs for o in n.output):
            return False
        if any(len(consts[x].dims) > 1 for x in n.input if x in consts and not (n.op_type == "MatMul" and x == n.input[1])):
            return False  # a per-position constant (e.g. position embeddings) would not broadcast
        if n.op_type == "MatMul" and (n.input[1] not in consts or len(consts[n.input[1]].dims) != 2):
            return False
        return bool(activations(n))

    heads = [n for n in graph.node if picks_first(n) and n.input[0] in producer]
    if len(heads) != 1 or len(consumers.get(heads[0].input[0], [])) != 1 or heads[0].input[0] in outputs:
        return []
    gather = heads[0]
    last = producer[gather.input[0]]
    if not tokenwise(last):
        return []
    region = {id(last): last}
    changed = True
    while changed:
        changed = False
        for n in list(region.values()):
            for x in activations(n):
                p = producer.get(x)
                if p is None or id(p) in region or not tokenwise(p):
                    continue
                used_by = [c for o in p.output if o for c in consumers.get(o, [])]
                if all(id(c) in region or c is gather for c in used_by):
                    region[id(p)] = p
                    changed = True
    index = "rank_kernels_first_token"
    graph.initializer.append(numpy_helper.from_array(np.zeros(1, np.int64), index))
    boundary: dict[str, str] = {}
    for n in region.values():
        for i, x in enumerate(n.input):
            if not x or x in consts or (x in producer and id(producer[x]) in region):
                continue
            if x not in boundary:
                boundary[x] = f"{x}_first_token"
                graph.node.append(helper.make_node("Gather", [x, index], [boundary[x]], axis=1,
                                                   name=f"{x}_first_token"))
            n.input[i] = boundary[x]
    rows = {o for n in region.values() for o in n.output}
    kept = [v for v in graph.value_info if v.name not in rows]
    del graph.value_info[:]
    graph.value_info.extend(kept)
    for i, n in enumerate(region.values()):
        n.name = n.name or f"first_token_row_{i}"
    _topological(graph)
    return [n.name for n in region.values()]


def smooth_activations(model: Any, feeds: Iterable[Mapping[str, np.ndarray]], *,
                       alpha: float = 0.7, skip: Iterable[str] = ()) -> int:
    """Move activation outliers into the weights before int8 quantization (in place).

    Transformer activations have a few channels far larger than the rest, and a per-tensor int8
    scale spends its range on them. For each layer-norm output X read by MatMul / Attention
    nodes with a constant weight W (nodes named in `skip` excluded), a channel scale
    ``s = max|X|^alpha / max|W|^(1-alpha)`` is formed from the largest |X| seen while running
    the fp32 model on `feeds` and the largest |W| per input row (the migration rule of
    SmoothQuant, Xiao et al. 2023). X is divided by s (one Mul node per input tensor) and the
    rows of W multiplied by s, which leaves the fp32 products unchanged. As in SmoothQuant,
    only the inputs of the attention and feed-forward input projections are smoothed: on
    MiniLM-L6, smoothing the feed-forward output and attention output inputs as well did not
    rank closer to fp32 and cost time. The default alpha 0.7 ranked best among 0.3-0.9 there.
    Returns the number of tensors smoothed. Cost: one fp32 run of `feeds`, O(weights).
    """
    onnx = require("onnx", "quantizing a model to int8")
    ort = require("onnxruntime", "quantizing a model to int8")
    from onnx import helper, numpy_helper

    graph = model.graph
    skip = set(skip)
    inits = {t.name: t for t in graph.initializer}
    uses: dict[str, int] = {}
    for n in graph.node:
        for x in n.input:
            uses[x] = uses.get(x, 0) + 1
    normalized = {o for n in graph.node if n.op_type.endswith("LayerNormalization") for o in n.output[:1]}
    groups: dict[str, list[Any]] = {}
    for n in graph.node:
        if (n.op_type in ("MatMul", "Attention") and n.name not in skip and len(n.input) > 1
                and n.input[0] in normalized and n.input[1] in inits and uses[n.input[1]] == 1
                and len(inits[n.input[1]].dims) == 2 and inits[n.input[1]].data_type == onnx.TensorProto.FLOAT):
            groups.setdefault(n.input[0], []).append(n)
    if not groups:
        return 0
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    for x in groups:
        if x not in known:
            probe.graph.output.append(helper.make_tensor_value_info(x, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}
    names = list(groups)
    peak: dict[str, np.ndarray] = {}
    for feed in feeds:
        for x, value in zip(names, session.run(names, {k: v for k, v in feed.items() if k in wanted})):
            a = np.abs(value).reshape(-1, value.shape[-1]).max(axis=0)
            peak[x] = a if x not in peak else np.maximum(peak[x], a)
    if not peak:
        return 0
    for x, nodes in groups.items():
        weights = [numpy_helper.to_array(inits[n.input[1]]) for n in nodes]
        w_peak = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)
        scale = np.maximum(peak[x], 1e-5) ** alpha / np.maximum(w_peak, 1e-5) ** (1 - alpha)
        scale = np.clip(scale, 1e-2, 1e2).astype(np.float32)
        for n, w in zip(nodes, weights):
            inits[n.input[1]].CopyFrom(numpy_helper.from_array(w * scale[:, None], n.input[1]))
        inverse, smoothed = f"{x}_smooth_scale", f"{x}_smoothed"
        graph.initializer.append(numpy_helper.from_array((1 / scale).astype(np.float32), inverse))
        graph.node.append(helper.make_node("Mul", [x, inverse], [smoothed], name=f"{x}_smooth"))
        for n in nodes:
            n.input[0] = smoothed
    _topological(graph)
    return len(groups)


_GELUS = {"Gelu", "BiasGelu", "FastGelu"}
#: GELU's lowest value (-0.16997 in the erf form, -0.17004 in the tanh form), rounded up in magnitude.
GELU_FLOOR = 0.1701


def per_token_gelu_inputs(model: Any) -> int:
    """Quantize the GELU outputs read by int8 products per token instead of per batch (in place).

    onnxruntime's dynamic quantization gives the whole input of an int8 product one activation
    scale per run, so in a batch the token with the largest value sets the step for every other
    token. This matters most for the feed-forward output projection, whose input is the GELU
    output, four times the hidden width and the most uneven between tokens. For each
    ``DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul`` product (what
    ``quantize_dynamic`` writes) reading a GELU output x, the scale becomes one per row:
    ``s = max(max_j x_j, 0.1701) / 127`` with zero point 128, so GELU's negative values
    (never below -0.1701) fit too. The row quantization is opset 21's blocked ``QuantizeLinear``
    and the product scale ``s * w_scale``; onnxruntime fuses the product, cast and scale back
    into one ``MatMulIntegerToFloat``. The model is converted to opset 21 (onnxruntime >= 1.19
    runs it); when that conversion fails the model is left untouched. A product followed
    directly by a constant bias Add is skipped: onnxruntime folds the bias into the fused
    product and then scales the rows wrongly. (In the transformer exports here the product
    feeds the residual Add first, so the feed-forward output projections are all changed.)

    Returns the number of products changed. Cost: a row maximum per changed input, which
    replaces the per-tensor one; on MiniLM-L6 the int8 run time was unchanged within noise.
    """
    require("onnx", "quantizing a model to int8")
    from onnx import helper, numpy_helper

    converter = require("onnx.version_converter", "quantizing a model to int8")
    if not _gelu_products(model.graph):
        return 0
    try:
        converted = converter.convert_version(model, 21)
    except Exception:  # an operator the converter cannot move to opset 21: keep per-batch scales
        return 0
    model.CopyFrom(converted)
    model.ir_version = max(model.ir_version, 10)
    graph = model.graph
    plans = _gelu_products(graph)
    prefix = "per_token_"
    graph.initializer.extend([
        numpy_helper.from_array(np.array([-1], np.int64), prefix + "last_axis"),
        numpy_helper.from_array(np.array([GELU_FLOOR], np.float32), prefix + "floor"),
        numpy_helper.from_array(np.array([1 / 127], np.float32), prefix + "inv127"),
        numpy_helper.from_array(np.array(128, np.uint8), prefix + "zero_point")])
    quantized: dict[str, tuple[str, str]] = {}
    for product, x, scale, old_scale, w_scale, width in plans:
        if x not in quantized:
            p = f"{x}_{prefix}"
            graph.node.extend([
                helper.make_node("ReduceMax", [x, prefix + "last_axis"], [p + "max"], keepdims=1, name=p + "max"),
                helper.make_node("Max", [p + "max", prefix + "floor"], [p + "range"], name=p + "range"),
                helper.make_node("Mul", [p + "range", prefix + "inv127"], [p + "scale"], name=p + "scale"),
                helper.make_node("Shape", [p + "scale"], [p + "shape"], name=p + "shape"),
                helper.make_node("Expand", [prefix + "zero_point", p + "shape"], [p + "zero_points"],
                                 name=p + "zero_points"),
                helper.make_node("QuantizeLinear", [x, p + "scale", p + "zero_points"], [p + "quantized"],
                                 axis=-1, block_size=width, name=p + "quantize")])
            quantized[x] = (p + "quantized", p + "scale")
        q, s = quantized[x]
        combined = f"{product.output[0]}_{prefix}scale"
        graph.node.append(helper.make_node("Mul", [s, w_scale], [combined], name=combined))
        product.input[0], product.input[2] = q, prefix + "zero_point"
        scale.input[list(scale.input).index(old_scale)] = combined
    _drop_unused(graph)
    _topological(graph)
    return len(plans)


def _gelu_products(graph: Any) -> list[tuple[Any, str, Any, str, str, int]]:
    """The dynamically quantized products reading a GELU output, as (MatMulInteger node, GELU
    output, output-scale Mul node, its per-tensor scale input, weight scale, input width)."""
    producer, consumers = _links(graph)
    consts = _constants(graph)

    def only_consumer(name: str, op: str) -> Any:
        found = consumers.get(name, [])
        return found[0] if len(found) == 1 and found[0].op_type == op else None

    plans = []
    for n in graph.node:
        if n.op_type != "MatMulInteger" or len(n.input) < 3:
            continue
        dql = producer.get(n.input[0])
        if dql is None or dql.op_type != "DynamicQuantizeLinear" or n.input[2] != dql.output[2]:
            continue
        source, weight = producer.get(dql.input[0]), consts.get(n.input[1])
        if source is None or source.op_type not in _GELUS or weight is None or len(weight.dims) != 2:
            continue
        cast = only_consumer(n.output[0], "Cast")
        scale = only_consumer(cast.output[0], "Mul") if cast is not None else None
        if scale is None:
            continue
        old_scale = next((x for x in scale.input if x != cast.output[0]), "")
        combined = producer.get(old_scale)
        if combined is None or combined.op_type != "Mul" or dql.output[1] not in combined.input:
            continue
        w_scale = next((x for x in combined.input if x != dql.output[1]), dql.output[1])
        if w_scale not in consts or any(c.op_type == "Add" and any(x in consts for x in c.input)
                                        for c in consumers.get(scale.output[0], [])):
            # onnxruntime (1.32) folds a constant bias Add into the fused product and then
            # applies per-row scales wrongly (1-4% off): such products keep per-batch scales.
            continue
        plans.append((n, dql.input[0], scale, old_scale, w_scale, int(weight.dims[0])))
    return plans


def _drop_unused(graph: Any) -> None:
    """Remove nodes none of whose outputs is read by another node or is a graph output."""
    while True:
        read = _read(graph)
        keep = [n for n in graph.node if any(o in read for o in n.output if o)]
        if len(keep) == len(graph.node):
            return
        del graph.node[:]
        graph.node.extend(keep)


def finish_model(out: Path, *, quantize: str | None, fp16: bool,
                 calibration: Sequence[Mapping[str, np.ndarray]] | None = None,
                 keep_fp32: Iterable[str] = ()) -> list[str]:
    """Apply the precision options to the fp32 ``out/model.onnx``; returns the files written.

    fp16: model.onnx is rewritten with float16 weights and compute, float32 inputs and
    outputs. int8: model.onnx stays fp32 and model_quantized.onnx holds dynamically quantized
    MatMul / Gemm / Attention nodes (int8 weights per output channel, uint8 activations
    quantized per batch, GELU outputs per token: :func:`per_token_gelu_inputs`), except the
    nodes named in `keep_fp32`. With `calibration` (model input batches) the activations are
    first smoothed (:func:`smooth_activations`).
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
        source = path
        if calibration:
            onnx = require("onnx", "quantizing a model to int8")
            model = onnx.load(os.fspath(path))
            smooth_activations(model, calibration, skip=keep_fp32)
            source = out / "smoothed.onnx"
            onnx.save(model, os.fspath(source))
        try:
            q.quantize_dynamic(os.fspath(source), os.fspath(out / QUANTIZED_NAME),
                               weight_type=q.QuantType.QInt8, per_channel=True,
                               op_types_to_quantize=["MatMul", "Gemm", "Attention"],
                               nodes_to_exclude=list(keep_fp32),
                               extra_options={"DefaultTensorType": 1})  # float, for contrib-op outputs
        finally:
            if source != path:
                source.unlink(missing_ok=True)
        onnx = require("onnx", "quantizing a model to int8")
        model = onnx.load(os.fspath(out / QUANTIZED_NAME))
        if per_token_gelu_inputs(model):
            onnx.save(model, os.fspath(out / QUANTIZED_NAME))
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
