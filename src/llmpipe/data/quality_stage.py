"""The `quality_model` stage (sample passages, train, save, report) and `quality@SRC` (score every
clean shard into `data/quality/SRC/NAME.npy`, one float32 per clean row). The model and its
features: `quality_model.py`.

Sample: passages of at most `quality.chunk_chars` characters (cut at whitespace) of the first
`quality.sample_shards` shards of every source of a positive kind (clean text) or a negative kind
(ingested, raw text); per class the `max_docs` passages with the lowest seeded hash of their key
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
from llmpipe.data.table import read_batches

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


def _sample(dirs: list[tuple[str, Path]], params, stage: str) -> list[tuple[float, str, str]]:
    """The class's passages: [(hash, key, text)] of the `max_docs` lowest hashes, sorted."""
    from llmpipe.core.shards import read_manifest, shards
    heap: list[tuple[float, str, str]] = []   # max-heap by -hash
    for source, d in dirs:
        for sh in shards(read_manifest(d, f"{stage}@{source}"))[: params.sample_shards]:
            row = 0
            for batch in read_batches(d / f"{sh['name']}.parquet", ["text"]):
                for text in batch.column("text").to_pylist():
                    for k, piece in enumerate(passages(text or "", params.chunk_chars)):
                        key = f"{source}/{sh['name']}/{row}/{k}"
                        h = unit_hash(params.seed, key)
                        if len(heap) < params.max_docs:
                            heapq.heappush(heap, (-h, key, piece))
                        elif -heap[0][0] > h:
                            heapq.heapreplace(heap, (-h, key, piece))
                    row += 1
    return sorted((-h, key, t) for h, key, t in heap)


def train_model(clean_root: Path, ingested_root: Path, sources: dict[str, str], params, out_dir: Path) -> dict:
    """Train on `sources` ({name: kind}) and write the model folder; returns the report. Without a
    source of a positive and one of a negative kind (or without passages) the model is written
    untrained (every score 0.5, `trained: false`), so a pipeline of other kinds still runs; a
    `min_quality_score` rule then refuses it (`filter@SRC`)."""
    pos = [(s, Path(clean_root) / s) for s, k in sources.items() if k in params.positive_kinds]
    neg = [(s, Path(ingested_root) / s) for s, k in sources.items() if k in params.negative_kinds]
    sample = {1: _sample(pos, params, "clean"), 0: _sample(neg, params, "ingest")}
    n = min(len(sample[0]), len(sample[1]))   # balanced classes
    settings = {k: getattr(params, k) for k in ("ngram", "feature_bits", "max_chars", "epochs", "lr", "l2",
                                                 "seed", "chunk_chars", "max_docs", "sample_shards")}
    report = {"trained": n > 0, "why": None, "passages": {"positive": n, "negative": n, "train": 0, "held_out": 0},
              "train_accuracy": None, "held_out_accuracy": None, "held_out_auc": None,
              "positive_sources": [s for s, _ in pos], "negative_sources": [s for s, _ in neg], "settings": settings}
    if not n:
        report["why"] = (f"no passages of quality.positive_kinds {params.positive_kinds} or of "
                         f"quality.negative_kinds {params.negative_kinds}; source kinds: {sorted(set(sources.values()))}")
        qm.save(qm.Model(np.zeros(1 << params.feature_bits, np.float32), 0.0, params.ngram, params.feature_bits,
                         params.max_chars), out_dir, {"report": report})
        return report
    rows = [(key, t, y) for y in (1, 0) for _, key, t in sample[y][:n]]
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
