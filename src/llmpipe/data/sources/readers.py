"""Record readers for one input file: JSON lines (optionally compressed), Parquet, plain text.

Each reader yields, in file order, either `(where, record)` for a readable record, or a `Bad`
naming the position, a stable snake_case reason and details. Readers never raise on bad data:
the caller (`ingest.py`) decides, per `on_bad_record` (a bad record) or `on_bad_file` (a file
that breaks), to fail with the message or to count it. Positions: `FILE:LINE` (1-based) for text
formats, `FILE:row N` (0-based) for Parquet.

Record reasons: malformed_json, not_an_object, invalid_utf8, missing_text_field (a Parquet file
without the text column: all its rows; missing_messages_field when it is a chat source's messages
column). A file that breaks yields one last `Bad` with `file` set and one of the reasons in
`FILE_REASONS`: truncated_file (a compressed stream that ends before its
end marker), corrupt_file (invalid compressed data, or Parquet pages that do not decode),
not_parquet (no readable Parquet footer: cut short, or another format), unreadable_file (the
filesystem refuses the read). The records before the break have been yielded as usual.
Compression follows the extension: `.zst` through `zstandard` (all frames, checked to end on a
frame boundary), every other suffix (.gz, .bz2, .xz) through fsspec. A UTF-8 BOM at the start of
a file is dropped.
"""
from __future__ import annotations

from llmpipe.core.errors import UserError, one_line

import io
import json
import lzma
import re
import zlib
from typing import BinaryIO, Iterator, NamedTuple, Union

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from llmpipe.data.sources.files import InputFile

BATCH_ROWS = 1024  # Parquet rows decoded at a time (bounded memory per file)
ZST_CHUNK = 1 << 16  # compressed bytes fed to zstd at a time: memory ~ this x the compression ratio
BOM = b"\xef\xbb\xbf"
FILE_REASONS = ("truncated_file", "corrupt_file", "not_parquet", "unreadable_file")
_BLANK_RUN = re.compile(rb"\n(?:[ \t\r]*\n)+")  # a line end and the blank lines after it


class Bad(NamedTuple):
    where: str
    reason: str
    detail: str
    records: int = 1
    """How many records this accounts for; 0 when a file breaks and the rest cannot be counted."""
    file: str = ""
    """Set (to the file's display name) when the whole file broke here: the rest of it is unread."""
    records_before: int = 0
    """For a broken file: records it yielded (good or bad) before the break."""

    @property
    def broken(self) -> bool:
        return bool(self.file)


Item = Union[tuple[str, dict], Bad]


def read_file(f: InputFile, text_field: str, columns: list[str], txt_mode: str = "file",
              txt_chunk_bytes: int = 1 << 16, chat: bool = False) -> Iterator[Item]:
    """The items of one file; a break comes last, with `records_before` filled in. `chat`:
    `text_field` is a chat source's `messages_field` (a Parquet file without it is named so)."""
    if f.format == "jsonl":
        items = _jsonl(f)
    elif f.format == "parquet":
        items = _parquet(f, text_field, columns, chat)
    elif f.format == "txt":
        items = _txt(f, text_field, txt_mode, txt_chunk_bytes)
    else:
        raise UserError(f"{f.display}: unknown format {f.format!r}")
    seen = 0
    for item in items:
        if isinstance(item, Bad) and item.broken:
            yield item._replace(records_before=seen)
            return
        seen += item.records if isinstance(item, Bad) else 1
        yield item


def open_decompressed(f: InputFile) -> BinaryIO:
    """`f` opened for reading, decompressed by its extension (streaming)."""
    if f.path.lower().endswith(".zst"):
        return io.BufferedReader(_ZstdReader(f.fs.open(f.path, "rb")))
    return f.fs.open(f.path, "rb", compression="infer")


class _ZstdReader(io.RawIOBase):
    """A zstd stream as a raw binary file: every frame in turn, memory ~ ZST_CHUNK x the ratio.

    zstandard's own `stream_reader` returns a clean end of file for a stream cut inside a frame;
    this reader raises EOFError there, as gzip, bz2 and lzma do."""

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self._dctx = zstandard.ZstdDecompressor()
        self._obj = self._dctx.decompressobj()
        self._in_frame = False  # input fed to the current frame, its end not reached yet
        self._out = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._out:
            chunk = self._raw.read(ZST_CHUNK)
            if not chunk:
                if self._in_frame:
                    raise EOFError("zstd stream ends inside a frame (before its end marker)")
                return 0
            self._out = memoryview(self._decompress(chunk))
        k = min(len(b), len(self._out))
        b[:k] = self._out[:k]
        self._out = self._out[k:]
        return k

    def _decompress(self, chunk: bytes) -> bytes:
        parts = []
        while chunk:
            parts.append(self._obj.decompress(chunk))
            self._in_frame = not self._obj.eof
            chunk = self._obj.unused_data if self._obj.eof else b""
            if self._obj.eof:  # a frame ended: the rest of the chunk starts the next one
                self._obj = self._dctx.decompressobj()
        return b"".join(parts)

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


