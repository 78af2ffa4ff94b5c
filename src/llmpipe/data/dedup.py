"""Exact and MinHash near-duplicate removal across sources, on stored hashes and signatures.

Input: the filtered tables (`data/filtered/SRC.parquet`), which carry `exact_hash` (string) and
`minhash` (fixed_size_list<uint32>[num_perm]) computed once in `clean@SRC` (see minhash.py).
Only ids, hashes and signatures are held in RAM (about num_perm * 4 + 60 bytes per document);
texts are streamed once at the end, when the kept rows are written.

1. Keep order: every document gets a rank `pref` = (position of its source in `dedup.priority`,
   unlisted sources after in `sources` order, then id, then row). The copy with the lowest
   rank of any duplicate group survives, so outputs do not depend on file order.
2. Exact: documents sharing `exact_hash` (hash of the normalised text) collapse to the first.
3. Near: LSH banding (Indyk & Motwani 1998; Leskovec, Rajaraman & Ullman, "Mining of Massive
   Datasets", ch. 3): the signature is cut into `bands` bands of `rows` slots; two documents
   become a candidate pair when any band is identical, which happens with probability
   1 - (1 - s^rows)^bands at Jaccard s. Each bucket links its members to its best-ranked
   member; a link is kept only if the estimated Jaccard (share of equal slots) is >= threshold,
   which keeps precision high. Linked documents form clusters (connected components); all but
   the best-ranked member of a cluster are removed.
"""
from __future__ import annotations

from llmpipe.core.errors import UserError

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from llmpipe.core.log import n
from llmpipe.data.table import DOC_COLUMNS, DOC_SCHEMA, TableWriter, missing_input, read_batches
from llmpipe.data.minhash import mix64
from llmpipe.params import DedupParams

KEPT, EXACT, NEAR = 0, 1, 2
REASONS = {EXACT: "exact_duplicate", NEAR: "near_duplicate"}
REPORT_AT = (0.7, 0.8, 0.9)   # Jaccard levels whose detection probability the report gives
_PAIR_CHUNK = 1 << 16         # candidate pairs verified per step: 64k x num_perm bytes of bools


def detection_probability(s, bands: int, rows: int):
    """Probability that a pair with Jaccard `s` shares at least one LSH band."""
    return 1.0 - (1.0 - np.asarray(s, dtype=np.float64) ** rows) ** bands


def choose_bands(threshold: float, num_perm: int, fn_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows), bands * rows <= num_perm, minimising the weighted error areas
    (1 - w) * integral_0^t P(s) ds + w * integral_t^1 (1 - P(s)) ds with P the detection
    probability: the first term counts candidates below the threshold (each costs one
    verification), the second counts duplicates above it that are never compared."""
    lo, hi = np.linspace(0.0, threshold, 513), np.linspace(threshold, 1.0, 513)
    best = (np.inf, 1, 1)
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = np.trapezoid(detection_probability(lo, b, r), lo)
            fn = np.trapezoid(1.0 - detection_probability(hi, b, r), hi)
            err = (1.0 - fn_weight) * fp + fn_weight * fn
            if err < best[0] - 1e-12:
                best = (err, b, r)
    return best[1], best[2]


def resolve_bands(threshold: float, num_perm: int, bands: int | None, rows: int | None,
                  fn_weight: float) -> tuple[int, int]:
    """The bands x rows to use: both given -> them; one given -> the other fills num_perm."""
    if bands and rows:
        return bands, rows
    if bands:
        return bands, num_perm // bands
    if rows:
        return num_perm // rows, rows
    return choose_bands(threshold, num_perm, fn_weight)


@dataclass
class Index:
    """What dedup holds in RAM for N documents (no text)."""

    sources: list[str]        # source names, in `sources` order
    offsets: np.ndarray       # (S + 1,) int64: documents of source k are [offsets[k], offsets[k+1])
    ids: pa.ChunkedArray      # (N,) string
    hashes: np.ndarray        # (N,) bytes: exact_hash
    sig: np.ndarray           # (N, num_perm) uint32
    pref: np.ndarray          # (N,) int64 keep rank: 0 is kept first

    def source_of(self, i: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.offsets, i, side="right") - 1


def _signature_block(col: pa.ChunkedArray | pa.Array, num_perm: int, path: Path,
                     first_row: int) -> np.ndarray:
    """(rows, num_perm) uint32 from a minhash list column, checking its width."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if len(arr) == 0:
        return np.empty((0, num_perm), np.uint32)
    if arr.null_count:
        raise UserError(f"{path}: column minhash has {arr.null_count} null rows; rerun clean")
    lengths = pc.list_value_length(arr).to_numpy()
    if (lengths != num_perm).any():
        row = int(np.flatnonzero(lengths != num_perm)[0])
        raise UserError(f"{path}: row {first_row + row}: minhash has {lengths[row]} slots but "
                         f"dedup.num_perm is {num_perm}; rerun `dvc repro clean` after changing "
                         f"num_perm")
    return arr.flatten().to_numpy().astype(np.uint32, copy=False).reshape(-1, num_perm)


