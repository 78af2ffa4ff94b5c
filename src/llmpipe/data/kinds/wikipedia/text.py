"""Wikipedia cleaners and signals.

Articles arrive either as plain text (the `wikimedia/wikipedia` dumps: markup already rendered,
section headings as bare lines) or with leftover wikitext. Cleaners (switches `clean.wikipedia.*`),
in this order:
  * `tables`: `{| ... |}` wikitables (nested ones too) and stray table rows (`|-`, `| cell`);
  * `tails`: everything from the first tail section heading ("References", "External links",
    "See also", "Further reading", "Notes", ...) to the end: link lists, not prose;
  * `markup`: `<ref>` notes, comments, `{{templates}}`, file/category links, `[[link|label]]` ->
    label, `[url label]` -> label, bold/italic quotes, `== heading ==` -> heading, HTML tags.
Signals (thresholds `filter.wikipedia.*`): `list_line_ratio`, the share of lines that are list
items (a bullet, or a short line without terminal punctuation: disambiguation and "List of"
pages); stub articles are caught by `filter.wikipedia.min_words`.
"""
from __future__ import annotations

import re

TAIL_HEADINGS = frozenset([
    "references", "external links", "see also", "further reading", "notes", "bibliography",
    "sources", "citations", "footnotes", "notes and references", "references and notes",
    "works cited", "literature", "external link", "reference",
])
# Every pattern and scanner here is linear in the text length. The ones that were not are
# replaced by scanners that return exactly what the old `re.sub` returned (tests compare both):
#   <ref ...>...</ref>, <!-- -->, <tag ...>: a start without its end rescanned the rest of the
#     text (10,000 unclosed `<ref>`: seconds); the scanners find each end once and stop when none
#     is left;
#   [//url label]: the URL run crossed later `[//` starts, each rescanning it;
#   `== heading ==` (`^\s*(=+)\s*(.*?)\s*\1\s*$`, re.M): the backreference tried every split of
#     a long `=` run against every position of the line, and `\s*` rescanned space runs
#     (4,000 `=`: 3 s; one `=` and 4,000 spaces: 54 s); `strip_headings` finds the same match;
#   the tail heading test: two adjacent `[ \t]*` around an empty `(=*)` made leading blanks
#     worse than quadratic (100 tabs: 0.5 s); it is a per-line check now.
_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")
_LINK = re.compile(r"\[\[(?!(?:file|image|category):)(?:[^\[\]|]*\|)?([^\[\]]*)\]\]", re.I)
_MEDIA = re.compile(r"\[\[(?:file|image|category):[^\[\]]*\]\]", re.I)
_QUOTES = re.compile(r"'{2,5}")
_MAGIC = re.compile(r"__[A-Z]+__")
_REF_OPEN = re.compile(r"<ref", re.I)
_REF_CLOSE = re.compile(r"</ref\s*>", re.I)
_GT_OR_SLASH = re.compile(r"[>/]")
_GT = re.compile(">")
_CLOSE_BRACKET = re.compile(r"\]")
_EXT_OPEN = re.compile(r"\[(?:https?:)?//")
_URL_END = re.compile(r"[\s\]]")
_TAG_OPEN = re.compile(r"</?[a-zA-Z]")
_HEAD_START = re.compile(r"^[^\S\n]*=", re.M)  # a line whose first non-blank character is "="
_WS = re.compile(r"\s*")
_EQ = re.compile(r"=*")
_TERMINAL = (".", "!", "?", ":", '"', "”")
_LIST_START = ("*", "#", "-", "•", ";")
LIST_LINE_WORDS = 10  # a line this short without terminal punctuation reads as a list item
TAIL_TITLE_CHARS = 40  # a tail heading's title is at most this long
# a tail heading's lowered title is one of TAIL_HEADINGS, so its line matches this (re.I folds
# case at least as widely as str.lower for these ASCII words)
_TAIL_KEYS = ("reference", "external link", "see also", "further reading", "notes", "sources",
              "bibliography", "citations", "footnotes", "works cited", "literature")
assert all(any(k in h for k in _TAIL_KEYS) for h in TAIL_HEADINGS)
_TAIL_WORD = re.compile("|".join(sorted(map(re.escape, TAIL_HEADINGS), key=len, reverse=True)), re.I)

CLEANERS = ("wikipedia_tables", "wikipedia_tails", "wikipedia_markup")  # in the order they run (after `whitespace`)
SIGNALS = {"list_line_ratio": "float"}


def strip_tables(text: str) -> str:
    out, depth = [], 0
    for line in text.split("\n"):
        s = line.lstrip()
        if s.startswith("{|"):
            depth += 1
        elif depth and s.startswith("|}"):
            depth -= 1
        elif not depth and not s.startswith(("|-", "|+", "| ", "! ")):
            out.append(line)
    return "\n".join(out)


