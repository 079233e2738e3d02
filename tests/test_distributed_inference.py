"""rank.distributed batch inference (Ray Data map_batches over actor pools) equals the
single-process CrossEncoder / ColBERTEncoder. Tiny models are built here with the builders of
tests/test_cross_encoder.py and tests/test_colbert_encoder.py; one local Ray cluster serves
the module."""
import json
import os

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pytest.importorskip("onnxruntime")
pytest.importorskip("torch")
pytest.importorskip("transformers")


from _helpers import local_ray_cluster  # noqa: E402
from _helpers import tiny_colbert_checkpoint as build_checkpoint  # noqa: E402
from _helpers import tiny_cross_encoder as build_classifier  # noqa: E402

from rank import errors  # noqa: E402
from rank.rerank import ColBERTEncoder, CrossEncoder, export_colbert_encoder, export_cross_encoder, maxsim  # noqa: E402
from rank.retrieve import BM25  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    with local_ray_cluster() as distributed:
        yield distributed


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory):
    root = tmp_path_factory.mktemp("ce")
    build_classifier(root / "ckpt")
    export_cross_encoder(root / "ckpt", root / "onnx")
    return str(root / "onnx")


@pytest.fixture(scope="module")
def colbert(tmp_path_factory):
    root = tmp_path_factory.mktemp("colbert")
    build_checkpoint(root / "ckpt", "pylate")
    export_colbert_encoder(root / "ckpt", root / "onnx")
    return str(root / "onnx")


def _scifact_top100(shared_data, n_queries=4):
    root = shared_data("scifact")
    docs = {}
    for line in open(root / "corpus.jsonl", encoding="utf-8"):
        d = json.loads(line)
        docs[d["_id"]] = (d.get("title") or "") + " " + d["text"]
    queries = {}
    for line in open(root / "queries.jsonl", encoding="utf-8"):
        q = json.loads(line)
        queries[q["_id"]] = q["text"]
        if len(queries) == n_queries:
            break
    ids = list(docs)
    bm = BM25().index([docs[i] for i in ids], ids=ids, show_progress=False)
    qids = list(queries)
    idx, sc = bm.search([queries[q] for q in qids], k=100)
    run = {q: {ids[j]: float(s) for j, s in zip(row, srow)} for q, row, srow in zip(qids, idx.tolist(), sc.tolist())}
    return run, queries, docs


@pytest.mark.slow
def test_distributed_rerank_equals_cross_encoder_on_scifact_top100(cluster, cross_encoder, shared_data):
    run, queries, docs = _scifact_top100(shared_data)
    one = CrossEncoder.from_pretrained(cross_encoder, batch_size=1)
    got = cluster.rerank(run, queries, docs, model=cross_encoder, batch_size=50, concurrency=2,
                         model_options={"batch_size": 1})
    assert set(got) == set(run)
    for q, cands in run.items():
        want = one.predict([(queries[q], docs[d]) for d in cands])
        assert set(got[q]) == set(cands)
        np.testing.assert_array_equal(np.array([got[q][d] for d in cands], np.float32), want)
        order = sorted(range(len(want)), key=lambda i: (-want[i], i))
        assert list(got[q]) == [list(cands)[i] for i in order]  # sorted, ties in candidate order
    # the model's default batching: same scores up to float32 rounding of the padded batches
    batched = cluster.rerank(run, queries, docs, model=cross_encoder, top_k=10, batch_size=64)
    for q, cands in run.items():
        want = one.predict([(queries[q], docs[d]) for d in cands])
        assert len(batched[q]) == 10
        for d, s in batched[q].items():
            np.testing.assert_allclose(s, want[list(cands).index(d)], rtol=0, atol=1e-5)


@pytest.mark.slow
def test_rerank_dataset_in_and_out(cluster, cross_encoder):
    rows = [{"query_id": f"q{i % 3}", "doc_id": f"d{i}", "query": f"the cat {i % 3}", "text": t}
            for i, t in enumerate(["the cat sat on the mat", "river bank money", "", "blue green red house",
                                   "dog runs fast", "the mat"])]
    ds = ray.data.from_items(rows)
    out = cluster.rerank(ds, model=cross_encoder, output="dataset", concurrency=1, batch_size=4).take_all()
    one = CrossEncoder.from_pretrained(cross_encoder, batch_size=1)
    want = {r["doc_id"]: one.predict([(r["query"], r["text"])])[0] for r in rows}
    got = {r["doc_id"]: r["score"] for r in out}
    assert set(got) == set(want)
    for d in want:
        np.testing.assert_allclose(got[d], want[d], rtol=0, atol=1e-5)


@pytest.mark.slow
def test_colbert_encode_and_maxsim_rerank(cluster, colbert):
    texts = ["the cat sat on the mat", "river bank, money!", "", "blue green red house", "a dog runs fast",
             "the mat is green", "water tree"]
    enc = ColBERTEncoder(colbert, batch_size=1)
    got = cluster.encode(texts, model=colbert, concurrency=2, batch_size=3, model_options={"batch_size": 1})
    want = enc.encode_documents(texts)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-6)
    q_got = cluster.encode(["the cat"], model=colbert, is_query=True, concurrency=1, model_options={"batch_size": 1})
    np.testing.assert_allclose(q_got[0], enc.encode_queries(["the cat"])[0], rtol=0, atol=1e-6)
    queries = {"a": "the cat on a mat", "b": "money in the river bank"}
    docs = {f"d{i}": t for i, t in enumerate(texts)}
    run = {"a": list(docs), "b": ["d1", "d6", "d0"]}
    out = cluster.maxsim_rerank(run, queries, docs, model=colbert, concurrency=2, batch_size=4,
                                model_options={"batch_size": 1})
    for q, cands in run.items():
        qm = enc.encode_queries([queries[q]])[0]
        dm = enc.encode_documents([docs[d] for d in cands])
        want = {d: maxsim(qm, m) for d, m in zip(cands, dm)}
        assert set(out[q]) == set(cands)
        for d in cands:
            np.testing.assert_allclose(out[q][d], want[d], rtol=0, atol=1e-5)


def test_inference_bad_input(cluster, cross_encoder):
    with pytest.raises(errors.UnknownMethodError, match="output"):
        cluster.rerank({"q": ["d"]}, {"q": "x"}, {"d": "y"}, model=cross_encoder, output="table")
    with pytest.raises(errors.InvalidValueError, match="no text for document"):
        cluster.rerank({"q": ["d", "e"]}, {"q": "x"}, {"d": "y"}, model=cross_encoder)
    with pytest.raises(errors.InvalidValueError, match="cpus_per_actor"):
        cluster.rerank({"q": ["d"]}, {"q": "x"}, {"d": "y"}, model=cross_encoder, cpus_per_actor=0)
    with pytest.raises(errors.DTypeError, match="candidates"):
        cluster.rerank([("q", "d")], model=cross_encoder)
    with pytest.raises(errors.DTypeError, match="texts"):
        cluster.encode("one text", model=cross_encoder)
