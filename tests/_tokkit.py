"""Hand-made sharded inputs for the tokenizer / tokenize / mix / eval tests (not a test module).

`write_source_shards(root, source, [[doc, ...], ...])` writes what the upstream stages leave for
one source, with llmpipe's own writers (`TableWriter`, `core.shards.ShardedDir`), so library calls
run on small hand-made data:

    root/clean/SRC/NAME.parquet + manifest.json     the Document columns + chars + exact_hash
    root/filtered/SRC/NAME.npy  + manifest.json     int16 reason code per clean row (0 = kept);
                                                    stats carry docs_in/docs_kept/chars_in/chars_kept
    root/dedup/SRC/NAME.npy     + manifest.json     uint8 status per clean row (0 = kept)

Shard NAMEs are `part-KK.00000` in list order unless `names` are given. Masks are all-keep unless
`filtered` / `dedup` ({NAME: array}) say otherwise. Writing again with more shards (or a changed
one) keeps every unchanged shard's files, hard-linked, the way a stage run does.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from llmpipe.core.shards import ShardedDir, digest, read_manifest, shards
from llmpipe.data.minhash import exact_hash
from llmpipe.data.table import DOC_SCHEMA, TableWriter

CLEAN_SCHEMA = pa.schema(list(DOC_SCHEMA) + [pa.field("chars", pa.int64()), pa.field("exact_hash", pa.string())])


def shard_names(n: int, start: int = 0) -> list[str]:
    return [f"part-{k:02d}.00000" for k in range(start, start + n)]


def _rows(source: str, docs: list[dict]) -> dict[str, list]:
    cols = {k: [d.get(k, source if k == "source" else None) for d in docs] for k in DOC_SCHEMA.names}
    cols["chars"] = [len(t) for t in cols["text"]]
    cols["exact_hash"] = [exact_hash(t) for t in cols["text"]]
    return cols


def write_source_shards(root: str | Path, source: str, docs_per_shard: list[list[dict]], *,
                        names: list[str] | None = None, filtered: dict[str, np.ndarray] | None = None,
                        dedup: dict[str, np.ndarray] | None = None,
                        row_group_size: int = 2048) -> tuple[Path, Path, Path]:
    """Write one source's clean shards, filter and dedup masks and manifests; return
    (clean_dir, dedup_dir, filtered_dir). `docs`: dicts with at least id and text."""
    root = Path(root)
    names = names or shard_names(len(docs_per_shard))
    assert len(names) == len(docs_per_shard) and len(set(names)) == len(names)
    filtered, dedup = filtered or {}, dedup or {}
    clean_dir, filtered_dir, dedup_dir = (root / st / source for st in ("clean", "filtered", "dedup"))
    cols = {name: _rows(source, docs) for name, docs in zip(names, docs_per_shard)}
    with ShardedDir(clean_dir, stage="clean", source=source) as d:
        for name, c in cols.items():
            fp = digest("clean", c, row_group_size)
            if d.reuse(name, fp) is None:
                with TableWriter(d.tmp / f"{name}.parquet", CLEAN_SCHEMA, row_group_size=row_group_size) as w:
                    for lo in range(0, len(c["id"]), row_group_size):
                        w.write({k: v[lo:lo + row_group_size] for k, v in c.items()})
                d.add(name, fp, [f"{name}.parquet"], shards=[{"name": name, "docs": len(c["id"])}],
                      stats={"docs": len(c["id"]), "chars": sum(c["chars"])})
        d.finish()
    for out, stage, masks, dtype in ((filtered_dir, "filter", filtered, np.int16),
                                     (dedup_dir, "dedup", dedup, np.uint8)):
        with ShardedDir(out, stage=stage, source=source) as d:
            for name, c in cols.items():
                m = np.asarray(masks.get(name, np.zeros(len(c["id"]))), dtype=dtype)
                assert m.shape == (len(c["id"]),), (name, m.shape)
                fp = digest(stage, m.tolist())
                if d.reuse(name, fp) is None:
                    np.save(d.tmp / f"{name}.npy", m, allow_pickle=False)
                    chars = np.asarray(c["chars"], np.int64)
                    d.add(name, fp, [f"{name}.npy"], shards=[{"name": name, "docs": len(m)}],
                          stats={"docs_in": len(m), "docs_kept": int((m == 0).sum()),
                                 "chars_in": int(chars.sum()), "chars_kept": int(chars[m == 0].sum())})
            d.finish()
    return clean_dir, dedup_dir, filtered_dir


def split_evenly(docs: list[dict], n_shards: int) -> list[list[dict]]:
    """Consecutive, nearly equal runs of `docs` (input order kept)."""
    bounds = np.linspace(0, len(docs), n_shards + 1).round().astype(int)
    return [docs[a:b] for a, b in zip(bounds, bounds[1:])]


def read_docs(clean_dir: str | Path) -> list[dict]:
    """Every row of a clean directory's shards, in manifest (shard) order."""
    out = []
    for sh in shards(read_manifest(clean_dir, "clean")):
        out += pq.read_table(Path(clean_dir) / f"{sh['name']}.parquet").to_pylist()
    return out


def texts(clean_dir: str | Path) -> dict[str, str]:
    return {r["id"]: r["text"] for r in read_docs(clean_dir)}


def tokenize(root: str | Path, source: str, spm_path: str | Path, out: str | Path | None = None, **kw) -> dict:
    """tokenize_source on root/clean/SRC through root/dedup/SRC into `out` (default root/tokens/SRC)."""
    from llmpipe.data.encode import tokenize_source
    root = Path(root)
    kw = {"val_fraction": 0.5, "seed": 0, "jobs": 1, **kw}
    return tokenize_source(root / "clean" / source, root / "dedup" / source, spm_path,
                           out if out is not None else root / "tokens" / source, source=source, **kw)
