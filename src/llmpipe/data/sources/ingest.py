"""Ingest one source: raw records -> shards of the Document table (see `llmpipe.data.table`).

The output is a sharded directory (`llmpipe.core.shards`): one unit of work per input file, which
writes one shard per `sources.SRC.shard_mb` of text read (`FILE.00000.parquet`, `FILE.00001...`;
a sample:// corpus is one unit, `sample`). A unit is redone only when its fingerprint changes:
the sha256 of the input file's bytes (local files: remembered per (size, mtime, inode) in
`.SRC.state.json` beside the output, so an unchanged file is not read again; remote files: the
checksum their filesystem reports), the source's params other than `uri` and `kind`, and the
code. Files are ingested in parallel, one per worker process (`--jobs`, default every core);
the output does not depend on the number of workers.

For every record, in input order: take the text (`text_field`), id (`id_field`, or a content id),
url (`url_field`) and meta (`meta_fields`, as a JSON object), check them, and write a row.
A bad record (malformed JSON, invalid UTF-8, missing text/id, duplicate id, ...) either stops
the stage with a message naming file, line/row and rule (`on_bad_record: fail`, the default) or
is counted under its reason and skipped (`skip`). Every record is accounted for:
`docs_in == docs_out + sum(skipped_by_reason.values())`.

A file that breaks part-way (a truncated or corrupt compressed stream, an unreadable Parquet file,
a read the filesystem refuses) is a file-level failure, governed by `on_bad_file`, not by
`on_bad_record`: `fail` (the default) stops the stage naming the file, where it broke and why;
`skip` keeps the records read before the break (they are whole, checked records, counted in
`docs_in` like any other), drops the unread rest, and lists the file in the report
(`files_failed`, `files_failed_by_reason`, `files_failed_list`) and in the summary line.

Ids are unique within a shard (an input file, or a `shard_mb` piece of a bigger one). An
explicit id seen twice in one shard is a bad record (`duplicate_id`). Without an id field the
id is `content_id(text)`; an exact duplicate text (which dedup must still see) gets
`content_id-2`, `-3`, ... in file order, counted as `duplicate_texts`. Across shards ids are not
compared: a set of every id of a source is what
cost ~95 GB at 350BT; downstream a document is (source, shard, row), and exact dedup removes
repeated texts whatever their ids. Memory per worker: the ids of one shard; everything else streams.
"""
from __future__ import annotations

import json
import os
import sys
from collections import Counter
from typing import Iterator

from pathlib import Path

from fsspec.implementations.local import LocalFileSystem
from fsspec.utils import get_protocol

from llmpipe.core import code
from llmpipe.core.atomic import sha256_file, write_json
from llmpipe.core.shards import ShardedDir, digest, map_units, shard_base, shard_name
from llmpipe.data import chat
from llmpipe.data.table import content_id, write_docs
from llmpipe.core.log import Timer, get_logger, n
from llmpipe.params import SourceParams, as_dict
from llmpipe.data.sources.files import SourceError, resolve
from llmpipe.data.sources.readers import Bad, Item, read_file

log = get_logger("ingest")
UNREADABLE = "unreadable:"  # the input fingerprint of a file that could not be hashed
SAMPLE_META = ("planted",)  # sample records keep what was planted in them (for tests only)


def input_units(name: str, sp: SourceParams) -> list[dict]:
    """The units of work of a source, in order: {key (shard base), file (InputFile or None for
    sample://), rel}."""
    if sp.uri.startswith("sample://"):
        return [{"key": "sample", "file": None, "rel": sp.uri}]
    units = [{"key": shard_base(f.rel), "file": f, "rel": f.rel} for f in resolve(sp.uri, sp.format)]
    keys = [u["key"] for u in units]
    if len(set(keys)) != len(keys):  # a~b.jsonl vs a/b.jsonl: the same shard names
        dup = next(k for k in keys if keys.count(k) > 1)
        raise SourceError(f"{sp.uri}: two input files make the same shard name {dup!r}; rename one")
    return units


def input_index(name: str, sp: SourceParams, state: dict) -> dict:
    """What ingest@NAME reads, as its DVC dependency `data/inputs/NAME.json` (stage `inputs`): the
    uri and, for local files, each file's path under the uri, size and sha256 (content, so the
    index is the same on every machine and a touched file changes nothing). A remote or sample://
    source lists no files (its uri, in params, is the dependency); a uri that names nothing is
    recorded as its error, which ingest@NAME then reports, so one bad source stops only itself."""
    index: dict = {"source": name, "uri": sp.uri, "format": sp.format}
    if sp.uri.startswith("sample://") or get_protocol(sp.uri) not in ("file", "local"):
        return index
    try:
        units = input_units(name, sp)
    except SourceError as e:
        return {**index, "error": str(e)}
    index["files"] = [[u["rel"], _size(u["file"].path), _input_sha(u["file"], state)] for u in units]
    return index


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:  # ingest reports the file (its sha says unreadable)
        return -1


