"""Train/val leakage: the share of val documents that share a 13-word n-gram with train.

13-gram overlap is the contamination test of GPT-3 (Brown et al., 2020, appendix C). We work on
token ids, not text, so `mix` never decodes: a *word* is a maximal run of non-whitespace tokens
that starts at a piece beginning with "▁" or right after a whitespace token (whitespace-only
pieces, "\\n", whitespace bytes, control ids). SentencePiece never lets a piece cross a word
boundary, so identical text gives identical words; re-wrapped whitespace ("a\\nb" vs "a b") can
tokenize a word differently and hide an overlap (an approximation we accept).

word hash   = sum over its tokens of mix64(token * K1 + position)          (uint64, wraps;
              mix64 = the MurmurHash3 finaliser of llmpipe.data.minhash)
n-gram hash = sum over j < n of mix64(word_hash[i + j] + j * K2)            (only within one doc)
Train n-gram hashes go into a sorted unique numpy array (the "set"; lookups by binary search).
Memory is bounded: when train has more than MAX_TRAIN_NGRAMS n-grams we keep only hashes with h % 2^k == 0 for both
train and val (consistent sampling), so a val document sharing m n-grams is still caught with
probability 1 - (1 - 2^-k)^m; `sampling_rate` in the report says which k was used.

Boilerplate is not leakage. An n-gram found in more than `max_doc_freq` train documents is a
template, licence or navigation phrase (bot-written Wikipedia stubs share whole 13-gram
sentences: "is a village in the administrative district of Gmina ..."), so it is dropped from
the train set before val is looked up; a val document copied into train still shares its own
n-grams with one or a few train documents and is flagged. This is the document-frequency cut of
the GPT-3 contamination analysis's successors: Brown et al. (2020, appendix C) already found
13-gram hits dominated by common phrases, and the Pile and Dolma decontamination passes drop
n-grams frequent in the training corpus before matching (Gao et al. 2020; Soldaini et al. 2024).
Document frequency is counted per train document (an n-gram repeated inside one document counts
once), on the sampled hashes when sampling is on.

A small corpus has small template families (in 1,000 real Wikipedia articles most template
n-grams are in 1-5 documents), which no frequency cut can tell from a copy. `min_share` adds the
rule of PaLM's contamination analysis (Chowdhery et al. 2022, section 8: an item is contaminated
when most of its n-grams occur in training): a val document is flagged only when at least that
share of its n-grams is in train. A copy shares ~all of them (a copy with 1% of its words edited
still ~0.88 of its 13-grams); a template stub shares its template sentences, measured 0.001-0.69
on the real sample.
"""
from __future__ import annotations

import numpy as np

from llmpipe.data.minhash import mix64  # in place: every call here passes a fresh temporary
from llmpipe.data.tokenizer import Tokenizer
from llmpipe.data.tokens import TokenFile

MAX_TRAIN_NGRAMS = 1 << 26  # 64M hashes = 512 MiB at most for the train set
K1, K2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9)
DOC_CHUNK = 1 << 22  # tokens per processing chunk


def sorted_unique(h: np.ndarray) -> np.ndarray:
    """np.unique by sorting (numpy's hash-based unique is several times slower on random uint64)."""
    h = np.sort(h)
    return h[np.concatenate([[True], h[1:] != h[:-1]])] if len(h) else h


