"""mix: weights, on_short, val from val splits only, determinism, leakage check."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from llmpipe.data.leakage import val_overlap
from llmpipe.data.mix import build_mix, fill, pick, train_targets
from llmpipe.core.seeds import unit_hash
from llmpipe.data.tokenizer import load
from llmpipe.data.tokens import open_tokens, verify_dir
from _tokkit import texts as texts_of, tokenize, write_source_shards
from test_tokenizer import train_tiny

DEFAULTS = dict(val_tokens=4000, seed=0, on_short="repeat", tolerance=0.05, max_val_overlap=1.0)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mix")
    train_tiny(root)
    for s in ("a", "b"):  # sharded token directories (test_tokenizer.SHARDS shards each)
        tokenize(root, s, root / "tok/spm.model", val_fraction=0.2)
    return root


def avail(root: Path, s: str, split: str = "train") -> int:
    return json.loads((root / f"tokens/{s}/meta.json").read_text())["splits"][split]["tokens"]


def mix(root: Path, out: Path, **kw) -> dict:
    args = {**DEFAULTS, **kw}
    return build_mix({s: root / f"tokens/{s}" for s in ("a", "b")}, root / "tok/spm.model", out, **args)


def doc_tokens(d: Path, split: str) -> dict[str, list[np.ndarray]]:
    tf = open_tokens(d, split)
    out: dict = {}
    for i, (src, doc_id) in enumerate(zip(tf.doc_table().column("source").to_pylist(),
                                          tf.doc_table().column("id").to_pylist())):
        out.setdefault(f"{src}:{doc_id}", []).append(np.asarray(tf.doc(i)))
    return out


def test_fill_and_targets():
    lens = np.array([10, 10, 10, 10])
    assert [len(fill(lens, t)) for t in (0, 4, 5, 6, 10, 14, 16, 40, 99)] == [0, 0, 0, 1, 1, 1, 2, 4, 4]
    assert [len(fill(lens, t, reach=True)) for t in (0, 1, 10, 11, 40, 99)] == [0, 1, 1, 2, 4, 4]
    books = np.array([20, 28, 5, 13, 7])
    assert fill(books, 48).tolist() == [0, 1]        # prefix
    assert fill(books, 40).tolist() == [0, 2, 3]     # 28 skipped, 5 and 13 fit: 38
    assert fill(books, 39).tolist() == [0, 2, 3]     # 38, then 7 would overshoot by 6 > 1
    assert fill(books, 44).tolist() == [0, 2, 3, 4]  # 38 + 7 = 45: overshoot 1 < gap 6
    assert fill(books, 24).tolist() == [0, 2]        # 20, gap 4: 5 overshoots by 1 < 4: taken
    assert fill(books, 22).tolist() == [0]           # 20, gap 2: every overshoot is >= 3
    assert train_targets({"a": 0.5, "b": 0.5}, {"a": 100, "b": 10}, 100, "repeat") == {"a": 50, "b": 50}
    assert train_targets({"a": 0.5, "b": 0.5}, {"a": 100, "b": 10}, 100, "renormalize") == {"a": 90, "b": 10}
    assert train_targets({"a": 0.5, "b": 0.25, "c": 0.25}, {"a": 10, "b": 100, "c": 20}, 100,
                         "renormalize") == {"a": 10, "c": 20, "b": 70}
    with pytest.raises(ValueError, match="source 'b' has 10 train tokens, its share needs 50"):
        train_targets({"a": 0.5, "b": 0.5}, {"a": 100, "b": 10}, 100, "fail")
    idx, reps = pick(np.array([5, 5, 5]), 37, np.random.default_rng(0), repeat=True)
    assert reps == 2 and len(idx) == 7 and sorted(idx[:3].tolist()) == [0, 1, 2]


def test_weights_honoured_within_one_document(root, tmp_path):
    total = int(0.8 * min(avail(root, "a"), avail(root, "b")) / 0.7)
    meta = mix(root, tmp_path / "m", weights={"a": 0.7, "b": 0.3}, train_tokens=total)
    for s, w in (("a", 0.7), ("b", 0.3)):
        r = meta["sources"][s]["train"]
        longest = int(np.diff(open_tokens(root / f"tokens/{s}", "train").offsets.astype(np.int64)).max())
        assert r["target_tokens"] == round(total * w)
        assert abs(r["tokens"] - r["target_tokens"]) <= longest
        assert r["repeats"] == 0 and r["unique_docs"] == r["docs"]
    assert meta["splits"]["train"]["tokens"] == sum(meta["sources"][s]["train"]["tokens"] for s in "ab")
    verify_dir(tmp_path / "m", root / "tok/spm.model")


def test_mix_copies_whole_documents_and_val_comes_from_val_splits(root, tmp_path):
    mix(root, tmp_path / "m", weights={"a": 1, "b": 1}, train_tokens=min(avail(root, "a"), avail(root, "b")))
    for split in ("train", "val"):
        src_docs = {**{f"a:{k}": v for k, v in doc_tokens(root / "tokens/a", split).items()},
                    **{f"b:{k}": v for k, v in doc_tokens(root / "tokens/b", split).items()}}
        src_docs = {k.split(":", 1)[0] + ":" + k.split(":", 2)[2]: v for k, v in src_docs.items()}
        for key, copies in doc_tokens(tmp_path / "m", split).items():
            assert key in src_docs, f"{key} in mix {split} is not a {split} document of its source"
            assert all(np.array_equal(c, src_docs[key][0]) for c in copies)
    train_ids = set(doc_tokens(tmp_path / "m", "train"))
    assert not train_ids & set(doc_tokens(tmp_path / "m", "val"))
    meta = json.loads((tmp_path / "m/data_meta.json").read_text())
    for s in "ab":  # val reaches its target: at least the target, less than one more document
        v = meta["sources"][s]["val"]
        longest = int(np.diff(open_tokens(root / f"tokens/{s}", "val").offsets.astype(np.int64)).max())
        assert v["target_tokens"] == 2000 and 2000 <= v["tokens"] < 2000 + longest
    docs = pq.read_table(tmp_path / "m/val.docs.parquet")
    assert meta["splits"]["val"]["utf8_bytes"] == sum(docs.column("utf8_bytes").to_pylist())


def short_long(root: Path) -> tuple[str, str]:
    """(smaller, larger) source by train tokens."""
    return tuple(sorted("ab", key=lambda s: (avail(root, s), s)))  # type: ignore[return-value]


def test_on_short_repeat(root, tmp_path):
    s, o = short_long(root)
    need = 2 * avail(root, s)  # s's 3/4 share is 1.5x what it has; o's 1/4 fits
    meta = mix(root, tmp_path / "m", weights={s: 3, o: 1}, train_tokens=need, on_short="repeat")
    r = meta["sources"][s]["train"]
    assert r["repeats"] == 1 and r["unique_docs"] == len(open_tokens(root / f"tokens/{s}", "train"))
    assert r["relative_miss"] <= 0.05 and r["tokens"] > r["available_tokens"]
    assert meta["sources"][o]["train"]["repeats"] == 0


def test_on_short_renormalize(root, tmp_path):
    s, o = short_long(root)
    need = 2 * avail(root, s)
    meta = mix(root, tmp_path / "m", weights={s: 3, o: 1}, train_tokens=need, on_short="renormalize")
    a, b = meta["sources"][o]["train"], meta["sources"][s]["train"]
    assert b["tokens"] == b["available_tokens"] == b["target_tokens"] and b["repeats"] == 0
    assert a["target_tokens"] == need - b["available_tokens"]
    assert a["repeats"] == 0 and abs(a["tokens"] + b["tokens"] - need) <= 0.05 * need


def test_on_short_fail(root, tmp_path):
    s, o = short_long(root)
    with pytest.raises(ValueError, match=f"source '{s}' has .* train tokens.*on_short: fail"):
        mix(root, tmp_path / "m", weights={s: 3, o: 1}, train_tokens=2 * avail(root, s), on_short="fail")
    assert not (tmp_path / "m").exists()


def test_tolerance_fails_when_documents_are_too_coarse(root, tmp_path):
    with pytest.raises(ValueError, match="mix.tolerance"):
        mix(root, tmp_path / "m", weights={"a": 1, "b": 1}, train_tokens=100, tolerance=0.01)
    assert not (tmp_path / "m").exists()


def test_zero_weight_leaves_a_source_out_and_val_tokens_zero_takes_all(root, tmp_path):
    meta = mix(root, tmp_path / "m", weights={"a": 1, "b": 0}, train_tokens=5000, val_tokens=0)
    assert set(meta["sources"]) == {"a"}
    assert meta["splits"]["val"]["tokens"] == avail(root, "a", "val")


def test_mix_is_deterministic_and_seeded(root, tmp_path):
    kw = dict(weights={"a": 2, "b": 1}, train_tokens=20_000, tolerance=1.0)
    mix(root, tmp_path / "m1", **kw)
    mix(root, tmp_path / "m2", **kw)
    mix(root, tmp_path / "m3", **{**kw, "seed": 1})
    for name in ("train.bin", "train.idx", "val.bin", "data_meta.json"):
        assert (tmp_path / "m1" / name).read_bytes() == (tmp_path / "m2" / name).read_bytes()
    assert (tmp_path / "m1/train.bin").read_bytes() != (tmp_path / "m3/train.bin").read_bytes()


def ids_landing_in(split: str, prefix: str, n: int, fraction: float = 0.5) -> list[str]:
    """n ids `prefix-K` whose id hash sends them to `split` (seed 0)."""
    want_val = split == "val"
    return [i for i in (f"{prefix}-{k}" for k in range(1000)) if (unit_hash(0, i) < fraction) == want_val][:n]


def word_ngrams(text: str, n: int = 13) -> set:
    w = text.split()
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


def test_leakage_check_finds_planted_copies(root, tmp_path):
    """Copy 3 train documents of `a` into `b`'s val split: the check must name them, and mix fail."""
    tok = load(root / "tok/spm.model")
    texts = texts_of(root / "clean/a")
    a_train = open_tokens(root / "tokens/a", "train").doc_table().column("id").to_pylist()
    leaked = [t for t in a_train if len(texts[t].split()) > 40][:3]
    copies = ids_landing_in("val", "copy", 3)
    fresh = ids_landing_in("train", "fresh", 4)
    rows = [{"id": c, "source": "b", "text": "Preface. " + texts[i]} for c, i in zip(copies, leaked)]
    rows += [{"id": f, "source": "b", "text": f"page {k} of entirely fresh words " * 40} for k, f in enumerate(fresh)]
    write_source_shards(tmp_path, "b", [rows[:2], rows[2:]])
    shutil.copytree(root / "tokens/a", tmp_path / "tokens/a")
    tokenize(tmp_path, "b", root / "tok/spm.model", val_fraction=0.5)
    tr, va = open_tokens(tmp_path / "tokens/a", "train"), open_tokens(tmp_path / "tokens/b", "val")
    rep = val_overlap({"a": (tr, np.arange(len(tr)))}, {"b": (va, np.arange(len(va)))}, tok)
    assert rep["val_docs"] == 3 and rep["val_docs_overlapping"] == 3 and rep["fraction"] == 1.0
    assert sorted(rep["examples"]) == sorted(f"b:{c}" for c in copies)
    everything = sum(json.loads((tmp_path / f"tokens/{s}/meta.json").read_text())["splits"]["train"]["tokens"]
                     for s in "ab")
    with pytest.raises(ValueError, match=r"val documents .* share a 13-word n-gram .* e\.g\. \['.*b:copy-"):
        build_mix({s: tmp_path / f"tokens/{s}" for s in "ab"}, root / "tok/spm.model", tmp_path / "m",
                  **{**DEFAULTS, "max_val_overlap": 0.01, "on_short": "renormalize"},
                  weights={"a": 1, "b": 1}, train_tokens=everything)
    assert not (tmp_path / "m").exists()


