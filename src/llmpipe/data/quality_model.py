"""A learned quality score: logistic regression over hashed word n-grams, trained in the pipeline.

The anchors: GPT-3 (Brown et al. 2020, appendix A) trained a logistic-regression classifier on
hashed features to tell its curated reference corpora (WebText, Wikipedia, books) from raw Common
Crawl and kept pages by its score; DCLM (Li et al. 2024) does the same with a fastText bag of word
uni- and bigrams; FineWeb-Edu (Penedo et al. 2024) regresses an educational-value label. Here, as
in GPT-3 and DCLM, positives are reference text (by default the cleaned Wikipedia and Gutenberg
shards) and negatives raw web documents (the ingested C4 and FineWeb shards); nothing is
downloaded, the model is trained by `quality_model` and applied by `quality@SRC`.

Features: the text is normalised as for dedup (`minhash.normalize`: NFKC, lowercase, no
punctuation), its word 1..`ngram`-grams are hashed (the prefix-sum polynomial hashes of
`minhash.shingle_hashes` for words, combined in numpy for longer n-grams) into 2^`feature_bits`
buckets; a document's vector is the mean of its n-grams' one-hot vectors (fastText's average of
n-gram embeddings), so long and short documents score on one scale. Only the first `max_chars` characters are read.
Model: p = sigmoid(w . x + b), trained by full-batch Adam on the mean log loss + `l2`/2 |w|^2,
`epochs` steps. Every step is a fixed sequence of numpy reductions, so the same sample gives the
same bytes of `weights.npy` (float32) and `model.json`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmpipe.core.atomic import atomic_path
from llmpipe.data.minhash import mix64, normalize, shingle_hashes

_SALT = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class Features:
    """Sparse batch: entry k adds `val[k]` at bucket `col[k]` of document `row[k]`."""

    row: np.ndarray     # (nnz,) int64 document of each entry (grouped by n-gram order, not sorted)
    col: np.ndarray     # (nnz,) int64 bucket
    val: np.ndarray     # (nnz,) float64
    n: int              # documents


def features(texts: list[str], ngram: int, feature_bits: int, max_chars: int) -> Features:
    """Hashed word 1..ngram-gram bags of `texts`, averaged (see the module doc): one entry per
    n-gram occurrence, value 1 / (the document's n-gram count), so w . x is the mean weight of its
    n-grams, as fastText averages its n-gram vectors. No per-n-gram Python, no sort."""
    norms = [normalize(t[:max_chars]) for t in texts]
    h, d = shingle_hashes(norms, 1)          # (T,) 32-bit hash of every word, (T,) its document
    rows, cols = [], []
    g = h                                    # g[i]: hash of the k-gram starting at word i
    shift = np.uint64(64 - feature_bits)
    with np.errstate(over="ignore"):
        for k in range(1, ngram + 1):
            if k > 1:
                g = mix64(g[:-1] * _SALT + h[k - 1:])
            start = d[: len(g)]
            inside = start == d[k - 1:]      # a k-gram lies in one document
            rows.append(start[inside])
            cols.append((mix64(g[inside] + np.uint64(k) * _SALT) >> shift).astype(np.int64))
    row = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    col = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    count = np.bincount(row, minlength=len(texts))
    val = 1.0 / np.maximum(count[row], 1)
    return Features(row.astype(np.int64), col, val, len(texts))


def logits(x: Features, w: np.ndarray, b: float) -> np.ndarray:
    """(n,) w . x + b."""
    return np.bincount(x.row, weights=w[x.col] * x.val, minlength=x.n) + b


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))   # no overflow warning for large |z|


def train(x: Features, y: np.ndarray, feature_bits: int, *, epochs: int, lr: float, l2: float
          ) -> tuple[np.ndarray, float]:
    """Full-batch Adam on mean log loss + l2/2 |w|^2; returns (w (2^bits,) float64, b)."""
    dim = 1 << feature_bits
    w, b = np.zeros(dim), 0.0
    m, v, mb, vb = np.zeros(dim), np.zeros(dim), 0.0, 0.0
    b1, b2, eps = 0.9, 0.999, 1e-8
    y = y.astype(np.float64)
    for t in range(1, epochs + 1):
        err = (sigmoid(logits(x, w, b)) - y) / x.n                        # (n,)
        gw = np.bincount(x.col, weights=err[x.row] * x.val, minlength=dim) + l2 * w
        gb = float(err.sum())
        m = b1 * m + (1 - b1) * gw
        v = b2 * v + (1 - b2) * gw * gw
        mb = b1 * mb + (1 - b1) * gb
        vb = b2 * vb + (1 - b2) * gb * gb
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        w -= lr * (m / c1) / (np.sqrt(v / c2) + eps)
        b -= lr * (mb / c1) / (np.sqrt(vb / c2) + eps)
    return w, b


@dataclass(frozen=True)
class Model:
    w: np.ndarray         # (2^feature_bits,) float32
    b: float
    ngram: int
    feature_bits: int
    max_chars: int

    def score(self, texts: list[str]) -> np.ndarray:
        """(n,) float32 probability that each text is reference-like."""
        x = features(texts, self.ngram, self.feature_bits, self.max_chars)
        return sigmoid(logits(x, self.w.astype(np.float64), self.b)).astype(np.float32)


WEIGHTS, META = "weights.npy", "model.json"


def save(model: Model, out_dir: str | Path, extra: dict) -> None:
    """OUT/weights.npy (float32) + OUT/model.json (settings, bias, `extra`), as one folder."""
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        np.save(tmp / WEIGHTS, model.w.astype("<f4"), allow_pickle=False)
        meta = {"format": "llmpipe.quality/1", "bias": float(model.b), "ngram": model.ngram,
                "feature_bits": model.feature_bits, "max_chars": model.max_chars, **extra}
        (tmp / META).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def load(model_dir: str | Path) -> Model:
    from llmpipe.core.errors import UserError
    d = Path(model_dir)
    if not (d / META).exists() or not (d / WEIGHTS).exists():
        raise UserError(f"{d}: no quality model ({META}, {WEIGHTS}); run `dvc repro quality_model`")
    meta = json.loads((d / META).read_text(encoding="utf-8"))
    w = np.load(d / WEIGHTS, allow_pickle=False)
    if w.shape != (1 << meta["feature_bits"],):
        raise UserError(f"{d / WEIGHTS}: {w.shape[0]} weights, model.json says 2^{meta['feature_bits']}; "
                        "rerun `dvc repro quality_model`")
    return Model(w, float(meta["bias"]), int(meta["ngram"]), int(meta["feature_bits"]), int(meta["max_chars"]))


def trained(model_dir: str | Path) -> bool:
    """Whether the model folder holds a trained model (`quality_model` had both classes)."""
    meta = json.loads((Path(model_dir) / META).read_text(encoding="utf-8"))
    return bool(meta.get("report", {}).get("trained", True))
