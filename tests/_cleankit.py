"""Helpers for the clean/filter/dedup tests: hand-written prose, a one-document filter run, and
sharded stage directories built and read back (the bottom half)."""
from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from llmpipe.core.shards import FORMAT, MANIFEST, ShardedDir, digest, read_manifest
from llmpipe.core.shards import shards as manifest_shards
from llmpipe.data.clean import pipeline, rules, signals
from llmpipe.data.table import write_docs
from llmpipe.params import CleanParams, FilterParams

# Hand-written English prose: 3 paragraphs, ~200 words, no repeated 5-gram, every line ends a
# sentence. It passes every default rule of every kind.
BASE = (
    "The old lighthouse stood at the edge of the harbour for more than a century. Sailors "
    "trusted its beam on winter nights, when fog rolled in from the open sea and the rocks "
    "below were hidden from view. A keeper lived in the small cottage beside it with his "
    "family, and he climbed the spiral stairs every evening to light the lamp.\n\n"
    "When the town council decided to automate the light, many residents were unhappy. They "
    "argued that a machine could not notice a ship in trouble or row out to help a stranded "
    "crew. After several long meetings, the council agreed to keep the cottage open as a small "
    "museum, where visitors could learn about the history of the coast.\n\n"
    "Today the museum welcomes school groups throughout the year. Children examine brass "
    "instruments, read letters written by former keepers, and look through a telescope toward "
    "the distant islands. Volunteers explain how the lens focused a weak flame into a beam "
    "visible for twenty miles, and they describe storms that tested the courage of everyone "
    "who worked there."
)
assert len(BASE) > 1000


def synthetic_words(n: int, syllables: int = 3) -> list[str]:
    """n distinct lowercase pseudo-words (no digits), deterministic."""
    syl = ["ka", "lo", "mi", "ne", "ru", "ta", "so", "vi", "de", "pu", "ho", "ga"]
    words = ("".join(p) for p in itertools.product(syl, repeat=syllables))
    return list(itertools.islice(words, n))


def filter_params(kind_off: str | None = None, **overrides) -> FilterParams:
    """Default FilterParams; `kind_off` switches off that kind's own rules; overrides are
    `section__field=value` (section `global` for filter.global)."""
    fp = FilterParams()
    if kind_off:
        sec = getattr(fp, kind_off)
        for f in dataclasses.fields(sec):
            if f.name.startswith(("min_", "max_")):
                setattr(sec, f.name, None)
    for key, value in overrides.items():
        section, name = key.split("__")
        setattr(getattr(fp, "global_" if section == "global" else section), name, value)
    return fp


def only_repetition(rule: str, value: float | None = None) -> dict:
    """Overrides switching off every global repetition rule but `rule` (optionally set to value)."""
    fields = [f.name for f in dataclasses.fields(FilterParams().global_)
              if f.name.startswith(("max_dup_", "max_top_"))]
    out = {f"global__{f}": None for f in fields if f != rule}
    if value is not None:
        out[f"global__{rule}"] = value
    return out


def signal_table(texts: list[str], kind: str, clean: CleanParams | None = None) -> pa.Table:
    clean = clean or CleanParams()
    cols = pipeline.process_batch(texts, kind, clean, ngram=5, num_perm=8, seed=1)
    names = list(signals.signal_types(kind)) + ["chars_raw"]
    names += [f"removed_{c}" for c in pipeline.cleaner_names(kind)]
    return pa.table({k: cols[k] for k in names})


def reason(text: str, kind: str, fp: FilterParams | None = None,
           clean: CleanParams | None = None) -> str | None:
    """The drop reason of one document under `fp` (default params), or None if kept."""
    fp = fp or FilterParams()
    rs = rules.rules_for(fp, kind)
    code = int(rules.apply_rules(signal_table([text], kind, clean), rs)[0])
    return None if code == rules.KEPT else rs[code - 1].reason


# --------------------------------------------------------------------------- sharded directories
# The data stages work on sharded directories (llmpipe.core.shards): a manifest.json listing the
# shards in order, and per shard NAME its files (ingest: NAME.parquet; clean: NAME.parquet +
# NAME.minhash.npy; filter: NAME.npy reason codes; dedup: SRC/NAME.npy statuses). These helpers
# build inputs the way the upstream stage would and read outputs back as one table or array.


def doc_rows(texts: list[str], prefix: str = "d", source: str = "s", start: int = 0,
             url=None, meta=None) -> list[dict]:
    """Document rows `{prefix}{i}` (i from `start`) holding `texts`."""
    return [{"id": f"{prefix}{start + i}", "source": source, "text": t,
             "url": url(start + i) if callable(url) else url, "meta": meta}
            for i, t in enumerate(texts)]


