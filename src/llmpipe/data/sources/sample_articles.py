"""Long-form sources of the sample corpus: wikipedia articles and gutenberg books (see `sample.py`)."""
from __future__ import annotations

import random
import re

from llmpipe.data.sources import sample_text as T
from llmpipe.data.sources.sample import Exhausted, Prose, counts, hard_wrap, junk, near_dup, non_english, plant, upto

_WORD = re.compile(r"\b[a-z]{6,}\b")
BOOK_CHARS = (30_000, 60_000)  # body length of a book, before the Gutenberg header and footer


# ------------------------------------------------------------------------------- wikipedia

def _title(lead: str, rng: random.Random, taken: set[str]) -> str:
    words = sorted(set(_WORD.findall(lead))) or ["article"]
    base = f"{rng.choice(words).capitalize()} {rng.choice(words)}"
    for suffix in ["", " (computing)", " (programming)", " (software)"] + [f" {i}" for i in range(2, 999)]:
        if base + suffix not in taken:
            taken.add(base + suffix)
            return base + suffix
    raise AssertionError("unreachable")


def _markup(para: str, rng: random.Random) -> str:
    """Leftover wikitext inside a paragraph: [[links]], [[target|label]], <ref>{{cite}}</ref>."""
    def link(m: re.Match) -> str:
        r = rng.random()
        if r < 0.04:
            return f"[[{m.group(0)}]]"
        if r < 0.06:
            return f"[[{m.group(0).capitalize()} (computing)|{m.group(0)}]]"
        return m.group(0)
    para = _WORD.sub(link, para)
    if rng.random() < 0.3:
        para += (f"<ref>{{{{cite web |url=https://docs.example.org/{rng.randint(100, 999)} "
                 f"|title=Reference manual |access-date=2023-{rng.randint(1, 12):02d}-01}}}}</ref>")
    return para


def _table(rng: random.Random) -> str:
    rows = "\n".join(f"|-\n| {rng.choice(T.WIKI_HEADINGS)} || {rng.randint(1, 2020)} || "
                     f"{rng.choice(['yes', 'no', 'partial'])}" for _ in range(rng.randint(3, 7)))
    return '{| class="wikitable"\n|-\n! Name !! Year !! Supported\n' + rows + "\n|}"


def _tails(title: str, rng: random.Random) -> str:
    see = "\n".join(f"* [[{rng.choice(T.WIKI_HEADINGS)} ({rng.choice(['computing', 'design'])})]]"
                    for _ in range(rng.randint(2, 4)))
    refs = "\n".join(f"* {{{{cite book |last={rng.choice(T.LAST_NAMES)} |title={title} and related topics "
                     f"|year={rng.randint(1970, 2022)} |publisher=Example Press}}}}" for _ in range(rng.randint(1, 4)))
    return (f"== See also ==\n{see}\n\n== References ==\n{{{{reflist}}}}\n{refs}\n\n"
            f"== External links ==\n* [https://www.example.org/{title.replace(' ', '_')} Official website]\n\n"
            f"[[Category:{rng.choice(T.WIKI_CATEGORIES)}]]")


def _article(prose: Prose, rng: random.Random, title_set: set[str]) -> tuple[str, str]:
    lead = prose.take(rng.randint(150, 400))
    title = _title(" ".join(lead), rng, title_set)
    first = title.split(" (")[0]
    parts = [f"'''{first}''' — " + " ".join(lead)]
    if rng.random() < 0.2:
        parts.insert(0, f"{{{{Infobox software\n| name = {first}\n| released = {rng.randint(1990, 2020)}\n}}}}")
    for h in rng.sample(T.WIKI_HEADINGS, rng.randint(2, 4)):
        parts.append(f"== {h} ==")
        parts += [_markup(p, rng) for p in prose.take(rng.randint(200, 700))]
        if rng.random() < 0.2:
            parts.append(f"=== {rng.choice(T.WIKI_HEADINGS)} ===")
            parts += [_markup(p, rng) for p in prose.take(rng.randint(150, 400))]
    if rng.random() < 0.2:
        parts.insert(rng.randint(2, len(parts)), _table(rng))
    parts.append(_tails(first, rng))
    return title, "\n\n".join(parts)


