"""Readers: files that break part-way (`on_bad_file`), zstd input, a UTF-8 BOM, error texts.

Every input is a real file written here: gzip, zstandard and pyarrow make them, then the test cuts
or overwrites bytes the way an interrupted download or a bad disk does.
"""
from __future__ import annotations

import gzip
import json
import random
import re
import subprocess
import sys
import uuid
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from llmpipe.data.sources import SourceError
from _shardkit import leftovers, read_docs
from test_sources import ingest, out_dir, write_jsonl

REPO = Path(__file__).parents[1]
DATA = b"".join(b'{"text": "doc %d"}\n' % i for i in range(2000))
BIG = b"".join(b'{"text": "doc %d"}\n' % i for i in range(20000))  # ~430 KB: several zstd blocks


def cut(data: bytes) -> bytes:
    return data[: len(data) // 2]


def texts(docs: list[dict]) -> list[str]:
    return [d["text"] for d in docs]


def prefix(k: int) -> list[str]:
    return [f"doc {i}" for i in range(k)]


def zst(data: bytes, frames: int = 1) -> bytes:
    """`data` as `frames` concatenated zstd frames, split on line boundaries (as pzstd writes)."""
    lines = data.splitlines(keepends=True)
    step = -(-len(lines) // frames)
    cctx = zstandard.ZstdCompressor(level=3)
    return b"".join(cctx.compress(b"".join(lines[i:i + step])) for i in range(0, len(lines), step))


def hex_rows(n: int) -> list[dict]:
    """Records that compress poorly, so a file spans several of the reader's input chunks."""
    rnd = random.Random(0)
    return [{"id": i, "text": "%064x" % rnd.getrandbits(256)} for i in range(n)]


def jsonl_bytes(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


# --------------------------------------------------------------------------- a file that breaks

@pytest.mark.parametrize("on_bad_record", ["fail", "skip"])
def test_truncated_jsonl_gz_is_an_error_even_when_skipping_bad_records(tmp_path, on_bad_record):
    path = tmp_path / "a.jsonl.gz"
    path.write_bytes(cut(gzip.compress(DATA, mtime=0)))
    with pytest.raises(SourceError) as e:
        ingest(tmp_path, path, on_bad_record=on_bad_record)
    m = re.fullmatch(re.escape(str(path)) + r":(\d+): truncated_file: the compressed stream ends before its end "
                     r"marker \(EOFError: [^;]+\); replace or remove the file, or set sources\.src\.on_bad_file: "
                     r"skip to keep the ([\d,]+) records read before the break and go on", str(e.value))
    assert m, str(e.value)
    assert int(m[1]) == int(m[2].replace(",", "")) + 1 > 1
    assert not out_dir(tmp_path).exists() and leftovers(out_dir(tmp_path)) == []


def test_truncated_jsonl_gz_skipped_is_reported_and_its_records_before_the_break_kept(tmp_path):
    path = tmp_path / "a.jsonl.gz"
    path.write_bytes(cut(gzip.compress(DATA, mtime=0)))
    write_jsonl(tmp_path / "b.jsonl", [{"text": "after"}])
    docs, rep = ingest(tmp_path, tmp_path, on_bad_file="skip")
    k = len(docs) - 1
    assert 0 < k < 2000 and texts(docs) == [*prefix(k), "after"]
    assert rep["docs_in"] == rep["docs_out"] == k + 1 and rep["skipped_by_reason"] == {}
    assert (rep["files"], rep["files_failed"], rep["files_failed_by_reason"]) == (2, 1, {"truncated_file": 1})
    [broke] = rep["files_failed_list"]
    assert {k_: broke[k_] for k_ in ("file", "reason", "at", "records_before")} == {
        "file": str(path), "reason": "truncated_file", "at": f"{path}:{k + 1}", "records_before": k}
    assert broke["detail"].startswith("the compressed stream ends before its end marker (EOFError: ")


def test_folder_with_one_truncated_parquet(tmp_path):
    d = tmp_path / "pq"
    d.mkdir()
    for name in "abc":
        pq.write_table(pa.table({"text": [f"{name}{i}" for i in range(100)]}), d / f"{name}.parquet")
    data = (d / "b.parquet").read_bytes()
    (d / "b.parquet").write_bytes(cut(data))
    with pytest.raises(SourceError, match=re.escape(f"{d}/b.parquet: not_parquet: not a readable Parquet file (cut "
                                                    f"short, or another format): ") + r"[^;]+; replace or remove "
                                                    r"the file, or set sources\.src\.on_bad_file: skip to skip it "
                                                    r"and go on$"):
        ingest(tmp_path, d, on_bad_record="skip")
    docs, rep = ingest(tmp_path, d, on_bad_record="skip", on_bad_file="skip")
    assert texts(docs) == [f"a{i}" for i in range(100)] + [f"c{i}" for i in range(100)]
    assert rep["docs_in"] == 200 and rep["files_failed"] == 1 and rep["files_failed_by_reason"] == {"not_parquet": 1}
    assert [(b["file"], b["at"], b["records_before"]) for b in rep["files_failed_list"]] == [
        (f"{d}/b.parquet", f"{d}/b.parquet", 0)]


def test_parquet_with_a_corrupt_page_keeps_the_row_groups_before_it(tmp_path):
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"text": [f"row {i} " * 20 for i in range(3000)]}), path, row_group_size=1024)
    col = pq.ParquetFile(path).metadata.row_group(1).column(0)
    start = col.dictionary_page_offset or col.data_page_offset
    data = bytearray(path.read_bytes())
    data[start:start + 8] = b"\xff" * 8  # the page header of row group 1 no longer parses
    path.write_bytes(bytes(data))
    with pytest.raises(SourceError, match=re.escape(f"{path}:row 1024: corrupt_file: Parquet data does not decode "
                                                    f"from row 1024 on: ") + r"[^\n]+; replace or remove the file"):
        ingest(tmp_path, path)
    docs, rep = ingest(tmp_path, path, on_bad_file="skip")
    assert len(docs) == 1024 == rep["docs_in"] and rep["files_failed_by_reason"] == {"corrupt_file": 1}
    assert rep["files_failed_list"][0]["detail"].isprintable()  # pyarrow's text had a newline and a raw byte