def load_index(paths: dict[str, Path], num_perm: int, priority: list[str]) -> Index:
    """Read id, exact_hash and minhash of every source (in `paths` order); rank documents."""
    sources, counts, ids, hashes = list(paths), [0], [], []
    for src, path in paths.items():
        path = Path(path)
        if not path.exists():
            raise missing_input(path, f"filter@{src}")
        pf = pq.ParquetFile(path)
        for need in ("id", "exact_hash", "minhash"):
            if need not in pf.schema_arrow.names:
                raise UserError(f"{path}: missing column {need!r}; it is written by clean@{src} "
                                 f"(columns here: {pf.schema_arrow.names})")
        counts.append(pf.metadata.num_rows)
    offsets = np.cumsum(counts, dtype=np.int64)
    n_docs = int(offsets[-1])
    sig = np.empty((n_docs, num_perm), np.uint32)       # filled in place: no second copy
    for k, path in enumerate(paths.values()):
        row = 0
        for batch in read_batches(path, ["id", "exact_hash", "minhash"]):
            lo = int(offsets[k]) + row
            sig[lo: lo + batch.num_rows] = _signature_block(batch.column("minhash"), num_perm,
                                                            Path(path), row)
            ids.append(batch.column("id"))
            for name in ("id", "exact_hash"):
                if batch.column(name).null_count:
                    bad = int(np.flatnonzero(batch.column(name).is_null().to_numpy(
                        zero_copy_only=False))[0])
                    raise UserError(f"{path}: row {row + bad}: {name} is null; rerun clean")
            hashes.append(np.array(batch.column("exact_hash").to_pylist(), dtype=np.bytes_))
            row += batch.num_rows
        if row != counts[k + 1]:
            raise UserError(f"{path}: metadata says {counts[k + 1]} rows, read {row}")
    ids_arr = pa.chunked_array(ids, type=pa.string())
    rank_of = {s: (priority.index(s) if s in priority else len(priority) + k)
               for k, s in enumerate(sources)}
    rank = np.repeat([rank_of[s] for s in sources], np.diff(offsets)).astype(np.int32)
    order = pc.sort_indices(pa.table({"rank": rank, "id": ids_arr, "row": np.arange(n_docs)}),
                            sort_keys=[("rank", "ascending"), ("id", "ascending"),
                                       ("row", "ascending")]).to_numpy()
    pref = np.empty(n_docs, np.int64)
    pref[order] = np.arange(n_docs)
    hs = np.concatenate(hashes) if hashes else np.empty(0, np.bytes_)
    return Index(sources, offsets, ids_arr, hs, sig, pref)


