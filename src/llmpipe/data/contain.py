"""Containment across sources: a short document most of whose prose lies inside a longer one.

A web page holding one chapter of a book is a copy of part of the whole book that the Gutenberg
source holds, but their Jaccard is about 1 / (chapters in the book), far below any near-duplicate
threshold, and MinHash slots cannot see it. Containment can: c(a, b) = |S(a) & S(b)| / |S(a)| over
the word 5-gram shingles of the two canonical views (`canonical.py`), estimated, after Broder
(1997, "On the resemblance and containment of documents"), on MOD_m samples: each view's distinct
shingles whose hash has its low `canonical.SAMPLE_BITS` bits 0 (`clean@SRC` writes them to
NAME.contain.npy). The estimate is the share of a's samples that b's sample also holds; it needs no
alignment of a inside b and does not fall with b's size.

The pass runs in `dedup` after the exact, near and cross-source passes, on their survivors, and
only joins documents of different sources (within a source nothing changes):
  1. records (shingle hash, pref, loc, source << 32 | samples of the document) of every surviving
     document with at least `min_samples` samples go to partitions by hash (a smaller one can
     neither be judged nor contain a judged one);
  2. per partition, the documents sharing a hash are paired when they are at most `max_docs`
     and lie in different sources; each pair is one uint64 of the two documents' ordinals
     (the better-ranked first; a run holds at most 2^32 documents) and the pairs are written by
     cells of a hash of it, as in `dedup_ext` (8 bytes a pair, not the 48 of the reference's
     rows, which `in_memory` keeps: the 16x bench's pass went from 9.8 to 4.7 s). A hash that more surviving documents share is common phrasing (a licence, a
     site footer): it is no evidence either way, so it is counted per document as "common" and
     left out of that document's size;
  3. per pair partition, pairs are counted (`shared`); the few that share enough to matter get
     their prefs, locs and sample counts back from the ordinals; then, with the common counts of
     the documents of those pairs, document a is contained in b when a has
     at least `min_samples` samples (common ones left out) and shared >= threshold x samples(a).
  4. a contained document is removed (status NEAR) into its container when the container holds
     at least MIN_RATIO (2) times its samples: two documents of similar size are alike, not one
     inside the other, and the Jaccard passes decide them (by priority; on noisy sample counts a
     containment test would flip a coin on which copy goes). So a container always has more
     samples than what it removes: the removal graph has no cycle and the largest document of any
     connected set survives (no text is lost by chains). A removed document's cluster head is its
     container's root.
Whatever priority says, the contained copy goes and its container stays: the container's extra
text exists nowhere else, the contained one's does. Each task reads file names and row ranges, and
every partition is sized from `memory_bytes` like `dedup_ext`'s, so the pass is bounded, runs on the
same local or Ray runner and gives the same decisions whatever the partitioning (tests compare it to
`decide_in_memory`, which runs the same steps on one partition).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmpipe.core.errors import UserError
from llmpipe.data.dedup import KEPT, NEAR
from llmpipe.data.dedup_ext import (ROW_BITS, ROW_MASK, SORT_FACTOR, _load_partition, _Npy, _part_of, _pieces,
                                    _save, _shared, _sorted_run, read_pair_partition)
from llmpipe.data.minhash import mix64

_LOW32 = np.uint64(0xFFFFFFFF)
MIN_RATIO = 2     # a container holds at least twice the samples of what it contains
PAIR_BYTES = 8    # one pair key (`pair_keys`): sizes the pair partitions


@dataclass(frozen=True)
class ContainPass:
    """The containment pass of `dedup_ext.deduplicate`: per unit its sample file and source."""

    sample_paths: list[Path]   # per unit: NAME.contain.npy, (M,) uint64 clean row << 32 | hash
    groups: list[int]          # per unit: its source; pairs within one are never counted
    threshold: float           # dedup.contain_threshold
    min_samples: int           # dedup.contain_min_samples
    max_docs: int              # dedup.contain_max_docs
    fingerprints: list[str] | None = None  # per unit: its sample file's sha256 (keys the dedup index,
    #                                        `dedup_incr`); None: read from the file's bytes

    def fingerprint(self, k: int) -> str:
        if self.fingerprints is not None:
            return self.fingerprints[k]
        import hashlib
        h = hashlib.blake2b(digest_size=16)
        with open(self.sample_paths[k], "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()


# --------------------------------------------------------------------------- pure steps

def records(samples: np.ndarray, doc_rows: np.ndarray, alive: np.ndarray, pref: np.ndarray, unit: int,
            first_doc: int, group: int, min_samples: int) -> np.ndarray:
    """(m, 4) uint64 records (hash, pref, loc, group << 32 | size) of the alive documents among
    `doc_rows` (ascending clean rows of documents first_doc, first_doc + 1, ...) that have at
    least `min_samples` samples, from `samples` (clean row << 32 | hash, ascending, covering at
    least those rows). size = the document's samples. A smaller document can neither be judged
    (too few samples) nor contain a judged one (a container has twice as many), so it takes no
    part: on web corpora that is most pages."""
    at, ok = _doc_of(samples, doc_rows)
    size = np.bincount(at[ok], minlength=len(doc_rows))
    ok[ok] = alive[at[ok]] & (size[at[ok]] >= min_samples)
    at = at[ok]
    rec = np.empty((len(at), 4), np.uint64)
    rec[:, 0] = samples[ok] & _LOW32
    rec[:, 1] = pref[at]
    rec[:, 2] = (np.uint64(unit) << np.uint64(ROW_BITS)) + (first_doc + at).astype(np.uint64)
    rec[:, 3] = (np.uint64(group) << np.uint64(32)) | size[at].astype(np.uint64)
    return rec


def _doc_of(samples: np.ndarray, doc_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index into doc_rows of each sample's row, whether that row is one of doc_rows)."""
    srow = samples >> np.uint64(32)
    at = np.searchsorted(doc_rows.astype(np.uint64), srow)
    ok = at < len(doc_rows)
    ok[ok] = doc_rows[at[ok]].astype(np.uint64) == srow[ok]
    return at, ok


