"""The built-in sample corpus: deterministic, big enough, real formats, planted noise findable."""
from __future__ import annotations

import collections
import hashlib
import inspect
import json
import logging
import re
import subprocess
import sys

import pytest

from llmpipe.data.sources.prose import passages, prose_paragraphs
from llmpipe.data.sources.sample import DEFAULT_DOCS, KINDS, sample_records

FIELDS = {
    "c4": {"text", "url", "timestamp"},
    "wikipedia": {"id", "url", "title", "text"},
    "gutenberg": {"id", "title", "author", "language", "text"},
    "fineweb": {"id", "text", "url", "dump", "date", "file_path", "language", "language_score", "token_count"},
}
PLANTED = {
    "c4": {"exact_dup", "near_dup", "non_english", "junk", "lorem_ipsum", "curly_braces", "cross_source"},
    "wikipedia": {"exact_dup", "near_dup", "non_english", "junk", "stub", "list_heavy"},
    "gutenberg": {"exact_dup", "near_dup", "non_english", "no_body"},
    "fineweb": {"exact_dup", "near_dup", "non_english", "junk", "short_lines", "duplicated_lines",
                "no_terminal_punctuation", "cross_exact_dup", "cross_near_dup"},
}


@pytest.fixture(scope="module")
def corpus() -> dict[str, list[dict]]:
    return {k: sample_records(k) for k in KINDS}


def digest(kinds=KINDS, n=12, seed=0) -> str:
    h = hashlib.sha256()
    for k in kinds:
        h.update(json.dumps(sample_records(k, n, seed), sort_keys=True).encode())
    return h.hexdigest()


def shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    w = re.findall(r"\w+", text.lower())
    return {tuple(w[i:i + n]) for i in range(max(1, len(w) - n + 1))}


def jaccard(a: str, b: str) -> float:
    x, y = shingles(a), shingles(b)
    return len(x & y) / len(x | y)


def test_identical_across_runs_and_processes():
    here = digest()
    assert digest() == here
    code = "from test_sample import digest; print(digest())"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       cwd=__file__.rsplit("/", 1)[0])
    assert p.stdout.strip() == here
    assert digest(seed=1) != here


def test_sizes(corpus):
    assert sum(len(p) for ps in passages() for p in ps) > 1_000_000  # >= ~1 MB of unique prose
    for k in KINDS:
        assert len(corpus[k]) == DEFAULT_DOCS[k]
    assert sum(len(r["text"]) for rs in corpus.values() for r in rs) > 1_500_000
    web = sorted(len(r["text"]) for r in corpus["c4"] if "planted" not in r)
    assert 1000 <= web[len(web) // 2] <= 5000
    books = [len(r["text"]) for r in corpus["gutenberg"] if r.get("planted") in (None, "exact_dup")]
    assert all(30_000 <= b <= 100_000 for b in books)
    for k in KINDS:
        for n in (1, 3, 7) if k == "gutenberg" else (1, 2, 9, 31):
            assert len(sample_records(k, n)) == n, (k, n)


def test_record_formats(corpus):
    for k, rows in corpus.items():
        for r in rows:
            assert set(r) - {"planted"} == FIELDS[k], (k, set(r))
            assert isinstance(r["text"], str) and r["text"]
        ids = [r["id"] for r in rows if "id" in r]
        assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"<urn:uuid:[0-9a-f-]{36}>", r["id"]) for r in corpus["fineweb"])
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r["timestamp"]) for r in corpus["c4"])


def test_planted_kinds_present(corpus):
    for k, rows in corpus.items():
        assert {r["planted"] for r in rows if "planted" in r} == PLANTED[k], k


def test_exact_duplicates_are_only_the_planted_ones(corpus):
    for k in ("c4", "wikipedia", "fineweb"):
        seen, dups = set(), []
        for r in corpus[k]:
            if r["text"] in seen:
                dups.append(r.get("planted"))
            seen.add(r["text"])
        assert dups and set(dups) == {"exact_dup"}, k
        assert len(dups) == sum(r.get("planted") == "exact_dup" for r in corpus[k])


def test_near_duplicates_have_a_close_original(corpus):
    for k in ("c4", "wikipedia", "fineweb"):
        originals = [r["text"] for r in corpus[k] if "planted" not in r]
        for r in corpus[k]:
            if r.get("planted") == "near_dup":
                best = max(jaccard(r["text"], o) for o in originals)
                assert 0.7 <= best < 1.0, (k, best)


def test_cross_source_pages(corpus):
    c4 = {r["text"] for r in corpus["c4"] if r.get("planted") == "cross_source"}
    exact = [r["text"] for r in corpus["fineweb"] if r.get("planted") == "cross_exact_dup"]
    near = [r["text"] for r in corpus["fineweb"] if r.get("planted") == "cross_near_dup"]
    assert exact and set(exact) <= c4
    assert near and all(0.7 <= max(jaccard(t, o) for o in c4) < 1.0 for t in near)


def test_web_noise(corpus):
    c4 = "\n".join(r["text"] for r in corpus["c4"])
    for needle in ["Home | About | Contact", "cookies", "JavaScript", "Click here", "Lorem ipsum", "{", "Share this"]:
        assert needle in c4 or needle.lower() in c4.lower(), needle
    assert re.search(r"\.\[\d\] ", c4)
    fw = {r["planted"]: r["text"] for r in corpus["fineweb"] if "planted" in r}
    lines = fw["duplicated_lines"].split("\n")
    assert collections.Counter(lines).most_common(1)[0][1] >= 4
    assert sum(ln.endswith((".", "!", "?")) for ln in fw["no_terminal_punctuation"].split("\n")) == 0


