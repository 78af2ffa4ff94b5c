"""Logging to stderr and the one-line stage summary every stage ends with."""
from __future__ import annotations

import logging
import sys
import time

_FMT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def get_logger(name: str) -> logging.Logger:
    """A logger writing to stderr (configured once per process)."""
    root = logging.getLogger("llmpipe")
    if not root.handlers:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter(_FMT, "%H:%M:%S"))
        root.addHandler(h)
        root.setLevel(logging.INFO)
        root.propagate = False
    return logging.getLogger(f"llmpipe.{name}" if not name.startswith("llmpipe") else name)


def n(x: int | float) -> str:
    """Thousands separators for counts: 1234567 -> '1,234,567'."""
    return f"{x:,}" if isinstance(x, int) else f"{x:,.1f}"


class Timer:
    """`with Timer() as t: ...; t.seconds`"""

    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start
