"""Source readers and ingest: every format, location kind, field mapping and bad-input rule."""
from __future__ import annotations

import gzip
import json
import uuid
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from _shardkit import dir_bytes, leftovers, read_docs, shard_files
from llmpipe.data.table import DOC_SCHEMA, content_id
from llmpipe.params import SourceParams
from llmpipe.data.sources import SourceError, SourceNotFound, ingest_source, resolve


def sp(uri, **kw) -> SourceParams:
    return SourceParams(kind=kw.pop("kind", "c4"), uri=str(uri), **kw)


def out_dir(tmp_path: Path) -> Path:
    """Where `ingest` writes its sharded directory: under a hidden folder, so that a source uri of
    `tmp_path` itself never reads the shards of an earlier run back as input."""
    return tmp_path / ".out" / "src"


def ingest(tmp_path, uri, *, jobs: int = 1, **kw):
    """Ingest `uri` into `out_dir(tmp_path)`; returns (every document, in shard order, report).
    One process by default (fast); the output does not depend on `jobs` (test_ingest_shards)."""
    out = out_dir(tmp_path)
    report = ingest_source("src", sp(uri, **kw), str(out), progress=False, jobs=jobs)
    return read_docs(out).to_pylist(), report


def write_jsonl(path: Path, rows: list, gz: bool = False) -> Path:
    data = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


ROWS = [{"id": "a", "text": "first doc", "url": "http://x/a", "title": "A", "n": 1},
        {"id": "b", "text": "second doc", "url": None, "title": "B"},
        {"id": "c", "text": "third doc", "title": None}]


# --------------------------------------------------------------------------- formats and mapping

def test_jsonl_field_mapping(tmp_path):
    docs, rep = ingest(tmp_path, write_jsonl(tmp_path / "a.jsonl", ROWS), id_field="id",
                       url_field="url", meta_fields=["title", "n"])
    assert docs == [
        {"id": "a", "source": "src", "text": "first doc", "url": "http://x/a", "meta": '{"n": 1, "title": "A"}'},
        {"id": "b", "source": "src", "text": "second doc", "url": None, "meta": '{"title": "B"}'},
        {"id": "c", "source": "src", "text": "third doc", "url": None, "meta": None},
    ]
    assert rep["docs_in"] == rep["docs_out"] == 3 and rep["skipped_by_reason"] == {}
    assert rep["chars_out"] == len("first doc") + len("second doc") + len("third doc")


def test_custom_text_field_and_int_ids(tmp_path):
    rows = [{"ID": 7, "body": "hello"}, {"ID": 8, "body": "world"}]
    docs, _ = ingest(tmp_path, write_jsonl(tmp_path / "a.jsonl", rows), text_field="body", id_field="ID")
    assert [(d["id"], d["text"]) for d in docs] == [("7", "hello"), ("8", "world")]


def test_jsonl_gz_and_json_gz_and_table_schema(tmp_path):
    write_jsonl(tmp_path / "a.jsonl.gz", ROWS[:2], gz=True)
    write_jsonl(tmp_path / "b.json.gz", ROWS[2:], gz=True)
    docs, rep = ingest(tmp_path, tmp_path, id_field="id")
    assert [d["id"] for d in docs] == ["a", "b", "c"] and rep["files"] == 2
    files = shard_files(out_dir(tmp_path))
    assert len(files) == 2 and all(pq.read_schema(f).equals(DOC_SCHEMA) for f in files)


def test_parquet_selects_needed_columns(tmp_path):
    pq.write_table(pa.table({"id": ["p1", "p2"], "text": ["x y", "z"], "extra": [1.0, 2.0],
                             "dump": ["CC-1", "CC-2"]}), tmp_path / "f.parquet")
    docs, _ = ingest(tmp_path, tmp_path / "f.parquet", id_field="id", meta_fields=["dump"])
    assert [(d["id"], d["text"], d["meta"]) for d in docs] == [("p1", "x y", '{"dump": "CC-1"}'),
                                                                ("p2", "z", '{"dump": "CC-2"}')]


