"""MinHash + dedup benchmarks on real documents; writes bench/results/dedup.json.

    PYTHONPATH=src .venv/bin/python bench/bench_dedup.py --corpus ../shared/corpus

1. quality: distinct real documents (C4 + Wikipedia samples) each get one copy with random word
   substitutions giving a true Jaccard (exact, on the same 5-gram shingle sets) just below 0.9,
   0.8, 0.7 or 0.5; the real `dedup()` runs on originals + copies; per level, the share of
   copies removed as duplicates of their original. Unplanted merges are listed with true Jaccard.
2. signatures: docs/s on one core, llmpipe `signatures()` from raw text vs datasketch 2.0
   `MinHash(num_perm=128).update` per shingle (shingling timed apart) and `update_batch`.
3. LSH: index build + query rate of llmpipe `find_duplicates` vs datasketch `MinHashLSH`
   (threshold 0.8) on synthetic signatures; peak RSS per 1M documents of a whole `dedup()` run
   (fresh subprocesses at two sizes, slope), and tracemalloc of datasketch's index.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from llmpipe.core.atomic import write_json
from llmpipe.data.dedup import Index, dedup, find_duplicates, load_index, resolve_bands
from llmpipe.data.minhash import exact_hash, normalize, signatures
from llmpipe.params import DedupParams

LEVELS = (0.9, 0.8, 0.7, 0.5)
NGRAM, K = 5, 128


def read_corpus(root: Path) -> list[str]:
    texts = []
    for rel in ("c4/c4-en-train-00000-first1000.jsonl.gz", "wikipedia/wikipedia-20231101-en-1000.jsonl.gz"):
        with gzip.open(root / rel, "rt", encoding="utf-8") as f:
            texts += [json.loads(line)["text"] for line in f]
    return texts


def shingle_set(words: list[str]) -> set[str]:
    return {" ".join(words[i:i + NGRAM]) for i in range(max(1, len(words) - NGRAM + 1))}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b)


def planted_copy(words: list[str], target: float, vocab: list[str], rng) -> tuple[list[str], float]:
    """Substitute words at random positions (fixed order) until true Jaccard <= target (binary
    search on the number of substitutions; Jaccard only falls as substitutions are added)."""
    order = rng.permutation(len(words))
    repl = [vocab[i] for i in rng.integers(0, len(vocab), size=len(words))]
    base = shingle_set(words)

    def edited(k):
        w = list(words)
        for j, p in enumerate(order[:k]):
            w[p] = repl[j]
        return w

    lo, hi = 0, len(words)            # J(lo) > target >= J(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if jaccard(base, shingle_set(edited(mid))) > target:
            lo = mid
        else:
            hi = mid
    w = edited(hi)
    return w, jaccard(base, shingle_set(w))


def bench_quality(texts: list[str], per_level: int, seed: int, workdir: Path,
                  min_words: int = 200) -> dict:
    rng = np.random.default_rng(seed)
    seen, originals = set(), []
    for t in texts:                   # distinct documents of >= min_words words
        words = normalize(t).split()
        if len(words) >= min_words and exact_hash(t) not in seen:
            seen.add(exact_hash(t))
            originals.append(words)
    vocab = sorted({w for ws in originals for w in ws})
    pick = rng.permutation(len(originals))
    planted = []                      # (original index, copy words, level, true J)
    for n, i in enumerate(pick[: per_level * len(LEVELS)]):
        level = LEVELS[n % len(LEVELS)]
        w, j = planted_copy(originals[i], level, vocab, rng)
        planted.append((int(i), w, level, j))
    import pyarrow as pa
    from llmpipe.data.table import DOC_SCHEMA, TableWriter
    schema = pa.schema(list(DOC_SCHEMA) + [pa.field("exact_hash", pa.string()),
                                           pa.field("minhash", pa.list_(pa.uint32(), K))])
    tables = {"orig": [(f"o{i:05d}", " ".join(w)) for i, w in enumerate(originals)],
              "copy": [(f"c{n:05d}", " ".join(p[1])) for n, p in enumerate(planted)]}
    ins, outs = {}, {}
    for src, rows in tables.items():
        ins[src], outs[src] = workdir / f"in-{src}.parquet", workdir / f"out-{src}.parquet"
        tx = [t for _, t in rows]
        sig = signatures(tx, NGRAM, K, 1)
        with TableWriter(ins[src], schema) as w:
            w.write({"id": [r[0] for r in rows], "source": [src] * len(rows), "text": tx,
                     "url": [None] * len(rows), "meta": [None] * len(rows),
                     "exact_hash": [exact_hash(t) for t in tx], "minhash": list(sig)})
    params = DedupParams(num_perm=K, threshold=0.8, priority=["orig", "copy"])
    t0 = time.perf_counter()
    report = dedup(ins, outs, params)
    seconds = time.perf_counter() - t0
    index = load_index(ins, K, params.priority)
    dec = find_duplicates(index, params.threshold, report["bands"], report["rows"])
    n_orig = len(originals)
    rows = []
    for level in LEVELS:
        js, hit = [], []
        for n, (i, _, lv, j) in enumerate(planted):
            if lv == level:
                js.append(j)
                hit.append(bool(dec.cluster[n_orig + n] == i and dec.status[n_orig + n] != 0))
        rows.append({"target_jaccard": level, "pairs": len(js), "true_jaccard_min": round(min(js), 4),
                     "true_jaccard_mean": round(float(np.mean(js)), 4),
                     "true_jaccard_max": round(max(js), 4), "detected": int(sum(hit)),
                     "detection_rate": round(sum(hit) / len(js), 4)})
    bins = []
    for lo_j, hi_j in ((0.85, 1.01), (0.8, 0.85), (0.75, 0.8), (0.7, 0.75), (0.6, 0.7), (0.5, 0.6), (0.0, 0.5)):
        sel = [n for n, p in enumerate(planted) if lo_j <= p[3] < hi_j]
        hit = sum(1 for n in sel if dec.cluster[n_orig + n] == planted[n][0] and dec.status[n_orig + n] != 0)
        bins.append({"true_jaccard_from": lo_j, "true_jaccard_below": min(hi_j, 1.0), "pairs": len(sel),
                     "detected": hit, "detection_rate": round(hit / max(1, len(sel)), 4)})
    below = [(n, p) for n, p in enumerate(planted) if p[3] < 0.5]
    merged_below = sum(1 for n, p in below if dec.status[n_orig + n] != 0)
    stray = []                        # merges that were not planted: with their true Jaccard
    for x in np.flatnonzero(dec.status != 0):
        rep = int(dec.cluster[x])
        planted_pair = x >= n_orig and planted[x - n_orig][0] == rep
        if not planted_pair:
            wx = originals[x] if x < n_orig else planted[x - n_orig][1]
            wr = originals[rep] if rep < n_orig else planted[rep - n_orig][1]
            stray.append({"doc": int(x), "kept": rep, "true_jaccard": round(jaccard(shingle_set(wx), shingle_set(wr)), 4)})
    return {
        "originals": n_orig, "min_words": min_words, "copies": len(planted), "threshold": params.threshold,
        "bands": report["bands"], "rows": report["rows"], "levels": rows,
        "by_true_jaccard": bins,
        "recall_at_jaccard_ge_0.85": bins[0]["detection_rate"],
        "pairs_below_0.5": len(below), "pairs_below_0.5_merged": merged_below,
        "precision_below_0.5": round(1 - merged_below / max(1, len(below)), 4),
        "unplanted_merges": stray[:20], "unplanted_merge_count": len(stray),
        "dedup_seconds": round(seconds, 3), "report_dropped": report["dropped_by_reason"],
    }


def _median_rate(fn, n_docs: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return n_docs / float(np.median(times))


def bench_signatures(texts: list[str], repeats: int) -> dict:
    from datasketch import MinHash
    signatures(texts[:50], NGRAM, K, 1)   # warm the power tables, as a long-running stage would

    def shingles():
        out = []
        for t in texts:
            w = normalize(t).split()
            out.append([" ".join(w[i:i + NGRAM]).encode() for i in range(max(1, len(w) - NGRAM + 1))] if w else [])
        return out
    sh = shingles()

    def ds_update():
        for s in sh:
            m = MinHash(num_perm=K)
            for x in s:
                m.update(x)

    def ds_batch():
        for s in sh:
            MinHash(num_perm=K).update_batch(s)

    n = len(texts)
    ours = _median_rate(lambda: signatures(texts, NGRAM, K, 1), n, repeats)
    shingle_rate = _median_rate(shingles, n, repeats)
    upd = _median_rate(ds_update, n, repeats)
    batch = _median_rate(ds_batch, n, repeats)
    ds_total = 1 / (1 / shingle_rate + 1 / upd)
    return {
        "docs": n, "mean_chars": round(float(np.mean([len(t) for t in texts])), 1),
        "ngram": NGRAM, "num_perm": K,
        "llmpipe_docs_per_s": round(ours, 1),
        "datasketch_update_loop_docs_per_s": round(upd, 1),
        "datasketch_shingling_docs_per_s": round(shingle_rate, 1),
        "datasketch_shingling_plus_update_docs_per_s": round(ds_total, 1),
        "datasketch_update_batch_docs_per_s": round(batch, 1),
        "ratio_vs_update_loop": round(ours / upd, 2),
        "ratio_vs_shingling_plus_update": round(ours / ds_total, 2),
        "ratio_vs_update_batch_plus_shingling": round(ours / (1 / (1 / shingle_rate + 1 / batch)), 2),
        "note": "llmpipe is timed from raw text (normalise + shingle + hash + permute); "
                "the update-loop ratio leaves datasketch's shingling out of its time",
    }


def synthetic_signatures(n: int, seed: int, dup_share: float = 0.1) -> np.ndarray:
    """Random signatures; `dup_share` of them copy another one with ~10% of slots changed."""
    rng = np.random.default_rng(seed)
    sig = rng.integers(0, 2**32, size=(n, K), dtype=np.uint32)
    d = rng.choice(n, size=int(n * dup_share), replace=False)
    src = rng.integers(0, n, size=len(d))
    sig[d] = sig[src]
    mask = rng.random((len(d), K)) < 0.1
    sig[d] = np.where(mask, rng.integers(0, 2**32, size=(len(d), K), dtype=np.uint32), sig[d])
    return sig


def bench_lsh(n: int, n_ds: int) -> dict:
    from datasketch import MinHash, MinHashLSH
    import pyarrow as pa
    bands, rows = resolve_bands(0.8, K, None, None, 0.9)
    sig = synthetic_signatures(n, 0)
    index = Index(["s"], np.array([0, n]), pa.chunked_array([[f"d{i}" for i in range(n)]]),
                  np.array([b"%032d" % i for i in range(n)]), sig, np.arange(n))
    t = time.perf_counter()
    dec = find_duplicates(index, 0.8, bands, rows)
    ours = n / (time.perf_counter() - t)
    small = sig[:n_ds]
    mhs = [MinHash(num_perm=K, hashvalues=s.astype(np.uint64), scheme="affine32") for s in small]
    lsh = MinHashLSH(threshold=0.8, num_perm=K)
    t = time.perf_counter()
    for i, m in enumerate(mhs):
        lsh.insert(i, m)
    ins = n_ds / (time.perf_counter() - t)
    tracemalloc.start()              # memory measured on a second build (tracemalloc slows it)
    lsh2 = MinHashLSH(threshold=0.8, num_perm=K)
    for i, m in enumerate(mhs):
        lsh2.insert(i, m)
    mem = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del lsh2
    t = time.perf_counter()
    for m in mhs:
        lsh.query(m)
    q = n_ds / (time.perf_counter() - t)
    return {
        "llmpipe_docs": n, "llmpipe_bands_x_rows": f"{bands}x{rows}",
        "llmpipe_build_and_query_docs_per_s": round(ours, 1),
        "llmpipe_near_duplicates_found": int((dec.status == 2).sum()),
        "datasketch_docs": n_ds, "datasketch_bands_x_rows": f"{lsh.b}x{lsh.r}",
        "datasketch_insert_docs_per_s": round(ins, 1), "datasketch_query_docs_per_s": round(q, 1),
        "datasketch_build_plus_query_docs_per_s": round(1 / (1 / ins + 1 / q), 1),
        "datasketch_index_gb_per_1m_docs_tracemalloc": round(mem / n_ds * 1e6 / 1e9, 3),
        "note": "llmpipe figure covers banding, candidate pairs, verification and clustering of "
                "all documents in one pass (the batch equivalent of insert + query)",
    }


_RSS_CHILD = r"""
import resource, sys, tempfile, numpy as np, pyarrow as pa
sys.path.insert(0, sys.argv[3])
from bench_dedup import synthetic_signatures, K
from llmpipe.data.table import DOC_SCHEMA, TableWriter
from llmpipe.data.dedup import dedup
from llmpipe.params import DedupParams
n, d = int(sys.argv[1]), sys.argv[2]
schema = pa.schema(list(DOC_SCHEMA) + [pa.field("exact_hash", pa.string()),
                                       pa.field("minhash", pa.list_(pa.uint32(), K))])
