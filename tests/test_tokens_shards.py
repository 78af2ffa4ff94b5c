"""Sharded token directories: a source's shards read as their concatenation, and a rerun
re-encodes only the shards whose inputs changed (tokenize, tokenizer), on real data.

Inputs are written by `_tokkit.write_source_shards` (real clean shards, masks and manifests);
the tokenizer is test_tokenizer's tiny one, trained once for the module.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from _tokkit import shard_names, tokenize, write_source_shards
from llmpipe.core.seeds import unit_hash
from llmpipe.data.tokenizer import build_tokenizer, load
from llmpipe.data.tokens import Concat, VerifyError, open_tokens, verify_dir
from test_tokenizer import stdlib_docs, train_tiny

SPLITS = ("train", "val")
VAL = 0.3


@pytest.fixture(scope="module")
def spm(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("spm"))


def docs(prefix: str, n: int, start: int = 0) -> list[dict]:
    """n documents of real prose (stdlib docstrings), ids PREFIX-K."""
    texts = stdlib_docs()
    return [{"id": f"{prefix}-{k}", "text": texts[k % len(texts)]} for k in range(start, start + n)]


def ids_by_hash(prefix: str, n: int, keep, seed: int = 0) -> list[str]:
    """The first n ids PREFIX-K whose unit_hash(seed, id) satisfies keep(h)."""
    out = []
    k = 0
    while len(out) < n:
        i = f"{prefix}-{k}"
        if keep(unit_hash(seed, i)):
            out.append(i)
        k += 1
    return out


def files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def inodes(d: Path) -> dict[str, int]:
    return {p.name: p.stat().st_ino for p in d.iterdir()}


def shard_files(meta: dict, name: str) -> list[str]:
    """The token files of shard `name` in a meta.json."""
    sh = next(s for s in meta["shards"] if s["name"] == name)
    return [f["name"] for sp in SPLITS for f in sh["splits"][sp]["files"].values()]


def assert_same_as_fresh(root: Path, source: str, spm: Path, out: Path, tmp: Path, **kw) -> None:
    """Reuse is an optimisation: the output equals, byte for byte, a build from nothing."""
    fresh = tmp / f"fresh-{out.name}"
    shutil.rmtree(fresh, ignore_errors=True)
    meta = tokenize(root, source, spm, fresh, **kw)
    assert meta["shards_reused"] == 0
    assert files(out) == files(fresh)


# --------------------------------------------------------------------------- (1) concatenation

def test_three_shards_read_as_the_concatenation_of_their_parts(spm, tmp_path):
    parts = [docs("s", 25), docs("s", 3, 25), docs("s", 30, 28)]  # a small shard in the middle
    write_source_shards(tmp_path / "three", "s", parts, row_group_size=7)
    write_source_shards(tmp_path / "one", "s", [sum(parts, [])])
    meta = tokenize(tmp_path / "three", "s", spm, tmp_path / "t3", val_fraction=VAL)
    one = tokenize(tmp_path / "one", "s", spm, tmp_path / "t1", val_fraction=VAL)
    assert [s["name"] for s in meta["shards"]] == shard_names(3) and meta["shards_built"] == 3
    tok = load(spm)
    texts = {d["id"]: d["text"] for p in parts for d in p}
    for split in SPLITS:
        tf, ref = open_tokens(tmp_path / "t3", split, tokenizer=tok), open_tokens(tmp_path / "t1", split)
        assert isinstance(tf.tokens, Concat) and len(tf.docs_files) == 3
        # documents in shard order, then row order: what one shard of all the rows gives
        ids = tf.doc_table().column("id").to_pylist()
        in_split = [d["id"] for p in parts for d in p if (unit_hash(0, d["id"]) < VAL) == (split == "val")]
        assert ids == in_split == ref.doc_table().column("id").to_pylist()
        assert np.array_equal(np.asarray(tf.tokens), np.asarray(ref.tokens))
        assert tf.offsets.tolist() == ref.offsets.tolist()
        assert tf.doc_bytes().tolist() == ref.doc_bytes().tolist()
        for i in (0, len(tf) // 2, len(tf) - 1):
            assert tok.decode(tf.doc(i)) == texts[ids[i]] and tf.doc(i)[-1] == tok.eos_id
        # each shard's own files: the parts of the concatenation; the meta's totals: their sums
        per = [sh["splits"][split] for sh in meta["shards"]]
        bins = [np.fromfile(tmp_path / "t3" / p["files"]["bin"]["name"], np.uint16) for p in per]
        assert np.array_equal(np.concatenate(bins), np.asarray(tf.tokens))
        for k in ("docs", "tokens", "utf8_bytes"):
            assert meta["splits"][split][k] == sum(p[k] for p in per) == one["splits"][split][k]
        assert [p["docs"] for p in per] == [sum((unit_hash(0, d["id"]) < VAL) == (split == "val") for d in p)
                                            for p in parts]
        assert len(tf) == meta["splits"][split]["docs"] and len(tf.tokens) == meta["splits"][split]["tokens"]
    verify_dir(tmp_path / "t3", spm)


def test_verify_catches_a_flipped_byte_in_one_shard(spm, tmp_path):
    write_source_shards(tmp_path, "s", [docs("s", 12), docs("s", 12, 12), docs("s", 12, 24)])
    meta = tokenize(tmp_path, "s", spm, tmp_path / "t", val_fraction=VAL)
    verify_dir(tmp_path / "t", spm)
    bad = tmp_path / "t" / meta["shards"][1]["splits"]["train"]["files"]["bin"]["name"]
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad.write_bytes(bytes(data))
    with pytest.raises(VerifyError, match=f"{bad}: sha256 differs"):
        verify_dir(tmp_path / "t")
    verify_dir(tmp_path / "t" / meta["shards"][0]["splits"]["val"]["files"]["bin"]["name"])  # val: untouched
    m = json.loads((tmp_path / "t/meta.json").read_text())
    m["splits"]["val"]["docs"] += 1  # totals that are not the shards' sum
    (tmp_path / "t/meta.json").write_text(json.dumps(m))
    with pytest.raises(VerifyError, match="the val shards add up to"):
        verify_dir(tmp_path / "t" / meta["shards"][0]["splits"]["val"]["files"]["bin"]["name"])


# --------------------------------------------------------------------------- (2)-(4) reuse

def test_a_new_shard_encodes_only_itself(spm, tmp_path):
    parts = [docs("s", 15), docs("s", 15, 15), docs("s", 15, 30)]
    write_source_shards(tmp_path, "s", parts)
    kw = dict(val_fraction=VAL, min_val_docs=2)
    first = tokenize(tmp_path, "s", spm, **kw)
    out = tmp_path / "tokens/s"
    # the forced val documents are val by hash anyway: no shard depends on the others
    assert all(unit_hash(0, i) < VAL for i in first["split"]["forced_val_ids"])
    before, ino = files(out), inodes(out)
    write_source_shards(tmp_path, "s", parts + [docs("s", 15, 45)])
    meta = tokenize(tmp_path, "s", spm, **kw)
    assert (meta["shards_built"], meta["shards_reused"]) == (1, 3)
    new = set(shard_files(meta, "part-03.00000"))
    assert len(new) == 6 and set(files(out)) == set(before) | new
    for name in set(before) - {"meta.json", "manifest.json"}:  # old shards: the same bytes, the same inode
        assert (out / name).read_bytes() == before[name], name
        assert (out / name).stat().st_ino == ino[name], f"{name} was rewritten, not hard-linked"
    assert meta["splits"]["train"]["docs"] + meta["splits"]["val"]["docs"] == 60
    assert_same_as_fresh(tmp_path, "s", spm, out, tmp_path, **kw)
    again = tokenize(tmp_path, "s", spm, **kw)  # nothing changed: nothing encoded
    assert (again["shards_built"], again["shards_reused"]) == (0, 4)


def test_a_changed_dedup_mask_reencodes_only_its_shard(spm, tmp_path):
    parts = [docs("s", 15), docs("s", 15, 15), docs("s", 15, 30)]
    write_source_shards(tmp_path, "s", parts)
    first = tokenize(tmp_path, "s", spm, val_fraction=VAL)
    out = tmp_path / "tokens/s"
    before, ino = files(out), inodes(out)
    mask = np.zeros(15, np.uint8)
    mask[[0, 7, 8]] = [1, 2, 3]  # exact, near duplicate, dropped by filter
    write_source_shards(tmp_path, "s", parts, dedup={"part-01.00000": mask})
    meta = tokenize(tmp_path, "s", spm, val_fraction=VAL)
    assert (meta["shards_built"], meta["shards_reused"], meta["shards_trimmed"]) == (1, 2, 1)
    changed = set(shard_files(meta, "part-01.00000"))
    assert any((out / n).read_bytes() != before[n] for n in changed)
    for name in set(before) - changed - {"meta.json", "manifest.json"}:
        assert (out / name).read_bytes() == before[name] and (out / name).stat().st_ino == ino[name], name
    dropped = {parts[1][k]["id"] for k in (0, 7, 8)}
    ids = {i for sp in SPLITS for i in open_tokens(out, sp).doc_table().column("id").to_pylist()}
    assert ids == {d["id"] for p in parts for d in p} - dropped
    total = lambda m: sum(m["splits"][sp]["docs"] for sp in SPLITS)  # noqa: E731
    assert total(meta) == total(first) - 3
    verify_dir(out, spm)
    assert_same_as_fresh(tmp_path, "s", spm, out, tmp_path, val_fraction=VAL)


def test_dedup_dropping_documents_trims_the_shard_byte_for_byte_and_a_returning_one_reencodes(spm, tmp_path,
                                                                                           monkeypatch):
    """A shard that only loses documents (another source gained copies of them) is re-made from
    its previous token files without encoding, byte-identical to a fresh encode (600 docs in row
    groups of 250, both splits); a document coming back needs the encoder."""
    from llmpipe.data import encode
    parts = [docs("s", 600), docs("s", 20, 600)]
    write_source_shards(tmp_path, "s", parts, row_group_size=250)
    kw = dict(val_fraction=VAL, min_val_docs=3)
    tokenize(tmp_path, "s", spm, **kw)
    out = tmp_path / "tokens/s"
    mask = np.zeros(600, np.uint8)
    mask[np.random.default_rng(0).choice(600, 90, replace=False)] = 2
    write_source_shards(tmp_path, "s", parts, row_group_size=250, dedup={"part-00.00000": mask})
    calls = []  # the real encoder, counted
    real = encode._encode_shard
    monkeypatch.setattr(encode, "_encode_shard", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    meta = tokenize(tmp_path, "s", spm, **kw)
    assert (meta["shards_built"], meta["shards_reused"], meta["shards_trimmed"]) == (1, 1, 1)
    assert calls == [] and "trimmed" in meta["reuse"]
    assert_same_as_fresh(tmp_path, "s", spm, out, tmp_path, **kw)
    verify_dir(out, spm)
    back = mask.copy()
    back[np.flatnonzero(mask)[:5]] = 0  # five documents return
    write_source_shards(tmp_path, "s", parts, row_group_size=250, dedup={"part-00.00000": back})
    calls.clear()
    meta = tokenize(tmp_path, "s", spm, **kw)
    assert (meta["shards_built"], meta["shards_trimmed"]) == (1, 0) and len(calls) == 1
    assert_same_as_fresh(tmp_path, "s", spm, out, tmp_path, **kw)
    ids = {i for sp in SPLITS for i in open_tokens(out, sp).doc_table().column("id").to_pylist()}
    assert len(ids) == 620 - 85


def test_min_val_docs_takes_the_globally_lowest_hashes(spm, tmp_path):
    """Hardly anything is val by hash (val_fraction ~0): min_val_docs forces the k lowest hashes
    of the whole source, wherever they are; a later shard without a lower hash changes no old one."""
    texts = stdlib_docs()
    parts = [[{"id": f"s{k}-{j}", "text": texts[(13 * k + j) % len(texts)]} for j in range(10)] for k in range(3)]
    write_source_shards(tmp_path, "s", parts)
    kw = dict(val_fraction=1e-9, min_val_docs=3)
    meta = tokenize(tmp_path, "s", spm, **kw)
    out = tmp_path / "tokens/s"
    every = [d["id"] for p in parts for d in p]
    lowest = sorted(every, key=lambda i: unit_hash(0, i))[:3]
    assert meta["split"]["forced_val_ids"] == sorted(lowest)
    val = open_tokens(out, "val").doc_table().column("id").to_pylist()
    assert val == [i for i in every if i in lowest]  # in shard order, from whichever shards hold them
    # the three lowest lie in more than one shard (so this is a global choice, not a per-shard one)
    holders = {k for k, p in enumerate(parts) for d in p if d["id"] in lowest}
    assert len(holders) >= 2, holders
    third = unit_hash(0, lowest[-1])
    before, ino = files(out), inodes(out)

    # a 4th shard whose ids all hash above the 3rd lowest: only it is encoded, val unchanged
    high = [{"id": i, "text": texts[k]} for k, i in enumerate(ids_by_hash("hi", 10, lambda h: h > third))]
    write_source_shards(tmp_path, "s", parts + [high])
    meta = tokenize(tmp_path, "s", spm, **kw)
    assert (meta["shards_built"], meta["shards_reused"]) == (1, 3)
    assert meta["split"]["forced_val_ids"] == sorted(lowest)
    for name in set(before) - {"meta.json", "manifest.json"}:
        assert (out / name).read_bytes() == before[name] and (out / name).stat().st_ino == ino[name], name
    assert open_tokens(out, "val").doc_table().column("id").to_pylist() == val
    assert_same_as_fresh(tmp_path, "s", spm, out, tmp_path, **kw)

    # a 5th shard holding a lower hash than all: it takes the 3rd place's seat, so the shard that
    # held the old 3rd lowest is re-encoded too (that document goes back to train)
    low = [{"id": i, "text": texts[k + 20]} for k, i in enumerate(ids_by_hash("lo", 1, lambda h: h < 1e-3))]
    low += [{"id": i, "text": texts[k + 30]} for k, i in enumerate(ids_by_hash("lo2", 4, lambda h: h > third))]
    assert unit_hash(0, low[0]["id"]) < third
    write_source_shards(tmp_path, "s", parts + [high, low])
    before, ino = files(out), inodes(out)
    meta = tokenize(tmp_path, "s", spm, **kw)
    new_lowest = sorted([low[0]["id"], *lowest[:2]])
    assert meta["split"]["forced_val_ids"] == new_lowest
    loser = shard_names(3)[next(k for k, p in enumerate(parts) if lowest[-1] in {d["id"] for d in p})]
    assert (meta["shards_built"], meta["shards_reused"]) == (2, 3), meta["reuse"]  # the new shard and the loser
    kept = set(before) - set(shard_files(meta, loser)) - {"meta.json", "manifest.json"}
    assert len(kept) == 6 * 3
    for name in kept:
        assert (out / name).stat().st_ino == ino[name], name
    val = open_tokens(out, "val").doc_table().column("id").to_pylist()
    assert sorted(val) == new_lowest and lowest[-1] in open_tokens(out, "train").doc_table().column("id").to_pylist()
    assert_same_as_fresh(tmp_path, "s", spm, out, tmp_path, **kw)


def test_min_val_docs_never_takes_the_last_document_across_shards(spm, tmp_path):
    write_source_shards(tmp_path, "g", [[{"id": "book-1", "text": "one book"}], [],
                                        [{"id": "book-2", "text": "another book"}]])
    meta = tokenize(tmp_path, "g", spm, val_fraction=1e-9, min_val_docs=5)
    assert meta["split"]["forced_val_ids"] == [min(["book-1", "book-2"], key=lambda i: unit_hash(0, i))]
    assert meta["splits"]["train"]["docs"] == meta["splits"]["val"]["docs"] == 1
    verify_dir(tmp_path / "tokens/g", spm)


# --------------------------------------------------------------------------- (5) tokenizer reuse

def corpus(n_shards: int, changed: bool = False) -> list[list[dict]]:
    texts = stdlib_docs()
    parts = [[{"id": f"t{k}-{j}", "text": texts[(20 * k + j) % len(texts)]} for j in range(20)] for k in range(n_shards)]
    if changed:
        parts[1][3] = {**parts[1][3], "text": parts[1][3]["text"] + "\nA new closing line, with new words."}
    return parts


def build(root: Path, out: Path, sample_shards: int = 2) -> tuple[dict, str]:
    return build_tokenizer(root / "clean", ["t"], out, vocab_size=400, sample_chars=60_000,
                           sample_weights={}, seed=0, character_coverage=0.9995, sample_shards=sample_shards)


def test_tokenizer_is_kept_while_its_pinned_shards_are_unchanged(tmp_path):
    out = tmp_path / "tok"
    write_source_shards(tmp_path, "t", corpus(3))
    info, how = build(tmp_path, out)
    assert how == "trained" and info["sample"]["shards"] == {"t": shard_names(2)}
    before, ino = files(out), inodes(out)
    assert set(before) == {"spm.model", "spm.vocab", "tokenizer.json", "manifest.json"}

    # a shard beyond sample_shards (and a change to an unpinned one): kept byte for byte, as links
    parts = corpus(4)
    write_source_shards(tmp_path, "t", parts, dedup={"part-02.00000": np.ones(20, np.uint8)},
                        filtered={"part-03.00000": np.full(20, 2, np.int16)})
    again, how = build(tmp_path, out)
    assert how.startswith("reused") and again == info
    assert files(out) == before
    assert all((out / n).stat().st_ino == ino[n] for n in ("spm.model", "spm.vocab", "tokenizer.json"))

    # a pinned shard's text changes: retrained, the same model a fresh build of these inputs makes
    write_source_shards(tmp_path, "t", corpus(4, changed=True))
    new, how = build(tmp_path, out)
    assert how == "trained" and new["sample"]["shards"] == {"t": shard_names(2)}
    assert json.loads((out / "manifest.json").read_text())["units"][0]["fingerprint"] != \
        json.loads(before["manifest.json"])["units"][0]["fingerprint"]
    fresh, how = build(tmp_path, tmp_path / "fresh")
    assert how == "trained" and files(tmp_path / "fresh") == files(out) and fresh == new
    assert (out / "spm.model").read_bytes() != before["spm.model"]

    # a pinned shard's filter mask changes (a threshold sweep): kept, the sample is clean text
    kept = files(out)
    write_source_shards(tmp_path, "t", corpus(4, changed=True),
                        filtered={"part-00.00000": np.array([0] * 19 + [5], np.int16)})
    _, how = build(tmp_path, out)
    assert how.startswith("reused") and files(out) == kept
    _, how = build(tmp_path, out, sample_shards=3)  # pinning one more shard retrains
    assert how == "trained"


# --------------------------------------------------------------------------- (6) Concat

def test_concat_indexing_equals_numpy_on_the_concatenation():
    rng = np.random.default_rng(0)
    for trial in range(200):
        n_parts = int(rng.integers(1, 6))
        lens = rng.integers(0, 12, n_parts) * (rng.random(n_parts) > 0.25)  # empty parts too
        parts = [rng.integers(0, 65536, int(n), dtype=np.uint16) for n in lens]
        c, full = Concat(parts, np.uint16), np.concatenate(parts)
        n = len(full)
        assert len(c) == n and c.shape == (n,) and np.array_equal(np.asarray(c), full)
        assert np.asarray(c).dtype == np.uint16 and c.view(np.ndarray) is c
        for _ in range(20):  # slices with random cuts, some past either end, some negative
            lo, hi = (int(x) for x in rng.integers(-n - 3, n + 4, 2))
            for key in (slice(lo, hi), slice(lo, None), slice(None, hi), slice(max(lo, 0), max(hi, 0))):
                got = c[key]
                assert isinstance(got, np.ndarray) and got.dtype == np.uint16
                assert np.array_equal(got, full[key]), (lens, key)
        # every cut between two parts, from each side
        cuts = np.cumsum(lens)
        for a in cuts:
            for b in cuts:
                assert np.array_equal(c[int(a):int(b)], full[int(a):int(b)])
        if n:
            for i in rng.integers(0, n, 5):
                assert c[int(i)] == full[int(i)] and c[np.int64(i)] == full[int(i)]
            for shape in ((7,), (3, 4), (0,)):  # fancy indexing, repeats and any order
                idx = rng.integers(0, n, shape)
                got = c[idx]
                assert got.shape == idx.shape and got.dtype == np.uint16 and np.array_equal(got, full[idx])
            assert np.array_equal(c[list(range(n))[::-1]], full[::-1])


def test_concat_over_real_shards_reads_like_the_token_file_of_one(spm, tmp_path):
    """The readers' use of TokenFile.tokens (document slices, EOS lookups by offset) on a real
    sharded directory with empty and one-document shards in between."""
    parts = [docs("s", 9), [], docs("s", 1, 9), docs("s", 14, 10), []]
    write_source_shards(tmp_path / "many", "s", parts)
    write_source_shards(tmp_path / "one", "s", [sum(parts, [])])
    tokenize(tmp_path / "many", "s", spm, tmp_path / "tm", val_fraction=VAL)
    tokenize(tmp_path / "one", "s", spm, tmp_path / "t1", val_fraction=VAL)
    for split in SPLITS:
        tf, ref = open_tokens(tmp_path / "tm", split), open_tokens(tmp_path / "t1", split)
        ends = tf.offsets[1:].astype(np.int64) - 1
        assert np.array_equal(tf.tokens[ends], ref.tokens[ends]) and set(tf.tokens[ends].tolist()) <= {3}
        for i in range(len(tf)):
            assert np.array_equal(tf.doc(i), ref.doc(i))
        rng = np.random.default_rng(1)
        for lo, hi in np.sort(rng.integers(0, len(ref.tokens) + 1, (30, 2)), axis=1):
            assert np.array_equal(tf.tokens[lo:hi], ref.tokens[lo:hi])
        # the doc-table rows of a few documents (any order, repeats), read shard by shard
        table = ref.doc_table()
        for pick in (rng.integers(0, len(ref), 40), np.arange(len(ref))[::-1], np.zeros(0, np.int64)):
            got = tf.take_rows(pick, ["id", "utf8_bytes"])
            assert got.to_pydict() == table.select(["id", "utf8_bytes"]).take(pick).to_pydict()
        assert np.array_equal(tf.doc_bytes(), table.column("utf8_bytes").to_numpy())


# --------------------------------------------------------------------------- negative indices, bad masks

def test_concat_negative_indices_count_from_the_end():
    parts = [np.arange(5, dtype=np.uint16), np.arange(10, 15, dtype=np.uint16)]
    c, full = Concat(parts, np.uint16), np.concatenate(parts)
    assert c[-1] == full[-1] and c[-6] == full[-6]
    assert np.array_equal(c[np.array([-1, 0, -10])], full[np.array([-1, 0, -10])])


@pytest.mark.parametrize("rows", [8, 12])
def test_a_dedup_mask_of_the_wrong_length_is_refused(spm, tmp_path, rows):
    from llmpipe.core.errors import UserError
    write_source_shards(tmp_path, "s", [docs("s", 10)])
    np.save(tmp_path / "dedup/s/part-00.00000.npy", np.zeros(rows, np.uint8))  # the clean shard has 10
    with pytest.raises(UserError, match="part-00.00000"):
        tokenize(tmp_path, "s", spm, val_fraction=VAL)