def _stub(prose: Prose, rng: random.Random, title_set: set[str]) -> tuple[str, str]:
    lead = prose.take(rng.randint(80, 250))
    title = _title(" ".join(lead), rng, title_set)
    return title, f"'''{title}''' — {' '.join(lead)}\n\n{{{{programming-stub}}}}"


def _list_article(prose: Prose, rng: random.Random, title_set: set[str]) -> tuple[str, str]:
    items = prose.take(rng.randint(1000, 2000))
    title = "List of " + _title(" ".join(items), rng, title_set).lower()
    lines = [f"This is a list of {title[8:]}.", ""]
    lines += [f"* [[{' '.join(p.split()[:rng.randint(2, 4)])}]] – {' '.join(p.split()[4:10])}" for p in items]
    return title, "\n".join(lines) + "\n\n" + _tails(title, rng)


def wikipedia_articles(n: int, seed: int) -> list[dict]:
    rng, prose, titles = random.Random(f"wikipedia:{seed}"), Prose("wikipedia", f"wikipedia:{seed}"), set()
    next_id = iter(range(1000 + seed * 100_000, 10**9, 7))

    def rec(title: str, text: str, planted: str | None = None) -> dict:
        r = {"id": str(next(next_id)), "url": "https://en.wikipedia.org/wiki/" + title.replace(" ", "_"),
             "title": title, "text": text}
        return {**r, "planted": planted} if planted else r

    c = counts(n)
    special = upto(2 * c, lambda: rec(*_stub(prose, rng, titles), "stub"))
    special += upto(c, lambda: rec(*_list_article(prose, rng, titles), "list_heavy"))
    special += [rec(_title(t, rng, titles), t, "non_english") for t in non_english(rng, c)]
    special += [rec(f"Table {i}", junk(rng), "junk") for i in range(c)]
    n_base = max(1, n - len(special) - 2 * c)
    docs = upto(n_base, lambda: rec(*_article(prose, rng, titles)))
    n_base = len(docs)
    extra = [(s, -1) for s in special]
    for _ in range(c if docs else 0):
        i, j = rng.randrange(n_base), rng.randrange(n_base)
        extra.append((rec(docs[i]["title"] + " (mirror)", docs[i]["text"], "exact_dup"), i))
        extra.append((rec(docs[j]["title"] + " (revision)", near_dup(docs[j]["text"], rng), "near_dup"), j))
    return plant(docs, extra, rng)[:n]


# ------------------------------------------------------------------------------- gutenberg

