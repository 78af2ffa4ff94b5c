"""Cross-source near duplicates on planted copies of real documents; writes bench/results/cross_dedup.json.

    PYTHONPATH=src:. .venv/bin/python bench/bench_cross_dedup.py --corpus ../shared/corpus \
        --baseline /path/to/a/checkout/of/main [--repeats 2]

1. Builds the planted corpus (`bench/cross_dedup_corpus.py`: real C4, FineWeb, Wikipedia and
   Gutenberg, whole books by default (`--gutenberg chapters`: one document per chapter);
   Wikipedia articles planted into C4 and FineWeb, chapters into C4, at raw Jaccard levels
   0.9 / 0.7 / 0.5 / 0.3) and runs the real stage scripts (ingest, clean, filter, dedup) on it,
   default params except the sources.
2. Quality: per planted pair whose two ends both pass filter, whether dedup removed the copy;
   recall in the target band (raw word 5-gram Jaccard >= 0.85; for a chapter copied from a whole
   book, its raw containment in the book) and merges below 0.5; the
   documents this branch removes that the baseline keeps (must all be planted copies or
   real cross-source copies), and the reverse (must be none: within-source results unchanged).
3. Cost: CPU seconds (user + system, of the stage processes) of `clean` (every source, one
   worker) and `dedup` of the baseline checkout and of this tree, run alternately on the same
   ingested shards (`--repeats` rounds), back to back in one run; medians.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from ruamel.yaml import YAML

sys.path.insert(0, str(Path(__file__).parent))
import cross_dedup_corpus as planted_corpus  # noqa: E402

from llmpipe.core.atomic import write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {
    "c4": {"kind": "c4", "id_field": None, "url_field": None, "meta_fields": []},
    "wikipedia": {"kind": "wikipedia", "id_field": None, "url_field": None, "meta_fields": []},
    "gutenberg": {"kind": "gutenberg", "id_field": None, "url_field": None, "meta_fields": []},
    "fineweb": {"kind": "fineweb", "id_field": None, "url_field": None, "meta_fields": []},
}


def write_params(tree: Path, corpus: Path, out: Path) -> None:
    """`tree`'s params.yaml with the planted sources (keys it does not know are never added)."""
    y = YAML(typ="rt")
    p = y.load((tree / "params.yaml").read_text())
    for name, s in SOURCES.items():
        src = p["sources"][name]
        src.update(copy.deepcopy(s))
        src["uri"] = str(corpus / name / f"{name}.jsonl.gz")
        src["format"] = "jsonl"
    with open(out, "w") as f:
        y.dump(p, f)


