"""The canonical view of a document: its prose, whatever cleaner its source kind runs.

Cross-source near duplicates (a Wikipedia article or a book chapter copied into a web page) are
missed when each copy is compared through its own kind's cleaner: C4's line rules drop headings,
short lines and lines without terminal punctuation, the Wikipedia cleaner keeps those and drops
reference tails instead, so two cleaned copies of one article can fall to Jaccard 0.1-0.7.
`clean@SRC` therefore computes a second signature (`NAME.canon.npy`) over a view of the *raw*
text (after `clean.max_doc_chars`) that no kind's cleaner decides:

  1. lines are stripped; a line of 5+ words not ending in terminal punctuation is joined to the
     next non-blank line (undoes hard wrapping: a Gutenberg paragraph becomes one line, as a web
     copy of it usually is);
  2. the resulting lines are kept when they have 5+ words and end in terminal punctuation (the
     line rules of C4, Raffel et al. 2020, section 2.2, the strictest of the kinds: what every
     cleaner keeps);
  3. the kept lines, joined, are normalised and shingled like any text (`minhash`).

So a C4 copy of an article has the same view as the article whether C4's rules ran on it before
(real C4 is distributed line-filtered) or not, and a re-wrapped copy of a chapter the same view as
the hard-wrapped book. The idea is CCNet's and Gopher's paragraph-level view of a page (Wenzek et
al. 2020; Rae et al. 2021): compare the prose, not the page furniture. A view with fewer than
`MIN_WORDS` words falls back to the whole raw text, so pages with little prose (lists, tables)
are compared on what they hold and never pair through an empty view. `dedup` compares canonical
signatures only across sources: within a source the cleaned-text signature decides, as before.
"""
from __future__ import annotations

import numpy as np

from llmpipe.data import minhash

TERMINAL = (".", "!", "?", '"', "”", "'", "’")  # C4's terminal marks, and closing quotes
LINE_WORDS = 5     # C4's min_line_words: shorter lines are headings, menus, captions
MIN_WORDS = 20     # views shorter than this fall back to the raw text
SAMPLE_BITS = 3    # containment samples: 1 in 2^3 = 8 shingles of the view (`samples`)


def view(raw: str) -> str:
    """The kept prose lines of `raw`, one per line (hard-wrapped lines joined). Linear in the
    text: a run of joined lines is collected as parts, never re-concatenated per line."""
    out: list[str] = []
    parts: list[str] = []            # the hard-wrapped run being joined (5+ words, no end mark)
    for line in raw.split("\n"):
        s = line.strip()
        if not s:
            if parts:                # a blank line ends the run: it never got its end mark
                parts = []
            continue
        if parts:
            parts.append(s)
            if s.endswith(TERMINAL):
                out.append(" ".join(parts))
                parts = []
        elif s.endswith(TERMINAL):
            if len(s.split(None, LINE_WORDS)) >= LINE_WORDS:
                out.append(s)
        elif len(s.split(None, LINE_WORDS)) >= LINE_WORDS:
            parts = [s]              # continues on the next line
    return "\n".join(out)


def canonical_text(raw: str) -> str:
    """The text the canonical signature hashes: `view(raw)`, or `raw` itself when the view keeps
    fewer than MIN_WORDS words (a list article or a table page has almost no prose lines: its
    copies are then compared on everything they hold, never on an empty view)."""
    v = view(raw)
    return v if len(v.split(None, MIN_WORDS)) >= MIN_WORDS else raw


def signatures(raws: list[str], ngram: int, num_perm: int, seed: int) -> np.ndarray:
    """(N, num_perm) uint32 MinHash signatures of `canonical_text` of each raw text (the hash
    functions of `minhash.signatures`, so the two kinds of signature are comparable)."""
    return minhash.signatures([canonical_text(r) for r in raws], ngram, num_perm, seed)


def signatures_and_samples(raws: list[str], ngram: int, num_perm: int, seed: int
                           ) -> tuple[np.ndarray, np.ndarray]:
    """(`signatures(raws, ...)`, the containment sample of each view): (M,) uint64
    row << 32 | shingle hash, 1 in 2^SAMPLE_BITS distinct shingles of each view, ascending
    (`minhash.signatures_and_samples`; `dedup`'s containment pass, `data/contain.py`). One
    shingling gives both: the samples cost a mask and a sort of 1/8 of the shingles."""
    return minhash.signatures_and_samples([canonical_text(r) for r in raws], ngram, num_perm, seed,
                                          SAMPLE_BITS)
