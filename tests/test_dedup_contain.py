"""Containment across sources (`contain.py`): a page holding one chapter of a book that another
source holds whole is removed; the book, pages sharing less, and copies within one source stay."""
from __future__ import annotations

import itertools
import random
from pathlib import Path

import numpy as np
import pytest

from _cleankit import clean_sources, dedup_status, filter_dir, synthetic_words
from llmpipe.data import canonical, contain, minhash
from llmpipe.data.dedup import dedup_sharded
from llmpipe.params import DedupParams, FilterParams

K = 32
VOCAB = synthetic_words(1500)


def paragraph(rng: random.Random, words: int = 60) -> str:
    """Sentences of 8-15 seeded pseudo-words: no 5-gram repeats in practice."""
    out, n = [], 0
    while n < words:
        k = rng.randint(8, 15)
        out.append(" ".join(rng.choice(VOCAB) for _ in range(k)).capitalize() + ".")
        n += k
    return " ".join(out)


def chapter(seed: int, paragraphs: int = 6) -> list[str]:
    rng = random.Random(seed)
    return [paragraph(rng) for _ in range(paragraphs)]


def wrap(par: str, width: int = 70) -> str:
    lines, cur = [], ""
    for w in par.split():
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}" if cur else w
    return "\r\n".join(lines + [cur])


def book(chapters: list[list[str]]) -> str:
    """A hard-wrapped, CRLF book with headings, as gutenberg.org ships it."""
    parts = ["*** START OF THE PROJECT GUTENBERG EBOOK A TEST ***", "A TEST BOOK"]
    for k, ch in enumerate(chapters, 1):
        parts += [f"CHAPTER {k}"] + [wrap(p) for p in ch]
    parts.append("*** END OF THE PROJECT GUTENBERG EBOOK A TEST ***")
    return "\r\n\r\n".join(parts)


def page(pars: list[str]) -> str:
    """A web page: one line per paragraph and some furniture."""
    return "Home | About | Contact\n" + "\n".join(pars) + "\nShare this"


def build(root: Path, tables) -> Path:
    clean_sources(root, tables, num_perm=K)
    for src, (kind, _) in tables.items():
        filter_dir(root / "clean" / src, root / "filtered" / src, kind, FilterParams(enabled=False), src)
    return root


CHAPTERS = [chapter(k) for k in range(12)]