def _text(msg: str) -> str:
    """A library's error text on one printable line (pyarrow's can hold newlines and raw bytes)."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in one_line(msg))


def _broke(f: InputFile, where: str, e: BaseException) -> Bad:
    """The last item of a file whose read failed with `e`."""
    why = _text(f"{type(e).__name__}: {e}")
    if isinstance(e, EOFError):
        reason, detail = "truncated_file", f"the compressed stream ends before its end marker ({why})"
    elif isinstance(e, OSError) and e.errno is not None:
        reason, detail = "unreadable_file", f"cannot read the file ({why})"
    else:  # zlib/lzma/zstd errors, BadGzipFile, bz2's OSError without errno
        reason, detail = "corrupt_file", f"not valid compressed data ({why})"
    return Bad(where, reason, detail, 0, f.display)


_READ_ERRORS = (EOFError, OSError, zlib.error, lzma.LZMAError, zstandard.ZstdError)


def _jsonl(f: InputFile) -> Iterator[Item]:
    lineno = 0
    try:
        with open_decompressed(f) as fh:
            for raw in fh:
                lineno += 1
                if lineno == 1:
                    raw = raw.removeprefix(BOM)
                if not raw.strip():
                    continue  # a blank line is not a record
                where = f"{f.display}:{lineno}"
                try:
                    line = raw.decode("utf-8").rstrip("\r\n")  # so an unclosed string reads as one
                except UnicodeDecodeError as e:
                    yield Bad(where, "invalid_utf8", f"invalid UTF-8 at byte {e.start} of the line")
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    yield Bad(where, "malformed_json", f"{e.msg}: column {e.colno}")
                    continue
                if isinstance(obj, dict):
                    yield where, obj
                else:
                    yield Bad(where, "not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    except _READ_ERRORS as e:
        yield _broke(f, f"{f.display}:{lineno + 1}", e)


def _parquet(f: InputFile, text_field: str, columns: list[str], chat: bool = False) -> Iterator[Item]:
    try:
        fh = f.fs.open(f.path, "rb")
    except OSError as e:
        yield _broke(f, f.display, e)
        return
    with fh:
        try:
            pf = pq.ParquetFile(fh)
        except (pa.ArrowException, OSError) as e:
            yield Bad(f.display, "not_parquet", "not a readable Parquet file (cut short, or another format): "
                      f"{_text(str(e))}", 0, f.display)
            return
        names = pf.schema_arrow.names
        if text_field not in names:
            what = ("messages_field", "the column holding each conversation's [{role, content}, ...] list") \
                if chat else ("text_field", "the text column")
            yield Bad(f.display, f"missing_{what[0]}",
                      f"no column {text_field!r} (columns: {', '.join(names)}); set {what[0]} to {what[1]}",
                      pf.metadata.num_rows)
            return
        row = 0
        try:
            for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=[c for c in columns if c in names]):
                for rec in batch.to_pylist():
                    yield f"{f.display}:row {row}", rec
                    row += 1
        except (pa.ArrowException, OSError) as e:
            yield Bad(f"{f.display}:row {row}", "corrupt_file",
                      f"Parquet data does not decode from row {row} on: {_text(str(e))}", 0, f.display)


def _txt(f: InputFile, text_field: str, mode: str, chunk_bytes: int = 1 << 16) -> Iterator[Item]:
    """One record per file, per paragraph block or per chunk of lines: {text_field: text, "path": where}.

    The split is faithful: the documents of a file, concatenated, are its text byte for byte
    (less a leading BOM; CRLF read as LF). `paragraphs`: a block is a run of non-blank lines
    with the blank lines after it (so "A\n\nB\n" is "A\n\n" and "B\n"; blank lines at the top
    of the file belong to its first block); `chunks`: whole lines, at most `chunk_bytes`
    bytes per document (a longer line is cut into pieces of that size). A file of blank
    lines only makes no document. `path` is the file's path relative to the uri (plus `#N`, N
    from 1, per block): a stable id with `id_field: path`. The file is read whole, so one that
    breaks yields no record.
    """
    try:
        with open_decompressed(f) as fh:
            data = fh.read()
    except _READ_ERRORS as e:
        yield _broke(f, f.display, e)
        return
    begin = len(BOM) if data.startswith(BOM) else 0  # a file artefact, not text (offsets stay the file's)
    if mode == "file":
        blocks = [(begin, data[begin:])]
    elif mode == "paragraphs":
        blocks = _paragraph_blocks(data, begin)
    else:
        blocks = _line_chunks(data, begin, chunk_bytes)
    if mode != "file" and not data[begin:].strip():
        blocks = []  # blank lines only: no document
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
        text = text.replace("\r\n", "\n")  # CRLF: a file artefact, not text
        yield where, {text_field: text, "path": f.rel if mode == "file" else f"{f.rel}#{k}"}


def _paragraph_blocks(data: bytes, begin: int) -> list[tuple[int, bytes]]:
    """(offset, bytes) of each paragraph block with its trailing blank lines: they tile data[begin:]."""
    first = len(data) - len(data[begin:].lstrip())  # blank lines before it stay in the first block
    edges = [begin, *(m.end() for m in _BLANK_RUN.finditer(data, first) if m.end() < len(data)), len(data)]
    return [(a, data[a:b]) for a, b in zip(edges, edges[1:]) if b > a]


def _line_chunks(data: bytes, begin: int, chunk_bytes: int) -> list[tuple[int, bytes]]:
    """(offset, bytes) of runs of whole lines of at most `chunk_bytes` bytes (a longer line is
    cut at that size, on a UTF-8 character boundary): they tile data[begin:]."""
    assert chunk_bytes >= 4, chunk_bytes  # room for any UTF-8 character (params ask for >= 16)
    out, start, end = [], begin, len(data)
    while start < end:
        stop = min(start + chunk_bytes, end)
        if stop < end:
            nl = data.rfind(b"\n", start, stop)
            if nl >= 0:
                stop = nl + 1  # whole lines
            else:  # one line longer than a chunk: cut it, never inside a UTF-8 sequence
                while stop > start + 1 and (data[stop] & 0xC0) == 0x80:
                    stop -= 1
        out.append((start, data[start:stop]))
        start = stop
    return out
