"""End to end: the real `dvc repro` of the four ingest stages in a fresh copy of the repo."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from _shardkit import check_manifest, dir_bytes, manifest, read_docs, shard_files
from conftest import declared_params, dvc, make_repo, set_params, stages_ran
from llmpipe.core.shards import shards
from llmpipe.data.table import DOC_SCHEMA

SOURCES = ["c4", "wikipedia", "gutenberg", "fineweb"]
TARGETS = [f"ingest@{s}" for s in SOURCES]


def docs(repo: Path, src: str) -> int:
    """Documents in a source's ingested shards, from its manifest."""
    return sum(s["docs"] for s in shards(manifest(repo / "data" / "ingested" / src)))


@pytest.mark.slow
def test_ingest_repro_outputs_noop_and_one_source_rerun(tmp_path):
    repo = make_repo(tmp_path / "repo")
    first = dvc(repo, "repro", "ingest")  # the foreach group: all four sources
    assert stages_ran(first) == {"code", "inputs", *TARGETS}

    for src in SOURCES:
        out = repo / "data" / "ingested" / src
        m = check_manifest(out)  # exactly the files it lists, sizes and sha256 as listed
        assert (m["stage"], m["source"]) == ("ingest", src)
        assert [u["key"] for u in m["units"]] == ["sample"], src  # a sample:// corpus is one unit
        assert all(pq.read_schema(f).equals(DOC_SCHEMA) for f in shard_files(out)), src
        table = read_docs(out)
        ids = table.column("id").to_pylist()
        assert len(ids) == len(set(ids)) > 0, f"{src}: ids must be unique (within its one input)"
        assert set(table.column("source").to_pylist()) == {src}
        assert all(t for t in table.column("text").to_pylist()), f"{src}: every document has text"
        for meta in table.column("meta").to_pylist():
            assert meta is None or isinstance(json.loads(meta), dict)
        report = json.loads((repo / "reports" / "ingest" / f"{src}.json").read_text())
        assert report["docs_out"] == table.num_rows == m["docs_out"]
        assert report["docs_in"] == report["docs_out"] + sum(report["skipped_by_reason"].values())
        assert report["chars_out"] == sum(len(t) for t in table.column("text").to_pylist()) == m["chars_out"]
        assert report["shards"] == len(shards(m)) == m["shards"]
        assert (report["units_built"], report["units_reused"]) == (1, 0)

    # the sample sizes of TEST_OVERRIDES are honoured
    assert docs(repo, "c4") == 100
    assert docs(repo, "gutenberg") == 6

    again = dvc(repo, "repro", *TARGETS)
    assert stages_ran(again) == set(), again.stdout

    before = {s: dir_bytes(repo / "data/ingested" / s) for s in SOURCES}
    set_params(repo, {"sources.wikipedia.max_docs": 25})
    third = dvc(repo, "repro", *TARGETS)
    assert stages_ran(third) == {"inputs", "ingest@wikipedia"}  # the other indexes come out the same
    assert docs(repo, "wikipedia") == 25 == read_docs(repo / "data/ingested/wikipedia").num_rows
    for s in SOURCES:
        if s != "wikipedia":
            assert dir_bytes(repo / "data/ingested" / s) == before[s]
    status = dvc(repo, "status", *TARGETS)
    assert "changed" not in status.stdout, status.stdout

    # a forced rerun: dvc deletes the output first, so the unchanged unit is found through
    # dvc.lock in DVC's cache and linked from there (cache.type hardlink: the cache's own inode)
    c4 = repo / "data/ingested/c4"
    forced = dvc(repo, "repro", "-f", "-s", "ingest@c4")
    assert stages_ran(forced) == {"ingest@c4"}
    report = json.loads((repo / "reports/ingest/c4.json").read_text())
    assert (report["units_built"], report["units_reused"]) == (0, 1)
    assert "reused (dvc cache)" in forced.stdout + forced.stderr
    assert dir_bytes(c4) == before["c4"]
    for f in shard_files(c4):
        md5 = hashlib.md5(f.read_bytes()).hexdigest()
        assert f.stat().st_ino == (repo / ".dvc/cache/files/md5" / md5[:2] / md5[2:]).stat().st_ino, f.name
    status = dvc(repo, "status", *TARGETS)
    assert "changed" not in status.stdout, status.stdout


