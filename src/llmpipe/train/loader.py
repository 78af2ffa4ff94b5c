"""Seeded random windows from a flat token memmap (`data/mix/train.bin`, `val.bin`).

Reads `data_meta.json` (written by `mix`) for `dtype` and `vocab_size` only; the .bin is a flat
array of token ids, each document followed by EOS, memory-mapped and never loaded whole.

Sampling is *stateless*: the window offsets of optimizer step s are drawn from a generator seeded
by (seed, s), so the sampler's whole state is the step number (saved in checkpoints) and a
resumed run reads exactly the windows an uninterrupted one would. The `G = batch_tokens /
context` windows of a step are split into contiguous micro-batches, micro-batch m of rank r
taking rows [(m * world + r) * B, ... + B): any world size sees the same global batch.

SFT (`train.sft`): a loss mask memmap beside the tokens (`train.mask`, one uint8 per token,
written by `mix`) is gathered with the same indices; a target whose mask is 0 becomes -1, which
the loss ignores. `loss_tokens(step)` counts a step's masked-in targets from the mask alone, so
every micro-batch can be weighted by the whole step's count before any backward pass.
"""
from __future__ import annotations

from llmpipe.core.errors import UserError

import json
from pathlib import Path

import numpy as np
import torch

VAL_STREAM = 1 << 40  # generator key for the fixed val windows (distinct from every step)
OVERFIT_STREAM = (1 << 40) + 1


def read_data_meta(data_dir: str | Path) -> dict:
    path = Path(data_dir) / "data_meta.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found; run `dvc repro mix` first")
    meta = json.loads(path.read_text(encoding="utf-8"))
    for key in ("dtype", "vocab_size"):
        if key not in meta:
            raise UserError(f"{path}: missing key {key!r} (written by the mix stage); rerun `dvc repro mix`")
    return meta


class TokenWindows:
    """Windows of context + 1 tokens (inputs and next-token targets) from one .bin file."""

    def __init__(self, path: str | Path, dtype, context: int, seqs_per_step: int, seed: int,
                 mask: str | Path | None = None) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: not found; run `dvc repro mix` first")
        # np.memmap refuses an empty file ("cannot mmap an empty file"): that is 0 tokens here
        self.data = np.memmap(self.path, dtype=np.dtype(dtype), mode="r") if self.path.stat().st_size else \
            np.zeros(0, np.dtype(dtype))
        if len(self.data) < context + 2:
            raise UserError(f"{self.path}: {len(self.data)} tokens, fewer than one window of "
                             f"context + 1 = {context + 1}; raise mix.train_tokens/val_tokens or "
                             "lower model.context")
        self.mask = None
        if mask is not None:  # SPLIT.mask: one 0/1 byte per token
            self.mask = np.memmap(Path(mask), dtype=np.uint8, mode="r")
            if len(self.mask) != len(self.data):
                raise UserError(f"{mask}: {len(self.mask)} mask bytes for {len(self.data)} tokens in {self.path}; "
                                "rerun `dvc repro mix`")
        self.context = context
        self.seqs_per_step = seqs_per_step
        self.seed = seed
        self.cursor = 0  # for next_batch(): steps handed out so far

    def offsets(self, stream: int, count: int) -> np.ndarray:
        """`count` window starts, uniform over the file, from the generator keyed (seed, stream)."""
        rng = np.random.default_rng([self.seed, stream])
        # a window spans context + 1 tokens, so starts run 0 .. len - context - 1 inclusive
        return rng.integers(0, len(self.data) - self.context, size=count, dtype=np.int64)

    def gather(self, starts: np.ndarray, masked: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """x, y (len(starts), context) int64, y shifted by one token (-1 outside the loss mask
        unless `masked` is False)."""
        idx = starts[:, None] + np.arange(self.context + 1, dtype=np.int64)[None, :]
        w = torch.from_numpy(self.data[idx].astype(np.int64))  # one vectorised gather
        x, y = w[:, :-1], w[:, 1:]
        if self.mask is not None and masked:  # targets outside the loss mask are ignored (-1)
            keep = torch.from_numpy(self.mask[idx[:, 1:]].astype(bool))
            y = torch.where(keep, y, torch.full_like(y, -1))
        return x, y

    def loss_tokens(self, step: int) -> int:
        """Targets the loss counts in all windows of step `step` (every target without a mask)."""
        if self.mask is None:  # without drawing the step's offsets (this runs every step)
            return self.seqs_per_step * self.context
        starts = self.offsets(step, self.seqs_per_step)
        idx = starts[:, None] + np.arange(1, self.context + 1, dtype=np.int64)[None, :]
        return int(np.count_nonzero(self.mask[idx]))

    def micro_batch(self, step: int, micro: int, rank: int, world: int, batch: int):
        """Rows of step `step` for micro-step `micro` of process `rank` out of `world`."""
        starts = self.offsets(step, self.seqs_per_step)
        lo = (micro * world + rank) * batch
        return self.gather(starts[lo:lo + batch])

    def fixed(self, stream: int, count: int, masked: bool = True):
        """A fixed set of windows (val batches, the overfit batch): the same for every call."""
        return self.gather(self.offsets(stream, count), masked)

    def next_batch(self):
        """All windows of the next step (for benchmarks)."""
        self.cursor += 1
        return self.gather(self.offsets(self.cursor - 1, self.seqs_per_step))
