"""Exact + MinHash near dedup in bounded memory: partitioned on disk, grouped in parallel.

Gives exactly the decisions of `dedup.find_duplicates` (same survivor order, same buckets, same
candidate pairs, same verification, same clusters; tests compare them document by document),
but never holds the N x num_perm signature matrix, nor any array of N records, in RAM.

Input: `Unit`s, one per shard of a source: its documents' keep rank `pref` (uint64, unique over
all units, lower survives), 128-bit exact hash, and a `.npy` file of (n, num_perm) uint32
signatures. `deduplicate` copies each unit's (pref, hash) to a file of the run folder, then runs
steps of independent tasks on `jobs` worker processes (jobs=1: in this process); a task gets
file names and row ranges, never arrays, so the parent queues nothing large:

1. band keys: per unit, the `bands` LSH keys of every document (`dedup.band_keys`), written once
   to `cache_dir` under a name holding the unit's fingerprint and (bands, rows). A rerun (a new
   unit, another threshold with the same bands x rows) computes keys only for units without a
   file; one unit's keys are computed by several tasks (row ranges) when it is large.
2. exact: records (hash hi, hash lo, pref, loc) are scattered into P_exact partitions by a hash
   of the exact hash (each task writes one run file, sorted by partition); each partition is
   read from every run, sorted, and every member of a hash group but the best-ranked is EXACT,
   with that head as its cluster. loc = unit index << 40 | row says where a record's document
   lives, so no pref -> (unit, row) lookup is ever needed.
3. near, on the exact survivors: records (band key, pref, loc) go to P = bands x P_b partitions,
   (band, key mod P_b), so a bucket is always whole in one partition. A partition is sorted by
   (key, pref): each member is paired with its bucket's best-ranked member. Pairs are written
   sorted by the top bits (a "cell") of a 64-bit hash of (pref_u, pref_v), with the offset of
   every cell; pair partition q is a range of cells, read from every pair file, so a pair found
   in several bands lands in one partition and is counted once (`candidates`). Each pair partition is
   verified in chunks: the signatures of the chunk's documents are read with pread from the
   units' .npy files in (unit, row) order, never memory-mapped and never all at once.
4. the verified pairs (held in RAM: they are also returned) give connected components
   (`dedup.components`) over the documents that have a verified edge; all but the best-ranked
   member of a component are NEAR; exact copies follow their head's cluster.

Memory. `memory_bytes` is the working set of the data steps, split evenly over the `jobs`
workers: each partition, run, chunk of signature rows or pair chunk is sized to fit a worker's
share. A sort needs ~4 bytes of RAM per record byte; tasks are sized at 6 (SORT_FACTOR), because
glibc keeps freed heap between tasks (its mmap threshold rises to the largest block freed): at 4,
a worker's RSS above its baseline was ~1.4x its share, at 6 it is ~1x (bench_dedup_ext.py).
(Fixing the threshold with mallopt gave the same RSS at 4 but cost ~+1 s of system time per 4 s
of CPU on 800k documents, from page faults.) P_exact, P_b and Q follow from the total record
bytes and that share. Not counted, because they grow with N or with the data:
  - the interpreter in each process (~35 MB a worker, ~75 MB with pyarrow and llmpipe imported);
  - `status`, 1 byte per document (the result, kept in RAM throughout);
  - the verified pairs and the union-find over documents with a verified near edge (~80 bytes per
    verified pair), and, at the end, (row, cluster) of every removed document (16 bytes each);
  - one bucket or one exact-hash group larger than a worker's share (it is sorted whole);
  - the callers' `Unit.pref` / `Unit.exact` (24 bytes per document, whether in-RAM arrays or
    memory-mapped: they are read once, in slices, and their pages stay the caller's).
Disk: the run folder under `work_dir` holds ~24 bytes per document of staged input, ~32 for
exact records, 24 per document and band for near records, 32 per candidate pair; it is removed
at the end. `cache_dir` holds 8 bytes per document and band per unit; files of changed units are
not pruned here. A partition reads its slice of every run file, so the number of small reads
grows as (N / memory_bytes)^2: ~0.6M for 1B documents at 1 GB (14 bands), 16x that at 256 MB.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import multiprocessing as mp
import os
import re
import resource
import shutil
import tempfile
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from llmpipe.core import atomic
from llmpipe.core.errors import UserError
from llmpipe.core.workers import die_with_parent, resolve
from llmpipe.data.dedup import EXACT, KEPT, NEAR, band_keys, components
from llmpipe.data.minhash import mix64

ROW_BITS = 40                     # loc = unit << ROW_BITS | row
ROW_MASK = np.uint64((1 << ROW_BITS) - 1)
MAX_UNITS = 1 << 23
SORT_FACTOR = 6                   # bytes of RAM per record byte while sorting (with glibc slack)
CACHE_VERSION = 1                 # bump when band keys change formula: old cache files go unread
_READ_GAP = 1 << 16               # rows closer than this (bytes) are read in one pread
_READ_MAX = 1 << 22               # at most this many bytes per pread
_COMPARE = 1 << 12                # pairs compared per numpy step (2 x 4096 signatures copied)


@dataclass(frozen=True)
class Unit:
    """One shard of one source, as dedup sees it."""

    name: str            # unique over the units; names the band-key cache file (sanitised)
    pref: np.ndarray     # (n,) uint64, unique over all units; ascending = better survivor
    exact: np.ndarray    # (n, 2) uint64: the 128-bit exact hash (hi, lo)
    sig_path: Path       # .npy of (n, num_perm) uint32 signatures, C order (or (m, num_perm), rows below)
    fingerprint: str     # changes whenever the signature file changes: keys the band-key cache
    rows: np.ndarray | None = None  # (n,) int64 ascending: the row of each document in sig_path
    #                      (a shard's signatures cover every clean row; filter keeps some). Band
    #                      keys are then computed for every row of the file, so a filter change
    #                      reuses them


@dataclass(frozen=True)
class CrossPass:
    """A second near pass over other signatures (the canonical ones, `canonical.py`) whose
    verified pairs count only between units of different `groups` (sources)."""

    sig_paths: list[Path]      # per unit, same shape as its sig_path
    fingerprints: list[str]    # per unit: keys its band-key cache file
    groups: list[int]          # per unit: its source; a pair within one group is dropped
    threshold: float
    bands: int
    rows: int


@dataclass
class ExtDecision:
    """The decisions, per unit name. `cluster(name)` gives the (n,) uint64 cluster array."""

    status: dict[str, np.ndarray]    # per unit: (n,) int8, KEPT / EXACT / NEAR
    removed: dict[str, tuple[np.ndarray, np.ndarray]]  # per unit: rows (int64, ascending) with
    #                                  status != KEPT, and the pref of their cluster's kept head
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray]   # verified near pairs (pref_u < pref_v,
    #                                  matching slots), sorted by (pref_u, pref_v)
    candidates: int                  # unique LSH candidate pairs before verification
    clusters: int                    # clusters with >= 2 members
    stats: dict = field(default_factory=dict)  # partition counts, cache use, peak RSS of tasks
    contained: dict[str, np.ndarray] = field(default_factory=dict)  # per unit: rows the containment
    #                                  pass removed (a subset of `removed`), ascending
    _pref: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def cluster(self, name: str) -> np.ndarray:
        """(n,) uint64: the pref of the kept head of each document's cluster (its own when kept)."""
        out = np.array(self._pref[name], dtype=np.uint64)
        rows, head = self.removed[name]
        out[rows] = head
        return out


