"""The clean pass: ingested Document table -> cleaned table with every signal as a column.

Output (`data/clean/SRC/`, a sharded directory: `llmpipe.core.shards`), per ingested shard NAME:
NAME.parquet, one row per input document, input order kept:
    id, source, text (cleaned), url, meta        the Document columns
    chars_raw        int64   characters before cleaning
    removed_<name>   int64   characters removed by each cleaner of this kind (`cleaner_names`);
                             `removed_max_doc_chars`: those past `clean.max_doc_chars` (cut),
                             or all of a skipped document's (`clean.on_long_doc: skip`)
    <signal>         int64 | float64, every signal of `signals.signal_types(kind)`
    exact_hash       string  `minhash.exact_hash` of the cleaned text (hex)
and NAME.minhash.npy, (rows, num_perm) uint32: `minhash.signatures` of the cleaned texts (a
plain .npy, so dedup reads the rows it verifies by memory map), and NAME.canon.npy, the same
shape: `canonical.signatures` of the raw texts (after `max_doc_chars`), the kind-independent view
dedup compares across sources, and NAME.contain.npy, (M,) uint64 row << 32 | shingle hash: 1 in 8
of the distinct shingles of each row's canonical view, ascending, which dedup's containment pass
joins across sources (`contain.py`). A shard is recleaned only when
its input, the clean params, its kind, the three dedup keys that shape signatures or the code
changed; the others are reused as they are.
No thresholds are applied here: `rules.py` (the `filter` stage) reads these columns.

Work is split into batches of `batch_docs` documents, processed by `jobs` worker processes and
written back in input order, with at most 2 x jobs batches in flight (bounded memory whatever
the corpus size). Output bytes do not depend on `jobs`. A document longer than
`clean.max_doc_chars` is cut to that length (or emptied, `on_long_doc: skip`) before anything
else, so one huge document cannot blow a worker's memory (~60 bytes per character cleaned).
"""
from __future__ import annotations

import collections
import contextlib
import multiprocessing as mp
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from llmpipe.core import workers
from llmpipe.core.atomic import atomic_path
from llmpipe.core.errors import UserError
from llmpipe.core.log import n
from llmpipe.data import canonical, kinds, minhash
from llmpipe.data.table import DOC_SCHEMA, TableWriter, num_rows, read_batches
from llmpipe.data.clean import quality, signals

LONG_DOC = "max_doc_chars"  # counted like a cleaner: characters past clean.max_doc_chars


def cleaner_names(kind: str) -> list[str]:
    """The `removed_<name>` columns of a clean table of `kind`, in the order they apply: the
    length limit, `whitespace` (every kind), then the kind's own cleaners."""
    return [LONG_DOC, "whitespace", *kinds.text(kind).CLEANERS]


def limit_length(text: str, params) -> tuple[str, int]:
    """`text` within `params.max_doc_chars` (cut, or "" when `on_long_doc` is skip), chars removed."""
    if len(text) <= params.max_doc_chars:
        return text, 0
    kept = text[:params.max_doc_chars] if params.on_long_doc == "cut" else ""
    return kept, len(text) - len(kept)


def clean_text(text: str, kind: str, params) -> tuple[str, dict[str, int]]:
    """Run every cleaner of `kind` (`params`: CleanParams); returns (text, {cleaner: chars removed})."""
    removed = dict.fromkeys(cleaner_names(kind)[1:], 0)  # the length limit is process_batch's
    code = kinds.text(kind)
    whitespace = params.whitespace and getattr(code, "WHITESPACE", True)  # a kind may opt out
    if whitespace:
        new = quality.whitespace(text)
        removed["whitespace"] += len(text) - len(new)
        text = new
    text, by_kind = code.clean(text, getattr(params, kind, None))  # None: the kind has no clean.KIND
    removed.update(by_kind)
    if whitespace:  # removed lines leave blank runs behind
        new = quality.whitespace(text)
        removed["whitespace"] += len(text) - len(new)
        text = new
    return text, removed