def test_token_ngrams_agree_with_text_ngrams(root):
    """On real prose, the token-level 13-word n-gram check finds exactly the val docs that a
    whitespace-split text check finds."""
    tok = load(root / "tok/spm.model")
    texts = {**texts_of(root / "clean/a"), **texts_of(root / "clean/b")}
    tr = {s: open_tokens(root / f"tokens/{s}", "train") for s in "ab"}
    va = {s: open_tokens(root / f"tokens/{s}", "val") for s in "ab"}
    rep = val_overlap({s: (t, np.arange(len(t))) for s, t in tr.items()},
                      {s: (v, np.arange(len(v))) for s, v in va.items()}, tok, examples=10**6)
    train_grams = set().union(*(word_ngrams(texts[i]) for t in tr.values()
                                for i in t.doc_table().column("id").to_pylist()))
    expected = sorted(f"{s}:{i}" for s, v in va.items() for i in v.doc_table().column("id").to_pylist()
                      if word_ngrams(texts[i]) & train_grams)
    assert sorted(rep["examples"]) == expected
    assert rep["val_docs"] == len(va["a"]) + len(va["b"]) and rep["sampling_rate"] == 1.0


TEMPLATE = ("It lies approximately five kilometres north of the town and ninety kilometres west of the "
            "regional capital, in a valley of the river, and its population was recorded in the last census.")


