"""The data stages on the local backend vs a 2-node local Ray cluster, on the same generated corpus.

    PYTHONPATH=src .venv/bin/python bench/bench_ray.py --scale 0.5 [--keep /tmp/bench-ray]

1. A corpus of ~30 MB x scale of text in 4 sources of many files (bench/gen_corpus.py, from the
   real samples in --corpus), linked into two clones of this repo at HEAD (bench_scale's project).
2. `dvc repro mix` (every data stage) in the first clone with `exec.backend: local` (each stage's
   jobs = every core), then in the second with `exec.backend: ray` on a cluster of two nodes of
   1 CPU each on 127.0.0.1 (tests/_raykit.py): the same cores, used through Ray. Wall seconds per
   stage (from the moment DVC starts it to the next), and the data stages' outputs compared
   (dvc.lock hashes: they must be identical).
3. The overhead per task: N no-op tasks through the executor on that cluster (after one warm-up
   call that joins the cluster and starts the workers, timed apart).
Writes bench/results/ray.json with the command and the load average before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests"))

import bench_scale  # noqa: E402
from _raykit import local_cluster  # noqa: E402

DATA = ("ingest", "clean", "filter", "dedup", "tokenizer", "tokenize", "mix")


def repro(project: Path, log: Path) -> dict:
    """`dvc repro mix` with a wall clock per stage (the time from its "Running stage" line to the next)."""
    env = {**bench_scale.ENV(project), "PYTHONUNBUFFERED": "1"}  # DVC's "Running stage" lines as they happen
    t0 = time.monotonic()
    marks = []
    with log.open("w") as out:
        p = subprocess.Popen(["dvc", "repro", "mix"], cwd=project, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, bufsize=1)
        for line in p.stdout:
            out.write(line)
            if line.startswith("Running stage '"):
                marks.append((line.split("'")[1], time.monotonic()))
        rc = p.wait()
    end = time.monotonic()
    if rc:
        raise SystemExit(f"dvc repro failed in {project}:\n" + log.read_text()[-4000:])
    stages = {name: round(b - a, 2) for (name, a), (_, b) in zip(marks, marks[1:] + [("", end)])}
    by_kind: dict[str, float] = {}
    for name, s in stages.items():
        by_kind[name.split("@")[0]] = round(by_kind.get(name.split("@")[0], 0) + s, 2)
    return {"wall_s": round(end - t0, 2), "per_stage_s": stages, "per_stage_kind_s": by_kind}


def outs(project: Path) -> dict:
    import yaml
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    return {o["path"]: o["md5"] for n, st in lock.items() if n.split("@")[0] in DATA for o in st.get("outs", [])}


def noop(i: int) -> int:
    return i


def task_overhead(address: str, n: int) -> dict:
    from ray import cloudpickle
    import ray
    from llmpipe.core.executor import ExecParams, make
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ex = make(ExecParams(backend="ray", address=address))
    t = time.monotonic()
    ex.map(noop, [(0,), (1,)])
    first = time.monotonic() - t
    t = time.monotonic()
    assert ex.map(noop, [(i,) for i in range(n)]) == list(range(n))
    many = time.monotonic() - t
    ray.shutdown()
    return {"join_and_first_tasks_s": round(first, 3), "tasks": n, "tasks_s": round(many, 3),
            "per_task_ms": round(1000 * many / n, 2), "slots": 2}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--corpus", default=str(REPO.parent / "shared" / "corpus"))
    ap.add_argument("--keep", default=None, help="work folder to keep (corpus reused from there)")
    ap.add_argument("--tasks", type=int, default=400, help="no-op tasks for the per-task overhead")
    ap.add_argument("--out", default=str(HERE / "results" / "ray.json"))
    a = ap.parse_args()
    base = Path(a.keep or tempfile.mkdtemp(prefix="bench-ray-"))
    base.mkdir(parents=True, exist_ok=True)
    logs = base / "logs"
    logs.mkdir(exist_ok=True)
    load_before = os.getloadavg()
    rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.strip()
    corpus, gen = bench_scale.corpus_for(a.scale, a.seed, base, a.corpus, logs)
    venv = Path(sys.executable).parent.parent
    res: dict = {"what": "data stages (dvc repro mix) on exec.backend local vs ray (2 nodes x 1 CPU on 127.0.0.1)",
                 "command": " ".join(["PYTHONPATH=src", ".venv/bin/python", "bench/bench_ray.py", *sys.argv[1:]]),
                 "rev": rev, "cpus": os.cpu_count(), "scale": a.scale,
                 "corpus": json.loads((corpus / "corpus.json").read_text()).get("summary", {}).get("total"),
                 "load_before": [round(x, 2) for x in load_before]}
    with local_cluster(logs) as address:
        runs = {}
        for backend in ("local", "ray"):
            extra = {"exec.backend": backend, "exec.address": address if backend == "ray" else None}
            project = base / f"project-{backend}"
            bench_scale.make_project(project, REPO, rev, venv, corpus, extra, "hardlink,copy")
            runs[backend] = repro(project, logs / f"repro-{backend}.log")
            runs[backend]["load_after"] = [round(x, 2) for x in os.getloadavg()]
            print(f"{backend}: {runs[backend]['wall_s']} s", file=sys.stderr)
        res["runs"] = runs
        res["outputs_identical"] = outs(base / "project-local") == outs(base / "project-ray")
        res["speedup_ray_vs_local"] = round(runs["local"]["wall_s"] / runs["ray"]["wall_s"], 3)
        res["task_overhead"] = task_overhead(address, a.tasks)
    res["load_after"] = [round(x, 2) for x in os.getloadavg()]
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))
    return 0 if res["outputs_identical"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
