"""Write the test fixture ``tests/data/bm25_before_languages``: a BM25 index saved by
rank-kernels as it was before tokenizer languages (no stemming by default, words as runs of
``str.isalnum`` characters, no CJK bigrams), and ``expected.json`` with what that version
answered for a few queries (scores of every document, top-3 ids, query term ids).

``tests/test_tokenize_languages.py`` loads the index with today's code and checks that it
searches exactly as it was built. The fixture must come from the old code, so this script
refuses to run with a tokenizer that knows languages. It was run once, with the package at
the commit before languages were added (0.1.0 development tree)::

    python scripts/make_legacy_bm25_index.py tests/data/bm25_before_languages
"""
from __future__ import annotations

import inspect
import json
import os
import sys

CORPUS = [
    "Running runners run the marathon",
    "The runner ran a quick race",
    "東京タワーは東京にある",
    "हिन्दी भाषा भारत में बोली जाती है",
    "Cats and dogs",
    "A cat sat on the mat",
]
IDS = ["run-0", "run-1", "tokyo", "hindi", "pets", "mat"]
QUERIES = ["running", "cat", "東京", "हिन्दी", "run cats", "東京タワーは東京にある", "runner race"]


def main(out: str) -> int:
    from rank.retrieve import BM25, Tokenizer

    if "language" in inspect.signature(Tokenizer).parameters:
        print("this script must run with the rank-kernels of before tokenizer languages", file=sys.stderr)
        return 1
    bm25 = BM25().index(CORPUS, ids=IDS)  # the defaults of that version
    bm25.save(os.path.join(out, "index"))
    expected = {"tokenizer": bm25.tokenizer.config(), "queries": []}
    for q in QUERIES:
        idx, scores = bm25.retrieve([q], k=3)
        expected["queries"].append({
            "query": q,
            "term_ids": bm25.tokenizer.tokenize(q, update_vocabulary=False)[0],
            "scores": [float(s) for s in bm25.get_scores(q)],
            "top3": [int(i) for i in idx[0]],
        })
    with open(os.path.join(out, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/bm25_before_languages"))
