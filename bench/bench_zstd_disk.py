"""Disk of a built project's outputs if its Parquet files were written at another zstd level.

    .venv/bin/python bench/bench_zstd_disk.py --project /tmp/bench-shards/project-s16 \
        --raw-bytes 307034111 --level 3 --out bench/results/zstd_level3_disk_16x.json

Rewrites every Parquet output under data/ (not data/raw) row group by row group at `--level`
into a temp file, and sums: old and new Parquet bytes per folder, the other output files
(signatures, masks, tokens) as they are, artifacts/, and both totals as a multiple of the raw
input's bytes on disk (`--raw-bytes`: bench_scale.py's corpus_disk_bytes). A benchmark of the
compression choice in data/table.py (ZSTD_LEVEL), not a test.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", required=True, type=Path)
    ap.add_argument("--raw-bytes", required=True, type=int)
    ap.add_argument("--level", type=int, default=3)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    p = str(a.project.resolve())
    per: dict[str, list[int]] = {}
    t0 = time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "x.parquet"
        for f in sorted(glob.glob(f"{p}/data/**/*.parquet", recursive=True)):
            if "/data/raw/" in f:
                continue
            pf = pq.ParquetFile(f)
            with pq.ParquetWriter(out, pf.schema_arrow, compression="zstd", compression_level=a.level) as w:
                for i in range(pf.num_row_groups):
                    w.write_table(pf.read_row_group(i), row_group_size=pf.metadata.row_group(i).num_rows)
            d = f[len(p) + 1:].split("/")[1]
            per.setdefault(d, [0, 0])
            per[d][0] += os.path.getsize(f)
            per[d][1] += out.stat().st_size
    other = sum(os.path.getsize(f) for f in glob.glob(f"{p}/data/**/*", recursive=True)
                if os.path.isfile(f) and not f.endswith(".parquet") and "/data/raw/" not in f and "/.cache/" not in f)
    art = sum(os.path.getsize(f) for f in glob.glob(f"{p}/artifacts/**/*", recursive=True) if os.path.isfile(f))
    old, new = sum(v[0] for v in per.values()), sum(v[1] for v in per.values())
    res = {"command": " ".join(["python", *sys.argv]), "level": a.level, "parquet_bytes_as_built": old,
           "parquet_bytes_at_level": new, "per_dir_as_built_vs_level": per, "other_output_bytes": other,
           "artifacts_bytes": art, "raw_disk_bytes": a.raw_bytes,
           "outputs_x_raw_as_built": round((old + other + art) / a.raw_bytes, 3),
           "outputs_x_raw_at_level": round((new + other + art) / a.raw_bytes, 3),
           "cpu_s": round(time.process_time() - t0, 1), "loadavg": os.getloadavg()}
    print(json.dumps(res, indent=1))
    if a.out:
        a.out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
