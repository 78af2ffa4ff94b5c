"""The `quality_sample` stage (the training passages), `quality_model` (train on them, save,
report) and `quality@SRC` (score every clean shard into `data/quality/SRC/NAME.npy`, one float32
per clean row). The model and its features: `quality_model.py`.

Sample: passages of at most `quality.chunk_chars` characters (cut at whitespace) of the first
`quality.sample_shards` shards of every positive source (clean text; `quality.positives`, or the
sources of `positive_kinds`) and negative source (ingested, raw text; `quality.negatives` or
`negative_kinds`); per class the `max_docs` passages with the lowest seeded hash of their key
(source, shard, row, passage), held in a bounded heap, so the sample is deterministic and fixed
when files are added. A seeded hash of the key sends `holdout_fraction` of them to the held-out
set whose accuracy the report gives.
"""
from __future__ import annotations

import heapq
import re
from pathlib import Path

import numpy as np

from llmpipe.core.seeds import unit_hash
from llmpipe.data import quality_model as qm
from llmpipe.data.table import ZSTD_LEVEL, read_batches

_SPACE = re.compile(r"\s")


def passages(text: str, chunk_chars: int) -> list[str]:
    """`text` cut into pieces of at most `chunk_chars` characters, each cut at the last whitespace
    before the limit when there is one (no word is split), empty pieces dropped."""
    out, lo = [], 0
    while lo < len(text):
        hi = min(len(text), lo + chunk_chars)
        if hi < len(text):
            cut = max(text.rfind(" ", lo, hi), text.rfind("\n", lo, hi))
            hi = cut + 1 if cut > lo else hi
        piece = text[lo:hi].strip()
        if piece:
            out.append(piece)
        lo = hi
    return out


def _sample(dirs: list[tuple[str, Path]], pinned: dict[str, list[list[str]]], params) -> list[tuple[float, str, str]]:
    """The class's passages: [(hash, key, text)] of the `max_docs` lowest hashes, sorted, from the
    shards `_pinned` named (the ones the stage's fingerprint covers)."""
    heap: list[tuple[float, str, str]] = []   # max-heap by -hash
    for source, d in dirs:
        for name, _sha in pinned[source]:
            row = 0
            for batch in read_batches(d / f"{name}.parquet", ["text"]):
                for text in batch.column("text").to_pylist():
                    for k, piece in enumerate(passages(text or "", params.chunk_chars)):
                        key = f"{source}/{name}/{row}/{k}"
                        h = unit_hash(params.seed, key)
                        if len(heap) < params.max_docs:
                            heapq.heappush(heap, (-h, key, piece))
                        elif -heap[0][0] > h:
                            heapq.heapreplace(heap, (-h, key, piece))
                    row += 1
    return sorted((-h, key, t) for h, key, t in heap)


SAMPLE, SAMPLE_META = "passages.parquet", "sample.json"


