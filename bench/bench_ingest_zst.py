"""zstd input: ingest throughput next to gzip, and the zstd reader's memory; writes bench/results/ingest_zst.json.

    PYTHONPATH=src .venv/bin/python bench/bench_ingest_zst.py --corpus ../shared/corpus

The real C4 and Gutenberg samples (`.jsonl.gz`) are recompressed to `.jsonl.zst` (zstd level 3,
one frame) in a temp dir; the real `ingest_source()` reads each (median of --repeats runs, one
process). Memory: tracemalloc peak of Python allocations while `readers.open_decompressed`
streams the lines of the Gutenberg file, once as it is and once four times over (4 frames):
a streaming reader's peak does not grow with the file. zstd's own window (C memory, at most
8 MiB at level 3) is not in tracemalloc.
"""
from __future__ import annotations

import argparse
import gzip
import os
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import fsspec
import zstandard

from llmpipe.core.atomic import write_json
from llmpipe.params import SourceParams
from llmpipe.data.sources import ingest_source, resolve
from llmpipe.data.sources.readers import open_decompressed

FILES = {"c4": "c4/c4-en-train-00000-first1000.jsonl.gz", "gutenberg": "gutenberg/gutenberg-68-books.jsonl.gz"}


def peak_bytes(path: str) -> tuple[int, int]:
    """(tracemalloc peak, lines) while streaming the lines of one file through the reader."""
    [f] = resolve(path)
    tracemalloc.start()
    lines = 0
    with open_decompressed(f) as fh:
        for _ in fh:
            lines += 1
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="../shared/corpus")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="bench/results/ingest_zst.json")
    a = ap.parse_args()
    load_before = os.getloadavg()
    results: dict = {"ingest": {}, "reader_memory": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, rel in FILES.items():
            raw = gzip.decompress(Path(a.corpus, rel).read_bytes())
            zpath = Path(tmp, f"{name}.jsonl.zst")
            zpath.write_bytes(zstandard.ZstdCompressor(level=3).compress(raw))
            for fmt, uri in (("gz", str(Path(a.corpus, rel))), ("zst", str(zpath))):
                sp = SourceParams(kind="c4", uri=uri)
                times = []
                for _ in range(a.repeats):
                    t = time.perf_counter()
                    rep = ingest_source(name, sp, f"{tmp}/{name}-{fmt}.parquet", progress=False)
                    times.append(time.perf_counter() - t)
                s = statistics.median(times)
                results["ingest"][f"{name}_{fmt}"] = {
                    "docs": rep["docs_out"], "mb_text": round(rep["chars_out"] / 1e6, 2),
                    "mb_file": round(os.path.getsize(uri) / 1e6, 2), "seconds": round(s, 3),
                    "docs_per_s": round(rep["docs_in"] / s), "mb_text_per_s": round(rep["chars_out"] / 1e6 / s, 1)}
                print(name, fmt, results["ingest"][f"{name}_{fmt}"], file=sys.stderr)
            if name == "gutenberg":
                four = Path(tmp, "gutenberg-x4.jsonl.zst")
                with fsspec.open(str(four), "wb") as out:
                    for _ in range(4):
                        out.write(zpath.read_bytes())
                for label, p in (("x1", zpath), ("x4", four)):
                    peak, lines = peak_bytes(str(p))
                    results["reader_memory"][f"gutenberg_{label}"] = {
                        "mb_uncompressed": round(len(raw) * (4 if label == "x4" else 1) / 1e6, 1),
                        "lines": lines, "tracemalloc_peak_mb": round(peak / 1e6, 2)}
                    print(label, results["reader_memory"][f"gutenberg_{label}"], file=sys.stderr)
    write_json(a.out, {"command": "PYTHONPATH=src .venv/bin/python bench/bench_ingest_zst.py --corpus " + a.corpus,
                       "python": platform.python_version(), "zstandard": zstandard.__version__,
                       "repeats": a.repeats, "loadavg_before": [round(x, 2) for x in load_before],
                       "loadavg_after": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
                       "results": results,
                       "note": "one process; the machine is shared with other jobs (see loadavg). The "
                               "longest Gutenberg line (one book) is 1.23 MB; the peak is that line about "
                               "twice over (readline joins chunks) plus one decompressed chunk, the same at 4x "
                               "the data."})
    return 0


if __name__ == "__main__":
    sys.exit(main())
