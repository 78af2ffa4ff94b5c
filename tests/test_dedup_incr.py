"""The dedup index kept between runs (`dedup_incr`): a run whose units are the last run's plus new
ones starts from the last run's bucket pairs, counted pairs and common counts, and must decide
exactly what a run from nothing decides: same status, clusters, candidates, verified pairs,
containment removals, and the same index left behind (as sets of rows).

Corpora: test_dedup_ext's random signatures (planted exact, near, far and chained copies, a
bucket of 150) with disjoint keep ranges per unit, as real shards have; and a synthetic
containment corpus whose sample hashes come from unique, shared (a few to many holders: some
cross contain_max_docs when units arrive) and contained documents, over three sources.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from llmpipe.data.contain import ContainPass
from llmpipe.data.dedup_ext import CrossPass, Unit, deduplicate
from test_dedup_ext import K, THRESHOLD, TINY, _build

BIG = 1 << 28


def ranked(units: list[Unit], order: list[int]) -> list[Unit]:
    """The units with prefs renumbered so unit order[0] ranks first, then order[1], ...: one
    disjoint range each (gaps between them), keeping each unit's own order."""
    out = list(units)
    base = 0
    for k in order:
        u = units[k]
        p = np.argsort(np.argsort(u.pref, kind="stable"), kind="stable").astype(np.uint64) + np.uint64(base)
        base += len(u.pref) + 1000
        out[k] = dataclasses.replace(u, pref=p)
    return out


def run(units, tmp: Path, state: Path | None, *, memory=BIG, jobs=1, bands=14, rows=9, cross=None, contain=None,
        cache: Path | None = None):
    return deduplicate(units, num_perm=K, threshold=THRESHOLD, bands=bands, rows=rows, work_dir=tmp / "work",
                       cache_dir=cache or tmp / "cache", memory_bytes=memory, jobs=jobs, cross=cross, contain=contain,
                       state_dir=state)


def same(a, b, units) -> None:
    for u in units:
        np.testing.assert_array_equal(a.status[u.name], b.status[u.name], err_msg=u.name)
        np.testing.assert_array_equal(a.cluster(u.name), b.cluster(u.name), err_msg=u.name)
        np.testing.assert_array_equal(a.contained.get(u.name, []), b.contained.get(u.name, []), err_msg=u.name)
    assert a.candidates == b.candidates and a.clusters == b.clusters
    for x, y in zip(a.pairs, b.pairs):
        np.testing.assert_array_equal(x, y)


def same_index(a: Path, b: Path) -> None:
    """Two index folders hold the same rows (a table's row order is the way it was built)."""
    assert json.loads((a / "state.json").read_text()) == json.loads((b / "state.json").read_text())
    names = sorted(p.name for p in a.glob("*.npy"))
    assert names == sorted(p.name for p in b.glob("*.npy"))
    for name in names:
        x, y = np.load(a / name), np.load(b / name)
        if x.ndim == 2:
            x, y = np.unique(x, axis=0), np.unique(y, axis=0)
        np.testing.assert_array_equal(x, y, err_msg=name)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("corpus"))


@pytest.mark.parametrize("held,memory", [(0, BIG), (2, TINY), (5, BIG), ((1, 3), TINY)])
def test_added_units_decide_what_a_run_from_nothing_decides(corpus, tmp_path, held, memory):
    """Held-out units come back: unit 0 ranks first, so its documents outrank every old copy
    (old exact heads die, buckets get new heads); unit 5 ranks last. Bounded at 32 KiB (TINY)
    the full pass runs on many partitions; the incremental one must still match it."""
    held = held if isinstance(held, tuple) else (held,)
    units = ranked(corpus["units"], list(range(len(corpus["units"]))))
    first = [u for k, u in enumerate(units) if k not in held]
    assert run(first, tmp_path, tmp_path / "index").stats["index"]["mode"] == "full"
    inc = run(units, tmp_path, tmp_path / "index", memory=memory)
    st = inc.stats["index"]
    assert st["mode"] == "incremental" and st["why"] == f"{len(held)} new shard(s)", st
    assert 0 < st["dirty_docs"] and st["pairs_reused"] > 0, st
    ref = run(units, tmp_path, tmp_path / "index-ref", memory=memory, cache=tmp_path / "cache-ref")
    assert ref.stats["index"]["mode"] == "full"
    same(inc, ref, units)
    same_index(tmp_path / "index", tmp_path / "index-ref")
    # and a rerun on the same units reuses everything: nothing dirty
    again = run(units, tmp_path, tmp_path / "index")
    assert again.stats["index"]["mode"] == "incremental" and again.stats["index"]["dirty_docs"] == 0
    same(again, ref, units)