def test_wikipedia_markup(corpus):
    wiki = [r for r in corpus["wikipedia"] if "planted" not in r]
    text = "\n".join(r["text"] for r in wiki)
    for needle in ["== References ==", "== External links ==", "== See also ==", "{{cite", "[[", "'''",
                   '{| class="wikitable"', "[[Category:"]:
        assert needle in text, needle
    stubs = [r["text"] for r in corpus["wikipedia"] if r.get("planted") == "stub"]
    assert stubs and all(len(s) < 600 for s in stubs)
    lists = [r["text"] for r in corpus["wikipedia"] if r.get("planted") == "list_heavy"]
    assert all(sum(ln.startswith("* ") for ln in t.split("\n")) >= 10 for t in lists)


def test_gutenberg_markers_and_wrapping(corpus):
    books = corpus["gutenberg"]
    text = "\n".join(r["text"] for r in books)
    for marker in ["*** START OF THE PROJECT GUTENBERG EBOOK", "*** START OF THIS PROJECT GUTENBERG EBOOK",
                   "***START OF THE PROJECT GUTENBERG EBOOK", "*END*THE SMALL PRINT!",
                   "End of the Project Gutenberg EBook of", "End of the Project Gutenberg Etext of",
                   "End of Project Gutenberg's", "*** END OF THE PROJECT GUTENBERG EBOOK",
                   "*** END OF THIS PROJECT GUTENBERG EBOOK", "*** END OF THE PROJECT GUTENBERG EBOOK ***"]:
        assert marker in text, marker
    empty = next(r["text"] for r in books if r.get("planted") == "no_body")
    assert re.search(r"\*\*\* START OF THE PROJECT GUTENBERG EBOOK [^*]+\*\*\*\s+\*\*\* END OF", empty)
    for book in (r["text"] for r in books if "planted" not in r):
        body = re.split(r"\n(End of|\*\*\* ?END)", book[book.index("CHAPTER I."):])[0]
        assert len(body) > 25_000 and max(len(ln) for ln in body.split("\n")) <= 70

    def strip(t: str) -> str:
        return t.split(" ***\n", 1)[-1].split("\n*** END")[0].strip()  # the body, for the two marker styles used
    dup = next(r for r in books if r.get("planted") == "exact_dup")
    assert sum(strip(r["text"]) == strip(dup["text"]) for r in books) == 2


def test_non_english_and_junk_look_like_it(corpus):
    english = {"the", "and", "of", "to", "is", "that", "it", "with", "for"}
    for k, rows in corpus.items():
        for r in rows:
            words = re.findall(r"[a-zäöüéèàáíóúãõç]+", r["text"].lower())
            if r.get("planted") == "non_english" and k != "gutenberg":
                assert sum(w in english for w in words) <= 0.03 * len(words), r["text"][:80]
            if r.get("planted") == "junk":
                t = r["text"]
                assert sum(c.isalpha() for c in t) < 0.3 * len(t) or len(set(t)) <= 8, t[:80]


def test_prose_paragraphs_keeps_only_prose():
    doc = """Return the thing.

    This paragraph explains, at some length, what the function does
    and why it matters to callers.

    >>> f(1)
    2

    Args:
        x: an indented definition list that is not running prose at all.

    ======
    Short.
    """
    assert prose_paragraphs(inspect.cleandoc(doc)) == [
        "This paragraph explains, at some length, what the function does and why it matters to callers."]


def test_unknown_kind():
    with pytest.raises(ValueError, match="sample://news: unknown sample corpus"):
        sample_records("news")


COPIES = {"exact_dup", "near_dup", "cross_exact_dup", "cross_near_dup"}  # planted copies of another doc


def test_no_prose_is_reused_across_documents_or_sources(corpus):
    """Each pool paragraph lands in at most one document of one source (planted copies aside):
    no two documents share a 13-word n-gram of pool prose (the mix stage's leakage test)."""
    pool = {}  # 13-gram of a passage's running text -> the paragraph holding its first word
    i = 0
    for ps in passages():
        w, para_of = [], []
        for para in ps:
            w += para.split()
            para_of += [i] * len(para.split())
            i += 1
        for j in range(len(w) - 12):
            pool[tuple(w[j:j + 13])] = para_of[j]
    owner: dict[int, tuple[str, int]] = {}  # paragraph -> (source, document) it was found in
    found = 0
    for k, rows in corpus.items():
        for d, r in enumerate(rows):
            if r.get("planted") in COPIES:
                continue
            w = r["text"].split()
            for para in {pool[g] for g in (tuple(w[j:j + 13]) for j in range(len(w) - 12)) if g in pool}:
                assert owner.setdefault(para, (k, d)) == (k, d), (para, owner[para], (k, d))
                found += 1
    assert found == len(owner) > 0.8 * len(set(pool.values()))  # and most of the pool is used


def test_prose_pool_has_no_shared_13grams():
    """No 13-word n-gram of a passage's running text (paragraph after paragraph) is in two passages."""
    seen: set[tuple[str, ...]] = set()
    for ps in passages():
        w = " ".join(ps).split()
        grams = {tuple(w[j:j + 13]) for j in range(len(w) - 12)}
        assert not seen & grams, ps
        seen |= grams


def test_exhausted_kind_generates_fewer_documents_and_says_so():
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("llmpipe.sample").addHandler(handler)
    try:
        rows = sample_records("gutenberg", 60)  # far more books than its slice of the pool holds
    finally:
        logging.getLogger("llmpipe.sample").removeHandler(handler)
    bodies = [r["text"] for r in rows if "planted" not in r]
    assert 6 <= len(bodies) < 56 and len(rows) < 60
    assert [r.getMessage().split(": its share")[0] for r in records] == [
        f"sample://gutenberg: generated {len(rows)} of 60 documents"]