def output_schema(kind: str, num_perm: int) -> pa.Schema:
    types = {"int": pa.int64(), "float": pa.float64()}
    fields = list(DOC_SCHEMA) + [pa.field("chars_raw", pa.int64())]
    fields += [pa.field(f"removed_{c}", pa.int64()) for c in cleaner_names(kind)]
    fields += [pa.field(k, types[t]) for k, t in signals.signal_types(kind).items()]
    fields += [pa.field("exact_hash", pa.string())]
    return pa.schema(fields)


def process_batch(texts: list[str], kind: str, params, ngram: int, num_perm: int,
                  seed: int) -> dict[str, list | np.ndarray]:
    """Clean and measure a batch; returns the non-Document columns (see module docstring)."""
    names = signals.signal_types(kind)
    cols: dict[str, list] = {"chars_raw": [], "text": []}
    cols.update({f"removed_{c}": [] for c in cleaner_names(kind)})
    cols.update({k: [] for k in names})
    limited = []
    for raw in texts:
        cols["chars_raw"].append(len(raw))
        raw, cut = limit_length(raw, params)  # what the cleaners and signals see
        limited.append(raw)
        text, removed = clean_text(raw, kind, params)
        cols["text"].append(text)
        cols[f"removed_{LONG_DOC}"].append(cut)
        for c, v in removed.items():
            cols[f"removed_{c}"].append(v)
        for k, v in signals.compute(raw, text, kind).items():
            cols[k].append(v)
    # one normalisation per text for both the exact hash and the signature (N, num_perm)
    cols["exact_hash"], cols["minhash"] = minhash.hashes_and_signatures(cols["text"], ngram, num_perm, seed)
    cols["canon"], cols["contain"] = canonical.signatures_and_samples(limited, ngram, num_perm, seed)
    return cols


def _to_batch(docs: pa.RecordBatch, cols: dict, schema: pa.Schema) -> pa.RecordBatch:
    arrays = []
    for f in schema:
        if f.name in cols:
            arrays.append(pa.array(cols[f.name], f.type))
        else:
            arrays.append(docs.column(f.name).cast(f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def clean_table(src: str | Path, dst: str | Path, kind: str, params, ngram: int, num_perm: int,
                seed: int, jobs: int | None = None, *, minhash: str | Path | None = None,
                canon: str | Path | None = None, contain: str | Path | None = None, pool=None,
                progress: bool = True) -> dict:
    """Clean `src` (Document table) into `dst` (and the signatures into `minhash`, a .npy; default
    beside dst; the canonical ones into `canon`, default NAME.canon.npy beside dst; the containment
    samples into `contain`, default NAME.contain.npy); returns {docs, chars_raw, chars, long_docs, long_chars} (long: documents over
    `params.max_doc_chars`, characters cut). `pool`: a worker pool to use (else one of `jobs`);
    `progress`: its own bar (off in a shard task: the stage's bar counts shards)."""
    jobs = workers.resolve(params.jobs if jobs is None else jobs)
    schema = output_schema(kind, num_perm)
    args = (kind, params, ngram, num_perm, seed)
    rows = num_rows(src)
    minhash = Path(minhash) if minhash else Path(dst).with_suffix(".minhash.npy")
    canon = Path(canon) if canon else Path(dst).with_suffix(".canon.npy")
    contain = Path(contain) if contain else Path(dst).with_suffix(".contain.npy")
    batches = read_batches(src, DOC_SCHEMA.names, batch_size=params.batch_docs)
    stats = {"docs": 0, "chars_raw": 0, "chars": 0, "long_docs": 0, "long_chars": 0, "jobs": jobs}
    own = pool is None and jobs > 1
    pool = make_pool(jobs) if own else pool
    try:
        # the signatures as plain writes (header, then each batch), never a memory map: a store
        # into a mapped page of a full disk is a SIGBUS, a write() is an ENOSPC we can report
        with TableWriter(dst, schema) as w, atomic_path(minhash) as sig_tmp, open(sig_tmp, "wb") as sig, \
                atomic_path(canon) as canon_tmp, open(canon_tmp, "wb") as csig, \
                atomic_path(contain) as contain_tmp, open(contain_tmp, "wb") as samples, \
                tqdm(total=rows, unit="doc", desc=f"clean {kind}", disable=None if progress else True) as bar:
            for f in (sig, csig):
                np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype("<u4")),
                                                         "fortran_order": False, "shape": (rows, num_perm)})
            samples.write(_u8_header(0))     # rewritten with the count at the end
            n_samples = [0]
            pending: collections.deque = collections.deque()

            def drain(limit: int) -> None:
                while len(pending) > limit:
                    docs, res = pending.popleft()
                    cols = res.get() if pool else res
                    sig.write(np.ascontiguousarray(cols["minhash"], dtype="<u4").tobytes())
                    csig.write(np.ascontiguousarray(cols["canon"], dtype="<u4").tobytes())
                    rows_before = np.uint64(stats["docs"]) << np.uint64(32)
                    samples.write((cols["contain"] + rows_before).astype("<u8").tobytes())
                    n_samples[0] += len(cols["contain"])
                    w.write(_to_batch(docs, cols, schema))
                    stats["docs"] += docs.num_rows
                    stats["chars_raw"] += sum(cols["chars_raw"])
                    stats["chars"] += sum(cols["chars"])
                    stats["long_docs"] += sum(1 for c in cols[f"removed_{LONG_DOC}"] if c)
                    stats["long_chars"] += sum(cols[f"removed_{LONG_DOC}"])
                    bar.update(docs.num_rows)

            for docs in batches:
                texts = docs.column("text").to_pylist()
                res = (pool.apply_async(process_batch, (texts, *args)) if pool
                       else process_batch(texts, *args))
                pending.append((docs, res))
                drain(2 * jobs)
            drain(0)
            samples.seek(0)
            samples.write(_u8_header(n_samples[0]))
            if stats["docs"] != rows:
                raise UserError(f"{src}: read {stats['docs']} rows, its metadata says {rows}; rerun ingest")
    finally:
        if own:
            pool.terminate()
    return stats


