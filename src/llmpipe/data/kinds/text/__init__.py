"""Source kind `text`: curated plain text you want trained on as it is (your own files, a
book, tinyshakespeare). No cleaners of its own, and the whitespace cleaner leaves it alone too,
so the text the model sees is the file's text byte for byte; no rules of its own in
`filter.text` (the global rules still apply unless `skip_global` or `filter.enabled: false`);
no signals beyond the global ones."""
from __future__ import annotations

from dataclasses import dataclass

from llmpipe.data.kinds.base import KindFilter


@dataclass
class FilterParams(KindFilter):
    """`filter.text`: only `skip_global` (the global rules this kind does not apply)."""