def _tail_title(line: str) -> str | None:
    """The title of a heading-shaped line (`== T ==`, `T`; T of 1-40 chars without "="), else None."""
    s = line.strip(" \t")
    k = len(s) - len(s.lstrip("="))
    if k:
        if len(s) <= 2 * k or s[-k:] != "=" * k:
            return None
        s = s[k:-k]
    if not s or "=" in s or len(s.strip(" \t")) > TAIL_TITLE_CHARS:
        return None
    return s


def strip_tails(text: str) -> str:
    """Cut from the first tail heading line ("References", "== See also ==", ...) to the end.
    Only lines holding a tail word (any case) can be one: just those lines are looked at."""
    low = text.lower()
    if not any(w in low for w in _TAIL_KEYS):  # fast path: no tail word anywhere
        return text
    done = -1  # the lines up to here are checked
    for m in _TAIL_WORD.finditer(text):
        if m.start() <= done:
            continue
        start = text.rfind("\n", 0, m.start()) + 1
        done = text.find("\n", m.end())
        done = len(text) if done < 0 else done
        title = _tail_title(text[start:done])
        if title is not None and title.strip().lower().rstrip(":") in TAIL_HEADINGS:
            return text[:start]
    return text


class _Next:
    """First match of a pattern at or after a position, remembered: over increasing positions
    the text is scanned once. `at(p)` -> (start, end), or None when there is none."""

    def __init__(self, text: str, pattern: re.Pattern):
        self.text, self.pattern = text, pattern
        self.asked, self.found = len(text) + 1, None

    def at(self, p: int) -> tuple[int, int] | None:
        if not (self.asked <= p and (self.found is None or p <= self.found[0])):
            m = self.pattern.search(self.text, p)
            self.asked, self.found = p, (m.span() if m else None)
        return self.found


def strip_refs(text: str) -> str:
    r"""`<ref .../>` and `<ref ...>...</ref>` removed: re.sub of
    `<ref[^>/]*/>|<ref[^>]*>.*?</ref\s*>` (re.S | re.I) with "", in linear time."""
    out, pos = [], 0
    stop, gt, close = _Next(text, _GT_OR_SLASH), _Next(text, _GT), _Next(text, _REF_CLOSE)
    for m in _REF_OPEN.finditer(text):
        if m.start() < pos:
            continue
        first = stop.at(m.end())
        if first is None:  # no ">" left: neither form can close, here or later
            break
        j = first[0]
        if text[j] == "/" and text.startswith(">", j + 1):
            end = j + 2
        else:
            g = gt.at(m.end())
            c = close.at(g[0] + 1) if g else None
            if c is None:
                continue
            end = c[1]
        out.append(text[pos:m.start()])
        pos = end
    out.append(text[pos:])
    return "".join(out)


def strip_comments(text: str) -> str:
    """`<!-- ... -->` removed (re.sub of `<!--.*?-->`, re.S)."""
    out, pos = [], 0
    while (s := text.find("<!--", pos)) >= 0 and (e := text.find("-->", s + 4)) >= 0:
        out.append(text[pos:s])
        pos = e + 3
    out.append(text[pos:])
    return "".join(out)


def strip_extlinks(text: str) -> str:
    r"""`[//url label]` / `[https://url label]` -> label, `[url]` -> "": re.sub of
    `\[(?:https?:)?//[^\s\]]+(?: ([^\]]*))?\]` with the label, in linear time."""
    out, pos = [], 0
    url_end, close = _Next(text, _URL_END), _Next(text, _CLOSE_BRACKET)
    for m in _EXT_OPEN.finditer(text):
        if m.start() < pos:
            continue
        u = url_end.at(m.end())
        if u is None:  # the URL runs to the end of the text: no "]" can close this or later links
            break
        u = u[0]
        if u == m.end():
            continue
        if text[u] == "]":
            label, end = "", u + 1
        elif text[u] == " ":
            c = close.at(u + 1)
            if c is None:
                break
            label, end = text[u + 1:c[0]], c[1]
        else:
            continue
        out += (text[pos:m.start()], label)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def strip_tags(text: str) -> str:
    """HTML tags removed (re.sub of `</?[a-zA-Z][^>]*>`)."""
    out, pos = [], 0
    while (m := _TAG_OPEN.search(text, pos)) and (e := text.find(">", m.end())) >= 0:
        out.append(text[pos:m.start()])
        pos = e + 1
    out.append(text[pos:])
    return "".join(out)


def _content_end(text: str, g0: int) -> int:
    """End of the last non-blank character of the line holding g0, from g0 on."""
    e = text.find("\n", g0)
    return g0 + len(text[g0:len(text) if e < 0 else e].rstrip())


