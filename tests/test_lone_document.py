"""A source of one document (a single book or play, `txt_mode: file`) gets a val split: the last
`split.val_fraction` of its text, from a line start, as nanoGPT's prepare.py cuts its text; and a
mix with no val at all stops with one line naming the params (issue 16: training died with
"cannot mmap an empty file")."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from _tokkit import tokenize, write_source_shards
from _trainkit import TINY_MODEL, TINY_TRAIN
from llmpipe.core.errors import UserError
from llmpipe.data.encode import tail_cut
from llmpipe.data.mix import build_mix
from llmpipe.data.tokenizer import load
from llmpipe.data.tokens import open_tokens
from llmpipe.params import CostParams, ModelParams, TrainParams
from llmpipe.train.loader import TokenWindows
from llmpipe.train.trainer import Paths, train
from test_tokenizer import stdlib_docs, train_tiny

MIX = dict(weights={"play": 1.0}, train_tokens=10**6, val_tokens=0, seed=0, on_short="renormalize",
           tolerance=1.0, max_val_overlap=0.0)


@pytest.fixture(scope="module")
def spm(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("spm"))


def play() -> str:
    """One long text of many lines (stdlib prose, with blank lines)."""
    return "\n\n".join(stdlib_docs()[:60]) + "\n"


@pytest.mark.parametrize("text, fraction, cut", [
    ("aaaa\nbbbb\ncccc\ndddd\n", 0.25, 15),  # the line start at or after 75% of the characters
    ("aaaa\nbbbb\ncccc\ndddd", 0.3, 15),     # no newline ends the text: still a line start
    ("aaaa\nbbbb\ncccc\ndddd\n", 0.01, 15),  # the tail would have no line: the last line start
    ("abcdefghij", 0.2, 8),                  # one line: cut at the character, as nanoGPT does
    ("a", 0.5, 0),                           # too short to cut
])
def test_tail_cut(text, fraction, cut):
    assert tail_cut(text, fraction) == cut
    if cut:
        assert 0 < cut < len(text)


def test_one_document_source_splits_its_tail_and_trains(spm, tmp_path):
    text = play()
    write_source_shards(tmp_path, "play", [[{"id": "play.txt", "text": text}]])
    meta = tokenize(tmp_path, "play", spm, val_fraction=0.1, seed=0, min_val_docs=1)
    assert meta["split"]["lone_document_tail"] == 0.1
    tok = load(spm)
    parts = {}
    for split in ("train", "val"):
        f = open_tokens(tmp_path / "tokens" / "play", split)
        rows = f.doc_table().to_pylist()
        assert len(rows) == 1 and f.tokens[-1] == tok.eos_id
        parts[split] = (rows[0], tok.decode([int(t) for t in f.tokens[:-1]]))
    (train_row, head), (val_row, tail) = parts["train"], parts["val"]
    assert (train_row["id"], val_row["id"]) == ("play.txt", "play.txt#tail")
    assert head + tail == text and head.endswith("\n")  # every character, cut at a line start
    assert 0.09 < len(tail) / len(text) < 0.12
    assert train_row["utf8_bytes"] + val_row["utf8_bytes"] == len(text.encode("utf-8"))

    # end to end: mix (leakage check included) and a few training steps on it
    mix = tmp_path / "mix"
    m = build_mix({"play": tmp_path / "tokens" / "play"}, spm, mix, **MIX)
    assert m["splits"]["val"]["docs"] == 1 and m["splits"]["val"]["tokens"] > 0
    tdir = spm.parent
    (tdir / "tokenizer.json").write_text(json.dumps({"vocab_size": tok.vocab_size, "fingerprint": tok.fingerprint}))
    res = train(Paths(mix, tdir, tmp_path / "throughput.json", tmp_path / "run"), ModelParams(**TINY_MODEL),
                TrainParams(**{**TINY_TRAIN, "max_steps": 3, "overfit_check": False}),
                CostParams(require_benchmark=False, max_cost=100.0))
    assert res["steps"] == 3 and (tmp_path / "run" / "model.safetensors").exists()


def test_no_val_anywhere_is_one_line_naming_the_params(spm, tmp_path):
    text = play()
    write_source_shards(tmp_path, "play", [[{"id": "play.txt", "text": text}]])
    tokenize(tmp_path, "play", spm, val_fraction=0.01, seed=0, min_val_docs=0)  # no forced val: none
    assert open_tokens(tmp_path / "tokens" / "play", "val").doc_table().num_rows == 0
    with pytest.raises(UserError, match=r"mix: no val documents in any source \(play: 1 train, 0 val\); "
                                        r"set split\.min_val_docs >= 1.*split\.val_fraction.*txt_mode"):
        build_mix({"play": tmp_path / "tokens" / "play"}, spm, tmp_path / "mix", **MIX)
    assert not (tmp_path / "mix").exists()


def test_an_empty_token_file_is_a_user_error(tmp_path):
    (tmp_path / "val.bin").write_bytes(b"")
    with pytest.raises(UserError, match=r"val\.bin: 0 tokens, fewer than one window"):
        TokenWindows(tmp_path / "val.bin", np.uint16, 8, 1, 0)
