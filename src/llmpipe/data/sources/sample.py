"""The built-in offline sample corpus: `uri: sample://c4|wikipedia|gutenberg|fineweb`.

Real English prose that ships with Python (`prose.passages()`: stdlib docstrings, the help
topics and comments) wrapped in each source's real-world record format and noise, so every
cleaning, filter and dedup rule has work to do on a fresh clone without network:

* c4: web pages (`text`, `url`, `timestamp`) with nav/cookie/javascript/"click here" lines, short
  unpunctuated lines, citation markers, lorem-ipsum pages and curly-brace code pages.
* wikipedia: articles (`id`, `url`, `title`, `text`) with `== Sections ==`, leftover markup
  ({{templates}}, [[links]], '''bold''', {| tables |}), References / External links / See also
  tails, plus stubs and list-heavy articles.
* gutenberg: books (`id`, `title`, `author`, `language`, `text`) hard-wrapped at 70 columns inside
  every Project Gutenberg header/footer variant, and one book with no body.
* fineweb: FineWeb's row schema (`id`, `text`, `url`, `dump`, `date`, `file_path`, `language`,
  `language_score`, `token_count`) with short-line, duplicated-line and unpunctuated pages.

Planted in every source: exact duplicates, near duplicates (a few words edited, aiming at 5-gram
Jaccard 0.8-0.9), non-English and junk documents; across sources, c4 and fineweb share a few
pages (exact copies and near copies). Nothing in the text marks a planted document (filters must
find it by content); the record's `planted` field says what it is, for tests only, and ingest
keeps it in `meta`.

No reuse: every prose paragraph is used by at most one document of one source, as in a real
corpus; only the planted duplicates (exact, near, the c4/fineweb shared pages) and the
deliberately repeated boilerplate lines and duplicated-line pages repeat text. The pool is cut
once, whatever the seed or the document counts, into disjoint slices in `SHARES` proportions
(passages ordered by the sha256 of their text, cut by cumulative characters); a kind consumes its
own slice once, in an order seeded by (kind, seed). When a kind's slice runs out it generates
fewer documents than asked and logs how many; it never starts over.

Deterministic: `random.Random` seeded from (kind, seed) strings (never `hash()`), so two runs or
two processes give identical records. The prose differs between Python versions.
"""
from __future__ import annotations

from llmpipe.core.errors import UserError

import functools
import hashlib
import random
import re
import textwrap

from llmpipe.core.log import get_logger
from llmpipe.data.sources import sample_text as T
from llmpipe.data.sources.prose import passages

log = get_logger("sample")
DEFAULT_DOCS = {"c4": 300, "wikipedia": 200, "gutenberg": 10, "fineweb": 300, "chat": 500}
KINDS = ("c4", "wikipedia", "gutenberg", "fineweb")  # the prose kinds; chat: sample_chat.py
N_SHARED = 4  # pages c4 and fineweb share: the first half copied exactly, the rest near-copied
# Share of the prose pool (characters) each kind may use; "shared" feeds the c4/fineweb pages.
# Sized so the default document counts fit on CPython 3.11 with ~10% to spare.
SHARES = {"shared": 0.01, "c4": 0.25, "fineweb": 0.26, "wikipedia": 0.26, "gutenberg": 0.22}


class Exhausted(Exception):
    """A kind's slice of the prose pool is used up (passages are never reused)."""


