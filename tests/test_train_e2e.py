"""End to end on the real pipeline: `dvc repro` trains the tiny preset; a train param experiment
reruns only train and eval; a `dvc repro` killed during training resumes on the next one."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import BIN, dvc, set_params, stages_ran


@pytest.mark.slow
def test_repro_trains_the_tiny_preset(built_repo):
    out = built_repo / "runs/train"
    cost = json.loads((out / "cost.json").read_text())
    assert cost["stop_reason"] == "done" and cost["tokens_seen"] == 8192 and cost["steps"] == 8
    assert cost["projection"]["projected_cost"] <= 1.0
    thr = json.loads((built_repo / "runs/throughput.json").read_text())
    assert thr["signature"]["model"]["d_model"] == 128 and thr["tokens_per_s"] > 0 and 0 < thr["mfu"]
    env = json.loads((built_repo / "runs/env.json").read_text())
    assert env["torch"] and env["packages"]["dvc"]
    shown = dvc(built_repo, "metrics", "show", "--json").stdout
    assert "runs/train/live/metrics.json" in shown and "runs/throughput.json" in shown


@pytest.mark.slow
def test_exp_run_train_param_reruns_only_train_and_eval(repo_copy):
    p = dvc(repo_copy, "exp", "run", "-S", "train.lr=0.002")
    assert stages_ran(p) == {"train", "eval"}
    assert "starting fresh" in p.stderr + p.stdout
    shown = dvc(repo_copy, "exp", "show", "--json").stdout
    assert "0.002" in shown


@pytest.mark.slow
def test_killed_dvc_repro_resumes_from_the_checkpoint(repo_copy):
    set_params(repo_copy, {"train.tokens": 24576, "train.ckpt_every": 2})  # 24 steps
    shutil.rmtree(repo_copy / "runs/train/ckpt")  # the built run's checkpoints would end the wait below
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(repo_copy / "src")}
    proc = subprocess.Popen([str(BIN / "dvc"), "repro", "train"], cwd=repo_copy, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    ckpt = repo_copy / "runs/train/ckpt"
    deadline = time.time() + 600
    while proc.poll() is None and time.time() < deadline and not list(ckpt.glob("step_0000000[2-9]")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # dvc and the training process with it
    proc.wait()
    assert not (repo_copy / "runs/train/model.safetensors").exists()
    p = dvc(repo_copy, "repro", "train")
    assert "resumed from step_" in p.stdout + p.stderr
    cost = json.loads((repo_copy / "runs/train/cost.json").read_text())
    assert cost["steps"] == 24 and cost["tokens_seen"] == 24576
