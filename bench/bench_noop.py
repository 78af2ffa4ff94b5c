"""No-op `dvc repro mix` and `dvc status`, repeated, on kept bench_scale.py projects.

    .venv/bin/python bench/bench_noop.py PROJECT [PROJECT ...] [--repeats 5] [--out FILE]

For each project (already up to date): --repeats times `dvc repro mix` then `dvc status`, each
measured like bench_scale.py measures a stage (wall, CPU of dvc and its children, os.getloadavg()
before and after); the median and min of each, and how many shards (manifest units) and files
the DVC outputs under data/ hold, since that is what DVC stats on a no-op.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_scale import ENV, become_subreaper, load, measured  # noqa: E402


def counts(project: Path) -> dict:
    shards = 0
    for m in (project / "data" / "ingested").glob("*/manifest.json"):
        shards += sum(len(u.get("shards", [])) or 1 for u in json.loads(m.read_text())["units"])
    files = sum(len(f) for d in ("ingested", "clean", "filtered", "rejects", "dedup", "tokens", "mix")
                for _, _, f in os.walk(project / "data" / d))
    return {"shards": shards, "files_in_dvc_outputs": files}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("projects", nargs="+", type=Path)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--target", default="mix")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    become_subreaper()
    res = {"command": "python bench/bench_noop.py " + " ".join(sys.argv[1:]),
           "when": datetime.datetime.now().isoformat(timespec="seconds"), "cpus": os.cpu_count(),
           "loadavg_start": load(), "projects": {}}
    for p in a.projects:
        p = p.resolve()
        env = ENV(p)
        logs = p.parent / f"logs-noop-{p.name}"
        logs.mkdir(exist_ok=True)
        rows = {"repro": [], "status": []}
        for i in range(a.repeats):
            r = measured(["dvc", "repro", a.target], p, env, logs / f"repro-{i}.log")
            r["up_to_date"] = "up to date" in (logs / f"repro-{i}.log").read_text()
            rows["repro"].append(r)
            r = measured(["dvc", "status"], p, env, logs / f"status-{i}.log")
            r["up_to_date"] = "up to date" in (logs / f"status-{i}.log").read_text()
            rows["status"].append(r)
        summ = {k: {"wall_s_median": round(statistics.median(x["wall_s"] for x in v), 2),
                    "wall_s_min": min(x["wall_s"] for x in v),
                    "cpu_s_median": round(statistics.median(x["cpu_s"] for x in v), 2),
                    "all_up_to_date": all(x["up_to_date"] for x in v),
                    "load1_median": round(statistics.median(x["loadavg_before"][0] for x in v), 2)}
                for k, v in rows.items()}
        res["projects"][p.name] = {"project": str(p), **counts(p), "summary": summ, "runs": rows}
        print(f"{p.name}: {res['projects'][p.name]['shards']} shards, "
              f"{res['projects'][p.name]['files_in_dvc_outputs']} files; dvc repro {a.target} median "
              f"{summ['repro']['wall_s_median']} s (min {summ['repro']['wall_s_min']}), dvc status median "
              f"{summ['status']['wall_s_median']} s; load1 {summ['repro']['load1_median']}", file=sys.stderr)
    res["loadavg_end"] = load()
    if a.out:
        a.out.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
