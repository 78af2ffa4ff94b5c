"""The clean pass over a table: schema, accounting, determinism across worker counts, the stage
scripts in-process, and the built-in sample corpus through ingest -> clean -> filter."""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from _cleankit import BASE, clean_dir, doc_rows, read_kept, read_shards, shard_names, write_ingested
from llmpipe.data import minhash
from llmpipe.core.atomic import sha256_file
from llmpipe.data.clean import rules, signals
from llmpipe.data.clean.pipeline import clean_table, cleaner_names
from llmpipe.data.table import write_docs
from llmpipe.params import CleanParams, load_params

REPO = Path(__file__).resolve().parents[1]


def stage(name: str):
    return importlib.import_module(f"stages.{name}")


def _docs(tmp_path: Path, texts: list[str]) -> Path:
    src = tmp_path / "in.parquet"
    write_docs(src, [{"id": f"d{i}", "source": "s", "text": t, "url": f"u{i}", "meta": "{}"}
                     for i, t in enumerate(texts)])
    return src


def test_clean_table_schema_and_contents(tmp_path):
    texts = [BASE, "Home\n" + BASE + "\r\n", ""]
    out = tmp_path / "clean.parquet"
    stats = clean_table(_docs(tmp_path, texts), out, "c4", CleanParams(batch_docs=2), 5, 32, 7, jobs=1)
    t = pq.read_table(out)
    expected = ["id", "source", "text", "url", "meta", "chars_raw"]
    expected += [f"removed_{c}" for c in cleaner_names("c4")] + list(signals.signal_types("c4"))
    assert t.column_names == expected + ["exact_hash"]  # the signatures are beside it, a .npy
    assert t.column("id").to_pylist() == ["d0", "d1", "d2"]
    assert t.column("text").to_pylist() == [BASE, BASE, ""]
    assert t.column("chars_raw").to_pylist() == [len(x) for x in texts]
    assert stats == {"docs": 3, "chars_raw": sum(map(len, texts)), "chars": 2 * len(BASE),
                     "long_docs": 0, "long_chars": 0, "jobs": 1}
    assert t.column("exact_hash").to_pylist() == [minhash.exact_hash(x) for x in (BASE, BASE, "")]
    sig = np.load(tmp_path / "clean.minhash.npy", allow_pickle=False)
    assert sig.dtype == np.uint32 and sig.shape == (3, 32)
    assert np.array_equal(sig, minhash.signatures([BASE, BASE, ""], 5, 32, 7))
    for c in cleaner_names("c4"):
        assert t.schema.field(f"removed_{c}").type == pa.int64()


def test_output_bytes_do_not_depend_on_jobs_or_batching(tmp_path):
    texts = [BASE[i:] + f" Line {i}." for i in range(0, 700, 50)] + ["Lorem ipsum.", ""]
    src = _docs(tmp_path, texts)
    a, b, c = tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "c.parquet"
    clean_table(src, a, "wikipedia", CleanParams(batch_docs=3), 5, 16, 1, jobs=1)
    clean_table(src, b, "wikipedia", CleanParams(batch_docs=3), 5, 16, 1, jobs=2)
    clean_table(src, c, "wikipedia", CleanParams(batch_docs=3), 5, 16, 1, jobs=1)
    assert sha256_file(a) == sha256_file(b) == sha256_file(c)
    assert pq.read_table(a).equals(pq.read_table(b))
    sigs = [sha256_file(p.with_suffix(".minhash.npy")) for p in (a, b, c)]
    assert sigs[0] == sigs[1] == sigs[2]


def test_clean_source_bytes_do_not_depend_on_jobs_and_unchanged_shards_are_reused(tmp_path):
    """clean@SRC over shards: the same bytes for any `jobs`; a rerun reuses every shard (same
    inode: a hard link, no bytes written), and a new input shard costs its own shard only."""
    texts = {f"part-{k}.00000": [BASE[i:] + f" Line {k}-{i}." for i in range(0, 300, 50)] for k in range(3)}
    shard_rows = {name: doc_rows(ts, f"{name}-") for name, ts in texts.items()}
    ing = write_ingested(tmp_path / "ingested", shard_rows)
    st1, _ = clean_dir(ing, tmp_path / "a", "wikipedia", CleanParams(batch_docs=2), jobs=1)
    st2, _ = clean_dir(ing, tmp_path / "b", "wikipedia", CleanParams(batch_docs=2), jobs=2)
    assert st1["docs"] == st2["docs"] == 18
    names = shard_names(tmp_path / "a")
    assert names == list(texts) == shard_names(tmp_path / "b")
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(["manifest.json", *(f"{n}{s}" for n in names for s in (".parquet", ".minhash.npy", ".canon.npy", ".contain.npy"))])
    for f in files:
        assert sha256_file(tmp_path / "a" / f) == sha256_file(tmp_path / "b" / f), f
    inodes = {f: (tmp_path / "a" / f).stat().st_ino for f in files if f != "manifest.json"}
    _, how = clean_dir(ing, tmp_path / "a", "wikipedia", CleanParams(batch_docs=2), jobs=1)
    assert how == "3 shard units: 0 built, 3 reused (workspace)"
    assert {f: (tmp_path / "a" / f).stat().st_ino for f in inodes} == inodes
    shard_rows["part-3.00000"] = doc_rows(["A new file. " + BASE], "new-")
    write_ingested(ing, shard_rows)
    _, how = clean_dir(ing, tmp_path / "a", "wikipedia", CleanParams(batch_docs=2), jobs=1)
    assert how == "4 shard units: 1 built, 3 reused (workspace)"
    assert {f: (tmp_path / "a" / f).stat().st_ino for f in inodes} == inodes
    assert read_shards(tmp_path / "a", ["id"]).num_rows == 19


