"""Encode one source's kept documents into a sharded token directory, in parallel (`tokenize@SRC`).

Input: the clean shards (`data/clean/SRC/NAME.parquet`) read through dedup's status masks
(`data/dedup/SRC/NAME.npy`: a document is encoded when its status is 0, i.e. filter and dedup
kept it). Output, per shard: `NAME.train.{bin,idx,docs.parquet}` and `NAME.val.*` (the token
files of `tokens.py`), `meta.json` (the token directory's meta: totals and each shard's files)
and `manifest.json` (core/shards.py). A shard is re-encoded only when its text, its mask, the
tokenizer, the split params or the code changed (or a document of it joined or left the forced
val set, below); a new input file re-encodes its own shard. A shard whose mask only lost
documents (dedup found copies of them in a new file of a higher-priority source) is not encoded
again: its new token files are copied from its previous ones without those documents
(`_trim_shard`, byte-identical to a fresh encode; a chat shard's loss mask is cut with them), so a
new file costs its own shard plus a token copy of each shard it removes documents from.

Each document goes to `val` when unit_hash(split.seed, id) < split.val_fraction, else to `train`
(sha256 of the id: stable across runs, machines and mix weights, so val never shares a document
with train). The `split.min_val_docs` documents with the lowest hashes also go to val (a source of
ten books would often get none otherwise), never the source's last document. Each shard's lowest
hashes are kept in the manifest, so finding them reads only new shards' ids; a forced document
changes its shard's bytes only when its hash would not have put it in val anyway (a source with
enough val documents never depends on other shards).

A source of one document (one book or play, `txt_mode: file`) has no document to spare for val,
so with `split.min_val_docs` >= 1 its text is cut instead, as nanoGPT's prepare.py cuts its text:
the last `split.val_fraction` of its characters, from the start of a line, is the val document
`ID#tail` and the rest the train document `ID` (two documents, each closed by EOS; `tail_cut`).

Work unit = a run of consecutive documents of about `task_bytes` of text (sized so that every
worker gets ~TASKS_PER_WORKER tasks: the last, uneven ones then balance out). The parent streams
the table one row group at a time, computes the split and UTF-8 sizes with pyarrow, and sends
each task's texts to a pool of worker processes; a worker loads SentencePiece once (pool
initializer), encodes its texts in one thread and returns one compact token array plus the
document lengths. The parent writes the results in task order and hands them to the writers in
fixed blocks of WRITE_DOCS documents, so the output bytes depend neither on the number of workers
nor on the task sizes. Workers are forked from a fork server that imported this module once,
instead of each starting an interpreter and importing numpy/pyarrow itself (spawn), and they never
touch pyarrow. Memory: at most IN_FLIGHT x workers tasks in flight (each <= TASK_BYTES_MAX of
text), one row group in the parent (<= docs.ROW_GROUP_BYTES) and, per worker, the Python ints of
one SentencePiece call (ENCODE_CHARS of text), whatever the corpus size.
"""
from __future__ import annotations

import contextlib
import heapq
import itertools
import multiprocessing as mp
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from llmpipe.core.atomic import sha256_file, write_json
from llmpipe.data import chat
from llmpipe.data.table import missing_input
from llmpipe.core.log import get_logger, n
from llmpipe.core import workers
from llmpipe.core.errors import UserError
from llmpipe.core.seeds import unit_hash
from llmpipe.data.tokenizer import load
from llmpipe.data.tokens import SPLITS, SplitWriter, make_meta, memmap_tokens, token_dtype

log = get_logger("tokenize")

_W: dict = {}  # per-worker state: the SentencePiece processor, EOS id and token dtype
TASKS_PER_WORKER = 8  # tasks per worker: enough that the uneven last tasks balance out
TASK_BYTES_MIN = 1 << 18  # 256 KiB of text (~70k tokens, ~0.1 s): amortises the per-task overhead
TASK_BYTES_MAX = 1 << 20  # 1 MiB of text: bounds worker and in-flight memory on any corpus size
ENCODE_CHARS = 1 << 17  # characters per SentencePiece call in a worker: its list of Python ints
                        # (~40 bytes per token) stays ~5 MB instead of growing with the task
