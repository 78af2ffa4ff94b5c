"""`dvc exp run -S key=value` reruns exactly the stages that declare the key (and what follows).

Every test works on a private copy of the session's built repo (`repo_copy`: outputs and DVC
cache included) and asserts the exact set of stages DVC ran. To keep CI time small, a run that
only has to prove *where* a key is declared stops at a target stage (`dvc exp run ... TARGET`);
the mix, eval and queued train sweeps run to the end of the pipeline.
"""
from __future__ import annotations

import json
import subprocess
import time

import pytest
import yaml

from _warmkit import cache_objects
from conftest import dvc, stages_ran

pytestmark = pytest.mark.slow


def sources(repo) -> list[str]:
    return list(yaml.safe_load((repo / "params.yaml").read_text())["sources"])


def each(repo, stage: str) -> set[str]:
    """The foreach instances of `stage`: {'filter@c4', 'filter@wikipedia', ...}."""
    return {f"{stage}@{s}" for s in sources(repo)}


def exp_run(repo, *overrides: str, target: str | None = None) -> set[str]:
    args = ["exp", "run"]
    for o in overrides:
        args += ["-S", o]
    p = dvc(repo, *args, *([target] if target else []))
    return stages_ran(p)


def locked_param(repo, stage: str, key: str):
    """The value of `key` that `stage` last ran with: the data/params file of the key (or of the
    section holding it) that the stage depends on, as dvc.lock recorded it (the workspace file's
    md5 must be the locked one)."""
    import hashlib
    from conftest import PARAMS_DIR, declared_params
    st = yaml.safe_load((repo / "dvc.lock").read_text())["stages"][stage]
    prefix = max((k for k in declared_params(st) if key == k or key.startswith(k + ".")), key=len)
    path = repo / f"{PARAMS_DIR}{prefix}.json"
    locked = {d["path"]: d["md5"] for d in st["deps"]}[f"{PARAMS_DIR}{prefix}.json"]
    assert hashlib.md5(path.read_bytes()).hexdigest() == locked, f"{stage}: {path} is not what it ran with"
    node = json.loads(path.read_text())
    for part in key[len(prefix) + 1:].split(".") if key != prefix else []:
        node = node[part]
    return node


def read_json(repo, rel: str) -> dict:
    return json.loads((repo / rel).read_text())


def test_filter_threshold_reruns_filters_and_dedup_never_clean(repo_copy):
    repo = repo_copy
    kept = {s: read_json(repo, f"reports/filter/{s}.json")["docs_kept"] for s in sources(repo)}
    ran = exp_run(repo, "filter.global.min_words=120", target="dedup")
    assert ran == each(repo, "filter") | {"dedup"}  # clean@* (signals, MinHash) is reused
    after = {s: read_json(repo, f"reports/filter/{s}.json")["docs_kept"] for s in sources(repo)}
    assert all(after[s] <= kept[s] for s in kept) and sum(after.values()) < sum(kept.values())
    assert locked_param(repo, "filter@c4", "filter.global.min_words") == 120


def test_dedup_threshold_reruns_only_dedup(repo_copy):
    repo = repo_copy
    ran = exp_run(repo, "dedup.threshold=0.5", target="dedup")
    assert ran == {"dedup"}  # never clean@* (signatures) or filter@*
    assert locked_param(repo, "dedup", "dedup.threshold") == 0.5


def test_vocab_size_retrains_tokenizer_and_retokenizes(repo_copy):
    repo = repo_copy
    ran = exp_run(repo, "tokenizer.vocab_size=600", target="mix")
    assert ran == {"tokenizer", "mix"} | each(repo, "tokenize")
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(repo / "artifacts" / "tokenizer" / "spm.model"))
    assert sp.get_piece_size() == 600
    assert read_json(repo, "artifacts/tokenizer/tokenizer.json")["vocab_size"] == 600
    assert locked_param(repo, "tokenizer", "tokenizer.vocab_size") == 600