def test_one_document_shards_are_cleaned_a_shard_per_worker_with_the_same_bytes(tmp_path):
    """A book per shard is one batch: cleaned shard after shard, one core would work. With several
    to build each worker takes whole shards (`core.executor.shard_tasks`), with the bytes of one
    process; one new shard alone is split over the pool's batches as before."""
    shard_rows = {f"pg{k}.txt.00000": doc_rows([f"Book {k}. " + BASE * 3], f"b{k}-") for k in range(5)}
    ing = write_ingested(tmp_path / "ingested", shard_rows)
    st1, _ = clean_dir(ing, tmp_path / "a", "gutenberg", jobs=1)
    st2, how = clean_dir(ing, tmp_path / "b", "gutenberg", jobs=2)
    assert (st1["jobs"], st1["over"]) == (1, "batches")
    assert (st2["jobs"], st2["over"], how) == (2, "shards", "5 shard units: 5 built, 0 reused")
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert len(files) == 5 * 4 + 1 and sorted(p.name for p in (tmp_path / "b").iterdir()) == files
    for f in files:
        assert sha256_file(tmp_path / "a" / f) == sha256_file(tmp_path / "b" / f), f
    shard_rows["pg5.txt.00000"] = doc_rows(["Book 5. " + BASE * 2], "b5-")
    write_ingested(ing, shard_rows)
    st3, how = clean_dir(ing, tmp_path / "b", "gutenberg", jobs=2)
    assert (st3["over"], how) == ("batches", "6 shard units: 1 built, 5 reused (workspace)")


def test_clean_stage_refuses_missing_input(tmp_path, capsys):
    assert stage("clean").main(["--source", "c4", "--in", str(tmp_path / "nope.parquet"),
                                "--out", str(tmp_path / "o.parquet"), "--params", str(REPO / "params.yaml")]) == 2
    assert "did you run `dvc repro ingest@c4`" in capsys.readouterr().err
    assert not (tmp_path / "o.parquet").exists()


@pytest.mark.slow
def test_sample_pipeline_drops_in_every_rule_family(tmp_path):
    """ingest -> clean -> filter on the built-in sample (sample://KIND), stage scripts in-process:
    every rule family removes something, and every report balances."""
    params = REPO / "params.yaml"
    sources = load_params(params).sources
    fp = load_params(params).filter
    families: dict[str, int] = {}
    for src, sp in sources.items():
        ing, cln, flt = (tmp_path / d / src for d in ("ingested", "clean", "filtered"))
        assert stage("ingest").main(["--source", src, "--out", str(ing), "--params", str(params),
                                     "--no-progress"]) == 0
        assert stage("clean").main(["--source", src, "--in", str(ing), "--out", str(cln),
                                    "--params", str(params), "--jobs", "1"]) == 0
        report = tmp_path / f"{src}.json"
        assert stage("filter").main(["--source", src, "--in", str(cln), "--out", str(flt),
                                     "--report", str(report), "--params", str(params)]) == 0
        rep = json.loads(report.read_text())
        assert rep["docs_in"] == read_shards(ing, ["id"]).num_rows
        assert rep["docs_in"] == rep["docs_kept"] + sum(rep["dropped_by_reason"].values())
        assert rep["docs_kept"] == read_kept(cln, flt, ["id"]).num_rows > rep["docs_in"] // 2
        assert sum(rep["chars_removed_by_cleaner"].values()) > 0 or sp.kind == "fineweb"
        for r in rules.rules_for(fp, sp.kind):
            families[rules.family(r)] = families.get(rules.family(r), 0) + rep["dropped_by_reason"][r.reason]
    assert set(families) == {"length", "quality", "english", "repetition",
                             "c4", "wikipedia", "gutenberg", "fineweb"}
    assert all(families.values()), families
