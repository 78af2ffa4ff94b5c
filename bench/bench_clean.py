"""Benchmark: the clean pass and the filter thresholds, against datatrove 0.10.1's filters.

    .venv-bench/bin/python bench/bench_clean.py [--docs 1200] [--repeats 3] [--corpus ../shared/corpus]

On one core, in one process, over the same real documents (C4, Wikipedia, FineWeb rows and
~4 KB chunks of Gutenberg books from the corpus directory, a seeded sample of `--docs`):
  * llmpipe clean: every cleaner of the document's kind + every signal + exact hash + MinHash
    signature (`clean.pipeline.process_batch`, the whole per-document work of `clean@SRC`),
    and the same without the MinHash part;
  * datatrove: GopherQualityFilter, GopherRepetitionFilter, C4QualityFilter and
    FineWebQualityFilter, each called as `f.filter(Document(...))` on every document; "all four"
    is the docs/s of running the four one after another (N / sum of their times);
  * llmpipe filter: thresholds only (`rules.apply_rules`, default rules of kind c4) on a table of
    1M rows of stored signals (the bench's C4 documents' signals, tiled), and the whole
    `filter_table` (read, apply, write kept rows with text and MinHash) on 200k tiled rows.
Times are medians of `--repeats`; writes bench/results/clean.json with the exact command.
datatrove needs the `bench` extra (datatrove==0.10.1 spacy orjson 'xxhash<4' regex) in a separate
venv without torch: see README "Cleaning and filtering".
"""
from __future__ import annotations

import argparse
import glob
import gzip
import importlib.metadata
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from llmpipe.core.atomic import write_json  # noqa: E402
from llmpipe.data.clean import pipeline, rules, signals  # noqa: E402
from llmpipe.data.table import write_docs  # noqa: E402
from llmpipe.params import CleanParams, FilterParams  # noqa: E402


def load_corpus(corpus: Path, n_docs: int, seed: int) -> list[tuple[str, str]]:
    """(kind, text) pairs: every C4/Wikipedia/FineWeb doc + Gutenberg chunks, sampled."""
    docs: list[tuple[str, str]] = []
    for path in sorted(glob.glob(str(corpus / "c4" / "*.jsonl.gz"))):
        docs += [("c4", json.loads(line)["text"]) for line in gzip.open(path, "rt")]
    for path in sorted(glob.glob(str(corpus / "wikipedia" / "*.jsonl.gz"))):
        docs += [("wikipedia", json.loads(line)["text"]) for line in gzip.open(path, "rt")]
    for path in sorted(glob.glob(str(corpus / "fineweb" / "*.parquet"))):
        docs += [("fineweb", t) for t in pq.read_table(path, columns=["text"]).column("text").to_pylist()]
    for path in sorted(glob.glob(str(corpus / "gutenberg" / "*.jsonl.gz"))):
        for line in gzip.open(path, "rt"):
            paras = json.loads(line)["text"].replace("\r\n", "\n").split("\n\n")
            chunk: list[str] = []
            for p in paras[len(paras) // 10: len(paras) // 10 + 400]:  # skip the front matter
                chunk.append(p)
                if sum(map(len, chunk)) > 4000:
                    docs.append(("gutenberg", "\n\n".join(chunk)))
                    chunk = []
    rng = random.Random(seed)
    return rng.sample(docs, min(n_docs, len(docs)))


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_llmpipe(docs, repeats: int, minhash: bool) -> float:
    params = CleanParams()
    by_kind: dict[str, list[str]] = {}
    for kind, text in docs:
        by_kind.setdefault(kind, []).append(text)

    def run():
        for kind, texts in by_kind.items():
            if minhash:
                pipeline.process_batch(texts, kind, params, 5, 128, 1)
            else:
                for t in texts:
                    clean, _ = pipeline.clean_text(t, kind, params)
                    signals.compute(t, clean, kind)
    return median_time(run, repeats)


def bench_datatrove(docs, repeats: int) -> dict[str, float]:
    try:
        from datatrove.data import Document
        from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter,
                                                GopherQualityFilter, GopherRepetitionFilter)
    except ImportError as e:
        sys.exit(f"datatrove is not importable ({e}); install the bench extra into a separate venv: "
                 "python3 -m venv .venv-bench && .venv-bench/bin/pip install 'datatrove==0.10.1' spacy "
                 "orjson 'xxhash<4' regex pyarrow numpy pyyaml tqdm && .venv-bench/bin/pip install --no-deps -e .")
    filters = {"GopherQualityFilter": GopherQualityFilter(), "GopherRepetitionFilter": GopherRepetitionFilter(),
               "C4QualityFilter": C4QualityFilter(), "FineWebQualityFilter": FineWebQualityFilter()}
    texts = [t for _, t in docs]
    for f in filters.values():  # warm up (spacy model load, regex compile)
        f.filter(Document(text=texts[0], id="warm"))
    out = {"version": importlib.metadata.version("datatrove")}
    for name, f in filters.items():
        out[name] = median_time(lambda f=f: [f.filter(Document(text=t, id=str(i))) for i, t in enumerate(texts)],
                                repeats)
    return out


