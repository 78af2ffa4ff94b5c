"""Record readers for one input file: JSON lines (optionally compressed), Parquet, plain text.

Each reader yields, in file order, either `(where, record)` for a readable record, or a `Bad`
naming the position, a stable snake_case reason and details. Readers never raise on bad data:
the caller (`ingest.py`) decides, per `on_bad_record`, to fail with the message or to count the
skip. Positions: `FILE:LINE` (1-based) for text formats, `FILE:row N` (0-based) for Parquet.

Reasons: malformed_json, not_an_object, invalid_utf8, truncated_file (a compressed stream or
Parquet file that ends early; records before the break are kept), not_parquet,
missing_text_field (a Parquet file without the text column: all its rows).
"""
from __future__ import annotations

from llmpipe.errors import UserError

import json
import lzma
import re
import zlib
from typing import Iterator, NamedTuple, Union

import pyarrow as pa
import pyarrow.parquet as pq

from .files import InputFile

BATCH_ROWS = 1024  # Parquet rows decoded at a time (bounded memory per file)
_BLANK_LINES = re.compile(rb"\r?\n[ \t\r]*\r?\n")


class Bad(NamedTuple):
    where: str
    reason: str
    detail: str
    records: int = 1
    """How many records this accounts for; 0 when a file breaks and the rest cannot be counted."""


Item = Union[tuple[str, dict], Bad]


def read_file(f: InputFile, text_field: str, columns: list[str], txt_mode: str = "file") -> Iterator[Item]:
    if f.format == "jsonl":
        return _jsonl(f)
    if f.format == "parquet":
        return _parquet(f, text_field, columns)
    if f.format == "txt":
        return _txt(f, text_field, txt_mode)
    raise UserError(f"{f.display}: unknown format {f.format!r}")


def _jsonl(f: InputFile) -> Iterator[Item]:
    lineno = 0
    try:
        with f.fs.open(f.path, "rb", compression="infer") as fh:
            for raw in fh:
                lineno += 1
                if not raw.strip():
                    continue  # a blank line is not a record
                where = f"{f.display}:{lineno}"
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    yield Bad(where, "invalid_utf8", f"invalid UTF-8 at byte {e.start} of the line")
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    yield Bad(where, "malformed_json", f"{e.msg} at column {e.colno}")
                    continue
                if isinstance(obj, dict):
                    yield where, obj
                else:
                    yield Bad(where, "not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    except (EOFError, zlib.error, lzma.LZMAError, OSError) as e:  # a compressed stream ends early or is not one
        yield Bad(f"{f.display}:{lineno + 1}", "truncated_file",
                  f"the file ends early or is not valid compressed data ({type(e).__name__}: {e})", 0)


def _parquet(f: InputFile, text_field: str, columns: list[str]) -> Iterator[Item]:
    try:
        fh = f.fs.open(f.path, "rb")
        pf = pq.ParquetFile(fh)
    except (pa.ArrowInvalid, OSError) as e:
        yield Bad(f.display, "not_parquet", f"not a readable Parquet file (truncated, or another format): {e}", 0)
        return
    with fh:
        names = pf.schema_arrow.names
        if text_field not in names:
            yield Bad(f.display, "missing_text_field",
                      f"no column {text_field!r} (columns: {', '.join(names)}); set sources.SRC.text_field",
                      pf.metadata.num_rows)
            return
        row = 0
        try:
            for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=[c for c in columns if c in names]):
                for rec in batch.to_pylist():
                    yield f"{f.display}:row {row}", rec
                    row += 1
        except (pa.ArrowException, OSError) as e:
            yield Bad(f"{f.display}:row {row}", "truncated_file", f"Parquet data unreadable from here on: {e}", 0)


def _txt(f: InputFile, text_field: str, mode: str) -> Iterator[Item]:
    """One record per file, or per blank-line-separated block: {text_field: text, "path": where}.

    `path` is the file's path relative to the uri (plus `#N`, N from 1, per block): a stable id
    with `id_field: path`.
    """
    with f.fs.open(f.path, "rb", compression="infer") as fh:
        data = fh.read()
    if mode == "file":
        blocks = [(0, data)]
    else:
        blocks, start = [], 0
        for m in _BLANK_LINES.finditer(data):
            blocks.append((start, data[start:m.start()]))
            start = m.end()
        blocks.append((start, data[start:]))
        blocks = [(s, b) for s, b in blocks if b.strip()]
    line, counted = 1, 0  # newlines before `start`, counted once over the file (not per block)
    for k, (start, block) in enumerate(blocks, 1):
        line += data.count(b"\n", counted, start)
        counted = start
        where = f"{f.display}:{line}"
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError as e:
            bad_line = line + block.count(b"\n", 0, e.start)
            yield Bad(f"{f.display}:{bad_line}", "invalid_utf8", f"invalid UTF-8 at byte {start + e.start} of the file")
            continue
        text = text.removeprefix("\ufeff").replace("\r\n", "\n")  # BOM and CRLF: file artefacts, not text
        yield where, {text_field: text, "path": f.rel if mode == "file" else f"{f.rel}#{k}"}
