"""Project Gutenberg cleaners and signals.

Raw gutenberg.org .txt books carry a licence header and footer around the body, marked in
several ways over the project's history. Cleaners (switches `clean.gutenberg.*`):
  * `header`: everything up to the end of the last header marker found before the footer:
      `*** START OF THE PROJECT GUTENBERG EBOOK ... ***`, `*** START OF THIS PROJECT GUTENBERG
      EBOOK ... ***` (also ETEXT / E-BOOK spellings, any number of stars or none), and the 1990s
      `*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*...*END*`; then leading "Produced by ..." /
      "E-text prepared by ..." / "Note: Project Gutenberg ..." paragraphs among the first five;
  * `footer`: everything from the first footer marker after the body: `*** END OF THE/THIS
      PROJECT GUTENBERG EBOOK ...`, `End of the Project Gutenberg EBook of ...`, `End of Project
      Gutenberg's ...`, `End of this Project Gutenberg Etext ...`, `*** START: FULL LICENSE ***`;
  * `unwrap`: hard-wrapped lines (~70 columns) joined into one line per paragraph; paragraphs
    whose lines are all indented (verse, letters, tables) keep their line breaks.
Signal (threshold `filter.gutenberg.min_body_chars`): `body_chars`, characters left after
cleaning; a book whose markers leave no body is dropped as `gutenberg_min_body_chars`.
"""
from __future__ import annotations

import re

_EBOOK = r"(?:E-?BOOK|E-?TEXT|ETEXT)"
# A marker line may start with blanks and stars: `[ \t]*(?:\*+[ \t]*)?`, not `[ \t]*\**[ \t]*`,
# whose two adjacent blank runs made a line of 100k tabs quadratic (seconds). Same lines match.
_HEADER = re.compile(  # a START line that does not close with stars may wrap onto one more line
    r"^[ \t]*(?:\*+[ \t]*)?START OF (?:THE|THIS) PROJECT GUTENBERG " + _EBOOK
    + r"(?:[^\n]*\*[ \t]*$|[^\n]*\n[^\n*]{1,120}\*{3}[ \t]*$|[^\n]*$)"
    r"|^[ \t]*\*END\*[ \t]*THE SMALL PRINT![^\n]*$", re.M | re.I)
_FOOTER = re.compile(
    r"^[ \t]*(?:\*+[ \t]*)?END OF (?:THE |THIS )?PROJECT GUTENBERG(?:'S)? [^\n]*$"
    r"|^[ \t]*(?:\*+[ \t]*)?End of (?:the |this )?Project Gutenberg(?:'s)?\b[^\n]*$"
    r"|^[ \t]*(?:\*+[ \t]*)?START:? FULL LICENSE[^\n]*$", re.M | re.I)
_CREDIT = re.compile(r"(?:Produced|E-?text prepared|This e-?text was prepared|Prepared|"
                     r"Transcribed|Scanned|Digitized)\b[^\n]*\bby\b|Note: Project Gutenberg", re.I)
CREDIT_PARAS = 5  # credit notes are looked for among the body's first paragraphs
_PARAS = re.compile(r"\n[ \t]*\n")

CLEANERS = ("gutenberg_header", "gutenberg_footer", "gutenberg_unwrap")  # in the order they run (after `whitespace`)
SIGNALS = {"body_chars": "int"}


def body_span(text: str) -> tuple[int, int]:
    """(start, end) of the body between header and footer markers; (0, len) if none found.

    The body starts after the last header marker that precedes the first footer marker found
    after the first header (old books stack a START line and a SMALL PRINT end), and ends at the
    first footer marker after that.
    """
    headers = list(_HEADER.finditer(text))
    start = 0
    if headers:
        first_footer = _FOOTER.search(text, headers[0].end())
        limit = first_footer.start() if first_footer else len(text)
        start = max(m.end() for m in headers if m.start() < limit)
    footer = _FOOTER.search(text, start)
    return start, footer.start() if footer else len(text)


def strip_header(text: str) -> tuple[str, int]:
    """Body start cut (and leading credit paragraphs); returns (text from body start, chars cut)."""
    start, _ = body_span(text)
    rest = text[start:]
    paras = _PARAS.split(rest.lstrip("\n"), maxsplit=CREDIT_PARAS)
    head = [p for p in paras[:CREDIT_PARAS] if not _CREDIT.match(p.strip())]
    if len(head) < min(len(paras), CREDIT_PARAS):
        rest = "\n\n".join(head + paras[CREDIT_PARAS:])
    return rest, len(text) - len(rest)


def unwrap(text: str) -> str:
    out = []
    for para in _PARAS.split(text):
        lines = [ln for ln in para.split("\n") if ln.strip()]
        if not lines:
            continue
        if len(lines) > 1 and all(ln[:1] in " \t" for ln in lines):
            out.append("\n".join(ln.strip() for ln in lines))  # verse, letters, tables
        else:
            out.append(" ".join(ln.strip() for ln in lines))
    return "\n\n".join(out)


def clean(text: str, p) -> tuple[str, dict[str, int]]:
    """Gutenberg cleaners; `p` is `CleanParams.gutenberg`."""
    removed = {"gutenberg_header": 0, "gutenberg_footer": 0, "gutenberg_unwrap": 0}
    if p.footer:
        _, end = body_span(text)
        removed["gutenberg_footer"] = len(text) - end
        text = text[:end]
    if p.header:
        text, removed["gutenberg_header"] = strip_header(text)
    if p.unwrap:
        new = unwrap(text)
        removed["gutenberg_unwrap"] = len(text) - len(new)
        text = new
    return text, removed


def signals(raw: str, text: str, words: list[str], lines: list[str]) -> dict:
    return {"body_chars": len(text)}