def stage(tree: Path, args: list[str], log: Path) -> float:
    """Run `python -m stages.X ...` of `tree` (its own code); CPU seconds (user + system) of the
    child: other processes on a shared machine change wall time far more than CPU time."""
    import resource
    env = {**os.environ, "PYTHONPATH": f"{tree / 'src'}:{tree}"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(log, "a") as f:
        subprocess.run([sys.executable, "-m", *args], cwd=tree, env=env, check=True, stdout=f, stderr=f)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run_tree(tree: Path, params: Path, work: Path, ingested: Path, log: Path) -> dict:
    """clean (jobs 1) + filter + dedup of every source with `tree`'s code; seconds of each."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    sec = {"clean": 0.0, "filter": 0.0, "dedup": 0.0}
    for s in SOURCES:
        sec["clean"] += stage(tree, ["stages.clean", "--source", s, "--in", str(ingested / s), "--out",
                                     str(work / "clean" / s), "--params", str(params), "--jobs", "1"], log)
        sec["filter"] += stage(tree, ["stages.filter", "--source", s, "--in", str(work / "clean" / s), "--out",
                                      str(work / "filtered" / s), "--report", str(work / f"filter-{s}.json"),
                                      "--params", str(params), "--jobs", "1"], log)
    sec["dedup"] = stage(tree, ["stages.dedup", "--clean", str(work / "clean"), "--filtered", str(work / "filtered"),
                                "--out-dir", str(work / "dedup"), "--cache", str(work / "cache"),
                                "--report", str(work / "dedup.json"), "--params", str(params)], log)
    return sec


def statuses(work: Path, ingested: Path) -> dict[tuple[str, str], int]:
    """(source, content id of the raw text) -> dedup status (0 kept, 1 exact, 2 near, 3 filtered)."""
    out = {}
    for s in SOURCES:
        man = json.loads((work / "clean" / s / "manifest.json").read_text())
        for unit in man["units"]:
            for sh in unit["shards"]:
                raw = pq.read_table(ingested / s / f"{sh['name']}.parquet", columns=["text"]).column("text").to_pylist()
                st = np.load(work / "dedup" / s / f"{sh['name']}.npy")
                for t, v in zip(raw, st.tolist()):
                    out.setdefault((s, planted_corpus.content_id(t)), v)
    return out


def quality(planted: list[dict], st: dict) -> dict:
    """Recall and false merges over the planted pairs whose two ends pass filter. The levels are
    built by editing words ("as_is", "unwrapped" copies); a "pre_cleaned" copy (C4's line rules
    applied to an edited copy) is a copy of the article whatever its raw Jaccard (C4 cut the
    page's headings and short lines), so it is counted apart and never as a false merge."""
    rows = []
    for p in planted:
        a, b = st[(p["orig_source"], p["orig_id"])], st[(p["copy_source"], p["copy_id"])]
        if a == 3 or b == 3:
            continue
        rows.append((p.get("level_value", p["raw_jaccard"]), p["variant"], f"{p['orig_source']}->{p['copy_source']}", b in (1, 2), a == 0))

    def rate(sel):
        sel = list(sel)
        return {"pairs": len(sel), "copy_removed": sum(r[3] for r in sel),
                "recall": round(sum(r[3] for r in sel) / max(1, len(sel)), 4),
                "original_kept": sum(r[4] for r in sel)}
    edited = [r for r in rows if r[1] != "pre_cleaned"]
    band = [r for r in edited if r[0] >= 0.85]
    out = {"target_band_raw_jaccard_ge_0.85": rate(band),
           "by_route_in_band": {k: rate(r for r in band if r[2] == k) for k in sorted({r[2] for r in band})},
           "by_variant_in_band": {k: rate(r for r in band if r[1] == k) for k in sorted({r[1] for r in band})},
           "below_0.5_merged": rate(r for r in edited if r[0] < 0.5),
           "bins_edited": {}, "pre_cleaned_by_raw_jaccard": {}}
    for lo, hi in ((0.0, 0.5), (0.5, 0.7), (0.7, 0.8), (0.8, 0.85), (0.85, 1.01)):
        out["bins_edited"][f"[{lo}, {min(hi, 1.0)})"] = rate(r for r in edited if lo <= r[0] < hi)
        out["pre_cleaned_by_raw_jaccard"][f"[{lo}, {min(hi, 1.0)})"] = rate(
            r for r in rows if r[1] == "pre_cleaned" and lo <= r[0] < hi)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=Path("../shared/corpus"))
    ap.add_argument("--baseline", type=Path, required=True, help="a checkout of main before this change")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--gutenberg", choices=["books", "chapters"], default="books")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/cross_dedup.json")
    a = ap.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="cross-dedup-"))
    log = work / "stages.log"
    work.mkdir(parents=True, exist_ok=True)
    info = planted_corpus.build(a.corpus.resolve(), work / "corpus", gutenberg=a.gutenberg)
    for tree, name in ((ROOT, "new"), (a.baseline.resolve(), "base")):
        write_params(tree, work / "corpus", work / f"params-{name}.yaml")
    ingested = work / "ingested"
    for s in SOURCES:
        stage(ROOT, ["stages.ingest", "--source", s, "--out", str(ingested / s), "--params",
                     str(work / "params-new.yaml"), "--no-progress"], log)
    times = {"base": [], "new": []}
    for _ in range(a.repeats):
        for name, tree in (("base", a.baseline.resolve()), ("new", ROOT)):
            times[name].append(run_tree(tree, work / f"params-{name}.yaml", work / name, ingested, log))
    st_new, st_base = statuses(work / "new", ingested), statuses(work / "base", ingested)
    planted_ids = {(p["copy_source"], p["copy_id"]) for p in info["planted"]}
    newly = [k for k in st_new if st_new[k] in (1, 2) and st_base[k] == 0]
    lost = [k for k in st_new if st_base[k] in (1, 2) and st_new[k] == 0]
    med = {n: {k: float(np.median([t[k] for t in ts])) for k in ts[0]} for n, ts in times.items()}
    cost = {n: med[n]["clean"] + med[n]["dedup"] for n in med}
    report = json.loads((work / "new" / "dedup.json").read_text())
    result = {
        "command": "PYTHONPATH=src:. .venv/bin/python bench/bench_cross_dedup.py " + " ".join(sys.argv[1:]),
        "load_average_before_after": None, "machine": platform.platform(), "cpus": os.cpu_count(),
        "gutenberg": a.gutenberg, "docs": info["docs"], "planted": len(info["planted"]),
        "quality_new": quality(info["planted"], st_new),
        "quality_baseline": quality(info["planted"], st_base),
        "removed_by_new_not_by_baseline": {"total": len(newly), "planted_copies": sum(k in planted_ids for k in newly),
                                           "others": [list(k) for k in newly if k not in planted_ids][:20]},
        "removed_by_baseline_kept_by_new": len(lost),
        "cpu_seconds_median": med, "cpu_seconds_all": times,
        "clean_plus_dedup_ratio_new_over_baseline": round(cost["new"] / cost["base"], 3),
        "clean_ratio": round(med["new"]["clean"] / med["base"]["clean"], 3),
        "dedup_ratio": round(med["new"]["dedup"] / med["base"]["dedup"], 3),
        "report_cross_source": report.get("cross_source"),
        "report_containment": report.get("containment"),
    }
    return result, a, work


if __name__ == "__main__":
    load0 = os.getloadavg()
    res, args, work = main()
    res["load_average_before_after"] = [round(x, 2) for x in load0 + os.getloadavg()]
    write_json(args.out, res)
    print(json.dumps({k: res[k] for k in ("quality_new", "removed_by_new_not_by_baseline",
                                          "removed_by_baseline_kept_by_new", "cpu_seconds_median",
                                          "clean_plus_dedup_ratio_new_over_baseline")}, indent=1))
    print("work folder:", work)