def test_one_unit_at_a_time_with_a_cross_pass(corpus, tmp_path):
    """Units arriving one by one, a cross pass (on the same signatures, other bands) beside the
    near pass, the newest unit always ranked first: each step equals a run from nothing."""
    order = [3, 1, 4, 0, 5, 2]
    units = ranked(corpus["units"], order[::-1])                  # the last to arrive ranks first
    groups = [k % 2 for k in range(len(units))]

    def cross(us):
        return CrossPass([u.sig_path for u in us], [u.fingerprint + "~x" for u in us],
                         [groups[units.index(u)] for u in us], 0.7, 20, 5)
    for n in range(1, len(order) + 1):
        part = [units[k] for k in sorted(order[:n])]
        inc = run(part, tmp_path, tmp_path / "index", cross=cross(part))
        assert inc.stats["index"]["mode"] == ("full" if n == 1 else "incremental"), (n, inc.stats["index"])
        ref = run(part, tmp_path, None, cross=cross(part), cache=tmp_path / "cache-ref")
        same(inc, ref, part)


def test_anything_but_added_units_runs_in_full_and_still_decides_the_same(corpus, tmp_path):
    units = ranked(corpus["units"], list(range(6)))
    state = tmp_path / "index"
    run(units[:4], tmp_path, state)
    cases = {
        "shard src1/part-00003 changed": units[:3] + [dataclasses.replace(units[3], exact=units[3].exact[::-1].copy())]
        + units[4:],
        "shard src0/part-00002 is gone": units[:2] + units[3:],
        "the units' keep ranks interleave": units[:5] + [dataclasses.replace(units[5], pref=units[5].pref - np.uint64(
            int(units[5].pref.min()) - int(units[0].pref.min()) - 1))],
    }
    for why, us in cases.items():
        run(units[:4], tmp_path, state)                              # back to the 4-unit index
        got = run(us, tmp_path, state)
        assert got.stats["index"] == {"mode": "full", "why": why} or got.stats["index"]["why"] == why, got.stats
        same(got, run(us, tmp_path, None, cache=tmp_path / "cache-ref"), us)
    run(units[:4], tmp_path, state)
    got = run(units, tmp_path, state, bands=32, rows=4)
    assert got.stats["index"]["why"] == "the settings changed"
    # a damaged index is not trusted
    run(units[:4], tmp_path, state)
    (state / "near.npy").write_bytes(b"garbage")
    got = run(units, tmp_path, state)
    assert got.stats["index"]["mode"] == "full" and "unreadable" in got.stats["index"]["why"]
    same(got, run(units, tmp_path, None, cache=tmp_path / "cache-ref"), units)


# --------------------------------------------------------------------------- containment

MAX_DOCS = 4
MIN_SAMPLES = 8