def _u8_header(count: int) -> bytes:
    """A .npy (1.0) header of a (count,) little-endian uint64 array, always 128 bytes, so the
    array can be written before its length is known and the header rewritten in place."""
    d = repr({"descr": "<u8", "fortran_order": False, "shape": (count,)})
    body = d.encode("latin1").ljust(128 - 10 - 1) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body


SUM_KEYS = ("docs", "chars_raw", "chars", "long_docs", "long_chars")


def make_pool(jobs: int):
    """`jobs` cleaning workers forked from a fork server that imported this module once (a
    clean process: no pyarrow threads to fork), instead of each starting an interpreter and
    importing everything again (spawn): ~1 s of CPU per worker less, which a run that cleans one
    new shard notices."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx.Pool(jobs, initializer=workers.die_with_parent)


def clean_shard(src: str | Path, dst: str | Path, sig: str | Path, canon: str | Path, kind: str, params,
                ngram: int, num_perm: int, seed: int, jobs: int) -> dict:
    """One shard as one task of a cluster executor (`core.executor`): `clean_table` with `jobs`
    processes of the task's own (the containment samples beside `canon`)."""
    return clean_table(src, dst, kind, params, ngram, num_perm, seed, jobs, minhash=sig, canon=canon,
                       contain=Path(canon).with_name(Path(canon).name.replace(".canon.npy", ".contain.npy")),
                       progress=False)