def test_truncated_txt_gz_is_a_broken_file_not_a_traceback(tmp_path):
    (tmp_path / "book.txt.gz").write_bytes(cut(gzip.compress(b"a line of a book\n" * 5000, mtime=0)))
    (tmp_path / "ok.txt").write_text("fine\n")
    with pytest.raises(SourceError, match=r"book\.txt\.gz: truncated_file: the compressed stream ends before"):
        ingest(tmp_path, tmp_path)
    docs, rep = ingest(tmp_path, tmp_path, on_bad_file="skip", id_field="path")
    assert [d["id"] for d in docs] == ["ok.txt"]
    assert rep["files_failed_list"][0]["records_before"] == 0


def test_gz_that_is_not_gzip_is_corrupt(tmp_path):
    (tmp_path / "a.jsonl.gz").write_bytes(DATA)
    with pytest.raises(SourceError, match=r"a\.jsonl\.gz:1: corrupt_file: not valid compressed data "
                                          r"\(BadGzipFile: Not a gzipped file"):
        ingest(tmp_path, tmp_path / "a.jsonl.gz", on_bad_record="skip")


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux /proc (a file whose read() fails)")
def test_unreadable_file(tmp_path):
    (tmp_path / "mem.jsonl").symlink_to("/proc/self/mem")  # opens fine, read() fails with an OS error
    write_jsonl(tmp_path / "ok.jsonl", [{"text": "fine"}])
    with pytest.raises(SourceError, match=r"mem\.jsonl:1: unreadable_file: cannot read the file \(OSError: \[Errno "):
        ingest(tmp_path, tmp_path, on_bad_record="skip")
    docs, rep = ingest(tmp_path, tmp_path, on_bad_file="skip")
    assert texts(docs) == ["fine"] and rep["files_failed_by_reason"] == {"unreadable_file": 1}


def test_only_broken_files_is_an_empty_source_that_says_so(tmp_path):
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(DATA, mtime=0)[:20])
    with pytest.raises(SourceError, match=r"empty source: no documents \(records read: 0, skipped: 0; 1 file broke: "
                                          r".*a\.jsonl\.gz:1 \(truncated_file, 0 records read before it\)\)"):
        ingest(tmp_path, tmp_path / "a.jsonl.gz", on_bad_file="skip")


