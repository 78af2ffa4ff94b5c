"""Generate a realistic, non-duplicate raw corpus of ~30 MB x scale over 4 sharded sources.

    python bench/gen_corpus.py --scale 4 --out /tmp/scale4 [--corpus ../shared/corpus] [--seed 0] [--jobs 2]
    python bench/gen_corpus.py --add-file fineweb --out /tmp/scale4     # one more ~2% file

Layout under --out (one folder per source, many input files each; a source's files are its shards):

    c4/c4-train.NNNNN.jsonl.gz       C4 records {text, timestamp, url}, one JSON object a line
    fineweb/000_NNNNN.parquet        FineWeb's row schema (text, id, dump, url, date, file_path,
                                     language, language_score, token_count)
    wikipedia/train-NNNNN.parquet    wikimedia/wikipedia's schema (id, url, title, text)
    gutenberg/pgNNNNNN.txt           one raw Project Gutenberg book a file (header, START/END
                                     markers, licence footer, hard-wrapped lines; CRLF like the
                                     template book)
    corpus.json                      what was written: files, docs, bytes, planted copies, the
                                     `sources:` params that read it (README "Pointing at real data")

Sizes: text bytes (UTF-8, uncompressed) of ~30e6 x scale in the shares c4 40%, fineweb 30%,
wikipedia 20%, gutenberg 10%; every c4/fineweb/wikipedia file holds ~--file-frac (2%) of the
corpus's text, so a source has share/file_frac files at every scale (c4 20, fineweb 15,
wikipedia 10) and files grow with the scale; gutenberg has one file per book (a book is as long as
its template book: the 69 distinct real ones are 67 KB to 1.1 MB, median 0.4 MB), books being
added until the gutenberg share is reached.

How documents are made (templates from --corpus, i.e. /work/shared/corpus; see its README):
  * every real document of a kind is a template of its line structure: for web pages (c4,
    fineweb) each prose line (>= 30 chars ending in terminal punctuation) becomes a run of real
    sentences of about the same length, drawn at random from the pooled sentences of all real web
    pages (c4 + fineweb); every other line (titles, menus, bylines, "Read more") is replaced by a
    real short line of the same source drawn at random; blank lines stay;
  * wikipedia: the plain-text layout of wikimedia/wikipedia (lead, bare section headings,
    paragraphs, list items, then the "References" / "External links" tail and category lines),
    headings, list items and category lines drawn from the real ones, paragraphs from real
    Wikipedia sentences; --wikitext-share of the articles (default 0.3) are written as leftover
    wikitext instead ("== Heading ==", '''bold''' title, [[links]], <ref>{{cite web}}</ref>,
    {{Infobox}} / {{Short description}} templates, a {| wikitable |} sometimes, "== References ==",
    [[Category:...]]), which is what clean.wikipedia.{tables,tails,markup} remove;
  * gutenberg: a real book's header (through its START marker) and footer (from its "End of
    Project Gutenberg" / END marker, licence included) are kept verbatim; every paragraph of the
    body is rewritten with real Gutenberg sentences and hard-wrapped at the template paragraph's
    width; headings ("CHAPTER I.") stay, indented blocks (verse, letters) keep their indentation.
Documents are random sentence sequences, so no two share a passage longer than one real sentence
(sentences are reused: corpus.json gives the pool sizes and the reuse factor), and dedup finds
only what is planted on purpose: --plant (default 0.01) of the c4, fineweb and wikipedia
documents are copies of another document of the corpus (half exact, half near: 0.5-1.5% of the
words replaced, 5-gram Jaccard ~0.85-0.95), in another file as often as not; fineweb's plants
copy c4 documents in 40% of the cases (cross-source); gutenberg book 4 is the body of book 1
under another book's header and footer (a duplicate only once the cleaner strips them), book 9 a
near copy of book 2, and so on every 100 books. corpus.json lists every planted document.

Deterministic: a document is a function of (seed, source, file, index) only; the output bytes do
not depend on --jobs. gzip files carry no name or mtime.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import random
import re
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

BYTES_PER_SCALE = 30_000_000
SHARES = {"c4": 0.40, "fineweb": 0.30, "wikipedia": 0.20, "gutenberg": 0.10}
KIND = {"c4": "web", "fineweb": "web", "wikipedia": "wiki", "gutenberg": "book"}
TERMINAL = (".", "!", "?", '"', "”", "’", "'", ")")
# FineWeb-style crawl names for the `dump` column
DUMPS = [f"CC-MAIN-{y}-{w:02d}" for y in range(2013, 2025) for w in (5, 10, 14, 18, 22, 26, 30, 34, 39, 43, 47, 51)]

# --- sentence pools and templates from the real samples ---------------------------------------

_SENT_SPLIT = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"”’')]))\s+(?=[A-Z\"“‘(])")
_WORD_OK = re.compile(r"[A-Za-z]")
BUCKET = 40      # sentence length classes of 40 chars
NBUCKETS = 10

WIKI_TAILS = {"references", "external links", "see also", "further reading", "notes", "bibliography",
              "sources", "citations", "footnotes", "notes and references", "works cited"}
_PG_START = re.compile(r"^.*START OF (?:THE|THIS) PROJECT GUTENBERG.*$", re.M | re.I)
_PG_END = re.compile(r"^(?:.*\*\*\* ?END OF (?:THE|THIS) PROJECT GUTENBERG.*|End of (?:the )?Project Gutenberg.*)$",
                     re.M | re.I)


_ABBREV = re.compile(r"(?:\b(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|Prof|Gen|Col|Capt|Lt|Rev|Hon|No|vs|Vol|Mt|Ft|Jan|Feb|Aug|Sept?|"
                     r"Oct|Nov|Dec|Inc|Co|Ltd|U\.S|etc|e\.g|i\.e|c)|\b[A-Z])\.$")


def split_sentences(text: str) -> list[str]:
    pieces, out = _SENT_SPLIT.split(text), []
    for piece in pieces:   # "Mr. Smith", "J. R. R. Tolkien": not sentence ends
        if out and _ABBREV.search(out[-1]):
            out[-1] += " " + piece
        else:
            out.append(piece)
    return [s for s in out
            if 20 <= len(s) <= 400 and s.endswith(TERMINAL) and s.count(" ") >= 3 and _WORD_OK.search(s)]


class Pools:
    """Everything the generators draw from; built once in the parent, inherited by forked workers."""

    def __init__(self, corpus: Path):
        t0 = time.perf_counter()
        self.sent: dict[str, list[list[str]]] = {}
        self.n_sent: dict[str, int] = {}
        self.words: dict[str, list[str]] = {}
        self.templates: dict[str, list] = {}
        self.short: dict[str, list[str]] = {}
        self.urls: dict[str, list[str]] = {}
        web_sent: set[str] = set()
        for src, texts_urls in (("c4", self._read_c4(corpus)), ("fineweb", self._read_fineweb(corpus))):
            tpls, short, urls = [], set(), []
            for text, url in texts_urls:
                items = []
                for line in text.split("\n"):
                    s = line.strip()
                    if not s:
                        items.append(("B",))
                    elif len(s) >= 30 and s.endswith(TERMINAL):
                        items.append(("S", len(s)))
                        web_sent.update(split_sentences(s))
                    else:
                        items.append(("L",))
                        short.add(s)
                if any(it[0] == "S" for it in items):
                    tpls.append(items)
                if url:
                    urls.append(url)
            self.templates[src], self.short[src], self.urls[src] = tpls, sorted(short), urls
        self._pool("web", web_sent)
        self._wiki(corpus)
        self._books(corpus)
        self.seconds = round(time.perf_counter() - t0, 2)

    @staticmethod
    def _read_c4(corpus: Path):
        out = []
        for p in sorted((corpus / "c4").glob("c4-en-train-*.jsonl.gz")):
            with gzip.open(p, "rt", encoding="utf-8") as f:
                out += [(r["text"], r.get("url")) for r in map(json.loads, f)]
        return out

    @staticmethod
    def _read_fineweb(corpus: Path):
        import pyarrow.parquet as pq
        out = []
        for p in sorted((corpus / "fineweb").glob("*.parquet")):
            t = pq.read_table(p, columns=["text", "url"])
            out += list(zip(t.column("text").to_pylist(), t.column("url").to_pylist()))
        return out

    def _pool(self, kind: str, sentences: set[str]) -> None:
        ordered = sorted(sentences)   # sets have no stable order across runs; sorted lists do
        buckets: list[list[str]] = [[] for _ in range(NBUCKETS)]
        for s in ordered:
            buckets[min(len(s) // BUCKET, NBUCKETS - 1)].append(s)
        self.sent[kind], self.n_sent[kind] = buckets, len(ordered)
        rng = random.Random(f"words/{kind}")
        words = [w for s in rng.sample(ordered, min(len(ordered), 20000)) for w in s.split() if w.isalpha()]
        self.words[kind] = sorted(set(words))

    def _wiki(self, corpus: Path) -> None:
        sents, heads, cats, items, tpls, leads = set(), set(), set(), set(), [], set()
        for p in sorted((corpus / "wikipedia").glob("*.jsonl.gz")):
            with gzip.open(p, "rt", encoding="utf-8") as f:
                texts = [r["text"] for r in map(json.loads, f)]
            for text in texts:
                lines, tpl, in_tail = text.split("\n"), [], False
                for i, line in enumerate(lines):
                    s = line.strip()
                    prev_blank = i == 0 or not lines[i - 1].strip()
                    if not s:
                        tpl.append(("B",))
                    elif s.lower().rstrip(":") in WIKI_TAILS and prev_blank:
                        tpl.append(("T", s))
                        in_tail = True
                    elif in_tail:
                        tpl.append(("C",))
                        cats.add(s)
                    elif line.startswith((" ", "*", "\t")):
                        tpl.append(("I",))
                        items.add(line.rstrip())
                    elif i and prev_blank and len(s) <= 60 and not s.endswith(TERMINAL):
                        tpl.append(("H",))
                        heads.add(s)
                    elif len(s) >= 30 and s.endswith(TERMINAL):
                        tpl.append(("P", len(s)))
                        ss = split_sentences(s)
                        if not any(t[0] == "P" for t in tpl[:-1]) and ss and _LEAD.match(ss[0]):
                            leads.add(ss[0])   # "X (born 1990) is a ...": defines the title X
                            ss = ss[1:]
                        sents.update(ss)
                    else:
                        tpl.append(("I",))
                        items.add(s)
                if any(t[0] == "P" for t in tpl):
                    tpls.append(tpl)
        self._pool("wiki", sents)
        self.templates["wikipedia"] = tpls
        self.wiki_heads, self.wiki_cats, self.wiki_items = sorted(heads), sorted(cats), sorted(items)
        self.wiki_leads = sorted(leads)

    def _books(self, corpus: Path) -> None:
        raw = []
        for p in sorted((corpus / "gutenberg").glob("*.jsonl.gz")):
            with gzip.open(p, "rt", encoding="utf-8") as f:
                raw += [r["text"] for r in map(json.loads, f)]
        raw += [p.read_text(encoding="utf-8", errors="replace") for p in sorted((corpus / "gutenberg").glob("*.txt"))]
        seen, tpls, sents = set(), [], set()
        for text in raw:
            h = hashlib.blake2b(text.encode(), digest_size=16).digest()
            if h in seen:
                continue
            seen.add(h)
            eol = "\r\n" if "\r\n" in text else "\n"
            text = text.replace("\r\n", "\n")
            m = _PG_START.search(text)
            if not m:
                continue
            hend = m.end()
            if not m.group(0).rstrip().endswith("***"):       # START marker wrapped over two lines
                nl = text.find("\n", hend + 1)
                if nl > 0 and text[hend + 1:nl].rstrip().endswith("***"):
                    hend = nl
            e = _PG_END.search(text, hend)
            if not e:
                continue
            header, body, footer = text[:hend], text[hend:e.start()], text[e.start():]
            items = []
            for part in re.split(r"(\n(?:[ \t]*\n)+)", body):
                if not part.strip():
                    items.append(("X", part))
                    continue
                lines = part.split("\n")
                if any(ln[:1] in (" ", "\t") for ln in lines if ln.strip()):
                    items.append(("I", [(ln[:len(ln) - len(ln.lstrip())], len(ln.strip())) for ln in lines]))
                elif len(lines) == 1:
                    s = lines[0].strip()
                    items.append(("D", len(s)) if s.endswith(TERMINAL + (",", ";", ":")) and len(s) > 12 else ("X", part))
                else:
                    joined = " ".join(ln.strip() for ln in lines)
                    items.append(("P", len(joined), max(40, min(78, max(len(ln) for ln in lines)))))
                    sents.update(split_sentences(joined))
            tpls.append({"header": header, "footer": footer, "eol": eol, "items": items, "chars": len(text)})
        self._pool("book", sents)
        self.templates["gutenberg"] = tpls


_LEAD = re.compile(r"^([A-Z][^()\n]{0,70}?)(?: \([^()]*\))? (?:is|was|are|were|may refer|refers|has been)\b")

P: Pools | None = None   # set in the parent before the workers fork


# --- text makers ---------------------------------------------------------------------------------

MIN_SENTENCES = 3   # per document (web, wikipedia): a random sequence of 3+ sentences never repeats


def fill(rng: random.Random, kind: str, target: int, min_n: int = 1) -> str:
    """Real sentences of `kind` drawn at random, joined by spaces, ~target chars (+- 20), at
    least min_n of them (then possibly longer than target)."""
    buckets, out, left = P.sent[kind], [], target
    while True:
        # a length class up to 3 below the room left: a long line is several sentences, so two
        # documents of one template rarely draw the same single sentence
        hi = min(max(left, 20) // BUCKET, NBUCKETS - 1)
        b = rng.randint(max(0, hi - 3), hi)
        while not buckets[b]:
            b -= 1
        s = rng.choice(buckets[b])
        out.append(s)
        left -= len(s) + 1
        if left < 20 and len(out) >= min_n:
            return " ".join(out)


def one_sentence(rng: random.Random, kind: str, target: int) -> str:
    buckets = P.sent[kind]
    b = min(target // BUCKET, NBUCKETS - 1)
    while not buckets[b]:
        b -= 1
    return rng.choice(buckets[b])


def wrap(text: str, width: int) -> str:
    out, line, n = [], [], 0
    for w in text.split():
        if line and n + 1 + len(w) > width:
            out.append(" ".join(line))
            line, n = [w], len(w)
        else:
            n += len(w) + (1 if line else 0)
            line.append(w)
    if line:
        out.append(" ".join(line))
    return "\n".join(out)


def mutate(rng: random.Random, kind: str, text: str) -> str:
    """Near copy: 0.5-1.5% of the space-separated words replaced by random words of the kind."""
    rate, words, toks = rng.uniform(0.005, 0.015), P.words[kind], text.split(" ")
    for i in range(len(toks)):
        if rng.random() < rate and "\n" not in toks[i]:
            toks[i] = rng.choice(words)
    return " ".join(toks)


def web_text(rng: random.Random, src: str) -> str:
    short, out = P.short[src], []
    tpl = rng.choice(P.templates[src])
    need = max(1, MIN_SENTENCES - sum(it[0] == "S" for it in tpl) + 1)   # for the first prose line
    for it in tpl:
        if it[0] == "S":
            out.append(fill(rng, "web", it[1], need))
            need = 1
        elif it[0] == "L":
            out.append(rng.choice(short))
        else:
            out.append("")
    return "\n".join(out)


def _title(first: str) -> str:
    words = []
    for w in first.split()[:6]:
        w = w.strip(",.;:()\"“”'")
        if not w or not w[0].isupper():
            break
        words.append(w)
    return " ".join(words[:4]) or " ".join(first.split()[:2]).strip(",.;:")


def wiki_text(rng: random.Random, wikitext: bool) -> tuple[str, str]:
    """(title, text) of one article."""
    out, title = [], None
    tpl = rng.choice(P.templates["wikipedia"])
    need = max(0, MIN_SENTENCES - sum(it[0] == "P" for it in tpl))   # after the lead sentence
    for it in tpl:
        k = it[0]
        if k == "B":
            out.append("")
        elif k == "P":
            if title is None:   # the lead: a real first sentence of an article names the title
                lead = rng.choice(P.wiki_leads)
                title = _LEAD.match(lead).group(1)
                para = lead if len(lead) + 20 >= it[1] and not need else \
                    lead + " " + fill(rng, "wiki", it[1] - len(lead) - 1, need)
                if wikitext:
                    para = para.replace(title, f"'''{title}'''", 1)
            else:
                para = fill(rng, "wiki", it[1])
            if wikitext:
                para = _wikify(rng, para)
            out.append(para)
        elif k == "H":
            h = rng.choice(P.wiki_heads)
            if wikitext:
                lvl = "==" if rng.random() < 0.8 else "==="
                h = f"{lvl} {h} {lvl}"
            out.append(h)
        elif k == "T":
            out.append(f"== {it[1]} ==" if wikitext else it[1])
            if wikitext and it[1].lower().startswith("ref"):
                out.append("{{Reflist}}")
        elif k == "C":
            c = rng.choice(P.wiki_cats)
            out.append(f"[[Category:{c}]]" if wikitext and rng.random() < 0.7 else c)
        else:   # list item
            item = rng.choice(P.wiki_items)
            out.append(("* " + item.strip()) if wikitext else item)
    title = title or "Untitled"
    if wikitext:
        head = []
        if rng.random() < 0.6:
            head.append("{{Short description|" + " ".join(fill(rng, "wiki", 40).split()[:6]) + "}}")
        if rng.random() < 0.5:
            head.append("{{Infobox " + rng.choice(["person", "settlement", "company", "football biography", "album"]))
            for key in rng.sample(["name", "image", "caption", "birth_date", "location", "country", "genre",
                                   "founded", "website", "population"], rng.randint(3, 6)):
                head.append(f"| {key} = " + " ".join(fill(rng, "wiki", 30).split()[:rng.randint(1, 4)]).strip(".,"))
            head.append("}}")
        if rng.random() < 0.1:
            table = ['{| class="wikitable"', "|-", "! Year !! Title !! Notes"]
            for _ in range(rng.randint(2, 6)):
                table += ["|-", f"| {rng.randint(1900, 2023)} || {_title(fill(rng, 'wiki', 40))} || "
                                + " ".join(fill(rng, "wiki", 30).split()[:3])]
            table.append("|}")
            idx = len(out) // 2
            out[idx:idx] = table
        out = head + out
    return title, "\n".join(out)


def _wikify(rng: random.Random, para: str) -> str:
    """Leftover wikitext in a paragraph: [[links]] on capitalised words, <ref> citations after sentences."""
    toks = para.split(" ")
    for _ in range(rng.randint(0, 3)):
        i = rng.randrange(len(toks))
        w = toks[i]
        if w[:1].isupper() and w.isalpha():
            toks[i] = f"[[{w}]]" if rng.random() < 0.6 else f"[[{w} (disambiguation)|{w}]]"
    text = " ".join(toks)
    if rng.random() < 0.4:
        n = rng.randint(1, 10**6)
        ref = (f"<ref>{{{{cite web |url=https://www.example.org/{n} |title={_title(para)} "
               f"|access-date={rng.randint(2005, 2023)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}}}}}</ref>")
        text = text + ref if rng.random() < 0.5 else text.replace(". ", "." + ref + " ", 1)
    return text


def book_body(rng: random.Random, tpl: dict) -> str:
    out = []
    for it in tpl["items"]:
        k = it[0]
        if k == "X":
            out.append(it[1])
        elif k == "P":
            out.append(wrap(fill(rng, "book", it[1]), it[2]))
        elif k == "D":
            out.append(one_sentence(rng, "book", it[1]))
        else:   # indented block: one sentence cut at the line length per line
            lines = []
            for indent, n in it[1]:
                if not n:
                    lines.append("")
                    continue
                s = one_sentence(rng, "book", n)
                cut = s if len(s) <= n + 8 else s[:s.rfind(" ", 0, n + 8)] if " " in s[:n + 8] else s[:n]
                lines.append(indent + cut)
            out.append("\n".join(lines))
    return "".join(out)   # the blank-line runs between blocks are "X" items holding their newlines


# --- documents -----------------------------------------------------------------------------------

class Spec:
    """What the corpus looks like: enough to regenerate any document from (source, file, index)."""

    def __init__(self, seed: int, scale: float, plant: float, file_frac: float, wikitext_share: float):
        self.seed, self.scale, self.plant, self.file_frac, self.wikitext_share = seed, scale, plant, file_frac, wikitext_share
        self.total = BYTES_PER_SCALE * scale
        self.file_chars = self.total * file_frac
        self.n_files = {s: max(1, round(SHARES[s] / file_frac)) for s in ("c4", "fineweb", "wikipedia")}

    def rng(self, src: str, f: int, j: int) -> random.Random:
        return random.Random(f"{self.seed}/{src}/{f}/{j}")

    def plant_kind(self, src: str, f: int, j: int) -> str | None:
        u = self.rng(src, f, j).random()
        if u >= self.plant:
            return None
        return "exact_dup" if u < self.plant / 2 else "near_dup"

    def origin(self, rng: random.Random, src: str) -> tuple[str, int, int]:
        """A non-planted document to copy: (source, file, index) with index < 8 (every file has more)."""
        osrc = "c4" if src == "fineweb" and rng.random() < 0.4 else src
        while True:
            f, j = rng.randrange(self.n_files[osrc]), rng.randrange(8)
            if self.plant_kind(osrc, f, j) is None:
                return osrc, f, j

    def base_text(self, src: str, f: int, j: int) -> tuple[random.Random, str, str | None]:
        """(rng after the content draws, text, wikipedia title) of the original document (src, f, j)."""
        rng = self.rng(src, f, j)
        rng.random()   # the plant draw
        if KIND[src] == "web":
            return rng, web_text(rng, src), None
        wt = rng.random() < self.wikitext_share
        title, text = wiki_text(rng, wt)
        return rng, text, title

    def doc(self, src: str, f: int, j: int) -> tuple[str, str | None, dict | None]:
        """(text, title, plant record or None) of document j of file f."""
        kind = self.plant_kind(src, f, j)
        if kind is None:
            _, text, title = self.base_text(src, f, j)
            return text, title, None
        rng = self.rng(src, f, j)
        rng.random()
        osrc, of, oj = self.origin(rng, src)
        _, text, title = self.base_text(osrc, of, oj)
        if kind == "near_dup":
            text = mutate(rng, KIND[osrc], text)
        return text, title, {"planted": ("cross_" if osrc != src else "") + kind,
                             "of": {"source": osrc, "file": of, "index": oj}}

    # gutenberg: book i -> template (chosen by its own rng); books 4, 104, ... copy 1, 101, ...
    def book_template(self, i: int) -> int:
        return self.rng("gutenberg", i, 0).randrange(len(P.templates["gutenberg"]))

    def book_plan(self, budget: float) -> list[int]:
        books, n = [], 0.0
        while n < budget or not books:
            books.append(len(books))
            n += P.templates["gutenberg"][self.book_template(books[-1])]["chars"]
        return books

    def book(self, i: int) -> tuple[str, dict | None]:
        tpl = P.templates["gutenberg"][self.book_template(i)]
        plant, body_of = None, i
        if self.plant > 0 and i % 100 in (4, 9):
            body_of = i - 3 if i % 100 == 4 else i - 7
            plant = {"planted": "exact_dup" if i % 100 == 4 else "near_dup", "of": {"source": "gutenberg", "file": body_of, "index": 0}}
            if P.templates["gutenberg"][self.book_template(body_of)] is tpl:
                tpl = P.templates["gutenberg"][(self.book_template(i) + 1) % len(P.templates["gutenberg"])]
        rng = self.rng("gutenberg", body_of, 1)
        body = book_body(rng, P.templates["gutenberg"][self.book_template(body_of)])
        if plant and plant["planted"] == "near_dup":
            body = mutate(self.rng("gutenberg", i, 2), "book", body)
        text = tpl["header"] + body + tpl["footer"]
        if tpl["eol"] != "\n":
            text = text.replace("\n", tpl["eol"])
        return text, plant


# --- writers -------------------------------------------------------------------------------------

def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()


def file_name(src: str, f: int) -> str:
    return {"c4": f"c4/c4-train.{f:05d}.jsonl.gz", "fineweb": f"fineweb/000_{f:05d}.parquet",
            "wikipedia": f"wikipedia/train-{f:05d}.parquet", "gutenberg": f"gutenberg/pg{100000 + f}.txt"}[src]


def _atomic_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_file(args: tuple) -> dict:
    spec, out, src, f = args
    path = out / file_name(src, f)
    path.parent.mkdir(parents=True, exist_ok=True)
    plants, digests, chars, nbytes = [], [], 0, 0
    if src == "gutenberg":
        text, plant = spec.book(f)
        data = text.encode("utf-8")
        _atomic_bytes(path, data)
        if plant:
            plants.append({"file": path.name, "row": 0, **plant})
        return {"source": src, "file": f, "path": str(path.relative_to(out)), "docs": 1, "chars": len(text),
                "text_bytes": len(data), "disk_bytes": path.stat().st_size, "plants": plants,
                "digests": [] if plant else [_digest(text.replace("\r\n", "\n"))]}
    rows: list[dict] = []
    j = 0
    frng = spec.rng(src, f, -1)   # per-file metadata (urls, dates) that do not shape the text
    while chars < spec.file_chars or j < 8:
        text, title, plant = spec.doc(src, f, j)
        chars += len(text)
        nbytes += len(text.encode("utf-8"))
        if plant:
            plants.append({"file": path.name, "row": j, **plant})
        else:
            digests.append(_digest(text))
        rows.append(_record(src, f, j, text, title, frng))
        j += 1
    if src == "c4":
        buf = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as gz:
            gz.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8"))
        _atomic_bytes(path, buf.getvalue())
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq
        cols = list(rows[0])
        table = pa.table({c: [r[c] for r in rows] for c in cols})
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        pq.write_table(table, tmp, row_group_size=1000, compression="snappy")
        os.replace(tmp, path)
    return {"source": src, "file": f, "path": str(path.relative_to(out)), "docs": len(rows), "chars": chars,
            "text_bytes": nbytes, "disk_bytes": path.stat().st_size, "plants": plants, "digests": digests}


def _slug(text: str) -> str:
    words = re.findall(r"[a-z0-9]+", text[:80].lower())[:6]
    return "-".join(words) or "page"


def _record(src: str, f: int, j: int, text: str, title: str | None, rng: random.Random) -> dict:
    if src == "c4":
        dom = re.sub(r"^(https?://[^/]+).*$", r"\1", rng.choice(P.urls["c4"]))
        ts = f"{rng.randint(2017, 2019)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z"
        return {"text": text, "timestamp": ts, "url": f"{dom}/{_slug(text)}-{f}-{j}"}
    if src == "fineweb":
        dump = rng.choice(DUMPS)
        dom = re.sub(r"^(https?://[^/]+).*$", r"\1", rng.choice(P.urls["fineweb"]))
        words = text.count(" ") + text.count("\n") + 1
        return {"text": text, "id": f"<urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}>", "dump": dump,
                "url": f"{dom}/{_slug(text)}-{f}-{j}",
                "date": f"{dump[8:12]}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z",
                "file_path": f"s3://commoncrawl/crawl-data/{dump}/segments/{rng.randint(10**12, 10**13 - 1)}.{rng.randint(10, 99)}/warc/CC-MAIN-{rng.randint(10**13, 10**14 - 1)}-{rng.randint(0, 99999):05d}.warc.gz",
                "language": "en", "language_score": round(rng.uniform(0.65, 1.0), 6),
                "token_count": int(words * 1.3)}
    # wikipedia (wikimedia/wikipedia column order)
    wid = f * 1_000_000 + j + 1
    return {"id": str(wid), "url": "https://en.wikipedia.org/wiki/" + (title or "Untitled").replace(" ", "_") + f"_({wid})",
            "title": title or "Untitled", "text": text}


# --- driver --------------------------------------------------------------------------------------

SOURCE_PARAMS = {   # sources.SRC for params.yaml; uri is filled by the caller
    "c4": {"kind": "c4", "format": "auto", "id_field": None, "url_field": "url", "meta_fields": ["timestamp"]},
    "fineweb": {"kind": "fineweb", "format": "auto", "id_field": "id", "url_field": "url",
                "meta_fields": ["dump", "date", "language_score"]},
    "wikipedia": {"kind": "wikipedia", "format": "auto", "id_field": "id", "url_field": "url", "meta_fields": ["title"]},
    "gutenberg": {"kind": "gutenberg", "format": "auto", "id_field": "path", "meta_fields": []},
}


def run_tasks(tasks: list[tuple], jobs: int) -> list[dict]:
    if jobs <= 1 or len(tasks) <= 1:
        return [write_file(t) for t in tasks]
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    with ProcessPoolExecutor(jobs, mp_context=ctx) as ex:
        return list(ex.map(write_file, tasks, chunksize=1))


def summarize(files: list[dict]) -> dict:
    per = {}
    for fr in files:
        s = per.setdefault(fr["source"], {"files": 0, "docs": 0, "chars": 0, "text_bytes": 0, "disk_bytes": 0,
                                          "planted": {}})
        s["files"] += 1
        for k in ("docs", "chars", "text_bytes", "disk_bytes"):
            s[k] += fr[k]
        for p in fr["plants"]:
            s["planted"][p["planted"]] = s["planted"].get(p["planted"], 0) + 1
    tot = {k: sum(s[k] for s in per.values()) for k in ("files", "docs", "chars", "text_bytes", "disk_bytes")}
    tot["planted"] = sum(sum(s["planted"].values()) for s in per.values())
    return {"per_source": per, "total": tot}


def print_summary(summary: dict, extra: str = "") -> None:
    print(f"{'source':<10} {'files':>6} {'docs':>9} {'text MB':>9} {'disk MB':>9}  planted", file=sys.stderr)
    for src, s in summary["per_source"].items():
        print(f"{src:<10} {s['files']:>6} {s['docs']:>9,} {s['text_bytes'] / 1e6:>9.1f} {s['disk_bytes'] / 1e6:>9.1f}  "
              + ", ".join(f"{k} {v}" for k, v in sorted(s["planted"].items())), file=sys.stderr)
    t = summary["total"]
    print(f"{'total':<10} {t['files']:>6} {t['docs']:>9,} {t['text_bytes'] / 1e6:>9.1f} {t['disk_bytes'] / 1e6:>9.1f}  "
          f"{t['planted']} {extra}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    global P
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--scale", type=float, default=1.0, help="x 30 MB of text (fractions allowed)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--corpus", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--plant", type=float, default=0.01, help="share of c4/fineweb/wikipedia docs planted as copies")
    ap.add_argument("--file-frac", type=float, default=0.02, help="share of the corpus text per input file")
    ap.add_argument("--wikitext-share", type=float, default=0.3)
    ap.add_argument("--add-file", metavar="SOURCE", choices=sorted(SHARES),
                    help="write ONE more input file (~file-frac of the corpus; gutenberg: one book) "
                         "to the corpus in --out (its corpus.json gives seed, scale, ...)")
    a = ap.parse_args(argv)
    out = Path(a.out).resolve()
    corpus = Path(a.corpus).resolve()
    t0 = time.perf_counter()
    if a.add_file:
        meta = json.loads((out / "corpus.json").read_text())
        g = meta["generator"]
        spec = Spec(g["seed"], g["scale"], g["plant"], g["file_frac"], g["wikitext_share"])
        corpus = Path(g["corpus"])
        P = Pools(corpus)
        src = a.add_file
        existing = [fr for fr in meta["files"] if fr["source"] == src]
        f = max(fr["file"] for fr in existing) + 1 if existing else 0
        if src != "gutenberg":
            spec.n_files[src] = meta["generator"]["n_files"][src]   # plants copy only the original files
        fr = write_file((spec, out, src, f))
        fr.pop("digests")
        meta["files"].append(fr)
        meta["added_files"] = meta.get("added_files", []) + [{"source": src, "path": fr["path"], "docs": fr["docs"],
                                                               "text_bytes": fr["text_bytes"], "disk_bytes": fr["disk_bytes"]}]
        meta["summary"] = summarize(meta["files"])
        meta["planted"] += [{"source": src, **p} for p in fr["plants"]]
        _atomic_bytes(out / "corpus.json", (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode())
        print(f"added {fr['path']}: {fr['docs']:,} docs, {fr['text_bytes'] / 1e6:.2f} MB text, "
              f"{fr['disk_bytes'] / 1e6:.2f} MB on disk ({fr['text_bytes'] / meta['summary']['total']['text_bytes']:.1%} "
              f"of the corpus text now), {len(fr['plants'])} planted, {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        return 0

    P = Pools(corpus)
    spec = Spec(a.seed, a.scale, a.plant, a.file_frac, a.wikitext_share)
    out.mkdir(parents=True, exist_ok=True)
    books = spec.book_plan(spec.total * SHARES["gutenberg"])
    tasks = [(spec, out, "gutenberg", i) for i in books]
    tasks += [(spec, out, src, f) for src in ("c4", "fineweb", "wikipedia") for f in range(spec.n_files[src])]
    tasks.sort(key=lambda t: 0 if t[2] == "gutenberg" else 1)
    files = run_tasks(tasks, a.jobs)
    files.sort(key=lambda fr: (list(SHARES).index(fr["source"]), fr["file"]))
    # exact collisions among the documents not planted (raw text): none expected
    seen, collisions = set(), 0
    for fr in files:
        for d in fr.pop("digests"):
            collisions += d in seen
            seen.add(d)
    counts = {(fr["source"], fr["file"]): fr["docs"] for fr in files}
    planted = [{"source": fr["source"], **p} for fr in files for p in fr["plants"]]
    orphans = sum(1 for p in planted if counts.get((p["of"]["source"], p["of"]["file"]), 0) <= p["of"]["index"])
    summary = summarize(files)
    drawn = {}
    for src, s in summary["per_source"].items():
        drawn[KIND[src]] = drawn.get(KIND[src], 0) + s["chars"]
    meta = {
        "generator": {"command": "python bench/gen_corpus.py " + " ".join(sys.argv[1:] if argv is None else argv),
                      "seed": a.seed, "scale": a.scale, "plant": a.plant, "file_frac": a.file_frac,
                      "wikitext_share": a.wikitext_share, "corpus": str(corpus), "n_files": spec.n_files,
                      "target_text_bytes": int(spec.total), "seconds": round(time.perf_counter() - t0, 1),
                      "pools_seconds": P.seconds, "jobs": a.jobs, "loadavg": [round(x, 2) for x in os.getloadavg()]},
        # approx_reuse: characters generated for the kind / characters in its sentence pool, i.e.
        # about how many times each real sentence occurs in the corpus
        "pools": {kind: {"sentences": P.n_sent[kind],
                         "approx_reuse": round(drawn.get(kind, 0) / max(1, sum(len(s) for b in P.sent[kind] for s in b)), 2)}
                  for kind in P.sent},
        "templates": {src: len(t) for src, t in P.templates.items()},
        "unplanted_exact_collisions": collisions,
        "planted_without_original": orphans,
        "summary": summary,
        "sources": {src: {**SOURCE_PARAMS[src], "uri": str(out / src)} for src in SHARES},
        "files": files,
        "planted": planted,
    }
    _atomic_bytes(out / "corpus.json", (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode())
    print_summary(summary, f"planted; {collisions} unplanted exact collisions, {orphans} plants without original; "
                           f"{meta['generator']['seconds']} s ({P.seconds} s reading templates), {a.jobs} jobs -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
