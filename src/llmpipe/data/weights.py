"""Source weights -> shares: the one normaliser behind `mix.weights` and
`tokenizer.sample_weights` (empty -> equal shares; 0 leaves a source out)."""
from __future__ import annotations

import math

from llmpipe.core.errors import UserError


def shares(weights: dict[str, float], sources: list[str], key: str) -> dict[str, float]:
    """Normalised shares of the sources with weight > 0, in `sources` order.

    When the sum overflows (weights near 1e308), divides by the largest weight first, so the
    shares never become 0 or NaN. `key` names the params key in the error."""
    w = {s: float(weights.get(s, 0.0)) for s in sources} if weights else {s: 1.0 for s in sources}
    w = {s: v for s, v in w.items() if v > 0}
    if not w:
        raise UserError(f"{key}: every weight is 0; give at least one source a weight > 0")
    total = sum(w.values())
    if not math.isfinite(total):
        top = max(w.values())
        w = {s: v / top for s, v in w.items()}
        total = sum(w.values())
    return {s: v / total for s, v in w.items()}
