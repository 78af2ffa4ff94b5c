"""dedup_ext.deduplicate (partitioned, on disk, parallel) against dedup.find_duplicates (in RAM).

One synthetic corpus of random signatures spread over several units (one of them empty), with
planted exact copies, near copies on both sides of the threshold, far copies that become LSH
candidates but fail verification, identical signatures under different exact hashes, a bucket of
150 members and a chain A ~ B ~ C. Every decision (status, cluster, candidates, verified pairs)
must equal the in-memory reference on the concatenated units, for every option tried.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from llmpipe.core.errors import UserError
from llmpipe.data.dedup import EXACT, KEPT, NEAR, Index, find_duplicates
from llmpipe.data.dedup_ext import Unit, band_key_path, deduplicate

K = 128
THRESHOLD = 0.8                      # >= 103 of 128 slots equal
SIZES = (420, 0, 380, 510, 330, 360)
TINY = 1 << 15                       # the smallest budget: many partitions
BIG = 1 << 28


def _flip(rng, sig: np.ndarray, slots) -> np.ndarray:
    out = sig.copy()
    slots = np.asarray(slots)
    out[slots] ^= rng.integers(1, 1 << 32, size=len(slots), dtype=np.uint64).astype(np.uint32)
    return out


def _build(root: Path, seed: int = 0, sizes=SIZES):
    """Units on disk plus the concatenated arrays and the planted documents' positions."""
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    sig = rng.integers(0, 1 << 32, size=(n, K), dtype=np.uint64).astype(np.uint32)
    exact = rng.integers(0, 1 << 63, size=(n, 2), dtype=np.uint64)
    pool = rng.permutation(n)                        # docs to overwrite, each used once
    take = iter(pool.tolist())

    def pick(count):
        return [next(take) for _ in range(count)]

    # a bucket of 150: equal first 16 slots (band 0 of 14x9, bands 0-3 of 32x4), rest random;
    # 20 of them have one identical full signature (one 1x128 bucket) under distinct exact hashes
    big = pick(150)
    sig[big, :16] = sig[big[0], :16]
    sig[big[130:], :] = sig[big[130]]
    for i, j in zip(pick(40), pick(40)):              # exact copies (same text: same signature)
        sig[j], exact[j] = sig[i], exact[i]
    for i, j in zip(pick(60), pick(60)):              # near copies, 1-10 slots changed
        sig[j] = _flip(rng, sig[i], rng.choice(K, rng.integers(1, 11), replace=False))
    for i, j in zip(pick(30), pick(30)):              # at the threshold: 25 (kept) or 26 changed
        sig[j] = _flip(rng, sig[i], rng.choice(K, 25 + rng.integers(0, 2), replace=False))
    for i, j in zip(pick(40), pick(40)):              # far: 40-60 changed, candidates at most
        sig[j] = _flip(rng, sig[i], rng.choice(K, rng.integers(40, 61), replace=False))
    for i, j in zip(pick(10), pick(10)):              # identical signature, other exact hash
        sig[j] = sig[i]
    src = pick(15)                                    # exact copies of near copies
    for i, j, k in zip(src, pick(15), pick(15)):
        sig[j] = _flip(rng, sig[i], rng.choice(K, 3, replace=False))
        sig[k], exact[k] = sig[j], exact[j]
    # chain: B = A + 20 changes in bands 0-6, C = B + 20 changes in bands 7-13 (14x9): A~B and
    # B~C share bands, A and C share none and match on 88 slots only
    a, b, c = pick(3)
    s1 = np.concatenate((np.arange(7) * 9 + rng.integers(0, 9, 7),
                         rng.choice(np.setdiff1d(np.arange(63), np.arange(7) * 9), 13, replace=False)))
    s1 = np.unique(s1)
    s1 = np.concatenate((s1, rng.choice(np.setdiff1d(np.arange(63), s1), 20 - len(s1), replace=False)))
    s2 = s1 % 63 + 63
    sig[b] = _flip(rng, sig[a], s1)
    sig[c] = _flip(rng, sig[b], s2)
    pref = (rng.permutation(n).astype(np.uint64) << np.uint64(20)) | rng.integers(
        0, 1 << 20, size=n, dtype=np.uint64)          # unique, interleaved over the units
    pref[[a, b, c]] = np.sort(pref[[a, b, c]])        # A best, then B, then C
    units, lo = [], 0
    for k, size in enumerate(sizes):
        path = root / f"sig-{k}.npy"
        np.save(path, sig[lo:lo + size])
        units.append(Unit(name=f"src{k % 2}/part-{k:05d}", pref=pref[lo:lo + size].copy(),
                          exact=exact[lo:lo + size].copy(), sig_path=path,
                          fingerprint=f"fp-{seed}-{k}"))
        lo += size
    return {"units": units, "sig": sig, "exact": exact, "pref": pref, "chain": (a, b, c),
            "big": big}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("corpus"))


