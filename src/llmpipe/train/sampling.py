"""Sampling from a model: temperature, top-k, a seed, a KV cache; the finiteness checks.

With the cache (`llmpipe.train.model.KVCache`) the prompt is run once and every new token costs one
forward pass over a single position attending to what is cached, so generating n tokens is O(n)
forward passes of length 1 instead of re-running the whole growing sequence (O(n^2) tokens).
`use_cache=False` keeps the slow path for tests, which assert both give the same tokens.

A prompt starts with EOS: documents in our token files are separated by EOS (there is no BOS),
so EOS is what the model saw before the start of every training document. Used by `train` (its
sample continuations), `eval` and `llmpipe generate`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import torch

from llmpipe.core.errors import UserError
from llmpipe.train.model import KVCache, Transformer


class NonFiniteModel(UserError, RuntimeError):
    """The model's weights or outputs hold NaN or inf: it cannot be scored or sampled."""


def nonfinite(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding NaN or +-inf, in order."""
    return [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def check_finite(model: Transformer, where: str | Path) -> None:
    """NonFiniteModel naming `where` (the weights file) and the first bad tensor, if any."""
    bad = nonfinite(model.state_dict())
    if bad:
        raise NonFiniteModel(f"{where}: non-finite weights (NaN or inf) in {len(bad)} tensor(s), first "
                             f"{bad[0]}: the model is broken; retrain it (`dvc repro -f train`)")


def sample_next(logits: torch.Tensor, temperature: float, top_k: int,
                generator: Optional[torch.Generator]) -> torch.Tensor:
    """logits (B, V) float32 -> next ids (B,). temperature 0 -> greedy (argmax); top_k 0 -> all."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if 0 < top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1): the k-th largest
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(model: Transformer, prompt: Sequence[int], max_new_tokens: int, *,
             temperature: float = 0.0, top_k: int = 0, seed: int = 0, stop_id: Optional[int] = None,
             use_cache: bool = True, on_token: Optional[Callable[[int], None]] = None) -> list[int]:
    """Continue `prompt` (token ids) by up to `max_new_tokens`; returns the new ids only.

    Stops early after emitting `stop_id`. The prompt is cut from the left so that prompt + new
    tokens fit the model context (the cache holds prompt + new tokens). Same seed -> same tokens.
    """
    ctx = model.cfg.context
    if max_new_tokens < 1 or max_new_tokens >= ctx:
        raise UserError(f"max_new_tokens must be in [1, {ctx - 1}] (model context {ctx}), got {max_new_tokens}")
    if not prompt:
        raise UserError("empty prompt: pass at least one token (e.g. EOS)")
    device = next(model.parameters()).device
    ids = list(prompt)[-(ctx - max_new_tokens):]
    gen = torch.Generator(device=device).manual_seed(seed)
    x = torch.tensor([ids], dtype=torch.long, device=device)  # (1, T)
    cache = KVCache(model.cfg, 1, len(ids) + max_new_tokens, device,
                    next(model.parameters()).dtype) if use_cache else None
    out: list[int] = []
    logits, _ = model(x, cache=cache)  # prefill: (1, T, V)
    for step in range(max_new_tokens):
        if not bool(torch.isfinite(logits[:, -1, :]).all()):  # argmax/multinomial would be garbage
            raise NonFiniteModel(f"the model's logits are not finite (NaN or inf) at new token {step + 1}: "
                                 "its weights overflow; retrain it (`dvc repro -f train`)")
        nxt = sample_next(logits[:, -1, :], temperature, top_k, gen)  # (1,)
        tok = int(nxt.item())
        out.append(tok)
        if on_token is not None:
            on_token(tok)
        if tok == stop_id or step == max_new_tokens - 1:
            break
        if use_cache:
            logits, _ = model(nxt.view(1, 1), cache=cache)  # one position, attends to the cache
        else:
            x = torch.cat([x, nxt.view(1, 1)], dim=1)
            logits, _ = model(x)
    return out


def greedy(model: Transformer, ids: list[int], new_tokens: int, eos: int) -> list[int]:
    """Greedy continuation of a training-mode model (train's samples; the prompt is cut to fit
    the context), EOS not included; the model is back in training mode afterwards."""
    model.eval()
    try:
        out = generate(model, ids, min(new_tokens, model.cfg.context - 1), stop_id=eos)
    finally:
        model.train()
    return out[:-1] if out and out[-1] == eos else out
