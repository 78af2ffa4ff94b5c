"""Stage `params`: params.yaml as one small file per key (data/params/KEY.json), which the other
stages depend on instead of DVC params lists (so a no-op parses params.yaml once, not once per
stage). An edit reruns exactly the stages that read the changed key; a comment edit reruns
nothing; `dvc exp show` still sees every param."""
from __future__ import annotations

import json
import subprocess
import sys

import yaml

from conftest import REPO_ROOT, declared_params, dvc, stages_ran
from stages.params import encode, slices


def test_slices_are_every_key_down_to_three_levels_as_canonical_json():
    tree = {"train": {"lr": 6e-4, "opt": {"betas": [0.9, 0.95], "deep": {"x": 1}}},
            "sources": {"c4": {"kind": "c4"}}, "bad key": 1, "mix": {"a.b": 2}}
    got = dict(slices(tree))
    assert set(got) == {"train", "train.lr", "train.opt", "train.opt.betas", "train.opt.deep",
                        "sources", "sources.c4", "sources.c4.kind", "mix"}
    assert got["train.opt.deep"] == {"x": 1}                      # the fourth level lives in its parent
    assert encode(got["train"]) == '{"lr":0.0006,"opt":{"betas":[0.9,0.95],"deep":{"x":1}}}\n'
    assert encode({"b": 1, "a": None}) == encode({"a": None, "b": 1})  # key order never matters


def test_every_params_dep_in_dvc_yaml_is_a_key_of_params_yaml():
    """What each stage names under data/params/ exists for the shipped params.yaml (foreach
    templates resolved over its sources), and no stage keeps a DVC params list but `params`."""
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    keys = {k for k, _ in slices(params)}
    for name, st in stages.items():
        body = st.get("do", st)
        assert ("params" in body) == (name == "params"), name
        items = [(k, v) for k, v in params["sources"].items()] if st.get("foreach") == "${sources}" else [(None, {})]
        if st.get("foreach") == "${phases}":
            continue   # no phases by default: tests/test_phases_dvc.py runs them
        for key, item in items:
            for d in declared_params(body):
                d = d.replace("${key}", key or "")
                for field, value in item.items():
                    d = d.replace("${item.%s}" % field, str(value))
                assert d in keys, f"{name}: depends on data/params/{d}.json, not a key of params.yaml"
    assert stages["params"]["params"] == [{"params.yaml": None}]   # the whole file, for dvc exp show


def test_a_bad_value_fails_in_the_params_stage_with_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text("sources:\n  c4: {kind: c4, uri: 'sample://c4'}\ntrain:\n  lr: -1\n")
    p = subprocess.run([sys.executable, "-m", "stages.params", "--params", str(tmp_path / "params.yaml"),
                        "--out", str(tmp_path / "out")], cwd=REPO_ROOT, capture_output=True, text=True)
    assert p.returncode == 2 and "train.lr" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "out").exists()


def test_an_edit_reruns_the_stages_of_its_key_and_a_comment_reruns_nothing(repo_copy):
    repo = repo_copy
    before = {p.name: p.read_bytes() for p in (repo / "data/params").iterdir()}
    text = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text("# a comment only\n" + text)
    p = dvc(repo, "repro")
    assert stages_ran(p) == set() and "Running stage 'params'" not in p.stdout + p.stderr
    (repo / "params.yaml").write_text(text.replace("max_new_tokens:", "max_new_tokens: 5 #", 1)
                                      if "max_new_tokens:" in text else text)
    p = dvc(repo, "repro")
    assert "Running stage 'params'" in p.stdout + p.stderr and stages_ran(p) == {"eval"}
    after = {p.name: p.read_bytes() for p in (repo / "data/params").iterdir()}
    changed = {k for k in before if before[k] != after.get(k)}
    assert changed == {"eval.json", "eval.max_new_tokens.json"} and json.loads(after["eval.max_new_tokens.json"]) == 5
    shown = json.loads(dvc(repo, "exp", "show", "--json").stdout)[0]["data"]["params"]["params.yaml"]["data"]
    assert shown["eval"]["max_new_tokens"] == 5 and "lr" in shown["train"]   # every param, from one stage
