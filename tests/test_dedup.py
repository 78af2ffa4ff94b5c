"""Exact + near dedup on tiny hand-built filtered tables; LSH math; the stage script."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmpipe.data.dedup import (candidate_pairs, choose_bands, components, dedup, detection_probability,
                           resolve_bands)
from llmpipe.data.table import DOC_COLUMNS, DOC_SCHEMA, TableWriter
from llmpipe.data.minhash import exact_hash, signatures
from llmpipe.params import DedupParams, ParamsError

REPO = Path(__file__).resolve().parents[1]
K = 64


def words(seed: int, n: int = 200) -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"w{x}" for x in rng.integers(0, 100_000, size=n)]


BASE = words(1)
TEXTS = {
    "orig": " ".join(BASE),
    "exact": " ".join(BASE).upper() + " !!!",                       # same normalised text
    "near": " ".join(BASE[:100] + ["changed"] + BASE[101:]),         # Jaccard 190/200 = 0.95
    "half": " ".join(BASE[:100] + words(2, 100)),                    # Jaccard ~0.33
    "other": " ".join(words(3)),
    "other2": " ".join(words(4)),
}


def write_filtered(path: Path, source: str, rows: list[tuple[str, str]], num_perm: int = K) -> None:
    """A filtered table as clean/filter write it: Document columns + exact_hash + minhash."""
    texts = [t for _, t in rows]
    sig = signatures(texts, ngram=5, num_perm=num_perm, seed=1)
    schema = pa.schema(list(DOC_SCHEMA) + [pa.field("word_count", pa.int64()),
                                           pa.field("exact_hash", pa.string()),
                                           pa.field("minhash", pa.list_(pa.uint32(), num_perm))])
    with TableWriter(path, schema, row_group_size=2) as w:   # several row groups
        for i in range(len(rows)):
            w.write({"id": [rows[i][0]], "source": [source], "text": [texts[i]], "url": [None],
                     "meta": ['{"k": 1}'], "word_count": [len(texts[i].split())],
                     "exact_hash": [exact_hash(texts[i])], "minhash": [sig[i].tolist()]})


def setup(tmp_path: Path, tables: dict[str, list[tuple[str, str]]]):
    ins, outs = {}, {}
    for src, rows in tables.items():
        ins[src] = tmp_path / "filtered" / f"{src}.parquet"
        outs[src] = tmp_path / "dedup" / f"{src}.parquet"
        write_filtered(ins[src], src, rows)
    return ins, outs


def kept_ids(path: Path) -> list[str]:
    return pq.read_table(path).column("id").to_pylist()


TABLES = {
    "c4": [("c-1", TEXTS["exact"]), ("c-2", TEXTS["near"]), ("c-3", TEXTS["other"]),
           ("c-4", TEXTS["half"]), ("c-0", TEXTS["other"])],
    "wikipedia": [("w-1", TEXTS["orig"]), ("w-2", TEXTS["other2"])],
}


def test_cross_source_priority_exact_and_near(tmp_path):
    ins, outs = setup(tmp_path, TABLES)
    p = DedupParams(num_perm=K, threshold=0.8, priority=["wikipedia", "c4"])
    rep = dedup(ins, outs, p)
    assert kept_ids(outs["wikipedia"]) == ["w-1", "w-2"]
    # c-1 exact copy of w-1, c-2 near copy of w-1, c-3 exact copy of c-0 (c-0 sorts first by id)
    assert kept_ids(outs["c4"]) == ["c-4", "c-0"]
    assert rep["per_source"]["c4"]["dropped_by_reason"] == {"exact_duplicate": 2, "near_duplicate": 1}
    assert rep["per_source"]["wikipedia"]["dropped_by_reason"] == {"exact_duplicate": 0,
                                                                   "near_duplicate": 0}
    assert rep["clusters"] == 2 and rep["verified_pairs"] == 1
    assert (rep["bands"], rep["rows"]) == resolve_bands(0.8, K, None, None, 0.9)
    ex = rep["examples"][0]
    assert (ex["a"]["id"], ex["b"]["id"], ex["b"]["status"]) == ("w-1", "c-2", "near_duplicate")
    assert ex["a"]["text"] == TEXTS["orig"][:80] and 0.85 <= ex["jaccard_estimate"] <= 1.0
    assert pq.read_schema(outs["c4"]).names == DOC_COLUMNS
    assert pq.read_table(outs["c4"]).column("meta").to_pylist() == ['{"k": 1}'] * 2


def test_priority_reversed_keeps_the_c4_copy(tmp_path):
    ins, outs = setup(tmp_path, TABLES)
    dedup(ins, outs, DedupParams(num_perm=K, priority=["c4", "wikipedia"]))
    assert kept_ids(outs["c4"]) == ["c-1", "c-4", "c-0"]   # c-2 near copy of c-1; c-0 < c-3
    assert kept_ids(outs["wikipedia"]) == ["w-2"]


def test_unlisted_sources_follow_sources_order(tmp_path):
    ins, outs = setup(tmp_path, {"b": [("x", TEXTS["orig"])], "a": [("y", TEXTS["near"])]})
    dedup(ins, outs, DedupParams(num_perm=K, priority=[]))
    assert kept_ids(outs["b"]) == ["x"] and kept_ids(outs["a"]) == []


def test_empty_and_single_document_sources(tmp_path):
    ins, outs = setup(tmp_path, {"a": [], "b": [("x", "just one")]})
    rep = dedup(ins, outs, DedupParams(num_perm=K))
    assert kept_ids(outs["a"]) == [] and kept_ids(outs["b"]) == ["x"]
    assert pq.read_schema(outs["a"]).names == DOC_COLUMNS
    assert (rep["docs_in"], rep["docs_kept"], rep["clusters"]) == (1, 1, 0)


def test_dvc_stage_declares_what_it_reads():
    import yaml
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["dedup"]
    read = {f"dedup.{k}" for k in ("num_perm", "exact", "near", "threshold", "bands", "rows",
                                   "false_negative_weight", "priority", "max_examples")}
    assert set(stage["params"]) == read | {"sources"}
    for dep in ("stages/dedup.py", "src/llmpipe/data/dedup.py", "src/llmpipe/data/minhash.py",
                "src/llmpipe/data/table.py", "src/llmpipe/params.py"):
        assert dep in stage["deps"]
    # one folder in, one folder out: adding a source is a params.yaml edit only
    assert "data/filtered" in stage["deps"] and stage["outs"] == ["data/dedup"]


def test_below_threshold_pair_is_kept(tmp_path):
    ins, outs = setup(tmp_path, {"c4": [("a", TEXTS["orig"]), ("b", TEXTS["half"])]})
    rep = dedup(ins, outs, DedupParams(num_perm=K, bands=K, rows=1))   # every pair a candidate
    assert kept_ids(outs["c4"]) == ["a", "b"]
    assert rep["candidate_pairs"] == 1 and rep["verified_pairs"] == 0 and rep["clusters"] == 0


def test_accounting_and_chars(tmp_path):
    ins, outs = setup(tmp_path, TABLES)
    rep = dedup(ins, outs, DedupParams(num_perm=K, priority=["wikipedia"]))
    for r in [rep, *rep["per_source"].values()]:
        assert r["docs_in"] == r["docs_kept"] + sum(r["dropped_by_reason"].values())
        assert r["chars_kept"] <= r["chars_in"]
    assert rep["docs_in"] == 7 and rep["docs_kept"] == 4
    assert rep["chars_in"] == sum(len(t) for rows in TABLES.values() for _, t in rows)
    assert rep["chars_kept"] == sum(len(t) for o in outs.values()
                                    for t in pq.read_table(o).column("text").to_pylist())


def test_deterministic_bytes(tmp_path):
    reports = []
    for run in ("r1", "r2"):
        ins, outs = setup(tmp_path / run, TABLES)
        reports.append(json.dumps(dedup(ins, outs, DedupParams(num_perm=K)), sort_keys=True))
    assert reports[0] == reports[1]
    for src in TABLES:
        a = (tmp_path / "r1" / "dedup" / f"{src}.parquet").read_bytes()
        assert a == (tmp_path / "r2" / "dedup" / f"{src}.parquet").read_bytes()


def test_signature_width_mismatch_names_file_and_row(tmp_path):
    ins, outs = setup(tmp_path, {"c4": [("a", "x y z")]})
    with pytest.raises(ValueError, match=r"c4\.parquet: row 0: minhash has 64 slots but dedup.num_perm is 128"):
        dedup(ins, outs, DedupParams(num_perm=128))
    assert not outs["c4"].exists()


def test_null_hash_names_file_and_row(tmp_path):
    path = tmp_path / "c4.parquet"
    write_filtered(path, "c4", [("a", "one two"), ("b", "three four")])
    t = pq.read_table(path)
    t = t.set_column(t.schema.get_field_index("exact_hash"), "exact_hash",
                     pa.array([t.column("exact_hash")[0].as_py(), None]))
    pq.write_table(t, path)
    with pytest.raises(ValueError, match=r"c4\.parquet: row 1: exact_hash is null"):
        dedup({"c4": path}, {"c4": tmp_path / "o.parquet"}, DedupParams(num_perm=K))


def test_missing_inputs_and_columns(tmp_path):
    with pytest.raises(FileNotFoundError, match="did you run `dvc repro filter@c4`"):
        dedup({"c4": tmp_path / "nope.parquet"}, {"c4": tmp_path / "o.parquet"}, DedupParams())
    bare = tmp_path / "bare.parquet"
    pq.write_table(pa.table({"id": ["a"], "text": ["t"]}), bare)
    with pytest.raises(ValueError, match="bare.parquet: missing column 'exact_hash'"):
        dedup({"c4": bare}, {"c4": tmp_path / "o.parquet"}, DedupParams())


def test_band_math():
    assert detection_probability(0.8, 1, 1) == pytest.approx(0.8)
    assert detection_probability(0.5, 2, 2) == pytest.approx(1 - 0.75 ** 2)
    assert choose_bands(0.8, 128, 0.5) == (9, 13)        # equal weights: the classic 0.8 choice
    b, r = choose_bands(0.8, 128, 0.9)
    assert (b, r) == (14, 9) and detection_probability(0.9, b, r) > 0.99
    assert resolve_bands(0.8, 128, 16, None, 0.9) == (16, 8)
    assert resolve_bands(0.8, 128, None, 4, 0.9) == (32, 4)
    assert resolve_bands(0.8, 128, 10, 5, 0.9) == (10, 5)


def test_params_checks():
    with pytest.raises(ParamsError, match=r"bands \* rows must be <= num_perm \(128\), got 20 \* 8"):
        DedupParams(bands=20, rows=8)
    with pytest.raises(ParamsError, match="threshold: must be in"):
        DedupParams(threshold=0.0)


def test_candidate_pairs_link_buckets_to_their_first_member():
    sig = np.array([[1, 2, 3, 4], [1, 2, 9, 9], [7, 7, 3, 4], [1, 2, 3, 4], [5, 5, 5, 5]], np.uint32)
    u, v = candidate_pairs(sig, bands=2, rows=2)
    assert sorted(zip(u.tolist(), v.tolist())) == [(0, 1), (0, 2), (0, 3)]


def test_components_label_is_smallest_member():
    u, v = np.array([5, 3, 1, 7]), np.array([3, 1, 6, 8])
    assert components(9, u, v).tolist() == [0, 1, 2, 1, 4, 1, 1, 7, 7]
    assert components(3, np.array([], int), np.array([], int)).tolist() == [0, 1, 2]


def test_stage_script_writes_outputs_and_report(tmp_path, monkeypatch):
    import importlib
    ins, outs = setup(tmp_path, TABLES)
    (tmp_path / "params.yaml").write_text(
        "sources:\n  c4: {kind: c4, uri: sample://c4}\n  wikipedia: {kind: wikipedia, uri: sample://wikipedia}\n"
        "dedup: {num_perm: 64, priority: [wikipedia, c4]}\n")
    mod = importlib.import_module("stages.dedup")
    monkeypatch.chdir(tmp_path)
    assert mod.main(["--in-dir", "filtered", "--out-dir", "out", "--report", "rep/dedup.json"]) == 0
    rep = json.loads((tmp_path / "rep" / "dedup.json").read_text())
    assert rep["docs_kept"] == 4 and sorted(p.name for p in (tmp_path / "out").iterdir()) == \
        ["c4.parquet", "wikipedia.parquet"]
    assert set(rep["detection_probability"]) == {"jaccard_0.7", "jaccard_0.8", "jaccard_0.9"}


@pytest.mark.slow
def test_sample_pipeline_dedup_is_accounted_prioritised_and_reproducible(tmp_path):
    """Real `dvc repro dedup` on the built-in sample (planted exact and near duplicates)."""
    import hashlib

    import yaml
    from conftest import dvc, make_repo

    repo = make_repo(tmp_path / "repo")
    dvc(repo, "repro", "dedup")
    rep = json.loads((repo / "reports/dedup.json").read_text())
    assert rep["dropped_by_reason"]["exact_duplicate"] > 0
    assert rep["dropped_by_reason"]["near_duplicate"] > 0
    priority = yaml.safe_load((repo / "params.yaml").read_text())["dedup"]["priority"]
    for src, r in rep["per_source"].items():
        assert r["docs_in"] == pq.ParquetFile(repo / f"data/filtered/{src}.parquet").metadata.num_rows
        assert r["docs_kept"] == pq.ParquetFile(repo / f"data/dedup/{src}.parquet").metadata.num_rows
        assert r["docs_in"] == r["docs_kept"] + sum(r["dropped_by_reason"].values())
    for ex in rep["examples"]:   # the better-ranked side is never the one removed
        assert priority.index(ex["a"]["source"]) <= priority.index(ex["b"]["source"])
        assert ex["b"]["status"] == "near_duplicate" and ex["jaccard_estimate"] >= rep["threshold"]

    def digests():
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                for p in [*sorted((repo / "data/dedup").iterdir()), repo / "reports/dedup.json"]}
    before = digests()
    dvc(repo, "repro", "-f", "-s", "dedup")
    assert digests() == before
