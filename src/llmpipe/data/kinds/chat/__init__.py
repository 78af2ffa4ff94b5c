"""Source kind `chat`: conversations (`messages: [{role, content}]`, SmolTalk / UltraChat layout).

Ingest checks each conversation (`llmpipe.data.chat.check_messages`: roles, empty turns, types)
and stores it as one document, its text the chat template (`chat.render`), so dedup compares
whole conversations. No cleaner (the text is kept byte for byte: a cleaner must not touch the
markers) and no rules of its own; `filter.chat.skip_global` drops the global rules that do not
fit short dialogue turns (params.yaml). `tokenize@SRC` writes a loss mask beside its tokens
(assistant tokens only) for SFT (`train.sft`)."""
from __future__ import annotations

from dataclasses import dataclass

from llmpipe.data.kinds.base import KindFilter


@dataclass
class FilterParams(KindFilter):
    """`filter.chat`: only `skip_global` (the global rules this kind does not apply)."""
