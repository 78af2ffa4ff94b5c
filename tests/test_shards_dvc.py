"""Shards under the real `dvc repro`: a new input file reruns only its own shard through
tokenize, a threshold change rewrites only masks, outputs are hard-linked with DVC's cache, and the
sharded pipeline keeps the documents today's unsharded one kept (README "Shards")."""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import dvc, git_commit, make_repo, run, stages_ran

GOLDEN = Path(__file__).parent / "golden" / "sample_dedup_before_shards.json"


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def snapshot(d: Path) -> dict[str, tuple[str, int]]:
    """{file name: (sha256, inode)} of a shard folder (manifest and meta left out)."""
    return {p.name: (sha(p), p.stat().st_ino) for p in sorted(d.iterdir())
            if p.is_file() and p.name not in ("manifest.json", "meta.json")}


def write_jsonl(path: Path, docs: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")


def c4_docs(n: int, seed: int) -> list[dict]:
    from llmpipe.data.sources.sample import sample_records
    return [{"text": r["text"], "url": r.get("url")} for r in sample_records("c4", n, seed)]


def shard_line(p, stage: str) -> str:
    """The summary of `stage`'s log line: `N shard units: B built, R reused (...)`."""
    out = p.stdout + p.stderr
    m = re.search(rf"llmpipe\.{stage} INFO .*?(\d+ shard units?: \d+ built, \d+ reused[^)]*\)?)", out)
    assert m, f"no shard summary for {stage} in:\n{out[-3000:]}"
    return m.group(1)


@pytest.fixture(scope="module")
def local_repo(tmp_path_factory) -> Path:
    """A repo whose only source is a folder of three C4 jsonl files (one shard each)."""
    repo = tmp_path_factory.mktemp("shards") / "repo"
    make_repo(repo, {"tokenizer.sample_shards": 2, "mix.weights": {"c4": 1.0}, "dedup.priority": ["c4"],
                     "tokenizer.sample_weights": {}})
    params = repo / "params.yaml"
    import yaml
    data = yaml.safe_load(params.read_text())
    data["sources"] = {"c4": {"kind": "c4", "uri": "data/raw/c4", "url_field": "url"}}
    params.write_text(yaml.safe_dump(data, sort_keys=False))
    docs = c4_docs(240, seed=3)
    for k in range(3):
        write_jsonl(repo / "data/raw/c4" / f"part-{k:02d}.jsonl", docs[80 * k: 80 * (k + 1)])
    git_commit(repo, "local c4")
    dvc(repo, "repro", "tokenize@c4")
    return repo


@pytest.mark.slow
def test_a_new_file_reruns_only_its_shard_through_tokenize(local_repo: Path):
    repo = local_repo
    folders = ["data/ingested/c4", "data/clean/c4", "data/tokens/c4"]
    before = {f: snapshot(repo / f) for f in folders}
    spm = sha(repo / "artifacts/tokenizer/spm.model")
    write_jsonl(repo / "data/raw/c4/part-03.jsonl", c4_docs(60, seed=11))
    p = dvc(repo, "repro", "tokenize@c4")

    # quality_sample takes the new shard's passages (one of the first sample_shards: the model is
    # untrained either way, no positive source here) and quality@c4 scores the new shard only
    assert stages_ran(p) == {"inputs", "ingest@c4", "clean@c4", "quality_sample", "quality_model", "quality@c4", "filter@c4",
                             "dedup",
                             "tokenizer", "tokenize@c4"}
    for stage in ("ingest", "clean", "tokenize"):
        assert shard_line(p, stage) == "4 shard units: 1 built, 3 reused (dvc cache)", stage
    assert "reused (dvc cache): its pinned sample shards and params are unchanged" in p.stdout + p.stderr
    # dedup checks the new shard against the last run's index instead of rebuilding it, and its
    # masks are those of a run from nothing (no index, no band-key cache)
    assert "index: incremental (1 new shard(s))" in p.stdout + p.stderr
    out = repo.parent / "fresh"
    fresh = run([sys.executable, "-m", "stages.dedup", "--out-dir", str(out / "dedup"), "--cache", str(out / "cache"),
                 "--report", str(out / "dedup.json")], cwd=repo)
    assert "index: full (no index from an earlier run)" in fresh.stderr, fresh.stderr[-2000:]
    assert {k: v[0] for k, v in snapshot(out / "dedup/c4").items()} == \
        {k: v[0] for k, v in snapshot(repo / "data/dedup/c4").items()}
    assert (out / "dedup.json").read_bytes() == (repo / "reports/dedup.json").read_bytes()
    assert sha(repo / "artifacts/tokenizer/spm.model") == spm
    for f in folders:
        after = snapshot(repo / f)
        for name, (digest, _) in before[f].items():
            assert after[name][0] == digest, f"{f}/{name} changed"
        new = sorted(set(after) - set(before[f]))
        assert new and all(n.startswith("part-03.jsonl.00000") for n in new), (f, new)
    # reused shards are the cache's own inodes: no second copy of the text
    cache_inodes = {p.stat().st_ino for p in (repo / ".dvc/cache").rglob("*") if p.is_file()}
    for f in folders:
        for p_ in (repo / f).iterdir():
            assert p_.stat().st_ino in cache_inodes and p_.stat().st_nlink >= 2, p_


@pytest.mark.slow
def test_a_threshold_change_rewrites_only_masks(local_repo: Path, tmp_path: Path):
    import shutil
    repo = tmp_path / "repo"
    shutil.copytree(local_repo, repo, symlinks=True)
    dvc(repo, "repro", "tokenize@c4")  # settle the copy (new inodes) before measuring
    clean = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (repo / "data/clean/c4").iterdir()}
    masks = {p.name: sha(p) for p in (repo / "data/filtered/c4").glob("*.npy")}
    from conftest import set_params
    set_params(repo, {"filter.global.min_words": 120})
    p = dvc(repo, "repro", "tokenize@c4")
    assert {"filter@c4", "dedup"} <= stages_ran(p) and not {"ingest@c4", "clean@c4"} & stages_ran(p)
    assert {p_.name: (p_.stat().st_ino, p_.stat().st_mtime_ns) for p_ in (repo / "data/clean/c4").iterdir()} == clean
    assert {p_.name: sha(p_) for p_ in (repo / "data/filtered/c4").glob("*.npy")} != masks
    # a stricter threshold only drops documents: the token shards are trimmed, not encoded again
    out = p.stdout + p.stderr
    assert re.search(r"llmpipe\.tokenize INFO tokenize c4: trimmed ", out), out[-2000:]
    assert "trimmed from their previous version" in out
    # decisions are small: no stage after clean writes text
    for d in ("data/filtered", "data/dedup"):
        assert all(f.suffix in (".npy", ".json") for f in (repo / d).rglob("*") if f.is_file()
                   and not f.name.startswith(".")), d


