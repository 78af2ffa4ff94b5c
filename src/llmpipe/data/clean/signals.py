"""All quality signals of one cleaned document, computed in one pass of splitting.

`compute(raw, text, kind)` splits `text` once (lines, paragraphs, whitespace words, lowercased
punctuation-free tokens) and hands the pieces to every signal family:
  * global quality signals (`quality.py`),
  * Gopher repetition signals (here; Rae et al. 2021, appendix A.1.1, table A1): share of
    duplicated lines and paragraphs (by count and by characters), character share of the most
    frequent 2/3/4-gram, and character share of words covered by repeated 5..10-grams,
  * the kind's own signals (`llmpipe.data.kinds.KIND.text`).
`signal_types(kind)` lists the resulting columns in a fixed order, so every table of one kind has
the same schema.

N-gram counting is vectorised: tokens get per-document integer ids (a dict, deterministic, never
Python's `hash()`), n-gram keys are polynomial hashes of the ids in uint64 (wrapping arithmetic),
and `np.unique` does the counting. A 64-bit key collision would need ~2^32 distinct n-grams in
one document.
"""
from __future__ import annotations

import re

import numpy as np

from llmpipe.data import kinds
from llmpipe.data.clean import quality

_PARA_SPLIT = re.compile(r"\n\s*\n")
_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier for n-gram keys
TOP_NGRAMS = (2, 3, 4)                 # Gopher: most frequent n-gram character share
DUP_NGRAMS = (5, 6, 7, 8, 9, 10)       # Gopher: duplicated n-gram character share

REPETITION_SIGNALS = {
    "dup_line_ratio": "float", "dup_line_char_ratio": "float",
    "dup_para_ratio": "float", "dup_para_char_ratio": "float",
    **{f"top_{n}gram_ratio": "float" for n in TOP_NGRAMS},
    **{f"dup_{n}gram_ratio": "float" for n in DUP_NGRAMS},
}


def signal_types(kind: str) -> dict[str, str]:
    """Column name -> "int" | "float", in storage order, for documents of `kind`."""
    return {**quality.QUALITY_SIGNALS, **REPETITION_SIGNALS, **kinds.text(kind).SIGNALS}


def tokens(words: list[str]) -> list[str]:
    """Lowercased words with surrounding punctuation stripped; pure-punctuation words dropped."""
    strip = quality.PUNCT_CHARS
    return [t for t in (w.strip(strip).lower() for w in words) if t]


def compute(raw: str, text: str, kind: str) -> dict:
    """Every signal of cleaned `text` (of source kind `kind`; `raw` is the text before cleaning)."""
    lines = [ln for ln in (x.strip() for x in text.split("\n")) if ln]
    words = text.split()
    toks = tokens(words)
    out = quality.quality_signals(text, words, toks, lines)
    out.update(_dup_units(lines, len(text), "line"))
    paras = [p for p in (x.strip() for x in _PARA_SPLIT.split(text)) if p]
    out.update(_dup_units(paras, len(text), "para"))
    out.update(ngram_signals(toks))
    out.update(kinds.text(kind).signals(raw, text, words, lines))
    return out


def _dup_units(units: list[str], n_chars: int, name: str) -> dict:
    """Share of units (lines or paragraphs) that repeat an earlier one, by count and by chars."""
    seen: set[str] = set()
    dup = dup_chars = 0
    for u in units:
        if u in seen:
            dup += 1
            dup_chars += len(u)
        else:
            seen.add(u)
    return {f"dup_{name}_ratio": dup / len(units) if units else 0.0,
            f"dup_{name}_char_ratio": dup_chars / n_chars if n_chars else 0.0}


def ngram_signals(toks: list[str]) -> dict:
    """Gopher's n-gram repetition signals over tokens; shares are of the tokens' characters."""
    out = {k: 0.0 for k in REPETITION_SIGNALS if "gram" in k}
    n_tok = len(toks)
    if n_tok < 2:
        return out
    vocab: dict[str, int] = {}
    ids = np.fromiter((vocab.setdefault(t, len(vocab)) for t in toks), np.uint64, n_tok)
    lens = np.fromiter(map(len, toks), np.int64, n_tok)
    csum = np.concatenate(([0], np.cumsum(lens)))     # (n_tok + 1,) chars before token i
    total = float(csum[-1])
    key = ids
    for n in range(2, DUP_NGRAMS[-1] + 1):
        if n_tok < n:
            break
        key = key[:-1] * _MULT + ids[n - 1:]          # (n_tok - n + 1,) key of n-gram at i
        if n in TOP_NGRAMS:
            uniq, first, counts = np.unique(key, return_index=True, return_counts=True)
            top = counts.max()
            if top > 1:  # a most frequent n-gram seen once is no repetition
                starts = first[counts == top]
                chars = (csum[starts + n] - csum[starts]).max()
                out[f"top_{n}gram_ratio"] = float(top * chars) / total
        else:
            _, first = np.unique(key, return_index=True)
            if len(first) == len(key):
                continue
            repeat = np.ones(len(key), bool)
            repeat[first] = False                      # later occurrences only
            starts = np.flatnonzero(repeat)
            edge = np.zeros(n_tok + 1, np.int32)       # +1 where a repeat starts, -1 past its end
            edge[starts] += 1
            edge[starts + n] -= 1
            covered = np.cumsum(edge[:-1]) > 0         # (n_tok,) token inside a repeated n-gram
            out[f"dup_{n}gram_ratio"] = float(lens[covered].sum()) / total
    return out