WORKER_BYTES_MIN = 4 << 20  # with jobs=0 (all cores), one worker per 4 MiB of text at most: starting
                            # the pool costs ~0.4 s, which a smaller source does not win back
IN_FLIGHT = 4  # tasks per worker submitted ahead: workers stay busy while the parent waits, in
               # order, for a slow task (a long book); bounds memory to 4 x workers x task size
WRITE_DOCS = 256  # documents per SplitWriter.add, aligned to row groups: fixes the .docs.parquet
                  # batches (hence bytes and meta sha256) whatever the task sizes


def _init(spm_path: str, eos: int, dtype: str, chat: bool = False) -> None:
    # only SentencePiece: the Tokenizer wrapper's checks already ran in the parent
    import sentencepiece as spm
    workers.die_with_parent()
    _W.update(sp=spm.SentencePieceProcessor(model_file=spm_path), eos=eos, dtype=np.dtype(dtype), chat=chat)


def is_val(key: str, val_fraction: float, seed: int, forced_val: frozenset = frozenset()) -> bool:
    """Whether a document whose split key (its id, or its group's key) is `key` goes to val."""
    return unit_hash(seed, key) < val_fraction or key in forced_val


def group_columns(group_by: str | None) -> list[str]:
    """The clean-table columns `split_keys` reads besides `id`."""
    return {"url_host": ["url"]}.get(group_by or "", ["meta"] if (group_by or "").startswith("meta:") else [])


def split_keys(group_by: str | None, shard: str, table: pa.Table) -> list[str]:
    """The split key of each row of `table` (columns `id` + `group_columns`) of clean shard `shard`:
    the document id, or `GROUP_BY=VALUE` for its group (`split.group_by`). A pure function of the
    row and the shard's input file, so a shard's split never depends on another shard."""
    ids = table.column("id").to_pylist()
    if group_by is None:
        return ids
    if group_by == "file" or group_by.startswith("path:"):
        base = shard.rsplit(".", 1)[0]  # FILE.00000 -> FILE (core.shards.shard_name)
        if group_by != "file":
            base = "~".join(base.split("~")[:int(group_by[5:])])  # "~" joins path parts (shard_base)
        return [f"{group_by}={base}"] * len(ids)
    if group_by == "url_host":
        from urllib.parse import urlsplit
        hosts = [urlsplit(u).hostname if u else None for u in table.column("url").to_pylist()]
        return [f"url_host={h}" if h else i for h, i in zip(hosts, ids)]
    import json
    field = group_by[5:]
    out = []
    for doc_id, meta in zip(ids, table.column("meta").to_pylist()):
        value = json.loads(meta).get(field) if meta else None
        out.append(doc_id if value is None else f"{group_by}={value}")
    return out


def lowest_hashes(ids: list[str], seed: int, k: int) -> list[list]:
    """The k lowest [unit_hash(seed, id), id] of `ids`, ascending."""
    return [list(x) for x in heapq.nsmallest(k, ((unit_hash(seed, i), i) for i in ids))]