@functools.lru_cache(maxsize=1)
def pool_slices() -> dict[str, tuple[tuple[str, ...], ...]]:
    """The prose pool cut into disjoint per-kind slices: passages ordered by the sha256 of their
    text (a fixed pseudo-random order, independent of seeds and counts), then cut into contiguous
    runs by cumulative characters in SHARES proportions."""
    pool = sorted(passages(), key=lambda ps: hashlib.sha256("\n".join(ps).encode()).hexdigest())
    total = sum(len(p) for ps in pool for p in ps)
    out: dict[str, list] = {k: [] for k in SHARES}
    names, bounds, acc = list(SHARES), [], 0.0
    for k in names:
        acc += SHARES[k]
        bounds.append(acc * total)
    i, done = 0, 0
    for ps in pool:
        mid = done + sum(len(p) for p in ps) / 2  # a passage goes where its middle falls
        while i < len(names) - 1 and mid > bounds[i]:
            i += 1
        out[names[i]].append(ps)
        done += sum(len(p) for p in ps)
    return {k: tuple(v) for k, v in out.items()}


class Prose:
    """One kind's slice of the pool as a stream of paragraphs, each handed out once.

    The slice's passages come in an order seeded by `tag`; `take` raises `Exhausted` when nothing
    is left (never wraps around).
    """

    def __init__(self, kind: str, tag: str):
        order = list(pool_slices()[kind])
        random.Random(tag).shuffle(order)
        self.buf = [p for ps in reversed(order) for p in reversed(ps)]

    def take(self, chars: int) -> list[str]:
        """Consecutive paragraphs totalling at least `chars` characters (at least one; fewer at
        the end of the slice)."""
        if not self.buf:
            raise Exhausted
        out, total = [], 0
        while self.buf and (total < chars or not out):
            out.append(self.buf.pop())
            total += len(out[-1]) + 1
        return out


def upto(count: int, make) -> list:
    """Up to `count` results of `make()`, fewer if the prose runs out."""
    out = []
    try:
        while len(out) < count:
            out.append(make())
    except Exhausted:
        pass
    return out


def near_dup(text: str, rng: random.Random) -> str:
    """Edit a few words so 5-gram shingle Jaccard lands near 0.8-0.9.

    k edits each change up to 5 of n shingles: J ~ (n - 5k) / (n + 5k), so k = n(1-J)/(5(1+J)).
    """
    spans = [m.span() for m in re.finditer(r"[A-Za-z]{3,}", text)]
    target = rng.uniform(0.82, 0.9)
    k = max(1, round(len(spans) * (1 - target) / (5 * (1 + target))))
    picks = sorted(rng.sample(range(len(spans)), min(k, len(spans))), reverse=True)
    for i in picks:
        a, b = spans[i]
        text = text[:a] + rng.choice(["very", "often", "new", "other", "simple", "main"]) + text[b:]
    return text


def non_english(rng: random.Random, count: int) -> list[str]:
    """`count` distinct documents of a few sentences of one language each, sampled by `rng`."""
    out: list[str] = []
    while len(out) < count:
        lang = rng.choice(sorted(T.NON_ENGLISH))
        sents = [x for p in T.NON_ENGLISH[lang] for x in re.split(r"(?<=[.!?]) ", p)]
        picked = rng.sample(sents, rng.randint(min(3, len(sents)), len(sents)))
        text = "\n".join(" ".join(picked[i:i + 2]) for i in range(0, len(picked), 2))
        if text not in out:
            out.append(text)
    return out


def junk(rng: random.Random) -> str:
    kind = rng.randrange(3)
    if kind == 0:  # symbol soup
        return " ".join("".join(rng.choice("#$%&*@!^~+=<>|/\\{}") for _ in range(rng.randint(2, 9)))
                        for _ in range(rng.randint(60, 200)))
    if kind == 1:  # repeated characters
        return "\n".join(rng.choice("ax!=-.") * rng.randint(40, 120) for _ in range(rng.randint(8, 30)))
    rows = rng.randint(20, 60)  # numbers-only table
    return "\n".join("  ".join(str(rng.randint(0, 99999)) for _ in range(6)) for _ in range(rows))


def plant(docs: list[dict], extra: list[tuple[dict, int]], rng: random.Random) -> list[dict]:
    """Insert extra records at seeded positions; a record copying docs[i] goes after it."""
    out = list(docs)
    for rec, after in extra:
        orig = out.index(docs[after]) if after >= 0 else -1
        out.insert(rng.randint(orig + 1, len(out)), rec)
    return out


