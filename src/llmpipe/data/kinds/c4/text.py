"""C4 cleaners and signals (Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a
Unified Text-to-Text Transformer", section 2.2, and the reference `c4_utils` it shipped).

Line cleaners (switches in `clean.c4.*`), applied to each line in this order; a removed line is
counted under the first rule that removes it:
  * `citations`: Wikipedia-style citation markers `[1]`, `[citation needed]`, `[edit]` cut out;
  * `javascript`: lines mentioning "javascript" (cookie walls, "enable JavaScript" notices);
  * `policy`: privacy/cookie/terms-of-use lines;
  * `terminal_punct`: lines not ending in terminal punctuation (menus, titles, buttons);
  * `min_line_words`: lines with fewer words than this (C4: 5).
Document signals (thresholds in `filter.c4.*`): "lorem ipsum" and curly braces (code, templates),
sentence count (C4 drops pages under 5 sentences), letter share (stricter than global),
punctuation share (punctuation spam), navigation lines in the *raw* page (menus the cleaner
removed still say the page was mostly chrome), long paragraphs (C4's paragraph filter: lines of
200+ characters), and a short bad-words list (off by default; C4 used a public word list).
"""
from __future__ import annotations

import re

_CITATION = re.compile(r"\[(?:\d+(?:[,–-]\d+)*|citation needed|edit|clarification needed|"
                       r"when\?|who\?|dead link|verification needed)\]", re.I)
# "in terms of use/service ..." is ordinary prose (real C4 has "in terms of service costs")
_POLICY = re.compile(r"(?<!\bin )terms of (?:use|service)|privacy policy|cookie policy|"
                     r"uses cookies|use of cookies|use cookies", re.I)
_TERMINAL = (".", "!", "?", '"', "”")
# the lookbehind starts a match only at the first mark of a run ("....x" was quadratic); a match
# can never start inside a run anyway, so the matches are the same
_SENTENCE_END = re.compile(r"(?<![.!?])[.!?]+[\"'”’)\]]*(?=\s|$)")
_PUNCT_RUN = re.compile(r"[^\w\s]+")
# Navigation lines. Known menu words and breadcrumbs are one regex anchored at both ends; menus
# of 3+ items separated by `|`, `»` or `>` (each item 1-40 characters, spaces around a separator
# not counted) are checked by splitting, in linear time: the single regex this replaced,
# `^[^|»>]{1,40}(?: *[|»>] *[^|»>]{1,40}){2,}$`, backtracked exponentially on a menu whose last
# item is too long (12 items: 19 s). `is_nav_line` matches exactly the lines that regex matched.
_NAV_WORDS = re.compile(
    r"(?:home|menu|search|log ?in|sign ?in|sign ?up|register|contact(?: us)?|about(?: us)?|"
    r"next|previous|prev|back|more|read more|share|tweet|print|email|top|faq|help|"
    r"skip to (?:main )?content|back to top|[«‹<]+ ?\w+(?: \w+)?|\w+(?: \w+)? ?[»›>]+)$", re.I)
_NAV_SEP = re.compile(r"[|»>]")
NAV_ITEM_CHARS = 40
# A short illustrative list (C4 used the public "List of Dirty, Naughty, Obscene and Otherwise
# Bad Words"); spam vocabulary here, extend it for real use.
BAD_WORDS = frozenset(["viagra", "cialis", "casino", "porn", "xxx", "escort", "payday"])
LONG_PARAGRAPH_CHARS = 200

CLEANERS = ("c4_citations", "c4_javascript", "c4_policy", "c4_terminal_punct", "c4_min_line_words")  # in the order they run (after `whitespace`)
SIGNALS = {
    "lorem_ipsum_count": "int", "curly_brace_count": "int", "sentence_count": "int",
    "punct_ratio": "float", "nav_line_ratio": "float", "long_paragraph_count": "int",
    "bad_word_count": "int",
}


def clean(text: str, p) -> tuple[str, dict[str, int]]:
    """C4 line cleaners; `p` is `CleanParams.c4`. Returns (text, {cleaner: chars removed})."""
    removed = {"c4_citations": 0, "c4_javascript": 0, "c4_policy": 0,
               "c4_terminal_punct": 0, "c4_min_line_words": 0}
    kept = []
    for line in text.split("\n"):
        if p.citations and "[" in line:
            new = _CITATION.sub("", line)
            removed["c4_citations"] += len(line) - len(new)
            line = new
        s = line.strip()
        reason = None
        if not s:
            pass
        elif p.javascript and "javascript" in s.lower():
            reason = "c4_javascript"
        elif p.policy and _POLICY.search(s):
            reason = "c4_policy"
        elif p.terminal_punct and not s.endswith(_TERMINAL):
            reason = "c4_terminal_punct"
        elif p.min_line_words is not None and len(s.split()) < p.min_line_words:
            reason = "c4_min_line_words"
        if reason:
            removed[reason] += len(line) + 1  # the line and its newline
            last = reason
        else:
            kept.append(line)
    if not kept and text:  # n lines have n - 1 newlines: the last removal had none
        removed[last] -= 1
    return "\n".join(kept), removed


def is_nav_line(line: str) -> bool:
    """A navigation line (one line, no newline): a menu word or breadcrumb, or 3+ items of
    1-40 characters separated by `|`, `»` or `>`, spaces next to a separator not counted."""
    if _NAV_WORDS.match(line):
        return True
    if "|" not in line and ">" not in line and "»" not in line:
        return False
    items = _NAV_SEP.split(line)
    if len(items) < 3:
        return False
    first, *middle, last = items
    return (0 < len(first) and len(first.rstrip(" ")) <= NAV_ITEM_CHARS
            and 0 < len(last) and len(last.lstrip(" ")) <= NAV_ITEM_CHARS
            and all(m and len(m.strip(" ")) <= NAV_ITEM_CHARS for m in middle))


def signals(raw: str, text: str, words: list[str], lines: list[str]) -> dict:
    nonspace = sum(map(len, words))
    punct = nonspace - len("".join(_PUNCT_RUN.sub("", w) for w in words))
    raw_lines = [ln for ln in (x.strip() for x in raw.split("\n")) if ln]
    nav = sum(1 for ln in raw_lines if is_nav_line(ln))
    lower = text.lower()
    return {
        "lorem_ipsum_count": lower.count("lorem ipsum"),
        "curly_brace_count": text.count("{") + text.count("}"),
        "sentence_count": len(_SENTENCE_END.findall(text)),
        "punct_ratio": punct / nonspace if nonspace else 0.0,
        "nav_line_ratio": nav / len(raw_lines) if raw_lines else 0.0,
        "long_paragraph_count": sum(1 for ln in lines if len(ln) >= LONG_PARAGRAPH_CHARS),
        "bad_word_count": sum(1 for w in words if w.strip(".,;:!?\"'()").lower() in BAD_WORDS),
    }