# --------------------------------------------------------------------------- .npy rows by pread

_HEADERS: dict[tuple, tuple] = {}   # (path, inode, size, mtime) -> parsed header, per process


def _header(path: str | Path, fd: int) -> tuple[tuple, np.dtype, int]:
    """(shape, dtype, data offset) of a .npy file; parsed once per process and file version
    (partition tasks open the same run files many times)."""
    st = os.fstat(fd)
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _HEADERS:
        head = io.BytesIO(os.pread(fd, 1 << 16, 0))
        version = np.lib.format.read_magic(head)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(head)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(head)
        else:
            raise UserError(f"{path}: .npy format {version} is not supported")
        if fortran and len(shape) > 1:
            raise UserError(f"{path}: Fortran-order arrays are not supported")
        if dtype.hasobject:
            raise UserError(f"{path}: object arrays are not supported")
        shape, dtype, offset = tuple(shape), np.dtype(dtype), head.tell()
        want = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if st.st_size < want:
            raise UserError(f"{path}: truncated ({st.st_size} bytes, header says {want})")
        if len(_HEADERS) > 1 << 14:
            _HEADERS.clear()
        _HEADERS[key] = (shape, dtype, offset)
    return _HEADERS[key]


class _Npy:
    """A C-order .npy file read with os.pread: no mapping, so no file pages stay in this process."""

    def __init__(self, path: str | Path):
        self.path = path
        self.fd = os.open(path, os.O_RDONLY)
        try:
            self.shape, self.dtype, self.offset = _header(self.path, self.fd)
        except BaseException:
            os.close(self.fd)
            raise
        self.row_items = int(np.prod(self.shape[1:], dtype=np.int64)) if len(self.shape) > 1 else 1
        self.row_bytes = self.row_items * self.dtype.itemsize

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> "_Npy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _read_into(self, buf: np.ndarray, byte_offset: int) -> None:
        view, done = memoryview(buf).cast("B"), 0
        while done < len(view):
            got = os.preadv(self.fd, [view[done:]], self.offset + byte_offset + done)
            if got <= 0:
                raise UserError(f"{self.path}: unexpected end of file")
            done += got

    def rows(self, lo: int, hi: int) -> np.ndarray:
        """Rows [lo, hi) of the first axis."""
        out = np.empty((hi - lo,) + self.shape[1:], self.dtype)
        if hi > lo:
            self._read_into(out, lo * self.row_bytes)
        return out

    def flat(self, start: int, count: int) -> np.ndarray:
        """`count` items from flat (C-order) item index `start`."""
        out = np.empty(count, self.dtype)
        if count:
            self._read_into(out, start * self.dtype.itemsize)
        return out

    def take(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Rows `rows` (ascending, unique), into `out` if given: nearby rows are read together,
        at most _READ_MAX bytes per read."""
        if out is None:
            out = np.empty((len(rows),) + self.shape[1:], self.dtype)
        if not len(rows):
            return out
        gap = max(1, _READ_GAP // max(self.row_bytes, 1))
        span = max(1, _READ_MAX // max(self.row_bytes, 1))
        breaks = np.flatnonzero(np.diff(rows) > gap) + 1
        starts = np.concatenate(([0], breaks))
        ends = np.concatenate((breaks, [len(rows)]))
        for a, b in zip(starts.tolist(), ends.tolist()):
            while a < b:
                first = int(rows[a])
                c = a + int(np.searchsorted(rows[a:b], first + span, side="left"))
                if c - a == int(rows[c - 1]) - first + 1:       # consecutive rows: read in place
                    self._read_into(out[a:c], first * self.row_bytes)
                else:
                    out[a:c] = self.rows(first, int(rows[c - 1]) + 1)[rows[a:c] - first]
                a = c
        return out


def _save(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.lib.format.write_array(f, np.ascontiguousarray(arr), allow_pickle=False)


# --------------------------------------------------------------------------- hashing helpers

def _hash2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(m,) uint64 mixed hash of two uint64 columns (new array; inputs untouched)."""
    with np.errstate(over="ignore"):
        x = mix64(a.astype(np.uint64) ^ np.uint64(0x2545F4914F6CDD1D))
        return mix64(x * np.uint64(0x9E3779B97F4A7C15) + b.astype(np.uint64))


def _part_of(h: np.ndarray, parts: int) -> np.ndarray:
    return (h % np.uint64(parts)).astype(np.int64)


def _sorted_run(pid: np.ndarray, rec: np.ndarray, parts: int, out: Path) -> None:
    """Write `rec` sorted by partition id and the (parts + 1,) offsets of each partition."""
    order = np.argsort(pid, kind="stable")
    _save(Path(f"{out}.rec.npy"), rec[order])
    _save(Path(f"{out}.off.npy"),
          np.searchsorted(pid[order], np.arange(parts + 1)).astype(np.int64))


def _load_partition(p: int, runs: list[str], width: int) -> np.ndarray:
    """Partition p's records from every run (RUN.off.npy, RUN.rec.npy), as (m, width) uint64."""
    spans = []
    for run in runs:
        with _Npy(run + ".off.npy") as off_file:
            lo, hi = off_file.flat(p, 2).tolist()
        if hi > lo:
            spans.append((run, lo, hi))
    out = np.empty((sum(hi - lo for _r, lo, hi in spans), width), np.uint64)
    at = 0
    for run, lo, hi in spans:
        with _Npy(run + ".rec.npy") as rec_file:
            rec_file._read_into(out[at:at + hi - lo], lo * rec_file.row_bytes)
        at += hi - lo
    return out


# --------------------------------------------------------------------------- tasks (workers)

def _task_band_keys(sig_path: str, tmp: str, n: int, lo: int, hi: int, num_perm: int, bands: int,
                    rows: int, chunk: int) -> None:
    """Band keys of rows [lo, hi) of one unit into the (bands, n) uint64 file `tmp` (pwrite)."""
    with _Npy(sig_path) as sig_file, _Npy(tmp) as out_file:
        fd = os.open(tmp, os.O_WRONLY)
        try:
            for a in range(lo, hi, chunk):
                b = min(hi, a + chunk)
                sig = sig_file.rows(a, b)
                if sig.dtype != np.uint32:
                    sig = sig.astype(np.uint32)
                docs = np.arange(b - a)
                for band in range(bands):
                    key = band_keys(sig, band, rows, docs).astype("<u8", copy=False)
                    mv, done = memoryview(key).cast("B"), 0
                    at = out_file.offset + (band * n + a) * 8
                    while done < len(mv):
                        done += os.pwrite(fd, mv[done:], at + done)
        finally:
            os.close(fd)


def _task_scatter_exact(pieces: list[tuple], parts: int, out: str) -> int:
    """Records (hi, lo, pref, loc) of `pieces` [(unit index, first row, end row, staged input)],
    sorted by exact partition, into one run."""
    recs = []
    for unit, lo, hi, staged in pieces:
        with _Npy(staged) as f:
            blk = f.rows(lo, hi)                     # (m, 3): pref, hash hi, hash lo
        rec = np.empty((hi - lo, 4), np.uint64)
        rec[:, 0], rec[:, 1], rec[:, 2] = blk[:, 1], blk[:, 2], blk[:, 0]
        rec[:, 3] = (np.uint64(unit) << np.uint64(ROW_BITS)) + np.arange(lo, hi, dtype=np.uint64)
        recs.append(rec)
    rec = np.concatenate(recs) if recs else np.empty((0, 4), np.uint64)
    _sorted_run(_part_of(_hash2(rec[:, 0], rec[:, 1]), parts), rec, parts, Path(out))
    return len(rec)


def _shared(rec: np.ndarray, col: int, by_value: bool = False) -> np.ndarray:
    """The records whose column `col` value occurs more than once (most keys are unique, so the
    full (key, pref) sort then runs on a small remainder), in input order, or sorted by that value
    (`by_value`: one stable sort, input order within a value)."""
    order = np.argsort(rec[:, col], kind="stable" if by_value else None)
    values = rec[order, col]
    same = values[1:] == values[:-1]
    keep = np.zeros(len(rec), bool)
    keep[1:] |= same
    keep[:-1] |= same
    return rec[order[keep]] if by_value else rec[np.sort(order[keep])]


def _task_group_exact(p: int, runs: list[str], out: str) -> int:
    """Exact partition p: (loc, head pref) of every document that is not its hash group's best."""
    rec = _load_partition(p, runs, 4)
    r = _shared(rec, 0)
    del rec
    r = r[np.lexsort((r[:, 2], r[:, 1], r[:, 0]))]
    head = np.ones(len(r), bool)
    head[1:] = (r[1:, 0] != r[:-1, 0]) | (r[1:, 1] != r[:-1, 1])
    head_pref = r[np.flatnonzero(head), 2][np.cumsum(head) - 1]
    dup = ~head
    _save(Path(out), np.stack([r[dup, 3], head_pref[dup]], axis=1))
    return int(dup.sum())


def _task_scatter_band(pieces: list[tuple], bands: int, sub: int, out: str) -> int:
    """Records (band key, pref, loc) of the alive documents of `pieces` [(unit index, first row,
    end row, staged input, status file, band-key file)], sorted by partition
    band * sub + key % sub, into one run. Written band by band (partitions are band-major), so
    only one band's records are in RAM."""
    live, pref, loc = [], [], []
    for unit, lo, hi, staged, status_path, _keys, _rows in pieces:
        with _Npy(status_path) as f:
            lv = np.flatnonzero(f.rows(lo, hi) == KEPT)
        with _Npy(staged) as f:
            pref.append(f.rows(lo, hi)[lv, 0])
        loc.append((np.uint64(unit) << np.uint64(ROW_BITS)) + (lo + lv).astype(np.uint64))
        live.append(lv)
    pref = np.concatenate(pref) if pref else np.empty(0, np.uint64)
    loc = np.concatenate(loc) if loc else np.empty(0, np.uint64)
    m = len(pref)
    offsets = np.zeros(bands * sub + 1, np.int64)
    with open(f"{out}.rec.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<u8", "fortran_order": False,
                                                "shape": (m * bands, 3)})
        for band in range(bands):
            key = []
            for (_u, lo, hi, _s, _st, keys_path, rows_path), lv in zip(pieces, live):
                if len(lv):
                    with _Npy(keys_path) as keys_file:
                        n = keys_file.shape[1]
                        if rows_path is None:
                            key.append(keys_file.flat(band * n + lo, hi - lo)[lv])
                        else:  # keys are per signature row: read the span these documents cover
                            with _Npy(rows_path) as rf:
                                r = rf.rows(lo, hi)[lv]
                            a = int(r[0])
                            key.append(keys_file.flat(band * n + a, int(r[-1]) + 1 - a)[r - a])
            key = np.concatenate(key) if key else np.empty(0, np.uint64)
            pid = _part_of(key, sub)
            order = np.argsort(pid, kind="stable")
            rec = np.empty((m, 3), np.uint64)
            rec[:, 0], rec[:, 1], rec[:, 2] = key[order], pref[order], loc[order]
            f.write(rec)
            offsets[band * sub + 1:(band + 1) * sub + 1] = (
                band * m + np.searchsorted(pid[order], np.arange(1, sub + 1)))
    _save(Path(f"{out}.off.npy"), offsets)
    return m * bands


