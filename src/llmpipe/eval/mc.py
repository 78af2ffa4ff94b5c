"""Multiple-choice scoring in the style of HellaSwag / ARC / CORE (DCLM), and a built-in task.

A task is a jsonl file, one example per line:
    {"context": "The chef cracked the eggs into the", "choices": ["bowl.", "sky."], "label": 0}
Each choice is scored by the mean log-probability of its continuation tokens given the context
(the length-normalised score of Zellers et al. 2019 / Gao et al.'s lm-eval "acc_norm" by token);
the example counts as right when the labelled choice scores highest (ties: the first). With
`k` > 0, k other examples of the task, with their right answers, precede the context (few-shot,
Brown et al. 2020), chosen by a seeded hash of the example index.

The continuation tokens are those of encode(context + delimiter + choice) after its longest common
prefix with encode(context): SentencePiece may merge across the boundary, and this way each
choice is scored on exactly the tokens that differ.

The built-in task needs no download: from held-out val documents, the first `context_words`
words of a document, its true next `continuation_words` words, and as distractors the words at
the same position in other val documents. A model that has learned anything about text beats
chance (1 / choices) on it.
"""
from __future__ import annotations

from llmpipe.core.errors import UserError

import json
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from llmpipe.train.model import Transformer


def load_task(path: str | Path) -> list[dict]:
    """Read and check a task file; errors name the file, line and rule."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"eval.mc_tasks: {path} not found")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            ex = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{n}: not valid JSON ({e.msg})") from None
        ok = (isinstance(ex, dict) and isinstance(ex.get("context"), str) and isinstance(ex.get("choices"), list)
              and len(ex["choices"]) >= 2 and all(isinstance(c, str) and c for c in ex["choices"])
              and isinstance(ex.get("label"), int) and not isinstance(ex["label"], bool)
              and 0 <= ex["label"] < len(ex["choices"]))
        if not ok:
            raise UserError(f"{path}:{n}: need context (string), choices (>= 2 non-empty strings) and "
                             f"label (an index into choices); got {line[:200]}")
        out.append({"context": ex["context"], "choices": ex["choices"], "label": ex["label"]})
    if not out:
        raise UserError(f"{path}: no examples")
    return out


def continuation(tokenizer, context: str, choice: str, delimiter: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) of context + delimiter + choice (see module doc)."""
    ctx = tokenizer.encode(context)
    full = tokenizer.encode(context + delimiter + choice)
    n = 0
    while n < min(len(ctx), len(full)) and ctx[n] == full[n]:
        n += 1
    if n == len(full):
        raise UserError(f"choice {choice!r} adds no tokens to its context")
    return full[:n], full[n:]


@torch.no_grad()
def mean_logprobs(model: Transformer, start_id: int, pairs: Sequence[tuple[list[int], list[int]]]) -> list[float]:
    """Mean log-probability (nats) of each continuation given its context, one batch.

    Sequences longer than the context lose tokens from the left of the context (never of the
    continuation: a continuation longer than the context is an error)."""
    device = next(model.parameters()).device
    ctx_len = model.cfg.context
    rows = []
    for ctx, cont in pairs:
        if len(cont) > ctx_len:
            raise UserError(f"a continuation of {len(cont)} tokens exceeds the model context {ctx_len}")
        seq = ([start_id] + ctx + cont)[-(ctx_len + 1):]
        rows.append((seq, len(cont)))
    T = max(len(s) for s, _ in rows) - 1
    x = torch.zeros((len(rows), T), dtype=torch.long)
    y = torch.full((len(rows), T), -1, dtype=torch.long)
    for r, (seq, n_cont) in enumerate(rows):
        L = len(seq) - 1
        x[r, :L] = torch.tensor(seq[:-1])
        y[r, L - n_cont:L] = torch.tensor(seq[-n_cont:])  # only continuation tokens are scored
    logits, _ = model(x.to(device))  # (B, T, V)
    nll = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1).to(device), ignore_index=-1,
                          reduction="none").view(y.shape)  # (B, T), 0 where not scored
    return [-float(nll[r].double().sum()) / n for r, (_, n) in enumerate(rows)]


def few_shot_prefix(examples: list[dict], i: int, k: int, seed: int, delimiter: str) -> str:
    if k <= 0:
        return ""
    from llmpipe.core.seeds import unit_hash
    others = sorted((j for j in range(len(examples)) if j != i), key=lambda j: (unit_hash(seed, f"{i}:{j}"), j))
    shots = [examples[j]["context"] + delimiter + examples[j]["choices"][examples[j]["label"]] for j in others[:k]]
    return "\n\n".join(shots) + "\n\n"


def score_task(model: Transformer, tokenizer, examples: list[dict], *, k: int = 0, seed: int = 0,
               delimiter: str = " ") -> dict:
    """Accuracy of picking the labelled choice by highest mean log-prob; also the chance level."""
    correct = 0
    for i, ex in enumerate(examples):
        context = few_shot_prefix(examples, i, k, seed, delimiter) + ex["context"]
        pairs = [continuation(tokenizer, context, c, delimiter) for c in ex["choices"]]
        scores = mean_logprobs(model, tokenizer.eos_id, pairs)
        correct += int(int(np.argmax(scores)) == ex["label"])
    n = len(examples)
    chance = float(np.mean([1.0 / len(ex["choices"]) for ex in examples]))
    return {"accuracy": correct / n, "correct": correct, "n": n, "chance": chance}


def builtin_task(texts: Iterable[tuple[str, str]], *, n: int, choices: int, context_words: int,
                 continuation_words: int, seed: int) -> list[dict]:
    """Examples from (doc_id, text) pairs of held-out documents (see module doc).

    The first `n` documents (in the order given; the caller passes a seeded order, and may
    decode lazily) with at least context_words + continuation_words words are used. Example i's
    distractors are the continuations of the next choices - 1 examples (cyclically, skipping
    repeats of the true one), so every continuation is also a distractor elsewhere. The right
    answer's position is seeded. Fewer eligible documents than `choices` -> [].
    """
    from llmpipe.core.seeds import unit_hash
    need = context_words + continuation_words
    picked = []
    for doc_id, text in texts:
        if len(picked) >= n:
            break
        words = text.split()
        if len(words) >= need:
            picked.append((doc_id, words))
    if len(picked) < choices:
        return []
    conts = [" ".join(w[context_words:need]) for _, w in picked]
    out = []
    for i, (doc_id, words) in enumerate(picked):
        wrong: list[str] = []
        for j in range(1, len(picked)):  # skip repeats (near-duplicate documents share words)
            c = conts[(i + j) % len(picked)]
            if c != conts[i] and c not in wrong:
                wrong.append(c)
            if len(wrong) == choices - 1:
                break
        if len(wrong) < choices - 1:
            continue
        label = int(unit_hash(seed, "label:" + doc_id) * choices)
        opts = wrong[:label] + [conts[i]] + wrong[label:]
        out.append({"context": " ".join(words[:context_words]), "choices": opts, "label": label})
    return out
