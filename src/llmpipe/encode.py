"""Encode one source's Document table into a token directory, in parallel (`tokenize@SRC`).

Each document goes to `val` when unit_hash(split.seed, id) < split.val_fraction, else to `train`
(sha256 of the id: stable across runs, machines and mix weights, so val never shares a document
with train). The `split.min_val_docs` documents with the lowest hashes also go to val (a source of
ten books would often get none otherwise), never the source's last document; a first pass over
the id column finds them.

Work unit = up to TASK_DOCS rows of one Parquet row group. A pool of worker processes, each with
its own SentencePiece loaded once, reads its slice itself (the parent never touches the text), encodes it
in one thread and sends back token arrays; the parent writes them in task order, so the output
bytes do not depend on the number of workers. Memory: 2 x workers tasks in flight, plus
one row group per worker.
"""
from __future__ import annotations

import heapq
import itertools
import multiprocessing as mp
import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from .atomic import atomic_path, write_json
from .docs import missing_input, read_batches
from .log import get_logger
from .tokenizer import Tokenizer, load, unit_hash
from .tokens import SPLITS, SplitWriter, make_meta, token_dtype

log = get_logger("tokenize")

_W: dict = {}  # per-worker state: the loaded tokenizer, the split settings, the last row group
TASK_DOCS = 256  # documents per task: small enough to balance the workers on small files


def _init(spm_path: str, val_fraction: float, seed: int, dtype: str, forced_val: frozenset = frozenset()) -> None:
    _W.update(tok=load(spm_path), val_fraction=val_fraction, seed=seed, dtype=np.dtype(dtype),
              forced_val=forced_val)


def is_val(doc_id: str, val_fraction: float, seed: int, forced_val: frozenset = frozenset()) -> bool:
    return unit_hash(seed, doc_id) < val_fraction or doc_id in forced_val


def forced_val_ids(path: Path, seed: int, min_val_docs: int) -> frozenset:
    """Ids of the `min_val_docs` lowest-hash documents (fewer if the source has too few)."""
    count = itertools.count()  # documents seen; memory stays O(min_val_docs)
    hashed = ((unit_hash(seed, i), i) for b in read_batches(path, ["id"])
              for i in b.column(0).to_pylist() if next(count) >= 0)
    smallest = heapq.nsmallest(min_val_docs, hashed)
    n_docs = next(count)
    return frozenset(i for _, i in smallest[:max(0, min(min_val_docs, n_docs - 1))])


def _flatten(encoded: list[list[int]], eos: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate documents, each closed by EOS: (tokens, lengths)."""
    lengths = np.fromiter((len(x) + 1 for x in encoded), dtype=np.int64, count=len(encoded))
    flat = np.fromiter(itertools.chain.from_iterable(itertools.chain(x, (eos,)) for x in encoded),
                       dtype=dtype, count=int(lengths.sum()))
    return flat, lengths


def _read_slice(path: str, rg: int, lo: int, hi: int):
    """Rows lo:hi of row group rg (the worker keeps its last row group: slices often follow)."""
    if _W.get("cached") != (path, rg):
        _W["table"] = pq.ParquetFile(path).read_row_group(rg, columns=["id", "text"])
        _W["cached"] = (path, rg)
    return _W["table"].slice(lo, hi - lo)


def _encode_group(task: tuple[str, int, int, int]) -> dict:
    """Worker: read one slice of a row group, split it, encode it. Returns per split arrays + ids."""
    tok: Tokenizer = _W["tok"]
    table = _read_slice(*task)
    ids = table.column("id").to_pylist()
    texts = table.column("text").to_pylist()
    nbytes = pc.binary_length(table.column("text")).to_numpy(zero_copy_only=False).astype(np.int64)
    val = np.fromiter((is_val(i, _W["val_fraction"], _W["seed"], _W["forced_val"]) for i in ids),
                      dtype=bool, count=len(ids))
    out = {}
    for split, mask in (("train", ~val), ("val", val)):
        sel = np.flatnonzero(mask)
        enc = tok.sp.encode([texts[i] for i in sel], num_threads=1)  # parallelism = the processes
        flat, lengths = _flatten(enc, tok.eos_id, _W["dtype"])
        out[split] = (flat, lengths, nbytes[sel], [ids[i] for i in sel])
    return out


def _run(tasks: list, jobs: int, initargs: tuple) -> Iterator[dict]:
    """Results of _encode_group over `tasks`, in task order, with at most 2 x jobs in flight.

    A worker that dies (or fails to start) raises BrokenProcessPool here instead of hanging.
    """
    if jobs == 1 or len(tasks) <= 1:
        _init(*initargs)
        yield from map(_encode_group, tasks)
        return
    ctx = mp.get_context("spawn")  # no forked pyarrow/SentencePiece threads in the workers
    with ProcessPoolExecutor(min(jobs, len(tasks)), mp_context=ctx, initializer=_init, initargs=initargs) as ex:
        pending: deque = deque()
        it = iter(tasks)
        for task in itertools.islice(it, 2 * jobs):
            pending.append(ex.submit(_encode_group, task))
        while pending:
            res = pending.popleft().result()
            for task in itertools.islice(it, 1):
                pending.append(ex.submit(_encode_group, task))
            yield res


def tokenize_source(dedup_path: str | Path, tokenizer_path: str | Path, out_dir: str | Path, *,
                    source: str, val_fraction: float, seed: int, min_val_docs: int = 0,
                    jobs: int = 0) -> dict:
    """Write `out_dir` (SPLIT.bin/.idx/.docs.parquet + meta.json last), atomically. Returns meta."""
    dedup_path = Path(dedup_path)
    if not dedup_path.exists():
        raise missing_input(dedup_path, "dedup")
    tok = load(tokenizer_path)
    dtype = token_dtype(tok.vocab_size)
    meta_pq = pq.ParquetFile(dedup_path).metadata
    jobs = jobs or len(os.sched_getaffinity(0))
    tasks = [(str(dedup_path), rg, lo, min(lo + TASK_DOCS, meta_pq.row_group(rg).num_rows))
             for rg in range(meta_pq.num_row_groups) for lo in range(0, meta_pq.row_group(rg).num_rows, TASK_DOCS)]
    forced = forced_val_ids(dedup_path, seed, min_val_docs) if min_val_docs else frozenset()
    log.info("tokenize %s: %d tasks on %d workers; %d lowest-hash docs forced into val", source,
             len(tasks), min(jobs, len(tasks)), len(forced))
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        writers = {s: SplitWriter(tmp, s, dtype) for s in SPLITS}
        results = _run(tasks, jobs, (str(tok.path), val_fraction, seed, dtype.name, forced))
        for res in tqdm(results, total=len(tasks), desc=f"tokenize {source}", unit="task", leave=False):
            for split, (flat, lengths, nbytes, ids) in res.items():
                writers[split].add(flat, lengths, nbytes, ids, [source] * len(ids))
        splits = {s: w.close() for s, w in writers.items()}
        meta = make_meta(tok, dtype, splits, rerun=f"dvc repro tokenize@{source}", source=source,
                         split={"val_fraction": val_fraction, "seed": seed, "min_val_docs": min_val_docs,
                                "forced_val_ids": sorted(forced)})
        write_json(tmp / "meta.json", meta)
    return meta
