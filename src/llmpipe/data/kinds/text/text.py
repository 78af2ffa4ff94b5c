"""The `text` kind's code: nothing to clean, no signals of its own."""
from __future__ import annotations

CLEANERS: tuple[str, ...] = ()
SIGNALS: dict[str, str] = {}
WHITESPACE = False  # keep the text byte for byte: the global whitespace cleaner does not run


def clean(text: str, p) -> tuple[str, dict[str, int]]:
    return text, {}


def signals(raw: str, text: str, words: list[str], lines: list[str]) -> dict:
    return {}
