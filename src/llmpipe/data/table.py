"""The Document table: Parquet (zstd), streamed in row-group batches.

Contract (every stage from ingest to dedup reads and writes it):
    id     string, unique within a source, stable (original id, or sha256 of the text)
    source string, the `sources` key the document came from
    text   string, UTF-8
    url    string, nullable
    meta   string (JSON object), nullable
Later stages may add columns (clean adds signals, hash and MinHash signature); readers select
the columns they need. Writers go through `TableWriter`, which writes to a temp name and renames
it (`atomic.atomic_path`) only once the footer is written and synced, so a killed stage or a full
disk never leaves a table that looks complete.

Read it back with `read_batches(path)` (bounded memory) or `pyarrow.parquet.read_table(path)`.
"""
from __future__ import annotations

from llmpipe.core.errors import UserError

import hashlib
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from llmpipe.core.atomic import atomic_path, close_all, exit_atomic

DOC_SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
    pa.field("url", pa.string()),
    pa.field("meta", pa.string()),
])
DOC_COLUMNS = DOC_SCHEMA.names
ROW_GROUP_SIZE = 2048  # documents per row group: a few MB of web text, cheap to stream
ROW_GROUP_BYTES = 64 << 20  # ... or fewer, so that a row group holds at most ~64 MiB: 2048 books
                            # would be ~800 MB, and readers hold one row group in memory
# zstd level 3, not pyarrow's default 1: on the generated FineWeb / Wikipedia shards 24-41% smaller
# (ingested 4.7 -> 3.6 MB, clean wikipedia 3.8 -> 2.3 MB per shard) for the same write CPU; the
# text is the largest thing llmpipe stores twice (ingested and clean). 6 and 9 shrink it a further
# 10-20% at 2-3x the write time.
ZSTD_LEVEL = 3


def content_id(text: str) -> str:
    """Stable id from content, for sources without ids (never Python's hash())."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class TableWriter:
    """Stream record batches to `path` atomically, in row groups of `row_group_size` rows or
    ROW_GROUP_BYTES (whichever is reached first; a single larger row is a row group of its own).

    >>> with TableWriter(out, DOC_SCHEMA) as w:
    ...     w.write({"id": [...], "source": [...], "text": [...], "url": [...], "meta": [...]})
    """

    def __init__(self, path: str | Path, schema: pa.Schema = DOC_SCHEMA,
                 row_group_size: int = ROW_GROUP_SIZE):
        self.path = Path(path)
        self.schema = schema
        self.row_group_size = row_group_size
        self.rows = 0
        self._buf: list[pa.RecordBatch] = []
        self._buf_rows = self._buf_bytes = 0

    def __enter__(self) -> "TableWriter":
        self._out = atomic_path(self.path)
        tmp = self._out.__enter__()
        try:
            self._writer = pq.ParquetWriter(tmp, self.schema, compression="zstd", compression_level=ZSTD_LEVEL)
        except BaseException as e:
            exit_atomic(self._out, e, None)
        return self

    def write(self, batch: dict | pa.RecordBatch | pa.Table) -> None:
        if isinstance(batch, dict):
            batch = pa.RecordBatch.from_pydict(batch, schema=self.schema)
        elif isinstance(batch, pa.Table):
            batch = batch.cast(self.schema) if batch.schema != self.schema else batch
            for b in batch.to_batches():
                self.write(b)
            return
        elif batch.schema != self.schema:
            batch = pa.Table.from_batches([batch]).cast(self.schema).combine_chunks().to_batches()[0] \
                if batch.num_rows else pa.RecordBatch.from_pylist([], schema=self.schema)
        if batch.num_rows == 0:
            return
        step = max(1, batch.num_rows * ROW_GROUP_BYTES // max(batch.nbytes, 1))
        for lo in range(0, batch.num_rows, step):  # one piece unless the batch is over ROW_GROUP_BYTES
            piece = batch.slice(lo, step)
            if self._buf and self._buf_bytes + piece.nbytes > ROW_GROUP_BYTES:
                self._flush(everything=True)
            self._buf.append(piece)
            self._buf_rows += piece.num_rows
            self._buf_bytes += piece.nbytes
            self.rows += piece.num_rows
            if self._buf_rows >= self.row_group_size:
                self._flush()

    def _flush(self, everything: bool = False) -> None:
        """Write full row groups of `row_group_size` rows and keep the rest buffered, or write it all."""
        if not self._buf:
            return
        table = pa.Table.from_batches(self._buf, schema=self.schema)
        keep = 0 if everything else table.num_rows % self.row_group_size
        self._writer.write_table(table.slice(0, table.num_rows - keep), row_group_size=self.row_group_size)
        rest = table.slice(table.num_rows - keep)
        self._buf, self._buf_rows, self._buf_bytes = rest.to_batches(), rest.num_rows, rest.nbytes

    def __exit__(self, exc_type, exc, tb) -> None:
        # the last row group and the footer are written here: a failure of either (a full disk)
        # goes to the temp's context like one of the with-block, so nothing is renamed into place
        err = close_all([lambda: self._flush(everything=True)] if exc is None else [], exc)
        err = close_all([self._writer.close], err)
        exit_atomic(self._out, err, exc)


def write_docs(path: str | Path, rows: Iterable[dict], schema: pa.Schema = DOC_SCHEMA,
               batch_rows: int = ROW_GROUP_SIZE) -> int:
    """Write an iterable of row dicts (keys = schema names) atomically; returns rows written."""
    names = schema.names
    with TableWriter(path, schema) as w:
        cols: dict[str, list] = {k: [] for k in names}
        for row in rows:
            for k in names:
                cols[k].append(row.get(k))
            if len(cols[names[0]]) >= batch_rows:
                w.write(cols)
                cols = {k: [] for k in names}
        w.write(cols)
        return w.rows


def read_batches(path: str | Path, columns: list[str] | None = None,
                 batch_size: int = ROW_GROUP_SIZE) -> Iterator[pa.RecordBatch]:
    """Stream a table in batches; memory stays bounded by the batch size and the row group size."""
    # pre_buffer=False: pyarrow otherwise reads ahead about the whole file, so memory would grow
    # with the table instead of the batch. One row group at a time: a batch never spans two, so
    # ROW_GROUP_BYTES bounds it for tables we wrote, even when 2048 rows are 2048 books.
    pf = open_parquet(path, pre_buffer=False, buffer_size=1 << 20)
    for rg in range(pf.num_row_groups):
        yield from pf.iter_batches(batch_size=batch_size, columns=columns, row_groups=[rg])


def iter_docs(path: str | Path, columns: list[str] | None = None) -> Iterator[dict]:
    """Row dicts, streamed (convenient for small tables and tests)."""
    for batch in read_batches(path, columns):
        yield from batch.to_pylist()


def num_rows(path: str | Path) -> int:
    return open_parquet(path).metadata.num_rows


def open_parquet(path: str | Path, **kw) -> pq.ParquetFile:
    """Open an input table; a folder, or a file that is not Parquet, is a user error naming it."""
    if Path(path).is_dir():
        raise UserError(f"{path}: is a folder; this input is one Parquet file")
    try:
        return pq.ParquetFile(path, **kw)
    except FileNotFoundError:
        raise
    except (pa.ArrowInvalid, OSError) as e:
        raise UserError(f"{path}: not a readable Parquet file ({' '.join(str(e).split())[:200]}); "
                        "rerun the stage that writes it") from None


def missing_input(path: str | Path, stage: str) -> FileNotFoundError:
    """The error for an absent upstream output, saying what to run."""
    return FileNotFoundError(f"{path}: not found; did you run `dvc repro {stage}`?")
