"""Source kind `gutenberg`: Project Gutenberg books with their licence header and footer. Params:
`clean.gutenberg` (header, footer, unwrapping) and `filter.gutenberg` (books with no body);
the cleaners and signals are in `text.py`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from llmpipe.core.config import Section
from llmpipe.data.kinds.base import KindFilter


@dataclass
class CleanParams(Section):
    header: bool = True
    """Cut the Project Gutenberg header (every START / SMALL PRINT marker variant) and credits."""
    footer: bool = True
    """Cut from the first END / End of the Project Gutenberg / FULL LICENSE marker."""
    unwrap: bool = True
    """Join hard-wrapped lines into one line per paragraph (indented blocks keep their breaks)."""


@dataclass
class FilterParams(KindFilter):
    skip_global: list[str] = field(default_factory=lambda: ["max_words"])
    min_body_chars: Optional[int] = 1000
    """A book whose header/footer markers leave less than this is dropped."""