def write_ingested(out_dir: str | Path, shard_rows: dict[str, list[dict]] | list[dict],
                   source: str = "s") -> Path:
    """A sharded Document directory as `ingest@SRC` writes it: `{shard name: rows}` in order (a
    plain list of rows is the one shard `in.00000`). One unit per shard."""
    if not isinstance(shard_rows, dict):
        shard_rows = {"in.00000": shard_rows}
    with ShardedDir(out_dir, stage="ingest", source=source) as d:
        for name, rows in shard_rows.items():
            docs = write_docs(d.tmp / f"{name}.parquet", rows)
            d.add(name, digest("test-ingest", name, rows), [f"{name}.parquet"],
                  shards=[{"name": name, "docs": docs}],
                  stats={"docs_in": docs, "docs_out": docs, "chars_out": sum(len(r["text"]) for r in rows)})
        d.finish(docs_out=sum(map(len, shard_rows.values())), shards=len(shard_rows))
    return Path(out_dir)


def fake_manifest(out_dir: str | Path, names: list[str], stage: str = "ingest", source: str = "s",
                  suffix: str = ".parquet") -> Path:
    """A manifest listing shards `names` (NAME + suffix) whose files are whatever lies there (a
    broken file, a folder): for the error paths of a stage reading them."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    units = [{"key": n, "fingerprint": digest(n), "files": {n + suffix: {"bytes": 0, "sha256": digest("f", n)}},
              "shards": [{"name": n, "docs": 1}], "stats": {}} for n in names]
    (out_dir / MANIFEST).write_text(json.dumps({"format": FORMAT, "stage": stage, "source": source,
                                                "units": units}), encoding="utf-8")
    return out_dir


def shard_names(out_dir: str | Path) -> list[str]:
    """The shard names of a sharded directory, in manifest order."""
    return [s["name"] for s in manifest_shards(read_manifest(out_dir, "the stage"))]


def read_shards(out_dir: str | Path, columns: list[str] | None = None, suffix: str = ".parquet") -> pa.Table:
    """Every shard's table (NAME + suffix) of a sharded directory, concatenated in manifest order."""
    out_dir = Path(out_dir)
    tables = [pq.read_table(out_dir / f"{n}{suffix}", columns=columns) for n in shard_names(out_dir)]
    if not tables:  # no shards: no rows (of the Document columns asked for)
        return pa.table({c: pa.array([], pa.string()) for c in columns or ["id", "source", "text", "url", "meta"]})
    return pa.concat_tables(tables)


def read_arrays(out_dir: str | Path, suffix: str = ".npy", names: list[str] | None = None) -> np.ndarray:
    """Every shard's .npy (NAME + suffix) of a directory, concatenated (shards of `names`, by
    default those of its own manifest)."""
    out_dir = Path(out_dir)
    names = shard_names(out_dir) if names is None else names
    arrays = [np.load(out_dir / f"{n}{suffix}", allow_pickle=False) for n in names]
    return np.concatenate(arrays) if arrays else np.zeros(0)


def read_signatures(clean_dir: str | Path) -> np.ndarray:
    """(rows, num_perm) uint32: the clean shards' MinHash signatures, in manifest order."""
    return read_arrays(clean_dir, ".minhash.npy")


def read_kept(clean_dir: str | Path, filtered_dir: str | Path, columns: list[str] | None = None) -> pa.Table:
    """The clean rows filter kept (its reason code 0), every shard, in order."""
    clean_dir, filtered_dir = Path(clean_dir), Path(filtered_dir)
    parts = []
    for name in shard_names(clean_dir):
        t = pq.read_table(clean_dir / f"{name}.parquet", columns=columns)
        parts.append(t.filter(pa.array(rules.kept_mask(filtered_dir, name))))
    return pa.concat_tables(parts)


def clean_dir(in_dir: str | Path, out_dir: str | Path, kind: str = "c4", params: CleanParams | None = None,
              source: str = "s", ngram: int = 5, num_perm: int = 16, seed: int = 1, jobs: int = 1):
    """`clean@SRC` on a sharded Document directory; (stats, reuse summary)."""
    return pipeline.clean_source(in_dir, out_dir, source=source, kind=kind, params=params or CleanParams(),
                                 ngram=ngram, num_perm=num_perm, seed=seed, jobs=jobs)


def clean_texts(root: str | Path, texts: list[str] | dict[str, list[str]], kind: str = "c4",
                params: CleanParams | None = None, source: str = "s", num_perm: int = 16,
                prefix: str = "d") -> Path:
    """ROOT/ingested (a shard per dict entry; ids `d0`, `d1`, ... across shards) cleaned into
    ROOT/clean; returns the clean directory."""
    root = Path(root)
    if not isinstance(texts, dict):
        texts = {"in.00000": texts}
    shard_rows, i = {}, 0
    for name, ts in texts.items():
        shard_rows[name] = doc_rows(ts, prefix, source, start=i)
        i += len(ts)
    write_ingested(root / "ingested", shard_rows, source)
    clean_dir(root / "ingested", root / "clean", kind, params, source, num_perm=num_perm)
    return root / "clean"


