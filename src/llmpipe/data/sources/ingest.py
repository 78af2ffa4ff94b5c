"""Ingest one source: raw records -> the Document table (see `llmpipe.data.table`).

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

Ids are unique within a source. An explicit id seen twice is a bad record (`duplicate_id`).
Without an id field the id is `content_id(text)`; an exact duplicate text (which dedup must still
see) gets `content_id-2`, `-3`, ... in input order, counted as `duplicate_texts`.
Memory: the set of ids seen, ~100 bytes per document; everything else streams.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from typing import Iterator

from tqdm import tqdm

from llmpipe.data.table import content_id, write_docs
from llmpipe.core.log import Timer, get_logger, n
from llmpipe.params import SourceParams
from llmpipe.data.sources.files import SourceError, resolve
from llmpipe.data.sources.readers import Bad, Item, read_file

log = get_logger("ingest")
SAMPLE_META = ("planted",)  # sample records keep what was planted in them (for tests only)


def iter_items(sp: SourceParams) -> tuple[Iterator[Item], dict]:
    """The raw record stream of a source and facts about it for the report."""
    if sp.uri.startswith("sample://"):
        from llmpipe.data.sources.sample import sample_records
        kind = sp.uri[len("sample://"):]
        recs = sample_records(kind, sp.sample_docs, sp.sample_seed)
        info = {"files": 0, "python": f"{sys.version_info.major}.{sys.version_info.minor}"}
        return ((f"{sp.uri}#{i}", r) for i, r in enumerate(recs)), info
    files = resolve(sp.uri, sp.format)
    columns = [c for c in (sp.text_field, sp.id_field, sp.url_field, *sp.meta_fields) if c]

    def items() -> Iterator[Item]:
        for f in files:
            yield from read_file(f, sp.text_field, columns, sp.txt_mode)
    return items(), {"files": len(files)}


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


def ingest_source(name: str, sp: SourceParams, out: str, progress: bool = True) -> dict:
    """Write source `name` to the Document table `out`; return the report (counts by reason)."""
    with Timer() as t:
        report = _ingest(name, sp, out, progress)
    broken = report["files_failed_list"]
    (log.warning if broken else log.info)(
        f"ingest {name}: {n(report['docs_out'])} docs written of {n(report['docs_in'])} read, "
        f"skipped {n(sum(report['skipped_by_reason'].values()))}"
        + (f" {report['skipped_by_reason']}, " if report["skipped_by_reason"] else ", ")
        + (f"{broken_summary(broken)}, " if broken else "")
        + f"{n(report['chars_out'])} chars, {t.seconds:.1f} s, "
        f"{n(report['docs_in'] / max(t.seconds, 1e-9))} docs/s -> {out}")
    return report


def broken_summary(broken: list[dict]) -> str:
    """`2 files broke: a.jsonl.gz:482 (truncated_file, 481 records read before it), ...`"""
    named = [f"{b['at']} ({b['reason']}, {n(b['records_before'])} records read before it)"
             for b in broken[:BROKEN_NAMED]]
    more = len(broken) - BROKEN_NAMED
    tail = f" and {n(more)} more (files_failed_list in the report)" if more > 0 else ""
    return f"{n(len(broken))} file{'s' if len(broken) != 1 else ''} broke: {', '.join(named)}{tail}"


def _ingest(name: str, sp: SourceParams, out: str, progress: bool) -> dict:
    items, info = iter_items(sp)
    mapper = _Mapper(name, sp)
    skipped: Counter[str] = Counter()
    broken: list[dict] = []
    stats = {"docs_in": 0, "docs_out": 0, "chars_out": 0}

    def rows() -> Iterator[dict]:
        for item in tqdm(items, desc=f"ingest {name}", unit="doc", disable=not progress,
                         file=sys.stderr, mininterval=1.0):
            row = item if isinstance(item, Bad) else mapper(*item)
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
            if sp.max_docs is not None and stats["docs_out"] >= sp.max_docs:
                return

    write_docs(out, _nonempty(rows(), sp, stats, skipped, broken))
    return {"source": name, "uri": sp.uri, **info, **stats,
            "skipped_by_reason": dict(sorted((k, v) for k, v in skipped.items() if v)),
            "files_failed": len(broken),
            "files_failed_by_reason": dict(sorted(Counter(b["reason"] for b in broken).items())),
            "files_failed_list": broken,
            "duplicate_texts": mapper.duplicate_texts}


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


def _nonempty(rows: Iterator[dict], sp: SourceParams, stats: dict, skipped: Counter,
              broken: list[dict]) -> Iterator[dict]:
    """Pass rows through; an empty source is an error (raised inside the writer: no output left)."""
    yield from rows
    if stats["docs_out"] == 0:
        why = f"; {broken_summary(broken)}" if broken else ""
        raise SourceError(f"{sp.uri}: empty source: no documents (records read: {stats['docs_in']}, "
                          f"skipped: {dict(skipped) or 0}{why})")