def _task_group_band(p: int, runs: list[str], out: str, cell_bits: int, band: int | None = None) -> int:
    """Band partition p: every bucket member paired with the bucket's best-ranked member, as rows
    (pref_u, pref_v, loc_u, loc_v) sorted by a hash of (pref_u, pref_v), and the offsets of the
    2^cell_bits cells of that hash (its top bits): a pair partition is a range of cells. With
    `band` (the partition's), also OUT.bucket.npy: the pairs as (band, key, loc_u, loc_v), which
    the incremental index keeps (`dedup_incr`)."""
    rec = _load_partition(p, runs, 3)
    r = _shared(rec, 0)
    del rec
    r = r[np.lexsort((r[:, 1], r[:, 0]))]
    head = np.ones(len(r), bool)
    head[1:] = r[1:, 0] != r[:-1, 0]
    first = np.flatnonzero(head)[np.cumsum(head) - 1]
    member = np.flatnonzero(~head)
    hu = first[member]
    pairs = np.empty((len(member), 4), np.uint64)
    pairs[:, 0], pairs[:, 1] = r[hu, 1], r[member, 1]
    pairs[:, 2], pairs[:, 3] = r[hu, 2], r[member, 2]
    if band is not None:
        bucket = np.empty((len(member), 4), np.uint64)
        bucket[:, 0], bucket[:, 1], bucket[:, 2:] = band, r[member, 0], pairs[:, 2:]
        _save(Path(out).with_suffix(".bucket.npy"), bucket)
        del bucket
    del r, first, member, hu
    cell = (_hash2(pairs[:, 0], pairs[:, 1]) >> np.uint64(64 - cell_bits)).astype(np.int64)
    order = np.argsort(cell, kind="stable")
    _save(Path(out), pairs[order])
    _save(Path(out).with_suffix(".off.npy"),
          np.searchsorted(cell[order], np.arange((1 << cell_bits) + 1)).astype(np.int64))
    return len(pairs)


