"""Dedup's peak memory against `dedup.memory_mb` on a bench_scale.py project, and the same survivors.

    .venv/bin/python bench/bench_dedup_mem.py --project /tmp/bench-shards/project-s16 \
        [--memory-mb 1024 64 16] [--jobs 0] [--warm] [--out bench/results/dedup_mem_s16.json]

Runs the `dedup` stage command of a project that bench_scale.py built and kept (`--keep`),
outside DVC: `python -m stages.dedup --clean data/clean --filtered data/filtered` with a copy of
the project's params.yaml in which only `dedup.memory_mb` (and `dedup.jobs` if --jobs is given)
differs, writing its masks, report and band-key cache to a scratch folder (the project's outputs
are not touched). Cold by default: a fresh band-key cache every run (as in the pipeline's first
run); --warm runs once more per value with the cache the cold run left (as in an incremental run).

Each run is measured like bench_scale.py measures a stage (os.wait4 rusage of the command plus
its reaped orphans; peak_rss_mb = the largest single process, tree_pss_peak_mb = the peak of the
summed Pss of the process tree, every 0.2 s), with os.getloadavg() before and after. Survivors are
compared through reports/dedup.json (docs_in, docs_kept, dropped_by_reason, clusters,
candidate_pairs, verified_pairs) and a sha256 over every mask file (data/dedup/SRC/NAME.npy).
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_scale import ENV, become_subreaper, load, measured  # noqa: E402

KEYS = ("docs_in", "docs_kept", "dropped_by_reason", "clusters", "candidate_pairs", "verified_pairs", "shards")


def masks_digest(out_dir: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(out_dir.rglob("*.npy")):
        h.update(str(p.relative_to(out_dir)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", required=True, type=Path)
    ap.add_argument("--memory-mb", type=int, nargs="+", default=[1024, 64])
    ap.add_argument("--jobs", type=int, default=None, help="dedup.jobs (default: the project's)")
    ap.add_argument("--warm", action="store_true", help="also run each value again with its band-key cache")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    import yaml
    become_subreaper()
    project = a.project.resolve()
    env = ENV(project)
    base = yaml.safe_load((project / "params.yaml").read_text())
    scratch = Path(tempfile.mkdtemp(prefix="dedup-mem-", dir=project.parent))
    runs = []
    try:
        for mb in a.memory_mb:
            p = json.loads(json.dumps(base))
            p["dedup"]["memory_mb"] = mb
            if a.jobs is not None:
                p["dedup"]["jobs"] = a.jobs
            params = scratch / f"params-{mb}.yaml"
            params.write_text(yaml.safe_dump(p, sort_keys=False))
            cache = scratch / f"cache-{mb}"
            for mode in (["cold", "warm"] if a.warm else ["cold"]):
                out, report = scratch / f"out-{mb}-{mode}", scratch / f"report-{mb}-{mode}.json"
                cmd = [str(project / ".venv" / "bin" / "python"), "-m", "stages.dedup", "--clean", "data/clean",
                       "--filtered", "data/filtered", "--out-dir", str(out), "--cache", str(cache),
                       "--report", str(report), "--params", str(params)]
                log = scratch / f"log-{mb}-{mode}.txt"
                r = measured(cmd, project, env, log)
                text = log.read_text(errors="replace")
                row = {"memory_mb": mb, "jobs_param": p["dedup"].get("jobs"), "mode": mode, **r,
                       "log": text.strip().splitlines()[-1:] if not r["rc"] else text[-3000:]}
                if not r["rc"]:
                    rep = json.loads(report.read_text())
                    row["report"] = {k: rep.get(k) for k in KEYS}
                    row["masks_sha256"] = masks_digest(out)
                runs.append(row)
                print(f"memory_mb {mb:>5} {mode}: cpu {r['cpu_s']:.1f} s wall {r['wall_s']:.1f} s rss "
                      f"{r['peak_rss_mb']:.0f} MB pss {r['tree_pss_peak_mb']:.0f} MB ({r['tree_procs_at_peak']} procs) "
                      f"load {r['loadavg_before'][0]}  kept {row.get('report', {}).get('docs_kept')} clusters "
                      f"{row.get('report', {}).get('clusters')}", file=sys.stderr, flush=True)
                if r["rc"]:
                    print(text[-3000:], file=sys.stderr)
                shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(cache, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    ok = [r for r in runs if not r["rc"]]
    same = len({json.dumps(r["report"], sort_keys=True) for r in ok}) == 1 and len({r["masks_sha256"] for r in ok}) == 1
    doc = {"command": "python bench/bench_dedup_mem.py " + " ".join(sys.argv[1:]),
           "when": datetime.datetime.now().isoformat(timespec="seconds"), "project": str(project),
           "rev": (project / ".git").exists() and os.popen(f"git -C {project} rev-parse HEAD~0").read().strip(),
           "docs": ok[0]["report"]["docs_in"] if ok else None, "cpus": os.cpu_count(), "loadavg_end": load(),
           "same_survivors_and_masks": same, "runs": runs}
    print(json.dumps({"same_survivors_and_masks": same}), file=sys.stderr)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(doc, indent=1) + "\n")
    return 0 if ok and same and len(ok) == len(runs) else 1


if __name__ == "__main__":
    sys.exit(main())
