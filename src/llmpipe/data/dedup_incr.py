"""The dedup index kept between runs: a run whose shards are the last run's plus new ones redoes
only the LSH buckets that the new documents (and the documents whose exact status they changed)
touch, instead of scattering, sorting and pairing every document again.

What a run of `dedup_ext.deduplicate` leaves in its `state_dir` (llmpipe's scratch,
`data/.cache/dedup/index/`; not a DVC output; safe to delete: the next run is then a full one):
  state.json   the settings that shape decisions; per unit (in the run's order) its name,
               document count and digest (`digest`)
  alive.npy    (N,) uint8 over those units' documents in that order: 1 if it survived the exact pass
  near.npy     (P, 5) uint64: every bucket pair of the near pass, (band, key, loc of the bucket's
               best-ranked member, loc of the other member, matching slots); loc = unit index << 40 | row
  cross.npy    the same for the cross-source pass (on the canonical signatures)
  alive2.npy   (N,) uint8: 1 if it was alive when the containment pass ran
  counted.npy  (C, 5) uint64: the containment pairs sharing at least `contain.min_shared` samples,
               (loc_a, loc_b, samples_a, samples_b, shared), a the better-ranked
  common.npy   (D, 2) uint64: (loc, common samples) of those pairs' documents

A later run starts from that state (`load`) when the settings are equal, every unit of the state is
still there with the same digest, and every unit's keep ranks (prefs) lie in one range, the
ranges disjoint and the old units' ranges in their old order: the order of any two old
documents, and so the orientation of every old pair, is then unchanged. New units may come
anywhere (a file inserted between two old ones shifts their prefs, not their order). Anything
else (a shard changed or gone, other bands x rows or containment settings, a filter change) runs in
full and leaves a new state (a threshold change does not: the tables keep every candidate's slots); the decisions never depend on which way a run went (tests compare both, byte for byte).

The near pass from a state (`near_pass`). A bucket (band, key) pairs its best-ranked alive member
with every other alive member, so its pairs change only when its alive members change: a new
document joins it, or an old member is killed or revived by the exact pass (a new exact copy
that outranks it). Those documents are `dirty`; per band, their keys are the dirty buckets.
  1. the dirty keys come from the band-key cache files (`dedup_ext._band_key_files`), read at
     the dirty documents' rows;
  2. one scan of every alive document's cached keys, band by band (a read and a binary search,
     no sort, no partition files), gives the whole alive membership of every dirty bucket;
  3. those buckets are paired as the full pass pairs them; every clean bucket keeps its old pairs;
  4. a pair's matching slots depend on its two signatures only: they come from the old table
     when the pair was a candidate before, and only the new pairs read signatures;
  5. the candidates (unique pairs over bands) and the verified ones are then exactly the full
     pass's.
Its cost is the scan (8 bytes per document and band, read) plus work in the size of the dirty
buckets; the full pass writes and sorts ~24 bytes per document and band and verifies every pair.

The containment pass from a state (`contain_pass`, see its docstring) recounts the documents whose
eligibility changed and applies the deltas of hash groups that turned common; a group that turned
small runs the whole pass.

In full every time (cheap, or global by nature): staging, the exact pass (one sort of 32 bytes a
document), the components over every verified pair, and edges and `resolve` over every counted
containment pair. The state costs 2 bytes per document plus 40 bytes per bucket or counted pair on
disk; `load` and `save` read and write it whole (RAM: the same).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmpipe.data.dedup import KEPT
from llmpipe.data.dedup_ext import (ROW_BITS, ROW_MASK, _hash2, _Npy, _save, match_slots)

STATE_VERSION = 1
_SLICE = 1 << 20      # documents hashed per step (digest)


def digest(unit, extra: str = "") -> str:
    """What a unit's decisions depend on, besides the other units: its name, signature
    fingerprint, kept rows, exact hashes, and keep order within the unit (pref minus its
    smallest), plus `extra` (the fingerprints of its other inputs)."""
    h = hashlib.blake2b(digest_size=16)
    n = len(unit.pref)
    h.update(json.dumps([unit.name, unit.fingerprint, n, extra]).encode())
    low = np.uint64(unit.pref.min()) if n else np.uint64(0)
    for lo in range(0, n, _SLICE):
        hi = min(n, lo + _SLICE)
        h.update(np.ascontiguousarray(np.asarray(unit.pref[lo:hi], np.uint64) - low).tobytes())
        h.update(np.ascontiguousarray(unit.exact[lo:hi]).tobytes())
        h.update(b"all" if unit.rows is None else np.ascontiguousarray(unit.rows[lo:hi], np.int64).tobytes())
    return h.hexdigest()


# the index tables: file stem -> (columns, the columns that hold locs)
TABLES = {"near": (5, (2, 3)), "cross": (5, (2, 3)), "common": (2, (0,)), "counted": (5, (0, 1))}
MASKS = ("alive", "alive2")   # per document: survived the exact pass; alive before containment


@dataclass
class Prior:
    """A previous run's state, in this run's locs."""

    masks: dict[str, dict[str, np.ndarray]]   # MASKS -> old unit name -> (n,) bool
    tables: dict[str, np.ndarray | None]      # TABLES -> the table (locs remapped), None if not kept

    @property
    def alive(self) -> dict[str, np.ndarray]:
        return self.masks["alive"]

    @property
    def near(self):
        return self.tables["near"]

    @property
    def cross(self):
        return self.tables["cross"]

    @property
    def contain(self):
        return self.masks["alive2"], self.tables["common"], self.tables["counted"]


def _ranges_ok(units) -> tuple[bool, list[str]]:
    """Whether each unit's prefs lie in a range disjoint from the others'; the names of the
    non-empty units in range order."""
    spans = sorted((int(u.pref.min()), int(u.pref.max()), u.name) for u in units if len(u.pref))
    ok = all(a[1] < b[0] for a, b in zip(spans, spans[1:]))
    return ok, [s[2] for s in spans]


def load(state_dir: Path, units, digests: list[str], settings: dict) -> tuple[Prior | None, str]:
    """The state in `state_dir` remapped to `units`, or None and why not (a damaged state is
    never trusted: the run is then a full one)."""
    try:
        return _load(state_dir, units, digests, settings)
    except (KeyError, TypeError, AttributeError, ValueError, IndexError, OSError) as e:
        return None, f"the index is unreadable ({type(e).__name__}: {e})"


def _load(state_dir: Path, units, digests: list[str], settings: dict) -> tuple[Prior | None, str]:
    state_dir = Path(state_dir)
    try:
        meta = json.loads((state_dir / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, "no index from an earlier run"
    if meta.get("version") != STATE_VERSION or meta.get("settings") != settings:
        return None, "the settings changed"
    index = {u.name: k for k, u in enumerate(units)}
    old = meta["units"]
    for o in old:
        k = index.get(o["name"])
        if k is None:
            return None, f"shard {o['name']} is gone"
        if o["digest"] != digests[k]:
            return None, f"shard {o['name']} changed"
    ok, order = _ranges_ok(units)
    if not ok:
        return None, "the units' keep ranks interleave"
    old_names = {o["name"] for o in old}
    if [n for n in order if n in old_names] != meta["order"]:
        return None, "the old shards' keep order changed"
    remap = np.array([index[o["name"]] for o in old], np.uint64)
    ns = [o["n"] for o in old]
    cut = np.cumsum([0] + ns)
    masks, tables = {}, {}
    for name in MASKS:
        with _Npy(state_dir / f"{name}.npy") as f:
            flat = f.rows(0, f.shape[0]).astype(bool)
        if len(flat) != cut[-1]:
            return None, f"{name}.npy does not match state.json"
        masks[name] = {o["name"]: flat[cut[k]:cut[k + 1]] for k, o in enumerate(old)}
    for name, (width, loc_cols) in TABLES.items():
        path = state_dir / f"{name}.npy"
        if not path.exists():
            tables[name] = None
            continue
        with _Npy(path) as f:
            t = f.rows(0, f.shape[0])
        if t.ndim != 2 or t.shape[1] != width:
            return None, f"{path.name} is not an index table"
        for col in loc_cols:
            t[:, col] = (remap[(t[:, col] >> np.uint64(ROW_BITS)).astype(np.int64)] << np.uint64(ROW_BITS)) \
                | (t[:, col] & ROW_MASK)
        tables[name] = t
    need = ["near"] + (["cross"] if settings.get("cross") else []) + (["common", "counted"] if settings.get("contain") else [])
    if any(tables[name] is None for name in need):
        return None, "the index is incomplete"
    return Prior(masks, tables), f"{len(units) - len(old)} new shard(s)"


def save(state_dir: Path, units, digests: list[str], settings: dict, masks: dict[str, dict[str, np.ndarray]],
         tables: dict[str, np.ndarray | None]) -> None:
    """Write the state of this run (replacing the last one; a crash leaves none, never half)."""
    state_dir = Path(state_dir)
    parent = state_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    for stale in parent.glob(f"{state_dir.name}.tmp-*"):     # ours, from a run that died
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{state_dir.name}.tmp-", dir=parent))
    try:
        for name in MASKS:
            m = masks.get(name) or {}
            flat = np.concatenate([np.asarray(m.get(u.name, np.zeros(len(u.pref), bool)), np.uint8)
                                   for u in units]) if units else np.zeros(0, np.uint8)
            _save(tmp / f"{name}.npy", flat)
        for name in TABLES:
            if tables.get(name) is not None:
                _save(tmp / f"{name}.npy", np.ascontiguousarray(tables[name], np.uint64))
        meta = {"version": STATE_VERSION, "settings": settings,
                "units": [{"name": u.name, "n": len(u.pref), "digest": d} for u, d in zip(units, digests)],
                "order": _ranges_ok(units)[1]}
        (tmp / "state.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        for f in tmp.iterdir():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        if state_dir.exists():
            shutil.rmtree(state_dir)
        os.replace(tmp, state_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def changed_locs(units, status: dict[str, np.ndarray], was: dict[str, np.ndarray]) -> np.ndarray:
    """(d,) uint64 locs, ascending: the alive documents of units `was` does not name, and the
    documents of those it names that are alive now and were not, or the reverse."""
    out = [np.zeros(0, np.uint64)]
    for k, u in enumerate(units):
        now = status[u.name] == KEPT
        before = was.get(u.name)
        rows = np.flatnonzero(now if before is None else now != before)
        out.append((np.uint64(k) << np.uint64(ROW_BITS)) | rows.astype(np.uint64))
    return np.concatenate(out)


def _unit_rows(units, k: int, rows: np.ndarray, rows_paths) -> np.ndarray:
    """The band-key (signature) rows of documents `rows` of unit k."""
    if rows_paths and rows_paths[k] is not None:
        return np.asarray(units[k].rows)[rows]
    return rows


def _task_scan(k: int, keys_path: str, status_path: str, staged: str, sig_rows_path: str | None,
               dirty_path: str, bands: int) -> np.ndarray:
    """(m, 4) uint64 (band, key, pref, loc) of unit k's alive documents whose key of some band is
    dirty (`dirty_path`: (D, 2) (band, key) sorted)."""
    with _Npy(dirty_path) as f:
        dirty = f.rows(0, f.shape[0])
    cut = np.searchsorted(dirty[:, 0], np.arange(bands + 1, dtype=np.uint64))
    with _Npy(status_path) as f:
        live = np.flatnonzero(f.rows(0, f.shape[0]) == KEPT)
    if not len(live):
        return np.empty((0, 4), np.uint64)
    if sig_rows_path is None:
        sig_rows = live
    else:
        with _Npy(sig_rows_path) as f:
            sig_rows = f.rows(0, f.shape[0])[live]
    out = []
    with _Npy(keys_path) as f:
        n = f.shape[1]
        pref = None
        for band in range(bands):
            dk = dirty[cut[band]:cut[band + 1], 1]
            if not len(dk):
                continue
            key = f.flat(band * n, n)[sig_rows]
            j = np.minimum(np.searchsorted(dk, key), len(dk) - 1)
            hit = np.flatnonzero(dk[j] == key)
            if not len(hit):
                continue
            if pref is None:
                with _Npy(staged) as s:
                    pref = s.rows(0, s.shape[0])[:, 0]
            rec = np.empty((len(hit), 4), np.uint64)
            rec[:, 0], rec[:, 1], rec[:, 2] = band, key[hit], pref[live[hit]]
            rec[:, 3] = (np.uint64(k) << np.uint64(ROW_BITS)) | live[hit].astype(np.uint64)
            out.append(rec)
    return np.concatenate(out) if out else np.empty((0, 4), np.uint64)


def _dirty_keys(units, dirty: np.ndarray, keys: list[str | None], bands: int, rows_paths) -> np.ndarray:
    """(D, 2) uint64 (band, key), unique and sorted: the keys of the dirty documents."""
    out = []
    if not len(dirty):
        return np.empty((0, 2), np.uint64)
    unit = (dirty >> np.uint64(ROW_BITS)).astype(np.int64)
    cut = np.flatnonzero(np.diff(unit)) + 1
    for a, b in zip(np.concatenate(([0], cut)).tolist(), np.concatenate((cut, [len(dirty)])).tolist()):
        k = int(unit[a])
        if keys[k] is None:
            continue
        rows = _unit_rows(units, k, (dirty[a:b] & ROW_MASK).astype(np.int64), rows_paths)
        with _Npy(keys[k]) as f:
            n = f.shape[1]
            for band in range(bands):
                rec = np.empty((len(rows), 2), np.uint64)
                rec[:, 0], rec[:, 1] = band, f.flat(band * n, n)[rows]
                out.append(rec)
    if not out:
        return np.empty((0, 2), np.uint64)
    return np.unique(np.concatenate(out), axis=0)


def _in_keys(table: np.ndarray, dkeys: np.ndarray) -> np.ndarray:
    """(len(table),) bool: rows of `table` whose (band, key), columns 0-1, is in `dkeys` (sorted)."""
    hit = np.zeros(len(table), bool)
    if not len(table) or not len(dkeys):
        return hit
    for band in np.unique(table[:, 0]).tolist():
        a, b = np.searchsorted(dkeys[:, 0], [band, band + 1])
        if a == b:
            continue
        dk = dkeys[a:b, 1]
        rows = np.flatnonzero(table[:, 0] == band)
        j = np.minimum(np.searchsorted(dk, table[rows, 1]), len(dk) - 1)
        hit[rows[dk[j] == table[rows, 1]]] = True
    return hit


def pref_of(units, locs: np.ndarray) -> np.ndarray:
    """(len(locs),) uint64 prefs of documents at `locs` (any order)."""
    out = np.empty(len(locs), np.uint64)
    unit = (locs >> np.uint64(ROW_BITS)).astype(np.int64)
    row = (locs & ROW_MASK).astype(np.int64)
    for k in np.unique(unit).tolist():
        at = np.flatnonzero(unit == k)
        out[at] = np.asarray(units[k].pref)[row[at]]
    return out


def near_pass(units, staged, status_paths: list[str], keys: list[str | None], sig_paths: list[str],
              num_perm: int, threshold: float, bands: int, old: np.ndarray, dirty: np.ndarray, runner,
              share: int, run_dir: Path, stats: dict, rows_paths=None):
    """The near pass from the old bucket pairs `old` (this run's locs) and the `dirty` documents:
    (unique candidates, (verified (pref_u, pref_v, loc_u, loc_v), matching slots), the new table of
    bucket pairs), the full pass's (`dedup_ext._near_pass`) exactly."""
    dkeys = _dirty_keys(units, dirty, keys, bands, rows_paths)
    dirty_path = run_dir / "dirty-keys.npy"
    _save(dirty_path, dkeys)
    sig_rows = [rows_paths[k] if rows_paths else None for k in range(len(units))]
    hits = list(runner.map(_task_scan, ((k, keys[k], status_paths[k], staged[k], sig_rows[k], str(dirty_path), bands)
                                        for k in range(len(units)) if keys[k] is not None and staged[k] is not None)))
    hits = np.concatenate(hits) if hits else np.empty((0, 4), np.uint64)
    hits = hits[np.lexsort((hits[:, 2], hits[:, 1], hits[:, 0]))]
    head = np.ones(len(hits), bool)
    head[1:] = (hits[1:, 0] != hits[:-1, 0]) | (hits[1:, 1] != hits[:-1, 1])
    first = np.flatnonzero(head)[np.cumsum(head) - 1]
    member = np.flatnonzero(~head)
    fresh = np.empty((len(member), 5), np.uint64)
    fresh[:, 0], fresh[:, 1] = hits[member, 0], hits[member, 1]
    fresh[:, 2], fresh[:, 3] = hits[first[member], 3], hits[member, 3]
    at = pair_find(old[:, 2:4], fresh[:, 2:4])          # a pair's slots depend on its signatures only
    match = np.where(at >= 0, old[np.maximum(at, 0), 4], 0).astype(np.int64) if len(old) else np.zeros(len(fresh), np.int64)
    todo = np.flatnonzero(at < 0)
    # the new pairs, verified once each (a pair may be new in several bands)
    pu, inv = np.unique(fresh[todo, 2:4], axis=0, return_inverse=True) if len(todo) else \
        (np.empty((0, 2), np.uint64), np.zeros(0, np.int64))
    chunk = max(1, share // (num_perm * 4 * 4))
    m = match_slots(pu[:, 0], pu[:, 1], sig_paths, num_perm, chunk, rows_paths)
    match[todo] = m[inv.ravel()]
    fresh[:, 4] = match.astype(np.uint64)
    table = np.concatenate((old[~_in_keys(old, dkeys)], fresh))
    cand = np.unique(table[:, 2:5], axis=0)          # (loc_u, loc_v, match), one row per pair
    ok = cand[:, 2].astype(np.int64) >= threshold * num_perm - 1e-9
    v = cand[ok]
    pr = np.empty((len(v), 4), np.uint64)
    pr[:, 0], pr[:, 1], pr[:, 2], pr[:, 3] = pref_of(units, v[:, 0]), pref_of(units, v[:, 1]), v[:, 0], v[:, 1]
    stats.setdefault("index", {}).update(dirty_docs=int(len(dirty)), dirty_keys=int(len(dkeys)), scanned_hits=int(len(hits)),
                 pairs_reused=int(len(table) - len(fresh)), pairs_recomputed=int(len(fresh)),
                 pairs_verified_anew=int(len(pu)))
    return int(len(cand)), (pr, v[:, 2].astype(np.int64)), table


# --------------------------------------------------------------------------- containment from a state

_FILTER_BITS = 24


def _bitmap(q: np.ndarray) -> np.ndarray:
    """A 2^24-entry filter of 32-bit hashes `q` (bits 3..26: sampled hashes have their low bits 0)."""
    bits = np.zeros(1 << _FILTER_BITS, bool)
    bits[((q >> np.uint64(3)) & np.uint64((1 << _FILTER_BITS) - 1)).astype(np.int64)] = True
    return bits


def _in_set(h: np.ndarray, q: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """(len(h),) bool: h in q (sorted), through the `_bitmap` filter first."""
    if not len(q) or not len(h):
        return np.zeros(len(h), bool)
    maybe = np.flatnonzero(bits[((h >> np.uint64(3)) & np.uint64((1 << _FILTER_BITS) - 1)).astype(np.int64)])
    out = np.zeros(len(h), bool)
    j = np.minimum(np.searchsorted(q, h[maybe]), len(q) - 1)
    out[maybe[q[j] == h[maybe]]] = True
    return out


def _task_contain_scan(k: int, sample_path: str, rows_path: str | None, n_docs: int, status_path: str,
                       staged: str, group: int, min_samples: int, query_path: str | None, counts_only: bool,
                       docs_path: str | None):
    """Unit k's containment samples, read once. With a query ((Q,) sorted hashes): the samples of
    its eligible documents (alive, >= min_samples samples) that hold one, as (hash, count) rows
    (`counts_only`) or as `contain.records` rows (hash, pref, loc, group << 32 | size). With
    `docs_path` ((D,) ascending document indices): (loc, hash, size) of every sample of those
    documents, eligible or not."""
    from llmpipe.data.contain import _LOW32, _doc_of
    with _Npy(sample_path) as f:
        samples = f.rows(0, f.shape[0])
    if rows_path is None:
        doc_rows = np.arange(n_docs, dtype=np.int64)
    else:
        with _Npy(rows_path) as f:
            doc_rows = f.rows(0, f.shape[0])
    srow = (samples >> np.uint64(32)).astype(np.int64)
    row_size = np.bincount(srow, minlength=int(doc_rows[-1]) + 1 if len(doc_rows) else 0)
    size = row_size[doc_rows] if len(doc_rows) else np.zeros(0, np.int64)
    out = None
    if query_path is not None:
        with _Npy(query_path) as f:
            q = f.rows(0, f.shape[0])
        h = samples & _LOW32
        hit = np.flatnonzero(_in_set(h, q, _bitmap(q)))
        at, ok = _doc_of(samples[hit], doc_rows)
        with _Npy(status_path) as f:
            alive = f.rows(0, f.shape[0]) == KEPT
        hit, at = hit[ok], at[ok]
        good = alive[at] & (size[at] >= min_samples)
        hit, at = hit[good], at[good]
        if counts_only:
            hs, cnt = np.unique(h[hit], return_counts=True)
            out = np.stack((hs, cnt.astype(np.uint64)), axis=1) if len(hs) else np.empty((0, 2), np.uint64)
        else:
            with _Npy(staged) as f:
                pref = f.rows(0, f.shape[0])[:, 0]
            out = np.empty((len(hit), 4), np.uint64)
            out[:, 0], out[:, 1] = h[hit], pref[at]
            out[:, 2] = (np.uint64(k) << np.uint64(ROW_BITS)) | at.astype(np.uint64)
            out[:, 3] = (np.uint64(group) << np.uint64(32)) | size[at].astype(np.uint64)
    docs = np.empty((0, 3), np.uint64)
    if docs_path is not None:
        with _Npy(docs_path) as f:
            want = f.rows(0, f.shape[0])
        inside = np.zeros(len(doc_rows), bool)
        inside[want] = True
        at, ok = _doc_of(samples, doc_rows)
        sel = np.flatnonzero(ok)[inside[at[ok]]]
        d = at[sel]
        docs = np.empty((len(sel), 3), np.uint64)
        docs[:, 0] = (np.uint64(k) << np.uint64(ROW_BITS)) | d.astype(np.uint64)
        docs[:, 1] = samples[sel] & _LOW32
        docs[:, 2] = size[d].astype(np.uint64)
    return out, docs


def _scan(units, ns, staged, status_paths, cp, runner, rows_paths, sub: Path, tag: str,
          query: np.ndarray | None = None, counts_only: bool = False, docs: np.ndarray | None = None):
    """`_task_contain_scan` over the units (every unit for a query; else those holding `docs`,
    locs): (the query's rows, concatenated; for counts, summed per hash), (loc, hash, size) rows."""
    qpath = None
    if query is not None:
        qpath = sub / f"{tag}-query.npy"
        _save(qpath, np.unique(query).astype(np.uint64))
    by_unit: dict[int, np.ndarray] = {}
    if docs is not None and len(docs):
        unit = (docs >> np.uint64(ROW_BITS)).astype(np.int64)
        for k in np.unique(unit).tolist():
            by_unit[k] = np.unique((docs[unit == k] & ROW_MASK).astype(np.int64))
    tasks = []
    for k in range(len(units)):
        if not ns[k] or (query is None and k not in by_unit):
            continue
        dpath = None
        if k in by_unit:
            dpath = sub / f"{tag}-docs-{k:06d}.npy"
            _save(dpath, by_unit[k])
        tasks.append((k, str(cp.sample_paths[k]), rows_paths[k] if rows_paths else None, ns[k], status_paths[k],
                      staged[k], cp.groups[k], cp.min_samples, None if qpath is None else str(qpath), counts_only,
                      None if dpath is None else str(dpath)))
    outs, rows = [np.empty((0, 2 if counts_only else 4), np.uint64)], [np.empty((0, 3), np.uint64)]
    for o, d in runner.map(_task_contain_scan, tasks):
        if o is not None:
            outs.append(o)
        rows.append(d)
    out = np.concatenate(outs)
    if counts_only and len(out):
        out = out[np.argsort(out[:, 0], kind="stable")]
        hs, start = np.unique(out[:, 0], return_index=True)
        out = np.stack((hs, np.add.reduceat(out[:, 1], start)), axis=1)
    return out, np.concatenate(rows)


def _member(x: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    if not len(sorted_set) or not len(x):
        return np.zeros(len(x), bool)
    j = np.minimum(np.searchsorted(sorted_set, x), len(sorted_set) - 1)
    return sorted_set[j] == x


def _value_of(x: np.ndarray, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """values[i] where keys[i] == x (keys sorted, unique), else 0."""
    if not len(keys) or not len(x):
        return np.zeros(len(x), values.dtype if len(values) else np.int64)
    j = np.minimum(np.searchsorted(keys, x), len(keys) - 1)
    return np.where(keys[j] == x, values[j], 0)


def pair_find(table: np.ndarray, query: np.ndarray) -> np.ndarray:
    """(len(query),) int64: a row of `table` ((m, 2) pairs) equal to each query pair, or -1 (exact:
    the pairs as dense ranks of their two columns, one int64 code each)."""
    if not len(table) or not len(query):
        return np.full(len(query), -1, np.int64)
    ua, ia = np.unique(np.concatenate((table[:, 0], query[:, 0])), return_inverse=True)
    ub, ib = np.unique(np.concatenate((table[:, 1], query[:, 1])), return_inverse=True)
    code = ia.ravel().astype(np.int64) * len(ub) + ib.ravel()
    tc, qc = code[:len(table)], code[len(table):]
    order = np.argsort(tc, kind="stable")
    sc = tc[order]
    j = np.minimum(np.searchsorted(sc, qc), len(sc) - 1)
    return np.where(sc[j] == qc, order[j], -1)


def contain_pass(units, ns, staged, status, cp, runner, sub: Path, stats: dict, rows_paths, prior):
    """The containment pass from the last run's index: `prior` = (alive before the pass, per old
    unit name; common counts (loc, n); the counted pairs (loc_a, loc_b, samples_a, samples_b,
    shared) sharing at least `contain.min_shared` samples, both in this run's locs). Returns what
    `contain.containment_pass` returns, the same decisions.

    The documents whose eligibility changed (alive now and not then, or the reverse, with at least
    min_samples samples) are C. Pairs and common counts move only through the hashes C holds:
      - a document of C that is eligible now is recounted whole, on the eligible holders of its
        hashes whose group is small (at most max_docs holders; one scan);
      - a hash whose group turned common (more than max_docs holders now, not then) adds 1 to the
        common count of each unchanged holder and takes 1 from the shared count of each
        unchanged cross-source pair of holders (shared only falls, so no pair below the bar can
        reach it);
      - the last run's counted pairs and common counts of documents that left are dropped.
    A hash whose group turned small (a holder left) could raise pairs the last run did not keep:
    then the whole pass runs (rare: it takes a document killed by a new one)."""
    from llmpipe.data import contain as ct
    from llmpipe.data.dedup_ext import _status_files
    was_alive, old_common, old_counted = prior
    sub.mkdir(parents=True, exist_ok=True)
    status_paths = _status_files(units, status, sub)
    m = cp.max_docs
    changed = changed_locs(units, status, was_alive)
    _, cdocs = _scan(units, ns, staged, status_paths, cp, runner, rows_paths, sub, "c", docs=changed)
    cdocs = cdocs[cdocs[:, 2] >= np.uint64(cp.min_samples)]            # C: eligibility changed
    now = np.zeros(len(cdocs), bool)
    unit = (cdocs[:, 0] >> np.uint64(ROW_BITS)).astype(np.int64)
    for k in np.unique(unit).tolist():
        at = np.flatnonzero(unit == k)
        now[at] = status[units[k].name][(cdocs[at, 0] & ROW_MASK).astype(np.int64)] == KEPT
    c_locs, c_now = np.unique(cdocs[:, 0]), np.unique(cdocs[now, 0])
    # eligible holders of C's hashes, now and then
    qh = np.unique(cdocs[:, 1])
    totals, _ = _scan(units, ns, staged, status_paths, cp, runner, rows_paths, sub, "n", query=qh, counts_only=True)
    n_now = _value_of(qh, totals[:, 0], totals[:, 1]).astype(np.int64)
    n_then = n_now - np.bincount(np.searchsorted(qh, cdocs[now, 1]), minlength=len(qh)) \
        + np.bincount(np.searchsorted(qh, cdocs[~now, 1]), minlength=len(qh))
    if ((n_now <= m) & (n_then > m)).any():
        stats["containment_index"] = "full: a hash group turned small"
        return None
    turned = qh[(n_then <= m) & (n_now > m)]                            # turned common
    small = qh[(n_now <= m) & (n_now >= 2)]           # a hash of one holder pairs nothing
    want = np.union1d(np.intersect1d(small, np.unique(cdocs[now, 1])), turned)
    rec, _ = _scan(units, ns, staged, status_paths, cp, runner, rows_paths, sub, "r", query=want)
    # 1. C's eligible documents, recounted on their small groups
    in_small = _member(rec[:, 0], small)
    pr, _ = ct.pairs(rec[in_small], m)
    pr = pr[_member(pr[:, 2], c_now) | _member(pr[:, 3], c_now)]
    least = ct.min_shared(cp.threshold, cp.min_samples)
    fresh = ct.counted(pr, least)
    cnow_rows = cdocs[now]
    common_now = cnow_rows[_member(cnow_rows[:, 1], qh[n_now > m])]
    c_loc, c_n = np.unique(common_now[:, 0], return_counts=True)
    # 2. groups turned common: +1 common per unchanged holder, -1 shared per unchanged cross pair
    t = rec[_member(rec[:, 0], turned) & ~_member(rec[:, 2], c_now)]
    t = t[np.lexsort((t[:, 1], t[:, 0]))]
    d_loc, d_n = np.unique(t[:, 2], return_counts=True)
    dpairs, _ = ct.pairs(t, m) if len(t) else (np.empty((0, 6), np.uint64), None)
    # 3. the last run's counted pairs, those of documents that left dropped, deltas applied
    old_common = old_common if old_common is not None else np.empty((0, 2), np.uint64)
    old_counted = old_counted if old_counted is not None else np.empty((0, 5), np.uint64)
    kept = old_counted[~(_member(old_counted[:, 0], c_locs) | _member(old_counted[:, 1], c_locs))].copy()
    if len(dpairs) and len(kept):
        dp, dcount = np.unique(dpairs[:, 2:4], axis=0, return_counts=True)
        hit = pair_find(dp, kept[:, :2])
        kept[hit >= 0, 4] -= dcount[hit[hit >= 0]].astype(np.uint64)
        kept = kept[kept[:, 4] >= np.uint64(least)]
    new_rows = np.empty((len(fresh), 5), np.uint64)
    new_rows[:, 0], new_rows[:, 1], new_rows[:, 2:4], new_rows[:, 4] = fresh[:, 2], fresh[:, 3], fresh[:, 4:6], fresh[:, 6]
    counted = np.concatenate((kept, new_rows))
    # the common counts of the counted pairs' documents: C's from its samples; the last run's (the
    # index keeps them for its counted pairs' documents), plus groups turned common; any other from
    # its samples and the holders of its hashes (a scan; only when an old document meets a new one)
    need = np.unique(counted[:, :2])
    old_common = old_common[np.argsort(old_common[:, 0], kind="stable")]
    old_common = old_common[~_member(old_common[:, 0], c_locs)]
    value = np.zeros(len(need), np.uint64)
    known = _member(need, c_now)
    value[known] = _value_of(need[known], c_loc, c_n.astype(np.uint64))
    was = ~known & _member(need, old_common[:, 0])
    value[was] = _value_of(need[was], old_common[:, 0], old_common[:, 1]) + \
        _value_of(need[was], d_loc, d_n.astype(np.uint64))
    unknown = need[~known & ~was]
    if len(unknown):
        _, udocs = _scan(units, ns, staged, status_paths, cp, runner, rows_paths, sub, "u", docs=unknown)
        ut, _ = _scan(units, ns, staged, status_paths, cp, runner, rows_paths, sub, "t", query=udocs[:, 1],
                      counts_only=True)
        many = _value_of(udocs[:, 1], ut[:, 0], ut[:, 1]).astype(np.int64) > m
        u_loc, u_n = np.unique(udocs[many, 0], return_counts=True)
        value[~known & ~was] = _value_of(unknown, u_loc, u_n.astype(np.uint64))
    common = np.stack((need, value), axis=1) if len(need) else np.empty((0, 2), np.uint64)
    # 4. edges from every counted pair, as the full pass makes them
    c = np.empty((len(counted), 7), np.uint64)
    pa_, pb_ = pref_of(units, counted[:, 0]), pref_of(units, counted[:, 1])
    c[:, 0], c[:, 1], c[:, 2], c[:, 3] = pa_, pb_, counted[:, 0], counted[:, 1]
    c[:, 4], c[:, 5], c[:, 6] = counted[:, 2], counted[:, 3], counted[:, 4]
    c = c[np.lexsort((c[:, 1], c[:, 0]))]
    found = ct.edges(c, ct.common_of(c[:, 2], common), ct.common_of(c[:, 3], common), cp.threshold, cp.min_samples)
    out = ct.resolve(found)
    stats["containment"] = {"contained": int(len(out[0])), "changed_docs": int(len(c_locs)),
                            "turned_common": int(len(turned)), "recounted_docs": int(len(c_now)),
                            "scanned_records": int(len(rec)), "counted_reused": int(len(kept)),
                            "commons_scanned": int(len(unknown))}
    state = np.empty((len(c), 5), np.uint64)
    state[:, 0], state[:, 1], state[:, 2:] = c[:, 2], c[:, 3], c[:, 4:7]
    return out, (common, state)