def sample_passages(clean_root: Path, ingested_root: Path, sources: dict[str, str], params, out_dir: Path) -> dict:
    """The `quality_sample` stage: the training passages of `sources` ({name: kind}) into the
    folder `out_dir` (passages.parquet: key, text, label 1 reference / 0 web, each class in hash
    order; sample.json: the sources and counts; manifest.json). The model trains on this folder
    alone, so a change that leaves it byte-identical (a source that is neither a positive nor a
    negative added, a file after the first `sample_shards`) keeps `quality_model` cached. Such a
    change reruns this stage (its deps are the whole clean and ingested folders), which then reads
    nothing: the previous sample is linked back when its pinned shards (names and sha256) and
    params are unchanged, as the tokenizer does."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from llmpipe.core import code
    from llmpipe.core.shards import ShardedDir, digest
    pos_src, neg_src = params.reference_sources(sources)
    absent = [s for s in (params.positives or []) + (params.negatives or []) if s not in sources]
    if absent:
        from llmpipe.core.log import get_logger
        get_logger("quality_sample").warning("quality.positives/negatives name %s, not in sources: skipped",
                                             ", ".join(absent))
    pos = [(s, Path(clean_root) / s) for s in pos_src]
    neg = [(s, Path(ingested_root) / s) for s in neg_src]
    picked = {"clean": _pinned(pos, params, "clean"), "ingest": _pinned(neg, params, "ingest")}
    picked_by = ("quality.positives/negatives" if params.positives is not None or params.negatives is not None
                 else "quality.positive_kinds/negative_kinds")
    fp = digest("quality_sample", code.fingerprint("stages.quality_sample"), pos_src, neg_src, absent, picked_by,
                picked, {k: getattr(params, k) for k in ("sample_shards", "max_docs", "chunk_chars", "seed")})
    with ShardedDir(out_dir, stage="quality_sample") as d:
        if d.reuse("sample", fp) is not None:
            info = json.loads((d.tmp / SAMPLE_META).read_text(encoding="utf-8"))
            d.finish()
            info["reused"] = d.previous.where
            return info
        sample = {1: _sample(pos, picked["clean"], params), 0: _sample(neg, picked["ingest"], params)}
        rows = [(key, t, y) for y in (1, 0) for _, key, t in sample[y]]
        info = {"format": "llmpipe.quality_sample/1", "positive_sources": pos_src, "negative_sources": neg_src,
                "positive": len(sample[1]), "negative": len(sample[0]), "picked_by": picked_by,
                "named_but_absent": absent}
        table = pa.table({"key": pa.array([r[0] for r in rows], pa.string()),
                          "text": pa.array([r[1] for r in rows], pa.string()),
                          "label": pa.array([r[2] for r in rows], pa.int8())})
        pq.write_table(table, d.tmp / SAMPLE, compression="zstd", compression_level=ZSTD_LEVEL)
        (d.tmp / SAMPLE_META).write_text(json.dumps(info, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        d.add("sample", fp, [SAMPLE, SAMPLE_META], shards=[])
        d.finish()
    return info


def _pinned(dirs: list[tuple[str, Path]], params, stage: str) -> dict[str, list[list[str]]]:
    """{source: [[shard name, sha256 of its parquet], ...]} of the shards `_sample` reads."""
    from llmpipe.core.shards import read_manifest, shards
    return {source: [[sh["name"], sh["files"][f"{sh['name']}.parquet"]["sha256"]]
                     for sh in shards(read_manifest(d, f"{stage}@{source}"))[: params.sample_shards]]
            for source, d in dirs}


def train_model(clean_root: Path, ingested_root: Path, sources: dict[str, str], params, out_dir: Path) -> dict:
    """`sample_passages` then `train_on_sample` (a sample folder beside `out_dir`); the report."""
    sample_dir = Path(out_dir).with_name(Path(out_dir).name + ".sample")
    sample_passages(clean_root, ingested_root, sources, params, sample_dir)
    return train_on_sample(sample_dir, params, out_dir)


def train_on_sample(sample_dir: Path, params, out_dir: Path) -> dict:
    """The `quality_model` stage: train on the sample folder and write the model folder; returns
    the report. Without passages of both classes the model is written untrained (every score
    0.5, `trained: false`), so a pipeline of other kinds still runs; a `min_quality_score` rule
    then refuses it (`filter@SRC`)."""
    import json

    import pyarrow.parquet as pq
    from llmpipe.core.errors import UserError
    sample_dir = Path(sample_dir)
    if not (sample_dir / SAMPLE).exists() or not (sample_dir / SAMPLE_META).exists():
        raise UserError(f"{sample_dir}: no quality sample ({SAMPLE}, {SAMPLE_META}); run `dvc repro quality_sample`")
    info = json.loads((sample_dir / SAMPLE_META).read_text(encoding="utf-8"))
    t = pq.read_table(sample_dir / SAMPLE)
    keys, texts, labels = (t.column(c).to_pylist() for c in ("key", "text", "label"))
    sample = {y: [(k, x) for k, x, lab in zip(keys, texts, labels) if lab == y] for y in (1, 0)}
    n = min(len(sample[0]), len(sample[1]))   # balanced classes
    settings = {k: getattr(params, k) for k in ("ngram", "feature_bits", "max_chars", "epochs", "lr", "l2",
                                                 "seed", "chunk_chars", "max_docs", "sample_shards")}
    report = {"trained": n > 0, "why": None, "passages": {"positive": n, "negative": n, "train": 0, "held_out": 0},
              "train_accuracy": None, "held_out_accuracy": None, "held_out_auc": None,
              "positive_sources": info["positive_sources"], "negative_sources": info["negative_sources"],
              "picked_by": info["picked_by"], "settings": settings}
    if not n:
        report["why"] = (f"no passages of both classes: positives from {info['positive_sources']}, negatives from "
                         f"{info['negative_sources']} ({info['picked_by']})")
        qm.save(qm.Model(np.zeros(1 << params.feature_bits, np.float32), 0.0, params.ngram, params.feature_bits,
                         params.max_chars), out_dir, {"report": report})
        return report
    rows = [(key, t, y) for y in (1, 0) for key, t in sample[y][:n]]
    held = np.array([unit_hash(params.seed + 1, key) < params.holdout_fraction for key, _, _ in rows])
    y = np.array([r[2] for r in rows], np.int64)
    x_all = qm.features([t for _, t, _ in rows], params.ngram, params.feature_bits, params.max_chars)
    tr = np.flatnonzero(~held)
    w, b = qm.train(_subset(x_all, tr), y[tr], params.feature_bits, epochs=params.epochs, lr=params.lr, l2=params.l2)
    model = qm.Model(w.astype(np.float32), float(np.float32(b)), params.ngram, params.feature_bits, params.max_chars)
    p = qm.sigmoid(qm.logits(x_all, model.w.astype(np.float64), model.b))
    correct = (p >= 0.5) == (y == 1)
    report["passages"].update(train=int(len(tr)), held_out=int(held.sum()))
    report["train_accuracy"] = round(float(correct[~held].mean()), 4) if (~held).any() else None
    if held.any():
        report["held_out_accuracy"] = round(float(correct[held].mean()), 4)
        report["held_out_auc"] = _auc(p[held], y[held])
    qm.save(model, out_dir, {"report": report})
    return report


def _subset(x: qm.Features, docs: np.ndarray) -> qm.Features:
    pos = np.full(x.n, -1, np.int64)
    pos[docs] = np.arange(len(docs))
    keep = pos[x.row] >= 0
    return qm.Features(pos[x.row[keep]], x.col[keep], x.val[keep], len(docs))


def _auc(p: np.ndarray, y: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney), ties counted half."""
    pos, neg = p[y == 1], p[y == 0]
    if not len(pos) or not len(neg):
        return None
    allp = np.concatenate((pos, neg))
    order = np.argsort(allp, kind="stable")
    ranks = np.empty(len(allp))
    sorted_p = allp[order]
    # average ranks of ties
    start = np.flatnonzero(np.concatenate(([True], sorted_p[1:] != sorted_p[:-1])))
    end = np.append(start[1:], len(allp))
    avg = (start + end + 1) / 2.0
    ranks[order] = np.repeat(avg, end - start)
    return round(float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))), 4)


