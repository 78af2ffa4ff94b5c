"""bench/bench_vs_nanogpt.py's baseline: nanoGPT's shape and FLOPs count, and its stream score
counting every held-out character exactly once (the same-wall-clock comparison of issue 16)."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]


def bench_module():
    spec = importlib.util.spec_from_file_location("bench_vs_nanogpt", REPO / "bench" / "bench_vs_nanogpt.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_baseline_has_nanogpts_baby_parameter_count_and_trains():
    b = bench_module()
    torch.manual_seed(0)
    model = b.Gpt2Baseline.build(65, 64, 4, 4, 128)
    # nanoGPT's baby config (vocab 65, no bias): 0.80 M parameters less the position table
    assert model.num_params() == 65 * 128 + 4 * (12 * 128 * 128 + 2 * 128) + 128
    assert b.nanogpt_flops(model.num_params()) == 5_168_640
    opt = b.Gpt2Baseline.optimizer(model, 0.1, 1e-3, (0.9, 0.99))
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    x = torch.randint(65, (4, 64))
    losses = []
    for _ in range(30):  # one batch, learned: the loss falls
        _, loss = model(x[:, :-1].contiguous(), x[:, 1:].contiguous())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5


class TargetCost(torch.nn.Module):
    """Logits whose cross-entropy at a target is a known function of the target's value."""

    def forward(self, x, y):
        logits = torch.zeros(*y.shape, 8)
        return logits.scatter(-1, y[..., None], (y[..., None] % 5).float()), None


def test_stream_score_counts_every_character_once(tmp_path):
    b = bench_module()
    ids = np.random.default_rng(0).integers(0, 8, 1000).astype(np.uint16)
    (tmp_path / "nanogpt").mkdir()
    ids.tofile(tmp_path / "nanogpt" / "val.bin")
    t = torch.from_numpy(ids[1:].astype(np.int64))
    want = float(F.cross_entropy(TargetCost()(None, t[None])[0][0], t, reduction="sum")) / len(t) / math.log(2)
    for T, stride in ((64, 16), (64, 64), (50, 7)):
        assert math.isclose(b.stream_bits_per_byte(TargetCost(), tmp_path, T, stride), want, rel_tol=1e-6)