def member(h: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """(len(h),) bool: h[i] in sorted_set, by binary search."""
    if len(sorted_set) == 0:
        return np.zeros(len(h), bool)
    pos = np.minimum(np.searchsorted(sorted_set, h), len(sorted_set) - 1)
    return sorted_set[pos] == h


def word_tables(tok: Tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """(is_space, starts_word), each (vocab,) bool, from the piece strings."""
    v = tok.vocab_size
    space = np.zeros(v, bool)
    start = np.zeros(v, bool)
    ws_bytes = {f"<0x{b:02X}>" for b in (0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20)}
    for i in range(v):
        p = tok.sp.id_to_piece(i)
        space[i] = (tok.sp.is_control(i) or p in ws_bytes or p.strip("▁\n") == "")
        start[i] = p.startswith("▁")
    return space, start


def doc_ngrams(tokens: np.ndarray, doc_of_token: np.ndarray, tables, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, doc) of every word n-gram of a concatenation of documents (EOS separated)."""
    space, start = tables
    t = tokens.astype(np.int64)
    sp = space[t]
    prev_space = np.concatenate([[True], sp[:-1]])
    keep = np.flatnonzero(~sp)
    if len(keep) == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    is_start = (start[t] | prev_space)[keep]
    first = np.flatnonzero(is_start)                      # word starts, indexed in `keep`
    word_of = np.cumsum(is_start) - 1                     # (len(keep),)
    pos = np.arange(len(keep)) - first[word_of]           # position of a token in its word
    vals = mix64(t[keep].astype(np.uint64) * K1 + pos.astype(np.uint64))
    words = np.add.reduceat(vals, first)                  # (words,) uint64
    wdoc = doc_of_token[keep[first]]
    m = len(words) - n + 1
    if m <= 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    h = np.zeros(m, np.uint64)
    for j in range(n):
        h += mix64(words[j:j + m] + np.uint64((j * int(K2)) % (1 << 64)))
    same = wdoc[:m] == wdoc[n - 1:]
    return h[same], wdoc[:m][same]


def iter_ngrams(tf: TokenFile, docs: np.ndarray, tables, n: int):
    """Yield (hashes, doc index into `docs`) for chunks of the given documents of one file."""
    off = tf.offsets.astype(np.int64)
    lens = off[docs + 1] - off[docs]
    lo = 0
    while lo < len(docs):
        hi = lo + max(1, int(np.searchsorted(np.cumsum(lens[lo:]), DOC_CHUNK)))
        sel = docs[lo:hi]
        view = tf.tokens.view(np.ndarray)  # plain ndarray slices: no per-slice memmap overhead
        parts = [view[b:e] for b, e in zip(off[sel].tolist(), off[sel + 1].tolist())]
        toks = np.concatenate(parts) if parts else np.zeros(0, tf.tokens.dtype)
        doc_of = np.repeat(np.arange(lo, hi), lens[lo:hi])
        yield doc_ngrams(toks, doc_of, tables, n)
        lo = hi


def doc_frequency(chunks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique hashes, number of train documents holding each) from per-chunk arrays of
    hashes already unique per document."""
    h = np.sort(np.concatenate(chunks)) if chunks else np.zeros(0, np.uint64)
    if not len(h):
        return h, np.zeros(0, np.int64)
    start = np.flatnonzero(np.concatenate([[True], h[1:] != h[:-1]]))
    return h[start], np.diff(np.append(start, len(h)))


def _per_doc_unique(h: np.ndarray, d: np.ndarray) -> np.ndarray:
    """The hashes of `h`, each once per document of `d`."""
    if not len(h):
        return h
    order = np.lexsort((h, d))
    h, d = h[order], d[order]
    return h[np.concatenate([[True], (h[1:] != h[:-1]) | (d[1:] != d[:-1])])]


def val_overlap(train: dict, val: dict, tok: Tokenizer, ngram: int = 13, examples: int = 10,
                max_doc_freq: int | None = None, min_share: float = 0.0) -> dict:
    """train/val: {source: (TokenFile, doc indices)}. Returns the leakage report. `max_doc_freq`:
    train n-grams in more documents than this are boilerplate and ignored (None: none are). A val
    document counts as overlapping when it shares at least one n-gram and at least `min_share` of
    its n-grams with train (0: one shared n-gram is enough, GPT-3's rule)."""
    tables = word_tables(tok)
    n_train_ngrams = sum(max(0, int(np.diff(tf.offsets.astype(np.int64))[d].sum())) for tf, d in train.values())
    k = 0
    while n_train_ngrams >> k > MAX_TRAIN_NGRAMS:  # tokens bound n-grams from above
        k += 1
    mask = np.uint64((1 << k) - 1)
    chunks = []
    for tf, docs in train.values():
        for h, d in iter_ngrams(tf, docs, tables, ngram):
            sel = (h & mask) == 0
            chunks.append(_per_doc_unique(h[sel], d[sel]) if max_doc_freq is not None else sorted_unique(h[sel]))
    if max_doc_freq is None:
        train_set = sorted_unique(np.concatenate(chunks)) if chunks else np.zeros(0, np.uint64)
        ignored = 0
    else:
        hashes, df = doc_frequency(chunks)
        train_set = hashes[df <= max_doc_freq]
        ignored = int(len(hashes) - len(train_set))
    del chunks
    hit_ids, n_val = [], 0
    for src, (tf, docs) in val.items():
        total = np.zeros(len(docs), np.int64)   # (val docs,) n-grams looked up, and found in train
        shared = np.zeros(len(docs), np.int64)
        for h, d in iter_ngrams(tf, docs, tables, ngram):
            sel = (h & mask) == 0
            found = member(h[sel], train_set)
            total += np.bincount(d[sel], minlength=len(docs))
            shared += np.bincount(d[sel][found], minlength=len(docs))
        hit = (shared > 0) & (shared >= min_share * total)
        n_val += len(docs)
        if hit.any():  # only the hits' ids become Python strings
            ids = tf.take_rows(docs[np.flatnonzero(hit)], ["id"]).column("id").to_pylist()
            hit_ids += [f"{src}:{i}" for i in ids]
    return {"ngram": ngram, "val_docs": n_val, "val_docs_overlapping": len(hit_ids),
            "fraction": round(len(hit_ids) / n_val, 6) if n_val else 0.0,
            "train_ngrams_kept": int(len(train_set)), "sampling_rate": 1.0 / (1 << k),
            "max_doc_freq": max_doc_freq, "min_share": min_share,
            "train_ngrams_ignored_as_boilerplate": ignored,
            "examples": hit_ids[:examples], "method": "13-word n-grams of SentencePiece words, "
            "stable uint64 hashes, train set as a sorted numpy array (see llmpipe/data/leakage.py)"}