def edited(pars: list[str], every: int = 40) -> list[str]:
    """Every `every`-th word replaced (a light edit: ~0.9 of the shingles kept)."""
    out = []
    for p in pars:
        w = p.split()
        for i in range(every // 2, len(w), every):
            w[i] = "zzedit"
        out.append(" ".join(w))
    return out


def test_chapter_in_a_page_is_removed_into_the_book_in_memory_and_bounded(tmp_path):
    web = [page(edited(CHAPTERS[3])),                               # a chapter of the book: removed
           page(chapter(100)),                                      # unrelated: kept
           page(CHAPTERS[5][:3] + chapter(101, 3)),                 # half a chapter, half its own: kept
           page(CHAPTERS[7][:1])]                                   # one paragraph: too few samples, kept
    root = build(tmp_path, {"books": ("gutenberg", {"b.00000": [book(CHAPTERS)]}),
                            "web": ("c4", {"w.00000": web[:2], "w.00001": web[2:]})})
    outs = []
    for cache, mb in ((None, 1024), (tmp_path / "cache", 1024), (tmp_path / "cache16", 16)):
        out = tmp_path / f"out-{len(outs)}"
        rep = dedup_sharded(root / "clean", root / "filtered", out, ["books", "web"],
                            DedupParams(num_perm=K, memory_mb=mb, jobs=1), cache_dir=cache)
        assert np.concatenate([dedup_status(out, root / "clean", "web")]).tolist() == [2, 0, 0, 0]
        assert dedup_status(out, root / "clean", "books").tolist() == [0]
        assert rep["containment"]["contained"] == 1
        assert rep["containment"]["contained_by_source_pair"] == {"web -> books": 1}
        assert rep["cross_source"]["removed_by_source_pair"] == {
            "web -> books": {"exact_duplicate": 0, "near_duplicate": 1}}
        outs.append({p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*.npy"))})
    assert outs[0] == outs[1] == outs[2]
    off = dedup_sharded(root / "clean", root / "filtered", tmp_path / "off", ["books", "web"],
                        DedupParams(num_perm=K, containment=False), cache_dir=tmp_path / "cache")
    assert off["docs_kept"] == off["docs_in"] == 5 and off["containment"]["contained"] == 0


def test_within_one_source_containment_changes_nothing(tmp_path):
    root = build(tmp_path, {"books": ("gutenberg", {"b.00000": [book(CHAPTERS), page(CHAPTERS[3])]}),
                            "web": ("c4", {"w.00000": [page(chapter(100))]})})
    rep = dedup_sharded(root / "clean", root / "filtered", tmp_path / "out", ["books", "web"],
                        DedupParams(num_perm=K), cache_dir=tmp_path / "cache")
    assert rep["docs_kept"] == 3 and rep["containment"]["contained"] == 0


def test_clean_writes_one_in_eight_distinct_shingles_of_the_canonical_view(tmp_path):
    texts = [book(CHAPTERS[:2]), page(CHAPTERS[4]), "", "Too short."]
    root = build(tmp_path, {"web": ("c4", {"w.00000": texts})})
    got = np.load(root / "clean" / "web" / "w.00000.contain.npy")
    want = []
    for row, t in enumerate(texts):
        h, _ = minhash.shingle_hashes([minhash.normalize(canonical.canonical_text(t))], 5)
        h = np.unique(h[(h & np.uint64(7)) == 0])
        want += [(row << 32) | int(x) for x in h.tolist()]
    assert got.dtype == np.uint64 and got.tolist() == want
    per_row = np.bincount((got >> np.uint64(32)).astype(np.int64), minlength=4)
    assert per_row[0] > 50 and per_row[2] == 0


def brute_force(docs: list[tuple[set, int, int]], threshold: float, min_samples: int, max_docs: int) -> dict:
    """{removed pref: root pref} by the rule in contain.py's docstring, with Python sets."""
    docs = [d for d in docs if len(d[0]) >= min_samples]    # smaller ones take no part
    holders = {}
    for s, _g, p in docs:
        for h in s:
            holders.setdefault(h, []).append(p)
    common = {h for h, ps in holders.items() if len(ps) > max_docs}
    by_pref = {p: (s - common, g) for s, g, p in docs}      # common phrasing counts for nothing
    shared = {}
    for h, ps in holders.items():
        if len(ps) > max_docs:
            continue
        for a, b in itertools.combinations(sorted(ps), 2):
            if by_pref[a][1] != by_pref[b][1]:
                shared[a, b] = shared.get((a, b), 0) + 1
    into = {}
    for (a, b), n in shared.items():
        sa, sb = len(by_pref[a][0]), len(by_pref[b][0])
        small, big = (b, a) if sa > sb or (sa == sb and a < b) else (a, b)   # a < b: a ranks better
        if len(by_pref[small][0]) < min_samples:
            continue
        if n >= threshold * len(by_pref[small][0]) and len(by_pref[big][0]) >= 2 * len(by_pref[small][0]):
            into.setdefault(small, []).append(big)
    best = {a: min(cs, key=lambda c: (-len(by_pref[c][0]), c)) for a, cs in into.items()}
    root = {}
    for a in sorted(best, key=lambda a: (-len(by_pref[a][0]), a)):
        root[a] = root.get(best[a], best[a])
    return root


def test_the_pass_matches_a_set_based_brute_force_and_never_removes_every_copy():
    rng = np.random.default_rng(3)
    for trial in range(30):
        pool = rng.integers(0, 400, size=400)
        docs, samples, rows, prefs, groups = [], [], [], [], []
        for u in range(3):
            n = int(rng.integers(2, 7))
            s_rows, d_rows, pr = [], np.sort(rng.choice(50, n, replace=False)).astype(np.int64), []
            for i, r in enumerate(d_rows.tolist()):
                lo = int(rng.integers(0, 300))
                s = set(pool[lo: lo + int(rng.integers(3, 60))].tolist())
                s_rows += [(r << 32) | h for h in sorted(s)]
                p = (u << 20) | i
                pr.append(p)
                docs.append((s, u % 2, p))
            samples.append(np.array(s_rows, np.uint64))
            rows.append(d_rows)
            prefs.append(np.array(pr, np.uint64))
            groups.append(u % 2)
        alive = [np.ones(len(r), bool) for r in rows]
        got = contain.in_memory(samples, rows, alive, prefs, groups, 0.7, 5, 4)
        want = brute_force(docs, 0.7, 5, 4)
        assert dict(zip(got[0].tolist(), got[2].tolist())) == want, trial
        assert not set(want.values()) & set(want)        # every root survives


def test_many_small_partitions_on_two_workers_decide_what_memory_decides(tmp_path, monkeypatch):
    """The bounded pass at a 32 KiB budget (many hash and pair partitions) on two worker
    processes gives the in-memory decision, document by document, cluster heads included."""
    monkeypatch.setattr(contain, "PAIR_BYTES", 48)  # pair partitions sized as for 48-byte pairs: several here
    from llmpipe.data import dedup_ext
    from llmpipe.data.dedup import cross_settings, decide, load_shards, resolve_bands
    books = [book(CHAPTERS[:6]), book(CHAPTERS[6:])]
    web = [page(edited(CHAPTERS[k], every=40 + k)) for k in (0, 2, 7, 9)] + [page(chapter(200 + k)) for k in range(6)]
    web.append(page(CHAPTERS[1] + CHAPTERS[8]))               # two books' chapters: in neither book enough
    root = build(tmp_path, {"books": ("gutenberg", {"b.00000": books[:1], "b.00001": books[1:]}),
                            "web": ("c4", {"w.00000": web[:5], "w.00001": web[5:]})})
    params = DedupParams(num_perm=K, jobs=1)
    units = load_shards(root / "clean", root / "filtered", ["books", "web"], [], K, tmp_path)
    bands, rows = resolve_bands(params.threshold, K, None, None, params.false_negative_weight)
    ref = decide(units, params, bands, rows, None)
    xb = cross_settings(params, units)
    ext_units = [dedup_ext.Unit(name=f"{u.source}/{u.name}", pref=u.pref, exact=u.exact, sig_path=u.sig_path,
                                fingerprint=u.fingerprint, rows=u.rows) for u in units]
    dec = dedup_ext.deduplicate(
        ext_units, num_perm=K, threshold=params.threshold, bands=bands, rows=rows, work_dir=tmp_path / "w",
        cache_dir=tmp_path / "c", memory_bytes=1 << 15, jobs=2,
        cross=dedup_ext.CrossPass([u.canon_path for u in units], [u.canon_fingerprint for u in units],
                                  [u.position[0] for u in units], params.cross_threshold, *xb),
        contain=contain.ContainPass([u.contain_path for u in units], [u.position[0] for u in units],
                                    params.contain_threshold, params.contain_min_samples, params.contain_max_docs))
    st = dec.stats["containment"]
    assert st["hash_partitions"] > 1 and st["pair_partitions"] > 1 and st["contained"] == 4, st
    for u, eu, want, head, gone in zip(units, ext_units, ref[0], ref[1], ref[4]):
        assert dec.status[eu.name].tolist() == want.tolist(), u.name
        assert dec.cluster(eu.name).tolist() == head.tolist(), u.name
        assert dec.contained[eu.name].tolist() == gone.tolist(), u.name
    assert [s.tolist() for s in ref[0]] == [[0], [0], [2, 2, 2, 2, 0], [0, 0, 0, 0, 0, 0]]


@pytest.mark.slow
def test_the_pass_as_ray_tasks_writes_the_masks_the_local_run_writes(tmp_path, ray_cluster):
    """dedup on a real 2-node Ray cluster (every partition step one task) = the local run, byte
    for byte, with the chapter copy removed."""
    import ray
    from llmpipe.core.executor import ExecParams, make
    web = [page(edited(CHAPTERS[3])), page(chapter(100)), page(CHAPTERS[5][:3] + chapter(101, 3))]
    root = build(tmp_path, {"books": ("gutenberg", {"b.00000": [book(CHAPTERS)]}),
                            "web": ("c4", {"w.00000": web})})
    outs = []
    try:
        for ex in (None, make(ExecParams(backend="ray", address=ray_cluster))):
            out = tmp_path / f"out-{len(outs)}"
            rep = dedup_sharded(root / "clean", root / "filtered", out, ["books", "web"], DedupParams(num_perm=K),
                                cache_dir=tmp_path / f"cache-{len(outs)}", executor=ex)
            assert rep["containment"]["contained_by_source_pair"] == {"web -> books": 1}
            outs.append({p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*.npy"))})
    finally:
        ray.shutdown()
    assert outs[0] == outs[1] and dedup_status(tmp_path / "out-1", root / "clean", "web").tolist() == [2, 0, 0]


def test_pair_keys_count_what_the_wide_pairs_count():
    """The bounded pass counts one uint64 per pair (ordinals), the reference 48-byte rows: on
    random records they find the same pairs, in the same orientation, with the same shared and
    common counts."""
    rng = np.random.default_rng(7)
    from llmpipe.data.dedup_ext import ROW_BITS
    for trial in range(20):
        ns = rng.integers(1, 30, size=4)
        base = np.concatenate(([0], np.cumsum(ns)))
        recs, recs_ord = [], []
        for u, n in enumerate(ns.tolist()):
            for row in range(n):
                hashes = np.unique(rng.integers(0, 60, size=int(rng.integers(1, 25))))
                r = np.empty((len(hashes), 4), np.uint64)
                r[:, 0] = hashes
                r[:, 1] = int(rng.permutation(1000)[0]) * 1000 + u * 100 + row    # unique prefs
                r[:, 2] = (u << ROW_BITS) | row
                r[:, 3] = ((u % 2) << 32) | len(hashes)
                recs.append(r)
                o = r.copy()
                o[:, 2] = base[u] + row
                recs_ord.append(o)
        rec, rec_ord = np.concatenate(recs), np.concatenate(recs_ord)
        wide, common = contain.pairs(rec, 6)
        want = {(int(a), int(b)): int(n) for a, b, n in contain.counted(wide, 2)[:, [2, 3, 6]]}
        keys, common_ord = contain.pair_keys(rec_ord, 6)
        assert len(keys) == len(wide)
        to_loc = {int(base[u] + row): (u << ROW_BITS) | row for u, n in enumerate(ns.tolist()) for row in range(n)}
        got = {(to_loc[int(k >> np.uint64(32))], to_loc[int(k & np.uint64(0xFFFFFFFF))]): int(n)
               for k, n in contain.count_keys(keys, 2)}
        assert got == want, trial
        assert sorted((to_loc[int(o)], int(c)) for o, c in common_ord) == [tuple(map(int, x)) for x in common]
