"""Checks of a training run: the overfit pre-flight (can the model fit one micro-batch?), the
val loss, and loss-spike detection (an update whose loss is far above the recent ones is skipped)."""
from __future__ import annotations

import copy
import math

import torch

from llmpipe.core.errors import UserError
from llmpipe.train.device import autocast
from llmpipe.train.model import Transformer


class OverfitCheckFailed(UserError, RuntimeError):
    """The model could not overfit one micro-batch: something is broken before the real run."""


def overfit_check(model: Transformer, x: torch.Tensor, y: torch.Tensor, lr: float, steps: int,
                  max_ratio: float | None, device: torch.device, precision: str,
                  min_drop: float | None = None) -> tuple[float, float]:
    """Train a copy on one micro-batch; OverfitCheckFailed unless its loss falls enough.

    The bar: the loss must drop by at least `min_drop` x ln(vocab) nats (ln(vocab) is the loss of
    a uniform guess, where a fresh model starts), and, when `max_ratio` is set, also end at
    <= max_ratio x its first value. A fixed ratio of the first loss is a vocabulary-dependent bar:
    what one batch can be memorised down to in a few steps hardly depends on the vocabulary, so a
    healthy small-vocab run (ln 1024 = 6.9 nats) failed 0.6 where a big one (ln 32000 = 10.4) passed.
    """
    m = copy.deepcopy(model).train()
    opt = torch.optim.AdamW(m.parameters(), lr=lr, weight_decay=0.0, fused=True)  # as training's (optim.py)
    losses = []
    for _ in range(steps):
        with autocast(device, precision):
            _, loss = m(x, targets=y, return_logits=False)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    first, last = losses[0], losses[-1]
    ln_v = math.log(model.cfg.vocab_size)
    bars = []
    if min_drop is not None and not first - last >= min_drop * ln_v:
        bars.append(f"a drop of train.overfit_min_drop {min_drop:g} x ln(vocab {model.cfg.vocab_size}) = "
                    f"{min_drop * ln_v:.3f} nats (it fell {first - last:.3f})")
    if max_ratio is not None and not last <= max_ratio * first:
        bars.append(f"train.overfit_max_ratio x start = {max_ratio * first:.3f}")
    if bars or not math.isfinite(last):
        raise OverfitCheckFailed(
            f"overfit check: loss on one fixed micro-batch went {first:.3f} -> {last:.3f} in {steps} "
            f"steps, short of {' and '.join(bars) or 'a finite loss'}; the model or lr is broken (check "
            "train.lr, model.*), or set train.overfit_check: false")
    return first, last


@torch.no_grad()
def evaluate(model: Transformer, batches: list, device: torch.device, precision: str) -> float:
    """Mean loss over fixed batches of (x, y) or (x, y, segments); with ignored targets (-1: an
    SFT loss mask) the mean over the targets counted, whichever batch they fall in."""
    model.eval()
    total, counted = 0.0, 0
    masked = any(bool((b[1] < 0).any()) for b in batches)
    for x, y, *seg in batches:
        seg = seg[0].to(device) if seg and seg[0] is not None else None
        with autocast(device, precision):
            _, loss = model(x.to(device), targets=y.to(device), return_logits=False, segments=seg,
                            reduction="sum" if masked else "mean")
        total += loss.item()
        counted += int((y >= 0).sum())
    model.train()
    return total / max(1, counted) if masked else total / len(batches)


def is_spike(hist: list[float], loss: float, sigma: float, window: int) -> bool:
    """loss > mean + sigma x std of the last `window` accepted losses (needs >= 10 of them;
    sigma 0 -> never). The skipped loss does not enter the history."""
    h = hist[-window:]
    if not sigma or len(h) < min(10, window):
        return False
    t = torch.tensor(h, dtype=torch.float64)
    return loss > t.mean().item() + sigma * t.std().item()
