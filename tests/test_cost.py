"""Cost gate: projection arithmetic, refusal/acceptance around the boundary, fail-closed cases."""
from __future__ import annotations

import json

import pytest
import torch

from llmpipe.train.cost import signature
from llmpipe.train.cost import CostGateError, devices, gate, project, spent
from llmpipe.train.model import ModelConfig
from llmpipe.params import CostParams

CFG = ModelConfig(vocab_size=100, d_model=16, n_layers=1, n_heads=2, n_kv_heads=2, context=8, ffn_hidden=32)
SIG = signature(CFG, 4, "fp32", False, torch.device("cpu"))


def write_bench(path, tps=1000.0, sig=SIG):
    path.write_text(json.dumps({"signature": sig, "tokens_per_s": tps}))
    return path


def test_projection_arithmetic():
    p = project(7_200_000, 1000.0, CostParams(hourly_rate=2.0, max_cost=10.0), num_devices=2)
    # 7.2M tokens at 2 x 1000 tok/s = 3600 s = 1 h; 1 h x $2 x 2 devices = $4
    assert p["projected_hours"] == pytest.approx(1.0) and p["projected_cost"] == pytest.approx(4.0)
    assert p["num_devices"] == 2
    assert spent(1800, CostParams(hourly_rate=2.0), 2) == pytest.approx(2.0)


def test_devices_are_the_world_size_and_a_contradicting_num_devices_is_refused():
    assert devices(CostParams(), 4) == 4 and devices(CostParams(num_devices=2), 2) == 2
    with pytest.raises(CostGateError, match=r"cost.num_devices is 1 but this run has 2 process\(es\).*"
                                            r"set cost.num_devices: null \(the run's world size\) or 2"):
        devices(CostParams(num_devices=1), 2)


def test_gate_accepts_at_and_refuses_just_above_the_boundary(tmp_path):
    path = write_bench(tmp_path / "t.json", tps=1000.0)
    tokens = 3_600_000  # 1 h at 1000 tok/s -> $3 at $3/h
    ok = gate(tokens, path, SIG, CostParams(hourly_rate=3.0, max_cost=3.0))
    assert ok["projected_cost"] == pytest.approx(3.0)
    with pytest.raises(CostGateError) as e:
        gate(tokens + 2000, path, SIG, CostParams(hourly_rate=3.0, max_cost=3.0))
    msg = str(e.value)
    for part in ("3,602,000 tokens", "1,000 tokens/s", "1.001 h", "$3.00", "cost.max_cost",
                 "train.tokens", "cost.hourly_rate"):
        assert part in msg, part


def test_missing_benchmark_fails_closed(tmp_path):
    with pytest.raises(CostGateError, match="dvc repro bench"):
        gate(1000, tmp_path / "absent.json", SIG, CostParams())
    assert gate(1000, tmp_path / "absent.json", SIG, CostParams(require_benchmark=False)) is None


@pytest.mark.parametrize("field,value", [("micro_batch", 8), ("precision", "bf16"), ("context", 16),
                                         ("device_type", "cuda"), ("compile", True),
                                         ("parallel", "fsdp"), ("processes", 2)])
def test_mismatched_benchmark_fails_closed_naming_the_field(tmp_path, field, value):
    other = {**SIG, field: value}
    path = write_bench(tmp_path / "t.json", sig=other)
    with pytest.raises(CostGateError, match=f"{field}: measured .*dvc repro bench"):
        gate(1000, path, SIG, CostParams())


def test_mismatched_model_fails_closed(tmp_path):
    other = {**SIG, "model": {**SIG["model"], "n_layers": 2}}
    with pytest.raises(CostGateError, match="model.n_layers: measured 2, this run 1"):
        gate(1000, write_bench(tmp_path / "t.json", sig=other), SIG, CostParams())
