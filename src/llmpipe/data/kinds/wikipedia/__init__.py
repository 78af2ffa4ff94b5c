"""Source kind `wikipedia`: encyclopedia articles, rendered text or leftover wikitext. Params:
`clean.wikipedia` (tables, tail sections, markup) and `filter.wikipedia` (stubs, list pages);
the cleaners and signals are in `text.py`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from llmpipe.core.config import Section
from llmpipe.data.kinds.base import KindFilter


@dataclass
class CleanParams(Section):
    tables: bool = True
    """Strip `{| ... |}` wikitables and stray table rows."""
    tails: bool = True
    """Cut from the first References / External links / See also / Notes ... heading to the end."""
    markup: bool = True
    """Strip leftover wikitext: refs, templates, links -> labels, quotes, headings, HTML tags."""


@dataclass
class FilterParams(KindFilter):
    min_words: Optional[int] = 50
    """Stub articles (checked before global, so stubs are counted as `wikipedia_min_words`)."""
    max_list_line_ratio: Optional[float] = 0.8
    """List-heavy articles (disambiguation, "List of ...")."""
