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
_HEADING = re.compile(r"^\s*(=+)\s*(.*?)\s*\1\s*$", re.M)
_REF = re.compile(r"<ref[^>/]*/>|<ref[^>]*>.*?</ref\s*>", re.S | re.I)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")
_LINK = re.compile(r"\[\[(?!(?:file|image|category):)(?:[^\[\]|]*\|)?([^\[\]]*)\]\]", re.I)
_MEDIA = re.compile(r"\[\[(?:file|image|category):[^\[\]]*\]\]", re.I)
_EXTLINK = re.compile(r"\[(?:https?:)?//[^\s\]]+(?: ([^\]]*))?\]")
_QUOTES = re.compile(r"'{2,5}")
_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_MAGIC = re.compile(r"__[A-Z]+__")
_TERMINAL = (".", "!", "?", ":", '"', "”")
_LIST_START = ("*", "#", "-", "•", ";")
LIST_LINE_WORDS = 10  # a line this short without terminal punctuation reads as a list item

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


def strip_tails(text: str) -> str:
    for m in re.finditer(r"^[ \t]*(=*)[ \t]*([^\n=]{1,40}?)[ \t]*\1[ \t]*$", text, re.M):
        if m.group(2).strip().lower().rstrip(":") in TAIL_HEADINGS:
            return text[: m.start()]
    return text


def strip_markup(text: str) -> str:
    text = _COMMENT.sub("", _REF.sub("", text))
    for _ in range(5):  # nested templates / links, innermost first
        new = _MEDIA.sub("", _LINK.sub(r"\1", _TEMPLATE.sub("", text)))
        if new == text:
            break
        text = new
    text = _EXTLINK.sub(lambda m: m.group(1) or "", text)
    text = _HEADING.sub(r"\2", _QUOTES.sub("", text))
    return _MAGIC.sub("", _TAG.sub("", text))


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
