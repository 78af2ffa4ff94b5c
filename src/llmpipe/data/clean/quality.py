"""Global (every source kind) cleaner and quality signals.

The cleaner `whitespace` normalises line endings and blank lines. The signals are the inputs of
the `filter.global.*` rules; thresholds live in params.yaml, never here. Most follow Gopher's
quality filter (Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights from
Training Gopher", appendix A.1.1): word count, mean word length, symbol-to-word ratio, bullet and
ellipsis lines, share of words with a letter, and the presence of common English words.
Others are common web-text heuristics: letter share of non-space characters, long runs of one
character, boilerplate phrases, and an English test on function-word share (no model download).

Every ratio is in [0, 1] (or a count per word) and is 0.0 for an empty document, so the stored
columns never hold NaN.
"""
from __future__ import annotations

import re

# Text splitting shared by all signals (computed once per document, see signals.Split).
PUNCT_CHARS = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~“”‘’«»…–—·•"
BULLETS = ("•", "●", "○", "▪", "■", "□", "◦", "‣", "∙", "·", "- ", "* ", "– ", "— ", "> ")
ELLIPSES = ("...", "…")
TERMINAL = (".", "!", "?", '"', "'", "”", "’", ")", ":")  # a line ending a sentence
SHORT_LINE_CHARS = 30  # FineWeb's `short_line_length` (Penedo et al. 2024)

_ALPHA_RUN = re.compile(r"[^\W\d_]+")                 # letters only (any script)
# The lookbehinds below start a match only where one can start (a token's first character, a
# run's first blank): without them a 100 KB token of digits or run of spaces took seconds
# (every start rescanned the rest of the run). Same matches.
_ALPHA_WORD = re.compile(r"(?<!\S)\S*[^\W\d_]\S*")    # a whitespace token holding a letter
_REPEAT_RUN = re.compile(r"(\S)\1{4,}")               # one character 5+ times in a row
_BLANK_RUNS = re.compile(r"\n{3,}")
_TRAILING_WS = re.compile(r"(?<![ \t\f\v])[ \t\f\v]+\n")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f\u200b\ufeff]")

# Gopher's "at least two of these" English words.
GOPHER_STOPWORDS = frozenset(["the", "be", "to", "of", "and", "that", "have", "with"])
# High-frequency English function words: their share of words is ~0.4-0.5 in English prose and
# under 0.1 in other languages (the few shared spellings, "a", "in", "die", stay rare).
ENGLISH_STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further
had has have having he her here hers herself him himself his how i if in into is it its itself
just me more most my myself no nor not now of off on once only or other our ours ourselves out
over own same she should so some such than that the their theirs them themselves then there
these they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours yourself yourselves
""".split())
# Web boilerplate: a line holding one of these is template text, not content.
BOILERPLATE = (
    "all rights reserved", "click here", "terms of use", "terms of service", "privacy policy",
    "cookie policy", "this website uses cookies", "we use cookies", "accept cookies",
    "subscribe to our newsletter", "sign up for our newsletter", "skip to content",
    "skip to main content", "back to top", "powered by wordpress", "log in to reply",
    "leave a reply", "leave a comment", "share this:", "follow us on", "javascript is disabled",
    "enable javascript", "copyright ©", "you must be logged in",
)
_BOILERPLATE = re.compile("|".join(re.escape(p) for p in BOILERPLATE))


def whitespace(text: str) -> str:
    """Cleaner: CRLF -> LF, control chars removed, trailing spaces cut, at most one blank line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    text = _TRAILING_WS.sub("\n", text + "\n")
    return _BLANK_RUNS.sub("\n\n", text).strip()


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def quality_signals(text: str, words: list[str], toks: list[str], lines: list[str]) -> dict:
    """Global signals. `words`: whitespace tokens; `toks`: lowercased words with punctuation
    stripped, empties removed; `lines`: non-empty lines, stripped."""
    n_words, n_lines = len(words), len(lines)
    nonspace = sum(map(len, words))
    alpha = len(text) - len(_ALPHA_RUN.sub("", text))
    repeated = sum(len(m.group()) for m in _REPEAT_RUN.finditer(text))
    symbols = text.count("#") + text.count("...") + text.count("…")
    boiler = sum(1 for ln in lines if _BOILERPLATE.search(ln.lower()))
    gopher_stop = eng_stop = 0
    for t in toks:
        if t in ENGLISH_STOPWORDS:
            eng_stop += 1
            gopher_stop += t in GOPHER_STOPWORDS
    return {
        "chars": len(text),
        "words": n_words,
        "lines": n_lines,
        "mean_word_length": _ratio(sum(map(len, toks)), len(toks)),
        "alpha_ratio": _ratio(alpha, nonspace),
        "alpha_word_ratio": _ratio(len(_ALPHA_WORD.findall(text)), n_words),
        "repeated_char_ratio": _ratio(repeated, len(text)),
        "symbol_ratio": _ratio(symbols, n_words),
        "short_line_ratio": _ratio(sum(1 for ln in lines if len(ln) < SHORT_LINE_CHARS), n_lines),
        "bullet_line_ratio": _ratio(sum(1 for ln in lines if ln.startswith(BULLETS)), n_lines),
        "ellipsis_line_ratio": _ratio(sum(1 for ln in lines if ln.endswith(ELLIPSES)), n_lines),
        "boilerplate_line_ratio": _ratio(boiler, n_lines),
        "stopword_ratio": _ratio(eng_stop, n_words),
        "gopher_stopwords": gopher_stop,
    }


QUALITY_SIGNALS = {  # name -> column type ("int" or "float")
    "chars": "int", "words": "int", "lines": "int", "mean_word_length": "float",
    "alpha_ratio": "float", "alpha_word_ratio": "float", "repeated_char_ratio": "float",
    "symbol_ratio": "float", "short_line_ratio": "float", "bullet_line_ratio": "float",
    "ellipsis_line_ratio": "float", "boilerplate_line_ratio": "float", "stopword_ratio": "float",
    "gopher_stopwords": "int",
}
