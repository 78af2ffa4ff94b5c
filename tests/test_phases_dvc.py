"""A three-phase plan (the base phase, `anneal`, `polish`) with the real `dvc repro` on the
session's built sample repo: exactly the phase stages run, an edit to the last phase reruns only
its own stages (data: its mix, train, eval; LR: train and eval), the curves and token counts
continue across phases, each stage reads exactly the params it declares, and a phase whose eval
regresses stops the plan."""
from __future__ import annotations

import json

import pytest
import yaml

from conftest import dvc, set_params, stages_ran

pytestmark = pytest.mark.slow

PLAN = {
    "anneal": {"after": "train", "eval": {},
               "data": {"weights": {"c4": 0, "wikipedia": 0.5, "gutenberg": 0.5, "fineweb": 0},
                        "train_tokens": 60000, "val_tokens": 10000},
               "train": {"tokens": 2048, "schedule": "decay"}},
    "polish": {"after": "anneal", "eval": {"max_regression": 0.5},
               "data": {"weights": {"c4": 0.4, "wikipedia": 0.4, "gutenberg": 0, "fineweb": 0.2},
                        "train_tokens": 60000},
               "train": {"tokens": 4096, "batch_tokens": 512, "init": "weights", "average_last": 2}},
}
PHASE_STAGES = {f"{s}_phase@{p}" for s in ("mix", "train", "eval") for p in PLAN}


def tsv_steps(repo, run: str) -> list[int]:
    head, *rows = (repo / f"runs/{run}/live/plots/metrics/train/loss.tsv").read_text().splitlines()
    i = head.split("\t").index("step")
    return [int(r.split("\t")[i]) for r in rows]


def status(repo) -> set[str]:
    return set(json.loads(dvc(repo, "status", "--json").stdout or "{}"))


def test_three_phase_plan_reruns_only_the_phase_that_changed(repo_copy, tmp_path):
    repo = repo_copy
    # fewer val tokens per eval (this test runs seven): the base eval reruns for that, once
    set_params(repo, {"phases": PLAN, "eval.max_tokens": 6000, "eval.min_source_tokens": 1000})
    audit = tmp_path / "audit"
    p = dvc(repo, "repro", env={"LLMPIPE_AUDIT_DIR": str(audit)})
    assert stages_ran(p) == PHASE_STAGES | {"eval"}  # the base mix and train are untouched
    # one curve over the global step: base 8 steps, anneal 2, polish 8 (log_every 2)
    assert tsv_steps(repo, "polish") == list(range(2, 19, 2)) and tsv_steps(repo, "anneal") == list(range(2, 11, 2))
    cost = {r: json.loads((repo / f"runs/{r}/cost.json").read_text()) for r in ("train", "anneal", "polish")}
    assert [c["cumulative_tokens"] for c in cost.values()] == [8192, 8192 + 2048, 8192 + 2048 + 4096]
    assert cost["polish"]["sequences"] == 4096 // 64 and cost["polish"]["padding_tokens"] == 0
    assert cost["polish"]["plan"]["plan_tokens_so_far"] == 14336 and cost["polish"]["plan"]["chinchilla_tokens"] > 0
    mix = json.loads((repo / "reports/phases/anneal/mix.json").read_text())
    assert "share_c4" not in mix and mix["share_wikipedia"] > 0.3  # weight 0: left out
    ev = json.loads((repo / "metrics/phases/polish.json").read_text())
    assert ev["bits_per_byte"] > 0 and ev["last_step"]["bits_per_byte"] > 0  # averaged: both ways
    assert ev["bits_per_byte"] != ev["last_step"]["bits_per_byte"]
    assert json.loads((repo / "runs/polish/config.json").read_text())["train"]["average"]["steps"] == [4, 8]
    assert (repo / "runs/anneal/promotion.json").is_file() and (repo / "reports/phases/polish/samples.md").is_file()
    check_audit(repo, audit)

    # the last phase's mix weights: its mix, train and eval only (dvc status says so first)
    set_params(repo, {"phases.polish.data.weights.c4": 0.6, "phases.polish.data.weights.fineweb": 0.0})
    assert status(repo) == {"mix_phase@polish"}  # what changed; repro then follows its outputs
    assert stages_ran(dvc(repo, "repro")) == {"mix_phase@polish", "train_phase@polish", "eval_phase@polish"}
    # its learning rate: train and eval only
    set_params(repo, {"phases.polish.train.lr": 0.001})
    assert status(repo) == {"train_phase@polish"}
    assert stages_ran(dvc(repo, "repro")) == {"train_phase@polish", "eval_phase@polish"}
    assert dvc(repo, "status").stdout.strip().endswith("Data and pipelines are up to date.")

    # a regression beyond the phase's limit stops the plan: no promotion, polish does not train
    set_params(repo, {"phases.anneal.train.lr": 0.5, "phases.anneal.train.schedule": "constant",
                      "phases.anneal.train.init": "weights", "phases.anneal.eval.max_regression": 0.0})
    p = dvc(repo, "repro", check=False)
    assert p.returncode != 0 and "regression gate failed" in p.stderr, p.stderr[-3000:]
    assert "vs baseline" in p.stderr and "(phases.anneal.eval.max_regression 0.00%)" in p.stderr
    assert "train_phase@anneal" in stages_ran(p) and "train_phase@polish" not in stages_ran(p)
    assert not (repo / "runs/anneal/promotion.json").exists()


def check_audit(repo, audit) -> None:
    """The phase stages read exactly the params they declare (tests/test_pipeline_contract.py's
    rule, for the stages the session's default pipeline does not have)."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    recs = {tuple(r["argv"][1:]): set(r["params"]) for r in map(json.loads, (p.read_text() for p in audit.glob("*.json")))}
    for name in PHASE_STAGES:
        argv = tuple(lock[name]["cmd"].split()[3:])
        read = {k for k in recs[argv] if not k.endswith("[]") and not k.startswith("exec.")}
        declared = set(lock[name]["params"]["params.yaml"])
        assert all(any(k == d or k.startswith(d + ".") for d in declared) for k in read), (name, read, declared)
        assert all(any(k == d or k.startswith(d + ".") for k in read) for d in declared), (name, read, declared)
