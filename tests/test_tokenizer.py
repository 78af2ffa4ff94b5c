"""Tokenizer: deterministic sample, training, fixed special ids, round trip, stats.

Tiny tokenizers (vocab 400) trained here on a few hundred KB of stdlib docstrings; the helpers
(`stdlib_docs`, `write_corpus`, `train_tiny`) are shared with test_tokens.py and test_mix.py.
"""
from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from _cleankit import docstrings
from _tokkit import split_evenly, write_source_shards
from llmpipe.data.minhash import exact_hash
from llmpipe.data.tokenizer import (MAX_SENTENCE_BYTES, SPECIAL_IDS, SentenceFeed, build_tokenizer,
                                    iter_pinned_sample, load, pinned_shards, sample_budgets)
from llmpipe.core.seeds import unit_hash

MODULES = ["json", "re", "collections", "argparse", "textwrap", "typing", "dataclasses", "pathlib",
           "subprocess", "functools", "itertools", "string", "random", "logging", "decimal", "fractions"]


@lru_cache(maxsize=1)
def stdlib_docs() -> tuple[str, ...]:
    """Distinct docstrings (>= 200 chars) of some stdlib modules: real English prose with code."""
    return tuple(docstrings(tuple(MODULES)))


SHARDS = 3  # clean shards per source in the shared corpus


def write_corpus(root: Path, sources=("a", "b"), batch_rows: int = 10, n_shards: int = SHARDS) -> dict[str, Path]:
    """One source each: docs dealt round-robin, cut into `n_shards` clean shards (small row groups,
    all-keep filter and dedup masks) under root/{clean,filtered,dedup}/SRC; returns the clean dirs."""
    docs = stdlib_docs()
    paths = {}
    for i, src in enumerate(sources):
        rows = [{"id": f"{src}-{j}", "source": src, "text": t} for j, t in enumerate(docs[i::len(sources)])]
        paths[src] = write_source_shards(root, src, split_evenly(rows, n_shards), row_group_size=batch_rows)[0]
    return paths


def train_tiny(root: Path, vocab_size: int = 400, **kw) -> Path:
    paths = write_corpus(root)
    args = dict(vocab_size=vocab_size, sample_chars=150_000, sample_weights={}, seed=0,
                character_coverage=0.9995)
    args.update(kw)
    build_tokenizer(root / "clean", sorted(paths), root / "tok", **args)
    return root / "tok" / "spm.model"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("tok"))


def test_round_trip_on_the_sample(tiny):
    tok = load(tiny)
    tricky = "  two  spaces,\ttab\n\nblank line\r\n digits 12345 — é 日本語 🙂 trailing  "
    for text in [*stdlib_docs(), tricky]:
        assert tok.decode(tok.encode(text)) == text
    ids = tok.encode("x 2024")
    assert [tok.piece(i) for i in ids[-4:]] == ["2", "0", "2", "4"]  # split_digits
    assert tok.decode(tok.encode("abc", bos=True, eos=True)) == "abc"
    assert tok.encode("a\nb")[1] == tok.sp.piece_to_id("\n")  # newline is its own piece, not a byte


def test_special_ids_and_tokenizer_json(tiny):
    tok = load(tiny)
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
    assert tok.vocab_size == 400
    info = json.loads((tiny.parent / "tokenizer.json").read_text())
    assert info["special_ids"] == SPECIAL_IDS == {"pad": 0, "unk": 1, "bos": 2, "eos": 3}
    assert info["fingerprint"] == hashlib.sha256(tiny.read_bytes()).hexdigest() == tok.fingerprint
    assert info["vocab_size"] == 400 and set(info["sources"]) == {"a", "b"}
    for s in info["sources"].values():
        assert s["tokens"] > s["words"] > 0
        assert s["fertility"] == round(s["tokens"] / s["words"], 4)
        assert s["bytes_per_token"] == round(s["utf8_bytes"] / s["tokens"], 4)
        assert 0 <= s["byte_fallback_share"] < 0.05
    assert info["sample"]["sentences_skipped"] == 0 and info["sample"]["docs"] > 0
    assert (tiny.parent / "spm.vocab").read_text(encoding="utf-8").splitlines()[3].startswith("</s>")


def test_training_is_deterministic(tmp_path, tiny):
    again = train_tiny(tmp_path)
    assert again.read_bytes() == tiny.read_bytes()
    other = train_tiny(tmp_path / "s1", seed=1, sample_chars=60_000)
    assert other.read_bytes() != tiny.read_bytes()  # a different sample gives another model


def test_sample_budgets_follow_tokenizer_weights():
    assert sample_budgets(["a", "b"], {}, 1000) == {"a": 500, "b": 500}
    assert sample_budgets(["a", "b", "c"], {"a": 3, "b": 1}, 1000) == {"a": 750, "b": 250}
    with pytest.raises(ValueError, match="sample_weights"):
        sample_budgets(["a"], {"a": 0}, 1000)


def first_copies(texts) -> list[str]:
    """`texts` in order, each exact copy (same exact_hash) after its first left out."""
    seen: set = set()
    return [t for t in texts if not (exact_hash(t) in seen or seen.add(exact_hash(t)))]


def pinned_sample(root: Path, src: str, budget: int, seed: int, count: int = SHARDS) -> list[str]:
    picked = pinned_shards(root / "clean", [src], count)[src]
    return list(iter_pinned_sample(root / "clean" / src, picked, budget, seed, sum(p["chars"] for p in picked)))