def contain_corpus(root: Path, seed: int, n_units: int = 6, per_unit: int = 60):
    """Units over 3 sources: random signatures (no Jaccard pairs) and sample files whose hashes
    make containment pairs, shared phrasing held by 2-9 documents (around MAX_DOCS), and exact
    copies across units (the copy in a better-ranked unit kills the other)."""
    rng = np.random.default_rng(seed)
    n = n_units * per_unit
    sets = []
    phrases = [np.sort(rng.choice(1 << 28, size=rng.integers(1, 4), replace=False)) for _ in range(80)]
    pop = rng.integers(2, 10, size=len(phrases))
    for i in range(n):
        size = int(rng.integers(4, 60))
        s = set(rng.integers(0, 1 << 28, size=size).tolist())
        sets.append(s)
    for p, c in zip(phrases, pop):                       # each phrase in c documents
        for i in rng.choice(n, size=c, replace=False):
            sets[i].update(p.tolist())
    for _ in range(40):                                  # a in b: b gets a's samples (and is 2x+ bigger)
        a, b = rng.choice(n, size=2, replace=False)
        keep = [h for h in sets[a] if rng.random() < 0.95]
        sets[b].update(keep)
        sets[b].update(rng.integers(0, 1 << 28, size=2 * len(sets[a])).tolist())
    sig = rng.integers(0, 1 << 32, size=(n, K), dtype=np.uint64).astype(np.uint32)
    exact = rng.integers(0, 1 << 63, size=(n, 2), dtype=np.uint64)
    for _ in range(15):                                  # exact copies: same text, same samples
        a, b = rng.choice(n, size=2, replace=False)
        sig[b], exact[b], sets[b] = sig[a], exact[a], set(sets[a])
    units, paths = [], []
    for k in range(n_units):
        lo = k * per_unit
        rows = np.arange(per_unit)
        samples = np.concatenate([(np.uint64(r) << np.uint64(32)) | (np.array(sorted(sets[lo + r]), np.uint64)
                                                                     << np.uint64(3)) for r in rows])
        sp, cp = root / f"sig-{seed}-{k}.npy", root / f"contain-{seed}-{k}.npy"
        np.save(sp, sig[lo:lo + per_unit])
        np.save(cp, np.sort(samples))
        units.append(Unit(name=f"s{k % 3}/u{k}", pref=np.arange(per_unit, dtype=np.uint64), exact=exact[lo:lo + per_unit],
                          sig_path=sp, fingerprint=f"c{seed}-{k}"))
        paths.append(cp)
    return units, paths


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_containment_from_the_index_decides_what_the_whole_pass_decides(tmp_path, seed):
    """Half the units first, then the rest, ranked first or last by turns: removals, cluster
    heads, and the index (counted pairs, common counts) equal a run from nothing."""
    units, paths = contain_corpus(tmp_path, seed)
    order = [1, 4, 0, 3, 5, 2] if seed % 2 else [0, 1, 2, 3, 4, 5]
    units = ranked(units, order)
    groups = [k % 3 for k in range(len(units))]

    def cp(ks):
        return ContainPass([paths[k] for k in ks], [groups[k] for k in ks], 0.8, MIN_SAMPLES, MAX_DOCS)
    first = [0, 2, 4] if seed != 2 else [5]
    run([units[k] for k in first], tmp_path, tmp_path / "index", contain=cp(first))
    ks = list(range(len(units)))
    inc = run(units, tmp_path, tmp_path / "index", contain=cp(ks))
    ref = run(units, tmp_path, tmp_path / "index-ref", contain=cp(ks), cache=tmp_path / "cache-ref")
    assert inc.stats["index"]["mode"] == "incremental", inc.stats["index"]
    st = inc.stats["containment"]
    # from the index: new documents recounted, phrases turned common, old documents killed by new copies
    assert "containment_index" not in inc.stats and st["recounted_docs"] > 0 and st["turned_common"] > 0, st
    assert st["changed_docs"] > st["recounted_docs"] and (seed == 2 or st["counted_reused"] > 0), st
    assert st["commons_scanned"] > 0, st     # old documents first met by new ones: commons from their samples
    assert ref.stats["containment"]["contained"] > 0
    same(inc, ref, units)
    same_index(tmp_path / "index", tmp_path / "index-ref")