def band_keys(sig: np.ndarray, band: int, rows: int, docs: np.ndarray) -> np.ndarray:
    """(len(docs),) uint64 hash of slots [band*rows, (band+1)*rows) of sig[docs]."""
    h = np.full(len(docs), band + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for c in range(band * rows, (band + 1) * rows):
            h = mix64(h * np.uint64(0x9E3779B97F4A7C15) + sig[docs, c].astype(np.uint64))
    return h


def candidate_pairs(sig: np.ndarray, bands: int, rows: int,
                    docs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Unique (u, v), u < v, positions into `docs` (rows of `sig`, ranked best first; default
    all) whose signatures share a band. Each bucket links every member to its first
    (best-ranked) member: O(N) pairs per band, never a bucket's N^2.
    """
    docs = np.arange(len(sig)) if docs is None else docs
    codes = []
    for band in range(bands if len(docs) > 1 else 0):
        key = band_keys(sig, band, rows, docs)
        order = np.argsort(key, kind="stable")          # stable: ranks stay ascending in buckets
        k = key[order]
        head = np.concatenate(([True], k[1:] != k[:-1]))
        first = order[np.flatnonzero(head)][np.cumsum(head) - 1]
        member = ~head
        codes.append(np.unique(first[member].astype(np.int64) * len(docs) + order[member]))
    if not codes:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    code = np.unique(np.concatenate(codes))
    return code // max(len(docs), 1), code % max(len(docs), 1)


def matching_slots(sig: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(P,) int: equal slots of sig[u] and sig[v]; divided by num_perm it estimates Jaccard."""
    out = np.empty(len(u), np.int64)
    for lo in range(0, len(u), _PAIR_CHUNK):
        sl = slice(lo, lo + _PAIR_CHUNK)
        out[sl] = (sig[u[sl]] == sig[v[sl]]).sum(axis=1)
    return out


def components(n: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Connected components of n nodes and edges (u, v): label = smallest node of the component.

    Min-label propagation with hooking of old labels and pointer jumping (union-find, vectorised).
    """
    lab = np.arange(n)
    while len(u):
        m = np.minimum(lab[u], lab[v])
        new = lab.copy()
        for idx in (u, v, lab[u], lab[v]):
            np.minimum.at(new, idx, m)
        while not np.array_equal(jump := new[new], new):
            new = jump
        if np.array_equal(new, lab):
            break
        lab = new
    return lab


@dataclass
class Decision:
    status: np.ndarray        # (N,) int8: KEPT, EXACT or NEAR
    cluster: np.ndarray       # (N,) int64: the kept document of the doc's duplicate cluster
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray]  # verified near pairs (u, v, matching slots)
    candidates: int           # candidate pairs from LSH before verification


@dataclass
class Cross:
    """The cross-source pass of `find_duplicates`: canonical signatures, each document's group."""

    sig: np.ndarray           # (N, num_perm) uint32, rows as `Index.sig`
    group: np.ndarray         # (N,) int: source of each document; pairs within one are dropped
    threshold: float
    bands: int
    rows: int


def find_duplicates(index: Index, threshold: float, bands: int, rows: int, *, exact: bool = True,
                    near: bool = True, cross: Cross | None = None) -> Decision:
    """Exact groups by hash, then LSH candidates among exact survivors, verified and clustered.
    `exact` / `near` false switch either pass off (`dedup.exact`, `dedup.near`). `cross`: a second
    LSH pass on the canonical signatures whose verified pairs count only across groups; the
    clusters are the components of both passes' pairs."""
    n, num_perm = index.sig.shape
    by_rank = np.argsort(index.pref)                     # (N,) document indices, best first
    status = np.zeros(n, np.int8)
    cluster = np.arange(n)
    # exact: first (best-ranked) occurrence of each hash is kept
    if n and exact:
        _, first, inv = np.unique(index.hashes[by_rank], return_index=True, return_inverse=True)
        head = by_rank[first[inv.ravel()]]               # (N,) in by_rank order
        cluster[by_rank] = head
        status[by_rank[head != by_rank]] = EXACT
    alive = by_rank[status[by_rank] == KEPT]             # exact survivors, best first
    if not near:
        none = np.zeros(0, np.int64)
        return Decision(status, cluster[cluster], (none, none, none), 0)
    cu, cv = candidate_pairs(index.sig, bands, rows, alive)
    match = matching_slots(index.sig, alive[cu], alive[cv])
    ok = match >= threshold * num_perm - 1e-9
    u, v, match = cu[ok], cv[ok], match[ok]
    if cross is not None:
        u, v, match = _with_cross(cross, alive, u, v, match)
    lab = components(len(alive), u, v)
    near = lab != np.arange(len(alive))
    status[alive[near]] = NEAR
    cluster[alive] = alive[lab]
    cluster = cluster[cluster]                           # exact copies follow their head's cluster
    return Decision(status, cluster, (alive[u], alive[v], match), len(cu))


def _with_cross(cross: Cross, alive: np.ndarray, u, v, match):
    """(u, v, match) plus the canonical pass's verified pairs across groups, sorted by (u, v);
    a pair both found keeps the first pass's matching slots."""
    cu, cv = candidate_pairs(cross.sig, cross.bands, cross.rows, alive)
    across = cross.group[alive[cu]] != cross.group[alive[cv]]
    cu, cv = cu[across], cv[across]
    m = matching_slots(cross.sig, alive[cu], alive[cv])
    ok = m >= cross.threshold * cross.sig.shape[1] - 1e-9
    code = np.concatenate((u * len(alive) + v, cu[ok] * len(alive) + cv[ok]))
    _, first = np.unique(code, return_index=True)
    allm = np.concatenate((match, m[ok]))
    code = code[first]
    return code // max(len(alive), 1), code % max(len(alive), 1), allm[first]


def _examples(index: Index, dec: Decision, max_examples: int) -> list[dict]:
    """The verified pairs closest to the threshold (most informative), as report entries."""
    u, v, match = dec.pairs
    if not max_examples or not len(u):
        return []
    pick = np.lexsort((index.pref[v], index.pref[u], match))[:max_examples]
    num_perm = index.sig.shape[1]
    out = []
    for p in pick:
        ends = {}
        for side, i in (("a", int(u[p])), ("b", int(v[p]))):
            k = int(index.source_of(np.array([i]))[0])
            ends[side] = {"id": index.ids[i].as_py(), "source": index.sources[k],
                          "row": i - int(index.offsets[k]),
                          "status": "kept" if dec.status[i] == KEPT else REASONS[dec.status[i]]}
        out.append({"jaccard_estimate": round(float(match[p]) / num_perm, 4), **ends})
    return out


def write_kept(index: Index, dec: Decision, in_paths: dict[str, Path],
               out_paths: dict[str, Path], examples: list[dict], progress=None) -> dict:
    """Stream each filtered table, write its kept rows (Document columns); per-source counts.

    Also fills the first 80 characters of text into `examples` (rows read on the way).
    """
    want = {(e[s]["source"], e[s]["row"]): e[s] for e in examples for s in ("a", "b")}
    per_source = {}
    for k, src in enumerate(index.sources):
        lo, hi = int(index.offsets[k]), int(index.offsets[k + 1])
        status = dec.status[lo:hi]
        chars_in = chars_kept = 0
        row = 0
        with TableWriter(out_paths[src], DOC_SCHEMA) as w:
            for batch in read_batches(in_paths[src], DOC_COLUMNS):
                keep = status[row: row + batch.num_rows] == KEPT
                lengths = pc.utf8_length(batch.column("text")).to_numpy(zero_copy_only=False)
                chars_in += int(lengths.sum())
                chars_kept += int(lengths[keep].sum())
                for (s, r), end in want.items():
                    if s == src and row <= r < row + batch.num_rows:
                        end["text"] = batch.column("text")[r - row].as_py()[:80]
                w.write(batch.filter(pa.array(keep)))
                row += batch.num_rows
                if progress is not None:
                    progress.update(batch.num_rows)
        if row != hi - lo:
            raise UserError(f"{in_paths[src]}: changed while dedup ran "
                             f"({hi - lo} rows, now {row})")
        per_source[src] = {
            "docs_in": hi - lo, "docs_kept": int((status == KEPT).sum()),
            "dropped_by_reason": {name: int((status == code).sum())
                                  for code, name in REASONS.items()},
            "chars_in": chars_in, "chars_kept": chars_kept,
        }
    return per_source


def dedup(in_paths: dict[str, Path], out_paths: dict[str, Path], params: DedupParams,
          progress=None) -> dict:
    """The `dedup` stage: decide on stored hashes/signatures, write kept rows; the report.

    `params` is a DedupParams; `in_paths`/`out_paths` map source -> table, in `sources` order.
    """
    index = load_index(in_paths, params.num_perm, params.priority)
    bands, rows = resolve_bands(params.threshold, params.num_perm, params.bands, params.rows,
                                params.false_negative_weight)
    dec = find_duplicates(index, params.threshold, bands, rows, exact=params.exact, near=params.near)
    examples = _examples(index, dec, params.max_examples)
    per_source = write_kept(index, dec, in_paths, out_paths, examples, progress)
    total = {key: sum(s[key] for s in per_source.values())
             for key in ("docs_in", "docs_kept", "chars_in", "chars_kept")}
    total["dropped_by_reason"] = {name: sum(s["dropped_by_reason"][name]
                                            for s in per_source.values())
                                  for name in REASONS.values()}
    dup = dec.cluster != np.arange(len(dec.cluster))
    return {
        **total,
        "clusters": int(np.unique(dec.cluster[dup]).size),
        "candidate_pairs": dec.candidates,
        "verified_pairs": int(len(dec.pairs[0])),
        "threshold": params.threshold, "num_perm": params.num_perm, "bands": bands, "rows": rows,
        "detection_probability": {f"jaccard_{s}": round(float(detection_probability(s, bands,
                                                                                    rows)), 4)
                                  for s in REPORT_AT},
        "per_source": per_source,
        "examples": examples,
    }


def summary_line(report: dict, seconds: float) -> str:
    """The dedup stage's one-line summary."""
    d = report["dropped_by_reason"]
    return (f"dedup: {n(report['docs_in'])} docs in, {n(report['docs_kept'])} kept, {n(d['exact_duplicate'])} exact + "
            f"{n(d['near_duplicate'])} near duplicates removed, {n(report['clusters'])} clusters "
            f"({report['bands']} bands x {report['rows']} rows) in {seconds:.1f}s "
            f"({n(report['docs_in'] / max(seconds, 1e-9))} docs/s)")


# --------------------------------------------------------------------------- sharded dedup

FILTERED = 3          # status of a clean row that filter dropped (dedup never saw it)
SMALL_DOCS = 100_000  # dedup.jobs 0 runs in one process below this many documents
SMALL_DOCS_INDEX = 1_000_000  # ... and below this many when it starts from the last run's index (`dedup_incr`):
#                               at 143k documents one process took 5.6-6.0 CPU s (5.5-6.0 s wall), two 8.0-8.2 (6.5-6.9)
SHARD_BITS, ROW_BITS = 32, 24


@dataclass
class SourceShard:
    """One clean shard as dedup sees it: the rows filter kept and their keep ranks."""

    source: str
    name: str
    rows: np.ndarray      # (n,) int64: clean rows of the documents filter kept
    pref: np.ndarray      # (n,) uint64: keep rank (lower survives), unique over the corpus
    exact: np.ndarray     # (n, 2) uint64: the 128-bit exact hash
    clean_rows: int       # rows of the clean shard
    sig_path: Path        # NAME.minhash.npy (clean rows x num_perm)
    fingerprint: str      # of what decides band keys: the shard's signatures
    position: tuple[int, int]  # (source rank, shard index): the top bits of its prefs
    canon_path: Path | None = None   # NAME.canon.npy: canonical signatures (clean rows x num_perm)
    canon_fingerprint: str = ""      # its sha256
    contain_path: Path | None = None  # NAME.contain.npy: containment samples (clean row << 32 | hash)
    contain_fingerprint: str = ""    # its sha256


def exact_words(hexes: list[str]) -> np.ndarray:
    """(n, 2) uint64 from 32-hex-digit exact hashes."""
    if not hexes:
        return np.zeros((0, 2), np.uint64)
    return np.frombuffer(bytes.fromhex("".join(hexes)), dtype=">u8").astype(np.uint64).reshape(-1, 2)


def source_ranks(sources: list[str], priority: list[str]) -> dict[str, int]:
    return {s: (priority.index(s) if s in priority else len(priority) + k) for k, s in enumerate(sources)}


def load_shards(clean_root: Path, filtered_root: Path, sources: list[str], priority: list[str],
                num_perm: int, work: Path | None = None) -> list[SourceShard]:
    """Every kept document's keep rank and exact hash, shard by shard (no text, no signature).
    With `work`, the arrays are written there and memory-mapped back: this process then holds
    one shard's worth at a time, not ~40 bytes per document of the corpus.

    Keep rank = (source rank in `dedup.priority`, shard position in the source's input-file order,
    id order within the shard): the copy in the first-listed source survives; within a source, the
    copy in the earlier input file, then the smaller id. A file added after the others therefore
    never removes a document that was kept before it (only a higher-priority source's can)."""
    from llmpipe.core.shards import read_manifest, shards
    from llmpipe.data.clean.rules import kept_mask
    ranks = source_ranks(sources, priority)
    out = []
    for src in sources:
        clean_m = read_manifest(clean_root / src, f"clean@{src}")
        filt_m = read_manifest(filtered_root / src, f"filter@{src}")
        fsh = {s["name"]: s for s in shards(filt_m)}
        csh = shards(clean_m)
        if len(csh) >= 1 << SHARD_BITS:
            raise UserError(f"{clean_root / src}: {len(csh)} shards; at most {1 << SHARD_BITS}")
        for j, sh in enumerate(csh):
            name = sh["name"]
            if name not in fsh:
                raise UserError(f"{filtered_root / src}: no mask for shard {name}; rerun `dvc repro filter@{src}`")
            path = clean_root / src / f"{name}.parquet"
            table = pq.read_table(path, columns=["id", "exact_hash"])
            keep = kept_mask(filtered_root / src, name)
            if len(keep) != table.num_rows:
                raise UserError(f"{filtered_root / src / (name + '.npy')}: {len(keep)} rows, the clean "
                                f"shard has {table.num_rows}; rerun `dvc repro filter@{src}`")
            rows = np.flatnonzero(keep)
            if len(rows) >= 1 << ROW_BITS:
                raise UserError(f"{path}: {len(rows)} kept documents in one shard, at most {1 << ROW_BITS}; "
                                f"lower sources.{src}.shard_mb")
            kept = table.take(pa.array(rows))
            order = pc.sort_indices(pa.table({"id": kept.column("id"), "row": rows}),
                                    sort_keys=[("id", "ascending"), ("row", "ascending")]).to_numpy()
            rank = np.empty(len(rows), np.uint64)
            rank[order] = np.arange(len(rows), dtype=np.uint64)
            pref = (np.uint64(ranks[src]) << np.uint64(SHARD_BITS + ROW_BITS)) | \
                (np.uint64(j) << np.uint64(ROW_BITS)) | rank
            sig_path = clean_root / src / f"{name}.minhash.npy"
            width = np.load(sig_path, mmap_mode="r").shape
            if width != (table.num_rows, num_perm):
                raise UserError(f"{sig_path}: signatures {width}, expected ({table.num_rows}, {num_perm}): "
                                "rerun `dvc repro clean` after changing dedup.num_perm")
            if kept.column("exact_hash").null_count:
                bad = int(rows[np.flatnonzero(kept.column("exact_hash").is_null().to_numpy(zero_copy_only=False))[0]])
                raise UserError(f"{path}: row {bad}: exact_hash is null; rerun `dvc repro clean@{src}`")
            exact = exact_words(kept.column("exact_hash").to_pylist())
            if work is not None:
                rows, pref, exact = (_spill(Path(work) / f"{len(out):06d}.{k}.npy", a)
                                     for k, a in (("rows", rows), ("pref", pref), ("exact", exact)))
            canon = clean_root / src / f"{name}.canon.npy"
            canon_fp = sh["files"].get(f"{name}.canon.npy", {}).get("sha256", "")
            has_samples = f"{name}.contain.npy" in sh["files"]
            out.append(SourceShard(src, name, rows, pref, exact, table.num_rows, sig_path,
                                   digest_of(sh, fsh[name], name), (ranks[src], j),
                                   canon if canon_fp else None, canon_fp,
                                   clean_root / src / f"{name}.contain.npy" if has_samples else None,
                                   sh["files"][f"{name}.contain.npy"].get("sha256", "") if has_samples else ""))
    return out


def _spill(path: Path, a: np.ndarray) -> np.ndarray:
    np.save(path, np.ascontiguousarray(a), allow_pickle=False)
    return np.load(path, mmap_mode="r")


def digest_of(clean_shard: dict, filter_shard: dict, name: str) -> str:
    """What a shard's band keys depend on: its signatures only (keys cover every clean row, so
    a filter change reuses them)."""
    return clean_shard["files"][f"{name}.minhash.npy"]["sha256"]


def _cross_pass_on(on: bool, params: DedupParams, units: list[SourceShard], attr: str, what: str,
                   suffix: str, key: str) -> bool:
    """Whether a cross-source pass runs (`on`, `dedup.near`, two sources or more); a user error
    naming the shard when a clean shard lacks the file it needs (`attr` of SourceShard)."""
    if not (on and params.near) or len({u.source for u in units}) < 2:
        return False
    for u in units:
        if getattr(u, attr) is None:
            raise UserError(f"clean@{u.source}: shard {u.name} has no {what} ({u.name}.{suffix}); "
                            f"rerun `dvc repro clean@{u.source}` (or set dedup.{key}: false)")
    return True


def cross_settings(params: DedupParams, units: list[SourceShard]) -> tuple[int, int] | None:
    """(bands, rows) of the cross-source pass, or None when it is off or has nothing to do
    (`dedup.cross_source` false, `near` off, fewer than two sources)."""
    if not _cross_pass_on(params.cross_source, params, units, "canon_path", "canonical signatures",
                          "canon.npy", "cross_source"):
        return None
    return resolve_bands(params.cross_threshold, params.num_perm, None, None, params.false_negative_weight)


def contain_settings(params: DedupParams, units: list[SourceShard]) -> bool:
    """Whether the containment pass runs (`dedup.containment`, `near`, two sources or more)."""
    return _cross_pass_on(params.containment, params, units, "contain_path", "containment samples",
                          "contain.npy", "containment")


def decide_in_memory(units: list[SourceShard], threshold: float, bands: int, rows: int, *, exact: bool,
                     near: bool, cross: tuple[float, int, int] | None = None,
                     contain: tuple[float, int, int] | None = None
                     ) -> tuple[list[np.ndarray], list[np.ndarray], tuple, int, list[np.ndarray]]:
    """The reference decision on the concatenation of `units` (everything in RAM): per unit status
    and cluster head pref; verified pairs as prefs; candidate count. `cross`: (threshold, bands,
    rows) of the cross-source pass on the canonical signatures; `contain`: (threshold,
    min_samples, max_docs) of the containment pass (`contain.in_memory`). Last: per unit the
    documents (indices) that pass removed."""
    sig = np.concatenate([np.load(u.sig_path, mmap_mode="r")[u.rows] for u in units]) if units \
        else np.zeros((0, 1), np.uint32)
    pref_all = np.concatenate([u.pref for u in units]) if units else np.zeros(0, np.uint64)
    rank = np.empty(len(pref_all), np.int64)
    rank[np.argsort(pref_all, kind="stable")] = np.arange(len(pref_all))
    hashes = np.concatenate([u.exact for u in units]).view("S16").ravel() if units else np.zeros(0, "S16")
    offsets = np.cumsum([0] + [len(u.rows) for u in units])
    index = Index([u.name for u in units], offsets, pa.chunked_array([], pa.string()), hashes, sig, rank)
    xs = None
    if cross is not None and units:
        canon = np.concatenate([np.load(u.canon_path, mmap_mode="r")[u.rows] for u in units])
        group = np.repeat([u.position[0] for u in units], [len(u.rows) for u in units])
        xs = Cross(canon, group, *cross)
    dec = find_duplicates(index, threshold, bands, rows, exact=exact, near=near, cross=xs)
    status = [dec.status[a:b] for a, b in zip(offsets, offsets[1:])]
    cluster = [pref_all[dec.cluster[a:b]] for a, b in zip(offsets, offsets[1:])]
    if contain is not None and near and units:
        from llmpipe.data import contain as containment
        found = containment.in_memory([np.load(u.contain_path) for u in units], [u.rows for u in units],
                                      [st == KEPT for st in status], [u.pref for u in units],
                                      [u.position[0] for u in units], *contain)
        contained = [np.flatnonzero(np.isin(np.asarray(u.pref, np.uint64), found[0])) for u in units]
        for st, cl, u in zip(status, cluster, units):
            containment.apply(st, cl, np.asarray(u.pref, np.uint64), found)
    else:
        contained = [np.zeros(0, np.int64) for _ in units]
    u, v, m = dec.pairs
    return status, cluster, (pref_all[u], pref_all[v], m), dec.candidates, contained


def dedup_sharded(clean_root: Path, filtered_root: Path, out_dir: Path, sources: list[str],
                  params: DedupParams, cache_dir: Path | None = None, executor=None) -> dict:
    """The `dedup` stage on sharded inputs: decide on stored hashes and signatures of the
    documents filter kept, write one status mask per clean shard (`OUT/SRC/NAME.npy`, uint8 per
    clean row: 0 kept, 1 exact, 2 near duplicate, 3 dropped by filter) and return the report.
    The decision is the bounded, partitioned one (`dedup_ext`) unless `cache_dir` is None; its
    partition tasks run on `executor` (`core.executor`; default: `dedup.jobs` local processes)."""
    import tempfile
    clean_root, filtered_root, out_dir = Path(clean_root), Path(filtered_root), Path(out_dir)
    scratch = Path(cache_dir) if cache_dir is not None else None
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch, prefix=".run-") as work:
        return _dedup_sharded(clean_root, filtered_root, out_dir, sources, params, cache_dir, Path(work), executor)


def _dedup_sharded(clean_root: Path, filtered_root: Path, out_dir: Path, sources: list[str],
                   params: DedupParams, cache_dir: Path | None, work: Path, executor=None) -> dict:
    from llmpipe.core.atomic import atomic_path
    from llmpipe.core.shards import FORMAT, MANIFEST
    import json
    units = load_shards(clean_root, filtered_root, sources, params.priority, params.num_perm, work)
    bands, rows = resolve_bands(params.threshold, params.num_perm, params.bands, params.rows,
                                params.false_negative_weight)
    status, cluster, pairs, candidates, contained = decide(units, params, bands, rows, cache_dir, work, executor)
    per_source = {s: {"docs_in": 0, "docs_kept": 0, "dropped_by_reason": dict.fromkeys(REASONS.values(), 0),
                      "chars_in": 0, "chars_kept": 0} for s in sources}
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        listing: dict[str, list] = {s: [] for s in sources}
        for u, st in zip(units, status):
            full = np.full(u.clean_rows, FILTERED, np.uint8)
            full[u.rows] = st
            (tmp / u.source).mkdir(exist_ok=True)
            np.save(tmp / u.source / f"{u.name}.npy", full, allow_pickle=False)
            r = per_source[u.source]
            r["docs_in"] += len(u.rows)
            r["docs_kept"] += int((st == KEPT).sum())
            for code, name in REASONS.items():
                r["dropped_by_reason"][name] += int((st == code).sum())
            chars = pq.read_table(clean_root / u.source / f"{u.name}.parquet", columns=["chars"]).column(
                "chars").to_numpy()[np.asarray(u.rows)]
            r["chars_in"] += int(chars.sum())
            r["chars_kept"] += int(chars[st == KEPT].sum())
            listing[u.source].append({"name": u.name, "docs": int(u.clean_rows), "kept": int((st == KEPT).sum())})
        for s in sources:
            (tmp / s).mkdir(exist_ok=True)
            (tmp / s / MANIFEST).write_text(json.dumps({"format": FORMAT, "stage": "dedup", "source": s,
                                                        "units": [{"key": x["name"], "shards": [x], "files": {},
                                                                   "stats": {}, "fingerprint": ""}
                                                                  for x in listing[s]]},
                                                       indent=1, sort_keys=True) + "\n", encoding="utf-8")
        examples = _shard_examples(units, status, pairs, params.num_perm, params.max_examples, clean_root)
    total = {key: sum(s[key] for s in per_source.values())
             for key in ("docs_in", "docs_kept", "chars_in", "chars_kept")}
    total["dropped_by_reason"] = {name: sum(s["dropped_by_reason"][name] for s in per_source.values())
                                  for name in REASONS.values()}
    # clusters: the distinct kept heads of removed documents
    heads = np.concatenate([c[s != KEPT] for c, s in zip(cluster, status)]) if units else np.zeros(0, np.uint64)
    xb = cross_settings(params, units)
    return {
        **total,
        "clusters": int(np.unique(heads).size),
        "candidate_pairs": int(candidates),
        "verified_pairs": int(len(pairs[0])),
        "threshold": params.threshold, "num_perm": params.num_perm, "bands": bands, "rows": rows,
        "detection_probability": {f"jaccard_{s}": round(float(detection_probability(s, bands, rows)), 4)
                                  for s in REPORT_AT},
        "per_source": per_source,
        "cross_source": {"enabled": xb is not None, "threshold": params.cross_threshold,
                         "bands": xb[0] if xb else None, "rows": xb[1] if xb else None,
                         "removed_by_source_pair": by_source_pair(units, status, cluster, sources, params.priority)},
        "containment": {"enabled": contain_settings(params, units), "threshold": params.contain_threshold,
                        "min_samples": params.contain_min_samples, "max_docs": params.contain_max_docs,
                        "contained": int(sum(len(c) for c in contained)),
                        "contained_by_source_pair": contained_by_source_pair(units, cluster, contained, sources,
                                                                             params.priority)},
        "shards": len(units),
        "examples": examples,
    }


def by_source_pair(units: list[SourceShard], status: list[np.ndarray], cluster: list[np.ndarray],
                   sources: list[str], priority: list[str]) -> dict[str, dict[str, int]]:
    """Removed documents whose kept copy is in another source, by "REMOVED_SOURCE -> KEPT_SOURCE"
    and reason (the source of a kept head is the top bits of its pref)."""
    name_of = {r: s for s, r in source_ranks(sources, priority).items()}
    out: dict[str, dict[str, int]] = {}
    for u, st, head in zip(units, status, cluster):
        gone = st != KEPT
        head_rank = (np.asarray(head[gone], np.uint64) >> np.uint64(SHARD_BITS + ROW_BITS)).astype(np.int64)
        if not gone.any():
            continue
        keys, counts = np.unique(np.stack((head_rank, st[gone].astype(np.int64))), axis=1, return_counts=True)
        for (rank, code), c in zip(keys.T.tolist(), counts.tolist()):
            if name_of[rank] == u.source:
                continue
            pair = out.setdefault(f"{u.source} -> {name_of[rank]}", dict.fromkeys(REASONS.values(), 0))
            pair[REASONS[code]] += c
    return dict(sorted(out.items()))


def contained_by_source_pair(units: list[SourceShard], cluster: list[np.ndarray], contained: list[np.ndarray],
                             sources: list[str], priority: list[str]) -> dict[str, int]:
    """Documents the containment pass removed, by "REMOVED_SOURCE -> SOURCE OF ITS CONTAINER'S ROOT"
    (they are also among `removed_by_source_pair`'s near duplicates)."""
    name_of = {r: s for s, r in source_ranks(sources, priority).items()}
    out: dict[str, int] = {}
    for u, head, rows in zip(units, cluster, contained):
        if not len(rows):
            continue
        rank = (np.asarray(head[rows], np.uint64) >> np.uint64(SHARD_BITS + ROW_BITS)).astype(np.int64)
        for r, c in zip(*np.unique(rank, return_counts=True)):
            key = f"{u.source} -> {name_of[int(r)]}"
            out[key] = out.get(key, 0) + int(c)
    return dict(sorted(out.items()))


def decide(units: list[SourceShard], params: DedupParams, bands: int, rows: int, cache_dir: Path | None,
           work: Path | None = None, executor=None):
    """Per unit status and cluster head, verified pairs (prefs), candidates: bounded and
    partitioned (`dedup_ext`) when a cache folder is given, else in memory (the reference)."""
    xb = cross_settings(params, units)
    cs = (params.contain_threshold, params.contain_min_samples, params.contain_max_docs) \
        if contain_settings(params, units) else None
    if cache_dir is None:
        return decide_in_memory(units, params.threshold, bands, rows, exact=params.exact, near=params.near,
                                cross=None if xb is None else (params.cross_threshold, *xb), contain=cs)
    from llmpipe.core import workers
    from llmpipe.data import dedup_ext
    import tempfile
    docs = sum(len(u.rows) for u in units)
    # 0 = every core, except on small inputs, where starting workers costs more than it saves
    jobs = params.jobs or (1 if docs < SMALL_DOCS else workers.resolve(0))
    cluster = executor is not None and not executor.local
    if cluster:  # the partitions are tasks of the cluster, whatever the size
        jobs = executor.slots()
    ext_units = [dedup_ext.Unit(name=f"{u.source}/{u.name}", pref=u.pref, exact=u.exact, sig_path=u.sig_path,
                                fingerprint=u.fingerprint, rows=u.rows) for u in units]
    cross = None if xb is None else dedup_ext.CrossPass(
        [u.canon_path for u in units], [u.canon_fingerprint for u in units], [u.position[0] for u in units],
        params.cross_threshold, *xb)
    from llmpipe.data.contain import ContainPass
    contain = None if cs is None else ContainPass([u.contain_path for u in units], [u.position[0] for u in units],
                                                  *cs, fingerprints=[u.contain_fingerprint for u in units]
                                                  if all(u.contain_fingerprint for u in units) else None)
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work or cache_dir, prefix=".run-") as tmp:
        dec = dedup_ext.deduplicate(ext_units, num_perm=params.num_perm, threshold=params.threshold, bands=bands,
                                    rows=rows, exact=params.exact, near=params.near, work_dir=Path(tmp),
                                    cache_dir=Path(cache_dir), memory_bytes=params.memory_mb << 20,
                                    jobs=jobs, cross=cross, contain=contain, executor=executor if cluster else None,
                                    state_dir=Path(cache_dir) / "index",
                                    incremental_jobs=params.jobs or (1 if docs < SMALL_DOCS_INDEX else 0))
    idx = dec.stats.get("index")
    if idx:   # which way the near passes went (stderr only: the report must not depend on the cache)
        from llmpipe.core.log import get_logger
        get_logger("dedup").info(
            f"index: {idx['mode']} ({idx['why']})" + (
                f": {n(idx['dirty_docs'])} dirty docs, {n(idx['pairs_recomputed'])} bucket pairs recomputed, "
                f"{n(idx['pairs_reused'])} reused, {n(idx['pairs_verified_anew'])} verified anew"
                if idx["mode"] == "incremental" else "")
            + ("; containment: {changed_docs} changed docs, {turned_common} hashes turned common, {recounted_docs} "
               "docs recounted on {scanned_records} records, {counted_reused} pairs reused".format(**dec.stats["containment"])
               if "recounted_docs" in dec.stats.get("containment", {}) else ""))
    status = [dec.status[u.name] for u in ext_units]
    cluster = [dec.cluster(u.name) for u in ext_units]
    keep = {dedup_ext.band_key_path(Path(cache_dir), u, bands, rows).name for u in ext_units}
    if cross is not None:
        keep |= {dedup_ext.band_key_path(Path(cache_dir), u, cross.bands, cross.rows).name
                 for u in dedup_ext.cross_units(ext_units, cross)}
    for old in Path(cache_dir).glob("*.keys.npy"):  # ours, of shards or settings no longer used
        if old.name not in keep:
            old.unlink(missing_ok=True)
    contained = [dec.contained.get(u.name, np.zeros(0, np.int64)) for u in ext_units]
    return status, cluster, dec.pairs, dec.candidates, contained


def _read_row(path: Path, row: int, batch_bytes: int = 4 << 20):
    """id and text of one row, streamed in small batches from its row group (a buffered reader,
    no pre-buffering): memory is a batch of ~`batch_bytes` of the row group's average rows (one
    row when rows are larger), not the ~64 MiB row group (`_shard_examples` reads 20 rows anywhere
    in the corpus). Batches of one row cost a Python step per row before it: ~75 ms a row."""
    pf = pq.ParquetFile(path, buffer_size=1 << 20, pre_buffer=False)
    start = 0
    for rg in range(pf.num_row_groups):
        meta = pf.metadata.row_group(rg)
        size = meta.num_rows
        if row < start + size:
            seen = start
            batch = max(1, min(size, batch_bytes * size // max(1, meta.total_byte_size)))
            for b in pf.iter_batches(batch_size=batch, row_groups=[rg], columns=["id", "text"]):
                if row < seen + b.num_rows:
                    return b.slice(row - seen, 1)
                seen += b.num_rows
        start += size
    raise IndexError(f"{path}: no row {row}")


def _shard_examples(units: list[SourceShard], status: list[np.ndarray], pairs: tuple, num_perm: int,
                    max_examples: int, clean_root: Path) -> list[dict]:
    """The verified pairs closest to the threshold, each end with id, source, shard, row, status and
    the first 80 characters of its text (read from the one row group that holds it)."""
    pu, pv, match = pairs
    if not max_examples or not len(pu):
        return []
    pick = np.lexsort((pv, pu, match))[:max_examples]
    unit_at = {u.position: k for k, u in enumerate(units)}

    def where(pref) -> tuple[int, int]:
        pref = np.uint64(pref)
        k = unit_at[(int(pref >> np.uint64(SHARD_BITS + ROW_BITS)),
                     int((pref >> np.uint64(ROW_BITS)) & np.uint64((1 << SHARD_BITS) - 1)))]
        return k, int(np.flatnonzero(np.asarray(units[k].pref) == pref)[0])
    out = []
    for p in pick.tolist():
        ends = {}
        for side, pref in (("a", pu[p]), ("b", pv[p])):
            k, i = where(pref)
            u = units[k]
            row = int(u.rows[i])
            t = _read_row(clean_root / u.source / f"{u.name}.parquet", row)
            st = int(status[k][i])
            ends[side] = {"id": t.column("id")[0].as_py(), "source": u.source, "shard": u.name, "row": row,
                          "status": "kept" if st == KEPT else REASONS[st], "text": t.column("text")[0].as_py()[:80]}
        out.append({"jaccard_estimate": round(float(match[p]) / num_perm, 4), **ends})
    return out
