"""Training in phases on the real `train` stage (a subprocess, tiny model): a later phase starts
from the base run's final weights and AdamW state, continues the LR and the global step, counts
its tokens exactly (checked against the token file), resumes bitwise after a kill, averages its
last checkpoints; the phase params are checked; the planner's figures."""
from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from llmpipe.core.config import ParamsError
from llmpipe.core.atomic import write_json
from llmpipe.train import phases
from llmpipe.train.loader import TokenWindows
from llmpipe.train.optim import lr_at
from test_train import losses, outputs, reference, stage, template  # noqa: F401 - fixtures

PHASE = {"after": "train", "data": {}, "eval": {},
         "train": {"tokens": 256 * 6, "schedule": "decay", "init": "previous"}}


def add_phase(root: Path, name: str = "anneal", **train) -> None:
    """params.yaml gains phases.NAME; its mix is a copy of the base mix (the data stage is tested
    in tests/test_phases_dvc.py); the base run is promoted as its eval would promote it."""
    p = yaml.safe_load((root / "params.yaml").read_text())
    p["phases"] = {name: {**PHASE, "train": {**PHASE["train"], **train}}}
    (root / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    if not (root / "data/phases" / name).exists():
        shutil.copytree(root / "data/mix", root / "data/phases" / name)
    write_json(root / "runs/train/promotion.json", phases.promotion_record(root / "runs/train"))


def run_phase(root: Path, name: str = "anneal", wait: bool = True):
    return stage(root, "train", "--phase", name, "--data", f"data/phases/{name}", "--out", f"runs/{name}",
                 wait=wait)


@pytest.fixture(scope="module")
def phased(reference, tmp_path_factory) -> Path:
    """The module's base run continued by one 6-step phase (decay, init: previous)."""
    dst = tmp_path_factory.mktemp("phased") / "w"
    shutil.copytree(reference, dst)
    add_phase(dst)
    r = run_phase(dst)
    assert r.returncode == 0, r.stderr
    return dst


def rows(root: Path, run: str, metric: str) -> list[tuple[int, float]]:
    head, *body = (root / f"runs/{run}/live/plots/metrics/train/{metric}.tsv").read_text().splitlines()
    i, j = head.split("\t").index("step"), head.split("\t").index(metric)
    return [(int(r.split("\t")[i]), float(r.split("\t")[j])) for r in body]


def test_phase_continues_weights_optimizer_lr_and_global_step(phased):
    base = json.loads((phased / "runs/train/config.json").read_text())["train"]
    cost = json.loads((phased / "runs/anneal/cost.json").read_text())
    assert base["global_step"] == 12 and cost["steps"] == 6 and cost["global_step"] == 18
    # LR: no warmup; the phase starts at the base's final LR and decays linearly to 0.1 of it
    lrs = rows(phased, "anneal", "lr")[6:]  # after the base's six rows
    assert [s for s, _ in lrs] == [14, 16, 18]
    start = base["final_lr"]
    assert start == pytest.approx(0.1 * 1e-2)  # the base's cosine ends at min_lr_ratio x its lr
    assert lrs[-1][1] == pytest.approx(0.1 * start) and lrs[0][1] == pytest.approx(start * (1 - 0.9 * 2 / 6))
    # one continuous curve: the phase's file holds the base's rows, then its own
    assert rows(phased, "anneal", "loss")[:6] == rows(phased, "train", "loss")
    assert [s for s, _ in rows(phased, "anneal", "loss")] == [2, 4, 6, 8, 10, 12, 14, 16, 18]
    assert json.loads((phased / "runs/anneal/live/metrics.json").read_text())["step"] == 18
    # init: previous carried AdamW's state: its step count continues from the base run's 12
    last = phased / "runs/anneal/ckpt/step_00000006"
    state = load_file(str(last / "state.safetensors"))
    steps = {float(v) for k, v in state.items() if k.endswith(".step")}
    assert steps == {18.0}


def test_token_accounting_equals_the_data(phased):
    """Every count in cost.json, recomputed from train.bin at the windows the sampler drew."""
    cost = json.loads((phased / "runs/anneal/cost.json").read_text())
    base = json.loads((phased / "runs/train/cost.json").read_text())
    meta = json.loads((phased / "data/phases/anneal/data_meta.json").read_text())
    w = TokenWindows(phased / "data/phases/anneal/train.bin", meta["dtype"], 32, 256 // 32, 0)
    xs = torch.cat([w.gather(w.offsets(step, 8))[0] for step in range(6)])
    assert cost["tokens_seen"] == xs.numel() == 6 * 256 and cost["sequences"] == len(xs) == 48
    assert cost["eos_tokens"] == int((xs == 3).sum()) > 0 and cost["padding_tokens"] == int((xs == 0).sum()) == 0
    assert cost["padding_share"] == 0.0
    assert cost["tokens_before"] == base["tokens_seen"] == 3072
    assert cost["cumulative_tokens"] == 3072 + 1536 and base["cumulative_tokens"] == 3072
    assert cost["plan"]["phase"] == "anneal" and cost["plan"]["plan_tokens_so_far"] == 3072 + 1536


def test_killed_phase_resumes_bitwise_identical(phased, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(phased, work)
    shutil.rmtree(work / "runs/anneal")
    proc = run_phase(work, wait=False)
    ckpts = work / "runs/anneal/ckpt"
    deadline = time.time() + 300
    while not (ckpts / "step_00000003").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (work / "runs/anneal/model.safetensors").exists(), "finished before the kill"
    r = run_phase(work)
    assert r.returncode == 0 and "resumed from step_0000000" in r.stderr, r.stderr
    assert outputs_of(work, "anneal") == outputs_of(phased, "anneal")


def outputs_of(root: Path, run: str) -> dict[str, bytes]:
    out = root / "runs" / run
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "timing.json"}


def test_init_weights_starts_a_fresh_adamw_and_a_retrained_base_restarts_the_phase(phased, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(phased, work)
    add_phase(work, init="weights", lr=0.002, schedule="constant")
    r = run_phase(work)
    assert r.returncode == 0 and "starting fresh" in r.stderr, r.stderr
    state = load_file(str(work / "runs/anneal/ckpt/step_00000006/state.safetensors"))
    assert {float(v) for k, v in state.items() if k.endswith(".step")} == {6.0}
    assert {lr for _, lr in rows(work, "anneal", "lr")[6:]} == {0.002}
    # a phase never starts from a model its eval did not promote (the stage calls this first)
    from llmpipe.core.errors import UserError

    write_json(work / "runs/train/promotion.json", {"promoted": True, "model_sha256": "0" * 64})
    with pytest.raises(UserError, match=r"promotion.json: names another model: the phase's eval has not promoted"):
        phases.require_promotion(work / "runs/train")
    (work / "runs/train/promotion.json").unlink()
    with pytest.raises(UserError, match=r"promotion.json: missing"):
        phases.require_promotion(work / "runs/train")


def test_average_last_is_the_mean_of_the_last_checkpoints(phased, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(phased, work)
    p = yaml.safe_load((work / "params.yaml").read_text())
    p["train"].update({"ckpt_every": 2, "keep_ckpts": 3})
    p["phases"]["anneal"]["train"]["average_last"] = 3
    (work / "params.yaml").write_text(yaml.safe_dump(p))
    shutil.rmtree(work / "runs/anneal")
    r = run_phase(work)
    assert r.returncode == 0, r.stderr
    out = work / "runs/anneal"
    cfg = json.loads((out / "config.json").read_text())["train"]["average"]
    assert cfg["k"] == 3 and cfg["steps"] == [2, 4, 6] and cfg["last"] == "ckpt/step_00000006"
    mean = {}
    for s in cfg["steps"]:
        for k, v in load_file(str(out / f"ckpt/step_{s:08d}/model.safetensors")).items():
            mean[k] = mean.get(k, 0) + v.double()
    final = load_file(str(out / "model.safetensors"))
    assert all(torch.equal(final[k], (mean[k] / len(cfg["steps"])).float()) for k in final)
    assert cfg["val_loss"] != cfg["val_loss_last"]


def test_phase_params_are_checked(tmp_path):
    from llmpipe.params import load_params

    def check(phases_, msg):
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(
            {"sources": {"c4": {"kind": "c4", "uri": "sample://c4"}, "wiki": {"kind": "wikipedia", "uri": "x"}},
             "phases": phases_}))
        with pytest.raises(ParamsError, match=msg):
            load_params(tmp_path / "params.yaml")

    ok = {"after": "train", "data": {}, "train": {"tokens": 4096}, "eval": {}}
    check({"a": ok, "b": ok}, r"phases\.b\.after: is 'train', but phases run in file order: set it to 'a'")
    check({"train": ok}, r"phases\.train: a phase name is .* not 'train'")
    check({"a": {**ok, "data": {"chat": "c4"}}}, r"phases\.a\.data\.chat: is not a key: an SFT phase gives its "
                                                 r"`kind: chat` source a weight in data\.weights and sets train\.sft: true")
    check({"a": {**ok, "data": {"weights": {"c4": 1}}}}, r"phases\.a\.data\.weights: names c4 but not wiki")
    check({"a": {k: v for k, v in ok.items() if k != "eval"}}, r"phases\.a: missing required key\(s\): eval")
    check({"a": {**ok, "train": {"tokens": 100}}}, r"phases\.a\.train\.tokens: 100 is less than one batch")
    check({"a": {**ok, "train": {"tokens": 4096, "average_last": 5}}}, r"average_last: averages 5 checkpoints")


def test_an_sft_phase_switches_the_masked_loss_on_for_itself_only(tmp_path):
    """phases.NAME.train.sft overrides train.sft for that phase; null keeps the base's."""
    from llmpipe.params import load_params
    from llmpipe.train.phases import phase_train_params
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        {"sources": {"c4": {"kind": "c4", "uri": "sample://c4"}, "chat": {"kind": "chat", "uri": "sample://chat"}},
         "mix": {"weights": {"c4": 1, "chat": 0}},
         "phases": {"pre": {"after": "train", "data": {}, "train": {"tokens": 4096}, "eval": {}},
                    "sft": {"after": "pre", "data": {"weights": {"c4": 0, "chat": 1}},
                            "train": {"tokens": 4096, "sft": True}, "eval": {}}}}))
    p = load_params(tmp_path / "params.yaml")
    assert not p.train.sft
    pre, sft = (phase_train_params(p.train, p.phases[k], 1e-3) for k in ("pre", "sft"))
    assert not pre.sft and sft.sft


def test_plan_prices_every_phase_at_the_measured_throughput(phased, capsys, tmp_path):
    """`llmpipe plan` on the module's real bench record: params, FLOPs/token, Chinchilla and each
    phase's tokens/hours/dollars; exit 1 once the plan is over plan.max_cost."""
    from llmpipe.cli import main
    from llmpipe.train.model import flops_per_token, param_counts, ModelConfig

    args = ["plan", "--params", str(phased / "params.yaml"), "--tokenizer", str(phased / "artifacts/tokenizer"),
            "--throughput", str(phased / "runs/throughput.json"), "--json"]
    assert main(args) == 0
    rep = json.loads(capsys.readouterr().out)
    tps = json.loads((phased / "runs/throughput.json").read_text())["tokens_per_s"]
    cfg = ModelConfig.from_dict(json.loads((phased / "runs/train/config.json").read_text())["model"])
    assert rep["params"] == param_counts(cfg)["total"] and rep["flops_per_token"] == flops_per_token(cfg)
    assert rep["chinchilla_tokens"] == round(20 * rep["params"]) and rep["tokens_per_s_per_device"] == tps
    assert [(r["phase"], r["tokens"]) for r in rep["phases"]] == [("train", 3072), ("anneal", 1536)]
    assert rep["phases"][1]["hours"] == pytest.approx(1536 / tps / 3600)
    assert rep["phases"][1]["cost"] == pytest.approx(1536 / tps / 3600 * 1.0)  # $1/device-hour here
    assert rep["total"]["tokens"] == rep["phases"][1]["cumulative"]["tokens"] == 4608
    # the train stage's report shows the same figures for its phase
    plan = json.loads((phased / "runs/anneal/cost.json").read_text())["plan"]
    assert plan["chinchilla_tokens"] == rep["chinchilla_tokens"] and plan["phase_tokens"] == 1536
    p = yaml.safe_load((phased / "params.yaml").read_text())
    p["plan"] = {"max_cost": rep["total"]["cost"] / 2}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    assert main(["plan", "--params", str(tmp_path / "params.yaml"), *args[3:-1]]) == 1
    out = capsys.readouterr()
    assert "anneal" in out.out and "over plan.max_cost" in out.err


def test_plan_gate_refuses_a_phase_that_takes_the_plan_over_its_cap():
    from llmpipe.params import PlanParams
    from llmpipe.train.cost import CostGateError
    from llmpipe.train.model import ModelConfig
    from llmpipe.train.planner import phase_gate

    cfg = ModelConfig(vocab_size=400, d_model=32, n_layers=2, n_heads=2, n_kv_heads=2, context=32, ffn_hidden=64)
    proj = {"tokens": 1000, "tokens_per_s_per_device": 10.0, "num_devices": 1, "hourly_rate": 36.0,
            "projected_hours": 1000 / 10 / 3600, "projected_cost": 1.0}
    ok = phase_gate(cfg, PlanParams(max_cost=2.0), proj, 1000, "anneal")  # $1 before + $1 in it
    assert ok["plan_cost_so_far"] == pytest.approx(2.0) and ok["plan_tokens_so_far"] == 2000
    with pytest.raises(CostGateError, match=r"the plan up to phase 'anneal' \(2,000 tokens: 1,000 before"):
        phase_gate(cfg, PlanParams(max_cost=1.5), proj, 1000, "anneal")


def test_dvc_generates_phase_stages_only_for_phases_given(tmp_path):
    """`phases: {}` (the default) adds no stage to the real dvc.yaml; two phases add exactly their
    three stages each, named by key (DVC's foreach over a mapping)."""
    import subprocess
    import sys

    from test_train import REPO

    dvc = [str(Path(sys.executable).parent / "dvc")]
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    subprocess.run([*dvc, "init", "--no-scm", "-q"], cwd=tmp_path, check=True)

    def names() -> set[str]:
        out = subprocess.run([*dvc, "stage", "list", "--name-only"], cwd=tmp_path, capture_output=True,
                             text=True, check=True).stdout
        return set(out.split())

    base = names()
    assert {"mix", "train", "eval"} <= base and not any("_phase" in s for s in base)
    p = yaml.safe_load((tmp_path / "params.yaml").read_text())
    p["phases"] = {"anneal": PHASE, "sft": {**PHASE, "after": "anneal"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    assert names() - base == {f"{s}_phase@{k}" for s in ("mix", "train", "eval") for k in ("anneal", "sft")}