def _wrap_book(body: str, title: str, author: str, book_id: int, variant: int, rng: random.Random) -> str:
    """A raw Project Gutenberg file around `body`, in one of five header/footer variants in use."""
    up = title.upper()
    month = rng.choice(["January", "March", "June", "September", "November"])
    date = f"{month} {rng.randint(1, 28)}, {rng.randint(1996, 2023)}"
    meta = (f"Title: {title}\n\nAuthor: {author}\n\nRelease Date: {date} [EBook #{book_id}]\n\n"
            "Language: English\n")
    produced = (f"Produced by {rng.choice(T.FIRST_NAMES)} {rng.choice(T.LAST_NAMES)} and the Online\n"
                "Distributed Proofreading Team.")
    if variant == 0:  # current style
        return (f"The Project Gutenberg eBook of {title}, by {author}\n\n{T.PG_LICENSE_HEAD}\n\n{meta}\n"
                f"*** START OF THE PROJECT GUTENBERG EBOOK {up} ***\n\n{body}\n\n"
                f"*** END OF THE PROJECT GUTENBERG EBOOK {up} ***\n\n{T.PG_LICENSE_BODY}\n")
    if variant == 1:  # 2000s style: THIS, an "End of the Project Gutenberg EBook" line before the marker
        return (f"The Project Gutenberg EBook of {title}, by {author}\n\n{T.PG_LICENSE_HEAD}\n\n\n{meta}"
                f"Character set encoding: ASCII\n\n*** START OF THIS PROJECT GUTENBERG EBOOK {up} ***\n\n\n\n\n"
                f"{produced}\n\n\n\n\n{body}\n\n\n\n\nEnd of the Project Gutenberg EBook of {title}, by {author}\n\n"
                f"*** END OF THIS PROJECT GUTENBERG EBOOK {up} ***\n\n***** This file should be named "
                f"{book_id}.txt or {book_id}.zip *****\n\n{T.PG_LICENSE_BODY}\n")
    if variant == 2:  # 1990s etext with the small print
        return (f"The Project Gutenberg Etext of {title}, by {author}\n\n{T.PG_SMALL_PRINT}\n\n\n\n\n"
                f"{title.upper()}\n\nby {author}\n\n\n\n{body}\n\n\n\nEnd of the Project Gutenberg Etext of "
                f"{title}, by {author}\n")
    if variant == 3:  # no spaces inside the markers, "End of Project Gutenberg's" line
        return (f"Project Gutenberg's {title}, by {author}\n\n{T.PG_LICENSE_HEAD}\n\n{meta}\n"
                f"***START OF THE PROJECT GUTENBERG EBOOK {up}***\n\n{produced}\n\n{body}\n\n"
                f"End of Project Gutenberg's {title}, by {author}\n\n"
                f"***END OF THE PROJECT GUTENBERG EBOOK {up}***\n\n{T.PG_LICENSE_BODY}\n")
    # variant 4: end marker without the title, licence introduced by "START: FULL LICENSE"
    return (f"The Project Gutenberg eBook of {title}\n\n{T.PG_LICENSE_HEAD}\n\n{meta}\n"
            f"*** START OF THE PROJECT GUTENBERG EBOOK {up} ***\n\n{body}\n\n"
            f"*** END OF THE PROJECT GUTENBERG EBOOK ***\n\n\n\nSTART: FULL LICENSE\n\n{T.PG_LICENSE_BODY}\n")


def _book_body(prose: Prose, rng: random.Random, chars: int) -> str:
    """Chapters of hard-wrapped prose up to `chars`; a shorter book if the prose runs out."""
    chapters, total, k = [], 0, 1
    try:
        while total < chars:
            paras = prose.take(rng.randint(3000, 9000))
            chapters.append(f"CHAPTER {_roman(k)}.\n\n\n" + hard_wrap(paras))
            total += len(chapters[-1])
            k += 1
    except Exhausted:
        if not chapters:
            raise
    return "\n\n\n\n".join(chapters)


def _roman(k: int) -> str:
    out = ""
    for v, s in ((40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")):
        while k >= v:
            out, k = out + s, k - v
    return out


def gutenberg_books(n: int, seed: int) -> list[dict]:
    rng, prose = random.Random(f"gutenberg:{seed}"), Prose("gutenberg", f"gutenberg:{seed}")
    taken: set[str] = set()

    def rec(body: str, variant: int, planted: str | None = None) -> dict:
        while True:
            title = f"The {rng.choice(T.TITLE_WORDS)} of {rng.choice(T.LAST_NAMES)}"
            if title not in taken:
                taken.add(title)
                break
        author = f"{rng.choice(T.FIRST_NAMES)} {rng.choice(T.LAST_NAMES)}"
        book_id = rng.randint(1000, 69999)
        r = {"id": str(book_id), "title": title, "author": author, "language": "en",
             "text": _wrap_book(body, title, author, book_id, variant, rng)}
        return {**r, "planted": planted} if planted else r

    n_planted = (n >= 2) + 3 * (n >= 5)  # no_body from 2 books on; non_english, exact and near dup from 5
    bodies = upto(n - n_planted, lambda: _book_body(prose, rng, rng.randint(*BOOK_CHARS)))
    docs = [rec(b, i % 5) for i, b in enumerate(bodies)]  # book 0 uses variant 0: no "Produced by"
    extra = [(rec("", 0, "no_body"), -1)] if n >= 2 else []
    if n >= 5 and bodies:
        extra.append((rec(hard_wrap(non_english(rng, 1)[0].split("\n")), 2, "non_english"), -1))
        # the same body in another edition: identical once header and footer are stripped
        extra.append((rec(bodies[0], 4, "exact_dup"), 0))
        extra.append((rec(near_dup(bodies[-1], rng), 1, "near_dup"), len(bodies) - 1))
    return plant(docs, extra, rng)[:n]
