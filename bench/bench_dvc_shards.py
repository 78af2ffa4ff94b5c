"""Which DVC layout keeps `dvc status` fast with 1,000+ shards: one stage with directory outputs, or one stage per shard.

    .venv/bin/python bench/bench_dvc_shards.py [--dir-shards 1000 4000] [--stage-shards 100 250] [--commit-shards 1000]
                                               [--time-limit 150] [--no-scm] [--out bench/results/dvc_shards.json]

Each case is a fresh temp repo (`git init` + `dvc init`, or `dvc init --no-scm`), inputs `in/sNNNNN.txt`
of ~200 bytes each (tiny: the figures are DVC's bookkeeping, not I/O):

  (a) dir:   ONE stage, deps `in/` (a directory), outs `out/` (a directory of N files); the
             command copies every shard.
  (b) stages: N stages from `foreach: ${shards}` over a list of N names in params.yaml, each with
             its own file dep `in/${item}.txt` and file out `out/${item}.txt` (`cp`).

(b) is built two ways: --stage-shards sizes by a real first `dvc repro` of every stage,
--commit-shards sizes (default 1000) by one copy of all outputs and `dvc commit -f` (same
dvc.lock and cache, without N command runs: a 1,000-stage first repro alone takes minutes here).

For each: the first `dvc repro` (wall), then `dvc status` and a no-op `dvc repro`, --repeats
times each (all figures kept, the median reported), then one shard's input changed and `dvc
status` + `dvc repro` again (dir: the whole stage reruns; stages: one stage); for (b) also
`dvc status STAGE` and `dvc repro --single-item STAGE` of one shard (DVC still loads all N
stages). A first `dvc repro` of (b) that runs past --time-limit is killed and the done share
(dvc.lock entries) gives an extrapolated time (a lower bound: later stages cost more); the
--extrapolate-to size (4000) is extrapolated from the measured ones (power law through the two
largest). Every figure has wall and CPU seconds (os.wait4) and the load averages.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def env_with(venv_bin: Path) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{venv_bin}:{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    return env


def timed(cmd: list[str], cwd: Path, env: dict, timeout: float | None = None) -> dict:
    """Wall seconds, and CPU seconds (user + sys of the process and the children it waited for,
    os.wait4): on a loaded machine CPU is the steadier figure."""
    la, t0 = load(), time.perf_counter()
    with tempfile.TemporaryFile() as out:
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            p.kill()

        timer = threading.Timer(timeout, kill) if timeout else None
        if timer:
            timer.start()
        _, status, ru = os.wait4(p.pid, 0)
        if timer:
            timer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out.seek(0)
        text = out.read().decode(errors="replace")
    rc = "timeout" if killed.is_set() else p.returncode
    res = {"wall_s": round(wall, 3), "cpu_s": round(ru.ru_utime + ru.ru_stime, 3), "rc": rc, "loadavg": la}
    if rc not in (0, "timeout"):
        res["tail"] = text[-1500:]
    return res


def med(runs: list[dict], key: str = "wall_s") -> float:
    return round(statistics.median(r[key] for r in runs), 3)


def make_repo(root: Path, n: int, env: dict, scm: bool) -> None:
    root.mkdir(parents=True)
    if scm:
        subprocess.run(["git", "init", "-q"], cwd=root, check=True)
        subprocess.run(["dvc", "init", "-q"], cwd=root, env=env, check=True)
    else:
        subprocess.run(["dvc", "init", "-q", "--no-scm"], cwd=root, env=env, check=True)
    (root / "in").mkdir()
    for i in range(n):
        (root / "in" / f"s{i:05d}.txt").write_text(f"shard {i} " + "lorem ipsum dolor sit amet " * 7 + "\n")


def commit(root: Path, scm: bool) -> None:
    if scm:
        subprocess.run(["git", "add", "-A"], cwd=root, check=True)
        subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", "x"],
                       cwd=root, check=True)


def case_dir(base: Path, n: int, env: dict, a) -> dict:
    root = base / f"dir-{n}"
    make_repo(root, n, env, not a.no_scm)
    (root / "copy.py").write_text(
        "import os, shutil, sys\n"
        "os.makedirs('out', exist_ok=True)\n"
        "for name in sorted(os.listdir('in')):\n"
        "    shutil.copyfile(os.path.join('in', name), os.path.join('out', name))\n")
    (root / "dvc.yaml").write_text("stages:\n  shards:\n    cmd: python copy.py\n    deps: [copy.py, in]\n"
                                   "    outs: [out]\n")
    commit(root, not a.no_scm)
    res = {"layout": "one stage, directory dep and directory out", "shards": n, "stages": 1}
    res["first_repro"] = timed(["dvc", "repro"], root, env)
    if res["first_repro"]["rc"] != 0:
        raise SystemExit(f"(a) {n}: first dvc repro failed: {res['first_repro'].get('tail')}")
    return {**res, **steady(root, env, a, one_input="in/s00000.txt")}


def case_stages(base: Path, n: int, env: dict, a, build: str = "repro") -> dict:
    """build: "repro" runs the N stages (first `dvc repro`, under --time-limit); "commit" writes
    the outputs with one `cp` and records all N stages with `dvc commit -f` (the same dvc.lock and
    cache as a repro, without N command runs), to reach the steady state of a big N quickly."""
    root = base / f"stages-{n}-{build}"
    make_repo(root, n, env, not a.no_scm)
    (root / "out").mkdir()
    names = [f"s{i:05d}" for i in range(n)]
    (root / "params.yaml").write_text("shards:\n" + "".join(f"  - {x}\n" for x in names))
    (root / "dvc.yaml").write_text(
        "stages:\n  shard:\n    foreach: ${shards}\n    do:\n      cmd: cp in/${item}.txt out/${item}.txt\n"
        "      deps:\n        - in/${item}.txt\n      outs:\n        - out/${item}.txt\n")
    commit(root, not a.no_scm)
    res = {"layout": "foreach: one stage per shard, file dep and file out each", "shards": n, "stages": n,
           "built_by": build}
    if build == "commit":
        for name in names:
            shutil.copyfile(root / "in" / f"{name}.txt", root / "out" / f"{name}.txt")
        first = timed(["dvc", "commit", "-f"], root, env, timeout=a.time_limit)
        res["first_commit"] = first
        if first["rc"] != 0:
            raise SystemExit(f"(b) {n}: dvc commit failed: {first.get('tail')}")
        first = {"skipped": "built by dvc commit"}
    else:
        first = timed(["dvc", "repro"], root, env, timeout=a.time_limit)
    if first.get("rc") == "timeout":
        lock = root / "dvc.lock"
        done = lock.read_text().count("cmd: cp ") if lock.exists() else 0
        first["stages_done"] = done
        first["extrapolated_wall_s"] = round(first["wall_s"] * n / done, 1) if done else None
        res["first_repro"] = first
        return res
    res["first_repro"] = first
    if first.get("rc", 0) != 0:
        raise SystemExit(f"(b) {n}: first dvc repro failed: {first.get('tail')}")
    res["one_stage"] = {
        "status": [timed(["dvc", "status", f"shard@{names[0]}"], root, env) for _ in range(a.repeats)],
        "repro_single_item": [timed(["dvc", "repro", "--single-item", f"shard@{names[0]}"], root, env)
                              for _ in range(a.repeats)],
    }
    for k in ("status", "repro_single_item"):
        res["one_stage"][f"{k}_median_s"] = med(res["one_stage"][k])
        res["one_stage"][f"{k}_median_cpu_s"] = med(res["one_stage"][k], "cpu_s")
    return {**res, **steady(root, env, a, one_input=f"in/{names[0]}.txt")}


def steady(root: Path, env: dict, a, one_input: str) -> dict:
    st = [timed(["dvc", "status"], root, env) for _ in range(a.repeats)]
    rp = [timed(["dvc", "repro"], root, env) for _ in range(a.repeats)]
    with open(root / one_input, "a") as f:
        f.write("changed\n")
    st1 = timed(["dvc", "status"], root, env)
    rp1 = timed(["dvc", "repro"], root, env)
    for r in st + rp + [st1, rp1]:
        if r["rc"] != 0:
            raise SystemExit(f"{root}: a dvc command failed: {r.get('tail')}")
    return {"status": st, "status_median_s": med(st), "status_median_cpu_s": med(st, "cpu_s"),
            "noop_repro": rp, "noop_repro_median_s": med(rp), "noop_repro_median_cpu_s": med(rp, "cpu_s"),
            "one_shard_changed": {"status": st1, "repro": rp1}}


def extrapolate(measured: dict[int, float], n: int) -> float | None:
    pts = sorted(measured.items())
    if len(pts) < 2:
        return round(pts[0][1] * n / pts[0][0], 2) if pts else None
    (n0, t0), (n1, t1) = pts[-2], pts[-1]
    if t0 <= 0 or t1 <= 0:
        return None
    k = math.log(t1 / t0) / math.log(n1 / n0)
    return round(t1 * (n / n1) ** k, 2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--dir-shards", type=int, nargs="+", default=[1000, 4000])
    ap.add_argument("--stage-shards", type=int, nargs="+", default=[100, 250],
                    help="(b) sizes built by a real first `dvc repro` of every stage")
    ap.add_argument("--commit-shards", type=int, nargs="+", default=[1000],
                    help="(b) sizes built by `dvc commit -f` (steady state without N command runs)")
    ap.add_argument("--extrapolate-to", type=int, default=4000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--time-limit", type=float, default=150,
                    help="seconds for one first `dvc repro` (or `dvc commit`) of (b)")
    ap.add_argument("--no-scm", action="store_true", help="dvc init --no-scm instead of git + dvc")
    ap.add_argument("--venv", default=str(REPO / ".venv"))
    ap.add_argument("--keep", metavar="DIR", help="build the repos here and keep them")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "dvc_shards.json"))
    a = ap.parse_args()
    env = env_with(Path(a.venv).resolve() / "bin")
    version = subprocess.run(["dvc", "--version"], env=env, capture_output=True, text=True).stdout.strip()
    base = Path(a.keep).resolve() if a.keep else Path(tempfile.mkdtemp(prefix="dvc-shards-"))
    base.mkdir(parents=True, exist_ok=True)
    started, la0, t_all = datetime.datetime.now().isoformat(timespec="seconds"), load(), time.perf_counter()
    results = {"dir": [], "stages": []}
    try:
        for n in a.dir_shards:
            r = case_dir(base, n, env, a)
            results["dir"].append(r)
            print(f"(a) dir    {n:>5} shards: first repro {r['first_repro']['wall_s']:.1f} s, status "
                  f"{r['status_median_s']:.2f} s, no-op repro {r['noop_repro_median_s']:.2f} s, one shard changed: "
                  f"repro {r['one_shard_changed']['repro']['wall_s']:.2f} s  (load {load()[0]})", file=sys.stderr, flush=True)
        for build, sizes in (("repro", a.stage_shards), ("commit", a.commit_shards)):
            for n in sizes:
                r = case_stages(base, n, env, a, build)
                results["stages"].append(r)
                if "status_median_s" not in r:
                    print(f"(b) stages {n:>5}: first repro stopped at {a.time_limit} s after "
                          f"{r['first_repro']['stages_done']} stages (~{r['first_repro']['extrapolated_wall_s']} s "
                          f"for all)", file=sys.stderr)
                    break
                built = (f"first repro {r['first_repro']['wall_s']:.1f} s" if build == "repro"
                         else f"dvc commit {r['first_commit']['wall_s']:.1f} s")
                print(f"(b) stages {n:>5} shards: {built}, status {r['status_median_s']:.2f} s "
                      f"({r['status_median_cpu_s']:.2f} CPU), no-op repro {r['noop_repro_median_s']:.2f} s "
                      f"({r['noop_repro_median_cpu_s']:.2f} CPU), status of one stage "
                      f"{r['one_stage']['status_median_s']:.2f} s, one shard changed: repro "
                      f"{r['one_shard_changed']['repro']['wall_s']:.2f} s  (load {load()[0]})", file=sys.stderr, flush=True)
    finally:
        done = [r for r in results["stages"] if "status_median_s" in r]
        extra = {}
        n_to = a.extrapolate_to
        if done and all(r["shards"] != n_to for r in done):
            reproed = [r for r in done if r["built_by"] == "repro"]
            extra = {f"stages_{n_to}": {
                "first_repro_s": extrapolate({r["shards"]: r["first_repro"]["wall_s"] for r in reproed}, n_to),
                **{key: extrapolate({r["shards"]: get(r) for r in done}, n_to)
                   for key, get in (("status_s", lambda r: r["status_median_s"]),
                                    ("status_cpu_s", lambda r: r["status_median_cpu_s"]),
                                    ("noop_repro_s", lambda r: r["noop_repro_median_s"]),
                                    ("noop_repro_cpu_s", lambda r: r["noop_repro_median_cpu_s"]),
                                    ("one_stage_status_s", lambda r: r["one_stage"]["status_median_s"]))}},
                "method": "power law through the two largest measured sizes (first_repro_s: of the sizes "
                          "built by a real repro)"}
        doc = {"command": "python bench/bench_dvc_shards.py " + " ".join(sys.argv[1:]),
               "started": started, "seconds": round(time.perf_counter() - t_all, 1), "dvc": version,
               "python": platform.python_version(), "cpus": os.cpu_count(), "scm": not a.no_scm,
               "loadavg_start": la0, "loadavg_end": load(), "repeats": a.repeats, "results": results,
               "extrapolated": extra}
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
        os.replace(tmp, out)
        print(f"wrote {out}; extrapolated {json.dumps(extra)}", file=sys.stderr)
        if not a.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