def _closing_run_below(text: str, c: int) -> tuple[int, int] | None:
    """(start, length) of the "=" run that opens the next non-blank text after position c when
    nothing but blanks follows it on its line, else None."""
    y = _WS.match(text, c).end()
    m = _EQ.match(text, y).end() - y
    if not m:
        return None
    e = text.find("\n", y + m)
    rest = text[y + m:len(text) if e < 0 else e]
    return (y, m) if not rest or rest.isspace() else None


def _title_end(text: str, g0: int, x: int) -> int:
    """Where a lazy title starting at g0 ends when the closing run starts at x."""
    if x == g0 or text[x - 1] == "=":
        return x
    return g0 + len(text[g0:x].rstrip())


def _heading_at(text: str, a: int) -> tuple[int, int, int] | None:
    r"""The match of `^\s*(=+)\s*(.*?)\s*\1\s*$` whose `(=+)` starts at `a` (the first non-blank of
    its line), as (title start, title end, end of the closing run), or None. The regex tries
    `(=+)` longest first and, for each length k, the shortest title; a title never spans a
    newline, the closing k "=" must end the non-blank text of its line, and `\s*` may reach the
    next non-blank line (so a closing run may open it). One pass over the line and the next."""
    big = _EQ.match(text, a).end() - a
    b = _WS.match(text, a + big).end()  # k = big: `\s*` takes every blank after the run
    if b < len(text):
        cb = _content_end(text, b)
        trail = cb - b - len(text[b:cb].rstrip("="))
        if trail >= big:
            return b, _title_end(text, b, cb - big), cb
        below = _closing_run_below(text, cb)
        if below and below[1] == big:
            return b, cb, below[0] + big
    c = _content_end(text, a)  # k < big: the title starts inside the run, on this line
    if c == a + big:
        cap = big // 2  # the line is only "=": split the run
    elif text[c - 1] == "=":
        cap = min(c - len(text[a:c].rstrip("=")) - a, big - 1)
    else:
        cap = 0
    below = _closing_run_below(text, c)
    k_below = below[1] if below and below[1] < big else 0
    k = max(cap, k_below)
    if not k:
        return None
    if cap >= k_below:
        return a + k, _title_end(text, a + k, c - k), c
    return a + k, c, below[0] + k


def strip_headings(text: str) -> str:
    r"""`== Heading ==` -> `Heading`: what re.sub(r"^\s*(=+)\s*(.*?)\s*\1\s*$", r"\2", text,
    flags=re.M) returns (the blank lines before a heading and the blanks after it, up to the
    last newline before the next text, go with it), in linear time."""
    out, pos, n = [], 0, len(text)
    for m in _HEAD_START.finditer(text):
        a = m.end() - 1
        if a < pos:
            continue
        hit = _heading_at(text, a)
        if hit is None:
            continue
        g0, q, r1 = hit
        start = m.start()  # the match starts at the first of the blank lines above, after pos
        while start > pos and (start < 2 or text[start - 2].isspace()):
            prev = text.rfind("\n", 0, start - 1) + 1  # the line above: [prev, start - 1)
            if prev < pos or not (prev == start - 1 or text[prev:start - 1].isspace()):
                break
            start = prev
        z = _WS.match(text, r1).end()
        out += (text[pos:start], text[g0:q])
        pos = n if z == n else text.rfind("\n", r1, z)
    out.append(text[pos:])
    return "".join(out)


def strip_markup(text: str) -> str:
    text = strip_comments(strip_refs(text))
    for _ in range(5):  # nested templates / links, innermost first
        new = _MEDIA.sub("", _LINK.sub(r"\1", _TEMPLATE.sub("", text)))
        if new == text:
            break
        text = new
    text = strip_extlinks(text)
    text = strip_headings(_QUOTES.sub("", text))
    return _MAGIC.sub("", strip_tags(text))


def clean(text: str, p) -> tuple[str, dict[str, int]]:
    """Wikipedia cleaners; `p` is `CleanParams.wikipedia`."""
    removed = {}
    for name, on, fn in (("wikipedia_tables", p.tables, strip_tables),
                         ("wikipedia_tails", p.tails, strip_tails),
                         ("wikipedia_markup", p.markup, strip_markup)):
        new = fn(text) if on else text
        removed[name] = len(text) - len(new)
        text = new
    return text, removed


def signals(raw: str, text: str, words: list[str], lines: list[str]) -> dict:
    items = sum(1 for ln in lines if ln.startswith(_LIST_START)
                or (not ln.endswith(_TERMINAL) and len(ln.split()) <= LIST_LINE_WORDS))
    return {"list_line_ratio": items / len(lines) if lines else 0.0}