def test_txt_one_doc_per_file_and_per_paragraph(tmp_path):
    d = tmp_path / "books"
    (d / "sub").mkdir(parents=True)
    (d / "b.txt").write_bytes(b"\xef\xbb\xbfLine one\r\nline two\r\n\r\nSecond para\r\n")
    (d / "sub" / "a.txt").write_text("Only para\n")
    docs, _ = ingest(tmp_path, d, id_field="path")
    assert [(x["id"], x["text"]) for x in docs] == [("b.txt", "Line one\nline two\n\nSecond para\n"),
                                                     ("sub/a.txt", "Only para\n")]
    docs, _ = ingest(tmp_path, d, id_field="path", txt_mode="paragraphs")
    assert [(x["id"], x["text"]) for x in docs] == [("b.txt#1", "Line one\nline two\n\n"),
                                                     ("b.txt#2", "Second para\n"),
                                                     ("sub/a.txt#1", "Only para\n")]


def test_directory_is_recursive_sorted_and_ignores_other_files(tmp_path):
    write_jsonl(tmp_path / "b.jsonl", [ROWS[1]])
    (tmp_path / "sub").mkdir()
    write_jsonl(tmp_path / "sub" / "a.jsonl", [ROWS[0]])
    write_jsonl(tmp_path / "a.jsonl", [ROWS[2]])
    (tmp_path / "README.md").write_text("not data")
    write_jsonl(tmp_path / ".hidden.jsonl", [{"text": "hidden"}])
    docs, rep = ingest(tmp_path, tmp_path, id_field="id")
    assert [d["id"] for d in docs] == ["c", "b", "a"] and rep["files"] == 3


def test_glob(tmp_path):
    for i, r in enumerate(ROWS):
        write_jsonl(tmp_path / f"part-{i}.jsonl", [r])
    write_jsonl(tmp_path / "other.jsonl", [{"id": "z", "text": "not matched"}])
    docs, _ = ingest(tmp_path, tmp_path / "part-*.jsonl", id_field="id")
    assert [d["id"] for d in docs] == ["a", "b", "c"]


def test_memory_filesystem_same_code_path_as_hf():
    """hf:// goes through fsspec like this; memory:// exercises the same resolve/open/read path."""
    root = f"memory://corpus-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    with fs.open(f"{root}/data/part-0.jsonl.gz", "wb") as f:
        f.write(gzip.compress(b'{"text": "from memory", "id": 1}\n', mtime=0))
    buf = pa.BufferOutputStream()
    pq.write_table(pa.table({"text": ["parquet in memory"], "id": [2]}), buf)
    with fs.open(f"{root}/data/part-1.parquet", "wb") as f:
        f.write(buf.getvalue().to_pybytes())
    files = resolve(f"{root}/data")
    assert [(x.rel, x.format) for x in files] == [("part-0.jsonl.gz", "jsonl"), ("part-1.parquet", "parquet")]


def test_memory_filesystem_ingest(tmp_path):
    root = f"memory://corpus-{uuid.uuid4().hex}"
    with fsspec.open(f"{root}/a.jsonl", "wb") as f:
        f.write(b'{"text": "t1", "id": 1}\n{"text": "t2", "id": 2}\n')
    docs, rep = ingest(tmp_path, f"{root}/*.jsonl", id_field="id")
    assert [(d["id"], d["text"]) for d in docs] == [("1", "t1"), ("2", "t2")]


