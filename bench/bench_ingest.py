"""Ingest throughput on the real corpus samples and the built-in sample; writes bench/results/ingest.json.

    PYTHONPATH=src .venv/bin/python bench/bench_ingest.py --corpus ../shared/corpus

For each layout (C4 jsonl.gz, Wikipedia jsonl.gz without ids, Gutenberg jsonl.gz and .txt files,
FineWeb parquet directory with extra columns, and `sample://KIND`), the real `ingest_source()`
writes a Document table to a temp dir; reported: docs, MB of text, seconds, docs/s, MB/s, and the
report's skips (median of --repeats runs, one process, one core).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from llmpipe.core.atomic import write_json
from llmpipe.params import SourceParams
from llmpipe.data.sources import ingest_source


def cases(corpus: Path) -> dict[str, SourceParams]:
    return {
        "c4_jsonl_gz": SourceParams(kind="c4", uri=f"{corpus}/c4/c4-en-train-00000-first1000.jsonl.gz",
                                    url_field="url", meta_fields=["timestamp"]),
        "wikipedia_jsonl_gz_no_ids": SourceParams(kind="wikipedia", uri=f"{corpus}/wikipedia/*.jsonl.gz"),
        "gutenberg_jsonl_gz": SourceParams(kind="gutenberg", uri=f"{corpus}/gutenberg/*.jsonl.gz",
                                           meta_fields=["title", "author"]),
        "gutenberg_txt": SourceParams(kind="gutenberg", uri=f"{corpus}/gutenberg/*.txt", id_field="path"),
        "fineweb_parquet_dir": SourceParams(kind="fineweb", uri=f"{corpus}/fineweb", id_field="id",
                                            url_field="url", meta_fields=["timestamp"]),
        **{f"sample_{k}": SourceParams(kind=k, uri=f"sample://{k}") for k in ("c4", "wikipedia", "gutenberg", "fineweb")},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="../shared/corpus")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="bench/results/ingest.json")
    a = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, sp in cases(Path(a.corpus)).items():
            times = []
            for _ in range(a.repeats):
                t = time.perf_counter()
                rep = ingest_source(name, sp, f"{tmp}/{name}.parquet", progress=False)
                times.append(time.perf_counter() - t)
            s = statistics.median(times)
            results[name] = {"docs": rep["docs_out"], "mb_text": round(rep["chars_out"] / 1e6, 2),
                             "seconds": round(s, 3), "docs_per_s": round(rep["docs_in"] / s),
                             "mb_per_s": round(rep["chars_out"] / 1e6 / s, 1),
                             "skipped_by_reason": rep["skipped_by_reason"],
                             "duplicate_texts": rep["duplicate_texts"]}
            print(name, results[name], file=sys.stderr)
    write_json(a.out, {"command": "PYTHONPATH=src .venv/bin/python bench/bench_ingest.py --corpus " + a.corpus,
                       "python": platform.python_version(), "repeats": a.repeats, "results": results,
                       "note": "sample_* include generating the corpus (parsing the stdlib, ~3 s the first "
                               "time in a process; later runs reuse the parsed prose)"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