def test_leakage_ignores_boilerplate_ngrams_but_still_flags_a_copied_document(root, tmp_path):
    """Template articles (one shared 20-word sentence in 12 train and 3 val documents, the rest of
    each its own) share 13-grams with train but are not leakage; a val document copied from a
    train document is. The document-frequency cut and the share rule each tell them apart."""
    tok = load(root / "tok/spm.model")
    texts = texts_of(root / "clean/a")
    a_train = open_tokens(root / "tokens/a", "train").doc_table().column("id").to_pylist()
    leaked = next(t for t in a_train if len(texts[t].split()) > 60)
    vocab = sorted({w for t in texts.values() for w in t.split() if w.isalpha()})
    rng = np.random.default_rng(0)

    def stub(k: int) -> str:
        own = " ".join(vocab[i] for i in rng.integers(0, len(vocab), 80))
        return f"Village {k} is a place. {TEMPLATE} {own}."
    train_ids, val_ids = ids_landing_in("train", "stub", 12), ids_landing_in("val", "stub", 3)
    copy = ids_landing_in("val", "copy", 1)[0]
    rows = [{"id": i, "source": "b", "text": stub(k)} for k, i in enumerate(train_ids + val_ids)]
    rows.append({"id": copy, "source": "b", "text": texts[leaked]})
    write_source_shards(tmp_path, "b", [rows[:8], rows[8:]])
    shutil.copytree(root / "tokens/a", tmp_path / "tokens/a")
    tokenize(tmp_path, "b", root / "tok/spm.model", val_fraction=0.5)
    train = {s: open_tokens(tmp_path / f"tokens/{s}", "train") for s in "ab"}
    va = open_tokens(tmp_path / "tokens/b", "val")
    assert sorted(va.doc_table().column("id").to_pylist()) == sorted(val_ids + [copy])

    def flagged(**kw) -> list[str]:
        rep = val_overlap({s: (t, np.arange(len(t))) for s, t in train.items()}, {"b": (va, np.arange(len(va)))},
                          tok, examples=100, **kw)
        assert rep["val_docs"] == 4 and rep["val_docs_overlapping"] == len(rep["examples"])
        return sorted(rep["examples"])
    assert flagged() == sorted(f"b:{i}" for i in val_ids + [copy])          # GPT-3's rule: any shared 13-gram
    assert flagged(max_doc_freq=10) == [f"b:{copy}"]                           # the template is in 12 train docs
    assert flagged(max_doc_freq=12) == sorted(f"b:{i}" for i in val_ids + [copy])
    assert flagged(min_share=0.5) == [f"b:{copy}"]                             # a stub shares ~10% of its 13-grams
    assert flagged(max_doc_freq=10, min_share=0.5) == [f"b:{copy}"]
    rep = val_overlap({s: (t, np.arange(len(t))) for s, t in train.items()}, {"b": (va, np.arange(len(va)))},
                      tok, max_doc_freq=10)
    assert rep["train_ngrams_ignored_as_boilerplate"] > 0 and rep["max_doc_freq"] == 10
