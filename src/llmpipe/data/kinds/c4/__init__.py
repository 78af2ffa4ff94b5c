"""Source kind `c4`: web pages as C4 cleaned them (Raffel et al. 2020). Its params sections are
`clean.c4` (line cleaners) and `filter.c4` (thresholds on its signals, checked before the global
rules); the cleaners and signals are in `text.py`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from llmpipe.core.config import Section, check_positive
from llmpipe.data.kinds.base import KindFilter


@dataclass
class CleanParams(Section):
    """C4 line cleaners (Raffel et al. 2020); each `true` removes the lines it matches."""

    citations: bool = True
    """Cut citation markers: `[1]`, `[citation needed]`, `[edit]`."""
    javascript: bool = True
    """Drop lines mentioning "javascript"."""
    policy: bool = True
    """Drop privacy / cookie / terms-of-use lines."""
    terminal_punct: bool = True
    """Drop lines not ending in terminal punctuation (. ! ? ")."""
    min_line_words: Optional[int] = 5
    """Drop lines with fewer words (C4: 5); null keeps all."""

    def __post_init__(self) -> None:
        check_positive(self.min_line_words, "min_line_words")


@dataclass
class FilterParams(KindFilter):
    """`filter.c4`: checked before the global rules for kind c4 (reason `c4_<field>`)."""

    max_lorem_ipsum_count: Optional[int] = 0
    max_curly_brace_count: Optional[int] = 0
    min_sentence_count: Optional[int] = 3
    """C4 drops pages with fewer than 3 sentences."""
    min_alpha_ratio: Optional[float] = 0.7
    max_punct_ratio: Optional[float] = 0.1
    """Punctuation spam: non-word non-space characters / non-space characters."""
    max_nav_line_ratio: Optional[float] = 0.3
    """Share of raw page lines that are navigation (menus, breadcrumbs, pagers)."""
    min_long_paragraph_count: Optional[int] = None
    """Lines of >= 200 chars (C4's paragraph filter used 3)."""
    max_bad_word_count: Optional[int] = None
    """Words from c4.py BAD_WORDS; null = off (the default, as in C4's released variants)."""