def _groups(rec: np.ndarray, max_docs: int, by_pref: bool = True):
    """The records of hashes held by 2..max_docs records, sorted by (hash, pref) (`by_pref`; else
    by hash, in input order within a hash), with each one's
    place in its hash group, the group's size and the record's group (source); and (C, 2) uint64
    (column 2 value, n) ascending: per document, its samples whose hash more than max_docs records
    hold (common phrasing: neither evidence for a copy nor against it, `edges`)."""
    rec = _shared(rec, 0, by_value=not by_pref)   # most sampled shingles are in one document only
    if by_pref:
        rec = rec[np.lexsort((rec[:, 1], rec[:, 0]))]
    h = rec[:, 0]
    head = np.ones(len(rec), bool)
    head[1:] = h[1:] != h[:-1]
    start = np.flatnonzero(head)
    size = np.diff(np.append(start, len(rec)))
    common_loc, common_n = np.unique(rec[np.repeat(size > max_docs, size), 2], return_counts=True)
    common = np.stack((common_loc, common_n.astype(np.uint64)), axis=1) if len(common_loc) \
        else np.empty((0, 2), np.uint64)
    keep = np.repeat((size >= 2) & (size <= max_docs), size)
    rec, pos = rec[keep], (np.arange(len(rec)) - np.repeat(start, size))[keep]
    size = np.repeat(size, size)[keep]
    return rec, pos, size, rec[:, 3] >> np.uint64(32), common


def _partners(pos: np.ndarray, size: np.ndarray, group: np.ndarray):
    """For o = 1, 2, ...: (o, indices i of records whose partner o places later in the same hash
    lies in another group)."""
    i_all = np.arange(len(pos))
    for o in range(1, int(size.max(initial=1))):
        i_all = i_all[pos[i_all] + o < size[i_all]]     # records with a partner that far: shrinks
        i = i_all[group[i_all] != group[i_all + o]]
        if len(i):
            yield o, i


def pairs(rec: np.ndarray, max_docs: int) -> tuple[np.ndarray, np.ndarray]:
    """((P, 6) uint64 (pref_a, pref_b, loc_a, loc_b, meta_a, meta_b), pref_a < pref_b: every two
    records of one hash in different groups, for hashes held by 2..max_docs records; (C, 2)
    uint64 (loc, n) ascending: per document, its common samples (`_groups`)."""
    rec, pos, size, group, common = _groups(rec, max_docs)
    out = []
    for o, i in _partners(pos, size, group):
        p = np.empty((len(i), 6), np.uint64)
        p[:, 0], p[:, 1], p[:, 2] = rec[i, 1], rec[i + o, 1], rec[i, 2]
        p[:, 3], p[:, 4], p[:, 5] = rec[i + o, 2], rec[i, 3], rec[i + o, 3]
        out.append(p)
    return (np.concatenate(out) if out else np.empty((0, 6), np.uint64)), common


