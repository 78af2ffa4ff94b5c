"""End to end: the real `dvc repro` of the four ingest stages in a fresh copy of the repo."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import dvc, make_repo, set_params, stages_ran
from llmpipe.data.table import DOC_SCHEMA

SOURCES = ["c4", "wikipedia", "gutenberg", "fineweb"]
TARGETS = [f"ingest@{s}" for s in SOURCES]


@pytest.mark.slow
def test_ingest_repro_outputs_noop_and_one_source_rerun(tmp_path):
    repo = make_repo(tmp_path / "repo")
    first = dvc(repo, "repro", "ingest")  # the foreach group: all four sources
    assert stages_ran(first) == set(TARGETS)

    for src in SOURCES:
        table = pq.read_table(repo / "data" / "ingested" / f"{src}.parquet")
        assert table.schema.equals(DOC_SCHEMA), src
        ids = table.column("id").to_pylist()
        assert len(ids) == len(set(ids)) > 0, f"{src}: ids must be unique"
        assert set(table.column("source").to_pylist()) == {src}
        assert all(t for t in table.column("text").to_pylist()), f"{src}: every document has text"
        for m in table.column("meta").to_pylist():
            assert m is None or isinstance(json.loads(m), dict)
        report = json.loads((repo / "reports" / "ingest" / f"{src}.json").read_text())
        assert report["docs_out"] == table.num_rows
        assert report["docs_in"] == report["docs_out"] + sum(report["skipped_by_reason"].values())
        assert report["chars_out"] == sum(len(t) for t in table.column("text").to_pylist())

    # the sample sizes of TEST_OVERRIDES are honoured
    assert pq.read_metadata(repo / "data/ingested/c4.parquet").num_rows == 100
    assert pq.read_metadata(repo / "data/ingested/gutenberg.parquet").num_rows == 6

    again = dvc(repo, "repro", *TARGETS)
    assert stages_ran(again) == set(), again.stdout

    before = {s: (repo / "data/ingested" / f"{s}.parquet").read_bytes() for s in SOURCES}
    set_params(repo, {"sources.wikipedia.max_docs": 25})
    third = dvc(repo, "repro", *TARGETS)
    assert stages_ran(third) == {"ingest@wikipedia"}
    assert pq.read_metadata(repo / "data/ingested/wikipedia.parquet").num_rows == 25
    for s in SOURCES:
        if s != "wikipedia":
            assert (repo / "data/ingested" / f"{s}.parquet").read_bytes() == before[s]
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
        f"    sys.argv = ['ingest.py', '--source', src, '--out', '{tmp_path}/' + src + '.parquet', "
        f"'--params', '{tmp_path}/params.yaml', '--no-progress']\n"
        f"    try:\n        runpy.run_module('stages.ingest', run_name='__main__')\n"
        "    except SystemExit as e:\n        assert e.code == 0, e.code\n"
        "print('\\n'.join(sorted(m.__file__ for n, m in sys.modules.items() if n.startswith('llmpipe.'))))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo)
    assert p.returncode == 0, p.stderr
    used = {str(Path(f).resolve().relative_to(repo / "src")) for f in p.stdout.split()}
    stage = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]["ingest"]["do"]
    declared = {d[len("src/"):] for d in stage["deps"] if d.startswith("src/")}
    # the source kinds are one folder dep (found by discovery): it covers every file inside it
    folders = {d for d in declared if not d.endswith(".py")}
    assert folders == {"llmpipe/data/kinds"}
    assert {u for u in used if not any(u.startswith(f + "/") for f in folders)} == declared - folders
    assert any(u.startswith("llmpipe/data/kinds/") for u in used)
    assert "stages/ingest.py" in stage["deps"] and stage["params"] == ["sources.${key}"]
