"""Measure the built-in sample corpus -> bench/results/sample.json (a measurement, not a test).

    .venv/bin/python bench/bench_sample.py [--label after] [--mix-meta REPO/data/mix/data_meta.json]

For the default document counts: characters and documents per source, the prose pool's size, and
how often pool paragraphs are reused: a paragraph is found in a document when one of the 13-word
n-grams of its passage's running text that start in it is in the document (whitespace words, as
the mix stage's leakage check counts them). Planted copies (exact/near/cross-source duplicates)
are left out: they repeat text on purpose. `--mix-meta` adds the leakage figure of a `dvc repro
mix` run on that corpus. Results merge into the JSON under `--label`, so an older checkout
(PYTHONPATH=/old/src) can be measured as "before".
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

from llmpipe.data.sources.prose import passages
from llmpipe.data.sources.sample import KINDS, sample_records

COPIES = {"exact_dup", "near_dup", "cross_exact_dup", "cross_near_dup"}
N = 13


def pool_grams() -> tuple[dict[tuple[str, ...], int], int]:
    """13-gram -> index of the paragraph its first word is in; number of paragraphs."""
    grams, i = {}, 0
    for ps in passages():
        words, para_of = [], []
        for para in ps:
            w = para.split()
            words += w
            para_of += [i] * len(w)
            i += 1
        for j in range(len(words) - N + 1):
            grams.setdefault(tuple(words[j:j + N]), para_of[j])
    return grams, i


def measure() -> dict:
    t0 = time.perf_counter()
    corpus = {k: sample_records(k) for k in KINDS}
    seconds = time.perf_counter() - t0
    grams, n_paras = pool_grams()
    docs_of: dict[int, set] = collections.defaultdict(set)
    for k, rows in corpus.items():
        for d, r in enumerate(rows):
            if r.get("planted") in COPIES:
                continue
            w = r["text"].split()
            for j in range(len(w) - N + 1):
                p = grams.get(tuple(w[j:j + N]))
                if p is not None:
                    docs_of[p].add((k, d))
    uses = [len(v) for v in docs_of.values()]
    return {
        "python": sys.version.split()[0],
        "generate_seconds": round(seconds, 2),
        "pool": {"passages": len(passages()), "paragraphs": n_paras,
                 "chars": sum(len(p) for ps in passages() for p in ps)},
        "sources": {k: {"docs": len(v), "chars": sum(len(r["text"]) for r in v)} for k, v in corpus.items()},
        "total_chars": sum(len(r["text"]) for v in corpus.values() for r in v),
        "reuse": {
            "paragraphs_used": len(uses),
            "paragraph_uses": sum(uses),  # (paragraph, document) pairs
            "paragraphs_in_2plus_docs": sum(u > 1 for u in uses),
            "max_docs_per_paragraph": max(uses, default=0),
            "paragraphs_in_2plus_sources": sum(len({k for k, _ in v}) > 1 for v in docs_of.values()),
        },
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--label", default="after")
    ap.add_argument("--mix-meta", type=Path, help="data/mix/data_meta.json of a `dvc repro mix` on this corpus")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "sample.json")
    args = ap.parse_args(argv)
    res = measure()
    if args.mix_meta:
        leak = json.loads(args.mix_meta.read_text())["leakage"]
        res["mix_val_overlap"] = {k: leak[k] for k in ("fraction", "val_docs", "val_docs_overlapping", "ngram")}
    out = json.loads(args.out.read_text()) if args.out.exists() else {}
    out[args.label] = res
    args.out.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(json.dumps(res, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
