"""Planted cross-source near duplicates built from the real samples of ../shared/corpus.

    PYTHONPATH=src .venv/bin/python bench/cross_dedup_corpus.py --corpus ../shared/corpus --out /tmp/x

Writes OUT/{c4,wikipedia,gutenberg,fineweb}/*.jsonl.gz (sources for `dvc repro` or the stage
scripts) and OUT/planted.json, one entry per planted copy: source and content id of both ends,
raw word 5-gram Jaccard (exact, on the normalised raw texts, as `minhash` shingles them), level.

What is planted (seeded):
  * Wikipedia into C4 and into FineWeb: real articles of 200+ words, each copy with words replaced
    at random positions (line structure kept) until its raw Jaccard to the article is just below
    the level; at the top level (0.9) two copies per article in C4: as is, and "pre-cleaned"
    (C4's line rules applied, as real C4 is distributed).
  * Gutenberg chapters into C4: the 68 real books cut at their CHAPTER headings; the C4 copy of a
    chapter is unwrapped into one line per paragraph (as a web page shows it). With
    `gutenberg="books"` (the default) the Gutenberg source holds the 68 whole books as shipped
    (header, hard wrapping, CRLF, licence): a copy is then contained in its book, whose Jaccard
    to it is ~1/chapters, and its level is its raw containment in the book,
    |shingles(copy) & shingles(book)| / |shingles(copy)| (`raw_containment`); with "chapters" the
    source holds every chapter as a document (the earlier benchmark: Jaccard to the chapter).
Levels: 0.9 (the target band: raw Jaccard in [0.85, 0.9]) and 0.7, 0.5, 0.3 (must not merge
below 0.5). Each original is planted at one level only, so no two copies of one original meet
(in "books" mode several chapters of one book are planted, each once). `level_value` of a planted
pair is its raw Jaccard, or its raw containment for a chapter copied from a whole book.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
from pathlib import Path

import numpy as np

from llmpipe.data.minhash import normalize

NGRAM = 5
LEVELS = (0.9, 0.7, 0.5, 0.3)
_CHAPTER = re.compile(r"^(?:CHAPTER|Chapter)\s+[IVXLC\d]+\b.*$", re.M)
_WORD = re.compile(r"\w[\w'’-]*")   # a word without the punctuation around it (kept on edits)


def read_jsonl(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=1) as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def content_id(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def shingles(text: str) -> set[str]:
    w = normalize(text).split()
    return {" ".join(w[i:i + NGRAM]) for i in range(max(1, len(w) - NGRAM + 1))} if w else set()


def jaccard(a: set, b: set) -> float:
    return len(a & b) / max(1, len(a | b))


def substituted(text: str, target: float, vocab: list[str], rng) -> tuple[str, float]:
    """`text` with words replaced in place (separators and punctuation kept: an edit changes a
    word, not where a sentence ends) until raw Jaccard <= target, by
    binary search on the number of replaced words (Jaccard only falls as more are replaced)."""
    spans = [m.span() for m in _WORD.finditer(text)]
    order = rng.permutation(len(spans))
    repl = [vocab[i] for i in rng.integers(0, len(vocab), size=len(spans))]
    base = shingles(text)

    def edited(k: int) -> str:
        pick = dict(zip(order[:k].tolist(), repl[:k]))
        out, last = [], 0
        for j in sorted(pick):
            a, b = spans[j]
            out += [text[last:a], pick[j]]
            last = b
        return "".join(out) + text[last:]

    lo, hi = 0, len(spans)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if jaccard(base, shingles(edited(mid))) > target:
            lo = mid
        else:
            hi = mid
    t = edited(hi)
    return t, jaccard(base, shingles(t))


def c4_lines(text: str) -> str:
    """C4's line rules (terminal punctuation, 5+ words): what real C4 holds of a page."""
    keep = [ln for ln in text.split("\n")
            if ln.strip().endswith((".", "!", "?", '"', "”")) and len(ln.split()) >= 5]
    return "\n".join(keep)


def unwrap(text: str) -> str:
    """One line per paragraph (blank-line separated blocks joined), LF line ends."""
    paras = re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n"))
    return "\n\n".join(" ".join(ln.strip() for ln in p.split("\n") if ln.strip()) for p in paras if p.strip())


def chapters(book: str, min_words: int = 300) -> list[str]:
    """A book's chapters: from each CHAPTER heading to the next (the last up to the END marker)."""
    end = book.find("*** END OF")
    body = book[:end] if end > 0 else book
    starts = [m.start() for m in _CHAPTER.finditer(body)]
    out = []
    for a, b in zip(starts, starts[1:] + [len(body)]):
        ch = body[a:b].strip()
        if len(ch.split()) >= min_words:
            out.append(ch)
    return out