def test_iter_pinned_sample_is_deterministic_and_bounded(tmp_path):
    write_corpus(tmp_path)
    first = pinned_sample(tmp_path, "a", 20_000, seed=0)
    assert first == pinned_sample(tmp_path, "a", 20_000, seed=0)
    assert first != pinned_sample(tmp_path, "a", 20_000, seed=1)
    assert 20_000 <= sum(map(len, first)) < 20_000 + max(map(len, first))
    everything = pinned_sample(tmp_path, "a", 10**9, seed=0)
    assert everything == first_copies(stdlib_docs()[0::2])  # budget above the corpus: all of it


def test_iter_pinned_sample_takes_clean_text_whatever_filter_decided_skipping_copies_and_unpinned_shards(tmp_path):
    """The sample is drawn from the clean shards, not through filter's masks: a threshold sweep
    must not retrain the tokenizer (and re-encode every token shard)."""
    docs = [[{"id": f"s{k}-{j}", "text": f"shard {k} document {j} " * 5} for j in range(6)] for k in range(3)]
    docs[1][2]["text"] = docs[0][4]["text"]  # an exact copy in a later shard
    dropped = np.array([0, 3, 0, 0, 7, 0], np.int16)  # filter dropped rows 1 and 4 of shard 0
    write_source_shards(tmp_path, "s", docs, filtered={"part-00.00000": dropped})
    got = pinned_sample(tmp_path, "s", 10**9, seed=0, count=2)
    want = [d["text"] for k in (0, 1) for j, d in enumerate(docs[k]) if not (k == 1 and j == 2)]
    assert got == want  # shard 1's row 2 is a copy of shard 0's row 4: taken once; filter is ignored
    write_source_shards(tmp_path / "unfiltered", "s", docs)
    assert pinned_sample(tmp_path / "unfiltered", "s", 10**9, seed=0, count=2) == got
    picked = pinned_shards(tmp_path / "clean", ["s"], 2)["s"]
    assert [p["name"] for p in picked] == ["part-00.00000", "part-01.00000"]
    assert picked[0]["chars"] == sum(len(d["text"]) for d in docs[0])
    docs[2][0]["text"] = docs[1][0]["text"].upper()  # the same text once normalised
    write_source_shards(tmp_path / "dup", "s", docs)  # nothing filtered: every shard pinned
    every = [d["text"] for sh in docs for d in sh]
    assert exact_hash(docs[2][0]["text"]) == exact_hash(docs[1][0]["text"])
    got = pinned_sample(tmp_path / "dup", "s", 10**9, seed=0)
    assert got == first_copies(every) == every[:8] + every[9:12] + every[13:]  # rows 1:2 and 2:0 left out


def test_sentence_feed_cuts_long_lines_and_counts_them():
    feed = SentenceFeed(max_bytes=400)  # 100 characters
    long = " ".join(["word"] * 100)     # 499 characters
    out = list(feed(["short line\n\n" + long + "\n", "x" * 250]))
    assert out[0] == "short line"
    assert "".join(out[1:-3]) == long and "".join(out[-3:]) == "x" * 250
    assert all(len(s.encode()) <= 400 for s in out)
    assert feed.cut_lines == 2 and feed.sentences == len(out) and feed.docs == 2
    assert MAX_SENTENCE_BYTES > 4192  # above SentencePiece's silent-skip default


def test_load_refuses_other_special_ids(tmp_path):
    spm.SentencePieceTrainer.train(sentence_iterator=iter(stdlib_docs()[:50]), model_prefix=str(tmp_path / "m"),
                                   vocab_size=300, model_type="bpe", minloglevel=2)  # default ids: unk=0
    with pytest.raises(ValueError, match="special ids"):
        load(tmp_path / "m.model")
    with pytest.raises(FileNotFoundError, match="dvc repro tokenizer"):
        load(tmp_path / "nope.model")


def test_unit_hash_is_stable():
    # sha256("0:doc-1") read big-endian: pinned so a refactor cannot silently move documents
    digest = hashlib.sha256(b"0:doc-1").digest()
    assert unit_hash(0, "doc-1") == int.from_bytes(digest[:8], "big") / 2.0**64
    assert 0 <= unit_hash(7, "x") < 1 and unit_hash(7, "x") != unit_hash(8, "x")


@pytest.mark.parametrize("kw, message", [
    (dict(vocab_size=300), r"tokenizer.vocab_size: 300 is too small for this sample: SentencePiece needs >= (\d+) "
                           r"\(\d+ distinct characters at character_coverage 0.9995 \+ 265 fixed pieces\)"),
    (dict(vocab_size=60000), r"tokenizer.vocab_size: 60000 is more pieces than a sample of [\d,]+ characters "
                             r"can make \(at most \d+\); lower tokenizer.vocab_size"),
    (dict(vocab_size=400, sample_chars=10), r"tokenizer: the training sample is empty \(0 documents, no "
                                            r"non-blank line\); check tokenizer.sample_chars"),
])
def test_sizes_sentencepiece_refuses_name_the_key_and_the_number(tmp_path, kw, message):
    with pytest.raises(ValueError, match=message) as e:
        train_tiny(tmp_path, **kw)
    assert "INTERNAL" not in str(e.value) and not (tmp_path / "tok" / "spm.model").exists()
    if kw["vocab_size"] == 300:  # the number it names is enough
        need = int(re.search(message, str(e.value)).group(1))
        assert load(train_tiny(tmp_path / "ok", vocab_size=need)).vocab_size == need


def test_huge_weights_do_not_overflow_the_shares():
    assert sample_budgets(["a", "b"], {"a": 1e308, "b": 1e308}, 1000) == {"a": 500, "b": 500}