def test_mix_weight_reruns_mix_train_eval_only(repo_copy):
    repo = repo_copy
    share = read_json(repo, "reports/mix.json")["share_c4"]
    ran = exp_run(repo, "mix.weights.c4=0.1")
    # Not the tokenizer (its own sample weights), not tokenize@*, not bench (no data dep).
    assert ran == {"mix", "train", "eval"}
    assert read_json(repo, "reports/mix.json")["share_c4"] < share
    assert "bits_per_byte" in read_json(repo, "metrics/eval.json")


def test_eval_param_reruns_only_eval(repo_copy):
    repo = repo_copy
    ran = exp_run(repo, "eval.max_new_tokens=4")
    assert ran == {"eval"}
    assert locked_param(repo, "eval", "eval.max_new_tokens") == 4


def wait_for_queue(repo, timeout: float = 1500) -> None:
    """Block until `dvc queue status` shows nothing queued or running."""
    deadline = time.monotonic() + timeout
    while True:
        out = dvc(repo, "queue", "status").stdout
        if not any(state in out for state in ("Queued", "Running")):
            return
        assert time.monotonic() < deadline, f"queue still busy after {timeout:.0f}s:\n{out}"
        time.sleep(5)


def dir_entries(repo, dir_hash: str) -> set[str]:
    """Object hashes listed in a cached directory manifest (`<md5>.dir`)."""
    path = repo / ".dvc" / "cache" / "files" / "md5" / dir_hash[:2] / dir_hash[2:]
    return {entry["md5"] for entry in json.loads(path.read_text())}


def test_queued_train_sweep_reuses_tokens_and_records_metrics(repo_copy):
    """Two queued experiments (a grid over train.lr): each runs train + eval only, shares every
    upstream output with the baseline, and adds nothing but train outputs to the cache."""
    repo = repo_copy
    cache_before = cache_objects(repo)
    # overfit_check off: it is a pre-flight sanity run, not part of what this sweep compares.
    dvc(repo, "exp", "run", "--queue", "-S", "train.lr=0.001,0.01", "-S", "train.overfit_check=false")
    queued = dvc(repo, "queue", "status").stdout
    assert queued.count("Queued") == 2, queued
    dvc(repo, "queue", "start")
    try:
        wait_for_queue(repo)
    finally:
        dvc(repo, "queue", "stop", check=False)

    shown = json.loads(dvc(repo, "exp", "show", "--json").stdout)
    baseline = next(e for e in shown if e["rev"] != "workspace")
    exps = baseline["experiments"] or []
    assert len(exps) == 2, json.dumps(shown)[:3000]
    base_outs = baseline["data"]["outs"]
    # data/params holds the params themselves (stage `params`): it differs in each experiment
    upstream = [p for p in base_outs if p.startswith(("data/", "artifacts/")) and p != "data/params"]
    assert any(p.startswith("data/tokens/") for p in upstream)

    lrs, train_objects = set(), set()
    for exp in exps:
        run = exp["revs"][0]
        name, data = run["name"], run["data"]
        assert data is not None and run.get("error") is None, run
        logs = dvc(repo, "queue", "logs", name).stdout
        assert stages_ran(subprocess.CompletedProcess([], 0, logs, "")) == {"train", "eval"}, logs
        lrs.add(data["params"]["params.yaml"]["data"]["train"]["lr"])
        metrics = data["metrics"]["metrics/eval.json"]["data"]
        assert metrics["bits_per_byte"] > 0
        # Same tokens, tokenizer and mix as the baseline: nothing upstream was rebuilt.
        for p in upstream:
            assert data["outs"][p]["hash"] == base_outs[p]["hash"], p
        for p, out in data["outs"].items():
            if p.startswith(("runs/train/", "data/params")) and out["hash"]:
                train_objects.add(out["hash"])
                if out["hash"].endswith(".dir"):
                    train_objects |= dir_entries(repo, out["hash"])
    assert lrs == {0.001, 0.01}
    # Cache entries: the sweep added only train outputs (model, config, checkpoints) and the
    # params files of the keys it set (data/params/train.json, train.lr.json, ...).
    added = cache_objects(repo) - cache_before
    assert added and added <= train_objects, added - train_objects