# --------------------------------------------------------------------------- quality@SRC

QUANTILES = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
BINS = 100    # per-shard histogram: quantiles to 0.01 without holding every score


def score_table(src: Path, dst: Path, model_dir: Path, batch_docs: int, eval_items: np.ndarray | None = None,
                eval_ngram: int = 13) -> dict:
    """Scores of every row of clean table `src` into `dst` (.npy float32) and the word n-grams
    each row shares with the eval items into NAME.eval.npy (uint32, `contamination.py`); counts
    and a histogram."""
    from llmpipe.data import contamination
    model = qm.load(model_dir)
    items = np.zeros(0, np.uint64) if eval_items is None else eval_items
    parts, shared = [], []
    for b in read_batches(src, ["text"], batch_size=batch_docs):
        texts = b.column("text").to_pylist()
        parts.append(model.score(texts))
        shared.append(contamination.shared_ngrams(texts, items, eval_ngram))
    s = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    e = np.concatenate(shared) if shared else np.zeros(0, np.uint32)
    np.save(dst, s.astype("<f4"), allow_pickle=False)
    np.save(Path(dst).with_suffix(".eval.npy"), e.astype("<u4"), allow_pickle=False)
    return {"docs": int(len(s)), "histogram": np.histogram(s, bins=BINS, range=(0.0, 1.0))[0].tolist(),
            "docs_sharing_eval_ngrams": int((e > 0).sum())}