def pair_keys(rec: np.ndarray, max_docs: int) -> tuple[np.ndarray, np.ndarray]:
    """`pairs` with column 2 a document ordinal (< 2^32) instead of loc, each pair as one uint64
    ord_a << 32 | ord_b (a: the better-ranked, smaller pref): 8 bytes a pair instead of 48, so
    the bounded pass moves, sorts and counts a sixth of the bytes; the pairs that share enough
    are turned back into `counted` rows afterwards (`containment_pass`). Common counts by ordinal."""
    rec, pos, size, group, common = _groups(rec, max_docs, by_pref=False)
    pref, ords = rec[:, 1], rec[:, 2]
    out = []
    for o, i in _partners(pos, size, group):
        j = i + o
        first = pref[i] < pref[j]             # a hash's records are not in pref order: orient each pair
        out.append((np.where(first, ords[i], ords[j]) << np.uint64(32)) | np.where(first, ords[j], ords[i]))
    return (np.concatenate(out) if out else np.empty(0, np.uint64)), common


def count_keys(keys: np.ndarray, min_shared: int) -> np.ndarray:
    """(C, 2) uint64 (pair key, shared) ascending by key: the `pair_keys` keys (each shared hash
    once, any order) that occur at least `min_shared` times."""
    if not len(keys):
        return np.empty((0, 2), np.uint64)
    keys = np.sort(keys)
    first = np.ones(len(keys), bool)
    first[1:] = keys[1:] != keys[:-1]
    start = np.flatnonzero(first)
    shared = np.diff(np.append(start, len(keys)))
    ok = shared >= min_shared
    return np.stack((keys[start[ok]], shared[ok].astype(np.uint64)), axis=1)


def counted(pr: np.ndarray, min_shared: int) -> np.ndarray:
    """(C, 7) uint64 (pref_a, pref_b, loc_a, loc_b, samples_a, samples_b, shared) of the pairs
    `pr` (each shared hash once, any order) that share at least `min_shared` hashes."""
    if not len(pr):
        return np.empty((0, 7), np.uint64)
    pr = pr[np.lexsort((pr[:, 1], pr[:, 0]))]
    first = np.ones(len(pr), bool)
    first[1:] = (pr[1:, 0] != pr[:-1, 0]) | (pr[1:, 1] != pr[:-1, 1])
    start = np.flatnonzero(first)
    shared = np.diff(np.append(start, len(pr)))
    ok = shared >= min_shared
    u = pr[start[ok]]
    out = np.empty((len(u), 7), np.uint64)
    out[:, :4] = u[:, :4]
    out[:, 4], out[:, 5] = u[:, 4] & _LOW32, u[:, 5] & _LOW32
    out[:, 6] = shared[ok]
    return out


def min_shared(threshold: float, min_samples: int) -> int:
    """The fewest shared samples an edge can have (a judged document has >= min_samples)."""
    return max(1, math.ceil(threshold * min_samples - 1e-9))


def common_of(locs: np.ndarray, common: np.ndarray) -> np.ndarray:
    """(len(locs),) uint64: the common-sample counts of `locs` in (loc, n) rows sorted by loc."""
    if not len(common):
        return np.zeros(len(locs), np.uint64)
    j = np.minimum(np.searchsorted(common[:, 0], locs), len(common) - 1)
    return np.where(common[j, 0] == locs, common[j, 1], 0).astype(np.uint64)