def iter_items(sp: SourceParams, f=None) -> Iterator[Item]:
    """The raw record stream of one unit: input file `f`, or the sample corpus."""
    if f is None:
        from llmpipe.data.sources.sample import sample_records
        recs = sample_records(sp.uri[len("sample://"):], sp.sample_docs, sp.sample_seed)
        return ((f"{sp.uri}#{i}", r) for i, r in enumerate(recs))
    text_field = sp.messages_field if sp.kind == "chat" else sp.text_field
    columns = [c for c in (text_field, sp.id_field, sp.url_field, *sp.meta_fields) if c]
    return read_file(f, text_field, columns, sp.txt_mode, sp.txt_chunk_bytes, chat=sp.kind == "chat")


def hash_memory(out: str | Path) -> tuple[Path, dict]:
    """(path, contents) of the sha256 memory of the inputs behind output `out`: `.OUT.state.json`
    beside it ({path: [size, mtime_ns, inode, sha256]}); a missing or damaged one is empty (it
    only costs hashing again). The caller writes it back with `write_json` when it holds anything."""
    path = Path(out).parent / f".{Path(out).name}.state.json"
    try:
        return path, json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, ValueError):
        return path, {}


def _input_sha(f, state: dict, hints: dict | None = None) -> str:
    """sha256 of a local file (remembered in `state` by size, mtime and inode; `hints`: another such
    memory to consult before reading the file, e.g. the `inputs` stage's, which hashed every new
    file just before its ingest runs), or the checksum a remote filesystem reports (no download)."""
    try:
        if isinstance(f.fs, LocalFileSystem):
            st = os.stat(f.path)
            key = [st.st_size, st.st_mtime_ns, st.st_ino]
            for memory in (state, hints or {}):
                known = memory.get(f.path)
                if known and known[:3] == key:
                    state[f.path] = known
                    return known[3]
            sha = sha256_file(f.path)
            state[f.path] = [*key, sha]
            return sha
        info = f.fs.info(f.path)
    except OSError as e:  # the reader reports it (unreadable_file, on_bad_file); never reused
        return f"{UNREADABLE}{e.errno}"
    for k in ("sha256", "checksum", "ETag", "etag", "blob_id", "md5"):
        if info.get(k):
            return f"{k}:{info[k]}:{info.get('size')}"
    lfs = info.get("lfs") or {}
    if isinstance(lfs, dict) and lfs.get("sha256"):
        return f"lfs:{lfs['sha256']}"
    return f"ukey:{f.fs.ukey(f.path)}"


