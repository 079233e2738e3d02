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

from rank._validate import check_choice
from rank.errors import InvalidValueError
from rank.errors import ModelNotFoundError
from rank.onnx._runtime import read_json, require

#: The file every exported model directory describes itself in, and our section inside it.
CONFIG_NAME = "config.json"
CONFIG_SECTION = "rank_kernels"

__all__ = ["check_precision", "load_checkpoint", "export_module", "finish_model", "staged_dir",
           "save_tokenizer", "write_config", "read_config", "fuse_transformer", "first_token_only", "smooth_activations",
           "split_skip_layer_norm", "unfuse_attention", "quantize_weight", "quantize_products",
           "product_bounds", "u8s8_avx2", "emulate_avx2_products"]

#: Name of the int8 model beside model.onnx (the name Optimum-style hub repositories use too).
QUANTIZED_NAME = "model_quantized.onnx"


#: The accepted values of an export's ``quantize=`` argument.
QUANTIZE_CHOICES = (None, False, True, "int8")


def check_precision(quantize: Any, fp16: bool) -> str | None:
    """Validate the quantize / fp16 export options; returns "int8" or None.

    ``quantize`` is one of None / False (no int8 model), True / "int8" (an int8 model beside
    the fp32 one); anything else raises UnknownMethodError listing these.
    """
    check_choice("quantize", quantize, QUANTIZE_CHOICES)
    if not isinstance(fp16, bool):
        raise InvalidValueError(f"fp16: expected a bool, got {fp16!r}")
    chosen = "int8" if quantize in (True, "int8") else None
    if fp16 and chosen is not None:
        raise InvalidValueError("fp16=True and quantize='int8' are exclusive: int8 quantizes the fp32 graph")
    return chosen


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


def _replace_nodes(graph: Any, nodes: list) -> None:
    """Make `nodes` the graph's nodes and drop the initializers no node reads any more."""
    del graph.node[:]
    graph.node.extend(nodes)
    used = _read(graph)
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


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
                       alpha: float = 0.7, skip: Iterable[str] = (), gelu_outputs: bool = False) -> int:
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
    gelu = {o for n in graph.node if n.op_type in _GELUS for o in n.output[:1]} if gelu_outputs else set()
    normalized |= gelu
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
        # GELU outputs only shrink (s >= 1), so they stay above GELU_FLOOR (their quantization relies on it)
        scale = np.clip(scale, 1.0 if x in gelu else 1e-2, 1e2).astype(np.float32)
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
#: Zero point of the uint8 GELU outputs read by int8 products: per token, the step is
#: max(max x / (255 - 32), 0.1701 / 32), so that [-0.1701, max x] fits with 1.75x finer steps
#: than a symmetric max |x| / 127 (on MiniLM-L6 ColBERT, a quarter less embedding error).
GELU_ZERO = 32

#: Largest |w_2i| + |w_2i+1| of two stored int8 weights that onnxruntime's AVX2 kernel pairs:
#: 255 * 128 = 32640 fits the kernel's saturating int16 sum.
PAIR_LIMIT = 128
#: Key and value of the model metadata entry the int8 export writes into model_quantized.onnx.
SCHEME_KEY = "rank_kernels.int8_scheme"
INT8_SCHEME = "u8-token-s8-pair128-column/1"
_INT16 = (-32768, 32767)
_INT32 = (-2**31, 2**31 - 1)