def counts(n: int) -> int:
    """How many of each planted kind for n documents: ~3%, at least one."""
    return max(1, round(0.03 * n))


# ------------------------------------------------------------------------------- web pages

def url(rng: random.Random, words: list[str]) -> str:
    host = f"www.{rng.choice(T.DOMAIN_WORDS)}{rng.choice(T.DOMAIN_WORDS)}.{rng.choice(T.TLDS)}"
    slug = "-".join(w.lower() for w in words[:5] if w.isalpha()) or "page"
    return f"https://{host}/{rng.randint(2012, 2020)}/{rng.randint(1, 12):02d}/{slug}"


def web_page(paras: list[str], rng: random.Random, noisy: bool = True) -> str:
    lines = list(paras)
    if noisy:
        if rng.random() < 0.1:  # citation markers after a few sentences
            lines = [re.sub(r"\. ", lambda m: f".[{rng.randint(1, 9)}] " if rng.random() < 0.3 else ". ", p)
                     for p in lines]
        if rng.random() < 0.35:
            for _ in range(rng.randint(1, 4)):
                lines.insert(rng.randint(1, len(lines)), rng.choice(T.SHORT_LINES))
        if rng.random() < 0.3:
            lines.insert(0, rng.choice(T.NAV_LINES))
        if rng.random() < 0.15:
            lines.insert(rng.randint(0, len(lines)), rng.choice(T.CLICK_LINES))
        if rng.random() < 0.2:
            lines.append(rng.choice(T.COOKIE_LINES))
        if rng.random() < 0.06:
            lines.insert(0, rng.choice(T.JS_LINES))
    return "\n".join(lines)


def shared_pages() -> list[str]:
    """Clean prose pages that appear in both c4 and fineweb (so they survive both cleaners)."""
    prose, rng = Prose("shared", "shared"), random.Random("shared")
    return upto(N_SHARED, lambda: web_page(prose.take(rng.randint(1500, 4000)), rng, noisy=False))


def sample_records(kind: str, n_docs: int = 0, seed: int = 0) -> list[dict]:
    """The sample corpus of one source kind as raw records in that source's real format.

    `n_docs` 0 -> DEFAULT_DOCS[kind]. Records that are planted carry a `planted` field.
    """
    if kind not in DEFAULT_DOCS:
        raise UserError(f"sample://{kind}: unknown sample corpus; choose one of {', '.join(DEFAULT_DOCS)}")
    n = n_docs or DEFAULT_DOCS[kind]
    from llmpipe.data.sources.sample_articles import gutenberg_books, wikipedia_articles  # builders import this module
    from llmpipe.data.sources.sample_web import c4_pages, fineweb_rows
    from llmpipe.data.sources.sample_chat import chat_records
    build = {"c4": c4_pages, "fineweb": fineweb_rows, "wikipedia": wikipedia_articles,
             "gutenberg": gutenberg_books, "chat": chat_records}[kind]
    out = build(n, seed)
    if len(out) < n and kind == "chat":
        from llmpipe.data.sources.sample_chat import facts
        log.warning("sample://chat: generated %d of %d conversations: the standard library has %d functions "
                    "with a one-sentence docstring, and each is used once", len(out), n, len(facts()))
    elif len(out) < n:
        chars = sum(len(p) for ps in pool_slices()[kind] for p in ps)
        log.warning("sample://%s: generated %d of %d documents: its share of the stdlib prose pool "
                    "(%s chars) ran out, and passages are never reused", kind, len(out), n, f"{chars:,}")
    return out


def hard_wrap(paras: list[str], width: int = 70) -> str:
    """Paragraphs hard-wrapped at `width` columns, blank line between them (Gutenberg style)."""
    return "\n\n".join(textwrap.fill(p, width=width) for p in paras)
