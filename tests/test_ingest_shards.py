"""Ingest's sharded output: one unit per input file, shards named after the files, only new or
changed files rebuilt (the rest hard-linked from the previous output), `shard_mb` cuts, and the
same bytes for any number of workers. Real files in tmp_path, no mocks."""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from _shardkit import check_manifest, dir_bytes, inodes, leftovers, shard_names
from llmpipe.core.shards import FORMAT
from llmpipe.data.sources import SourceError
from test_sources import ingest, out_dir, write_jsonl


def rows(name: str, k: int) -> list[dict]:
    return [{"id": f"{name}{i}", "text": f"document {i} of file {name}"} for i in range(k)]


def folder(tmp_path: Path, spec: dict[str, int]) -> Path:
    """`in/NAME.jsonl` with `k` records each (written in reverse order: ingest sorts by path)."""
    d = tmp_path / "in"
    d.mkdir(exist_ok=True)
    for name, k in reversed(spec.items()):
        write_jsonl(d / f"{name}.jsonl", rows(name, k))
    return d


def ids(docs: list[dict]) -> list[str]:
    return [d["id"] for d in docs]


def expect(spec: dict[str, int]) -> list[str]:
    return [r["id"] for name, k in spec.items() for r in rows(name, k)]


def units(out: Path) -> dict[str, dict]:
    return {u["key"]: u for u in check_manifest(out)["units"]}


# --------------------------------------------------------------------------- one unit per file

def test_folder_of_three_files_makes_one_shard_per_file_in_sorted_order(tmp_path):
    spec = {"a": 2, "b": 3, "c": 1}
    d = folder(tmp_path, spec)
    docs, rep = ingest(tmp_path, d, id_field="id")
    assert ids(docs) == expect(spec)
    out = out_dir(tmp_path)
    m = check_manifest(out)  # the folder holds exactly the files listed, sizes and sha256 as listed
    assert (m["format"], m["stage"], m["source"]) == (FORMAT, "ingest", "src")
    assert [u["key"] for u in m["units"]] == ["a.jsonl", "b.jsonl", "c.jsonl"]
    assert [u["shards"] for u in m["units"]] == [[{"name": f"{k}.jsonl.00000", "docs": n}] for k, n in spec.items()]
    assert [list(u["files"]) for u in m["units"]] == [[f"{k}.jsonl.00000.parquet"] for k in spec]
    for u in m["units"]:
        [(name, f)] = u["files"].items()
        assert f["sha256"] == hashlib.sha256((out / name).read_bytes()).hexdigest()
        assert f["bytes"] == (out / name).stat().st_size
    assert shard_names(out) == ["a.jsonl.00000", "b.jsonl.00000", "c.jsonl.00000"]
    assert sorted(p.name for p in out.iterdir()) == sorted([*(f"{k}.jsonl.00000.parquet" for k in spec),
                                                           "manifest.json"])
    assert (m["docs_out"], m["shards"]) == (6, 3) and m["chars_out"] == rep["chars_out"]
    assert (rep["files"], rep["shards"], rep["units_built"], rep["units_reused"]) == (3, 3, 3, 0)
    assert (rep["docs_in"], rep["docs_out"]) == (6, 6)
    assert [u["stats"]["docs_out"] for u in m["units"]] == list(spec.values())


def test_shard_names_of_nested_files_are_flat_and_distinct(tmp_path):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    write_jsonl(d / "sub" / "part 1.jsonl", rows("s", 1))
    write_jsonl(d / "part 1.jsonl", rows("p", 1))
    docs, _ = ingest(tmp_path, d, id_field="id")
    assert ids(docs) == ["p0", "s0"]
    assert shard_names(out_dir(tmp_path)) == ["part_1.jsonl.00000", "sub~part_1.jsonl.00000"]


