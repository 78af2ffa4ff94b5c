"""Training: schedule, optimizer groups, loader, overfit check, and the real `train` stage run as
a subprocess on a tiny model (cost gate, outputs, kill-and-resume bitwise identity, fingerprint
mismatch, non-finite loss, budget stop)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from _trainkit import make_inputs, write_params
from llmpipe.train.loader import TokenWindows
from llmpipe.train.model import ModelConfig, Transformer, load_model
from llmpipe.train.optim import EMA, lr_at, param_groups
from llmpipe.params import TrainParams
from llmpipe.train.checks import OverfitCheckFailed, is_spike, overfit_check
from llmpipe.train.trainer import batch_plan

REPO = Path(__file__).resolve().parents[1]


def stage(root: Path, name: str, *args: str, wait: bool = True, launcher: list[str] | None = None):
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}", "PYTHONUNBUFFERED": "1",
           "OMP_NUM_THREADS": "1"}
    cmd = (launcher or [sys.executable]) + ["-m", f"stages.{name}", *args]
    if not wait:
        return subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)


def set_train(root: Path, **kw) -> None:
    p = yaml.safe_load((root / "params.yaml").read_text())
    p["train"].update(kw)
    (root / "params.yaml").write_text(yaml.safe_dump(p))


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """Tokenizer + memmaps + params + a real bench record, built once per module."""
    root = make_inputs(tmp_path_factory.mktemp("train") / "t")
    write_params(root, train={"tokens": 256 * 12})
    p = stage(root, "bench")
    assert p.returncode == 0, p.stderr
    return root


@pytest.fixture
def work(template, tmp_path) -> Path:
    dst = tmp_path / "w"
    shutil.copytree(template, dst)
    return dst


@pytest.fixture(scope="module")
def reference(template, tmp_path_factory) -> Path:
    """One uninterrupted run (shared by several tests)."""
    dst = tmp_path_factory.mktemp("ref") / "w"
    shutil.copytree(template, dst)
    p = stage(dst, "train")
    assert p.returncode == 0, p.stderr
    return dst


def outputs(root: Path) -> dict[str, bytes]:
    """Every file train wrote, but the wall-clock one (timing.json), by path under runs/train."""
    out = root / "runs/train"
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "timing.json"}


def losses(root: Path) -> list[tuple[int, float]]:
    head, *rows = (root / "runs/train/live/plots/metrics/train/loss.tsv").read_text().splitlines()
    i, j = head.split("\t").index("step"), head.split("\t").index("loss")
    return [(int(r.split("\t")[i]), float(r.split("\t")[j])) for r in rows]


# --------------------------------------------------------------------------- pure parts

def test_lr_schedules():
    cos = TrainParams(lr=1.0, warmup=4, min_lr_ratio=0.1, schedule="cosine")
    got = [lr_at(s, 14, cos) for s in range(14)]
    assert got[:4] == [0.25, 0.5, 0.75, 1.0]
    assert got[-1] == pytest.approx(0.1) and all(a >= b for a, b in zip(got[4:], got[5:]))
    wsd = TrainParams(lr=1.0, warmup=2, min_lr_ratio=0.0, schedule="wsd", decay_fraction=0.25)
    got = [lr_at(s, 12, wsd) for s in range(12)]
    assert got[2:9] == [1.0] * 7 and got[9:] == pytest.approx([2 / 3, 1 / 3, 0.0])
    assert lr_at(50, 100, TrainParams(lr=0.5, schedule="constant")) == 0.5


def test_no_weight_decay_on_norms_and_embeddings():
    m = Transformer(ModelConfig(vocab_size=50, d_model=16, n_layers=1, n_heads=2, n_kv_heads=2,
                                context=8, ffn_hidden=32))
    decay, no_decay = param_groups(m, 0.1)
    names = {id(p): n for n, p in m.named_parameters()}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {names[id(p)] for p in no_decay["params"]} == {
        "model.embed_tokens.weight", "model.layers.0.input_layernorm.weight",
        "model.layers.0.post_attention_layernorm.weight", "model.norm.weight"}
    assert "lm_head.weight" in {names[id(p)] for p in decay["params"]}


def test_batch_plan_exact_and_errors():
    tp = TrainParams(batch_tokens=4096, micro_batch=4, tokens=10_000)
    assert batch_plan(tp, 256, 2) == {"seqs_per_step": 16, "accum": 2, "world": 2, "total_steps": 3}
    with pytest.raises(ValueError, match=r"train.batch_tokens \(4096\) must be a multiple .* 4 x 256 x 3"):
        batch_plan(tp, 256, 3)


def test_loader_is_seeded_shifted_and_world_size_independent(tmp_path):
    path = tmp_path / "train.bin"
    np.arange(10_000, dtype=np.uint16).tofile(path)
    w = TokenWindows(path, "uint16", 16, seqs_per_step=8, seed=3)
    x, y = w.micro_batch(5, 0, 0, 1, 8)
    assert torch.equal(x[:, 1:], y[:, :-1]) and torch.equal(y - x, torch.ones_like(x))
    assert torch.equal(x, TokenWindows(path, "uint16", 16, 8, seed=3).micro_batch(5, 0, 0, 1, 8)[0])
    assert not torch.equal(x, TokenWindows(path, "uint16", 16, 8, seed=4).micro_batch(5, 0, 0, 1, 8)[0])
    # 2 processes x 2 micro-steps x 2 rows == the same 8 rows as 1 process x 1 micro-step x 8
    parts = [w.micro_batch(5, m, r, 2, 2)[0] for m in range(2) for r in range(2)]
    assert torch.equal(torch.cat(parts), x)
    np.arange(10, dtype=np.uint16).tofile(tmp_path / "short.bin")
    with pytest.raises(ValueError, match="short.bin: 10 tokens, fewer than one window"):
        TokenWindows(tmp_path / "short.bin", "uint16", 16, 8, 0)


def test_overfit_check_stops_a_broken_model_and_passes_a_working_one():
    torch.manual_seed(0)
    m = Transformer(ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=2, n_kv_heads=2,
                                context=16, ffn_hidden=64))
    x = torch.randint(0, 64, (4, 16))
    y = torch.randint(0, 64, (4, 16))
    cpu = torch.device("cpu")
    with pytest.raises(OverfitCheckFailed, match="overfit check: loss on one fixed micro-batch"):
        overfit_check(m, x, y, lr=0.0, steps=10, max_ratio=0.6, device=cpu, precision="fp32")
    first, last = overfit_check(m, x, y, lr=1e-2, steps=40, max_ratio=0.6, device=cpu, precision="fp32")
    assert last <= 0.6 * first
    assert m(x, targets=y)[1].item() == pytest.approx(first, rel=1e-5)  # the original is untouched


def test_spike_rule_and_ema():
    hist = [2.0 + 0.01 * (i % 3) for i in range(20)]
    assert not is_spike(hist, 2.03, 6.0, 50) and is_spike(hist, 3.0, 6.0, 50)
    assert not is_spike(hist[:5], 30.0, 6.0, 50) and not is_spike(hist, 30.0, 0.0, 50)
    lin = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(0.0)
    ema = EMA(lin, 0.9)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    ema.update(lin)
    assert torch.allclose(ema.shadow["weight"], torch.full((1, 2), 0.1))


# --------------------------------------------------------------------------- the stage

def test_checkpoint_weights_get_the_umask_mode_of_every_other_file(tmp_path):
    # safetensors' save_file creates 0600 whatever the umask; checkpoints on shared storage
    # must be readable like meta.json and state.json next to them
    from llmpipe.train.checkpoint import save_checkpoint
    old = os.umask(0o022)
    try:
        ck = save_checkpoint(tmp_path / "ckpt", 1, {"w": torch.zeros(2)}, {"step": 1}, {},
                             ema_state={"w": torch.ones(2)})
    finally:
        os.umask(old)
    modes = {f.name: f.stat().st_mode & 0o777 for f in ck.iterdir()}
    assert modes == dict.fromkeys(["model.safetensors", "ema.safetensors", "state.safetensors", "state.json",
                                   "meta.json"], 0o644)


def test_run_writes_outputs_with_exact_token_accounting(reference):
    out = reference / "runs/train"
    cost = json.loads((out / "cost.json").read_text())
    assert cost["tokens_seen"] == 12 * 256 == cost["tokens_target"] and cost["steps"] == 12
    assert cost["stop_reason"] == "done" and "actual_cost" not in cost and "seconds" not in cost
    timing = json.loads((out / "timing.json").read_text())  # the wall-clock facts, apart
    assert timing["actual_cost"] > 0 and timing["seconds"] > 0 and timing["tokens_per_s"] > 0
    assert [s for s, _ in timing["tokens_per_s_log"]] == [2, 4, 6, 8, 10, 12]
    assert [s for s, _ in timing["checkpoint_seconds"]] == [9, 12]
    assert cost["projection"]["tokens"] == 12 * 256 and cost["projection"]["projected_cost"] > 0
    model, cfg = load_model(out)
    assert cfg.d_model == 32 and json.loads((out / "config.json").read_text())["train"]["tokens_seen"] == 3072
    assert [s for s, _ in losses(reference)] == [2, 4, 6, 8, 10, 12]
    assert losses(reference)[-1][1] < losses(reference)[0][1]
    assert sorted(p.name for p in (out / "ckpt").iterdir()) == ["step_00000009", "step_00000012"]
    assert (out / "samples.txt").read_text().count("## step ") == 3  # eval_every 4
    live = json.loads((out / "live/metrics.json").read_text())
    assert live["step"] == 12 and "loss" in live["val"]


def test_cost_gate_refusal_writes_nothing(work):
    p = yaml.safe_load((work / "params.yaml").read_text())
    p["cost"]["max_cost"] = 0.0
    (work / "params.yaml").write_text(yaml.safe_dump(p))
    r = stage(work, "train")
    assert r.returncode == 2 and "cost gate: training 3,072 tokens" in r.stderr
    assert "over cost.max_cost = $0.00" in r.stderr and not (work / "runs/train").exists()


def test_cost_gate_prices_the_whole_batches_that_run(work):
    """train.tokens 3,000 with 256-token batches trains 12 steps = 3,072 tokens: that is priced."""
    set_train(work, tokens=3000)
    p = yaml.safe_load((work / "params.yaml").read_text())
    p["cost"]["max_cost"] = 0.0
    (work / "params.yaml").write_text(yaml.safe_dump(p))
    r = stage(work, "train")
    assert r.returncode == 2 and "cost gate: training 3,072 tokens" in r.stderr, r.stderr


def test_mismatched_benchmark_fails_closed(work):
    set_train(work, micro_batch=8)  # bench measured micro_batch 4
    r = stage(work, "train")
    assert r.returncode == 2 and "micro_batch: measured 4, this run 8" in r.stderr
    assert "dvc repro bench" in r.stderr and not (work / "runs/train").exists()


def test_killed_run_resumes_bitwise_identical(work, reference):
    set_train(work, tokens=256 * 12)
    proc = stage(work, "train", wait=False)
    ckpts = work / "runs/train/ckpt"
    deadline = time.time() + 300
    while not (ckpts / "step_00000003").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (work / "runs/train/model.safetensors").exists(), "finished before the kill"
    killed_at = sorted(p.name for p in ckpts.iterdir() if p.name.startswith("step_"))[-1]
    r = stage(work, "train")
    assert r.returncode == 0, r.stderr
    assert f"resumed from {killed_at}" in r.stderr and "overfit check" not in r.stderr
    assert "no record of" not in r.stderr  # the spend up to the checkpoint was restored
    assert outputs(work) == outputs(reference)  # model, config, checkpoints, DVCLive files, samples
    assert losses(work) == losses(reference)  # DVCLive rows after the checkpoint were dropped
    assert (work / "runs/train/samples.txt").read_text() == (reference / "runs/train/samples.txt").read_text()


def test_fingerprint_mismatch_starts_fresh_and_harmless_change_resumes(reference, tmp_path):
    w = tmp_path / "w"
    shutil.copytree(reference, w)
    set_train(w, eval_every=6)  # not part of the trajectory: resumes from the final checkpoint
    r = stage(w, "train")
    assert r.returncode == 0 and "resumed from step_00000012" in r.stderr
    assert (w / "runs/train/model.safetensors").read_bytes() == (
        reference / "runs/train/model.safetensors").read_bytes()
    set_train(w, lr=5e-3)
    r = stage(w, "train")
    assert r.returncode == 0, r.stderr
    assert "starting fresh: checkpoint step_00000012 was made with different train" in r.stderr
    assert "overfit check passed" in r.stderr
    assert (w / "runs/train/model.safetensors").read_bytes() != (
        reference / "runs/train/model.safetensors").read_bytes()


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(work):
    set_train(work, lr=1e30, warmup=0, overfit_check=False, ckpt_every=1, spike_sigma=0.0)
    r = stage(work, "train")
    assert r.returncode == 2 and "non-finite loss (nan) at step 1" in r.stderr
    assert sorted(p.name for p in (work / "runs/train/ckpt").iterdir()) == ["step_00000001"]
    assert not (work / "runs/train/model.safetensors").exists()


def test_spend_reaching_max_cost_stops_at_a_checkpoint(work):
    rec = json.loads((work / "runs/throughput.json").read_text())
    rec["tokens_per_s"] = 1e12  # projection ~0: the gate passes, the measured spend stops it
    (work / "runs/throughput.json").write_text(json.dumps(rec))
    p = yaml.safe_load((work / "params.yaml").read_text())
    p["cost"].update(hourly_rate=36000.0, max_cost=0.5)  # $10/s: stop after ~0.05 s
    (work / "params.yaml").write_text(yaml.safe_dump(p))
    r = stage(work, "train")
    assert r.returncode == 0, r.stderr
    cost = json.loads((work / "runs/train/cost.json").read_text())
    timing = json.loads((work / "runs/train/timing.json").read_text())
    assert cost["stop_reason"] == "max_cost" and timing["actual_cost"] >= 0.5 and cost["steps"] < 12
    assert (work / f"runs/train/ckpt/step_{cost['steps']:08d}").is_dir()
    assert "measured spend reached cost.max_cost" in r.stderr


def _meta_with_train_files(root: Path) -> None:
    """data_meta.json as the mix writes it: the train split's tokens and file sha256."""
    import hashlib
    mix = root / "data/mix"
    meta = json.loads((mix / "data_meta.json").read_text())
    b = (mix / "train.bin").read_bytes()
    meta["splits"] = {"train": {"tokens": len(b) // 2, "files": {"bin": {"sha256": hashlib.sha256(b).hexdigest()}}}}
    (mix / "data_meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("mode", ["continue", "restart"])
def test_a_grown_mix_resumes_with_on_new_data_continue_and_restarts_by_default(template, tmp_path, mode):
    w = tmp_path / "w"
    shutil.copytree(template, w)
    _meta_with_train_files(w)
    set_train(w, max_steps=6, ckpt_every=3, on_new_data=mode)
    r = stage(w, "train")
    assert r.returncode == 0, r.stderr
    train_bin = w / "data/mix/train.bin"
    grown = np.fromfile(train_bin, np.uint16)
    np.concatenate([grown, grown[: len(grown) // 2]]).tofile(train_bin)  # new shards arrived
    _meta_with_train_files(w)
    set_train(w, max_steps=None)
    r = stage(w, "train")
    assert r.returncode == 0, r.stderr
    cost = json.loads((w / "runs/train/cost.json").read_text())
    assert cost["steps"] == 12 and cost["tokens_seen"] == 12 * 256  # counted once, never re-counted
    if mode == "continue":
        assert "resumed from step_00000006" in r.stderr and "resuming on new data" in r.stderr
        assert "the 1,536 tokens seen stay counted" in r.stderr
    else:
        assert "starting fresh: checkpoint step_00000006 was made with different data" in r.stderr


def test_compile_step_in_setup_leaves_weights_optimizer_and_rng_as_they_were(tmp_path):
    """train.compile's setup step (Trainer.compile_step: one forward/backward so torch.compile
    compiles before the loop) must not move anything a run's outputs depend on. Run here on the
    eager forward (compiling takes ~45 s): the same method, minus inductor."""
    from llmpipe.params import load_params
    from llmpipe.train.trainer import Paths, Trainer

    root = make_inputs(tmp_path / "w")
    p = load_params(write_params(root, train={"overfit_check": False}, cost={"require_benchmark": False}))
    t = Trainer(Paths(root / "data/mix", root / "artifacts/tokenizer", root / "runs/throughput.json",
                      root / "runs/train"), p.model, p.train, p.cost)
    t.setup()
    before = ({k: v.clone() for k, v in t.model.state_dict().items()}, torch.get_rng_state().clone(),
              repr(t.opt.state_dict()), t.step, t.windows.cursor)
    t.compile_step()
    assert all(q.grad is None for q in t.model.parameters())
    after = (t.model.state_dict(), torch.get_rng_state(), repr(t.opt.state_dict()), t.step, t.windows.cursor)
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    assert torch.equal(before[1], after[1]) and before[2:] == after[2:]