def test_ingest_stage_deps_are_exactly_the_code_it_runs(tmp_path):
    """dvc.yaml's ingest deps list every llmpipe file the stage imports (sample and file sources), no more."""
    import subprocess
    import sys

    import yaml
    repo = Path(__file__).resolve().parents[1]
    (tmp_path / "a.jsonl").write_text('{"text": "hello"}\n')
    (tmp_path / "params.yaml").write_text(
        f"sources:\n  s: {{kind: c4, uri: sample://c4, sample_docs: 3}}\n  f: {{kind: c4, uri: {tmp_path}/a.jsonl}}\n")
    code = (
        "import runpy, sys\n"
        f"for src in ('s', 'f'):\n"
        f"    sys.argv = ['ingest.py', '--source', src, '--out', '{tmp_path}/' + src, "
        f"'--params', '{tmp_path}/params.yaml', '--no-progress']\n"
        f"    try:\n        runpy.run_module('stages.ingest', run_name='__main__')\n"
        "    except SystemExit as e:\n        assert e.code == 0, e.code\n"
        "print('\\n'.join(sorted(m.__file__ for n, m in sys.modules.items() if n.startswith('llmpipe.'))))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo)
    assert p.returncode == 0, p.stderr
    used = {str(Path(f).resolve().relative_to(repo / "src")) for f in p.stdout.split()}
    stage = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]["ingest"]["do"]
    assert "data/code/stages.ingest.json" in stage["deps"] and declared_params(stage) == ["sources.${key}"]
    assert not [d for d in stage["deps"] if d.startswith(("src/", "stages/"))]  # one code dep, not a list
    # what stage `code` writes there: the closure, every source kind included (found by discovery)
    from conftest import code_files
    files = code_files("stages.ingest")
    declared = {f[len("src/"):] for f in files if f.startswith("src/")}
    kinds = {d for d in declared if d.startswith("llmpipe/data/kinds/")}
    assert kinds and {u for u in used if u != "llmpipe/__init__.py"} - kinds == declared - kinds
    assert {str(p_.relative_to(repo / "src")) for p_ in (repo / "src/llmpipe/data/kinds").rglob("*.py")} == kinds
    assert "stages/ingest.py" in files


@pytest.mark.slow
def test_a_new_raw_file_reruns_only_its_sources_ingest(tmp_path):
    """ingest@SRC depends on its own index (stage `inputs`), not on all of data/raw: a new file of
    one source, or a file no source reads, reruns no other ingest; the index is content (path,
    size, sha256), the same after a touch."""
    from test_shards_dvc import c4_docs, write_jsonl
    repo = make_repo(tmp_path / "repo")
    set_params(repo, {"sources.c4.uri": "data/raw/c4/*.jsonl", "sources.fineweb.uri": "data/raw/web",
                      "sources.fineweb.id_field": None})
    write_jsonl(repo / "data/raw/c4/a.jsonl", c4_docs(30, seed=1))
    write_jsonl(repo / "data/raw/web/a.jsonl", c4_docs(30, seed=2))
    assert stages_ran(dvc(repo, "repro", *TARGETS)) == {"code", "inputs", *TARGETS}
    index = json.loads((repo / "data/inputs/c4.json").read_text())
    raw = (repo / "data/raw/c4/a.jsonl").read_bytes()
    assert index["files"] == [["a.jsonl", len(raw), hashlib.sha256(raw).hexdigest()]]
    assert "files" not in json.loads((repo / "data/inputs/wikipedia.json").read_text())  # sample://

    write_jsonl(repo / "data/raw/c4/b.jsonl", c4_docs(20, seed=3))
    assert stages_ran(dvc(repo, "repro", *TARGETS)) == {"inputs", "ingest@c4"}
    assert docs(repo, "c4") == 50
    (repo / "data/raw/notes.md").write_text("not read by any source\n")
    (repo / "data/raw/c4/a.jsonl").touch()
    assert stages_ran(dvc(repo, "repro", *TARGETS)) == {"inputs"}

    (repo / "data/raw/web/a.jsonl").unlink()  # fineweb now names an empty folder: only it fails
    p = dvc(repo, "repro", "ingest@c4", check=False)
    assert p.returncode == 0 and stages_ran(p) == {"inputs"}
    p = dvc(repo, "repro", "ingest@fineweb", check=False)
    assert p.returncode != 0 and "data/raw/web: empty source" in p.stdout + p.stderr
