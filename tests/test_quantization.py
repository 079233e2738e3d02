"""int8 exports that rank the same on every CPU: the saturation bound, the AVX2 emulation, the
old-file warning.

onnxruntime's x86-64 kernel for uint8 x int8 products on AVX2 CPUs without VNNI adds each two
adjacent products into a saturating int16 (``vpmaddubsw``); AVX-512 VNNI and ARM dot products
add them in int32. The tests here do not depend on which CPU runs them: the bound is checked
from the stored weights, and the AVX2 arithmetic is emulated in NumPy / float operators.
"""
import os
import warnings

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
pytest.importorskip("tokenizers")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from _helpers import minilm_colbert, minilm_cross_encoder  # noqa: E402
from rank import errors  # noqa: E402
from rank.rerank import ColBERTEncoder, CrossEncoder, export_colbert_encoder, export_cross_encoder  # noqa: E402
from rank.onnx._export import (INT8_SCHEME, PAIR_LIMIT, QUANTIZED_NAME, SCHEME_KEY,  # noqa: E402
                                 emulate_avx2_products, product_bounds, quantize_weight, u8s8_avx2)


def pairwise_avx2(a, b):
    """Brute force: every adjacent pair of products summed and clipped to int16, then all added."""
    a = a.astype(np.int64).reshape(-1, a.shape[-1])
    b = b.astype(np.int64)
    k = b.shape[0]
    if k % 2:
        a = np.concatenate([a, np.zeros((a.shape[0], 1), np.int64)], axis=1)
        b = np.concatenate([b, np.zeros((1, b.shape[1]), np.int64)])
    out = np.zeros((a.shape[0], b.shape[1]), np.int64)
    for i in range(0, a.shape[1], 2):
        pair = a[:, i:i + 1] * b[i] + a[:, i + 1:i + 2] * b[i + 1]
        out += np.clip(pair, -32768, 32767)
    return out