def edges(c: np.ndarray, common_a: np.ndarray, common_b: np.ndarray, threshold: float,
          min_samples: int) -> np.ndarray:
    """(E, 7) uint64 (pref_removed, loc_removed, pref_container, samples_removed, shared,
    samples_container, loc_container) of the `counted` pairs `c`, sizes without each document's common samples
    (`common_a`, `common_b`: theirs, from `pairs`): the smaller of two documents is removed when
    it has at least `threshold` of its samples in the other and the other has at least
    MIN_RATIO times its samples."""
    if not len(c):
        return np.empty((0, 7), np.uint64)
    sa = c[:, 4].astype(np.int64) - common_a.astype(np.int64)
    sb = c[:, 5].astype(np.int64) - common_b.astype(np.int64)
    shared = c[:, 6].astype(np.int64)
    a_first = sa >= sb                     # equal sizes: a (the better rank, pref_a < pref_b) first
    small, large = np.where(a_first, sb, sa), np.where(a_first, sa, sb)
    # one way only: the container holds at least MIN_RATIO x the samples; documents of similar
    # size are alike, not one inside the other, and the Jaccard passes decide them by priority
    # (a ratio test on noisy sample counts would otherwise flip a coin on which of two copies goes)
    hit = (small >= min_samples) & (shared >= threshold * small - 1e-9) & (large >= MIN_RATIO * small)
    a_first, u = a_first[hit], c[hit]
    out = np.empty((len(u), 7), np.uint64)
    out[:, 0] = np.where(a_first, u[:, 1], u[:, 0])
    out[:, 1] = np.where(a_first, u[:, 3], u[:, 2])
    out[:, 2] = np.where(a_first, u[:, 0], u[:, 1])
    out[:, 3], out[:, 4], out[:, 5] = small[hit], shared[hit], large[hit]
    out[:, 6] = np.where(a_first, u[:, 2], u[:, 3])
    return out


def resolve(found: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pref, loc, root pref) of every removed document, sorted by pref: each is removed into its
    first container in the order (most samples, then best rank), and its root is that container,
    or the container's root when the container is itself removed (containers come first in the
    order, so the roots are known when needed). `found`: the rows of `edges`."""
    if not len(found):
        z = np.zeros(0, np.uint64)
        return z, z, z
    csize = found[:, 5].astype(np.int64)
    # per removed document its best container: most samples, then smallest pref
    order = np.lexsort((found[:, 2], -csize, found[:, 0]))
    f = found[order]
    first = np.ones(len(f), bool)
    first[1:] = f[1:, 0] != f[:-1, 0]
    f = f[first]
    root = {}
    for k in np.lexsort((f[:, 0], -f[:, 3].astype(np.int64))).tolist():   # larger removed documents first
        c = int(f[k, 2])
        root[int(f[k, 0])] = root.get(c, c)
    return f[:, 0].copy(), f[:, 1].copy(), np.array([root[int(p)] for p in f[:, 0]], np.uint64)


# --------------------------------------------------------------------------- tasks (workers)

def _task_offsets(sample_path: str, clean_rows: int, out: str) -> int:
    """(clean_rows + 1,) int64 offsets of each clean row's samples in `sample_path`."""
    counts = np.zeros(clean_rows, np.int64)
    with _Npy(sample_path) as f:
        step = 1 << 20
        for lo in range(0, f.shape[0], step):
            rows = (f.flat(lo, min(step, f.shape[0] - lo)) >> np.uint64(32)).astype(np.int64)
            if len(rows) and rows[-1] >= clean_rows:
                raise UserError(f"{sample_path}: a sample of row {rows[-1]}, the shard has {clean_rows} rows; "
                                "rerun clean")
            counts += np.bincount(rows, minlength=clean_rows)
    _save(Path(out), np.concatenate(([0], np.cumsum(counts))))
    return int(counts.sum())


def _piece_records(unit: int, lo: int, hi: int, staged: str, status_path: str, rows_path: str | None,
                   sample_path: str, off_path: str, group: int, min_samples: int, first_ord: int) -> np.ndarray:
    """`records` of rows [lo, hi) of a unit, column 2 the documents' ordinals (`pair_keys`): the
    unit's first ordinal `first_ord` + row."""
    with _Npy(status_path) as f:
        alive = f.rows(lo, hi) == KEPT
    with _Npy(staged) as f:
        pref = f.rows(lo, hi)[:, 0]
    if rows_path is None:
        doc_rows = np.arange(lo, hi, dtype=np.int64)
    else:
        with _Npy(rows_path) as f:
            doc_rows = f.rows(lo, hi)
    with _Npy(off_path) as f:
        a = int(f.flat(int(doc_rows[0]), 1)[0])
        b = int(f.flat(int(doc_rows[-1]) + 1, 1)[0])
    with _Npy(sample_path) as f:
        samples = f.flat(a, b - a)
    rec = records(samples, doc_rows, alive, pref, unit, lo, group, min_samples)
    rec[:, 2] = (rec[:, 2] & ROW_MASK) + np.uint64(first_ord)
    return rec


