"""Multi-process training: `accelerate launch --multi_gpu --num_processes 2` on CPU (gloo DDP)
keeps the global batch (2 processes x 1 micro-step instead of 1 x 2) and follows the
single-process loss curve within 1e-4 (same data, same init; only reduction order differs); the
cost side prices 2 devices and knows a 1-process bench does not describe the 2-process run.
FSDP: tests/test_fsdp.py."""
from __future__ import annotations

import json
import shutil
import socket
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from _trainkit import make_inputs, write_params
from test_train import losses, stage

ACCELERATE = str(Path(sys.executable).parent / "accelerate")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(tmp_path):
    single = make_inputs(tmp_path / "single")
    write_params(single, train={"tokens": 256 * 8, "overfit_check": False, "log_every": 1})
    assert stage(single, "bench").returncode == 0
    ddp = tmp_path / "ddp"
    shutil.copytree(single, ddp)
    p = yaml.safe_load((ddp / "params.yaml").read_text())
    p["cost"]["require_benchmark"] = False  # the 1-process bench is refused, the run goes unpriced
    (ddp / "params.yaml").write_text(yaml.safe_dump(p))
    r1 = stage(single, "train")
    assert r1.returncode == 0, r1.stderr
    launcher = [ACCELERATE, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port())]
    r2 = stage(ddp, "train", launcher=launcher)
    assert r2.returncode == 0, r2.stderr
    assert "2 procs (ddp) x 1 accum x 4 seqs" in r2.stderr and "1 procs (single) x 2 accum x 4 seqs" in r1.stderr
    assert r2.stderr.count("trained 8 steps") == 1  # only rank 0 logs
    assert ("measured for a different setting (parallel: measured 'single', this run 'ddp'; processes: "
            "measured 1, this run 2)" in r2.stderr and "starts unpriced" in r2.stderr)
    assert json.loads((ddp / "runs/train/timing.json").read_text())["num_devices"] == 2
    a, b = losses(single), losses(ddp)
    assert [s for s, _ in a] == [s for s, _ in b] == list(range(1, 9))
    assert max(abs(x - y) for (_, x), (_, y) in zip(a, b)) < 1e-4
    ca = json.loads((single / "runs/train/cost.json").read_text())
    cb = json.loads((ddp / "runs/train/cost.json").read_text())
    assert ca["tokens_seen"] == cb["tokens_seen"] == 8 * 256
    wa, wb = (load_file(str(d / "runs/train/model.safetensors")) for d in (single, ddp))
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-4, rtol=1e-3)
