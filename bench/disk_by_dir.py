"""Disk of a kept bench_scale.py project, split by folder, each inode counted once, as a multiple of data/raw.

    .venv/bin/python bench/disk_by_dir.py PROJECT [PROJECT ...] [--out FILE]

bench_scale.py gives the total (workspace + .dvc/cache once per inode); this says where it is.
Folders are walked in the order below, and an inode already counted (data/raw's, or a workspace
file hard-linked into .dvc/cache) is not counted again, so `.dvc/cache` is only what no workspace
file links to: old versions of outputs and copies where a link could not be made.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

DIRS = ["data/ingested", "data/clean", "data/filtered", "data/rejects", "data/dedup", "data/.cache", "data/tokens",
        "data/mix", "artifacts", "reports", ".dvc/cache", ".dvc/tmp"]


def split(project: Path) -> dict:
    seen: set[tuple[int, int]] = set()

    def walk(d: Path) -> tuple[int, int]:
        n = size = 0
        for root, _, files in os.walk(d):
            for f in files:
                st = os.lstat(os.path.join(root, f))
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    n, size = n + 1, size + st.st_size
        return n, size
    _, raw = walk(project / "data" / "raw")
    out = {"raw_bytes": raw, "dirs": {}}
    for d in DIRS:
        n, size = walk(project / d)
        out["dirs"][d] = {"files": n, "bytes": size, "x_raw": round(size / raw, 3) if raw else None}
    total = sum(v["bytes"] for v in out["dirs"].values())
    out["total_bytes"], out["total_x_raw"] = total, round(total / raw, 3) if raw else None
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("projects", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    res = {"command": "python bench/disk_by_dir.py " + " ".join(sys.argv[1:]),
           "when": datetime.datetime.now().isoformat(timespec="seconds"),
           "note": "apparent sizes (st_size), each inode once, data/raw first; x_raw = / data/raw bytes",
           "projects": {p.name: split(p.resolve()) for p in a.projects}}
    text = json.dumps(res, indent=1) + "\n"
    if a.out:
        tmp = a.out.with_name(a.out.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(a.out)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
