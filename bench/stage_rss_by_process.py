"""Which process of a stage holds its peak RSS: the stage's own Python (the parent) or a worker.

    .venv/bin/python bench/stage_rss_by_process.py --project /tmp/bench-shards/project-s16 \
        --stage tokenize@c4 [--stage mix ...] [--out bench/results/scale_shards_parts/rss_by_process_s16.json]

bench_scale.py records a stage's peak RSS as the largest single process (wait4's ru_maxrss over
the whole tree), without saying which one. This runs the stage's command from the project's
dvc.lock outside DVC, with every output flag (--out, --out-dir, --report, --rejects) pointed at
a scratch folder (so nothing is reused and the project is not touched), and samples every 0.1 s
the VmHWM (peak RSS so far) and RssAnon (RSS less file-backed and shared pages, e.g. memory-mapped
token files) of each process in the tree. Result per stage: the parent's VmHWM and peak RssAnon,
the largest other process's (workers; multiprocessing's forkserver and resource tracker are
named by their command line), the whole-tree ru_maxrss, CPU and wall, and os.getloadavg().
A process's growth in its last 0.1 s can be missed; ru_maxrss is exact and is given alongside.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_scale import ENV, become_subreaper, load, reap_orphans  # noqa: E402

OUT_FLAGS = ("--out", "--out-dir", "--report", "--rejects")


def mem_kb(pid: int) -> tuple[int, int] | None:
    """(VmHWM, RssAnon) of a process, kB"""
    hwm = anon = None
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
            elif line.startswith("RssAnon:"):
                anon = int(line.split()[1])
    except OSError:
        return None
    return (hwm, anon) if hwm is not None and anon is not None else None


def descendants(root: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def role(pid: int, parent: int) -> str:
    """parent, forkserver, resource_tracker or worker (a worker forked from the forkserver keeps its
    command line, so a forkserver-looking process whose own parent is a forkserver is a worker)"""
    if pid == parent:
        return "parent"

    def cmdline(p: int) -> str:
        try:
            return open(f"/proc/{p}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return ""
    try:
        ppid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        ppid = -1
    cmd = cmdline(pid)
    if "resource_tracker" in cmd:
        return "resource_tracker"
    if "forkserver" in cmd and "spawn_main" not in cmd:
        return "worker" if "forkserver" in cmdline(ppid) else "forkserver"
    return "worker"


def run_stage(project: Path, stage: str, cmd: str, scratch: Path) -> dict:
    argv = shlex.split(cmd)
    for i, a in enumerate(argv[:-1]):
        if a in OUT_FLAGS:
            argv[i + 1] = str(scratch / f"{a.lstrip('-')}-{Path(argv[i + 1]).name}")
    argv[0] = str(project / ".venv" / "bin" / "python") if argv[0] == "python" else argv[0]
    env = ENV(project)
    peaks: dict[int, dict] = {}
    halt = threading.Event()
    la0, t0 = load(), time.perf_counter()
    log = scratch / "stage.log"
    with open(log, "wb") as out:
        p = subprocess.Popen(argv, cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT)

        def sample() -> None:
            while not halt.is_set():
                for pid in [p.pid] + descendants(os.getpid()):
                    if pid == os.getpid():
                        continue
                    kb = mem_kb(pid)
                    if kb is not None:
                        e = peaks.setdefault(pid, {"role": role(pid, p.pid), "hwm_kb": 0, "anon_kb": 0})
                        e["hwm_kb"], e["anon_kb"] = max(e["hwm_kb"], kb[0]), max(e["anon_kb"], kb[1])
                halt.wait(0.1)
        th = threading.Thread(target=sample, daemon=True)
        th.start()
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        user, sys_, maxrss, _, _ = reap_orphans(ru, 30.0)  # forkserver workers re-parented to us
    halt.set()
    th.join()
    rc = os.waitstatus_to_exitcode(status)
    by_role: dict[str, float] = {}
    anon_by_role: dict[str, float] = {}
    for e in peaks.values():
        by_role[e["role"]] = max(by_role.get(e["role"], 0.0), round(e["hwm_kb"] / 1024, 1))
        anon_by_role[e["role"]] = max(anon_by_role.get(e["role"], 0.0), round(e["anon_kb"] / 1024, 1))
    largest = max(peaks.values(), key=lambda e: e["hwm_kb"]) if peaks else {"role": None}
    return {"rc": rc, "argv": argv[1:], "cpu_s": round(user + sys_, 2), "wall_s": round(wall, 2),
            "ru_maxrss_mb": round(maxrss / 1024, 1), "sampled_vmhwm_mb_by_role": by_role,
            "sampled_rss_anon_peak_mb_by_role": anon_by_role, "workers_seen": sum(1 for e in peaks.values() if e["role"] == "worker"),
            "largest_process": largest["role"], "loadavg_before": la0, "loadavg_after": load(),
            "log_tail": log.read_text(errors="replace").splitlines()[-1:] if rc == 0 else
            log.read_text(errors="replace").splitlines()[-20:]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", required=True, type=Path)
    ap.add_argument("--stage", action="append", required=True)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    become_subreaper()
    project = a.project.resolve()
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    res = {"command": "python bench/stage_rss_by_process.py " + " ".join(sys.argv[1:]),
           "when": datetime.datetime.now().isoformat(timespec="seconds"), "project": str(project),
           "clone_head_and_parent": subprocess.run(["git", "log", "-2", "--format=%H %s"], cwd=project, capture_output=True,
                                                   text=True).stdout.splitlines(),
           "cpus": os.cpu_count(), "stages": {}}
    for st in a.stage:
        if st not in lock:
            raise SystemExit(f"{st}: no such stage in {project / 'dvc.lock'}; stages: {', '.join(lock)}")
        scratch = Path(tempfile.mkdtemp(prefix="rss-by-proc-", dir=project.parent))
        try:
            r = run_stage(project, st, lock[st]["cmd"], scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        res["stages"][st] = r
        print(st, json.dumps({k: r[k] for k in ("rc", "cpu_s", "wall_s", "ru_maxrss_mb", "sampled_vmhwm_mb_by_role",
                                                "sampled_rss_anon_peak_mb_by_role", "largest_process")}), flush=True)
    res["loadavg_end"] = load()
    text = json.dumps(res, indent=1) + "\n"
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = a.out.with_name(a.out.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(a.out)
    else:
        print(text)
    return 0 if all(r["rc"] == 0 for r in res["stages"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
