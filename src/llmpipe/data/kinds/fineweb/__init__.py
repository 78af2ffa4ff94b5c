"""Source kind `fineweb`: web pages as FineWeb ships them (already extracted; Penedo et al. 2024).
No cleaners of its own (`clean.fineweb` does not exist); `filter.fineweb` holds FineWeb's custom
rules. Signals are in `text.py`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from llmpipe.data.kinds.base import KindFilter


@dataclass
class FilterParams(KindFilter):
    """FineWeb's custom rules (Penedo et al. 2024)."""

    unbounded_ratios: ClassVar[tuple[str, ...]] = ("newline_word_ratio",)  # newlines per word

    min_terminal_punct_line_ratio: Optional[float] = 0.12
    max_short_line_ratio: Optional[float] = 0.67
    max_dup_line_char_ratio: Optional[float] = 0.1
    max_newline_word_ratio: Optional[float] = 0.3
