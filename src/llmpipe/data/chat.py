"""Conversations: validation, the one chat template, and its ids with the SFT loss mask.

A conversation is a list of messages `{"role": "system" | "user" | "assistant", "content": str}`
(SmolTalk / UltraChat layout): an optional system message first, then user and assistant turns,
at least one of them the assistant's. Ingest (`sources.SRC.kind: chat`) checks each record with
`check_messages` and stores the conversation as one document whose text is `render(messages)`:

    <|system|>CONTENT<|end|><|user|>CONTENT<|end|><|assistant|>CONTENT<|end|>...

with nothing between the markers and the contents (no newline, no space), so every later stage
(clean, dedup, the tokenizer sample, eval's bytes) sees one plain string, and `parse` gets the
turns back exactly. The four markers are user-defined SentencePiece pieces with fixed ids
(`CHAT_IDS`, reserved in every llmpipe tokenizer, chat data or not): SentencePiece and the
Hugging Face export both read them as one token wherever they appear in text, and a content may
not hold one (`reserved_token`), so the parse is unambiguous.

The template's ids (`encode`): per turn, the role's marker id, `encode(content)`, the `<|end|>`
id; the document's EOS follows (token files). The loss mask is 1 on an assistant turn's content
tokens and its `<|end|>` (the model learns to answer and to stop), 0 on markers and on every
system or user token. This is what `tokenize@SRC` writes, what the exported `chat_template`
gives through transformers' `apply_chat_template` (the same ids: tested), and what `llmpipe
generate --chat` prompts with (`prompt_ids`), after the EOS that starts every llmpipe prompt
(documents in the token files follow an EOS, so that is the context the model learnt). The HF
template cannot hold that EOS: the export reads "</s>" in text as characters, as SentencePiece
does (`split_special_tokens`), so an HF user prepends `tokenizer.eos_token_id` to generate as
llmpipe does.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

ROLES = ("system", "user", "assistant")
MARKERS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
END = "<|end|>"
CHAT_PIECES = (MARKERS["system"], MARKERS["user"], MARKERS["assistant"], END)
"""Reserved as SentencePiece user-defined pieces right after pad/unk/bos/eos, in this order."""
CHAT_IDS = {"system": 4, "user": 5, "assistant": 6, "end": 7}
_SPLIT = re.compile("(" + "|".join(re.escape(p) for p in CHAT_PIECES) + ")")

# The Hugging Face chat template (tokenizer_config.json `chat_template`): the same string as
# render(); add_generation_prompt opens the assistant's turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}")


def check_messages(messages: Any) -> tuple[str, str] | None:
    """None for a valid conversation, else (reason, detail): a stable snake_case reason
    (`messages_not_list`, `message_not_object`, `bad_role`, `content_not_string`, `empty_turn`,
    `reserved_token`, `no_assistant_turn`) and what is wrong, naming the message (1-based)."""
    if not isinstance(messages, list):
        return "messages_not_list", f"expected a list of {{role, content}} objects, got {type(messages).__name__}"
    if not messages:
        return "empty_turn", "the conversation has no message"
    for i, m in enumerate(messages, 1):
        if not isinstance(m, dict):
            return "message_not_object", f"message {i} is a {type(m).__name__}, not a {{role, content}} object"
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            return "bad_role", f"message {i} has role {role!r}; roles are system, user, assistant"
        if role == "system" and i != 1:
            return "bad_role", f"message {i} is a system message; only the first message may be one"
        if not isinstance(content, str):
            return "content_not_string", f"message {i} ({role}) content is a {type(content).__name__}, not a string"
        if not content.strip():
            return "empty_turn", f"message {i} ({role}) has empty content"
        hit = _SPLIT.search(content)
        if hit:
            return "reserved_token", (f"message {i} ({role}) content holds the chat marker {hit.group(0)!r}, "
                                      "which is reserved for the template")
    if not any(m["role"] == "assistant" for m in messages):
        return "no_assistant_turn", "the conversation has no assistant message (nothing to train on)"
    return None


def render(messages: Sequence[dict]) -> str:
    """The conversation as one document text (the template, without the leading EOS)."""
    return "".join(MARKERS[m["role"]] + m["content"] + END for m in messages)


def parse(text: str) -> list[tuple[str, str]]:
    """(role, content) of each turn of a `render`ed text; ValueError if it is not one."""
    parts = _SPLIT.split(text)
    if parts[0] or len(parts) % 4 != 1:  # "", marker, content, END, "", marker, ...
        raise ValueError(f"not a rendered conversation: {text[:60]!r}")
    roles = {v: k for k, v in MARKERS.items()}
    turns = []
    for k in range(1, len(parts), 4):
        marker, content, end, gap = parts[k:k + 4]
        if marker not in roles or end != END or gap:
            raise ValueError(f"not a rendered conversation near {(marker + content)[:60]!r}")
        turns.append((roles[marker], content))
    return turns


def encode(sp, text: str) -> tuple[list[int], list[int]]:
    """(ids, loss mask) of a rendered conversation, without the EOS: `sp` is a SentencePiece
    processor (or anything with `encode(list[str]) -> list[list[int]]`)."""
    turns = parse(text)
    pieces = sp.encode([c for _, c in turns])
    ids: list[int] = []
    mask: list[int] = []
    for (role, _), body in zip(turns, pieces):
        learn = int(role == "assistant")
        ids += [CHAT_IDS[role], *body, CHAT_IDS["end"]]
        mask += [0] + [learn] * (len(body) + 1)
    return ids, mask


def prompt_ids(sp, messages: Sequence[dict], eos_id: int) -> list[int]:
    """The context `llmpipe generate --chat` gives the model: EOS, the turns, `<|assistant|>`."""
    ids, _ = encode(sp, render(messages)) if messages else ([], [])
    return [eos_id, *ids, CHAT_IDS["assistant"]]
