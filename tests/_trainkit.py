"""Hermetic training inputs for tests: a tiny SentencePiece model trained in the test, real
prose from Python's own docstrings encoded into train/val memmaps, a tiny model and a params file."""
from __future__ import annotations

import argparse
import collections
import inspect
import json
import pathlib
import textwrap
import unittest
from pathlib import Path

import numpy as np
import yaml

from llmpipe.data.tokenizer import fingerprint, load, train as train_spm

MODULES = [collections, argparse, json, pathlib, textwrap, unittest]  # stdlib prose, offline

TINY_MODEL = {"preset": "tiny", "d_model": 32, "n_layers": 2, "n_heads": 2, "context": 32, "ffn_hidden": 64}
TINY_TRAIN = {"tokens": 256 * 12, "batch_tokens": 256, "micro_batch": 4, "lr": 1e-2, "warmup": 2,
              "eval_every": 4, "eval_batches": 2, "ckpt_every": 3, "keep_ckpts": 2, "log_every": 2,
              "overfit_steps": 25, "sample_tokens": 8, "sample_prompts": ["The"]}


def texts() -> list[str]:
    out = []
    for mod in MODULES:
        for _, obj in inspect.getmembers(mod):
            doc = inspect.getdoc(obj)
            if doc and len(doc) > 80:
                out.append(doc)
    return sorted(set(out))


def make_inputs(root: Path) -> Path:
    """root/{artifacts/tokenizer, data/mix}; returns root."""
    tdir = root / "artifacts" / "tokenizer"
    docs = texts()
    train_spm(iter(docs), tdir, vocab_size=400, character_coverage=1.0)
    tok = load(tdir)
    (tdir / "tokenizer.json").write_text(json.dumps({"vocab_size": tok.vocab_size,
                                                     "fingerprint": fingerprint(tdir / "spm.model")}))
    mix = root / "data" / "mix"
    mix.mkdir(parents=True)
    ids = {"train": [], "val": []}
    for i, d in enumerate(docs):
        ids["val" if i % 10 == 0 else "train"] += tok.encode(d, eos=True)
    for split, arr in ids.items():
        np.asarray(arr, dtype=np.uint16).tofile(mix / f"{split}.bin")
    (mix / "data_meta.json").write_text(json.dumps({"dtype": "uint16", "vocab_size": tok.vocab_size,
                                                    "tokenizer_fingerprint": tok.fingerprint}))
    return root


def write_params(root: Path, model: dict | None = None, train: dict | None = None,
                 cost: dict | None = None, bench: dict | None = None) -> Path:
    p = {"sources": {"c4": {"kind": "c4", "uri": "sample://c4"}}, "tokenizer": {"vocab_size": 400},
         "model": {**TINY_MODEL, **(model or {})}, "train": {**TINY_TRAIN, **(train or {})},
         "cost": {"hourly_rate": 1.0, "max_cost": 100.0, **(cost or {})},
         "bench": {"warmup_steps": 1, "steps": 2, "windows": 1, "matmul_size": 256, **(bench or {})}}
    (root / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    return root / "params.yaml"