def test_two_files_with_the_same_shard_name_are_an_error(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    write_jsonl(d / "a b.jsonl", rows("x", 1))
    write_jsonl(d / "a_b.jsonl", rows("y", 1))
    with pytest.raises(SourceError, match="^" + re.escape(f"{d}: two input files make the same shard name "
                                                          f"'a_b.jsonl'; rename one") + "$"):
        ingest(tmp_path, d, id_field="id")
    assert not out_dir(tmp_path).exists()


def test_a_file_without_documents_is_a_unit_without_shards(tmp_path):
    d = folder(tmp_path, {"a": 1})
    (d / "empty.jsonl").write_text("")
    write_jsonl(d / "bad.jsonl", ["{oops"])
    for built, reused in ((3, 0), (0, 3)):
        docs, rep = ingest(tmp_path, d, id_field="id", on_bad_record="skip")
        assert ids(docs) == ["a0"] and rep["skipped_by_reason"] == {"malformed_json": 1}
        assert (rep["files"], rep["shards"], rep["units_built"], rep["units_reused"]) == (3, 1, built, reused)
        u = units(out_dir(tmp_path))
        assert [(k, v["shards"], v["files"]) for k, v in u.items() if k != "a.jsonl"] == [
            ("bad.jsonl", [], {}), ("empty.jsonl", [], {})]


# --------------------------------------------------------------------------- only what changed is rebuilt

def test_a_new_file_builds_only_its_unit_and_links_the_others(tmp_path):
    spec = {"a": 2, "b": 3, "c": 1}
    d = folder(tmp_path, spec)
    ingest(tmp_path, d, id_field="id")
    out = out_dir(tmp_path)
    before, ino = dir_bytes(out), inodes(out)
    state = json.loads((out.parent / f".{out.name}.state.json").read_text())
    assert {Path(p).name: v[3] for p, v in state.items()} == {
        f"{k}.jsonl": hashlib.sha256((d / f"{k}.jsonl").read_bytes()).hexdigest() for k in spec}

    docs, rep = ingest(tmp_path, d, id_field="id")  # nothing changed: every unit reused
    assert (rep["units_built"], rep["units_reused"]) == (0, 3) and ids(docs) == expect(spec)
    assert dir_bytes(out) == before

    write_jsonl(d / "d.jsonl", rows("d", 2))
    docs, rep = ingest(tmp_path, d, id_field="id")
    assert (rep["units_built"], rep["units_reused"]) == (1, 3)
    assert (rep["files"], rep["shards"], rep["docs_out"]) == (4, 4, 8)
    assert ids(docs) == expect({**spec, "d": 2})
    assert list(units(out)) == ["a.jsonl", "b.jsonl", "c.jsonl", "d.jsonl"]
    now, ino_now = dir_bytes(out), inodes(out)
    for name in before:
        if name != "manifest.json":
            assert now[name] == before[name], name
            assert ino_now[name] == ino[name], f"{name}: not hard-linked from the previous output"
    assert leftovers(out) == []


def test_a_changed_file_rebuilds_only_its_unit_and_a_removed_file_leaves(tmp_path):
    spec = {"a": 2, "b": 3, "c": 1}
    d = folder(tmp_path, spec)
    ingest(tmp_path, d, id_field="id")
    out = out_dir(tmp_path)
    before, ino = dir_bytes(out), inodes(out)

    write_jsonl(d / "b.jsonl", rows("b", 4))  # edited: one more record
    docs, rep = ingest(tmp_path, d, id_field="id")
    assert (rep["units_built"], rep["units_reused"]) == (1, 2)
    assert ids(docs) == expect({"a": 2, "b": 4, "c": 1})
    assert units(out)["b.jsonl"]["shards"] == [{"name": "b.jsonl.00000", "docs": 4}]
    assert dir_bytes(out)["b.jsonl.00000.parquet"] != before["b.jsonl.00000.parquet"]
    for name in ("a.jsonl.00000.parquet", "c.jsonl.00000.parquet"):
        assert (dir_bytes(out)[name], inodes(out)[name]) == (before[name], ino[name]), name

    # same size, new bytes (one character changed) and a new mtime: still a changed file
    path = d / "c.jsonl"
    st = path.stat()
    path.write_bytes(path.read_bytes().replace(b"document 0", b"document X"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert path.stat().st_size == st.st_size
    docs, rep = ingest(tmp_path, d, id_field="id")
    assert (rep["units_built"], rep["units_reused"]) == (1, 2)
    assert docs[-1]["text"] == "document X of file c"

    # same size and mtime, but another inode (a file replaced by a rename, as rsync/cp do)
    st = path.stat()
    tmp = d / ".c.jsonl.new"
    tmp.write_bytes(path.read_bytes().replace(b"document X", b"document Y"))
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, path)
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    docs, rep = ingest(tmp_path, d, id_field="id")
    assert (rep["units_built"], rep["units_reused"]) == (1, 2)
    assert docs[-1]["text"] == "document Y of file c"

    kept = inodes(out)
    (d / "b.jsonl").unlink()
    docs, rep = ingest(tmp_path, d, id_field="id")
    assert (rep["units_built"], rep["units_reused"]) == (0, 2)
    assert (rep["files"], rep["shards"], rep["docs_out"]) == (2, 2, 3)
    assert ids(docs) == expect({"a": 2, "c": 1})
    assert list(units(out)) == ["a.jsonl", "c.jsonl"]  # check_manifest: no stray b shard on disk
    assert not (out / "b.jsonl.00000.parquet").exists()
    assert {k: v for k, v in inodes(out).items() if k != "manifest.json"} == {
        k: kept[k] for k in ("a.jsonl.00000.parquet", "c.jsonl.00000.parquet")}


def test_a_params_change_rebuilds_every_unit(tmp_path):
    d = folder(tmp_path, {"a": 1, "b": 1})
    ingest(tmp_path, d, id_field="id")
    _, rep = ingest(tmp_path, d, id_field="id", meta_fields=["title"])
    assert (rep["units_built"], rep["units_reused"]) == (2, 0)
    _, rep = ingest(tmp_path, d, id_field="id", meta_fields=["title"])
    assert (rep["units_built"], rep["units_reused"]) == (0, 2)


# --------------------------------------------------------------------------- shard_mb cuts a big file

DOC_CHARS = 2_000


def big_rows(k: int) -> list[dict]:
    return [{"id": i, "text": f"{i:06d} " + "x" * (DOC_CHARS - 7)} for i in range(k)]


def test_shard_mb_cuts_a_big_file_into_pieces_every_document_once_in_order(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    write_jsonl(d / "big.jsonl", big_rows(1_100))  # 2.2 M characters of text
    write_jsonl(d / "small.jsonl", rows("s", 2))
    docs, rep = ingest(tmp_path, d, id_field="id", shard_mb=1)
    out = out_dir(tmp_path)
    # a shard closes once it holds >= 1,000,000 characters: 500 documents of 2,000
    assert shard_names(out) == ["big.jsonl.00000", "big.jsonl.00001", "big.jsonl.00002", "small.jsonl.00000"]
    u = units(out)
    assert list(u) == ["big.jsonl", "small.jsonl"]
    assert [s["docs"] for s in u["big.jsonl"]["shards"]] == [500, 500, 100]
    assert ids(docs) == [str(i) for i in range(1_100)] + ["s0", "s1"]
    assert [d_["text"][:6] for d_ in docs[:1_100]] == [f"{i:06d}" for i in range(1_100)]
    assert (rep["shards"], rep["docs_out"], rep["units_built"]) == (4, 1_102, 2)
    assert u["big.jsonl"]["stats"]["docs_out"] == 1_100

    _, rep = ingest(tmp_path, d, id_field="id", shard_mb=1)  # a unit (3 shards) is reused whole
    assert (rep["units_built"], rep["units_reused"], rep["shards"]) == (0, 2, 4)

    docs, rep = ingest(tmp_path, d, id_field="id")  # the default shard_mb: one shard per file
    assert shard_names(out) == ["big.jsonl.00000", "small.jsonl.00000"]
    assert ids(docs) == [str(i) for i in range(1_100)] + ["s0", "s1"]
    assert sorted(p.name for p in out.iterdir()) == ["big.jsonl.00000.parquet", "manifest.json",
                                                    "small.jsonl.00000.parquet"]


def test_a_document_larger_than_shard_mb_is_one_shard(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"text": "y" * 1_200_000}, {"text": "short"}, {"text": "z" * 999_999}])
    docs, _ = ingest(tmp_path, tmp_path / "a.jsonl", shard_mb=1)
    assert [len(x["text"]) for x in docs] == [1_200_000, 5, 999_999]
    assert [s for s in check_manifest(out_dir(tmp_path))["units"][0]["shards"]] == [
        {"name": "a.jsonl.00000", "docs": 1}, {"name": "a.jsonl.00001", "docs": 2}]


# --------------------------------------------------------------------------- workers

def test_one_or_two_workers_write_the_same_bytes(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    write_jsonl(d / "big.jsonl", big_rows(600))  # 1.2 M characters: two shards at shard_mb 1
    for name, k in {"a": 3, "b": 1, "c": 2}.items():
        write_jsonl(d / f"{name}.jsonl", rows(name, k))
    one, two = tmp_path / "one", tmp_path / "two"
    docs1, rep1 = ingest(one, d, id_field="id", shard_mb=1, jobs=1)
    docs2, rep2 = ingest(two, d, id_field="id", shard_mb=1, jobs=2)
    assert docs1 == docs2 and rep1 == rep2
    assert rep1["shards"] == 5 and rep1["units_built"] == 4
    assert dir_bytes(out_dir(one)) == dir_bytes(out_dir(two))  # every shard and the manifest


def test_a_bad_record_in_a_worker_is_the_same_error(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    write_jsonl(d / "a.jsonl", rows("a", 2))
    write_jsonl(d / "b.jsonl", ['{"id": 1, "text": "ok"}', "{broken"])
    messages = []
    for jobs in (1, 2):
        with pytest.raises(SourceError) as e:
            ingest(tmp_path, d, id_field="id", jobs=jobs)
        messages.append(str(e.value))
        assert not out_dir(tmp_path).exists() and leftovers(out_dir(tmp_path)) == []
    assert messages[0] == messages[1] and f"{d / 'b.jsonl'}:2: malformed_json: " in messages[0]


def test_a_broken_file_skipped_in_a_worker_is_reported_the_same(tmp_path):
    import gzip
    d = tmp_path / "in"
    d.mkdir()
    data = gzip.compress(b"".join(b'{"text": "doc %d"}\n' % i for i in range(2000)), mtime=0)
    (d / "a.jsonl.gz").write_bytes(data[: len(data) // 2])
    write_jsonl(d / "b.jsonl", [{"text": "after"}])
    got = [ingest(tmp_path / str(jobs), d, on_bad_file="skip", jobs=jobs) for jobs in (1, 2)]
    assert got[0] == got[1]
    docs, rep = got[0]
    assert docs[-1]["text"] == "after" and rep["files_failed_by_reason"] == {"truncated_file": 1}
    assert dir_bytes(out_dir(tmp_path / "1")) == dir_bytes(out_dir(tmp_path / "2"))


# --------------------------------------------------------------------------- max_docs

def test_max_docs_across_files_stops_after_max_docs_in_total(tmp_path):
    spec = {"a": 3, "b": 3, "c": 3}
    d = folder(tmp_path, spec)
    docs, rep = ingest(tmp_path, d, id_field="id", max_docs=5)
    assert ids(docs) == ["a0", "a1", "a2", "b0", "b1"]
    assert (rep["docs_in"], rep["docs_out"]) == (5, 5)
    out = out_dir(tmp_path)
    assert shard_names(out) == ["a.jsonl.00000", "b.jsonl.00000"]  # c is never read
    assert [s["docs"] for s in check_manifest(out)["units"][1]["shards"]] == [2]

    docs, rep = ingest(tmp_path, d, id_field="id", max_docs=3)  # exactly the first file
    assert ids(docs) == ["a0", "a1", "a2"] and shard_names(out) == ["a.jsonl.00000"]
    _, rep = ingest(tmp_path, d, id_field="id", max_docs=3)
    assert (rep["units_built"], rep["units_reused"]) == (0, 1)

    docs, rep = ingest(tmp_path, d, id_field="id", max_docs=100, jobs=2)  # more than there is
    assert ids(docs) == expect(spec) and rep["docs_out"] == 9


def test_max_docs_stops_reading_once_the_budget_is_met(tmp_path):
    """Nothing after the max_docs-th document is read: a bad record there is no error, and is not
    counted (as before shards: the stage stopped right after writing the last document)."""
    d = tmp_path / "in"
    d.mkdir()
    write_jsonl(d / "a.jsonl", ['{"id": 1, "text": "one"}', '{"id": 2, "text": "two"}', "{broken"])
    write_jsonl(d / "b.jsonl", ["{broken"])
    docs, rep = ingest(tmp_path, d, id_field="id", max_docs=2)
    assert ids(docs) == ["1", "2"] and (rep["docs_in"], rep["skipped_by_reason"]) == (2, {})
    docs, rep = ingest(tmp_path, d, id_field="id", max_docs=2, on_bad_record="skip")
    assert ids(docs) == ["1", "2"] and (rep["docs_in"], rep["skipped_by_reason"]) == (2, {})


# --------------------------------------------------------------------------- one hash per new file

def test_ingest_takes_a_files_sha256_from_the_inputs_stages_memory(tmp_path):
    """`inputs` hashes every new file just before its ingest runs: ingest looks the sha256 up in
    that memory (same size, mtime and inode) instead of reading the file again, and hashes a file
    the memory does not match. Shown by planting a sha256 no file has in the inputs memory."""
    from llmpipe.core.atomic import write_json
    from llmpipe.data.sources.ingest import hash_memory, input_index
    from llmpipe.data.sources import ingest_source
    from test_sources import sp
    d = folder(tmp_path, {"a": 2, "b": 1})
    inputs = tmp_path / "data" / "inputs"
    memory_path, memory = hash_memory(inputs)
    input_index("src", sp(str(d), id_field="id"), memory)  # what stage `inputs` remembers
    a, b = str(d / "a.jsonl"), str(d / "b.jsonl")
    assert memory[a][3] == hashlib.sha256(Path(a).read_bytes()).hexdigest()
    memory[a][3] = "f" * 64
    write_json(memory_path, memory)
    os.utime(b, ns=(1, 1))  # b changed after `inputs` ran: its remembered key no longer matches

    out = out_dir(tmp_path)
    ingest_source("src", sp(str(d), id_field="id"), str(out), progress=False, jobs=1, inputs=inputs)
    own = hash_memory(out)[1]
    assert own[a][3] == "f" * 64  # taken from the inputs memory, not read again
    assert own[b][3] == hashlib.sha256(Path(b).read_bytes()).hexdigest() and own[b][1] == 1