def test_containment_turned_common_and_back(tmp_path):
    """A phrase held by MAX_DOCS documents gains holders in a new unit (it turns common: each
    old holder counts it as common, their pairs lose it), and a new unit's exact copies kill old
    holders (so a group can turn small again: the pass then runs whole). Both equal a fresh run."""
    rng = np.random.default_rng(7)
    phrase = np.sort(rng.choice(1 << 28, size=6, replace=False))
    per = 10

    def unit(k, docs, root=tmp_path):
        sig = rng.integers(0, 1 << 32, size=(len(docs), K), dtype=np.uint64).astype(np.uint32)
        exact = np.array([d[0] for d in docs], np.uint64)
        samples = np.sort(np.concatenate([(np.uint64(r) << np.uint64(32)) | (np.array(sorted(d[1]), np.uint64) << np.uint64(3))
                                          for r, d in enumerate(docs)]))
        np.save(root / f"t-sig-{k}.npy", sig)
        np.save(root / f"t-c-{k}.npy", samples)
        return Unit(name=f"s{k % 2}/t{k}", pref=np.arange(len(docs), dtype=np.uint64), exact=exact,
                    sig_path=root / f"t-sig-{k}.npy", fingerprint=f"t{k}"), root / f"t-c-{k}.npy"

    def doc(extra=12, with_phrase=True, ex=None):
        s = set(rng.integers(0, 1 << 28, size=extra).tolist()) | (set(phrase.tolist()) if with_phrase else set())
        return ((ex if ex is not None else rng.integers(0, 1 << 63, size=2)).tolist(), s)
    old0 = [doc() for _ in range(2)] + [doc(with_phrase=False) for _ in range(per - 2)]
    old1 = [doc() for _ in range(2)] + [doc(with_phrase=False) for _ in range(per - 2)]
    # a container of old0[0] in the other source: the pair shares the phrase and 12 more samples
    old1[5] = (old1[5][0], old1[5][1] | old0[0][1] | set(rng.integers(0, 1 << 28, size=40).tolist()))
    new_holders = [doc() for _ in range(3)] + [doc(with_phrase=False) for _ in range(per - 3)]
    killers = [(old0[1][0], old0[1][1] - set(phrase[:3].tolist())), (old1[1][0], old1[1][1] - set(phrase[:3].tolist()))] \
        + [doc(with_phrase=False) for _ in range(per - 2)]
    u0, p0 = unit(0, old0)
    u1, p1 = unit(1, old1)
    u2, p2 = unit(2, new_holders)
    u3, p3 = unit(3, killers)
    for first, later in (([u0, u1], [u0, u1, u2]), ([u0, u1, u2], [u3, u0, u1, u2])):
        paths = {u.name: p for u, p in ((u0, p0), (u1, p1), (u2, p2), (u3, p3))}

        def cp(us):
            return ContainPass([paths[u.name] for u in us], [int(u.name[1]) for u in us], 0.8, MIN_SAMPLES, 6)
        rk = ranked(later, list(range(len(later))))
        by = {u.name: u for u in rk}
        st = tmp_path / f"index-{len(later)}"
        run([by[u.name] for u in first], tmp_path, st, contain=cp(first))
        inc = run(rk, tmp_path, st, contain=cp(later))
        ref = run(rk, tmp_path, tmp_path / f"ref-{len(later)}", contain=cp(later), cache=tmp_path / "cache-ref")
        assert inc.stats["index"]["mode"] == "incremental"
        same(inc, ref, rk)
        same_index(st, tmp_path / f"ref-{len(later)}")
        if len(later) == 3:
            assert inc.stats["containment"]["turned_common"] > 0, inc.stats["containment"]
        else:
            assert inc.stats.get("containment_index") == "full: a hash group turned small", inc.stats


def test_a_malformed_state_json_runs_in_full(corpus, tmp_path):
    units = ranked(corpus["units"], list(range(6)))
    state = tmp_path / "index"
    for text in ("[]", '{"version": 1}', json.dumps({"version": 1, "settings": None, "units": [{}]})):
        run(units[:4], tmp_path, state)
        meta = json.loads((state / "state.json").read_text())
        bad = text if text != '{"version": 1}' else json.dumps({k: v for k, v in meta.items() if k != "order"})
        (state / "state.json").write_text(bad)
        got = run(units, tmp_path, state)
        assert got.stats["index"]["mode"] == "full", got.stats["index"]
        same(got, run(units, tmp_path, None, cache=tmp_path / "cache-ref"), units)
