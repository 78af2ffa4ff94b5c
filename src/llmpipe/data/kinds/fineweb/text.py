"""FineWeb signals (Penedo et al. 2024, "The FineWeb Datasets: Decanting the Web for the Finest
Text Data at Scale", section 3.4: the custom heuristic filters added on top of C4 and Gopher).

FineWeb rows are already extracted, deduplicated text, so there is no FineWeb-specific cleaner;
the global `whitespace` cleaner still runs. Its three custom rules use these signals, with the
thresholds the paper published as defaults in `filter.fineweb.*`:
  * `terminal_punct_line_ratio`: share of lines ending in terminal punctuation (0.12);
  * `short_line_ratio` (global signal, lines under 30 characters; 0.67);
  * `dup_line_char_ratio` (global repetition signal; 0.1);
plus the newline-to-word ratio of its released filter (`newline_word_ratio`, 0.3): text cut
into one word per line is a list or a table. Like every llmpipe threshold these are inclusive
(a document exactly at the threshold is kept), where FineWeb drops at 0.12 and 0.67 exactly.
"""
from __future__ import annotations

TERMINAL = (".", "!", "?", '"', "'", "”", "’", "…")

CLEANERS = ()  # in the order they run (after `whitespace`)
SIGNALS = {"terminal_punct_line_ratio": "float", "newline_word_ratio": "float"}


def clean(text: str, p) -> tuple[str, dict[str, int]]:
    """No FineWeb-specific cleaner: the rows are extracted text already."""
    return text, {}


def signals(raw: str, text: str, words: list[str], lines: list[str]) -> dict:
    ended = sum(1 for ln in lines if ln.endswith(TERMINAL))
    return {
        "terminal_punct_line_ratio": ended / len(lines) if lines else 0.0,
        "newline_word_ratio": text.count("\n") / len(words) if words else 0.0,
    }