def _gather(locs: np.ndarray, sig_paths: list[str], num_perm: int, rows_paths=None) -> np.ndarray:
    """(len(locs), num_perm) uint32 signatures of `locs` (ascending unique), read unit by unit in
    row order (through the unit's signature rows when it has them)."""
    out = np.empty((len(locs), num_perm), np.uint32)
    unit = (locs >> np.uint64(ROW_BITS)).astype(np.int64)
    row = (locs & ROW_MASK).astype(np.int64)
    cut = np.flatnonzero(np.diff(unit)) + 1
    for a, b in zip(np.concatenate(([0], cut)).tolist(), np.concatenate((cut, [len(locs)])).tolist()):
        if rows_paths and rows_paths[unit[a]] is not None:
            with _Npy(rows_paths[unit[a]]) as rf:
                lo, hi = int(row[a]), int(row[b - 1]) + 1
                row[a:b] = rf.rows(lo, hi)[row[a:b] - lo]
        with _Npy(sig_paths[unit[a]]) as f:
            if f.dtype == np.uint32:
                f.take(row[a:b], out[a:b])
            else:
                out[a:b] = f.take(row[a:b])
    return out


def read_pair_partition(q: int, parts: int, cell_bits: int, pair_files: list[str], width: int) -> np.ndarray:
    """Pair partition q of every pair file (the rows of cells [q, q+1) * 2^cell_bits / parts, found
    through each file's `.off.npy` cell offsets), as one (rows, width) uint64 array."""
    c0, c1 = (q << cell_bits) // parts, ((q + 1) << cell_bits) // parts
    spans = []
    for path in pair_files:
        with _Npy(Path(path).with_suffix(".off.npy")) as f:
            off = f.flat(c0, c1 - c0 + 1)
        spans.append((path, int(off[0]), int(off[-1])))
    pr = np.empty((sum(b - a for _p, a, b in spans), width), np.uint64)
    at = 0
    for path, a, b in spans:
        if b > a:
            with _Npy(path) as f:
                f._read_into(pr[at:at + b - a], a * f.row_bytes)
            at += b - a
    return pr