def containment(part: set, whole: set) -> float:
    return len(part & whole) / max(1, len(part))


def build(corpus: Path, out: Path, seed: int = 0, wiki_c4: int = 150, wiki_fw: int = 100,
          chapters_c4: int = 100, low_per_level: int = 40, gutenberg: str = "books") -> dict:
    rng = np.random.default_rng(seed)
    c4 = [r["text"] for r in read_jsonl(corpus / "c4/c4-en-train-00000-first1000.jsonl.gz")]
    wiki = [r["text"] for r in read_jsonl(corpus / "wikipedia/wikipedia-20231101-en-1000.jsonl.gz")]
    books = [r["text"] for r in read_jsonl(corpus / "gutenberg/gutenberg-68-books.jsonl.gz")]
    import pyarrow.parquet as pq
    fw = []
    for p in sorted((corpus / "fineweb").glob("*.parquet")):
        fw += pq.read_table(p, columns=["text"]).column("text").to_pylist()
    vocab = sorted({w for t in c4[:300] for w in t.split() if w.isalpha()})
    long_wiki = [t for t in dict.fromkeys(wiki) if len(t.split()) >= 200]
    rng.shuffle(long_wiki)
    book_of = {}
    for k, b in enumerate(books):
        for c in chapters(b):
            book_of.setdefault(c, k)
    chaps = list(book_of)
    rng.shuffle(chaps)
    book_shingles: dict[int, set] = {}
    planted, c4_extra, fw_extra = [], [], []

    def plant(orig: str, src: str, dst: str, level: float, variant: str, bucket: list) -> None:
        copy, j = substituted(orig, level, vocab, rng)
        if variant == "pre_cleaned":
            copy = c4_lines(copy)
        elif variant == "unwrapped":
            copy = unwrap(copy)
        bucket.append(copy)
        entry = {"orig_source": src, "orig_id": content_id(orig), "copy_source": dst,
                 "copy_id": content_id(copy), "level": level, "variant": variant,
                 "raw_jaccard": round(jaccard(shingles(orig), shingles(copy)), 4),
                 "orig_words": len(orig.split()), "copy_words": len(copy.split())}
        entry["level_value"] = entry["raw_jaccard"]
        if src == "gutenberg" and gutenberg == "books":   # the original end is the whole book
            k = book_of[orig]
            if k not in book_shingles:
                book_shingles[k] = shingles(books[k])
            entry.update(orig_id=content_id(books[k]), chapter_id=content_id(orig), orig_words=len(books[k].split()),
                         raw_containment=round(containment(shingles(copy), book_shingles[k]), 4))
            entry["level_value"] = entry["raw_containment"]
        planted.append(entry)

    w = iter(long_wiki)
    for _ in range(wiki_c4):
        orig = next(w)
        plant(orig, "wikipedia", "c4", 0.9, "as_is", c4_extra)
        plant(orig, "wikipedia", "c4", 0.9, "pre_cleaned", c4_extra)
    for _ in range(wiki_fw):
        plant(next(w), "wikipedia", "fineweb", 0.9, "as_is", fw_extra)
    for level in LEVELS[1:]:
        for _ in range(low_per_level):
            plant(next(w), "wikipedia", "c4", level, "as_is", c4_extra)
    ch = iter(chaps)
    for _ in range(chapters_c4):
        plant(next(ch), "gutenberg", "c4", 0.9, "unwrapped", c4_extra)
    for level in LEVELS[1:]:
        for _ in range(low_per_level // 2):
            plant(next(ch), "gutenberg", "c4", level, "unwrapped", c4_extra)
    write_jsonl(out / "c4/c4.jsonl.gz", [{"text": t} for t in c4 + c4_extra])
    write_jsonl(out / "fineweb/fineweb.jsonl.gz", [{"text": t} for t in fw + fw_extra])
    write_jsonl(out / "wikipedia/wikipedia.jsonl.gz", [{"text": t} for t in wiki])
    gut = list(dict.fromkeys(books)) if gutenberg == "books" else chaps
    write_jsonl(out / "gutenberg/gutenberg.jsonl.gz", [{"text": t} for t in gut])
    info = {"gutenberg": gutenberg, "planted": planted,
            "docs": {"c4": len(c4) + len(c4_extra), "fineweb": len(fw) + len(fw_extra),
                     "wikipedia": len(wiki), "gutenberg": len(gut)}}
    (out / "planted.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=Path("../shared/corpus"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gutenberg", choices=["books", "chapters"], default="books",
                    help="the Gutenberg source holds the whole books (chapter copies are contained in them) or chapters")
    a = ap.parse_args()
    info = build(a.corpus, a.out, a.seed, gutenberg=a.gutenberg)
    print(json.dumps(info["docs"]), len(info["planted"]), "planted")


if __name__ == "__main__":
    main()
