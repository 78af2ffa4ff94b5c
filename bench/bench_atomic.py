"""What syncing atomic outputs costs -> bench/results/atomic.json (a measurement, not a test).

    PYTHONPATH=src .venv/bin/python bench/bench_atomic.py [--dir DIR] [--mb 64] [--repeats 3]

`atomic_path` fsyncs every file of an output (and its directories) before the rename and the
parent directory after it. This times three real writers with that sync and, in the same process
and alternating with it (to cancel drift of the host), with `os.fsync` made a no-op (the old
behaviour): 200 small JSON reports, a Document table of `--mb` MB of text (TableWriter) and a
token directory of train/val .bin/.idx/.docs.parquet of `--mb` MB (SplitWriter). Medians of
`--repeats`. DIR (default: a temp dir under bench/results) must be on the disk the data lives on.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from llmpipe.core import atomic
from llmpipe.core.atomic import atomic_path, write_json
from llmpipe.data.table import TableWriter
from llmpipe.data.tokens import SplitWriter

RESULTS = Path(__file__).resolve().parent / "results"
SIZES: dict = {}  # bytes on disk each case wrote


def reports(d: Path) -> None:
    for i in range(200):
        write_json(d / f"r{i}.json", {"docs": i, "text": "x" * 1000})


_RNG = np.random.default_rng(0)
# 8 batches of 1000 rows of 1 KB random hex (zstd halves it; cycled, never within one page)
TEXT = [[_RNG.bytes(512).hex() for _ in range(1000)] for _ in range(8)]


def table(d: Path, mb: int) -> None:
    with TableWriter(d / "t.parquet") as w:
        for k, lo in enumerate(range(0, mb * 1000, 1000)):
            w.write({"id": [str(lo + i) for i in range(1000)], "source": ["s"] * 1000,
                     "text": TEXT[k % len(TEXT)], "url": [None] * 1000, "meta": [None] * 1000})


def tokens(d: Path, mb: int) -> None:
    rng = np.random.default_rng(0)
    toks = rng.integers(4, 8000, size=1 << 20, dtype=np.uint16)  # 2 MB per add
    toks[511::512] = 3
    lengths = np.full(len(toks) // 512, 512)
    with atomic_path(d / "tok") as tmp:
        tmp.mkdir()
        for split, n in (("train", mb // 2 * 9 // 10 or 1), ("val", max(1, mb // 20))):
            with SplitWriter(tmp, split, np.uint16) as w:
                for k in range(n):
                    w.add(toks, lengths, lengths * 4, [f"{k}-{i}" for i in range(len(lengths))],
                          ["s"] * len(lengths))
                w.close()


def timed(fn, d: Path, sync: bool) -> float:
    real = os.fsync
    if not sync:
        atomic.os.fsync = lambda fd: None  # the same writer, minus the syncs
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    os.sync()  # start with no dirty pages of earlier runs
    try:
        t = time.perf_counter()
        fn(d)
        seconds = time.perf_counter() - t
        SIZES[fn] = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
        return seconds
    finally:
        atomic.os.fsync = real
        shutil.rmtree(d, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--mb", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    base = a.dir or Path(tempfile.mkdtemp(prefix="bench-atomic-", dir=RESULTS))
    load_before = os.getloadavg()
    cases = {"200_json_reports": reports, f"table_{a.mb}mb": lambda d: table(d, a.mb),
             f"token_dir_{a.mb}mb": lambda d: tokens(d, a.mb)}
    out = {}
    for name, fn in cases.items():
        runs = {"sync": [], "no_sync": []}
        for _ in range(a.repeats):
            for mode in runs:  # alternate: drift of the host hits both alike
                runs[mode].append(timed(fn, base / name, mode == "sync"))
        med = {k: statistics.median(v) for k, v in runs.items()}
        out[name] = {"bytes_written": SIZES[fn], "seconds_sync": round(med["sync"], 4), "seconds_no_sync": round(med["no_sync"], 4),
                     "overhead_ratio": round(med["sync"] / med["no_sync"], 3), "runs": runs}
        print(f"{name}: {med['sync']:.3f} s synced, {med['no_sync']:.3f} s without fsync "
              f"(x{med['sync'] / med['no_sync']:.2f})", file=sys.stderr)
    if a.dir is None:
        shutil.rmtree(base, ignore_errors=True)
    rec = {"command": " ".join(["PYTHONPATH=src", ".venv/bin/python", "bench/bench_atomic.py", *sys.argv[1:]]),
           "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "cpus": os.cpu_count(),
           "disk": str(base), "results": out}
    write_json(RESULTS / "atomic.json", rec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