def reference(units: list[Unit], bands: int, rows: int, exact: bool, near: bool) -> dict:
    """find_duplicates on an Index of the concatenated units, in the ExtDecision's terms."""
    sig = np.concatenate([np.load(u.sig_path) for u in units])
    pref = np.concatenate([u.pref for u in units])
    ex = np.concatenate([u.exact for u in units])
    rank = np.empty(len(pref), np.int64)
    rank[np.argsort(pref)] = np.arange(len(pref))
    offsets = np.cumsum([0] + [len(u.pref) for u in units], dtype=np.int64)
    index = Index(sources=[u.name for u in units], offsets=offsets,
                  ids=pa.chunked_array([pa.array([str(i) for i in range(len(pref))])]),
                  hashes=np.array([f"{h:016x}{l:016x}" for h, l in ex.tolist()], dtype=np.bytes_),
                  sig=sig, pref=rank)
    dec = find_duplicates(index, THRESHOLD, bands, rows, exact=exact, near=near)
    u, v, m = dec.pairs
    dup = dec.cluster != np.arange(len(pref))
    return {"status": {x.name: dec.status[offsets[k]:offsets[k + 1]] for k, x in enumerate(units)},
            "cluster": {x.name: pref[dec.cluster[offsets[k]:offsets[k + 1]]]
                        for k, x in enumerate(units)},
            "pairs": (pref[u], pref[v], m), "candidates": dec.candidates,
            "clusters": int(np.unique(dec.cluster[dup]).size)}


def run(units, tmp: Path, bands=14, rows=9, exact=True, near=True, memory=BIG, jobs=1,
        cache: Path | None = None):
    return deduplicate(units, num_perm=K, threshold=THRESHOLD, bands=bands, rows=rows,
                       exact=exact, near=near, work_dir=tmp / "work", cache_dir=cache or tmp / "cache",
                       memory_bytes=memory, jobs=jobs)


def assert_same(dec, ref: dict, units: list[Unit]) -> None:
    for u in units:
        np.testing.assert_array_equal(dec.status[u.name], ref["status"][u.name], err_msg=u.name)
        assert dec.status[u.name].dtype == np.int8
        cl = dec.cluster(u.name)
        assert cl.dtype == np.uint64 and cl.shape == u.pref.shape
        np.testing.assert_array_equal(cl, ref["cluster"][u.name], err_msg=u.name)
    assert dec.candidates == ref["candidates"]
    for got, want in zip(dec.pairs, ref["pairs"]):
        np.testing.assert_array_equal(got, want)
    assert dec.clusters == ref["clusters"]


@pytest.mark.parametrize("bands,rows", [(14, 9), (1, 128), (32, 4)])
@pytest.mark.parametrize("exact,near", [(True, True), (False, True), (True, False), (False, False)])
def test_matches_find_duplicates(corpus, tmp_path, bands, rows, exact, near):
    units = corpus["units"]
    ref = reference(units, bands, rows, exact, near)
    dec = run(units, tmp_path, bands, rows, exact, near, memory=TINY)
    assert_same(dec, ref, units)
    if exact:
        assert dec.stats["partitions_exact"] >= 8
    if near:
        assert dec.stats["partitions_band"] >= (8 if bands > 1 else 5)   # 1 band: 1 record/doc
        assert dec.stats["partitions_pairs"] >= 1
    assert not any((tmp_path / "work").iterdir())    # the run's temporaries are gone
    if exact and near and bands == 14:                # the corpus exercises what it should
        st = np.concatenate(list(dec.status.values()))
        assert (st == EXACT).sum() >= 50 and (st == NEAR).sum() >= 60
        assert dec.candidates > len(dec.pairs[0])     # some candidates fail verification
        assert dec.pairs[2].min() == 103              # the threshold itself is verified


def test_jobs_and_memory_do_not_change_decisions(corpus, tmp_path):
    units = corpus["units"]
    ref = reference(units, 14, 9, True, True)
    decs = [run(units, tmp_path / name, memory=mem, jobs=jobs)
            for name, mem, jobs in (("big1", BIG, 1), ("tiny2", TINY, 2), ("mid2", 1 << 20, 2))]
    for dec in decs:
        assert_same(dec, ref, units)
    assert decs[0].stats["partitions_band"] == 14 and decs[0].stats["partitions_exact"] == 1
    assert decs[1].stats["partitions_band"] > 14


def test_chain_is_one_cluster(corpus, tmp_path):
    a, b, c = corpus["chain"]
    pref = corpus["pref"]
    dec = run(corpus["units"], tmp_path)
    pairs = {(int(u), int(v)): int(m) for u, v, m in zip(*dec.pairs)}
    assert pairs[(int(pref[a]), int(pref[b]))] >= 103 and pairs[(int(pref[b]), int(pref[c]))] >= 103
    assert (int(pref[a]), int(pref[c])) not in pairs
    assert (corpus["sig"][a] == corpus["sig"][c]).sum() < 103
    where = _where(corpus["units"])
    for doc, st in ((a, KEPT), (b, NEAR), (c, NEAR)):
        name, row = where[int(pref[doc])]
        assert dec.status[name][row] == st
        assert dec.cluster(name)[row] == pref[a]