def clean_source(in_dir: str | Path, out_dir: str | Path, *, source: str, kind: str, params, ngram: int,
                 num_perm: int, seed: int, jobs: int | None = None, executor=None) -> tuple[dict, str]:
    """Clean every shard of the ingested directory `in_dir` into `out_dir` (sharded), reusing the
    shards whose fingerprint is unchanged. Locally (`executor` None or local) shards are cleaned
    one after another, each by `jobs` processes, or, when there are many or small ones (a book per
    shard), each shard by one of `jobs` processes (`core.executor.shard_tasks`); on a cluster
    executor each shard is a task.
    Returns (stats summed over shards, reuse summary)."""
    from llmpipe.core import code
    from llmpipe.core.config import as_dict
    from llmpipe.core.executor import shard_tasks
    from llmpipe.core.shards import ShardedDir, digest, read_manifest, shards
    in_dir = Path(in_dir)
    manifest = read_manifest(in_dir, f"ingest@{source}")
    jobs = workers.resolve(params.jobs if jobs is None else jobs)
    others = [k for k in kinds.KINDS if k != kind]  # another kind's cleaner settings change nothing here
    settings = {k: v for k, v in as_dict(params).items() if k not in ("jobs", *others)}
    base = digest("clean", code.fingerprint("stages.clean"), kind, settings,
                  ngram, num_perm, seed)
    pool = None
    try:
        with ShardedDir(out_dir, stage="clean", source=source) as d, contextlib.ExitStack() as stack:
            listed = shards(manifest)
            plan = [(sh["name"], digest(base, sh["files"][f"{sh['name']}.parquet"]["sha256"])) for sh in listed]
            docs = {sh["name"]: sh["docs"] for sh in listed}
            todo = [name for name, fp in plan if not d.has(name, fp)]
            tasks = shard_tasks(executor, jobs, len(todo), sum(docs[x] for x in todo) / max(1, len(todo)),
                                jobs * params.batch_docs)
            if tasks is not None:  # whole shards as tasks: a cluster's, or local processes for many small shards
                calls = [(in_dir / f"{name}.parquet", d.tmp / f"{name}.parquet", d.tmp / f"{name}.minhash.npy",
                          d.tmp / f"{name}.canon.npy", kind, params, ngram, num_perm, seed, tasks.task_jobs())
                         for name in todo]
                # each shard is recorded as its task returns (in plan order), so an interrupted run keeps them
                built = stack.enter_context(contextlib.closing(tasks.each(clean_shard, calls, desc=f"clean {source}")))
                jobs = tasks.slots() if todo else jobs
            todo_set = set(todo) if tasks is not None else set()
            for name, fp in plan:
                if name in todo_set:
                    st = next(built)
                elif d.reuse(name, fp) is not None:
                    continue
                else:
                    if pool is None and jobs > 1:
                        pool = make_pool(jobs)
                    st = clean_table(in_dir / f"{name}.parquet", d.tmp / f"{name}.parquet", kind, params, ngram,
                                     num_perm, seed, jobs, minhash=d.tmp / f"{name}.minhash.npy",
                                     canon=d.tmp / f"{name}.canon.npy", contain=d.tmp / f"{name}.contain.npy",
                                     pool=pool)
                d.add(name, fp, [f"{name}.parquet", f"{name}.minhash.npy", f"{name}.canon.npy",
                                 f"{name}.contain.npy"],
                      shards=[{"name": name, "docs": st["docs"]}], stats={k: st[k] for k in SUM_KEYS})
            stats = {k: sum(u["stats"][k] for u in d.units) for k in SUM_KEYS}
            stats["jobs"] = jobs
            stats["over"] = "shards" if tasks is not None and todo else "batches"  # how the jobs split the work
            d.finish(kind=kind, num_perm=num_perm, **{k: stats[k] for k in ("docs", "chars")})
    finally:
        if pool is not None:
            pool.terminate()
    return stats, d.summary()


def summary_line(source: str, kind: str, stats: dict, params, seconds: float, out) -> str:
    """The clean stage's one-line summary (`params`: CleanParams)."""
    long = (f", {n(stats['long_docs'])} docs over clean.max_doc_chars={n(params.max_doc_chars)} "
            f"{'cut' if params.on_long_doc == 'cut' else 'skipped'} ({n(stats['long_chars'])} chars)"
            if stats["long_docs"] else "")
    return (f"clean@{source} ({kind}): {n(stats['docs'])} docs, {n(stats['chars_raw'])} -> {n(stats['chars'])} "
            f"chars{long} in {seconds:.1f}s ({n(stats['docs'] / max(seconds, 1e-9))} docs/s, "
            f"{stats['jobs']} jobs over {stats.get('over', 'batches')}; {stats.get('shards', '')}) -> {out}")