def _task_scatter(pieces: list[tuple], parts: int, out: str) -> int:
    """Records of `pieces` [(unit, lo, hi, staged, status, rows, samples, offsets, group,
    min_samples, first ordinal)], sorted by hash partition, into one run."""
    recs = [_piece_records(*p) for p in pieces]
    rec = np.concatenate(recs) if recs else np.empty((0, 4), np.uint64)
    if parts == 1:                        # one partition: nothing to sort
        _save(Path(f"{out}.rec.npy"), rec)
        _save(Path(f"{out}.off.npy"), np.array([0, len(rec)], np.int64))
    else:
        _sorted_run(_part_of(rec[:, 0], parts), rec, parts, Path(out))   # the hashes are mixed already
    return len(rec)


def _task_pairs(p: int, runs: list[str], out: str, cell_bits: int, max_docs: int) -> int:
    """Hash partition p: its pair keys (`pair_keys`), sorted by the top bits (cells) of a hash of
    the key, with the offsets of the 2^cell_bits cells (OUT.off.npy), and its documents'
    common-sample counts (OUT.common.npy, by ordinal)."""
    pr, common = pair_keys(_load_partition(p, runs, 4), max_docs)
    _save(Path(out).with_suffix(".common.npy"), common)
    cell = (mix64(pr.copy()) >> np.uint64(64 - cell_bits)).astype(np.int64)
    order = np.argsort(cell, kind="stable")
    _save(Path(out), pr[order])
    _save(Path(out).with_suffix(".off.npy"),
          np.searchsorted(cell[order], np.arange((1 << cell_bits) + 1)).astype(np.int64))
    return len(pr)


def _task_count(q: int, parts: int, cell_bits: int, pair_files: list[str], least: int) -> np.ndarray:
    """Pair partition q (a range of cells of every pair file): its pair keys sharing at least
    `least` samples (`count_keys`)."""
    return count_keys(read_pair_partition(q, parts, cell_bits, pair_files, 1)[:, 0], least)


def _task_common(paths: list[str], ords_path: str) -> np.ndarray:
    """(len(ords),) uint64: the common-sample counts of the documents in `ords_path` (ascending
    ordinals), summed over the partitions' common files (each read in slices)."""
    with _Npy(ords_path) as f:
        ords = f.rows(0, f.shape[0])
    total = np.zeros(len(ords), np.uint64)
    for path in paths:
        with _Npy(path) as f:
            step = 1 << 18
            for lo in range(0, f.shape[0], step):     # each file is sorted by ordinal
                total += common_of(ords, f.rows(lo, min(f.shape[0], lo + step)))
    return total


# --------------------------------------------------------------------------- the pass