class _Mapper:
    """Record -> Document row, or the reason it is bad. Holds the id-uniqueness state."""

    def __init__(self, name: str, sp: SourceParams):
        self.name, self.sp = name, sp
        self.sample = sp.uri.startswith("sample://")
        self.seen: set[str] = set()
        self.text_copies: Counter[str] = Counter()
        self.duplicate_texts = 0

    def __call__(self, where: str, rec: dict) -> dict | Bad:
        sp = self.sp
        if sp.kind == "chat":  # a conversation: checked, then stored as its template text
            messages = rec.get(sp.messages_field)
            if messages is None:
                return Bad(where, "missing_messages_field", f"field {sp.messages_field!r} is absent or null "
                                                            f"(fields: {', '.join(map(str, rec))}); set "
                                                            f"sources.{self.name}.messages_field")
            bad = chat.check_messages(messages)
            if bad is not None:
                return Bad(where, *bad)
            rec = {**rec, sp.text_field: chat.render(messages)}
        text = rec.get(sp.text_field)
        if text is None:
            return Bad(where, "missing_text_field", f"field {sp.text_field!r} is absent or null "
                                                    f"(fields: {', '.join(map(str, rec))})")
        if not isinstance(text, str):
            return Bad(where, "text_not_string", f"field {sp.text_field!r} is a {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:  # a lone surrogate, e.g. from a JSON "\ud800" escape
            return Bad(where, "invalid_utf8", f"text is not encodable as UTF-8 at character {e.start}")
        if sp.id_field:
            v = rec.get(sp.id_field)
            if v is None:
                return Bad(where, "missing_id_field", f"field {sp.id_field!r} is absent or null; "
                                                      f"set sources.{self.name}.id_field: null to use content ids "
                                                      f"(or `path` for .txt files)")
            doc_id = str(v)
        else:
            doc_id = content_id(text)
            self.text_copies[doc_id] += 1
            if self.text_copies[doc_id] > 1:
                doc_id = f"{doc_id}-{self.text_copies[doc_id]}"
                self.duplicate_texts += 1
        if doc_id in self.seen:
            return Bad(where, "duplicate_id", f"id {doc_id!r} was already used by an earlier record")
        self.seen.add(doc_id)
        url = rec.get(sp.url_field) if sp.url_field else None
        keys = list(sp.meta_fields) + (list(SAMPLE_META) if self.sample else [])
        meta = {k: rec[k] for k in keys if rec.get(k) is not None}
        return {"id": doc_id, "source": self.name, "text": text, "url": None if url is None else str(url),
                "meta": json.dumps(meta, sort_keys=True, ensure_ascii=False, default=str) if meta else None}


BROKEN_NAMED = 3  # broken files the summary line names; the report lists them all


def ingest_source(name: str, sp: SourceParams, out: str | Path, progress: bool = True,
                  jobs: int = 0, executor=None, inputs: str | Path | None = None) -> dict:
    """Write source `name` as a sharded Document directory `out`; return the report. The input
    files are ingested on `executor` (`core.executor`; default: `jobs` local processes).
    `inputs`: the `inputs` stage's output folder, whose sha256 memory spares hashing a file twice."""
    hints = hash_memory(inputs)[1] if inputs is not None else None
    with Timer() as t:
        report, d = _ingest(name, sp, Path(out), progress, jobs, executor, hints)
    broken = report["files_failed_list"]
    (log.warning if broken else log.info)(
        f"ingest {name}: {n(report['docs_out'])} docs written of {n(report['docs_in'])} read, "
        f"skipped {n(sum(report['skipped_by_reason'].values()))}"
        + (f" {report['skipped_by_reason']}, " if report["skipped_by_reason"] else ", ")
        + (f"{broken_summary(broken)}, " if broken else "")
        + f"{n(report['chars_out'])} chars in {n(report['shards'])} shards ({d.summary()}), "
        f"{t.seconds:.1f} s -> {out}")
    return report


def broken_summary(broken: list[dict]) -> str:
    """`2 files broke: a.jsonl.gz:482 (truncated_file, 481 records read before it), ...`"""
    named = [f"{b['at']} ({b['reason']}, {n(b['records_before'])} records read before it)"
             for b in broken[:BROKEN_NAMED]]
    more = len(broken) - BROKEN_NAMED
    tail = f" and {n(more)} more (files_failed_list in the report)" if more > 0 else ""
    return f"{n(len(broken))} file{'s' if len(broken) != 1 else ''} broke: {', '.join(named)}{tail}"


SUM_KEYS = ("docs_in", "docs_out", "chars_out", "duplicate_texts")


def unit_fingerprint(name: str, sp: SourceParams, unit: dict, input_sha: str, budget) -> str:
    params = {k: v for k, v in as_dict(sp).items() if k not in ("uri", "kind")}
    if sp.kind == "chat":  # records are read as conversations: another unit than the same file as text
        params["kind"] = "chat"
    return digest("ingest", code.fingerprint("stages.ingest"), name, params, unit["rel"] if unit["file"] else None,
                  input_sha, budget)


def ingest_unit(name: str, sp: SourceParams, unit: dict, tmp: Path, budget: int | None) -> dict:
    """Ingest one unit (an input file) into shards under `tmp`; returns {shards, files, stats}.
    Runs in a worker process; a bad record (on_bad_record: fail) raises SourceError."""
    mappers = [_Mapper(name, sp)]  # one per shard: ids are unique within a shard (memory: its ids)
    skipped: Counter[str] = Counter()
    broken: list[dict] = []
    stats = {"docs_in": 0, "docs_out": 0, "chars_out": 0}
    limit = sp.shard_mb * 1_000_000
    shards: list[dict] = []

    def rows() -> Iterator[dict]:
        for item in iter_items(sp, unit["file"]):
            row = item if isinstance(item, Bad) else mappers[-1](*item)
            if isinstance(row, Bad) and row.broken:
                broken.append(_broken_file(name, sp, row))
                continue
            if isinstance(row, Bad):
                if sp.on_bad_record == "fail":
                    raise SourceError(f"{row.where}: {row.reason}: {row.detail}; fix the input, or set "
                                      f"sources.{name}.on_bad_record: skip to count and skip bad records")
                stats["docs_in"] += row.records
                skipped[row.reason] += row.records
                continue
            stats["docs_in"] += 1
            stats["docs_out"] += 1
            stats["chars_out"] += len(row["text"])
            yield row
            if budget is not None and stats["docs_out"] >= budget:  # read nothing past the budget
                return

    it = rows()
    for row in it:  # one shard per `limit` characters of text, each a Document table
        piece = shard_name(unit["key"], len(shards))

        def one_shard(first=row):
            chars = 0
            yield first
            chars += len(first["text"])
            if chars >= limit:
                mappers.append(_Mapper(name, sp))
                return
            for r in it:
                yield r
                chars += len(r["text"])
                if chars >= limit:
                    mappers.append(_Mapper(name, sp))  # the next shard's rows: a fresh id set
                    return
        docs = write_docs(tmp / f"{piece}.parquet", one_shard())
        shards.append({"name": piece, "docs": docs})
    unit_stats = {**stats, "skipped_by_reason": dict(sorted((k, v) for k, v in skipped.items() if v)),
                  "files_failed_list": broken, "duplicate_texts": sum(m.duplicate_texts for m in mappers)}
    return {"shards": shards, "files": [f"{s['name']}.parquet" for s in shards], "stats": unit_stats}


def _ingest(name: str, sp: SourceParams, out: Path, progress: bool, jobs: int,
            executor=None, hints: dict | None = None) -> tuple[dict, ShardedDir]:
    units = input_units(name, sp)
    state_path, state = hash_memory(out)

    def sha_of(u: dict) -> str:
        return _input_sha(u["file"], state, hints) if u["file"] else \
            digest(sp.uri, sp.sample_docs, sp.sample_seed, sys.version_info[:2])

    def reusable(d, u: dict, fp: str, sha: str) -> bool:
        return not sha.startswith(UNREADABLE) and d.has(u["key"], fp)

    with ShardedDir(out, stage="ingest", source=name) as d:
        if sp.max_docs is None:  # independent units: reuse or build in parallel
            shas = [sha_of(u) for u in units]
            plan = [(u, unit_fingerprint(name, sp, u, sha, None), sha) for u, sha in zip(units, shas)]
            todo = [(u, fp) for u, fp, sha in plan if not reusable(d, u, fp, sha)]
            built = dict(zip([u["key"] for u, _ in todo],
                             map_units(ingest_unit, [(name, sp, u, d.tmp, None) for u, _ in todo], jobs,
                                       desc=f"ingest {name}", unit="file", executor=executor)))
            for u, fp, _sha in plan:
                if u["key"] in built:
                    r = built[u["key"]]
                    d.add(u["key"], fp, r["files"], shards=r["shards"], stats=r["stats"])
                else:
                    d.reuse(u["key"], fp)
        else:  # max_docs: each unit gets what the earlier ones left, so they run in order
            left = sp.max_docs
            for u in units:  # hashed one by one: files past the budget are never read
                sha = sha_of(u)
                fp = unit_fingerprint(name, sp, u, sha, left)
                got = None if sha.startswith(UNREADABLE) else d.reuse(u["key"], fp)
                if got is None:
                    r = ingest_unit(name, sp, u, d.tmp, left)
                    got = d.add(u["key"], fp, r["files"], shards=r["shards"], stats=r["stats"])
                left -= got["stats"]["docs_out"]
                if left <= 0:
                    break
        stats = {k: sum(u["stats"][k] for u in d.units) for k in SUM_KEYS}
        skipped: Counter[str] = Counter()
        broken = []
        for u in d.units:
            skipped.update(u["stats"]["skipped_by_reason"])
            broken += u["stats"]["files_failed_list"]
        if stats["docs_out"] == 0:
            why = f"; {broken_summary(broken)}" if broken else ""
            raise SourceError(f"{sp.uri}: empty source: no documents (records read: {stats['docs_in']}, "
                              f"skipped: {dict(skipped) or 0}{why})")
        report = {"source": name, "uri": sp.uri, "files": sum(1 for u in units if u["file"]), **stats,
                  "skipped_by_reason": dict(sorted((k, v) for k, v in skipped.items() if v)),
                  "files_failed": len(broken),
                  "files_failed_by_reason": dict(sorted(Counter(b["reason"] for b in broken).items())),
                  "files_failed_list": broken,
                  "shards": sum(len(u["shards"]) for u in d.units),
                  "units_built": len(d.built), "units_reused": len(d.reused)}
        if not units[0]["file"]:
            report["python"] = f"{sys.version_info.major}.{sys.version_info.minor}"
        d.finish(**{k: report[k] for k in ("docs_out", "chars_out", "shards")})
    if state:
        write_json(state_path, state)
    return report, d


def _broken_file(name: str, sp: SourceParams, bad: Bad) -> dict:
    """A file broke at `bad`: fail (on_bad_file: fail), or log it and return its report entry."""
    kept = bad.records_before
    if sp.on_bad_file == "fail":
        rest = f"keep the {n(kept)} records read before the break and go on" if kept else "skip it and go on"
        raise SourceError(f"{bad.where}: {bad.reason}: {bad.detail}; replace or remove the file, or set "
                          f"sources.{name}.on_bad_file: skip to {rest}")
    log.warning(f"{bad.where}: {bad.reason}: {bad.detail}; skipping the rest of the file "
                f"({n(kept)} records read before the break; sources.{name}.on_bad_file: skip)")
    return {"file": bad.file, "reason": bad.reason, "at": bad.where, "records_before": kept, "detail": bad.detail}