def match_slots(lu: np.ndarray, lv: np.ndarray, sig_paths: list[str], num_perm: int, chunk: int,
                rows_paths=None) -> np.ndarray:
    """(len(lu),) int64: equal signature slots of the documents at locs lu[i] and lv[i], read in
    chunks of `chunk` pairs (each chunk's distinct documents gathered once, in row order)."""
    match = np.empty(len(lu), np.int64)
    for a in range(0, len(lu), chunk):
        cu, cv = lu[a:a + chunk], lv[a:a + chunk]
        locs = np.unique(np.concatenate((cu, cv)))
        sig = _gather(locs, sig_paths, num_perm, rows_paths)
        iu, iv = np.searchsorted(locs, cu), np.searchsorted(locs, cv)
        step = max(1, min(_COMPARE, chunk // 4))
        for c in range(0, len(iu), step):
            match[a + c:a + c + step] = (sig[iu[c:c + step]] == sig[iv[c:c + step]]).sum(axis=1)
    return match


def _task_verify(q: int, parts: int, cell_bits: int, pair_files: list[str], sig_paths: list[str],
                 num_perm: int, threshold: float, chunk: int,
                 rows_paths=None, keep_all: bool = False):
    """Pair partition q (cells [q, q+1) * 2^cell_bits / parts of every pair file): the unique
    candidate count, the verified (pref_u, pref_v, loc_u, loc_v) with their matching slots, and
    (`keep_all`) every candidate as (loc_u, loc_v, matching slots), else None."""
    pr = read_pair_partition(q, parts, cell_bits, pair_files, 4)
    pr = pr[np.lexsort((pr[:, 1], pr[:, 0]))]
    first = np.ones(len(pr), bool)
    first[1:] = (pr[1:, 0] != pr[:-1, 0]) | (pr[1:, 1] != pr[:-1, 1])
    pr = pr[first]
    match = match_slots(pr[:, 2], pr[:, 3], sig_paths, num_perm, chunk, rows_paths)
    ok = match >= threshold * num_perm - 1e-9
    every = None
    if keep_all:
        every = np.empty((len(pr), 3), np.uint64)
        every[:, :2], every[:, 2] = pr[:, 2:], match
    return len(pr), pr[ok], match[ok], every


# --------------------------------------------------------------------------- running tasks

def _peak_rss() -> int:
    """Peak RSS of this process, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _call(fn: Callable, args: tuple):
    return fn(*args), _peak_rss()


class _Runner:
    """Runs tasks in this process (jobs=1) or in a pool of `jobs` forkserver workers; results come
    back in task order, with at most 2 x jobs tasks (and their arguments) in flight."""

    def __init__(self, jobs: int):
        self.jobs, self.pool, self.peak = jobs, None, 0

    def map(self, fn: Callable, tasks: Iterable[tuple]) -> Iterator:
        if self.jobs > 1 and self.pool is None:       # started at the first task list
            ctx = mp.get_context("forkserver")
            ctx.set_forkserver_preload([__name__])
            self.pool = ProcessPoolExecutor(self.jobs, mp_context=ctx, initializer=die_with_parent)
        if self.pool is None:
            for args in tasks:
                out, rss = _call(fn, args)
                self.peak = max(self.peak, rss)
                yield out
            return
        pending: deque = deque()
        for args in tasks:
            pending.append(self.pool.submit(_call, fn, args))
            if len(pending) >= 2 * self.jobs:
                yield self._result(pending.popleft())
        while pending:
            yield self._result(pending.popleft())

    def _result(self, fut):
        out, rss = fut.result()
        self.peak = max(self.peak, rss)
        return out

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


class _ClusterRunner(_Runner):
    """The same, each task one task of a cluster executor (`core.executor`)."""

    def __init__(self, executor):
        super().__init__(executor.slots())
        self.executor = executor

    def map(self, fn: Callable, tasks: Iterable[tuple]) -> Iterator:
        for out, rss in self.executor.imap(_call, ((fn, args) for args in tasks)):
            self.peak = max(self.peak, rss)
            yield out

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- the driver

def _safe(text: str) -> str:
    """A file-name-safe, collision-free form of `text`."""
    digest = hashlib.blake2b(text.encode(), digest_size=5).hexdigest()
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', text)[:80]}-{digest}"


def band_key_path(cache_dir: Path, unit: Unit, bands: int, rows: int) -> Path:
    """The cache file of a unit's (bands, n) uint64 band keys."""
    return Path(cache_dir) / (f"{_safe(unit.name)}.{_safe(unit.fingerprint)}."
                              f"b{bands}r{rows}.v{CACHE_VERSION}.keys.npy")


def _cache_ok(path: Path, bands: int, n: int) -> bool:
    try:
        with _Npy(path) as f:
            return f.shape == (bands, n) and f.dtype == np.dtype("<u8")
    except (OSError, UserError, ValueError):
        return False


def _pieces(ns: list[int], per_task: int, units: Iterable[int]) -> Iterator[list[tuple[int, int, int]]]:
    """Tasks of (unit, lo, hi) pieces covering the units' rows, at most `per_task` rows each."""
    task, room = [], per_task
    for u in units:
        lo = 0
        while lo < ns[u]:
            hi = min(ns[u], lo + room)
            task.append((u, lo, hi))
            room -= hi - lo
            lo = hi
            if room == 0:
                yield task
                task, room = [], per_task
    if task:
        yield task


def _check(units: list[Unit], num_perm: int, threshold: float, bands: int, rows: int,
           memory_bytes: int, jobs: int) -> list[int]:
    """Each unit's document count, after checking arguments and signature file headers."""
    if num_perm < 1 or bands < 1 or rows < 1 or bands * rows > num_perm:
        raise ValueError(f"need 1 <= bands x rows <= num_perm (bands={bands}, rows={rows}, "
                         f"num_perm={num_perm})")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold {threshold} is not in [0, 1]")
    if jobs < 0:
        raise ValueError(f"jobs {jobs} < 0 (0 means every core)")
    if memory_bytes < 1 << 15:
        raise ValueError(f"memory_bytes {memory_bytes} is below 32 KiB")
    if len(units) > MAX_UNITS:
        raise ValueError(f"{len(units)} units: at most {MAX_UNITS}")
    names = [u.name for u in units]
    if len(set(names)) != len(names):
        raise ValueError("unit names are not unique")
    ns = []
    for u in units:
        n = len(u.pref)
        if u.pref.shape != (n,) or u.pref.dtype != np.uint64:
            raise ValueError(f"{u.name}: pref must be (n,) uint64, got {u.pref.shape} {u.pref.dtype}")
        if u.exact.shape != (n, 2) or u.exact.dtype != np.uint64:
            raise ValueError(f"{u.name}: exact must be (n, 2) uint64, got {u.exact.shape} "
                             f"{u.exact.dtype}")
        if not Path(u.sig_path).is_file():
            raise UserError(f"{u.sig_path}: no such file (signatures of unit {u.name})")
        with _Npy(u.sig_path) as f:
            m = n if u.rows is None else f.shape[0]
            if f.shape != (m, num_perm) or f.dtype.kind != "u" or f.dtype.itemsize != 4:
                raise UserError(f"{u.sig_path}: signatures {f.shape} {f.dtype}, unit {u.name} "
                                f"needs ({m}, {num_perm}) uint32")
            if u.rows is not None and (u.rows.shape != (n,) or (n and (u.rows[0] < 0 or u.rows[-1] >= m or
                                                                         (np.diff(u.rows) <= 0).any()))):
                raise ValueError(f"{u.name}: rows must be (n,) ascending rows of {u.sig_path}")
        if n >= 1 << ROW_BITS:
            raise ValueError(f"{u.name}: {n} documents: at most 2^{ROW_BITS}")
        ns.append(n)
    return ns


def deduplicate(units: list[Unit], *, num_perm: int, threshold: float, bands: int, rows: int,
                exact: bool = True, near: bool = True, work_dir: Path, cache_dir: Path,
                memory_bytes: int, jobs: int, cross: CrossPass | None = None, contain=None,
                executor=None, state_dir: Path | None = None, incremental_jobs: int | None = None) -> ExtDecision:
    """Exact, then near (LSH + verification) dedup of `units`; see the module doc.

    Same decisions as `dedup.find_duplicates` on the concatenated units (rank = pref order),
    whatever `jobs` (0: every core) and `memory_bytes`. `work_dir` gets a temporary folder,
    removed at the end; `cache_dir` keeps the units' band keys for the next run. `cross`: a
    second near pass on other signatures, its pairs kept across groups only (`cross_pass`).
    `contain`: the containment pass on the survivors (`contain.ContainPass`, `contain.py`). With a
    cluster `executor` (`core.executor`) every task is one of its tasks, `jobs` its slots: both
    folders must then be on a filesystem every node reaches. `state_dir`: the near passes start
    from the index the last run left there when only units were added (`dedup_incr`), and leave
    this run's; the decisions are the same either way. stats["index"] says which way it went;
    `incremental_jobs` (local runs only): the workers to use when it starts from the index.
    """
    ns = _check(units, num_perm, threshold, bands, rows, memory_bytes, jobs)
    jobs = resolve(jobs)
    share = max(1, memory_bytes // jobs)          # working bytes of one task
    status = {u.name: np.zeros(n, np.int8) for u, n in zip(units, ns)}
    stats: dict = {"docs": sum(ns), "jobs": jobs, "memory_bytes": memory_bytes,
                   "partitions_exact": 0, "partitions_band": 0, "partitions_pairs": 0,
                   "band_keys_computed": [], "band_keys_cached": []}
    sig_paths = [str(u.sig_path) for u in units]
    work_dir, cache_dir = Path(work_dir), Path(cache_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="dedup-", dir=work_dir))
    rows_paths: list[str | None] = []  # per unit: a file of its documents' signature rows, or None
    for k, u in enumerate(units):
        rows_paths.append(None if u.rows is None else str(run_dir / f"rows-{k:06d}.npy"))
        if u.rows is not None:
            _save(Path(rows_paths[-1]), np.ascontiguousarray(u.rows, dtype=np.int64))
    temps: list[Path] = []
    contained: dict[str, np.ndarray] = {}
    index = state_dir is not None and near
    if index:   # the index of the last run (`dedup_incr`): its bucket pairs, if every old unit is unchanged
        from llmpipe.data import dedup_incr
        settings = {"num_perm": num_perm, "bands": bands, "rows": rows,
                    "cross": None if cross is None else [cross.bands, cross.rows],
                    "contain": None if contain is None else [contain.threshold, contain.min_samples,
                                                             contain.max_docs]}
        digests = [dedup_incr.digest(u, json.dumps(["" if cross is None else cross.fingerprints[k],
                                                    "" if contain is None else contain.fingerprint(k),
                                                    None if contain is None else int(contain.groups[k])]))
                   for k, u in enumerate(units)]
        prior, why = dedup_incr.load(state_dir, units, digests, settings)
        stats["index"] = {"mode": "incremental" if prior else "full", "why": why}
        if prior is not None and executor is None and incremental_jobs is not None:
            jobs = resolve(incremental_jobs)          # from the index: little work, often not worth a pool
            share = max(1, memory_bytes // jobs)
            stats["jobs"] = jobs
    runner = _Runner(jobs) if executor is None else _ClusterRunner(executor)
    try:
        staged = _stage(units, ns, run_dir, share) if (exact or near) else []
        dup_files: list[Path] = []
        if exact and sum(ns):
            dup_files = _exact_pass(units, ns, staged, status, runner, share, run_dir, stats)
        verified = (np.empty((0, 4), np.uint64), np.empty(0, np.int64))
        candidates = 0
        masks: dict = {}
        tables: dict = {}
        if near and sum(ns):
            masks["alive"] = {u.name: status[u.name] == KEPT for u in units}
            dirty = dedup_incr.changed_locs(units, status, prior.alive) if index and prior else None
            keys = _band_key_files(units, ns, num_perm, bands, rows, cache_dir, runner, share,
                                   stats, temps)
            candidates, verified, tables["near"] = _near_pass(
                units, ns, staged, status, keys, sig_paths, num_perm, threshold, bands, runner, share, run_dir,
                stats, rows_paths, None if dirty is None else (prior.near, dirty), index)
            if cross is not None:
                verified, tables["cross"] = cross_pass(units, ns, staged, status, verified, cross, num_perm, cache_dir,
                                                   runner, share, run_dir, stats, temps, rows_paths,
                                                   None if dirty is None else (prior.cross, dirty), index)
        removed, clusters, pairs = _clusters(units, ns, status, verified, dup_files, share)
        if contain is not None and near and sum(ns):
            from llmpipe.data import contain as containment
            masks["alive2"] = {u.name: status[u.name] == KEPT for u in units}
            found, state = containment.containment_pass(units, ns, staged, status, contain, runner, share, run_dir,
                                                        stats, rows_paths, prior.contain if index and prior else None,
                                                        index)
            if state is not None:
                tables["common"], tables["counted"] = state
            removed, clusters = _with_contained(units, status, removed, found)
            unit_of = (found[1] >> np.uint64(ROW_BITS)).astype(np.int64)
            contained = {u.name: np.sort((found[1][unit_of == k] & ROW_MASK).astype(np.int64))
                         for k, u in enumerate(units)}
        if index and sum(ns):
            dedup_incr.save(state_dir, units, digests, settings, masks, tables)
    finally:
        runner.close()
        for t in temps:
            t.unlink(missing_ok=True)
        shutil.rmtree(run_dir, ignore_errors=True)
    stats["peak_rss_tasks"] = runner.peak
    return ExtDecision(status, removed, pairs, candidates, clusters, stats,
                       contained=contained, _pref={u.name: u.pref for u in units})


def _stage(units, ns, run_dir, share) -> list[str | None]:
    """Each unit's (pref, exact hi, exact lo) as one (n, 3) uint64 file in the run folder, copied
    in slices, so tasks get file names and rows, never arrays, and read only their rows."""
    paths: list[str | None] = []
    step = max(1, share // 64)
    for u, (unit, n) in enumerate(zip(units, ns)):
        if not n:
            paths.append(None)
            continue
        paths.append(str(run_dir / f"in-{u:06d}.npy"))
        with open(paths[-1], "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<u8", "fortran_order": False,
                                                    "shape": (n, 3)})
            for lo in range(0, n, step):
                hi = min(n, lo + step)
                blk = np.empty((hi - lo, 3), np.uint64)
                blk[:, 0], blk[:, 1:] = unit.pref[lo:hi], unit.exact[lo:hi]
                f.write(blk)
    return paths


def _exact_pass(units, ns, staged, status, runner, share, run_dir, stats) -> list[Path]:
    """Sets EXACT in `status`; returns the files of (loc, head pref) of exact copies."""
    n_docs = sum(ns)
    parts = max(1, math.ceil(n_docs * 32 * SORT_FACTOR / share))
    stats["partitions_exact"] = parts
    per_task = max(1, share // (32 * SORT_FACTOR))

    def scatter_tasks():
        for k, task in enumerate(_pieces(ns, per_task, range(len(units)))):
            yield ([(u, lo, hi, staged[u]) for u, lo, hi in task], parts,
                   str(run_dir / f"exact-run-{k:06d}"))

    runs = [str(run_dir / f"exact-run-{k:06d}") for k, _ in
            enumerate(runner.map(_task_scatter_exact, scatter_tasks()))]
    outs = [run_dir / f"exact-dup-{p:06d}.npy" for p in range(parts)]
    for _ in runner.map(_task_group_exact, ((p, runs, str(outs[p])) for p in range(parts))):
        pass
    for loc, _head in _read_pairs(outs, share):
        _set(status, units, loc, EXACT)
    for r in runs:
        os.unlink(f"{r}.rec.npy")
        os.unlink(f"{r}.off.npy")
    return outs


def _read_pairs(paths: list[Path], share: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(column 0, column 1) of (m, 2) uint64 files, in slices of about `share` bytes."""
    step = max(1, share // 64)
    for path in paths:
        with _Npy(path) as f:
            for lo in range(0, f.shape[0], step):
                block = f.rows(lo, min(f.shape[0], lo + step))
                yield block[:, 0], block[:, 1]


def _set(status, units, loc: np.ndarray, value: int) -> None:
    """status[unit][row] = value for every loc."""
    if not len(loc):
        return
    loc = np.sort(loc)
    unit = (loc >> np.uint64(ROW_BITS)).astype(np.int64)
    cut = np.flatnonzero(np.diff(unit)) + 1
    for a, b in zip(np.concatenate(([0], cut)).tolist(), np.concatenate((cut, [len(loc)])).tolist()):
        status[units[unit[a]].name][(loc[a:b] & ROW_MASK).astype(np.int64)] = value


def _band_key_files(units, ns, num_perm, bands, rows, cache_dir, runner, share, stats,
                    temps) -> list[str | None]:
    """The cache file of every unit's band keys, computing the missing ones (None: no docs)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    paths: list[str | None] = []
    todo = []
    nsig = []
    for u, (unit, n) in enumerate(zip(units, ns)):
        if unit.rows is not None and n:
            with _Npy(unit.sig_path) as f:
                n = f.shape[0]  # keys for every row of the file
        nsig.append(n)
        if not n:
            paths.append(None)
            continue
        path = band_key_path(cache_dir, unit, bands, rows)
        paths.append(str(path))
        if _cache_ok(path, bands, n):
            stats["band_keys_cached"].append(unit.name)
            continue
        atomic.remove_stale_temps(path)
        tmp = atomic.temp_path(path)
        temps.append(tmp)
        with open(tmp, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<u8", "fortran_order": False,
                                                    "shape": (bands, n)})
            f.truncate(f.tell() + bands * n * 8)
        todo.append((u, path, tmp))
        stats["band_keys_computed"].append(unit.name)
    chunk = max(1, share // (num_perm * 4 * 3 + 64))
    per_task = max(chunk, 1 << 16)

    tasks = ((str(units[u].sig_path), str(tmp), nsig[u], lo, min(nsig[u], lo + per_task), num_perm,
              bands, rows, chunk)
             for u, _path, tmp in todo for lo in range(0, nsig[u], per_task))
    for _ in runner.map(_task_band_keys, tasks):
        pass
    for _u, path, tmp in todo:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        temps.remove(tmp)
    return paths


def _status_files(units, status, run_dir: Path) -> list[str]:
    """Each unit's status, one file each in the run folder (tasks read their rows)."""
    paths = []
    for u, unit in enumerate(units):
        paths.append(str(run_dir / f"status-{u:06d}.npy"))
        _save(Path(paths[-1]), status[unit.name])
    return paths


def _near_pass(units, ns, staged, status, keys, sig_paths, num_perm, threshold, bands, runner, share,
               run_dir, stats, rows_paths=None, prior=None, keep: bool = False):
    """(unique candidate pairs, (verified (pref_u, pref_v, loc_u, loc_v), matching slots), the
    bucket pairs (`dedup_incr`) when `keep` or from a `prior` (old bucket pairs, dirty locs): then
    from them (`dedup_incr.near_pass`), else None)."""
    status_paths = _status_files(units, status, run_dir)
    if prior is not None:
        from llmpipe.data import dedup_incr
        old, dirty = prior
        return dedup_incr.near_pass(units, staged, status_paths, keys, sig_paths, num_perm, threshold, bands, old,
                                    dirty, runner, share, run_dir, stats, rows_paths)
    alive = [int((status[u.name] == KEPT).sum()) for u in units]
    sub = max(1, math.ceil(sum(alive) * 24 * SORT_FACTOR / share))
    parts = bands * sub
    stats["partitions_band"] = parts
    per_task = max(1, share // (24 * SORT_FACTOR + 24))

    def scatter_tasks():
        for k, task in enumerate(_pieces(ns, per_task, [u for u in range(len(units)) if alive[u]])):
            yield ([(u, lo, hi, staged[u], status_paths[u], keys[u], rows_paths[u] if rows_paths else None)
                    for u, lo, hi in task], bands, sub, str(run_dir / f"band-run-{k:06d}"))

    runs = [str(run_dir / f"band-run-{k:06d}") for k, _ in
            enumerate(runner.map(_task_scatter_band, scatter_tasks()))]
    pair_files = [str(run_dir / f"pairs-{p:06d}.npy") for p in range(parts)]
    # cells of the pair hash: enough for the most pairs there can be (one per alive record)
    most = max(1, math.ceil(sum(alive) * bands * 32 * SORT_FACTOR / share))
    cell_bits = min(16, max(1, (most - 1).bit_length()))
    n_pairs = sum(runner.map(_task_group_band, ((p, runs, pair_files[p], cell_bits, p // sub if keep else None)
                                                 for p in range(parts))))
    for r in runs:
        os.unlink(f"{r}.rec.npy")
        os.unlink(f"{r}.off.npy")
    q_parts = min(1 << cell_bits, max(1, math.ceil(n_pairs * 32 * SORT_FACTOR / share)))
    stats["partitions_pairs"] = q_parts
    chunk = max(1, share // (num_perm * 4 * 4))    # 2 signature rows per pair, + slack
    candidates, found, match, every = 0, [], [], []
    for cand, pr, m, e in runner.map(_task_verify, ((q, q_parts, cell_bits, pair_files, sig_paths,
                                                     num_perm, threshold, chunk, rows_paths, keep)
                                                    for q in range(q_parts))):
        candidates += cand
        found.append(pr)
        match.append(m)
        every.append(e)
    table = None
    if keep:   # every bucket pair with its matching slots: the index a later run starts from
        from llmpipe.data import dedup_incr
        bucket = [np.load(Path(f).with_suffix(".bucket.npy")) for f in pair_files]
        bucket = np.concatenate(bucket) if bucket else np.empty((0, 4), np.uint64)
        every = np.concatenate(every) if every else np.empty((0, 3), np.uint64)
        at = dedup_incr.pair_find(every[:, :2], bucket[:, 2:4])
        if (at < 0).any():
            raise AssertionError("dedup: a bucket pair without its verification")
        table = np.concatenate((bucket, every[at, 2:3]), axis=1)
    return candidates, (np.concatenate(found), np.concatenate(match)), table


def cross_units(units: list[Unit], cross: CrossPass) -> list[Unit]:
    """The units as the cross pass sees them: the other signature files, under their own names."""
    return [dataclasses.replace(u, name=f"{u.name}~cross", sig_path=Path(p), fingerprint=f)
            for u, p, f in zip(units, cross.sig_paths, cross.fingerprints)]


def cross_pass(units, ns, staged, status, verified, cross: CrossPass, num_perm, cache_dir, runner, share,
               run_dir, stats, temps, rows_paths, prior=None, keep: bool = False):
    """`verified` plus the pairs of a near pass over `cross.sig_paths` (on the same exact survivors)
    whose two documents lie in units of different groups; a pair both passes found is kept once,
    with the first pass's matching slots; and that pass's bucket pairs (`_near_pass`: `prior`,
    `keep`). stats["cross"]: that pass's counts."""
    if len(cross.sig_paths) != len(units) or len(cross.groups) != len(units):
        raise ValueError("cross pass: one signature file and one group per unit")
    cunits = cross_units(units, cross)
    cstatus = {c.name: status[u.name] for c, u in zip(cunits, units)}
    cstats: dict = {"band_keys_computed": [], "band_keys_cached": []}
    sub = run_dir / "cross"
    sub.mkdir()
    keys = _band_key_files(cunits, ns, num_perm, cross.bands, cross.rows, cache_dir, runner, share, cstats, temps)
    cand, (pr, match), table = _near_pass(cunits, ns, staged, cstatus, keys, [str(p) for p in cross.sig_paths],
                                          num_perm, cross.threshold, cross.bands, runner, share, sub, cstats,
                                          rows_paths, prior, keep)
    groups = np.asarray(cross.groups, np.int64)
    across = groups[(pr[:, 2] >> np.uint64(ROW_BITS)).astype(np.int64)] != \
        groups[(pr[:, 3] >> np.uint64(ROW_BITS)).astype(np.int64)]
    pr, match = pr[across], match[across]
    both = np.concatenate((verified[0], pr))
    _, first = np.unique(both[:, :2], axis=0, return_index=True)
    first.sort()
    added = int((first >= len(verified[0])).sum())
    cstats.update(candidates=int(cand), verified_across=int(len(pr)), added_pairs=added)
    stats["cross"] = cstats
    return (both[first], np.concatenate((verified[1], match))[first]), table


def _with_contained(units, status, removed, found):
    """`removed` with the containment pass's documents (status NEAR, head: their root) and every
    head that the pass removed replaced by its root; the new cluster count."""
    rp, rloc, root = found
    unit = (rloc >> np.uint64(ROW_BITS)).astype(np.int64)
    out, heads = {}, []
    for u, unit_ in enumerate(units):
        rows, head = removed[unit_.name]
        mine = np.flatnonzero(unit == u)
        new_rows = (rloc[mine] & ROW_MASK).astype(np.int64)
        status[unit_.name][new_rows] = NEAR
        head = head.copy()
        if len(rp):
            j = np.minimum(np.searchsorted(rp, head), len(rp) - 1)
            moved = rp[j] == head
            head[moved] = root[j[moved]]
        rows, head = np.concatenate((rows, new_rows)), np.concatenate((head, root[mine]))
        order = np.argsort(rows, kind="stable")
        out[unit_.name] = (rows[order], head[order])
        heads.append(head)
    return out, int(np.unique(np.concatenate(heads)).size) if heads else 0


def _clusters(units, ns, status, verified, dup_files, share):
    """NEAR into `status`; per unit (rows, cluster head) of removed documents; cluster count;
    the verified pairs as (pref_u, pref_v, match) sorted by (pref_u, pref_v)."""
    pr, match = verified
    order = np.lexsort((pr[:, 1], pr[:, 0]))
    pr, match = pr[order], match[order]
    nodes, inv = np.unique(np.concatenate((pr[:, 0], pr[:, 1])), return_inverse=True)
    iu, iv = inv[:len(pr)], inv[len(pr):]
    node_loc = np.empty(len(nodes), np.uint64)
    node_loc[iu], node_loc[iv] = pr[:, 2], pr[:, 3]
    lab = components(len(nodes), iu, iv)
    root = nodes[lab]
    near = lab != np.arange(len(nodes))
    _set(status, units, node_loc[near], NEAR)
    locs, heads = [node_loc[near]], [root[near]]
    for loc, head in _read_pairs(dup_files, share):
        if len(nodes):
            idx = np.minimum(np.searchsorted(nodes, head), len(nodes) - 1)
            head = np.where(nodes[idx] == head, root[idx], head)
        locs.append(loc)
        heads.append(head)
    loc, head = np.concatenate(locs), np.concatenate(heads)
    order = np.argsort(loc, kind="stable")
    loc, head = loc[order], head[order]
    unit = (loc >> np.uint64(ROW_BITS)).astype(np.int64)
    cut = np.searchsorted(unit, np.arange(len(units) + 1))
    removed = {}
    for u, unit_ in enumerate(units):
        a, b = cut[u], cut[u + 1]
        removed[unit_.name] = ((loc[a:b] & ROW_MASK).astype(np.int64), head[a:b].astype(np.uint64))
    clusters = int(np.unique(head).size)
    return removed, clusters, (pr[:, 0].copy(), pr[:, 1].copy(), match)