def containment_pass(units, ns, staged, status, cp: ContainPass, runner, share, run_dir: Path, stats: dict,
                     rows_paths, prior=None, keep: bool = False):
    """The bounded pass over the survivors (status KEPT) of `units`: (pref, loc, root pref) of the
    documents it removes, sorted by pref (`resolve`), and, when `keep` or from a `prior` (the last
    run's index, `dedup_incr.contain_pass`), this run's index: (the common-sample counts of the
    counted pairs' documents as (loc, n), sorted by loc; the counted pairs as (loc_a, loc_b,
    samples_a, samples_b, shared)), else None. stats["containment"]: its counts."""
    sub = Path(run_dir) / "contain"
    sub.mkdir()
    if prior is not None:
        from llmpipe.data import dedup_incr
        done = dedup_incr.contain_pass(units, ns, staged, status, cp, runner, sub / "incr", stats, rows_paths, prior)
        if done is not None:
            return done
        keep = True                                # it could not: the whole pass, leaving a new index
    cstats = {"samples": 0, "pairs": 0, "pair_partitions": 0, "contained": 0}
    clean_rows = []
    for u, unit in enumerate(units):
        with _Npy(cp.sample_paths[u]):
            pass                                   # a missing or broken file fails here, by name
        if unit.rows is None:
            clean_rows.append(ns[u])
        else:
            with _Npy(unit.sig_path) as f:
                clean_rows.append(f.shape[0])
    offs = [str(sub / f"off-{u:06d}.npy") for u in range(len(units))]
    cstats["samples"] = int(sum(runner.map(_task_offsets, ((str(cp.sample_paths[u]), clean_rows[u], offs[u])
                                                           for u in range(len(units))))))
    # document ordinals: unit u's rows are base[u], base[u] + 1, ...; a pair is two of them in a uint64
    base = np.concatenate(([0], np.cumsum(ns, dtype=np.int64)))
    if base[-1] >= 1 << 32:
        raise UserError(f"dedup: {base[-1]:,} documents, the containment pass handles at most 2^32 in one run; "
                        "set dedup.containment: false")
    status_paths = []
    for u, unit in enumerate(units):
        status_paths.append(str(sub / f"status-{u:06d}.npy"))
        _save(Path(status_paths[-1]), status[unit.name])
    alive = [int((status[u.name] == KEPT).sum()) for u in units]
    rec_bytes = 32 * SORT_FACTOR
    total = max(1, cstats["samples"] * 32)
    parts = max(1, math.ceil(total * SORT_FACTOR / share))
    # a piece's records are about (its documents' samples); size pieces by documents
    per_doc = max(1, cstats["samples"] // max(1, sum(ns)))
    per_task = max(1, share // (rec_bytes * per_doc + 24))

    def scatter_tasks():
        for k, task in enumerate(_pieces(ns, per_task, [u for u in range(len(units)) if alive[u]])):
            yield ([(u, lo, hi, staged[u], status_paths[u], rows_paths[u], str(cp.sample_paths[u]), offs[u],
                     cp.groups[u], cp.min_samples, int(base[u])) for u, lo, hi in task], parts,
                   str(sub / f"run-{k:06d}"))

    runs = [str(sub / f"run-{k:06d}") for k, _ in enumerate(runner.map(_task_scatter, scatter_tasks()))]
    pair_files = [str(sub / f"pairs-{p:06d}.npy") for p in range(parts)]
    most = max(1, math.ceil(total * cp.max_docs * SORT_FACTOR / share))
    cell_bits = min(16, max(1, (most - 1).bit_length()))
    n_pairs = sum(runner.map(_task_pairs, ((p, runs, pair_files[p], cell_bits, cp.max_docs)
                                           for p in range(parts))))
    for r in runs:
        os.unlink(f"{r}.rec.npy")
        os.unlink(f"{r}.off.npy")
    q_parts = min(1 << cell_bits, max(1, math.ceil(n_pairs * PAIR_BYTES * SORT_FACTOR / share)))
    least = min_shared(cp.threshold, cp.min_samples)
    keys = list(runner.map(_task_count, ((q, q_parts, cell_bits, pair_files, least) for q in range(q_parts))))
    keys = np.concatenate(keys) if keys else np.empty((0, 2), np.uint64)
    ord_a, ord_b = keys[:, 0] >> np.uint64(32), keys[:, 0] & _LOW32
    # the common-sample counts of the candidates' documents (a few), from every partition's file
    ords = np.unique(np.concatenate((ord_a, ord_b)))
    _save(sub / "ords.npy", ords)
    common_files = [str(Path(f).with_suffix(".common.npy")) for f in pair_files]
    common = next(iter(runner.map(_task_common, [(common_files, str(sub / "ords.npy"))]))) if len(ords) \
        else np.zeros(0, np.uint64)
    table = np.stack((ords, common), axis=1) if len(ords) else np.empty((0, 2), np.uint64)
    cand = _candidates(units, ords, base, rows_paths, offs, ord_a, ord_b, keys[:, 1])
    found = edges(cand, common_of(ord_a, table)[cand[:, 7]], common_of(ord_b, table)[cand[:, 7]],
                  cp.threshold, cp.min_samples)
    cstats.update(pairs=int(n_pairs), pair_partitions=q_parts, hash_partitions=parts, candidates=int(len(cand)))
    out = resolve(found)
    cstats["contained"] = int(len(out[0]))
    stats["containment"] = cstats
    state = None
    if keep:    # the common counts of the counted pairs' documents, and those pairs, by loc
        unit = np.searchsorted(base, ords.astype(np.int64), side="right") - 1
        loc = (unit.astype(np.uint64) << np.uint64(ROW_BITS)) | (ords.astype(np.int64) - base[unit]).astype(np.uint64)
        state = (np.stack((loc, common.astype(np.uint64)), axis=1) if len(ords) else np.empty((0, 2), np.uint64),
                 cand[:, [2, 3, 4, 5, 6]].copy())
    return out, state


def _candidates(units, ords: np.ndarray, base: np.ndarray, rows_paths, offs: list[str], ord_a: np.ndarray,
                ord_b: np.ndarray, shared: np.ndarray) -> np.ndarray:
    """The counted pairs as `counted` rows (pref_a, pref_b, loc_a, loc_b, samples_a, samples_b,
    shared), sorted by (pref_a, pref_b), plus column 7: each row's index in the inputs. `ords`:
    every ordinal of ord_a and ord_b, ascending; a document's samples come from its unit's
    offsets (`_task_offsets`), read once per unit that has a candidate."""
    if not len(ord_a):
        return np.empty((0, 8), np.uint64)
    unit = np.searchsorted(base, ords.astype(np.int64), side="right") - 1
    row = ords.astype(np.int64) - base[unit]
    pref, size = np.empty(len(ords), np.uint64), np.empty(len(ords), np.uint64)
    cut = np.flatnonzero(np.diff(unit)) + 1
    for a, b in zip(np.concatenate(([0], cut)).tolist(), np.concatenate((cut, [len(ords)])).tolist()):
        u = int(unit[a])
        pref[a:b] = units[u].pref[row[a:b]]
        clean_row = row[a:b]
        if rows_paths[u] is not None:
            with _Npy(rows_paths[u]) as f:
                clean_row = f.rows(0, f.shape[0])[clean_row]
        with _Npy(offs[u]) as f:
            off = f.rows(0, f.shape[0])
        size[a:b] = (off[clean_row + 1] - off[clean_row]).astype(np.uint64)
    loc = (unit.astype(np.uint64) << np.uint64(ROW_BITS)) | row.astype(np.uint64)
    ia, ib = np.searchsorted(ords, ord_a), np.searchsorted(ords, ord_b)
    out = np.empty((len(ord_a), 8), np.uint64)
    out[:, 0], out[:, 1], out[:, 2], out[:, 3] = pref[ia], pref[ib], loc[ia], loc[ib]
    out[:, 4], out[:, 5], out[:, 6], out[:, 7] = size[ia], size[ib], shared, np.arange(len(ord_a))
    return out[np.lexsort((out[:, 1], out[:, 0]))]


def in_memory(samples: list[np.ndarray], doc_rows: list[np.ndarray], alive: list[np.ndarray],
              prefs: list[np.ndarray], groups: list[int], threshold: float, min_samples: int,
              max_docs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same pass on whole arrays in RAM (the reference): per unit its samples, documents' clean
    rows, alive mask, prefs and source. Returns (pref, loc, root pref) like `containment_pass`."""
    rec = [records(s, r, a, p, u, 0, g, min_samples) for u, (s, r, a, p, g) in enumerate(zip(samples, doc_rows, alive, prefs,
                                                                              groups))]
    rec = np.concatenate(rec) if rec else np.empty((0, 4), np.uint64)
    pr, common = pairs(rec, max_docs)
    c = counted(pr, min_shared(threshold, min_samples))
    return resolve(edges(c, common_of(c[:, 2], common), common_of(c[:, 3], common), threshold, min_samples))


def apply(status: np.ndarray, cluster: np.ndarray, pref: np.ndarray, removed: tuple) -> None:
    """Set NEAR and the root as cluster head for the removed documents of one array of documents
    (`pref`: theirs), and move the documents whose head was removed to that head's root (in place)."""
    rp, _loc, root = removed
    if not len(rp):
        return
    idx = np.searchsorted(rp, pref)
    idx = np.minimum(idx, len(rp) - 1)
    hit = rp[idx] == pref
    status[hit] = NEAR
    cluster[hit] = root[idx[hit]]
    j = np.minimum(np.searchsorted(rp, cluster), len(rp) - 1)
    moved = rp[j] == cluster
    cluster[moved] = root[j[moved]]
