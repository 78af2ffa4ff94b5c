"""End to end on the real `dvc`: what a tokenizer, split or mix param change reruns.

Uses conftest's `built_repo` (the whole pipeline run once on the tiny sample config) and
`repo_copy` (a private copy to edit). The point of the design: a mix sweep never retrains the
tokenizer or re-tokenizes, and a tokenizer change never re-cleans, re-filters or re-dedups.
"""
from __future__ import annotations

import json

import pytest

from conftest import BIN, dvc, run, set_params, stages_ran

pytestmark = pytest.mark.slow

SOURCES = ("c4", "wikipedia", "gutenberg", "fineweb")
TOKENIZE = {f"tokenize@{s}" for s in SOURCES}
UPSTREAM = {f"{st}@{s}" for st in ("ingest", "clean", "filter") for s in SOURCES} | {"dedup"}
AFTER_MIX = {"train", "eval"}  # stages that read data/mix


def test_pipeline_outputs_verify(built_repo):
    for d in [f"data/tokens/{s}" for s in SOURCES] + ["data/mix"]:
        p = run([str(BIN / "llmpipe"), "verify", d, "--tokenizer", "artifacts/tokenizer/spm.model"], built_repo)
        assert p.stdout.startswith(f"OK {d}: uint16, vocab 1000")
    meta = json.loads((built_repo / "data/mix/data_meta.json").read_text())
    assert set(meta["sources"]) == set(SOURCES)
    assert all(meta["sources"][s]["val"]["docs"] >= 1 for s in SOURCES)  # split.min_val_docs
    tok = json.loads((built_repo / "artifacts/tokenizer/tokenizer.json").read_text())
    assert tok["fingerprint"] == meta["tokenizer_fingerprint"] and set(tok["sources"]) == set(SOURCES)


def test_mix_weight_change_reruns_only_mix_and_what_follows(repo_copy):
    set_params(repo_copy, {"mix.weights.c4": 0.1})
    ran = stages_ran(dvc(repo_copy, "repro"))
    assert "mix" in ran and ran <= {"mix"} | AFTER_MIX, ran
    meta = json.loads((repo_copy / "data/mix/data_meta.json").read_text())
    assert meta["params"]["weights"]["c4"] == 0.1


def test_vocab_change_reruns_tokenizer_tokenize_and_mix_not_upstream(repo_copy):
    set_params(repo_copy, {"tokenizer.vocab_size": 1100})
    ran = stages_ran(dvc(repo_copy, "repro"))
    assert {"tokenizer", "mix"} | TOKENIZE <= ran, ran
    assert not ran & UPSTREAM, ran
    meta = json.loads((repo_copy / "data/mix/data_meta.json").read_text())
    assert meta["vocab_size"] == 1100


def test_split_change_reruns_tokenize_not_tokenizer(repo_copy):
    set_params(repo_copy, {"split.seed": 1})
    ran = stages_ran(dvc(repo_copy, "repro", "mix"))
    assert ran == TOKENIZE | {"mix"}, ran