def unfuse_attention(model: Any) -> int:
    """Split each fused ``Attention`` node (com.microsoft) into its input projection and the rest,
    in place: ``MatMul(x, W_qkv)`` -> ``Split`` into q, k, v -> ``MultiHeadAttention(q, k, v,
    bias, mask)``. Exact (same operations); returns the number split.

    The projection then becomes an ordinary product that :func:`quantize_products` quantizes
    per token like every other (onnxruntime's ``QAttention`` takes one activation scale per
    run). Nodes with inputs or attributes beyond (input, weight, bias, mask index; num_heads)
    are left fused.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    consts = _constants(graph)
    nodes, count = [], 0
    for n in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if (n.op_type != "Attention" or n.domain != "com.microsoft" or set(attrs) != {"num_heads"}
                or not 3 <= len(n.input) <= 4 or n.input[1] not in consts or len(consts[n.input[1]].dims) != 2
                or len(n.output) != 1 or consts[n.input[1]].dims[1] % 3):
            nodes.append(n)
            continue
        x, w, bias = n.input[:3]
        mask = n.input[3] if len(n.input) > 3 else ""
        hidden = int(consts[w].dims[1]) // 3
        base = n.name or f"attention_{count}"
        qkv, sizes = f"{base}_qkv", f"{base}_qkv_sizes"
        graph.initializer.append(numpy_helper.from_array(np.array([hidden] * 3, np.int64), sizes))
        nodes.append(helper.make_node("MatMul", [x, w], [qkv], name=f"{base}_qkv_projection"))
        nodes.append(helper.make_node("Split", [qkv, sizes], [f"{qkv}_q", f"{qkv}_k", f"{qkv}_v"], axis=-1,
                                      name=f"{base}_qkv_split"))
        nodes.append(helper.make_node("MultiHeadAttention", [f"{qkv}_q", f"{qkv}_k", f"{qkv}_v", bias] + ([mask] if mask else []),
                                      list(n.output), domain="com.microsoft", num_heads=int(attrs["num_heads"]),
                                      name=base))
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return count


def quantize_weight(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-column int8 quantization of a (K, N) float matrix whose adjacent pairs of
    rows cannot overflow a 16-bit sum.

    onnxruntime's uint8 x int8 kernel for AVX2 CPUs without VNNI multiplies rows 2i and 2i+1
    together (``vpmaddubsw``) and adds the two products in a saturating int16: with uint8
    activations up to 255, a pair may hold at most |w_2i| + |w_2i+1| <= 128 (255 * 128 =
    32640 <= 32767). Each column's scale is therefore its largest pair sum / 128 (or its
    largest weight / 127 when larger) instead of its largest weight / 127: on MiniLM-L6 the
    products' error is 1.4x that of full 8-bit weights where 7-bit weights (largest / 64,
    ``reduce_range``) give 2x, and no product can saturate. The rare pair
    that rounding lifts above 128 has its element rounded furthest up moved one step back.

    Returns ``(q int8 (K, N), scale float32 (N,))`` with ``w ~ q * scale``. O(K N).
    """
    w = np.asarray(w, np.float32)
    k, n = w.shape
    padded = np.concatenate([w, np.zeros((1, n), np.float32)]) if k % 2 else w
    peak = np.maximum((np.abs(padded[0::2]) + np.abs(padded[1::2])).max(axis=0) / PAIR_LIMIT,
                      np.abs(padded).max(axis=0) / 127)  # a weight alone in its pair: at most 127
    scale = np.where(peak > 0, peak, 1.0).astype(np.float32)
    exact = padded / scale
    q = np.clip(np.rint(exact), -127, 127)
    for _ in range(3):
        over = np.abs(q[0::2]) + np.abs(q[1::2]) > PAIR_LIMIT
        if not over.any():
            break
        lift = np.abs(q) - np.abs(exact)  # how far rounding moved each weight away from zero
        first = lift[0::2] >= lift[1::2]
        for offset, pick in ((0, over & first), (1, over & ~first)):
            half = q[offset::2]
            half[pick] -= np.sign(half[pick])
    return q[:k].astype(np.int8), scale