@pytest.mark.slow
def test_a_deleted_shard_reruns_only_its_stage_which_rebuilds_the_same_bytes(local_repo: Path, tmp_path: Path):
    """Per-source stages depend on the upstream folder's manifest.json (every file's sha256), not
    on the folder (docs/ARCHITECTURE.md): a clean shard deleted by hand is still seen, because DVC
    checks the folder as clean@c4's output. DVC checks it out of its cache again; gone from the
    cache too, clean@c4 rebuilds that one unit, byte for byte. Either way the manifest and the folder come
    back unchanged and nothing downstream reruns."""
    import shutil
    repo = tmp_path / "repo"
    shutil.copytree(local_repo, repo, symlinks=True)
    assert stages_ran(dvc(repo, "repro", "tokenize@c4")) == set()
    clean = repo / "data/clean/c4"
    before, manifest = snapshot(clean), sha(clean / "manifest.json")
    digests = {k: v[0] for k, v in before.items()}
    victim = sorted(clean.glob("*.parquet"))[1]

    victim.unlink()
    p = dvc(repo, "repro", "tokenize@c4")
    assert "Stage 'clean@c4' is cached - skipping run, checking out outputs" in p.stdout
    assert stages_ran(p) == set()  # nothing downstream of it either
    assert {k: v[0] for k, v in snapshot(clean).items()} == digests

    inode = victim.stat().st_ino  # now also gone from DVC's cache: clean@c4 must build it again
    for obj in [o for o in (repo / ".dvc/cache").rglob("*") if o.is_file() and o.stat().st_ino == inode]:
        obj.unlink()
    victim.unlink()
    p = dvc(repo, "repro", "--force", "--single-item", "clean@c4")
    units = len(json.loads((clean / "manifest.json").read_text())["units"])  # 3, or 4 after the new-file test
    assert shard_line(p, "clean") == f"{units} shard units: 1 built, {units - 1} reused (dvc cache)"
    assert {k: v[0] for k, v in snapshot(clean).items()} == digests
    assert sha(clean / "manifest.json") == manifest
    assert stages_ran(dvc(repo, "repro", "tokenize@c4")) == set()