def test_file_url(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", ROWS)
    docs, _ = ingest(tmp_path, f"file://{tmp_path}/a.jsonl", id_field="id")
    assert len(docs) == 3


def test_hf_protocol_is_registered():
    from huggingface_hub import HfFileSystem
    fs, path = fsspec.core.url_to_fs("hf://datasets/allenai/c4@main/en")  # no network until used
    assert isinstance(fs, HfFileSystem) and path == "datasets/allenai/c4@main/en"


def test_max_docs(tmp_path):
    docs, rep = ingest(tmp_path, write_jsonl(tmp_path / "a.jsonl", ROWS), id_field="id", max_docs=2)
    assert [d["id"] for d in docs] == ["a", "b"] and rep["docs_in"] == 2


def test_content_ids_and_duplicate_texts(tmp_path):
    rows = [{"text": "same"}, {"text": "other"}, {"text": "same"}, {"text": "same"}]
    docs, rep = ingest(tmp_path, write_jsonl(tmp_path / "a.jsonl", rows))
    cid = content_id("same")
    assert [d["id"] for d in docs] == [cid, content_id("other"), f"{cid}-2", f"{cid}-3"]
    assert rep["duplicate_texts"] == 2 and rep["docs_out"] == 4


def test_ids_are_unique_within_a_file_not_across_files(tmp_path):
    """An explicit id seen twice in one file is a bad record (`duplicate_id`, BAD_CASES below); the
    same id in two files is not compared, and both documents are kept. Content ids of repeated
    texts are numbered within a file too (`-2`, `-3`), so a text in two files has the same id twice."""
    d = tmp_path / "in"
    d.mkdir()
    write_jsonl(d / "a.jsonl", [{"id": 1, "text": "from a"}, {"id": 2, "text": "two"}])
    write_jsonl(d / "b.jsonl", [{"id": 1, "text": "from b"}])
    docs, rep = ingest(tmp_path, d, id_field="id")
    assert [(x["id"], x["text"]) for x in docs] == [("1", "from a"), ("2", "two"), ("1", "from b")]
    assert rep["docs_in"] == rep["docs_out"] == 3 and rep["skipped_by_reason"] == {}

    write_jsonl(d / "b.jsonl", [{"id": 1, "text": "from b"}, {"id": 1, "text": "again in b"}])
    with pytest.raises(SourceError, match=r"b\.jsonl:2: duplicate_id: id '1' was already used by an earlier record"):
        ingest(tmp_path, d, id_field="id")
    docs, rep = ingest(tmp_path, d, id_field="id", on_bad_record="skip")
    assert [(x["id"], x["text"]) for x in docs] == [("1", "from a"), ("2", "two"), ("1", "from b")]
    assert rep["skipped_by_reason"] == {"duplicate_id": 1} and rep["docs_in"] == 4

    write_jsonl(d / "a.jsonl", [{"text": "same"}, {"text": "same"}])
    write_jsonl(d / "b.jsonl", [{"text": "same"}])
    docs, rep = ingest(tmp_path, d)
    cid = content_id("same")
    assert [x["id"] for x in docs] == [cid, f"{cid}-2", cid]
    assert rep["duplicate_texts"] == 1 and rep["docs_out"] == 3


def test_sample_uri_ingests_with_planted_meta(tmp_path):
    docs, rep = ingest(tmp_path, "sample://c4", url_field="url", meta_fields=["timestamp"], sample_docs=40)
    assert len(docs) == 40 == rep["docs_out"] and rep["python"]
    metas = [json.loads(d["meta"]) for d in docs]
    assert all("timestamp" in m for m in metas)
    assert {m.get("planted") for m in metas} >= {"exact_dup", "near_dup", "junk", "non_english"}


# --------------------------------------------------------------------------- bad input: fail names file, line and rule

BAD_CASES = {
    # name: (lines of a.jsonl, reason, line)
    "malformed_json": (['{"text": "ok", "id": 1}', '{"text": "broken', '{"text": "ok2", "id": 3}'], "malformed_json", 2),
    "not_an_object": (['{"text": "ok", "id": 1}', '[1, 2]', '{"text": "ok2", "id": 3}'], "not_an_object", 2),
    "missing_text": (['{"text": "ok", "id": 1}', '{"body": "x", "id": 2}', '{"text": "ok2", "id": 3}'],
                     "missing_text_field", 2),
    "text_not_string": (['{"text": "ok", "id": 1}', '{"text": 5, "id": 2}', '{"text": "ok2", "id": 3}'],
                        "text_not_string", 2),
    "lone_surrogate": (['{"text": "ok", "id": 1}', '{"text": "a\\ud800b", "id": 2}', '{"text": "ok2", "id": 3}'],
                       "invalid_utf8", 2),
    "missing_id": (['{"text": "ok", "id": 1}', '{"text": "x"}', '{"text": "ok2", "id": 3}'], "missing_id_field", 2),
    "duplicate_id": (['{"text": "ok", "id": 1}', '{"text": "x", "id": 1}', '{"text": "ok2", "id": 3}'],
                     "duplicate_id", 2),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_record_fail_names_file_line_rule(tmp_path, case):
    lines, reason, line = BAD_CASES[case]
    path = write_jsonl(tmp_path / "a.jsonl", lines)
    with pytest.raises(SourceError) as e:
        ingest(tmp_path, path, id_field="id")
    assert f"a.jsonl:{line}: {reason}:" in str(e.value)
    assert not out_dir(tmp_path).exists()
    assert leftovers(out_dir(tmp_path)) == []


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_record_skip_is_counted(tmp_path, case):
    lines, reason, _ = BAD_CASES[case]
    docs, rep = ingest(tmp_path, write_jsonl(tmp_path / "a.jsonl", lines), id_field="id", on_bad_record="skip")
    assert [d["id"] for d in docs] == ["1", "3"]
    assert rep["skipped_by_reason"] == {reason: 1}
    assert rep["docs_in"] == 3 == rep["docs_out"] + 1


def test_invalid_utf8_in_jsonl(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"text": "ok", "id": 1}\n{"text": "bad \xff\xfe", "id": 2}\n')
    with pytest.raises(SourceError, match=r"a\.jsonl:2: invalid_utf8: invalid UTF-8 at byte 14"):
        ingest(tmp_path, path, id_field="id")
    docs, rep = ingest(tmp_path, path, id_field="id", on_bad_record="skip")
    assert len(docs) == 1 and rep["skipped_by_reason"] == {"invalid_utf8": 1}


def test_invalid_utf8_in_txt_names_line(tmp_path):
    (tmp_path / "t.txt").write_bytes(b"good line\nsecond\nbad \xc3\x28 here\n\nnext para\n")
    with pytest.raises(SourceError, match=r"t\.txt:3: invalid_utf8"):
        ingest(tmp_path, tmp_path / "t.txt")
    docs, rep = ingest(tmp_path, tmp_path / "t.txt", txt_mode="paragraphs", id_field="path", on_bad_record="skip")
    assert [d["id"] for d in docs] == ["t.txt#2"] and rep["skipped_by_reason"] == {"invalid_utf8": 1}


def test_parquet_missing_text_column_counts_every_row(tmp_path):
    pq.write_table(pa.table({"body": ["a", "b", "c"]}), tmp_path / "f.parquet")
    with pytest.raises(SourceError, match=r"f\.parquet: missing_text_field: no column 'text'"):
        ingest(tmp_path, tmp_path / "f.parquet")
    pq.write_table(pa.table({"text": ["kept"]}), tmp_path / "g.parquet")
    docs, rep = ingest(tmp_path, tmp_path, on_bad_record="skip")
    assert [d["text"] for d in docs] == ["kept"]
    assert rep["skipped_by_reason"] == {"missing_text_field": 3} and rep["docs_in"] == 4


def test_parquet_null_text_names_row(tmp_path):
    pq.write_table(pa.table({"text": ["a", None, "c"]}), tmp_path / "f.parquet")
    with pytest.raises(SourceError, match=r"f\.parquet:row 1: missing_text_field"):
        ingest(tmp_path, tmp_path / "f.parquet")


def test_truncated_and_non_parquet_files(tmp_path):
    pq.write_table(pa.table({"text": ["x" * 1000] * 100}), tmp_path / "full.parquet")
    data = (tmp_path / "full.parquet").read_bytes()
    (tmp_path / "full.parquet").unlink()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match=r"cut\.parquet: not_parquet: not a readable Parquet file"):
        ingest(tmp_path, tmp_path / "cut.parquet")
    (tmp_path / "cut.parquet").unlink()
    (tmp_path / "fake.parquet").write_text('{"text": "I am json"}\n')
    with pytest.raises(SourceError, match=r"fake\.parquet: not_parquet"):
        ingest(tmp_path, tmp_path / "fake.parquet")
    pq.write_table(pa.table({"text": ["fine"]}), tmp_path / "good.parquet")
    docs, rep = ingest(tmp_path, tmp_path, on_bad_file="skip")
    assert [d["text"] for d in docs] == ["fine"]
    assert rep["files_failed_by_reason"] == {"not_parquet": 1} and rep["files_failed"] == 1
    assert rep["docs_in"] == rep["docs_out"] == 1


def test_truncated_gzip_keeps_earlier_lines_names_line(tmp_path):
    data = gzip.compress(b"".join(b'{"text": "doc %d"}\n' % i for i in range(2000)), mtime=0)
    (tmp_path / "a.jsonl.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match=r"a\.jsonl\.gz:\d+: truncated_file"):
        ingest(tmp_path, tmp_path / "a.jsonl.gz")
    docs, rep = ingest(tmp_path, tmp_path / "a.jsonl.gz", on_bad_file="skip")
    assert 0 < len(docs) < 2000 and [d["text"] for d in docs] == [f"doc {i}" for i in range(len(docs))]
    assert rep["files_failed_by_reason"] == {"truncated_file": 1}


def test_path_that_does_not_exist(tmp_path):
    with pytest.raises(SourceNotFound, match="nope/here: no such file or directory"):
        ingest(tmp_path, tmp_path / "nope" / "here")
    with pytest.raises(SourceNotFound, match="the glob matches no files"):
        ingest(tmp_path, tmp_path / "*.jsonl")


def test_empty_sources(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="empty source: the directory holds no files"):
        ingest(tmp_path, tmp_path / "empty")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "README.md").write_text("x")
    with pytest.raises(SourceError, match="empty source: no input files with a known extension"):
        ingest(tmp_path, tmp_path / "docs")
    (tmp_path / "blank.jsonl").write_text("\n\n")
    with pytest.raises(SourceError, match=r"blank\.jsonl: empty source: no documents \(records read: 0"):
        ingest(tmp_path, tmp_path / "blank.jsonl")
    write_jsonl(tmp_path / "allbad.jsonl", ["{oops", "{oops"])
    with pytest.raises(SourceError, match=r"empty source: no documents \(records read: 2, skipped: "
                                          r"\{'malformed_json': 2\}"):
        ingest(tmp_path, tmp_path / "allbad.jsonl", on_bad_record="skip")
    assert not out_dir(tmp_path).exists() and leftovers(out_dir(tmp_path)) == []


def test_failure_keeps_previous_output_intact(tmp_path):
    docs, _ = ingest(tmp_path, write_jsonl(tmp_path / "a.jsonl", ROWS), id_field="id")
    before = dir_bytes(out_dir(tmp_path))
    write_jsonl(tmp_path / "a.jsonl", [*ROWS, "{broken"])
    with pytest.raises(SourceError):
        ingest(tmp_path, tmp_path / "a.jsonl", id_field="id")
    assert dir_bytes(out_dir(tmp_path)) == before and leftovers(out_dir(tmp_path)) == []


def test_stage_script_exit_status_and_message(tmp_path):
    import subprocess
    import sys
    repo = Path(__file__).parents[1]
    write_jsonl(tmp_path / "a.jsonl", ['{"text": "ok"}', "{bad"])
    params = tmp_path / "params.yaml"
    params.write_text(f"sources:\n  web:\n    kind: c4\n    uri: {tmp_path / 'a.jsonl'}\n")
    out, rep = tmp_path / "o", tmp_path / "r.json"
    cmd = [sys.executable, "-m", "stages.ingest", "--source", "web", "--out", str(out), "--report", str(rep),
           "--params", str(params), "--no-progress"]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=repo)
    assert p.returncode == 2 and "a.jsonl:2: malformed_json" in p.stderr, p.stderr
    assert not out.exists() and not rep.exists()
    params.write_text(params.read_text() + "    on_bad_record: skip\n")
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=repo)
    assert p.returncode == 0, p.stderr
    report = json.loads(rep.read_text())
    assert (report["docs_in"], report["docs_out"], report["skipped_by_reason"]) == (2, 1, {"malformed_json": 1})
    assert [d["text"] for d in read_docs(out).to_pylist()] == ["ok"]