sig = synthetic_signatures(n, 1)
with TableWriter(d + "/in.parquet", schema) as w:
    for lo in range(0, n, 8192):
        m = min(n, lo + 8192) - lo
        w.write({"id": [f"doc-{i:012d}" for i in range(lo, lo + m)], "source": ["s"] * m,
                 "text": ["some text"] * m, "url": [None] * m, "meta": [None] * m,
                 "exact_hash": [f"{i:032x}" for i in range(lo, lo + m)],
                 "minhash": pa.FixedSizeListArray.from_arrays(pa.array(sig[lo:lo + m].ravel()), K)})
"""


# peak RSS of this process in kB: VmHWM, not ru_maxrss, which Linux carries over from the
# (large) parent across fork + exec
_HWM = ("print([int(l.split()[1]) for l in open('/proc/self/status') "
        "if l.startswith('VmHWM')][0])")


def rss_per_doc(sizes: list[int]) -> dict:
    """Peak RSS of dedup() in fresh processes at two sizes; the slope is bytes per document.

    The child writes its input first; then a second child runs only dedup, so the writer's
    memory does not count."""
    out = {}
    here = str(Path(__file__).resolve().parent)
    for n in sizes:
        with tempfile.TemporaryDirectory() as d:
            subprocess.run([sys.executable, "-c", _RSS_CHILD, str(n), d, here], check=True,
                           capture_output=True)
            code = ("import sys; from llmpipe.data.dedup import dedup; from llmpipe.params import DedupParams; "
                    "from pathlib import Path; d = Path(sys.argv[1]); "
                    "dedup({'s': d/'in.parquet'}, {'s': d/'out.parquet'}, DedupParams(num_perm=128)); "
                    + _HWM)
            base = "import llmpipe.data.dedup, pyarrow.parquet; " + _HWM
            kb = int(subprocess.run([sys.executable, "-c", code, d], check=True, capture_output=True,
                                    text=True).stdout.split()[-1])
            kb0 = int(subprocess.run([sys.executable, "-c", base], check=True, capture_output=True,
                                     text=True).stdout.split()[-1])
            out[n] = (kb - kb0) * 1024
    a, b = sizes
    slope = (out[b] - out[a]) / (b - a)
    return {"sizes": sizes, "peak_rss_above_imports_bytes": {str(k): v for k, v in out.items()},
            "bytes_per_doc": round(slope, 1), "gb_per_1m_docs": round(slope * 1e6 / 1e9, 3),
            "signature_bytes_per_doc": K * 4}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=Path("../shared/corpus"))
    ap.add_argument("--per-level", type=int, default=250, help="planted copies per Jaccard level")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lsh-docs", type=int, default=200_000)
    ap.add_argument("--datasketch-lsh-docs", type=int, default=50_000)
    ap.add_argument("--rss-sizes", type=int, nargs=2, default=[100_000, 400_000])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("bench/results/dedup.json"))
    args = ap.parse_args(argv)
    texts = read_corpus(args.corpus)
    result = {"command": " ".join(["python", *sys.argv]), "python": platform.python_version(),
              "numpy": np.__version__, "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as d:
        result["quality"] = bench_quality(texts, args.per_level, args.seed, Path(d))
    print(json.dumps(result["quality"], indent=1)[:1500], file=sys.stderr)
    result["signatures"] = bench_signatures(texts, args.repeats)
    print(json.dumps(result["signatures"], indent=1), file=sys.stderr)
    result["lsh"] = bench_lsh(args.lsh_docs, args.datasketch_lsh_docs)
    print(json.dumps(result["lsh"], indent=1), file=sys.stderr)
    result["memory"] = rss_per_doc(args.rss_sizes)
    print(json.dumps(result["memory"], indent=1), file=sys.stderr)
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