def quantize_products(model: Any, *, skip: Iterable[str] = ()) -> int:
    """Replace every float ``MatMul`` by a constant (K, N) weight with an int8 product (in place).

    The scheme (``INT8_SCHEME``, which :func:`finish_model` records in the model metadata
    under ``SCHEME_KEY``):

    - weights: int8, symmetric, one scale per output column, with every two rows the AVX2
      kernel pairs bounded to |w_2i| + |w_2i+1| <= 128 (:func:`quantize_weight`), so that no
      integer product can saturate on any onnxruntime CPU kernel (AVX2 u8 x s8 pairs in
      int16, AVX-512 VNNI and ARM dot products in int32);
    - activations: uint8, quantized per token (one scale per row of the product's input,
      ``max |x| / 127``, zero point 128) with opset 21's blocked ``QuantizeLinear``: a token
      with large values no longer sets the step of every other token of the batch (as a
      per-run scale does). GELU outputs, never below -0.1701, use ``max(max x, 0.1701)``;
    - the product is ``MatMulInteger -> Cast -> Mul(row scale * column scale)``, which
      onnxruntime fuses into one ``MatMulIntegerToFloat``.

    Products named in `skip`, and products followed directly by a constant bias ``Add``
    (onnxruntime 1.32 folds the bias into the fused product and then scales the rows wrongly),
    stay float32. The model is converted to opset 21 (onnxruntime >= 1.19 runs it). Returns
    the number of products quantized. O(weights).
    """
    require("onnx", "quantizing a model to int8")
    from onnx import TensorProto, helper, numpy_helper

    converter = require("onnx.version_converter", "quantizing a model to int8")
    skip = set(skip)

    def products(graph: Any) -> list[Any]:
        inits = {t.name: t for t in graph.initializer}
        _, consumers = _links(graph)

        def biased(name: str) -> bool:
            return any(c.op_type == "Add" and any(x in inits for x in c.input) for c in consumers.get(name, []))

        return [n for n in graph.node
                if n.op_type == "MatMul" and n.name not in skip and len(n.input) == 2 and n.input[0] not in inits
                and n.input[1] in inits and len(inits[n.input[1]].dims) == 2
                and inits[n.input[1]].data_type == TensorProto.FLOAT and not biased(n.output[0])]

    if not products(model.graph):
        return 0
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 21:
        try:
            model.CopyFrom(converter.convert_version(model, 21))
        except Exception as e:
            raise InvalidValueError(f"model: int8 quantization needs opset 21 and the graph could not be "
                                    f"converted ({type(e).__name__}: {e})") from None
        model.ir_version = max(model.ir_version, 10)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producer, _ = _links(graph)
    plans = products(graph)
    p = "int8_"
    graph.initializer.extend([
        numpy_helper.from_array(np.array([-1], np.int64), p + "last_axis"),
        numpy_helper.from_array(np.array([1 / (255 - GELU_ZERO)], np.float32), p + "gelu_inv_top"),
        numpy_helper.from_array(np.array([GELU_FLOOR / GELU_ZERO], np.float32), p + "gelu_step"),
        numpy_helper.from_array(np.array(GELU_ZERO, np.uint8), p + "gelu_zero_point"),
        numpy_helper.from_array(np.array([1e-12], np.float32), p + "tiny"),
        numpy_helper.from_array(np.array([1 / 127], np.float32), p + "inv127"),
        numpy_helper.from_array(np.array(128, np.uint8), p + "zero_point")])
    def gelu_like(name: str) -> bool:
        """A GELU output, or one multiplied by constants in (0, 1] (smoothing): never below -GELU_FLOOR."""
        source = producer.get(name)
        if source is not None and source.op_type == "Mul" and len(source.input) == 2:
            const = [i for i in source.input if i in inits]
            if len(const) == 1:
                c = numpy_helper.to_array(inits[const[0]])
                other = producer.get(next(i for i in source.input if i not in inits))
                return bool(c.size and np.all(c > 0) and np.all(c <= 1) and other is not None
                            and other.op_type in _GELUS)
        return source is not None and source.op_type in _GELUS

    rows: dict[str, tuple[str, str, str]] = {}
    replaced = {id(n) for n in plans}
    nodes = [n for n in graph.node if id(n) not in replaced]
    weights_done: dict[str, tuple[str, str]] = {}
    for n in plans:
        x, w = n.input
        width = int(inits[w].dims[0])
        if x not in rows:
            r = f"{x}_{p}"
            if gelu_like(x):  # in [-0.1701, max]: zero point GELU_ZERO
                zero = p + "gelu_zero_point"
                nodes += [helper.make_node("ReduceMax", [x, p + "last_axis"], [r + "max"], keepdims=1, name=r + "max"),
                          helper.make_node("Mul", [r + "max", p + "gelu_inv_top"], [r + "top_step"], name=r + "top_step"),
                          helper.make_node("Max", [r + "top_step", p + "gelu_step"], [r + "scale"], name=r + "scale")]
            else:  # symmetric: max |x| / 127, zero point 128
                zero = p + "zero_point"
                nodes += [helper.make_node("Abs", [x], [r + "abs"], name=r + "abs"),
                          helper.make_node("ReduceMax", [r + "abs", p + "last_axis"], [r + "max"], keepdims=1,
                                           name=r + "max"),
                          helper.make_node("Max", [r + "max", p + "tiny"], [r + "range"], name=r + "range"),
                          helper.make_node("Mul", [r + "range", p + "inv127"], [r + "scale"], name=r + "scale")]
            nodes += [helper.make_node("Shape", [r + "scale"], [r + "shape"], name=r + "shape"),
                      helper.make_node("Expand", [zero, r + "shape"], [r + "zero_points"], name=r + "zero_points"),
                      helper.make_node("QuantizeLinear", [x, r + "scale", r + "zero_points"], [r + "quantized"],
                                       axis=-1, block_size=width, name=r + "quantize")]
            rows[x] = (r + "quantized", r + "scale", zero)
        if w not in weights_done:
            q, scale = quantize_weight(numpy_helper.to_array(inits[w]))
            graph.initializer.extend([numpy_helper.from_array(q, w + "_quantized"),
                                      numpy_helper.from_array(scale, w + "_scale")])
            weights_done[w] = (w + "_quantized", w + "_scale")
        xq, xs, zero = rows[x]
        wq, ws = weights_done[w]
        out = n.output[0]
        base = n.name or out
        nodes += [helper.make_node("MatMulInteger", [xq, wq, zero], [f"{out}_int32"], name=f"{base}_int8"),
                  helper.make_node("Cast", [f"{out}_int32"], [f"{out}_float"], to=TensorProto.FLOAT, name=f"{base}_cast"),
                  helper.make_node("Mul", [xs, ws], [f"{out}_scale"], name=f"{base}_scale"),
                  helper.make_node("Mul", [f"{out}_float", f"{out}_scale"], [out], name=f"{base}_rescale")]
    _replace_nodes(graph, nodes)
    _topological(graph)
    return len(plans)