def old_scheme(src, dst):
    """The previous export's int8 call: full-range int8 weights per channel, per-run activations."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul", "Gemm", "Attention"], extra_options={"DefaultTensorType": 1})


def cpu_flags():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


# -- the NumPy emulation ------------------------------------------------------------------------

def test_u8s8_avx2_saturates_adjacent_pairs_only():
    a = np.array([[255, 255, 255, 255]], np.uint8)
    b = np.array([[127], [127], [-1], [1]], np.int8)
    assert u8s8_avx2(a, b).tolist() == [[32767]]         # 64770 clipped to 32767, then 0
    b = np.array([[127], [-1], [127], [1]], np.int8)
    assert u8s8_avx2(a, b).tolist() == [[64770]]         # the big products sit in different pairs
    b = np.array([[-128], [-128], [64], [64]], np.int8)
    assert u8s8_avx2(a, b).tolist() == [[-32768 + 32640]]


@pytest.mark.parametrize("k", [1, 7, 64, 385])
def test_u8s8_avx2_matches_brute_force(k):
    rng = np.random.default_rng(k)
    a = rng.integers(0, 256, size=(3, 5, k)).astype(np.uint8)
    b = rng.integers(-128, 128, size=(k, 9)).astype(np.int8)
    got = u8s8_avx2(a, b)
    assert got.shape == (3, 5, 9)
    np.testing.assert_array_equal(got.reshape(-1, 9), pairwise_avx2(a, b))
    if k > 7:  # full-range weights do saturate somewhere
        assert (got.reshape(-1, 9) != a.reshape(-1, k).astype(np.int64) @ b.astype(np.int64)).any()
    # weights whose adjacent pairs hold |w_2i| + |w_2i+1| <= 128 never do: the emulation is the exact product
    q, _ = quantize_weight(b.astype(np.float32))
    np.testing.assert_array_equal(u8s8_avx2(a, q).reshape(-1, 9), a.reshape(-1, k).astype(np.int64) @ q.astype(np.int64))
    with pytest.raises(errors.InvalidValueError, match="uint8"):
        u8s8_avx2(a.astype(np.int8), b)


def pair_sums(q):
    q = np.abs(q.astype(np.int64))
    if q.shape[0] % 2:
        q = np.concatenate([q, np.zeros((1, q.shape[1]), np.int64)])
    return q[0::2] + q[1::2]


@pytest.mark.parametrize("k", [1, 2, 51, 384])
def test_quantize_weight_bounds_adjacent_pairs(k):
    rng = np.random.default_rng(k)
    w = (rng.standard_t(4, size=(k, 7)) * np.array([1e-3, 0.1, 1, 10, 100, 1, 0])).astype(np.float32)
    w[:, 5] = 1.0                                 # every pair at the limit: rounding ties
    q, scale = quantize_weight(w)
    assert q.dtype == np.int8 and scale.dtype == np.float32 and scale.shape == (7,) and q.shape == (k, 7)
    sums = pair_sums(q)
    assert sums.max() <= PAIR_LIMIT and sums[:, :6].max(axis=0).min() >= 127   # 127: a lone weight
    assert (q[:, 6] == 0).all()
    err = np.abs(q * scale - w)
    assert np.all(err <= scale * (1 + 1e-5))      # at most one step, where a pair was pulled back
    assert np.mean(err <= scale / 2 * (1 + 1e-5)) > 0.98   # otherwise rounded to nearest
    # finer than 7-bit weights (largest / 64): the scale is the largest pair sum / 128
    assert np.all(scale[:5] <= np.abs(w[:, :5]).max(axis=0) / 64 * (1 + 1e-6))


# -- the static bound -----------------------------------------------------------------------------

def _product_model(weight, op="MatMulInteger", a_type=TensorProto.UINT8):
    k, n = weight.shape
    body = [helper.make_node(op, ["a", "w"], ["y"], name="product")]
    graph = helper.make_graph(body, "g", [helper.make_tensor_value_info("a", a_type, [2, k])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [2, n])],
                              [numpy_helper.from_array(weight, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_bound_of_one_product():
    w = np.zeros((7, 3), np.int8)
    w[0, 0], w[1, 0] = 64, -64      # one adjacent pair: 255 * 128 = 32640
    w[2, 1], w[3, 1] = 65, 64       # 255 * 129 = 32895 > 32767
    w[1, 2], w[2, 2] = -128, 127    # large, but in different pairs (0-1, 2-3): 255 * 128
    w[6, 2] = 127                   # odd K: the last row pairs with a zero
    (entry,) = product_bounds(_product_model(w))
    assert (entry["op"], entry["activation"], entry["weight"], entry["limit"]) == ("MatMulInteger", "uint8", "int8", 32767)
    assert entry["bound"] == 32895 and not entry["fits"]
    w[2, 1] = 64
    assert product_bounds(_product_model(w))[0]["bound"] == 32640 and product_bounds(_product_model(w))[0]["fits"]
    # signed activations: |a| <= 128; uint8 x uint8 products are summed in int32
    s8 = product_bounds(_product_model(np.full((4, 2), 127, np.int8), a_type=TensorProto.INT8))[0]
    assert s8["bound"] == 128 * 254 and s8["fits"]
    u8 = product_bounds(_product_model(np.full((4, 2), 255, np.uint8)))[0]
    assert u8["bound"] == 255 * 510 and u8["limit"] == 2**31 - 1 and u8["fits"]


def _tiny_classifier(path, seed=0):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    words = "the a of cat dog sat mat river bank money water tree green blue red house runs fast".split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    ids = {w: i for i, w in enumerate(vocab)}
    tok = Tokenizer(models.WordLevel(ids, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])])
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                                cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                                model_max_length=64)
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=128, max_position_embeddings=64, num_labels=1,
                                  initializer_range=0.3)
    transformers.BertForSequenceClassification(cfg).eval().save_pretrained(path)
    fast.save_pretrained(path)
    return words


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("int8")
    words = _tiny_classifier(root / "ckpt")
    export_cross_encoder(root / "ckpt", root / "onnx", quantize=True)
    old = root / "old"
    old.mkdir()
    for name in ("tokenizer.json", "config.json", "model.onnx"):
        (old / name).write_bytes((root / "onnx" / name).read_bytes())
    old_scheme(old / "model.onnx", old / QUANTIZED_NAME)
    rng = np.random.default_rng(0)
    pairs = [(" ".join(rng.choice(words, 3)), " ".join(rng.choice(words, int(rng.integers(3, 40))))) for _ in range(40)]
    return root, old, pairs


def test_every_integer_product_of_the_export_fits_int16(tiny):
    root, old, _ = tiny
    new = onnx.load(str(root / "onnx" / QUANTIZED_NAME))
    bounds = product_bounds(new)
    # layer 1: Q/K/V projection, attention output, two feed-forward products; layer 2: Q/K/V only
    # (the layers after the last attention run on the first token alone, in float32)
    assert len(bounds) == 5
    assert {b["op"] for b in bounds} == {"MatMulInteger"}
    assert all(b["activation"] == "uint8" and b["weight"] == "int8" for b in bounds)
    assert all(b["fits"] and b["bound"] <= 32767 for b in bounds), [b for b in bounds if not b["fits"]]
    assert {p.key: p.value for p in new.metadata_props}[SCHEME_KEY] == INT8_SCHEME
    # the previous export's file: full-range weights overflow the int16 pair sums
    stale = product_bounds(onnx.load(str(old / QUANTIZED_NAME)))
    assert {b["op"] for b in stale} >= {"QAttention", "MatMulInteger"}
    assert not all(b["fits"] for b in stale)
    assert max(b["bound"] for b in stale) > 40000


def _run(model, feed):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    return sess.run(None, {k: v for k, v in feed.items() if k in names})[0]


def _feed(root, pairs):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(root / "tokenizer.json"))
    tok.enable_padding(pad_id=0)
    enc = tok.encode_batch(pairs)
    return {"input_ids": np.array([e.ids for e in enc], np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
            "token_type_ids": np.array([e.type_ids for e in enc], np.int64)}


def test_emulated_avx2_products_rank_like_fp32(tiny):
    from scipy.stats import spearmanr

    root, old, pairs = tiny
    feed = _feed(root / "onnx", pairs)
    fp32 = _run(onnx.load(str(root / "onnx" / "model.onnx")), feed)[:, 0]
    new = onnx.load(str(root / "onnx" / QUANTIZED_NAME))
    native = _run(new, feed)[:, 0]
    avx2 = _run(emulate_avx2_products(new), feed)[:, 0]
    exact = _run(emulate_avx2_products(new, saturate=False), feed)[:, 0]
    # nothing can saturate: the emulated AVX2 run is the exact integer run, and onnxruntime's own
    np.testing.assert_array_equal(avx2, exact)
    # (float rounding of the fused scale can move a later activation across a rounding step)
    spread = np.abs(fp32).max()
    assert np.median(np.abs(avx2 - native)) < 1e-5 * spread and np.abs(avx2 - native).max() < 1e-2 * spread
    rho = spearmanr(fp32, avx2)[0]
    assert rho >= 0.95  # a random 2-layer model; the MiniLM checks below ask for 0.99

    stale = onnx.load(str(old / QUANTIZED_NAME))
    stale_avx2 = _run(emulate_avx2_products(stale), feed)[:, 0]
    stale_exact = _run(emulate_avx2_products(stale, saturate=False), feed)[:, 0]
    # the previous scheme on an AVX2 CPU: saturated sums move the scores far more than int8 rounding
    lost = np.abs(stale_avx2 - stale_exact)
    print(f"saturation moves the previous export's scores by up to {lost.max() / spread:.3f} of their range")
    assert lost.max() > 0.05 * spread
    print(f"Spearman vs fp32: this export {rho:.4f}, previous export on AVX2 {spearmanr(fp32, stale_avx2)[0]:.4f}")
    assert spearmanr(fp32, stale_avx2)[0] < rho
    # the emulation is what this CPU's kernel does: saturating without VNNI, exact with it
    flags = cpu_flags()
    stale_native = _run(stale, feed)[:, 0]
    if flags is not None and "avx2" in flags and not flags & {"avx512_vnni", "avx_vnni"}:
        same, other = stale_avx2, stale_exact
    elif flags is not None and flags & {"avx512_vnni", "avx_vnni"}:
        same, other = stale_exact, stale_avx2
    else:
        return
    assert np.median(np.abs(stale_native - same)) < 1e-5 * spread
    assert np.abs(stale_native - same).max() < np.abs(stale_native - other).max() / 10


def test_int8_scores_do_not_depend_on_batch_mates(tiny):
    root, _, pairs = tiny
    ce = CrossEncoder.from_pretrained(root / "onnx", activation=None, quantized=True)
    alone = ce.predict(pairs, batch_size=1)
    for batch_size in (5, 40):
        together = ce.predict(pairs, batch_size=batch_size)
        # per-token scales: only float rounding differs (a per-run scale moved scores by percents)
        assert np.median(np.abs(together - alone)) < 1e-5 * np.abs(alone).max()
        assert np.abs(together - alone).max() < 1e-2 * np.abs(alone).max()


def test_emulation_rejects_products_it_does_not_model():
    model = _product_model(np.ones((4, 2), np.int8), op="ConvInteger")
    with pytest.raises(errors.InvalidValueError, match="ConvInteger"):
        emulate_avx2_products(model)


# -- loading files from the previous export -------------------------------------------------------

def test_old_int8_file_loads_with_a_warning(tiny):
    root, old, pairs = tiny
    with pytest.warns(errors.Int8SaturationWarning, match=r"export_cross_encoder\(.*quantize='int8'\)") as info:
        ce = CrossEncoder.from_pretrained(old, quantized=True)
    assert "overflow" in str(info[0].message) and str(old) in str(info[0].message)
    assert ce.predict(pairs[:3]).shape == (3,)          # still usable
    with warnings.catch_warnings():
        warnings.simplefilter("error")                  # the new file and fp32 files: no warning
        CrossEncoder.from_pretrained(root / "onnx", quantized=True)
        CrossEncoder.from_pretrained(old)


def test_file_without_metadata_is_checked_from_its_weights(tiny, tmp_path):
    """A safe file written by another tool (no metadata): accepted after checking its weights."""
    root, _, _ = tiny
    model = onnx.load(str(root / "onnx" / QUANTIZED_NAME))
    del model.metadata_props[:]
    for name in ("tokenizer.json", "config.json"):
        (tmp_path / name).write_bytes((root / "onnx" / name).read_bytes())
    onnx.save(model, str(tmp_path / QUANTIZED_NAME))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CrossEncoder.from_pretrained(tmp_path, quantized=True)


# -- the quantize= argument -------------------------------------------------------------------------

def test_quantize_values(tiny, tmp_path):
    root, _, _ = tiny
    for bad in ("int4", "INT8", 1, "fp16", 8):
        with pytest.raises(errors.UnknownMethodError, match=r"None, False, True, 'int8'"):
            export_cross_encoder(root / "ckpt", tmp_path / "x", quantize=bad)
    export_cross_encoder(root / "ckpt", tmp_path / "off", quantize=False)
    assert not (tmp_path / "off" / QUANTIZED_NAME).exists()
    with pytest.raises(errors.InvalidValueError, match="fp16"):
        export_cross_encoder(root / "ckpt", tmp_path / "y", quantize=True, fp16=True)


# -- fidelity on the reranking workload: SciFact claims against their BM25 top 100 ---------------

def scifact_candidates(shared_data, n_claims=10, k=100):
    """The first `n_claims` SciFact claims and, for each, the texts of its BM25 top `k` abstracts."""
    import json

    from rank.retrieve import BM25

    data = shared_data("scifact")
    with open(data / "corpus.jsonl", encoding="utf-8") as f:
        docs = [(d["title"] + " " + d["text"]) for d in map(json.loads, f)]
    with open(data / "queries.jsonl", encoding="utf-8") as f:
        claims = [q["text"] for q in map(json.loads, f)][:n_claims]
    idx, _ = BM25().index(docs, show_progress=False).search(claims, k=k)
    return claims, [[docs[i] for i in row] for row in idx.tolist()]


def emulated_dir(src, dst):
    """A copy of the export directory whose int8 model computes its products as AVX2 does."""
    dst.mkdir()
    for name in ("tokenizer.json", "config.json"):
        (dst / name).write_bytes((src / name).read_bytes())
    onnx.save(emulate_avx2_products(onnx.load(str(src / QUANTIZED_NAME))), str(dst / QUANTIZED_NAME))
    return dst


@pytest.mark.slow
def test_minilm_cross_encoder_int8_ranks_bm25_candidates_like_fp32(shared_data, tmp_path):
    from scipy.stats import spearmanr

    claims, candidates = scifact_candidates(shared_data)
    export_cross_encoder(minilm_cross_encoder(tmp_path / "ckpt"), tmp_path / "onnx", quantize=True)
    bounds = product_bounds(onnx.load(str(tmp_path / "onnx" / QUANTIZED_NAME)))
    assert len(bounds) == 5 * 4 + 1 and all(b["fits"] for b in bounds)
    models = {"fp32": CrossEncoder.from_pretrained(tmp_path / "onnx", activation=None),
              "int8": CrossEncoder.from_pretrained(tmp_path / "onnx", activation=None, quantized=True),
              "int8, AVX2 emulated": CrossEncoder.from_pretrained(emulated_dir(tmp_path / "onnx", tmp_path / "emu"),
                                                                  activation=None, quantized=True)}
    rhos = {name: [] for name in models if name != "fp32"}
    for claim, docs in zip(claims, candidates):
        pairs = [(claim, d) for d in docs]
        scores = {name: m.predict(pairs) for name, m in models.items()}
        for name in rhos:
            rhos[name].append(spearmanr(scores["fp32"], scores[name])[0])
    report = {name: (round(float(np.mean(r)), 4), round(float(np.min(r)), 4)) for name, r in rhos.items()}
    print(f"cross-encoder, Spearman with fp32 over {len(claims)} claims' BM25 top 100 (mean, lowest): {report}")
    for name, r in rhos.items():
        assert np.mean(r) >= 0.99, (name, report)


@pytest.mark.slow
def test_minilm_colbert_int8_ranks_bm25_candidates_like_fp32(shared_data, tmp_path):
    from scipy.stats import spearmanr

    import rank

    claims, candidates = scifact_candidates(shared_data)
    minilm_colbert(tmp_path / "ckpt")
    export_colbert_encoder(tmp_path / "ckpt", tmp_path / "onnx", quantize=True)
    bounds = product_bounds(onnx.load(str(tmp_path / "onnx" / QUANTIZED_NAME)))
    assert len(bounds) == 6 * 4 + 1 and all(b["fits"] for b in bounds)
    encoders = {"fp32": ColBERTEncoder(tmp_path / "onnx"), "int8": ColBERTEncoder(tmp_path / "onnx", quantized=True),
                "int8, AVX2 emulated": ColBERTEncoder(emulated_dir(tmp_path / "onnx", tmp_path / "emu"), quantized=True)}
    texts = sorted({d for docs in candidates for d in docs})
    where = {t: i for i, t in enumerate(texts)}
    rhos = {name: [] for name in encoders if name != "fp32"}
    scores = {}
    for name, enc in encoders.items():
        embedded = enc.encode(texts, is_query=False)
        queries = enc.encode(claims, is_query=True)
        scores[name] = [rank.maxsim_batch(q, [embedded[where[d]] for d in docs]) for q, docs in zip(queries, candidates)]
    for name in rhos:
        rhos[name] = [spearmanr(a, b)[0] for a, b in zip(scores["fp32"], scores[name])]
    report = {name: (round(float(np.mean(r)), 4), round(float(np.min(r)), 4)) for name, r in rhos.items()}
    print(f"ColBERT MaxSim, Spearman with fp32 over {len(claims)} claims' BM25 top 100 (mean, lowest): {report}")
    for name, r in rhos.items():
        assert np.mean(r) >= 0.99, (name, report)
