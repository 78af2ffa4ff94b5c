"""The incremental step as a user runs it: one more file, then ONE `dvc repro mix`, on a kept bench_scale.py project.

    .venv/bin/python bench/bench_incr_whole.py --project /tmp/bench-shards/project-s16 [--source fineweb]
        [--first bench/results/scale_shards_16.json] [--out bench/results/incr_whole_s16.json]

bench_scale.py measures its incremental step stage by stage (`dvc repro --single-item`, one `dvc`
start per stage, 19 of them); this adds one more file of ~2% of the corpus to the project's
data/raw/SOURCE with `gen_corpus.py --add-file` and measures a single `dvc repro mix` (one dvc
start; each stage that runs still starts its own Python), like bench_scale.py measures a stage
(os.wait4 rusage + reaped orphans, the largest RSS, summed Pss, os.getloadavg()). From its log:
which stages ran and each stage's `N shard units: B built, R reused` line. With --first (the
bench_scale.py result of the same project) the CPU is also given as a share of that first run's.
Then `dvc repro mix` and `dvc status` once more (no-op).
"""
from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_scale import ENV, become_subreaper, classify, load, measured, shard_units, stage_order  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", required=True, type=Path)
    ap.add_argument("--source", default="fineweb")
    ap.add_argument("--target", default="mix")
    ap.add_argument("--first", type=Path, default=None, help="bench_scale.py result JSON of this project")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    become_subreaper()
    project = a.project.resolve()
    env = ENV(project)
    logs = project.parent / f"logs-incr-whole-{project.name}"
    logs.mkdir(exist_ok=True)
    order = stage_order(project, env, a.target)
    raw = project / "data" / "raw"
    text_before = json.loads((raw / "corpus.json").read_text())
    add = measured([sys.executable, str(HERE / "gen_corpus.py"), "--add-file", a.source, "--out", str(raw)],
                   project, {k: v for k, v in env.items() if k != "PYTHONPATH"}, logs / "add-file.log")
    meta = json.loads((raw / "corpus.json").read_text())
    added = meta["added_files"][-1]
    total_text = meta["summary"]["total"]["text_bytes"] + sum(f["text_bytes"] for f in meta["added_files"][:-1])
    log = logs / "incr-whole.log"
    r = measured(["dvc", "repro", a.target], project, env, log)
    text = log.read_text(errors="replace")
    per_stage = {}
    parts = re.split(r"(?=^Running stage '|^Stage '[^']+' didn't change)", text, flags=re.M)
    for st in order:
        seg = next((p for p in parts if p.startswith(f"Running stage '{st}'")), "")
        per_stage[st] = {"status": classify(text, st), "shard_units": shard_units(seg),
                         "log": [ln for ln in seg.splitlines() if " INFO " in ln][-1:]}
    res = {"command": "python bench/bench_incr_whole.py " + " ".join(sys.argv[1:]),
           "when": datetime.datetime.now().isoformat(timespec="seconds"), "project": str(project),
           "added_file": {**added, "share_of_corpus_text": round(added["text_bytes"] / total_text, 4),
                          "earlier_added_files": len(meta["added_files"]) - 1, "generation": add},
           "dvc_repro": {k: v for k, v in r.items()}, "stages": per_stage,
           "ran": [s for s, v in per_stage.items() if v["status"] in ("ran", "run_cache")]}
    if a.first:
        first = json.loads(a.first.read_text())
        (sc, body), = first["scales"].items()
        fc = body["first_run"]["totals"]["cpu_s"]
        res["first_run_cpu_s"] = fc
        res["cpu_share_of_first"] = round(r["cpu_s"] / fc, 4)
        res["wall_share_of_first"] = round(r["wall_s"] / body["first_run"]["totals"]["wall_s"], 4)
    noop = measured(["dvc", "repro", a.target], project, env, logs / "noop-repro.log")
    noop["up_to_date"] = "up to date" in (logs / "noop-repro.log").read_text()
    res["noop_repro"] = noop
    res["noop_status"] = measured(["dvc", "status"], project, env, logs / "noop-status.log")
    res["loadavg_end"] = load()
    print(f"+{added['path']} ({res['added_file']['share_of_corpus_text']:.1%}): one dvc repro {a.target}: "
          f"cpu {r['cpu_s']} s wall {r['wall_s']} s load {r['loadavg_before'][0]}; "
          f"share of first {res.get('cpu_share_of_first')}; ran {', '.join(res['ran'])}", file=sys.stderr)
    for st, v in per_stage.items():
        if v["shard_units"]:
            print(f"  {st:<22} {v['shard_units'][0]['line']}", file=sys.stderr)
    print(f"  no-op dvc repro {noop['wall_s']} s, dvc status {res['noop_status']['wall_s']} s", file=sys.stderr)
    if a.out:
        a.out.write_text(json.dumps(res, indent=1) + "\n")
    return r["rc"]


if __name__ == "__main__":
    sys.exit(main())
