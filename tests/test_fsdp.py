"""FSDP2 training (`train.parallel: fsdp`) with 2 CPU processes over gloo, real torch.distributed
under `torchrun` (and `accelerate launch` for the two-machine case): the bench measures the sharded mode, the loss follows one process
within 1e-4 over 20 steps at the same global batch, a SIGKILLed sharded run resumes bitwise
identical, and checkpoints cross world sizes (2 -> 1 with export-hf; 1 -> 2, launched as two
"machines" of one process each over loopback, the multi-node rendezvous of the README)."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from _trainkit import make_inputs, write_params
from llmpipe.cli import main as cli
from test_ddp import ACCELERATE, free_port
from test_train import REPO, losses, outputs, stage

pytestmark = pytest.mark.slow
STEPS, CKPT = 20, "runs/train/ckpt"
TRAIN = {"tokens": 256 * STEPS, "overfit_check": False, "log_every": 1, "ckpt_every": 5}


TORCHRUN = str(Path(sys.executable).parent / "torchrun")


def launcher() -> list[str]:
    """torchrun, a few seconds quicker to start than `accelerate launch` (which wraps it);
    tests/test_ddp.py and the two-machine test below run under `accelerate launch`."""
    return [TORCHRUN, "--standalone", "--nproc_per_node", "2"]


def fsdp(root: Path, name: str):
    return stage(root, name, launcher=launcher())


def start_fsdp_train(root: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}", "PYTHONUNBUFFERED": "1",
           "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(launcher() + ["-m", "stages.train"], cwd=root, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (torchrun starts its workers in sessions of their own, so a
    process-group kill would miss them)."""
    parent = {}
    for d in Path("/proc").iterdir():
        try:
            stat = (d / "stat").read_text()
            parent[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        except (ValueError, OSError):
            continue
    out, todo = [], [pid]
    while todo:
        kids = [c for c, p in parent.items() if p == todo[-1]]
        todo.pop()
        out += kids
        todo += kids
    return out


def kill_all(proc: subprocess.Popen) -> None:
    """SIGKILL the launcher and both workers at once, as a lost machine would."""
    for pid in descendants(proc.pid) + [proc.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()


def set_parallel(root: Path, mode: str) -> None:
    p = yaml.safe_load((root / "params.yaml").read_text())
    p["train"]["parallel"] = mode
    (root / "params.yaml").write_text(yaml.safe_dump(p))


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One single-process run and one uninterrupted 2-process FSDP run of the same 20 steps,
    each after its own bench (the FSDP one measured under the same launch)."""
    base = tmp_path_factory.mktemp("fsdp")
    single = make_inputs(base / "single")
    write_params(single, train=TRAIN)
    sharded = copy(single, base / "sharded")
    set_parallel(sharded, "fsdp")
    assert stage(single, "bench").returncode == 0
    b = fsdp(sharded, "bench")
    assert b.returncode == 0, b.stderr
    for root, run in ((single, stage), (sharded, fsdp)):
        r = run(root, "train")
        assert r.returncode == 0, r.stderr
    (sharded / "train.log").write_text(r.stderr)
    return {"single": single, "sharded": sharded, "base": base}


def test_fsdp_bench_and_loss_match_one_process(runs):
    single, sharded = runs["single"], runs["sharded"]
    sig = json.loads((sharded / "runs/throughput.json").read_text())["signature"]
    assert (sig["parallel"], sig["processes"]) == ("fsdp", 2)
    assert json.loads((single / "runs/throughput.json").read_text())["signature"]["parallel"] == "single"
    log = (sharded / "train.log").read_text()
    assert "2 procs (fsdp) x 1 accum x 4 seqs" in log and log.count(f"trained {STEPS} steps") == 1
    a, b = losses(single), losses(sharded)
    assert [s for s, _ in a] == [s for s, _ in b] == list(range(1, STEPS + 1))
    assert max(abs(x - y) for (_, x), (_, y) in zip(a, b)) < 1e-4
    cost = json.loads((sharded / "runs/train/cost.json").read_text())
    timing = json.loads((sharded / "runs/train/timing.json").read_text())
    assert cost["tokens_seen"] == STEPS * 256 and cost["projection"]["num_devices"] == 2
    assert timing["num_devices"] == 2 and timing["parallel"] == "fsdp"
    meta = json.loads((sharded / CKPT / "step_00000020/meta.json").read_text())
    assert (meta["world"], meta["parallel"]) == (2, "fsdp")
    wa, wb = (load_file(str(d / "runs/train/model.safetensors")) for d in (single, sharded))
    assert sorted(wa) == sorted(wb)  # full tensors, the one-process names and shapes
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-4, rtol=1e-3)


def test_killed_fsdp_run_resumes_bitwise_identical_and_loads_on_one_process(runs):
    w = runs["base"] / "killed"  # inputs, params and bench record of the sharded run, no outputs
    shutil.copytree(runs["sharded"], w, ignore=shutil.ignore_patterns("train", "train.log"))
    proc = start_fsdp_train(w)
    deadline = time.time() + 300
    while not (w / CKPT / "step_00000005").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    kill_all(proc)
    assert not (w / "runs/train/model.safetensors").exists(), "finished before the kill"
    killed_at = sorted(p.name for p in (w / CKPT).iterdir() if p.name.startswith("step_"))[-1]
    one = copy(w, runs["base"] / "to_one")  # the sharded checkpoint, resumed by one process
    r = fsdp(w, "train")
    assert r.returncode == 0, r.stderr
    assert f"resumed from {killed_at}" in r.stderr
    assert outputs(w) == outputs(runs["sharded"])  # model, checkpoints, DVCLive, samples: bitwise
    assert losses(w) == losses(runs["sharded"])

    shutil.copy(runs["single"] / "runs/throughput.json", one / "runs/throughput.json")  # a 1-process bench
    r = stage(one, "train")
    assert r.returncode == 0, r.stderr
    assert f"{killed_at} was saved by 2 process(es) (fsdp), resumed on 1 (single)" in r.stderr
    a, b = losses(runs["single"]), losses(one)
    assert [s for s, _ in b] == list(range(1, STEPS + 1))
    assert max(abs(x - y) for (_, x), (_, y) in zip(a, b)) < 1e-4
    for run in (one, runs["sharded"]):  # export-hf from a run finished on 1 and on 2 processes
        out = run / "hf"
        assert cli(["export-hf", str(run / "runs/train"), str(out), "--tokenizer",
                    str(run / "artifacts/tokenizer/spm.model")]) == 0
        exported, trained = (load_file(str(d / "model.safetensors")) for d in (out, run / "runs/train"))
        assert exported.keys() == trained.keys() and all(torch.equal(exported[k], trained[k]) for k in trained)
        assert json.loads((out / "config.json").read_text())["model_type"] == "llama"


def test_one_process_checkpoint_resumes_sharded_on_two_machines(runs):
    w = copy(runs["single"], runs["base"] / "to_two")
    shutil.rmtree(w / CKPT / "step_00000020")  # resume from step 15
    for name in ("model.safetensors", "config.json"):
        (w / "runs/train" / name).unlink()
    set_parallel(w, "fsdp")
    shutil.copy(runs["sharded"] / "runs/throughput.json", w / "runs/throughput.json")
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}", "OMP_NUM_THREADS": "1"}
    port = str(free_port())
    nodes = [subprocess.Popen([ACCELERATE, "launch", "--multi_gpu", "--num_machines", "2", "--num_processes", "2",
                               "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1",
                               "--main_process_port", port, "--mixed_precision", "no", "--dynamo_backend", "no",
                               "-m", "stages.train"], cwd=w, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    (_, err), (_, err1) = (p.communicate(timeout=600) for p in nodes)
    assert [p.returncode for p in nodes] == [0, 0], err + err1
    assert "2 procs (fsdp)" in err and "step_00000015 was saved by 1 process(es) (single), resumed on 2 (fsdp)" in err
    a, b = losses(runs["single"]), losses(w)
    assert [s for s, _ in b] == list(range(1, STEPS + 1))
    assert max(abs(x - y) for (_, x), (_, y) in zip(a, b)) < 1e-4