@pytest.mark.slow
def test_token_counts_are_those_of_each_kept_document_encoded_alone(built_repo: Path):
    from llmpipe.core.shards import read_manifest, shards
    from llmpipe.data.tokenizer import load
    tok = load(built_repo / "artifacts/tokenizer/spm.model")
    report = json.loads((built_repo / "reports/dedup.json").read_text())
    sizes = {"c4": 100, "wikipedia": 60, "gutenberg": 6, "fineweb": 100}
    for src in sizes:
        kept_ids, texts = [], []
        for sh in shards(read_manifest(built_repo / "data/clean" / src, "clean")):
            t = pq.read_table(built_repo / "data/clean" / src / f"{sh['name']}.parquet", columns=["id", "text"])
            keep = np.load(built_repo / "data/dedup" / src / f"{sh['name']}.npy") == 0
            kept_ids += [i for i, k in zip(t.column("id").to_pylist(), keep) if k]
            texts += [x for x, k in zip(t.column("text").to_pylist(), keep) if k]
        assert report["per_source"][src]["docs_kept"] == len(kept_ids)
        # token counts: every kept document, encoded alone, + its EOS
        meta = json.loads((built_repo / "data/tokens" / src / "meta.json").read_text())
        tokens = sum(meta["splits"][s]["tokens"] for s in ("train", "val"))
        assert tokens == sum(len(tok.encode(x)) + 1 for x in texts)
        assert sum(meta["splits"][s]["docs"] for s in ("train", "val")) == len(kept_ids)


@pytest.mark.slow
def test_sharded_dedup_keeps_exactly_what_the_unsharded_pipeline_kept(tmp_path: Path):
    """tests/golden/: the survivors of main before shards (one table per source), default sample."""
    golden = json.loads(GOLDEN.read_text())
    repo = make_repo(tmp_path / "repo", {f"sources.{s}.sample_docs": 0 for s in ("c4", "wikipedia", "gutenberg",
                                                                                   "fineweb")})
    dvc(repo, "repro", "dedup")
    from llmpipe.core.shards import read_manifest, shards
    report = json.loads((repo / "reports/dedup.json").read_text())
    for key in ("docs_in", "docs_kept", "clusters", "candidate_pairs", "verified_pairs", "dropped_by_reason"):
        assert report[key] == golden["_dedup"][key], key
    for src in ("c4", "wikipedia", "gutenberg", "fineweb"):
        ids = []
        for sh in shards(read_manifest(repo / "data/clean" / src, "clean")):
            t = pq.read_table(repo / "data/clean" / src / f"{sh['name']}.parquet", columns=["id"])
            keep = np.load(repo / "data/dedup" / src / f"{sh['name']}.npy") == 0
            ids += [i for i, k in zip(t.column("id").to_pylist(), keep) if k]
        assert len(ids) == golden[src]["kept_docs"]
        assert hashlib.sha256("\n".join(ids).encode()).hexdigest() == golden[src]["kept_ids_sha256"], src


@pytest.mark.slow
def test_built_outputs_are_links_into_the_cache_not_copies(built_repo: Path):
    cache = {p.stat().st_ino for p in (built_repo / ".dvc/cache").rglob("*") if p.is_file()}
    for d in ("data/ingested", "data/clean", "data/tokens", "data/mix", "data/dedup"):
        files = [p for p in (built_repo / d).rglob("*") if p.is_file() and not p.name.startswith(".")]
        assert files, d
        assert all(p.stat().st_ino in cache for p in files), d


def test_stages_reading_every_source_depend_on_manifest_copies_not_shard_folders(built_repo: Path):
    """data/manifests/STAGE/SRC.json is byte for byte STAGE@SRC's manifest (it lists every shard
    file's size and sha256), and no stage depends on a folder of every source's shards: a no-op
    then stats ~4 manifest copies per such stage instead of every shard file (README "Shards")."""
    import yaml
    folders = {"ingested": "ingest", "clean": "clean", "filtered": "filter", "tokens": "tokenize"}
    srcs = list(yaml.safe_load((built_repo / "params.yaml").read_text())["sources"])
    for folder in folders:
        copies = sorted(p.name for p in (built_repo / "data/manifests" / folder).iterdir() if p.name != ".gitignore")
        assert copies == sorted(f"{s}.json" for s in srcs), folder
        for s in srcs:
            assert (built_repo / f"data/manifests/{folder}/{s}.json").read_bytes() == \
                (built_repo / f"data/{folder}/{s}/manifest.json").read_bytes(), (folder, s)
            m = json.loads((built_repo / f"data/{folder}/{s}/manifest.json").read_text())
            listed = {f for u in m["units"] for f in u["files"]} | {"manifest.json"}
            others = {p.name for p in (built_repo / f"data/{folder}/{s}").iterdir()} - listed
            # every other file of the folder is covered too: tokens' meta.json by its sha256
            assert others == ({"meta.json"} if folder == "tokens" else set()), (folder, s, others)
            if folder == "tokens":
                assert m["meta_sha256"] == sha(built_repo / f"data/tokens/{s}/meta.json")
    lock = yaml.safe_load((built_repo / "dvc.lock").read_text())["stages"]
    whole = {f"data/{f}" for f in folders}
    assert not [(n, d["path"]) for n, st in lock.items() for d in st.get("deps", []) if d["path"] in whole]
    assert {"data/manifests/clean", "data/manifests/filtered"} <= {d["path"] for d in lock["dedup"]["deps"]}