def worker_count(jobs: int, text_bytes: float, docs: int, cores: int | None = None) -> int:
    """`jobs` workers (never more than documents); 0 -> all cores, but at most one per
    WORKER_BYTES_MIN of text (1 = encode in this process)."""
    if not jobs:
        jobs = min(cores or workers.cores(), int(text_bytes // WORKER_BYTES_MIN))
    return max(1, min(jobs, docs))


def _flatten(encoded: list[list[int]], eos: int, dtype: np.dtype,
             masks: list[list[int]] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Concatenate documents, each closed by EOS: (tokens, lengths incl. EOS, loss mask or None:
    `masks`' values per token, 0 on the EOS)."""
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)) + 1
    ends = np.cumsum(lengths)  # one past each EOS
    flat = np.empty(int(ends[-1]) if len(ends) else 0, dtype=dtype)
    text = np.ones(len(flat), dtype=bool)
    text[ends - 1] = False
    flat[text] = np.fromiter(itertools.chain.from_iterable(encoded), dtype=dtype, count=len(flat) - len(ends))
    flat[ends - 1] = eos
    mask = None
    if masks is not None:
        mask = np.zeros(len(flat), dtype=np.uint8)
        mask[text] = np.fromiter(itertools.chain.from_iterable(masks), dtype=np.uint8, count=len(flat) - len(ends))
    return flat, lengths, mask


def _encode_texts(texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Worker: encode one task's texts in one thread (parallelism = the processes), ENCODE_CHARS at a
    time: (tokens, lengths, loss mask: chat sources only, else None)."""
    sp, eos, dtype, is_chat = _W["sp"], _W["eos"], _W["dtype"], _W.get("chat", False)
    parts, lo = [], 0
    while lo < len(texts):
        hi, chars = lo + 1, len(texts[lo])
        while hi < len(texts) and chars < ENCODE_CHARS:
            chars += len(texts[hi])
            hi += 1
        if is_chat:  # the chat template's ids and its assistant-only loss mask (data/chat.py)
            pairs = [chat.encode(_OneThread(sp), t) for t in texts[lo:hi]]
            parts.append(_flatten([p[0] for p in pairs], eos, dtype, [p[1] for p in pairs]))
        else:
            parts.append(_flatten(sp.encode(texts[lo:hi], num_threads=1), eos, dtype))
        lo = hi
    if len(parts) <= 1:
        return parts[0] if parts else _flatten([], eos, dtype, [] if is_chat else None)
    mask = np.concatenate([p[2] for p in parts]) if is_chat else None
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), mask


class _OneThread:
    """A SentencePiece processor whose batch encode runs in this thread (workers are the parallelism)."""

    def __init__(self, sp) -> None:
        self.sp = sp

    def encode(self, texts: list[str]) -> list[list[int]]:
        return self.sp.encode(texts, num_threads=1)


def tail_cut(text: str, fraction: float) -> int:
    """Where a lone document's val tail starts: the first line start at or after its last
    `fraction` of characters (the line start before it when the tail has none; the character
    itself in a text of one line). 0 when the text is too short to cut."""
    if len(text) < 2:
        return 0
    target = min(len(text) - 1, max(1, int(len(text) * (1 - fraction))))
    after = text.find("\n", target - 1, len(text) - 1)
    if after >= 0:
        return after + 1
    before = text.rfind("\n", 0, target - 1)
    return before + 1 if before >= 0 else target


def _split_lone(texts: list[str], nbytes: np.ndarray, ids: list[str], fraction: float) -> tuple:
    """The lone document as train head + val tail (module docstring); texts, bytes, val mask, ids."""
    (text,), (doc_id,) = texts, ids
    cut = tail_cut(text, fraction)
    if not cut:
        return texts, nbytes, np.zeros(1, bool), ids
    head, tail = text[:cut], text[cut:]
    log.info("%s: the only document; its last %s characters (from character %s) are val", doc_id,
             n(len(tail)), n(cut))
    return ([head, tail], np.array([len(head.encode("utf-8")), len(tail.encode("utf-8"))], np.int64),
            np.array([False, True]), [doc_id, f"{doc_id}#tail"])


def _tasks(path: Path, task_bytes: int, is_val_doc, keep: np.ndarray, group_by: str | None = None,
           tail: float | None = None) -> Iterator[tuple]:
    """(texts, utf8 bytes, val mask, ids, ends_row_group) of consecutive kept docs (`keep`: bool per
    row of the table), ~task_bytes of text each; `is_val_doc` takes a split key (`split_keys`).
    `tail`: the source's only kept document is here; cut its last `tail` share off as val."""
    pf = pq.ParquetFile(path)
    shard = path.name.removesuffix(".parquet")
    row = 0
    for rg in range(pf.num_row_groups):
        # one row group in memory at a time
        table = pf.read_row_group(rg, columns=["id", "text", *group_columns(group_by)])
        sel = keep[row: row + table.num_rows]
        row += table.num_rows
        if not sel.all():
            table = table.filter(pa.array(sel))
        if table.num_rows == 0:
            continue
        ids = table.column("id").to_pylist()
        text = table.column("text")
        nbytes = pc.binary_length(text).to_numpy(zero_copy_only=False).astype(np.int64)
        val = np.fromiter(map(is_val_doc, split_keys(group_by, shard, table)), dtype=bool, count=len(ids))
        if tail is not None:
            texts, nbytes, val, ids = _split_lone(text.to_pylist(), nbytes, ids, tail)
            yield texts, nbytes, val, ids, True
            continue
        # cut where the running byte count crosses a multiple of task_bytes (>= 1 doc per task)
        cuts = np.unique(np.searchsorted(np.cumsum(nbytes), np.arange(task_bytes, int(nbytes.sum()), task_bytes),
                                         side="right"))
        bounds = [0, *(int(c) for c in cuts if 0 < c < len(ids)), len(ids)]
        for lo, hi in zip(bounds, bounds[1:]):
            yield text.slice(lo, hi - lo).to_pylist(), nbytes[lo:hi], val[lo:hi], ids[lo:hi], hi == len(ids)


def _write_blocks(results: Iterator[tuple], writers: dict, source: str, bar) -> None:
    """Hand the encoded docs to the split writers in blocks of WRITE_DOCS docs of a row group
    (the last block of a row group may be shorter), however the docs were cut into tasks."""
    buf: list[tuple] = []  # (tokens, lengths, utf8 bytes, val mask, ids, loss mask) not yet written
    for (nbytes, val, ids, ends_rg), (flat, lengths, loss) in results:
        buf.append((flat, lengths, nbytes, val, ids, loss))
        bar.update(len(ids))
        n_docs = sum(len(b[4]) for b in buf)
        if n_docs < WRITE_DOCS and not ends_rg:
            continue
        flat, lengths, nbytes, val = (np.concatenate([b[k] for b in buf]) for k in range(4))
        loss = None if buf[0][5] is None else np.concatenate([b[5] for b in buf])
        ids = [i for b in buf for i in b[4]]
        off = np.concatenate([[0], np.cumsum(lengths)])
        cut = n_docs if ends_rg else n_docs - n_docs % WRITE_DOCS
        for lo in range(0, cut, WRITE_DOCS):
            hi = min(lo + WRITE_DOCS, cut)
            on_val = np.repeat(val[lo:hi], lengths[lo:hi])  # per token: its document goes to val
            for split, docs, toks in (("train", ~val[lo:hi], ~on_val), ("val", val[lo:hi], on_val)):
                sel = lo + np.flatnonzero(docs)
                writers[split].add(flat[off[lo]:off[hi]][toks], lengths[sel], nbytes[sel],
                                   [ids[i] for i in sel], [source] * len(sel),
                                   mask=None if loss is None else loss[off[lo]:off[hi]][toks])
        buf = [(flat[off[cut]:], lengths[cut:], nbytes[cut:], val[cut:], ids[cut:],
                None if loss is None else loss[off[cut]:])] if cut < n_docs else []


def _run(tasks: Iterator, jobs: int, ex) -> Iterator[tuple]:
    """(task less its texts, (tokens, lengths)) for each task, in task order, with at most IN_FLIGHT x jobs in flight.

    A worker that dies (or fails to start) raises BrokenProcessPool here instead of hanging.
    """
    if ex is None:
        for task in tasks:
            yield task[1:], _encode_texts(task[0])
        return
    pending: deque = deque()
    for task in tasks:
        pending.append((task[1:], ex.submit(_encode_texts, task[0])))  # texts: only in the queue
        if len(pending) >= IN_FLIGHT * jobs:
            task, fut = pending.popleft()
            yield task, fut.result()
    while pending:
        task, fut = pending.popleft()
        yield task, fut.result()


@contextlib.contextmanager
def _executor(jobs: int, initargs: tuple):
    """A pool of `jobs` encoders (None: encode in this process)."""
    if jobs == 1:
        _init(*initargs)
        yield None
        return
    # fork server: a clean process (no pyarrow/SentencePiece threads to fork) that imports this
    # module once; each worker is then a cheap fork of it instead of a fresh interpreter
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init, initargs=initargs) as ex:
        yield ex


def _text_bytes(path: Path) -> int:
    meta_pq = pq.ParquetFile(path).metadata
    text_col = [meta_pq.schema.column(i).path for i in range(len(meta_pq.schema))].index("text")
    return sum(meta_pq.row_group(rg).column(text_col).total_uncompressed_size
               for rg in range(meta_pq.num_row_groups))  # ~ UTF-8 size; only sizes the work


def tokenize_source(clean_dir: str | Path, dedup_dir: str | Path, tokenizer_path: str | Path,
                    out_dir: str | Path, *, source: str, val_fraction: float, seed: int,
                    min_val_docs: int = 0, jobs: int = 0, executor=None, group_by: str | None = None,
                    chat: bool = False) -> dict:
    """Write the sharded token directory `out_dir` atomically, re-encoding only the shards whose
    fingerprint changed: locally one shard after another by `jobs` encoders, or, when the shards are
    many or small, each by one of `jobs` processes (`core.executor.shard_tasks`), or each shard as
    one task of a cluster `executor` (`core.executor`; trimming a shard stays in this process).
    `chat`: the documents are rendered conversations (`kind: chat`), encoded by the chat template
    with a loss mask beside the tokens (`NAME.SPLIT.mask`, uint8, 1 on assistant tokens).
    Returns meta.json (with `shards_built`, `shards_reused`)."""
    from llmpipe.core import code
    from llmpipe.core.executor import shard_tasks
    from llmpipe.core.shards import ShardedDir, digest, read_manifest, shards
    clean_dir, dedup_dir = Path(clean_dir), Path(dedup_dir)
    clean = shards(read_manifest(clean_dir, f"clean@{source}"))
    if not (dedup_dir / "manifest.json").exists():
        raise missing_input(dedup_dir / "manifest.json", "dedup")
    tok = load(tokenizer_path)
    dtype = token_dtype(tok.vocab_size)
    base = digest("tokenize", code.fingerprint("stages.tokenize"), tok.fingerprint, val_fraction, seed,
                  min_val_docs, *([group_by] if group_by else []),  # no group_by: the digest it always had
                  *(["chat"] if chat else []))
    # with groups, each shard keeps one more lowest key than forced: the union then tells whether
    # the source has more groups than min_val_docs (documents are counted instead)
    keep_lowest = min_val_docs + (1 if group_by and min_val_docs else 0)
    with ShardedDir(out_dir, stage="tokenize", source=source) as d:
        plan = []
        for sh in clean:  # pass 1: masks, and each shard's lowest id hashes (cached in the manifest)
            name = sh["name"]
            mask_path = dedup_dir / f"{name}.npy"
            if not mask_path.exists():
                raise missing_input(mask_path, "dedup")
            keep = np.load(mask_path, allow_pickle=False) == 0
            if len(keep) != sh["docs"]:
                raise UserError(f"{mask_path}: {len(keep)} rows, but the clean shard {name} has {sh['docs']}; "
                                "rerun `dvc repro dedup`")
            inp = digest(sh["files"][f"{name}.parquet"]["sha256"], sha256_file(mask_path), seed, min_val_docs,
                         *([group_by] if group_by else []))
            old = d.previous.units.get(name, {}).get("stats", {})
            if old.get("input") == inp:
                lowest, kept = old["lowest"], old["kept_docs"]
            else:
                lowest, kept = [], int(keep.sum())
                if min_val_docs and kept:
                    table = pq.read_table(clean_dir / f"{name}.parquet", columns=["id", *group_columns(group_by)])
                    keys = split_keys(group_by, name, table.filter(pa.array(keep)))
                    lowest = lowest_hashes(list(dict.fromkeys(keys)), seed, keep_lowest)
            plan.append({"name": name, "keep": keep, "input": inp, "lowest": lowest, "kept": kept,
                         "clean_sha": sh["files"][f"{name}.parquet"]["sha256"]})
        n_docs = sum(p["kept"] for p in plan)
        lowest_all = [tuple(x) for p in plan for x in p["lowest"]]
        if group_by:  # a group can be in several shards; their count is exact when <= min_val_docs
            lowest_all = sorted(set(lowest_all))
        n_keys = len(lowest_all) if group_by else n_docs
        smallest = heapq.nsmallest(min_val_docs, lowest_all)
        forced = frozenset(i for _, i in smallest[:max(0, min(min_val_docs, n_keys - 1))])
        tail = val_fraction if n_docs == 1 and min_val_docs else None  # a lone document: cut its text
        extra = {i for h, i in smallest if i in forced and h >= val_fraction}  # not val by hash alone
        text_bytes = sum(_text_bytes(clean_dir / f"{p['name']}.parquet") for p in plan)
        jobs = worker_count(jobs, text_bytes, max(1, n_docs))
        log.info("tokenize %s: %d shards, %d docs; %d lowest-hash docs forced into val", source, len(plan),
                 n_docs, len(forced))
        trimmed: list[str] = []  # re-made from their previous version, without encoding
        for p in plan:
            mine = sorted(i for i in extra if any(i == x[1] for x in p["lowest"]))
            lone = ["lone"] if tail is not None and p["kept"] else []  # no token in a digest it always had
            p["fp"] = digest(base, p["input"], mine, *lone)
            # everything but the mask: the same text, tokenizer, split and code
            p["text_fp"] = digest(base, p["clean_sha"], seed, min_val_docs, mine, *lone)

        def trim(p: dict) -> dict | None:
            old = d.previous.get(p["name"])
            if tail is not None or old is None or old.get("stats", {}).get("text_fp") != p["text_fp"]:
                return None  # a cut lone document is always encoded
            splits = _trim_shard({f: d.previous.files[f] for f in old["files"]}, old["stats"]["splits"],
                                 clean_dir / f"{p['name']}.parquet", p["keep"], d.tmp, p["name"], source, dtype,
                                 chat)
            if splits is not None:
                trimmed.append(p["name"])
            return splits

        built = {}
        initargs = (str(tok.path), tok.eos_id, dtype.name, chat)
        todo = []
        for p in plan:
            if not d.has(p["name"], p["fp"]):
                splits = trim(p)
                if splits is not None:
                    built[p["name"]] = splits
                else:
                    todo.append(p)
        # whole shards as tasks: a cluster's, or local processes when the shards are many or too
        # small to split over the workers (a book per shard is one task: one busy core)
        busy = [p["kept"] for p in todo if p["kept"]]  # a shard dedup emptied is no work
        tasks = shard_tasks(executor, jobs, len(todo), sum(busy) / max(1, len(busy)), 2 * jobs)
        with contextlib.ExitStack() as stack:
            results, todo_set = iter(()), set()
            if tasks is not None:  # each shard is recorded as its task returns (in plan order): a Ctrl-C keeps them
                calls = [(initargs, clean_dir / f"{p['name']}.parquet", p["keep"], d.tmp, p["name"], source,
                          dtype.name, (val_fraction, seed, forced, group_by, tail if p["kept"] else None),
                          tasks.task_jobs()) for p in todo]
                results = stack.enter_context(contextlib.closing(
                    tasks.each(encode_shard_task, calls, desc=f"tokenize {source}")))
                todo_set = {p["name"] for p in todo}
            ex, ready = None, False
            for p in plan:
                name, fp = p["name"], p["fp"]
                if name in built:
                    splits = built[name]
                elif name in todo_set:
                    splits = next(results)
                elif d.reuse(name, fp) is not None:
                    continue
                else:
                    if not ready:
                        ex = stack.enter_context(_executor(jobs, initargs))
                        ready = True
                    splits = _encode_shard(clean_dir / f"{name}.parquet", p["keep"], d.tmp, name, source,
                                           dtype, lambda i: is_val(i, val_fraction, seed, forced), jobs, ex,
                                           group_by, chat, tail if p["kept"] else None)
                d.add(name, fp, [f["name"] for sp in splits.values() for f in sp["files"].values()],
                      shards=[{"name": name, "docs": p["kept"]}],
                      stats={"input": p["input"], "text_fp": p["text_fp"], "lowest": p["lowest"],
                             "kept_docs": p["kept"], "splits": splits})
        per_shard = [{"name": u["key"], "splits": u["stats"]["splits"]} for u in d.units]
        totals = {sp: {k: sum(x["splits"][sp][k] for x in per_shard) for k in ("docs", "tokens", "utf8_bytes")}
                  for sp in SPLITS}
        meta = make_meta(tok, dtype, totals, rerun=f"dvc repro tokenize@{source}", kind="source", source=source,
                         split={"val_fraction": val_fraction, "seed": seed, "min_val_docs": min_val_docs,
                                "group_by": group_by, "forced_val_ids": sorted(forced),
                                **({"lone_document_tail": tail} if tail is not None else {})}, shards=per_shard)
        write_json(d.tmp / "meta.json", meta)
        # the manifest covers every byte of the folder (data/manifests/tokens/SRC.json stands for it)
        d.finish(meta_sha256=sha256_file(d.tmp / "meta.json"))
    meta["shards_built"], meta["shards_reused"] = len(d.built), len(d.reused)
    meta["shards_trimmed"] = len(trimmed)
    # not in meta.json (they depend on the machine): how many workers, and what they split
    meta["jobs"], meta["jobs_over"] = jobs, ("shards" if tasks is not None and todo else "documents")
    meta["reuse"] = d.summary() + (f" ({len(trimmed)} of the built shards trimmed from their previous version: "
                                   "dedup dropped documents, none was encoded)" if trimmed else "")
    if trimmed:
        log.info("tokenize %s: trimmed %s", source, ", ".join(trimmed[:10]) + (" ..." if len(trimmed) > 10 else ""))
    return meta


def _encode_shard(path: Path, keep: np.ndarray, tmp: Path, name: str, source: str, dtype, is_val_doc,
                  jobs: int, ex, group_by: str | None = None, chat: bool = False,
                  tail: float | None = None, progress: bool = True) -> dict:
    """Encode the kept documents of one clean shard into NAME.{train,val}.* under tmp (+ .mask: chat);
    `progress`: its own bar (off in a shard task: the stage's bar counts shards)."""
    text_bytes = _text_bytes(path)
    task_bytes = int(np.clip(text_bytes / (jobs * TASKS_PER_WORKER), TASK_BYTES_MIN, TASK_BYTES_MAX))
    with contextlib.ExitStack() as stack:
        writers = {s: stack.enter_context(SplitWriter(tmp, s, dtype, stem=f"{name}.{s}", mask=chat))
                   for s in SPLITS}
        results = _run(_tasks(path, task_bytes, is_val_doc, keep, group_by, tail), jobs, ex)
        with tqdm(total=int(keep.sum()), desc=f"tokenize {source} {name}", unit="doc", leave=False,
                  disable=None if progress else True) as bar:
            _write_blocks(results, writers, source, bar)
        return {s: w.close() for s, w in writers.items()}


def _take_docs(tokens: np.ndarray, offsets: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The tokens of documents `idx` (in that order) of a token array with doc offsets; their lengths."""
    starts = offsets[idx]
    lengths = offsets[idx + 1] - starts
    if not len(idx):
        return np.zeros(0, tokens.dtype), lengths
    shift = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return np.asarray(tokens[np.arange(int(lengths.sum())) + shift]), lengths


def _trim_shard(old_files: dict[str, Path], old_splits: dict, clean_path: Path, keep: np.ndarray, tmp: Path,
                name: str, source: str, dtype, chat: bool = False) -> dict | None:
    """Write NAME.{train,val}.* for the documents `keep` selects by copying them from the previous
    version of the shard (`old_files`: encoded from the same text, tokenizer and split, with a mask
    that kept more), in the blocks `_write_blocks` would write, so the bytes are those of a fresh
    encode (tested). This is what a shard costs when dedup drops some of its documents because
    another source gained a copy of them: a copy of its tokens, not a re-encode. None when a kept
    document is not in the previous version (it was dropped there): then the shard is encoded.
    `chat`: the loss mask (`NAME.SPLIT.mask`, one byte per token) is cut with the tokens."""
    pf = pq.ParquetFile(clean_path)
    rows = np.array([pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)], np.int64)
    kept_rows = np.flatnonzero(keep)
    new_ids = pq.read_table(clean_path, columns=["id"]).column("id").take(pa.array(kept_rows))
    split_of = np.full(len(kept_rows), -1, np.int8)
    old_pos = np.zeros(len(kept_rows), np.int64)
    old = []
    for k, sp in enumerate(SPLITS):
        files = old_splits[sp]["files"]
        table = pq.read_table(old_files[files["docs"]["name"]], columns=["id", "utf8_bytes"])
        pos = pc.index_in(new_ids, value_set=table.column("id")).fill_null(-1).to_numpy(zero_copy_only=False)
        hit = pos >= 0
        if (split_of[hit] >= 0).any() or (np.diff(pos[hit]) <= 0).any():
            return None  # not the layout a previous encode of this text writes
        split_of[hit], old_pos[hit] = k, pos[hit]
        offsets = np.fromfile(old_files[files["idx"]["name"]], dtype=np.uint64).astype(np.int64)
        loss = memmap_tokens(old_files[files["mask"]["name"]], np.uint8) if chat else None
        old.append((memmap_tokens(old_files[files["bin"]["name"]], dtype), offsets,
                    table.column("utf8_bytes").to_numpy(), loss))
    if (split_of < 0).any():
        return None
    rg_ends = np.searchsorted(kept_rows, np.cumsum(rows))  # kept docs before each row group's end
    with contextlib.ExitStack() as stack:
        writers = {s: stack.enter_context(SplitWriter(tmp, s, dtype, stem=f"{name}.{s}", mask=chat)) for s in SPLITS}
        lo_rg = 0
        for hi_rg in rg_ends.tolist():  # blocks of WRITE_DOCS kept docs, cut at row-group ends
            for lo in range(lo_rg, hi_rg, WRITE_DOCS):
                hi = min(lo + WRITE_DOCS, hi_rg)
                for k, sp in enumerate(SPLITS):
                    sel = lo + np.flatnonzero(split_of[lo:hi] == k)
                    tokens, offsets, nbytes, loss = old[k]
                    toks, lengths = _take_docs(tokens, offsets, old_pos[sel])
                    writers[sp].add(toks, lengths, nbytes[old_pos[sel]], new_ids.take(pa.array(sel)).to_pylist(),
                                    [source] * len(sel),
                                    mask=None if loss is None else _take_docs(loss, offsets, old_pos[sel])[0])
            lo_rg = hi_rg
        return {s: w.close() for s, w in writers.items()}


def encode_shard_task(initargs: tuple, path: Path, keep: np.ndarray, tmp: Path, name: str, source: str,
                      dtype: str, split: tuple, jobs: int) -> dict:
    """One shard as one task of a cluster executor (`core.executor`): `_encode_shard` with `jobs`
    encoders of the task's own; `split`: (val_fraction, seed, forced val keys, split.group_by,
    the lone document's tail share or None)."""
    val_fraction, seed, forced, group_by, tail = split
    with _executor(jobs, initargs) as ex:
        return _encode_shard(path, keep, tmp, name, source, np.dtype(dtype),
                             lambda i: is_val(i, val_fraction, seed, forced), jobs, ex, group_by,
                             bool(initargs[3]), tail, progress=False)


def summary_line(source: str, meta: dict, seconds: float) -> str:
    """The tokenize stage's one-line summary."""
    tr, va = meta["splits"]["train"], meta["splits"]["val"]
    total = tr["tokens"] + va["tokens"]
    jobs = f"{meta['jobs']} jobs over {meta['jobs_over']}; " if "jobs" in meta else ""
    return (f"tokenize {source}: {n(tr['docs'] + va['docs'])} docs -> train {n(tr['docs'])} docs / "
            f"{n(tr['tokens'])} tokens, val {n(va['docs'])} docs / {n(va['tokens'])} tokens "
            f"({meta['dtype']}) in {seconds:.1f}s, {(tr['utf8_bytes'] + va['utf8_bytes']) / max(total, 1):.2f} "
            f"bytes/token; {jobs}{meta.get('reuse', '')}")
