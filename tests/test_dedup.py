"""Exact + near dedup: the in-memory reference (`find_duplicates` on one Index; `dedup` on one
filtered table per source), LSH math, and the `dedup` stage on sharded inputs (`dedup_sharded`:
a status mask per clean shard), which must decide exactly what the reference decides on the
concatenation of the shards. Behaviour tests run on both (`run` fixture)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from _cleankit import dedup_kept_ids, dedup_status, filter_params, shard_names, sharded_sources
from llmpipe.core.errors import UserError
from llmpipe.data.dedup import (FILTERED, Index, candidate_pairs, choose_bands, components, dedup, dedup_sharded,
                                detection_probability, find_duplicates, resolve_bands)
from llmpipe.data.table import DOC_COLUMNS, DOC_SCHEMA, TableWriter
from llmpipe.data.minhash import exact_hash, signatures
from llmpipe.params import DedupParams, FilterParams, ParamsError

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


def shard_tables(tables: dict[str, list[tuple[str, str]]], shards: int = 2) -> dict[str, dict[str, list]]:
    """Each source's rows cut into (up to) `shards` consecutive shards, `SRC-part-K.00000`, the
    last one taking the remainder (TABLES: c-3 and its exact copy c-0 share the last shard, so
    keep order, shard then id, is the reference's)."""
    out = {}
    for src, rows in tables.items():
        cut = max(1, len(rows) // shards)
        parts = [rows[k * cut:(k + 1) * cut] for k in range(shards - 1)] + [rows[(shards - 1) * cut:]]
        out[src] = {f"{src}-part-{k}.00000": part for k, part in enumerate(parts) if part}
    return out


def run_reference(tmp_path: Path, tables, params: DedupParams) -> tuple[dict, dict[str, list[str]]]:
    ins, outs = setup(tmp_path, tables)
    rep = dedup(ins, outs, params)
    return rep, {src: kept_ids(outs[src]) for src in tables}


def run_sharded(tmp_path: Path, tables, params: DedupParams, shards: int = 2) -> tuple[dict, dict[str, list[str]]]:
    root = sharded_sources(tmp_path, shard_tables(tables, shards), num_perm=K)
    rep = dedup_sharded(root / "clean", root / "filtered", root / "dedup", list(tables), params,
                        cache_dir=root / "cache")
    return rep, {src: dedup_kept_ids(root, src) for src in tables}


@pytest.fixture(params=["reference", "sharded"])
def run(request):
    """The dedup under test: `dedup` on one table per source, or the stage on 2 shards per source."""
    return {"reference": run_reference, "sharded": run_sharded}[request.param]


TABLES = {
    "c4": [("c-1", TEXTS["exact"]), ("c-2", TEXTS["near"]), ("c-3", TEXTS["other"]),
           ("c-4", TEXTS["half"]), ("c-0", TEXTS["other"])],
    "wikipedia": [("w-1", TEXTS["orig"]), ("w-2", TEXTS["other2"])],
}


def test_cross_source_priority_exact_and_near(tmp_path, run):
    p = DedupParams(num_perm=K, threshold=0.8, priority=["wikipedia", "c4"])
    rep, kept = run(tmp_path, TABLES, p)
    assert kept["wikipedia"] == ["w-1", "w-2"]
    # c-1 exact copy of w-1, c-2 near copy of w-1, c-3 exact copy of c-0 (c-0 sorts first by id)
    assert kept["c4"] == ["c-4", "c-0"]
    assert rep["per_source"]["c4"]["dropped_by_reason"] == {"exact_duplicate": 2, "near_duplicate": 1}
    assert rep["per_source"]["wikipedia"]["dropped_by_reason"] == {"exact_duplicate": 0,
                                                                   "near_duplicate": 0}
    assert rep["clusters"] == 2 and rep["verified_pairs"] == 1
    assert (rep["bands"], rep["rows"]) == resolve_bands(0.8, K, None, None, 0.9)
    ex = rep["examples"][0]
    assert (ex["a"]["id"], ex["b"]["id"], ex["b"]["status"]) == ("w-1", "c-2", "near_duplicate")
    assert ex["a"]["text"] == TEXTS["orig"][:80] and 0.85 <= ex["jaccard_estimate"] <= 1.0


def test_reference_writes_the_kept_document_rows(tmp_path):
    ins, outs = setup(tmp_path, TABLES)
    dedup(ins, outs, DedupParams(num_perm=K, threshold=0.8, priority=["wikipedia", "c4"]))
    assert pq.read_schema(outs["c4"]).names == DOC_COLUMNS
    assert pq.read_table(outs["c4"]).column("meta").to_pylist() == ['{"k": 1}'] * 2


def test_stage_writes_a_status_mask_per_clean_shard_never_text(tmp_path):
    root = sharded_sources(tmp_path, shard_tables(TABLES), num_perm=K)
    rep = dedup_sharded(root / "clean", root / "filtered", root / "dedup", list(TABLES),
                        DedupParams(num_perm=K, priority=["wikipedia", "c4"]), cache_dir=root / "cache")
    assert sorted(p.name for p in (root / "dedup").iterdir()) == ["c4", "wikipedia"]
    for src in TABLES:
        names = shard_names(root / "clean" / src)
        assert sorted(p.name for p in (root / "dedup" / src).iterdir()) == sorted(
            ["manifest.json", *(f"{n}.npy" for n in names)])
        assert shard_names(root / "dedup" / src) == names
        for n in names:
            m = np.load(root / "dedup" / src / f"{n}.npy", allow_pickle=False)
            assert m.dtype == np.uint8 and len(m) == pq.ParquetFile(root / "clean" / src / f"{n}.parquet").metadata.num_rows
    assert dedup_status(root / "dedup", root / "clean", "c4").tolist() == [1, 2, 1, 0, 0]
    assert rep["shards"] == 4
    ex = rep["examples"][0]
    assert (ex["b"]["source"], ex["b"]["shard"], ex["b"]["row"]) == ("c4", "c4-part-0.00000", 1)


def test_priority_reversed_keeps_the_c4_copy(tmp_path, run):
    _, kept = run(tmp_path, TABLES, DedupParams(num_perm=K, priority=["c4", "wikipedia"]))
    assert kept["c4"] == ["c-1", "c-4", "c-0"]   # c-2 near copy of c-1; c-0 < c-3
    assert kept["wikipedia"] == ["w-2"]


def test_unlisted_sources_follow_sources_order(tmp_path, run):
    _, kept = run(tmp_path, {"b": [("x", TEXTS["orig"])], "a": [("y", TEXTS["near"])]},
                  DedupParams(num_perm=K, priority=[]))
    assert kept["b"] == ["x"] and kept["a"] == []


def test_empty_and_single_document_sources(tmp_path, run):
    rep, kept = run(tmp_path, {"a": [], "b": [("x", "just one")]}, DedupParams(num_perm=K))
    assert kept["a"] == [] and kept["b"] == ["x"]
    assert (rep["docs_in"], rep["docs_kept"], rep["clusters"]) == (1, 1, 0)


def test_stage_on_an_empty_shard_and_a_source_without_shards(tmp_path):
    root = sharded_sources(tmp_path, {"a": {}, "b": {"b.00000": [], "b.00001": [("x", "just one")]}}, num_perm=K)
    rep = dedup_sharded(root / "clean", root / "filtered", root / "dedup", ["a", "b"], DedupParams(num_perm=K))
    assert dedup_kept_ids(root, "a") == [] and dedup_kept_ids(root, "b") == ["x"]
    assert np.load(root / "dedup/b/b.00000.npy").shape == (0,)
    assert (rep["docs_in"], rep["docs_kept"], rep["clusters"], rep["shards"]) == (1, 1, 0, 2)


def test_below_threshold_pair_is_kept(tmp_path, run):
    rep, kept = run(tmp_path, {"c4": [("a", TEXTS["orig"]), ("b", TEXTS["half"])]},
                    DedupParams(num_perm=K, bands=K, rows=1))   # every pair a candidate
    assert kept["c4"] == ["a", "b"]
    assert rep["candidate_pairs"] == 1 and rep["verified_pairs"] == 0 and rep["clusters"] == 0


def test_accounting_and_chars(tmp_path, run):
    rep, kept = run(tmp_path, TABLES, DedupParams(num_perm=K, priority=["wikipedia"]))
    for r in [rep, *rep["per_source"].values()]:
        assert r["docs_in"] == r["docs_kept"] + sum(r["dropped_by_reason"].values())
        assert r["chars_kept"] <= r["chars_in"]
    assert rep["docs_in"] == 7 and rep["docs_kept"] == 4
    assert rep["chars_in"] == sum(len(t) for rows in TABLES.values() for _, t in rows)
    text_of = {i: t for rows in TABLES.values() for i, t in rows}
    assert rep["chars_kept"] == sum(len(text_of[i]) for ids in kept.values() for i in ids)


def test_deterministic_bytes(tmp_path):
    reports = []
    for run in ("r1", "r2"):
        ins, outs = setup(tmp_path / run, TABLES)
        reports.append(json.dumps(dedup(ins, outs, DedupParams(num_perm=K)), sort_keys=True))
    assert reports[0] == reports[1]
    for src in TABLES:
        a = (tmp_path / "r1" / "dedup" / f"{src}.parquet").read_bytes()
        assert a == (tmp_path / "r2" / "dedup" / f"{src}.parquet").read_bytes()


def test_stage_deterministic_bytes(tmp_path):
    """Two runs from scratch (fresh shards, fresh band-key cache) write the same masks and report."""
    reports, trees = [], []
    for run in ("r1", "r2"):
        rep, _ = run_sharded(tmp_path / run, TABLES, DedupParams(num_perm=K))
        reports.append(json.dumps(rep, sort_keys=True))
        out = tmp_path / run / "dedup"
        trees.append({str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()})
    assert reports[0] == reports[1] and trees[0] == trees[1]


def test_signature_width_mismatch_names_file_and_row(tmp_path):
    ins, outs = setup(tmp_path, {"c4": [("a", "x y z")]})
    with pytest.raises(ValueError, match=r"c4\.parquet: row 0: minhash has 64 slots but dedup.num_perm is 128"):
        dedup(ins, outs, DedupParams(num_perm=128))
    assert not outs["c4"].exists()


def test_stage_signature_width_mismatch_names_the_shard(tmp_path):
    root = sharded_sources(tmp_path, {"c4": {"c4.00000": [("a", "x y z")]}}, num_perm=K)
    with pytest.raises(UserError, match=r"c4\.00000\.minhash\.npy: signatures \(1, 64\), expected \(1, 128\): "
                                        r"rerun `dvc repro clean`"):
        dedup_sharded(root / "clean", root / "filtered", root / "dedup", ["c4"], DedupParams(num_perm=128))
    assert not (root / "dedup").exists()


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


def test_stage_missing_inputs_say_what_to_run(tmp_path):
    root = sharded_sources(tmp_path, {"c4": {"c4.00000": [("a", "x y z"), ("b", "u v w")]}}, num_perm=K)
    args = (root / "clean", root / "filtered", root / "dedup")
    with pytest.raises(FileNotFoundError, match="did you run `dvc repro clean@wikipedia`"):
        dedup_sharded(*args, ["c4", "wikipedia"], DedupParams(num_perm=K))
    (root / "filtered/c4/manifest.json").rename(root / "manifest.json")
    with pytest.raises(FileNotFoundError, match="did you run `dvc repro filter@c4`"):
        dedup_sharded(*args, ["c4"], DedupParams(num_perm=K))
    (root / "manifest.json").rename(root / "filtered/c4/manifest.json")
    np.save(root / "filtered/c4/c4.00000.npy", np.zeros(3, np.int16))  # a mask of another clean shard
    with pytest.raises(UserError, match=r"c4\.00000\.npy: 3 rows, the clean shard has 2; rerun `dvc repro filter@c4`"):
        dedup_sharded(*args, ["c4"], DedupParams(num_perm=K))
    assert not (root / "dedup").exists()


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


def test_dvc_stage_declares_what_it_reads():
    import yaml
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["dedup"]
    read = {f"dedup.{k}" for k in ("num_perm", "exact", "near", "threshold", "bands", "rows",
                                   "false_negative_weight", "priority", "max_examples", "memory_mb", "jobs",
                                   "cross_source", "cross_threshold", "containment", "contain_threshold",
                                   "contain_min_samples", "contain_max_docs")}
    from conftest import code_files, declared_params
    assert set(declared_params(stage)) == read | {"sources"}
    assert "data/code/stages.dedup.json" in stage["deps"]
    for dep in ("stages/dedup.py", "src/llmpipe/data/dedup.py", "src/llmpipe/data/minhash.py",
                "src/llmpipe/data/table.py", "src/llmpipe/params.py", "src/llmpipe/core/shards.py"):
        assert dep in code_files("stages.dedup")
    # folders in, one folder out: adding a source is a params.yaml edit only
    # (the folders of every source's manifest copy: each changes exactly when its shards do)
    assert {"data/manifests/clean", "data/manifests/filtered"} <= set(stage["deps"]) and stage["outs"] == ["data/dedup"]
    assert "--clean data/clean --filtered data/filtered --out-dir data/dedup" in stage["cmd"]


def test_stage_script_writes_outputs_and_report(tmp_path, monkeypatch):
    import importlib
    sharded_sources(tmp_path, shard_tables(TABLES), num_perm=K)
    (tmp_path / "params.yaml").write_text(
        "sources:\n  c4: {kind: c4, uri: sample://c4}\n  wikipedia: {kind: wikipedia, uri: sample://wikipedia}\n"
        "dedup: {num_perm: 64, priority: [wikipedia, c4]}\n")
    mod = importlib.import_module("stages.dedup")
    monkeypatch.chdir(tmp_path)
    assert mod.main(["--clean", "clean", "--filtered", "filtered", "--out-dir", "out", "--cache", "cache",
                     "--report", "rep/dedup.json"]) == 0
    rep = json.loads((tmp_path / "rep" / "dedup.json").read_text())
    assert rep["docs_kept"] == 4 and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["c4", "wikipedia"]
    assert dedup_kept_ids(tmp_path, "c4", dedup="out") == ["c-4", "c-0"]
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
        status = dedup_status(repo / "data/dedup", repo / "data/clean", src)
        codes = np.concatenate([np.load(repo / f"data/filtered/{src}/{n}.npy")
                                for n in shard_names(repo / f"data/clean/{src}")])
        assert np.array_equal(status == FILTERED, codes != 0)  # dedup saw what filter kept, only that
        assert r["docs_in"] == int((codes == 0).sum())
        assert r["docs_kept"] == int((status == 0).sum())
        assert r["docs_in"] == r["docs_kept"] + sum(r["dropped_by_reason"].values())
    for ex in rep["examples"]:   # the better-ranked side is never the one removed
        assert priority.index(ex["a"]["source"]) <= priority.index(ex["b"]["source"])
        assert ex["b"]["status"] == "near_duplicate" and ex["jaccard_estimate"] >= rep["threshold"]

    def digests():
        return {str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in [*sorted(p for p in (repo / "data/dedup").rglob("*") if p.is_file()),
                          repo / "reports/dedup.json"]}
    before = digests()
    dvc(repo, "repro", "-f", "-s", "dedup")
    assert digests() == before


# --------------------------------------------------------------------------- sharded == reference

SOURCES = ["web", "wiki", "books"]


def dup_corpus(seed: int = 0, shards: int = 3, per_shard: int = 14) -> dict[str, dict[str, list]]:
    """`{source: {shard: [(id, text)]}}` full of exact and near copies of 10 base texts, within a
    shard, across shards and across sources; ids in random order (keep order is by id within a
    shard, not by row); every 5th document short (filter's min_words drops it)."""
    rng = np.random.default_rng(seed)
    bases = [words(1000 + b) for b in range(10)]
    used: set[str] = set()
    out: dict[str, dict[str, list]] = {}
    for src in SOURCES:
        out[src] = {}
        for j in range(shards):
            rows = []
            for _ in range(per_shard):
                while (doc_id := f"{src}-{int(rng.integers(0, 10**6)):06d}") in used:
                    pass
                used.add(doc_id)
                what = rng.choice(["exact", "near", "fresh"], p=[0.35, 0.45, 0.2])
                w = list(bases[int(rng.integers(len(bases)))]) if what != "fresh" else words(int(rng.integers(10**6)))
                if what == "near":  # a few substituted words: Jaccard from ~1 down past the threshold
                    for pos in rng.choice(len(w), size=int(rng.integers(1, 9)), replace=False):
                        w[pos] = f"x{int(rng.integers(10**6))}"
                text = " ".join(w[:60] if len(rows) % 5 == 4 else w)
                rows.append((doc_id, text.upper() + " !!!" if what == "exact" and rng.random() < 0.5 else text))
            out[src][f"{src}-file-{j}.00000"] = rows
    return out


def only_min_words(value: int) -> FilterParams:
    """Filter params with one rule on: filter.global.min_words."""
    fields = [f for f in FilterParams().global_.__dataclass_fields__ if f.startswith(("min_", "max_"))]
    return filter_params(kind_off="text", **{**{f"global__{f}": None for f in fields}, "global__min_words": value})


def reference_status(root: Path, sources: list[str], params: DedupParams) -> tuple[dict, object]:
    """find_duplicates on the concatenation of every shard's filter-kept rows, ranked as documented
    (source in dedup.priority then `sources` order, shard in input order, id, row), read straight
    from the clean and filter shards; per (source, shard) status with FILTERED for filtered rows."""
    keys, hashes, sigs, where = [], [], [], []
    rank_of = {s: (params.priority.index(s) if s in params.priority else len(params.priority) + k)
               for k, s in enumerate(sources)}
    full = {}
    for src in sources:
        for j, name in enumerate(shard_names(root / "clean" / src)):
            t = pq.read_table(root / "clean" / src / f"{name}.parquet", columns=["id", "exact_hash"])
            keep = np.load(root / "filtered" / src / f"{name}.npy") == 0
            sig = np.load(root / "clean" / src / f"{name}.minhash.npy")
            full[(src, name)] = np.full(t.num_rows, FILTERED, np.uint8)
            for row in np.flatnonzero(keep).tolist():
                keys.append((rank_of[src], j, t.column("id")[row].as_py(), row))
                hashes.append(t.column("exact_hash")[row].as_py())
                sigs.append(sig[row])
                where.append((src, name, row))
    order = sorted(range(len(keys)), key=keys.__getitem__)
    pref = np.empty(len(keys), np.int64)
    pref[order] = np.arange(len(keys))
    index = Index(["all"], np.array([0, len(keys)]), pa.chunked_array([[k[2] for k in keys]], pa.string()),
                  np.array(hashes, dtype=np.bytes_), np.array(sigs, np.uint32).reshape(-1, params.num_perm), pref)
    bands, rows = resolve_bands(params.threshold, params.num_perm, params.bands, params.rows,
                                params.false_negative_weight)
    dec = find_duplicates(index, params.threshold, bands, rows, exact=params.exact, near=params.near)
    for (src, name, row), st in zip(where, dec.status.tolist()):
        full[(src, name)][row] = st
    return full, dec


def assert_same_as_reference(root: Path, out: Path, sources: list[str], params: DedupParams, rep: dict) -> dict:
    full, dec = reference_status(root, sources, params)
    for (src, name), want in full.items():
        got = np.load(out / src / f"{name}.npy", allow_pickle=False)
        assert got.dtype == np.uint8 and np.array_equal(got, want), (src, name, got.tolist(), want.tolist())
    dup = dec.cluster != np.arange(len(dec.cluster))
    assert (rep["candidate_pairs"], rep["verified_pairs"], rep["clusters"]) == \
        (dec.candidates, len(dec.pairs[0]), int(np.unique(dec.cluster[dup]).size))
    return full


@pytest.mark.parametrize("priority", [["wiki"], ["books", "web", "wiki"]])
def test_sharded_stage_decides_exactly_what_the_reference_decides(tmp_path, priority):
    """Multi-shard, multi-source input with filtered rows: dedup_sharded's masks (in memory, and
    with the band-key cache the stage uses) equal find_duplicates on the concatenation."""
    root = sharded_sources(tmp_path, dup_corpus(), num_perm=K, fp=only_min_words(100))
    params = DedupParams(num_perm=K, threshold=0.8, priority=priority, containment=False)  # test_dedup_contain.py
    for cache in (None, tmp_path / "cache", tmp_path / "cache"):  # the second cached run reuses its band keys
        out = tmp_path / f"dedup-{cache is None}"
        rep = dedup_sharded(root / "clean", root / "filtered", out, SOURCES, params, cache_dir=cache)
        full = assert_same_as_reference(root, out, SOURCES, params, rep)
    # the corpus exercises what it should: every status, duplicates across shards and sources
    allst = np.concatenate(list(full.values()))
    assert all((allst == s).sum() > 5 for s in (0, 1, 2, FILTERED)), np.bincount(allst)
    assert rep["docs_in"] == int((allst != FILTERED).sum()) and rep["docs_kept"] == int((allst == 0).sum())
    for src in SOURCES:
        assert (np.concatenate([full[(src, n)] for n in shard_names(root / "clean" / src)]) != 0).any()
    for ex in rep["examples"]:
        assert ex["b"]["status"] == "near_duplicate"


def test_sharded_stage_switches_match_the_reference(tmp_path):
    root = sharded_sources(tmp_path, dup_corpus(seed=1, shards=2), num_perm=K, fp=only_min_words(100))
    for kw in ({"exact": False}, {"near": False}, {"exact": False, "near": False}, {"bands": 8, "rows": 4}):
        params = DedupParams(num_perm=K, priority=["web"], containment=False, **kw)
        out = tmp_path / f"dedup-{'-'.join(map(str, kw.values()))}"
        rep = dedup_sharded(root / "clean", root / "filtered", out, SOURCES, params, cache_dir=tmp_path / "cache")
        assert_same_as_reference(root, out, SOURCES, params, rep)


@pytest.mark.slow
def test_real_stages_filter_threshold_change_rewrites_only_the_filter_masks(tmp_path):
    """The stage scripts as dvc.yaml runs them (ingest@SRC, clean@SRC, filter@SRC, dedup) on local
    multi-file sources: dedup equals the reference; then a filter threshold change, every stage
    rerun: ingest and clean reuse every shard (same inode and mtime: not a byte written), filter
    rewrites its masks, and dedup still equals the reference on the new masks."""
    import shlex

    import yaml
    from conftest import run
    from llmpipe.params import load_params

    proj = tmp_path / "proj"
    for src, shards in dup_corpus(seed=2).items():
        for name, rows in shards.items():
            f = proj / "data/raw" / src / f"{name.removesuffix('.00000')}.jsonl"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in rows))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["sources"] = {s: {"kind": "text", "uri": f"data/raw/{s}", "format": "jsonl", "id_field": "id"}
                         for s in SOURCES}
    params["mix"]["weights"], params["tokenizer"]["sample_weights"] = {}, {}
    params["dedup"].update(priority=["wiki"], num_perm=K, containment=False)  # the reference has no containment
    params["clean"]["jobs"] = 1
    params["filter"]["global"] = {**{k: None for k in params["filter"]["global"]}, "min_words": 100}
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]

    def repro() -> dict[str, str]:
        logs = {}
        for name in ("ingest", "clean", "filter"):
            for src in SOURCES:
                cmd = stages[name]["do"]["cmd"].replace("${key}", src)
                p = run(shlex.split(cmd), proj, env={"PYTHONPATH": f"{REPO / 'src'}:{REPO}"})
                logs[f"{name}@{src}"] = p.stderr
        p = run(shlex.split(stages["dedup"]["cmd"]), proj, env={"PYTHONPATH": f"{REPO / 'src'}:{REPO}"})
        logs["dedup"] = p.stderr
        dedup_params = load_params(proj / "params.yaml").dedup
        rep = json.loads((proj / "reports/dedup.json").read_text())
        full = assert_same_as_reference(proj / "data", proj / "data/dedup", SOURCES, dedup_params, rep)
        return logs, np.concatenate(list(full.values()))

    def files(stage: str) -> dict[str, tuple]:
        """The shard files of every source's folder of `stage`: path -> (inode, mtime, bytes)."""
        return {str(p.relative_to(proj)): (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes())
                for src in SOURCES for p in sorted((proj / "data" / stage / src).iterdir())
                if p.name != "manifest.json"}

    _, first = repro()
    assert (first == FILTERED).sum() > 5 and len(shard_names(proj / "data/clean/web")) == 3
    ingested, clean, masks = files("ingested"), files("clean"), files("filtered")
    manifests = {p: p.read_bytes() for p in sorted((proj / "data/clean").glob("*/manifest.json"))}

    params["filter"]["global"]["min_words"] = 50  # the short documents come back
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    logs, second = repro()
    for src in SOURCES:
        assert "3 shard units: 0 built, 3 reused (workspace)" in logs[f"clean@{src}"], logs[f"clean@{src}"]
    assert files("ingested") == ingested
    assert files("clean") == clean  # same inode, mtime and bytes: the clean shards were not written
    assert {p: p.read_bytes() for p in manifests} == manifests
    new_masks = files("filtered")
    assert new_masks.keys() == masks.keys()
    assert all(new_masks[k][0] != masks[k][0] for k in masks)  # every mask rewritten (new rules) ...
    assert any(new_masks[k][2] != masks[k][2] for k in masks)  # ... and their codes changed
    assert (second == FILTERED).sum() == 0 and (second == 0).sum() >= (first == 0).sum()


def test_read_row_finds_any_row_of_any_row_group_whatever_the_batch(tmp_path):
    """`_read_row` (the report's examples) batches by the row group's average row size: the row
    it returns is the asked one at a batch of one row, of a few and of the whole group."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from llmpipe.data.dedup import _read_row
    texts = [("x" * (k % 7 + 1)) + str(k) for k in range(1000)]
    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"id": [f"d{k}" for k in range(1000)], "text": texts}), path, row_group_size=300)
    for batch_bytes in (1, 64, 1 << 30):
        for row in (0, 299, 300, 301, 731, 999):
            t = _read_row(path, row, batch_bytes=batch_bytes)
            assert (t.column("id")[0].as_py(), t.column("text")[0].as_py()) == (f"d{row}", texts[row])
    with pytest.raises(IndexError):
        _read_row(path, 1000)
