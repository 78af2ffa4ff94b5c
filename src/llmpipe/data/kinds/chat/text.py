"""The `chat` kind's code: nothing to clean (the template markers must stay), no signals of its own."""
from __future__ import annotations

CLEANERS: tuple[str, ...] = ()
SIGNALS: dict[str, str] = {}
WHITESPACE = False  # keep the rendered conversation byte for byte


def clean(text: str, p) -> tuple[str, dict[str, int]]:
    return text, {}


def signals(raw: str, text: str, words: list[str], lines: list[str]) -> dict:
    return {}
