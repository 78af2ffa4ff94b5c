"""Source kind `chat`: conversations (`messages: [{role, content}]`, SmolTalk / UltraChat layout).

Ingest checks each conversation (`llmpipe.data.chat.check_messages`: roles, empty turns, types)
and stores it as one document, its text the chat template (`chat.render`), so dedup compares
whole conversations. No cleaner (the text is kept byte for byte: a cleaner must not touch the
markers) and no rules of its own; `filter.chat.skip_global` drops the global rules that do not
fit short dialogue turns (params.yaml). `tokenize@SRC` writes a loss mask beside its tokens
(assistant tokens only) for SFT (`train.sft`)."""
from __future__ import annotations

from dataclasses import dataclass, field

from llmpipe.data.kinds.base import KindFilter

# length, word-shape and English-stopword rules written for web pages and books: a dialogue turn
# ("What does `os.getcwd()` do?" / "Return the current directory.") fails them all
SKIP_GLOBAL = ["min_chars", "min_words", "min_mean_word_length", "max_mean_word_length", "min_alpha_word_ratio",
               "min_alpha_ratio", "min_stopword_ratio", "min_gopher_stopwords"]


@dataclass
class FilterParams(KindFilter):
    """`filter.chat`: only `skip_global` (the global rules this kind does not apply)."""

    skip_global: list[str] = field(default_factory=lambda: list(SKIP_GLOBAL))
    """filter.global keys not applied to conversations (default: the length, word-shape and
    stopword rules, which short dialogue turns fail)."""