def test_stage_exit_status_and_summary_line_name_the_broken_files(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(4):
        (raw / f"part-{i}.jsonl.gz").write_bytes(cut(gzip.compress(DATA, mtime=0)))
    write_jsonl(raw / "part-9.jsonl", [{"text": "whole"}])
    params = tmp_path / "params.yaml"
    params.write_text(f"sources:\n  web:\n    kind: c4\n    uri: {raw}\n    on_bad_record: skip\n")
    out, rep = tmp_path / "o", tmp_path / "r.json"
    cmd = [sys.executable, "-m", "stages.ingest", "--source", "web", "--out", str(out), "--report", str(rep),
           "--params", str(params), "--no-progress"]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 2, p.stderr
    assert re.fullmatch(r"ingest@web: error: " + re.escape(str(raw / "part-0.jsonl.gz")) + r":\d+: truncated_file: "
                        r"[^\n]+sources\.web\.on_bad_file: skip [^\n]+\n", p.stderr), p.stderr
    assert not out.exists() and not rep.exists()

    params.write_text(params.read_text() + "    on_bad_file: skip\n")
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 0, p.stderr
    report = json.loads(rep.read_text())
    broke = report["files_failed_list"]
    assert report["files_failed"] == 4 == len(broke) and report["docs_out"] == report["docs_in"]
    assert report["docs_in"] == 1 + sum(b["records_before"] for b in broke)
    assert read_docs(out).num_rows == report["docs_out"]
    named = ", ".join(f"{b['at']} (truncated_file, {b['records_before']:,} records read before it)" for b in broke[:3])
    summary = p.stderr.strip().splitlines()[-1]
    assert f" WARNING ingest web: {report['docs_out']:,} docs written of {report['docs_in']:,} read, skipped 0, " \
           f"4 files broke: {named} and 1 more (files_failed_list in the report), " in summary, summary


# --------------------------------------------------------------------------- zstd

def test_jsonl_zst_and_json_zst_round_trip(tmp_path):
    rows = hex_rows(6000)  # ~430 KB of JSON, ~250 KB of zstd: several input chunks per file
    (tmp_path / "a.jsonl.zst").write_bytes(zst(jsonl_bytes(rows[:3000])))
    (tmp_path / "b.json.zst").write_bytes(zst(jsonl_bytes(rows[3000:]), frames=3))
    docs, rep = ingest(tmp_path, tmp_path, id_field="id")
    assert [(d["id"], d["text"]) for d in docs] == [(str(r["id"]), r["text"]) for r in rows]
    assert rep["files"] == 2 and rep["skipped_by_reason"] == {} and rep["files_failed"] == 0


def test_truncated_jsonl_zst_is_a_broken_file(tmp_path):
    path = tmp_path / "a.jsonl.zst"
    path.write_bytes(cut(zst(BIG)))
    with pytest.raises(SourceError, match=r"a\.jsonl\.zst:\d+: truncated_file: the compressed stream ends before its "
                                          r"end marker \(EOFError: zstd stream ends inside a frame"):
        ingest(tmp_path, path, on_bad_record="skip")
    docs, rep = ingest(tmp_path, path, on_bad_file="skip")
    assert 0 < len(docs) < 20000 and texts(docs) == prefix(len(docs))
    assert rep["files_failed_list"][0]["records_before"] == len(docs)


def test_zst_that_is_not_zstd_is_corrupt(tmp_path):
    (tmp_path / "a.jsonl.zst").write_bytes(DATA)
    with pytest.raises(SourceError, match=r"a\.jsonl\.zst:1: corrupt_file: not valid compressed data \(ZstdError: "):
        ingest(tmp_path, tmp_path / "a.jsonl.zst", on_bad_record="skip")


def test_zst_on_a_remote_filesystem_same_code_path_as_hf(tmp_path):
    """hf:// files open through fsspec exactly like memory:// ones: same resolve, open and zstd reader."""
    root = f"memory://corpus-{uuid.uuid4().hex}"
    with fsspec.open(f"{root}/data/part-0.jsonl.zst", "wb") as f:
        f.write(zst(DATA, frames=2))
    docs, rep = ingest(tmp_path, f"{root}/data")
    assert texts(docs) == prefix(2000)
    with fsspec.open(f"{root}/data/part-0.jsonl.zst", "wb") as f:
        f.write(cut(zst(BIG)))
    with pytest.raises(SourceError, match=r"^memory://.*/data/part-0\.jsonl\.zst:\d+: truncated_file: .*keep the "):
        ingest(tmp_path, f"{root}/data")


# --------------------------------------------------------------------------- BOM and message texts

@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".jsonl.zst"])
def test_jsonl_utf8_bom_is_accepted(tmp_path, suffix):
    data = b"\xef\xbb\xbf" + jsonl_bytes([{"id": 1, "text": "first"}, {"id": 2, "text": "second"}])
    packed = {".jsonl": data, ".jsonl.gz": gzip.compress(data, mtime=0), ".jsonl.zst": zst(data)}[suffix]
    (tmp_path / f"a{suffix}").write_bytes(packed)
    docs, rep = ingest(tmp_path, tmp_path / f"a{suffix}", id_field="id")
    assert [(d["id"], d["text"]) for d in docs] == [("1", "first"), ("2", "second")] and rep["docs_in"] == 2


def test_txt_blank_lines_after_a_bom_stay_in_the_first_document(tmp_path):
    (tmp_path / "t.txt").write_bytes(b"\xef\xbb\xbf\r\n\r\nFirst para\r\n\r\nSecond\r\n")
    docs, _ = ingest(tmp_path, tmp_path / "t.txt", id_field="path", txt_mode="paragraphs")
    assert [(d["id"], d["text"]) for d in docs] == [("t.txt#1", "\n\nFirst para\n\n"), ("t.txt#2", "Second\n")]


@pytest.mark.parametrize("line, detail", [
    ('{"text": "broken', "Unterminated string starting at: column 10"),
    ('{oops}', "Expecting property name enclosed in double quotes: column 2"),
    ('{"text": "a"} x', "Extra data: column 15"),
])
def test_malformed_json_message_reads_as_one_sentence(tmp_path, line, detail):
    path = write_jsonl(tmp_path / "a.jsonl", ['{"text": "ok"}', line])
    with pytest.raises(SourceError) as e:
        ingest(tmp_path, path)
    assert str(e.value) == (f"{path}:2: malformed_json: {detail}; fix the input, or set "
                            f"sources.src.on_bad_record: skip to count and skip bad records")