def _set_metadata(model: Any, key: str, value: str) -> None:
    for entry in model.metadata_props:
        if entry.key == key:
            entry.value = value
            return
    entry = model.metadata_props.add()
    entry.key, entry.value = key, value




#: Integer product operators: op type -> (activation input, weight input, weight layout), the
#: weight layout giving the axis summed over ("rows": (K, N) weights; "transB": a QGemm that
#: may store B as (N, K); "conv": (M, C, *kernel), summed over all but the first axis).
_INTEGER_PRODUCTS = {
    "MatMulInteger": (0, 1, "rows"), "MatMulIntegerToFloat": (0, 1, "rows"),
    "DynamicQuantizeMatMul": (0, 1, "rows"), "QAttention": (0, 1, "rows"), "QLinearMatMul": (0, 3, "rows"),
    "QGemm": (0, 3, "transB"), "ConvInteger": (0, 1, "conv"), "QLinearConv": (0, 3, "conv"),
}
#: Operators that quantize their float input to uint8 themselves.
_QUANTIZE_INSIDE = {"DynamicQuantizeMatMul"}


def _elem_type(graph: Any, name: str, producer: dict[str, Any], consts: dict[str, Any]) -> int | None:
    """ONNX element type of tensor `name` when it can be told without running the graph."""
    from onnx import TensorProto, helper

    if name in consts:
        return int(consts[name].data_type)
    for v in list(graph.input) + list(graph.value_info) + list(graph.output):
        if v.name == name and v.type.tensor_type.elem_type:
            return int(v.type.tensor_type.elem_type)
    p = producer.get(name)
    if p is None:
        return None
    if p.op_type == "DynamicQuantizeLinear":
        return TensorProto.UINT8
    if p.op_type == "QuantizeLinear":
        if len(p.input) > 2 and p.input[2]:
            zp = p.input[2]
            if zp in consts:
                return int(consts[zp].data_type)
            return _elem_type(graph, zp, producer, consts)
        out = next((helper.get_attribute_value(a) for a in p.attribute if a.name == "output_dtype"), 0)
        return int(out) or TensorProto.UINT8
    if p.op_type in ("Expand", "Reshape", "Identity", "Squeeze", "Unsqueeze", "Transpose", "Gather", "Flatten"):
        return _elem_type(graph, p.input[0], producer, consts)
    return None


