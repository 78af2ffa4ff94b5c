"""The Document table and atomic outputs: an exception mid-write leaves no output behind."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmpipe.core.atomic import atomic_path, sha256_file, write_json, write_text
from llmpipe.data.table import DOC_SCHEMA, TableWriter, content_id, iter_docs, num_rows, read_batches, write_docs


def rows(k: int, start: int = 0) -> list[dict]:
    return [{"id": f"d{i}", "source": "s", "text": f"text {i}", "url": None, "meta": None}
            for i in range(start, start + k)]


def leftovers(d) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def test_write_and_stream_back(tmp_path):
    out = tmp_path / "t.parquet"
    assert write_docs(out, rows(5000), batch_rows=700) == 5000
    assert pq.read_schema(out).equals(DOC_SCHEMA) and num_rows(out) == 5000
    assert pq.ParquetFile(out).metadata.row_group(0).column(0).compression == "ZSTD"
    batches = list(read_batches(out, columns=["id"], batch_size=1000))
    # row groups of 2048 rows, read 1000 at a time, one row group at a time
    assert [b.num_rows for b in batches] == [1000, 1000, 48] * 2 + [904] and batches[0].schema.names == ["id"]
    assert [d["id"] for d in iter_docs(out)] == [f"d{i}" for i in range(5000)]


def test_row_groups_are_capped_by_bytes_and_batches_stay_inside_them(tmp_path, monkeypatch):
    import llmpipe.data.table as docs
    monkeypatch.setattr(docs, "ROW_GROUP_BYTES", 50_000)  # stands in for 64 MiB: "books" of 10 kB
    texts = [f"{i} " + "x" * 10_000 for i in range(40)]
    with TableWriter(tmp_path / "t.parquet") as w:
        w.write({"id": [str(i) for i in range(40)], "source": ["s"] * 40, "text": texts,
                 "url": [None] * 40, "meta": [None] * 40})  # one 400 kB batch
    md = pq.ParquetFile(tmp_path / "t.parquet").metadata
    sizes = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
    assert sum(sizes) == 40 and md.num_row_groups >= 8 and max(sizes) <= 5
    batches = list(read_batches(tmp_path / "t.parquet", ["text"]))
    assert [b.num_rows for b in batches] == sizes  # none spans two row groups
    assert [t for b in batches for t in b.column(0).to_pylist()] == texts


def test_exception_mid_write_leaves_no_output(tmp_path):
    out = tmp_path / "t.parquet"

    def failing():
        yield from rows(3000)  # more than a row group: some data already reached the temp file
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        write_docs(out, failing())
    assert leftovers(tmp_path) == []


def test_exception_mid_write_keeps_the_previous_output(tmp_path):
    out = tmp_path / "t.parquet"
    write_docs(out, rows(3))
    before = out.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        with TableWriter(out) as w:
            w.write({k: [r[k] for r in rows(4000)] for k in DOC_SCHEMA.names})
            raise KeyboardInterrupt
    assert out.read_bytes() == before and leftovers(tmp_path) == ["t.parquet"]


def test_writer_rejects_rows_that_break_the_contract(tmp_path):
    out = tmp_path / "t.parquet"
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError, TypeError)):
        write_docs(out, [{"id": "a", "source": "s", "text": 5}])
    assert leftovers(tmp_path) == []


def test_atomic_json_text_and_directories(tmp_path):
    write_json(tmp_path / "r.json", {"b": 2, "a": 1})
    assert (tmp_path / "r.json").read_text() == '{\n  "a": 1,\n  "b": 2\n}\n'
    with pytest.raises(TypeError):
        write_json(tmp_path / "r.json", {"x": object()})  # not serialisable: old file stays
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": 1, "b": 2}
    write_text(tmp_path / "t.txt", "hello")
    with pytest.raises(ValueError):
        with atomic_path(tmp_path / "dir") as tmp:
            tmp.mkdir()
            (tmp / "part").write_text("half")
            raise ValueError("interrupted")
    assert leftovers(tmp_path) == ["r.json", "t.txt"]
    with atomic_path(tmp_path / "dir") as tmp:
        tmp.mkdir()
        (tmp / "part").write_text("whole")
    assert (tmp_path / "dir" / "part").read_text() == "whole"


def test_content_id_is_stable():
    # sha256("hello world") — fixed forever: ids persist in every table downstream
    assert content_id("hello world") == "b94d27b9934d3e08a52e52d7da7dabfa"
    assert len({content_id(t) for t in ["a", "b", "a "]}) == 3


def test_sha256_file(tmp_path):
    (tmp_path / "f").write_bytes(b"hello world")
    assert sha256_file(tmp_path / "f") == "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"


def test_atomic_path_gives_files_the_umask_mode(tmp_path):
    """A writer that creates 0600 files (safetensors' save_file does) still yields files the
    umask allows others to read, so a shared DVC cache stays readable by the team."""
    import os
    from llmpipe.core.atomic import atomic_path
    mask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "f.bin") as tmp:
            tmp.write_bytes(b"x")
            tmp.chmod(0o600)
        with atomic_path(tmp_path / "d") as tmp:
            tmp.mkdir()
            (tmp / "w.safetensors").write_bytes(b"y")
            (tmp / "w.safetensors").chmod(0o600)
    finally:
        os.umask(mask)
    assert (tmp_path / "f.bin").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d/w.safetensors").stat().st_mode & 0o777 == 0o644
