"""Contamination guard: train documents that share a long word n-gram with an eval item.

The eval stage scores prompts (`eval.prompts`) and multiple-choice tasks (`eval.mc_tasks` files:
each example's context joined to each of its choices). A train document holding one of those
items verbatim would be memorised and score it well for the wrong reason, so `quality@SRC`
counts, per clean row, the word `ngram`-grams (default 13, GPT-3's contamination test: Brown et
al. 2020, appendix C) it shares with the items (`NAME.eval.npy`, uint32), and
`filter.global.max_eval_ngrams` (default 0) drops the document under its own reason,
`global_max_eval_ngrams`. Items shorter than `ngram` words have no n-gram and cannot match (the
built-in prompts are 3-7 words). Text is normalised as dedup normalises it (`minhash.normalize`),
so case and punctuation do not hide a copy. N-grams are compared by 64-bit hashes: with the
32-bit shingle hashes of MinHash, a corpus of S shingles against I item n-grams collides about
S x I / 2^32 times (a 100k-word book against 12k item n-grams: 0.3 false matches; measured in
bench/results/contamination.json). The built-in multiple-choice task is drawn from val
documents at eval time, which the split already keeps out of train.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from llmpipe.data.minhash import normalize, shingle_hashes


def item_texts(prompts: list[str], task_paths: list[str | Path]) -> list[str]:
    """Every eval text a train document must not hold: the prompts, and per task example its
    context followed by each choice (one space), in a fixed order."""
    import json
    out = list(prompts)
    for path in task_paths:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.strip():
                ex = json.loads(line)   # the eval stage checks the files; a bad line fails there
                out += [f"{ex['context']} {c}" for c in ex.get("choices", [])]
    return out


def ngram_set(texts: list[str], ngram: int) -> np.ndarray:
    """Sorted unique hashes (uint64) of the word n-grams of `texts` (shorter texts give none)."""
    norms = [normalize(t) for t in texts]
    h, d = shingle_hashes(norms, ngram, full=True)
    words = np.array([t.count(" ") + 1 if t else 0 for t in norms], np.int64)
    h = h[words[d] >= ngram] if len(h) else h
    return np.unique(h)


def fingerprint(items: np.ndarray) -> str:
    """sha256 of the item n-gram set: what the counts depend on."""
    return hashlib.sha256(np.ascontiguousarray(items, "<u8").tobytes()).hexdigest()


def shared_ngrams(texts: list[str], items: np.ndarray, ngram: int) -> np.ndarray:
    """(len(texts),) uint32: n-gram occurrences of each text found in `items` (sorted hashes)."""
    out = np.zeros(len(texts), np.uint32)
    if not len(items) or not texts:
        return out
    norms = [normalize(t) for t in texts]
    h, d = shingle_hashes(norms, ngram, full=True)
    if not len(h):
        return out
    words = np.array([t.count(" ") + 1 if t else 0 for t in norms], np.int64)
    full = words[d] >= ngram
    h, d = h[full], d[full]
    pos = np.minimum(np.searchsorted(items, h), len(items) - 1)
    hit = items[pos] == h
    return np.bincount(d[hit], minlength=len(texts)).astype(np.uint32)