def _where(units) -> dict[int, tuple[str, int]]:
    return {p: (u.name, row) for u in units for row, p in enumerate(u.pref.tolist())}


def test_big_bucket(corpus, tmp_path):
    """150 documents in one band-0 bucket, in the smallest budget: 149 candidates from it alone;
    only its 20 members with one identical signature are linked (to the best-ranked of them)."""
    dec = run(corpus["units"], tmp_path, memory=TINY)
    assert dec.candidates >= 149
    where = _where(corpus["units"])
    same = corpus["pref"][corpus["big"][130:]]
    for p in corpus["pref"][corpus["big"]].tolist():
        name, row = where[p]
        if p in same:
            assert dec.cluster(name)[row] == same.min()
            assert dec.status[name][row] == (KEPT if p == same.min() else NEAR)
        else:
            assert dec.status[name][row] == KEPT


def test_cache_reused_for_old_units(corpus, tmp_path):
    units = corpus["units"]
    cache = tmp_path / "cache"
    first = run(units[:-1], tmp_path / "a", cache=cache)
    assert sorted(first.stats["band_keys_computed"]) == sorted(u.name for u in units[:-1] if len(u.pref))
    files = {u.name: band_key_path(cache, u, 14, 9) for u in units[:-1] if len(u.pref)}
    stamps = {name: os.stat(p).st_mtime_ns for name, p in files.items()}
    second = run(units, tmp_path / "b", cache=cache)
    assert second.stats["band_keys_computed"] == [units[-1].name]
    assert sorted(second.stats["band_keys_cached"]) == sorted(files)
    assert {name: os.stat(p).st_mtime_ns for name, p in files.items()} == stamps
    assert_same(second, reference(units, 14, 9, True, True), units)
    # a changed fingerprint is a new file; other (bands, rows) are other files
    changed = [Unit(u.name, u.pref, u.exact, u.sig_path, u.fingerprint + "x") if k == 0 else u
               for k, u in enumerate(units)]
    third = run(changed, tmp_path / "c", cache=cache)
    assert third.stats["band_keys_computed"] == [units[0].name]
    fourth = run(units, tmp_path / "d", bands=32, rows=4, cache=cache)
    assert len(fourth.stats["band_keys_computed"]) == len(files) + 1
    assert not [p for p in cache.iterdir() if ".tmp-" in p.name]


def test_empty_units(tmp_path):
    np.save(tmp_path / "e.npy", np.empty((0, K), np.uint32))
    empty = Unit("e", np.empty(0, np.uint64), np.empty((0, 2), np.uint64), tmp_path / "e.npy", "0")
    dec = run([empty], tmp_path)
    assert dec.status["e"].shape == (0,) and dec.cluster("e").shape == (0,)
    assert dec.candidates == 0 and dec.clusters == 0 and len(dec.pairs[0]) == 0
    assert run([], tmp_path).status == {}


def test_bad_inputs(corpus, tmp_path):
    u = corpus["units"][0]
    with pytest.raises(ValueError, match="not unique"):
        run([u, u], tmp_path)
    np.save(tmp_path / "w.npy", np.zeros((len(u.pref), 64), np.uint32))
    with pytest.raises(UserError, match="needs"):
        run([Unit(u.name, u.pref, u.exact, tmp_path / "w.npy", "f")], tmp_path)
    with pytest.raises(ValueError, match="bands x rows"):
        run([u], tmp_path, bands=15, rows=9)
    with pytest.raises(ValueError, match="uint64"):
        run([Unit(u.name, u.pref.astype(np.int64), u.exact, u.sig_path, "f")], tmp_path)


@pytest.mark.parametrize("memory", [TINY, BIG])
def test_units_with_signature_rows_match_the_reference_on_those_rows(corpus, tmp_path, memory):
    """A shard's signatures cover every clean row and filter keeps some (`Unit.rows`): the
    decisions equal the reference on just the kept rows, and the band keys (per signature row)
    are reused when another subset is kept."""
    rng = np.random.default_rng(5)
    full = [u for u in corpus["units"] if len(u.pref)]
    subset, kept_units = [], []
    for u in full:
        rows = np.flatnonzero(rng.random(len(u.pref)) < 0.7)
        subset.append(Unit(u.name, u.pref[rows].copy(), u.exact[rows].copy(), u.sig_path, u.fingerprint,
                           rows=rows))
        path = tmp_path / f"{Path(u.sig_path).stem}-kept.npy"
        np.save(path, np.load(u.sig_path)[rows])
        kept_units.append(Unit(u.name, u.pref[rows].copy(), u.exact[rows].copy(), path, u.fingerprint + "k"))
    dec = run(subset, tmp_path, memory=memory)
    assert_same(dec, reference(kept_units, 14, 9, True, True), subset)
    again = run([Unit(u.name, u.pref[:0], u.exact[:0], u.sig_path, u.fingerprint, rows=np.zeros(0, np.int64))
                 if k == 0 else u for k, u in enumerate(subset)], tmp_path, memory=memory)
    assert again.stats["band_keys_computed"] == []  # keys are per signature row: any subset reuses them