def clean_sources(root: str | Path, tables: dict[str, tuple[str, dict[str, list[str]]]], num_perm: int = 16) -> None:
    """ROOT/ingested/SRC and ROOT/clean/SRC through the real clean@SRC of each source's kind:
    {source: (kind, {shard: [text, ...]})}, ids `SRC-0`, `SRC-1`, ... across its shards."""
    root = Path(root)
    for src, (kind, shard_texts) in tables.items():
        rows, i = {}, 0
        for name, texts in shard_texts.items():
            rows[name] = doc_rows(texts, f"{src}-", src, start=i)
            i += len(texts)
        write_ingested(root / "ingested" / src, rows, src)
        clean_dir(root / "ingested" / src, root / "clean" / src, kind, source=src, num_perm=num_perm)


def filter_dir(clean: str | Path, out_dir: str | Path, kind: str = "c4", fp: FilterParams | None = None,
               source: str = "s", rejects: str | Path | None = None):
    """`filter@SRC` on a clean directory; (report, reuse summary)."""
    return rules.filter_source(clean, out_dir, rejects, source=source, kind=kind,
                               filter_params=fp or FilterParams(), jobs=1)


def docstrings(modules=("json", "re", "collections", "argparse", "textwrap", "typing", "dataclasses",
                        "pathlib", "subprocess", "functools", "itertools", "string", "random",
                        "logging", "decimal", "fractions")) -> list[str]:
    """Distinct docstrings (>= 200 chars) of some stdlib modules: real English prose with code."""
    import importlib
    import inspect
    out = []
    for m in modules:
        for _, obj in inspect.getmembers(importlib.import_module(m)):
            d = inspect.getdoc(obj)
            if d and len(d) >= 200:
                out.append(d)
    return list(dict.fromkeys(out))


def token_inputs(root: str | Path, source: str = "a", shards: int = 2, vocab_size: int = 400) -> tuple[Path, Path, Path]:
    """What `tokenize@SRC` reads, built by the real stages on stdlib docstrings (kind `text`, no
    filter rules, dedup on): ROOT/clean/SRC, ROOT/dedup/SRC (masks) and ROOT/tok/spm.model."""
    from llmpipe.data.dedup import dedup_sharded
    from llmpipe.data.tokenizer import build_tokenizer
    from llmpipe.params import DedupParams
    root = Path(root)
    docs = docstrings()
    per = -(-len(docs) // shards)
    texts = {f"docs-{k}.00000": docs[k * per:(k + 1) * per] for k in range(shards)}
    shard_rows, i = {}, 0
    for name, ts in texts.items():
        shard_rows[name] = doc_rows(ts, f"{source}-", source, start=i)
        i += len(ts)
    write_ingested(root / "ingested" / source, shard_rows, source)
    clean_dir(root / "ingested" / source, root / "clean" / source, "text", source=source, num_perm=16)
    filter_dir(root / "clean" / source, root / "filtered" / source, "text", FilterParams(enabled=False), source)
    dedup_sharded(root / "clean", root / "filtered", root / "dedup", [source], DedupParams(num_perm=16))
    build_tokenizer(root / "clean", [source], root / "tok", vocab_size=vocab_size,
                    sample_chars=150_000, sample_weights={}, seed=0, character_coverage=0.9995)
    return root / "clean" / source, root / "dedup" / source, root / "tok" / "spm.model"


def sharded_sources(root: str | Path, tables: dict[str, dict[str, list[tuple[str, str]]]], kind: str = "text",
                    num_perm: int = 16, fp: FilterParams | None = None, ngram: int = 5, seed: int = 1) -> Path:
    """ROOT/{ingested,clean,filtered}/SRC for `{source: {shard name: [(id, text), ...]}}` through
    the real clean@SRC and filter@SRC (default kind `text`: every byte kept; no filter rules);
    returns ROOT."""
    root = Path(root)
    fp = fp or FilterParams(enabled=False)
    for src, shard_rows in tables.items():
        rows = {name: [{"id": i, "source": src, "text": t, "url": None, "meta": '{"k": 1}'} for i, t in docs]
                for name, docs in shard_rows.items()}
        write_ingested(root / "ingested" / src, rows, src)
        clean_dir(root / "ingested" / src, root / "clean" / src, kind, source=src, ngram=ngram, num_perm=num_perm,
                  seed=seed)
        filter_dir(root / "clean" / src, root / "filtered" / src, kind, fp, src)
    return root


def dedup_status(dedup_root: str | Path, clean_root: str | Path, source: str) -> np.ndarray:
    """(clean rows,) uint8: dedup's status of every clean row of `source` (0 kept, 1 exact, 2 near,
    3 dropped by filter), shards in the clean manifest's order."""
    return read_arrays(Path(dedup_root) / source, ".npy", shard_names(Path(clean_root) / source))


def dedup_kept_ids(root: str | Path, source: str, dedup: str = "dedup") -> list[str]:
    """The ids of `source` that dedup kept (ROOT/clean, ROOT/DEDUP)."""
    root = Path(root)
    ids = read_shards(root / "clean" / source, ["id"]).column("id").to_pylist()
    status = dedup_status(root / dedup, root / "clean", source)
    assert len(status) == len(ids)
    return [i for i, s in zip(ids, status.tolist()) if s == 0]
