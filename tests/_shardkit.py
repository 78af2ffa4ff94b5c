"""Helpers for tests that read a sharded output directory (`llmpipe.core.shards`): the manifest,
its shard files in order, the documents of all shards as one table, and what is on disk."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from llmpipe.core.atomic import TEMP_TAG
from llmpipe.core.shards import MANIFEST, read_manifest, shards
from llmpipe.data.table import DOC_SCHEMA


def manifest(out_dir: str | Path, stage: str = "ingest") -> dict:
    """The manifest of `out_dir` (a user error, naming `dvc repro STAGE`, when there is none)."""
    return read_manifest(out_dir, stage)


def shard_names(out_dir: str | Path) -> list[str]:
    """Every shard name of the manifest, in order (`a.jsonl.00000`, `a.jsonl.00001`, `b.jsonl.00000`)."""
    return [s["name"] for s in shards(manifest(out_dir))]


def shard_files(out_dir: str | Path, suffix: str = ".parquet") -> list[Path]:
    """The shard files (`NAME.parquet`) of the manifest, in order."""
    return [Path(out_dir) / f"{name}{suffix}" for name in shard_names(out_dir)]


def read_docs(out_dir: str | Path, columns: list[str] | None = None) -> pa.Table:
    """The documents of every shard of `out_dir`, concatenated in manifest order."""
    tables = [pq.read_table(p, columns=columns) for p in shard_files(out_dir)]
    if not tables:
        schema = DOC_SCHEMA if columns is None else pa.schema([DOC_SCHEMA.field(c) for c in columns])
        return schema.empty_table()
    return pa.concat_tables(tables)


def dir_bytes(out_dir: str | Path) -> dict[str, bytes]:
    """{file name: bytes} of every file in `out_dir` (shards and manifest)."""
    return {p.name: p.read_bytes() for p in sorted(Path(out_dir).iterdir()) if p.is_file()}


def inodes(out_dir: str | Path) -> dict[str, int]:
    return {p.name: p.stat().st_ino for p in sorted(Path(out_dir).iterdir()) if p.is_file()}


def check_manifest(out_dir: str | Path) -> dict:
    """Assert the directory holds exactly the files its manifest lists, with their sizes and
    sha256, and that every shard's `docs` is its row count; returns the manifest."""
    out_dir = Path(out_dir)
    m = manifest(out_dir)
    listed = {name: f for u in m["units"] for name, f in u["files"].items()}
    on_disk = {p.name for p in out_dir.iterdir()} - {MANIFEST}
    assert on_disk == set(listed), (sorted(on_disk), sorted(listed))
    for name, f in listed.items():
        data = (out_dir / name).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (f["bytes"], f["sha256"]), name
    for s in shards(m):
        assert pq.read_metadata(out_dir / f"{s['name']}.parquet").num_rows == s["docs"], s["name"]
    return m


def leftovers(out: str | Path) -> list[Path]:
    """Temps of output `out` (`.NAME.tmp-PID` beside it) that a run left behind."""
    out = Path(out)
    return sorted(out.parent.glob(f".{out.name}{TEMP_TAG}*")) if out.parent.exists() else []