def product_bounds(model: Any) -> list[dict[str, Any]]:
    """For every integer product node of `model`, the largest pairwise partial sum any
    onnxruntime CPU kernel can form, against the narrowest accumulator it forms it in.

    The narrowest kernel is AVX2 without VNNI: for uint8 activations x int8 weights it
    multiplies rows 2i and 2i+1 of the weight (the adjacent pairs along the summed axis) by
    the matching activations and adds the two products into a saturating int16
    (``vpmaddubsw``) before widening to int32; signed x signed products use the same
    instruction on |a| (so at most 128 x |w| each). uint8 x uint8 products are widened to
    int16 operands and summed in int32 (``vpmaddwd``, ARM ``udot``), and AVX-512 VNNI sums
    four products in int32. So the bound is ``a_max * max(|w_2i| + |w_2i+1|)`` over the
    stored weights (the kernel multiplies the stored values; zero points are applied
    afterwards), compared with int16 for int8 weights or signed activations and with int32
    otherwise. That this is the pairing of the AVX2 kernel is checked by the test suite on
    AVX2 machines (an old, saturating file against :func:`emulate_avx2_products`).

    Returns one dict per product: ``node``, ``op``, ``activation`` and ``weight`` (numpy dtype
    names; activation "unknown" when it cannot be told statically, then taken as uint8),
    ``bound`` (int), ``limit`` (int, the accumulator's largest value) and ``fits`` (bool).
    A product whose weight is not a constant has ``bound`` None and ``fits`` False. O(weights).
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    consts = _constants(graph)
    producer, _ = _links(graph)
    names = {TensorProto.UINT8: "uint8", TensorProto.INT8: "int8"}
    found = []
    for n in graph.node:
        spec = _INTEGER_PRODUCTS.get(n.op_type)
        if spec is None:
            continue
        a_index, w_index, layout = spec
        a_type = TensorProto.UINT8 if n.op_type in _QUANTIZE_INSIDE else _elem_type(graph, n.input[a_index], producer, consts)
        entry: dict[str, Any] = {"node": n.name, "op": n.op_type, "activation": names.get(a_type, "unknown"),
                                 "weight": None, "bound": None, "limit": _INT16[1], "fits": False}
        found.append(entry)
        if len(n.input) <= w_index or n.input[w_index] not in consts:
            continue
        w = numpy_helper.to_array(consts[n.input[w_index]])
        entry["weight"] = str(w.dtype)
        if layout == "conv":
            w = w.reshape(w.shape[0], -1).T
        elif layout == "transB" and any(a.name == "transB" and helper.get_attribute_value(a) for a in n.attribute):
            w = w.T
        w = np.abs(w.astype(np.int64).reshape(w.shape[0], -1))
        if w.shape[0] % 2:
            w = np.concatenate([w, np.zeros((1, w.shape[1]), np.int64)])
        top = w[0::2] + w[1::2]
        a_signed = a_type == TensorProto.INT8
        a_max = 128 if a_signed else 255
        bound = int(a_max * top.max()) if top.size else 0
        limit = _INT16[1] if entry["weight"] == "int8" or a_signed else _INT32[1]
        entry.update(bound=bound, limit=limit, fits=bound <= limit)
    return found


def u8s8_avx2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for uint8 `a` (..., K) and int8 `b` (K, N) as onnxruntime's AVX2 (non-VNNI)
    kernel computes it: the products of each adjacent pair of K (0-1, 2-3, ...) are added
    with int16 saturation (``vpmaddubsw``), and the pair sums then added exactly in int32.

    Returns int64 (..., N) (equal to the int32 result). Only pairs whose weights could
    saturate (255 * (|b_2i| + |b_2i+1|) > 32767) are evaluated pair by pair; the rest of the
    sum is one exact integer matrix product, so the cost is O(M K N) plus O(M) per such pair.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if a.dtype != np.uint8 or b.dtype != np.int8 or b.ndim != 2 or a.shape[-1] != b.shape[0]:
        raise InvalidValueError(f"u8s8_avx2: expected uint8 (..., K) and int8 (K, N), got {a.dtype} {a.shape} "
                                f"and {b.dtype} {b.shape}")
    k = b.shape[0]
    flat = a.reshape(-1, k).astype(np.float64)
    wide = b.astype(np.float64)
    exact = flat @ wide  # exact: |sums| < 2**53
    if k % 2:
        flat = np.concatenate([flat, np.zeros((flat.shape[0], 1))], axis=1)
        wide = np.concatenate([wide, np.zeros((1, wide.shape[1]))], axis=0)
    pairs = np.abs(wide[0::2]) + np.abs(wide[1::2])
    rows, cols = np.nonzero(255 * pairs > _INT16[1])
    for i, j in zip(rows.tolist(), cols.tolist()):
        s = flat[:, 2 * i] * wide[2 * i, j] + flat[:, 2 * i + 1] * wide[2 * i + 1, j]
        exact[:, j] += np.clip(s, *_INT16) - s
    return exact.astype(np.int64).reshape(*a.shape[:-1], b.shape[1])


def emulate_avx2_products(model: Any, *, saturate: bool = True) -> Any:
    """A copy of `model` whose uint8 x int8 products compute what the AVX2 (non-VNNI) kernel
    does (:func:`u8s8_avx2`: int16 saturation of adjacent pairs), on any CPU.

    ``MatMulInteger`` nodes (scalar or absent activation zero point, int8 weight with zero
    point 0) and ``QAttention`` nodes (rewritten as the product, ``Split`` and
    ``MultiHeadAttention``) are replaced by float64 operators: the exact product plus, for
    every (pair, column) whose weights can saturate, the clipped pair sum minus the pair sum.
    Any other integer product raises InvalidValueError. ``saturate=False`` gives the exact
    integer products instead (what VNNI and ARM kernels compute), for comparison. Partial sums
    are float32 where that is exact (max|a - zero point| * sum|w| of each column < 2**24),
    else float64. For testing: it runs slower than the original.
    """
    onnx = require("onnx", "emulating int8 products")
    from onnx import TensorProto, helper, numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    consts = _constants(graph)
    nodes = []
    count = 0

    def const(name: str, value: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(value, name))
        return name

    def product(a: str, a_zp: str, w_name: str, base: str) -> tuple[list[Any], str]:
        w = numpy_helper.to_array(consts[w_name])
        if w.dtype != np.int8 or w.ndim != 2:
            raise InvalidValueError(f"{base}: expected an int8 (K, N) weight, got {w.dtype} {w.shape}")
        k, n = w.shape
        zp = numpy_helper.to_array(consts[a_zp]).astype(np.int64) if a_zp in consts else None
        if zp is not None and zp.size != 1:
            raise InvalidValueError(f"{base}: only a scalar activation zero point is emulated")
        centred = 255 if zp is None else int(max(zp.max(), 255 - zp.min()))
        # float32 holds every partial sum exactly while max|a - zp| * (largest column sum of |w|) < 2**24
        wide = centred * int(np.abs(w.astype(np.int64)).sum(axis=0).max(initial=0)) >= 2**24
        dtype, proto = (np.float64, TensorProto.DOUBLE) if wide else (np.float32, TensorProto.FLOAT)
        wd = w.astype(dtype)
        made = [helper.make_node("Cast", [a], [f"{base}_a"], to=proto)]
        if zp is not None:
            made.append(helper.make_node("Sub", [f"{base}_a", const(f"{base}_zp", zp.reshape(()).astype(dtype))],
                                         [f"{base}_centred"]))
        elif a_zp:  # computed at run time (DynamicQuantizeLinear): a scalar
            made += [helper.make_node("Cast", [a_zp], [f"{base}_zp"], to=proto),
                     helper.make_node("Sub", [f"{base}_a", f"{base}_zp"], [f"{base}_centred"])]
        made.append(helper.make_node("MatMul", [f"{base}_centred" if a_zp else f"{base}_a",
                                                const(f"{base}_w", wd)], [f"{base}_exact"]))
        total = f"{base}_exact"
        padded = np.concatenate([wd, np.zeros((1, n), dtype)]) if k % 2 else wd
        rows, cols = np.nonzero(255 * (np.abs(padded[0::2]) + np.abs(padded[1::2])) > _INT16[1])
        if saturate and rows.size:  # MLAS adds the raw u8 x s8 pairs, then applies the zero point exactly
            i1 = np.minimum(2 * rows + 1, k - 1)
            onehot = np.zeros((rows.size, n), dtype)
            onehot[np.arange(rows.size), cols] = 1
            made += [helper.make_node("Gather", [f"{base}_a", const(f"{base}_i0", (2 * rows).astype(np.int64))],
                                      [f"{base}_a0"], axis=-1),
                     helper.make_node("Gather", [f"{base}_a", const(f"{base}_i1", i1.astype(np.int64))],
                                      [f"{base}_a1"], axis=-1),
                     helper.make_node("Mul", [f"{base}_a0", const(f"{base}_b0", padded[2 * rows, cols])], [f"{base}_p0"]),
                     helper.make_node("Mul", [f"{base}_a1", const(f"{base}_b1", padded[2 * rows + 1, cols])],
                                      [f"{base}_p1"]),
                     helper.make_node("Add", [f"{base}_p0", f"{base}_p1"], [f"{base}_pair"]),
                     helper.make_node("Clip", [f"{base}_pair", const(f"{base}_lo", np.array(_INT16[0], dtype)),
                                               const(f"{base}_hi", np.array(_INT16[1], dtype))], [f"{base}_clipped"]),
                     helper.make_node("Sub", [f"{base}_clipped", f"{base}_pair"], [f"{base}_lost"]),
                     helper.make_node("MatMul", [f"{base}_lost", const(f"{base}_onehot", onehot)], [f"{base}_fix"]),
                     helper.make_node("Add", [f"{base}_exact", f"{base}_fix"], [f"{base}_saturated"])]
            total = f"{base}_saturated"
        return made, total

    for node in graph.node:
        if node.op_type == "MatMulInteger":
            base = f"emulated_{count}"
            if len(node.input) > 3 and node.input[3]:
                zp = consts.get(node.input[3])
                if zp is None or numpy_helper.to_array(zp).any():
                    raise InvalidValueError(f"{node.name}: a non-zero weight zero point is not emulated")
            made, total = product(node.input[0], node.input[2] if len(node.input) > 2 else "", node.input[1], base)
            nodes += made + [helper.make_node("Cast", [total], [node.output[0]], to=TensorProto.INT32)]
        elif node.op_type == "QAttention":
            base = f"emulated_{count}"
            ins = list(node.input) + [""] * (8 - len(node.input))
            x, w, bias, x_scale, w_scale, mask, x_zp, w_zp = ins[:8]
            if w_zp and numpy_helper.to_array(consts[w_zp]).any():
                raise InvalidValueError(f"{node.name}: a non-zero weight zero point is not emulated")
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            hidden = int(consts[w].dims[1]) // 3
            made, total = product(x, x_zp, w, base)
            nodes += made + [
                helper.make_node("Cast", [total], [f"{base}_f"], to=TensorProto.FLOAT),
                helper.make_node("Mul", [x_scale, w_scale], [f"{base}_s"]),
                helper.make_node("Mul", [f"{base}_f", f"{base}_s"], [f"{base}_qkv"]),
                helper.make_node("Split", [f"{base}_qkv", const(f"{base}_sizes", np.array([hidden] * 3, np.int64))],
                                 [f"{base}_q", f"{base}_k", f"{base}_v"], axis=-1),
                helper.make_node("MultiHeadAttention", [f"{base}_q", f"{base}_k", f"{base}_v", bias] + ([mask] if mask else []),
                                 list(node.output), domain="com.microsoft", num_heads=int(attrs["num_heads"]))]
        elif node.op_type in _INTEGER_PRODUCTS:
            raise InvalidValueError(f"{node.name}: emulating {node.op_type} is not supported")
        else:
            nodes.append(node)
            continue
        count += 1
    _replace_nodes(graph, nodes)
    return out


def finish_model(out: Path, *, quantize: str | None, fp16: bool,
                 calibration: Sequence[Mapping[str, np.ndarray]] | None = None,
                 keep_fp32: Iterable[str] = (), smooth_alpha: float = 0.7) -> list[str]:
    """Apply the precision options to the fp32 ``out/model.onnx``; returns the files written.

    fp16: model.onnx is rewritten with float16 weights and compute, float32 inputs and
    outputs. int8: model.onnx stays fp32 and model_quantized.onnx holds the int8 model: with
    `calibration` (model input batches) the activations are first smoothed
    (:func:`smooth_activations`, migration strength `smooth_alpha`), fused attention is split
    so that its input projection is an ordinary product (:func:`unfuse_attention`), and every
    product by a constant weight except the nodes named in `keep_fp32` is quantized per token
    and per column, adjacent weight pairs bounded to 128 (:func:`quantize_products`), which no
    onnxruntime CPU kernel can saturate. The scheme is recorded in the file's metadata
    (``SCHEME_KEY`` = ``INT8_SCHEME``), which loaders check (:func:`rank.onnx._runtime.check_int8_model`).
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
        onnx = require("onnx", "quantizing a model to int8")
        model = onnx.load(os.fspath(path))
        if calibration:
            smooth_activations(model, calibration, skip=keep_fp32, alpha=smooth_alpha)
        unfuse_attention(model)
        quantize_products(model, skip=keep_fp32)
        _set_metadata(model, SCHEME_KEY, INT8_SCHEME)
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
    """config.json: the transformers model config plus our settings under "rank_kernels".

    :func:`read_config` reads it back; loaders and the command line go through that pair.
    """
    data = model_config.to_dict() if model_config is not None else {}
    data[CONFIG_SECTION] = section
    with open(out / CONFIG_NAME, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True, default=str)


def read_config(model_dir: str | os.PathLike) -> tuple[dict, dict | None]:
    """``(config, section)`` of the config.json that :func:`write_config` writes in `model_dir`.

    `config` is the whole JSON object ({} when the directory has no config.json, e.g. a bare
    ONNX export); `section` is our ``"rank_kernels"`` settings, or None when absent or not an
    object. CorruptFileError when the file is not a readable JSON object.
    """
    path = Path(os.fspath(model_dir)) / CONFIG_NAME
    if not path.is_file():
        return {}, None
    config = read_json(path)
    section = config.get(CONFIG_SECTION)
    return config, section if isinstance(section, dict) else None