def bench_filter(docs, repeats: int, rows: int) -> dict:
    """Thresholds on `rows` rows of real signals (the bench docs' signals tiled), and filter_table."""
    kind_docs = [t for k, t in docs if k == "c4"] or [t for _, t in docs]
    cols = pipeline.process_batch(kind_docs, "c4", CleanParams(), 5, 128, 1)
    sig = pa.table({k: cols[k] for k in signals.signal_types("c4")})
    reps = -(-rows // sig.num_rows)
    big = pa.concat_tables([sig] * reps).slice(0, rows).combine_chunks()
    rs = rules.rules_for(FilterParams(), "c4")
    t_rules = median_time(lambda: rules.apply_rules(big, rs), repeats)
    with tempfile.TemporaryDirectory() as tmp:  # filter_table end to end on a tiled clean table
        tmp = Path(tmp)
        write_docs(tmp / "in.parquet", [{"id": f"d{i}", "source": "c4", "text": t, "url": None,
                                         "meta": None} for i, t in enumerate(kind_docs)])
        pipeline.clean_table(tmp / "in.parquet", tmp / "c.parquet", "c4", CleanParams(), 5, 128, 1, jobs=1)
        one = pq.read_table(tmp / "c.parquet")
        table_rows = min(rows, 200_000)
        tiled = pa.concat_tables([one] * -(-table_rows // one.num_rows)).slice(0, table_rows)
        pq.write_table(tiled, tmp / "big.parquet", compression="zstd", row_group_size=2048)
        t_table = median_time(lambda: rules.filter_table(tmp / "big.parquet", tmp / "out.parquet", None, "c4",
                                                        FilterParams()), repeats)
    return {"rows": rows, "rules": len(rs), "thresholds_docs_per_s": rows / t_rules,
            "filter_table_docs": table_rows, "filter_table_docs_per_s": table_rows / t_table}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=str(ROOT.parent / "shared" / "corpus"))
    ap.add_argument("--docs", type=int, default=1200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--filter-rows", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "clean.json"))
    args = ap.parse_args(argv)
    docs = load_corpus(Path(args.corpus), args.docs, args.seed)
    n = len(docs)
    kinds = {k: sum(1 for d in docs if d[0] == k) for k in ("c4", "wikipedia", "gutenberg", "fineweb")}
    print(f"{n} docs {kinds}, {sum(len(t) for _, t in docs):,} chars", file=sys.stderr)
    ours = bench_llmpipe(docs, args.repeats, minhash=True)
    ours_signals = bench_llmpipe(docs, args.repeats, minhash=False)
    print(f"llmpipe clean {n / ours:,.1f} docs/s", file=sys.stderr)
    dt = bench_datatrove(docs, args.repeats)
    dt_total = sum(v for k, v in dt.items() if k != "version")
    print(f"datatrove all four {n / dt_total:,.1f} docs/s", file=sys.stderr)
    filt = bench_filter(docs, args.repeats, args.filter_rows)
    result = {
        "command": " ".join([os.path.relpath(sys.executable, ROOT), *sys.argv]),
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                    "cores_used": 1, "numpy": np.__version__},
        "docs": n, "docs_by_kind": kinds, "chars": sum(len(t) for _, t in docs), "repeats": args.repeats,
        "llmpipe_clean_docs_per_s": n / ours,
        "llmpipe_clean_without_minhash_docs_per_s": n / ours_signals,
        "datatrove_version": dt["version"],
        "datatrove_docs_per_s": {k: n / v for k, v in dt.items() if k != "version"},
        "datatrove_all_four_docs_per_s": n / dt_total,
        "ratio_clean_vs_datatrove_all_four": (n / ours) / (n / dt_total),
        "target_ratio": 2.0,
        "filter": filt,
        "filter_target_docs_per_s": 1_000_000,
    }
    write_json(args.out, result)
    print(json.dumps({k: result[k] for k in ("llmpipe_clean_docs_per_s", "datatrove_all_four_docs_per_s",
                                             "ratio_clean_vs_datatrove_all_four")}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