def score_source(clean_dir: Path, model_dir: Path, out_dir: Path, *, source: str, params,
                 eval_items: np.ndarray | None = None, executor=None) -> tuple[dict, str]:
    """quality@SRC: a score file and an eval-overlap file per clean shard (unchanged shard, model
    and eval items: reused). `eval_items`: `contamination.ngram_set` of the eval items. Returns
    (report: docs, mean, quantiles, 10-bin histogram over [0, 1], documents sharing an eval
    n-gram; reuse summary). Shards are scored on `executor` (`core.executor`; default:
    `quality.jobs` local processes)."""
    from llmpipe.data import contamination
    items = np.zeros(0, np.uint64) if eval_items is None else eval_items
    from llmpipe.core import code
    from llmpipe.core.atomic import sha256_file
    from llmpipe.core.shards import ShardedDir, digest, map_units, read_manifest, shards
    clean_dir, model_dir = Path(clean_dir), Path(model_dir)
    manifest = read_manifest(clean_dir, f"clean@{source}")
    qm.load(model_dir)  # a missing model is one clear error here, not one per worker
    base = digest("quality", code.fingerprint("stages.quality"), params.batch_docs,
                  sha256_file(model_dir / qm.WEIGHTS), sha256_file(model_dir / qm.META),
                  params.eval_ngram, contamination.fingerprint(items))
    with ShardedDir(out_dir, stage="quality", source=source) as d:
        plan = [(sh["name"], digest(base, sh["files"][f"{sh['name']}.parquet"]["sha256"])) for sh in shards(manifest)]
        todo = [(clean_dir / f"{name}.parquet", d.tmp / f"{name}.npy", model_dir, params.batch_docs, items,
                 params.eval_ngram) for name, fp in plan if not d.has(name, fp)]
        built = iter(map_units(score_table, todo, params.jobs, desc=f"quality {source}", executor=executor))
        for name, fp in plan:
            if d.has(name, fp):
                d.reuse(name, fp)
                continue
            rep = next(built)
            d.add(name, fp, [f"{name}.npy", f"{name}.eval.npy"], shards=[{"name": name, "docs": rep["docs"]}],
                  stats=rep)
        d.finish(trained=bool(qm.trained(model_dir)))
        units = list(d.units)
    docs = sum(u["stats"]["docs"] for u in units)
    hist = np.sum([u["stats"]["histogram"] for u in units], axis=0) if units else np.zeros(BINS, np.int64)
    centre = (np.arange(BINS) + 0.5) / BINS
    cum = np.cumsum(hist)
    report = {"docs": docs, "mean": round(float((hist * centre).sum() / docs), 3) if docs else None,
              "quantiles": {f"p{round(q * 100)}": round(float(centre[np.searchsorted(cum, q * docs)]), 3)
                            for q in QUANTILES} if docs else {},
              "histogram_0_to_1": hist.reshape(10, -1).sum(axis=1).tolist(),
              "eval_items_ngrams": int(len(items)),
              "docs_sharing_eval_ngrams": sum(u["stats"].get("docs_sharing_eval_ngrams", 0) for u in units)}
    return report, d.summary()
