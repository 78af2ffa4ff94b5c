"""Where a no-op `dvc repro` spends its time (issue 12's "no-op under 2 s" target), measured on a
built project by taking parts of its dvc.yaml away (a benchmark, not a test).

    .venv/bin/python bench/bench_noop_parts.py --project /tmp/bench-shards/project-s16 \
        --out bench/results/noop_parts_16x.json [--target mix] [--repeats 5]

(bench/bench_noop.py times the no-op of several projects as they are; this one takes it apart.)

The project is one that `bench/bench_scale.py --keep DIR` built (its `.venv` and `src`). For each
variant, dvc.yaml is rewritten, `dvc commit -f --with-deps TARGET` records the lock for it without
running anything, and `dvc repro TARGET` (which must say "up to date") is timed `--repeats`
times (wall, and CPU of the dvc process). The original dvc.yaml and dvc.lock are restored at the
end (also on an error or Ctrl-C), and a last no-op checks that they were.

Variants:
  as_is                 the project as built
  manifest_deps         per-source deps on an upstream folder (`data/clean/${key}`, ...) replaced by
                        its manifest.json (which lists every shard file's sha256)
  no_code_deps          the src/ code-closure deps removed (stages/*.py kept)
  no_code_no_params     and every params dependency removed
Reference points, outside the project:
  empty_repo            `dvc repro` in a fresh `dvc init` repository (DVC's start-up)
  chain_N               a chain of N trivial one-file stages, N = the project's stage count upstream
                        of TARGET (DVC's per-stage cost with nothing to hash)
plus the project's file count under data/ (what DVC walks) and the load average around each run.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(cmd: list[str], cwd: Path, env: dict) -> tuple[float, float, str]:
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), p.stdout + p.stderr


def rewrite(text: str, *, manifests=False, code=True, params=True) -> str:
    """dvc.yaml with deps/params taken away, line by line (the layout bench_scale's clones have)."""
    out, section = [], None
    for line in text.split("\n"):
        s = line.strip()
        m = re.match(r"(deps|outs|params|metrics|plots|cmd|foreach|do|wdir|desc|always_changed|frozen):", s)
        if m:
            section = m.group(1)
        if section == "deps" and not code and re.match(r"- src/", s):
            continue
        if section == "params" and not params:
            continue
        if section == "deps" and manifests and \
                re.fullmatch(r"\s*- data/(ingested|clean|quality|dedup)/\$\{key\}(\s+#.*)?", line):
            line = line.replace("${key}", "${key}/manifest.json", 1)
        out.append(line)
    return "\n".join(out)


def timed(cmd: list[str], cwd: Path, env: dict, repeats: int, expect: str) -> dict:
    runs = []
    for _ in range(repeats):
        before = os.getloadavg()
        wall, cpu, out = run(cmd, cwd, env)
        if expect not in out:
            raise SystemExit(f"{' '.join(cmd)} in {cwd}: expected {expect!r}, got:\n{out[-2000:]}")
        runs.append({"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "load_before": [round(x, 2) for x in before]})
    walls = sorted(r["wall_s"] for r in runs)
    return {"median_wall_s": walls[len(walls) // 2], "min_wall_s": walls[0],
            "median_cpu_s": sorted(r["cpu_s"] for r in runs)[len(runs) // 2], "runs": runs}


def chain(n: int, dvc: str, env: dict, repeats: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="noop-chain-") as d:
        d = Path(d)
        subprocess.run(["git", "init", "-q"], cwd=d, check=True)
        subprocess.run([dvc, "init", "-q"], cwd=d, check=True, env=env)
        empty = timed([dvc, "repro"], d, env, repeats, "")
        lines = ["stages:"]
        for i in range(n):
            lines += [f"  s{i}:", f"    cmd: echo {i} > o{i}.txt", "    deps:",
                      f"      - {f'o{i - 1}.txt' if i else 'in.txt'}", "    outs:", f"      - o{i}.txt"]
        (d / "dvc.yaml").write_text("\n".join(lines) + "\n")
        (d / "in.txt").write_text("in\n")
        subprocess.run([dvc, "repro", "-q"], cwd=d, check=True, env=env, capture_output=True)
        return {"empty_repo": empty, f"chain_{n}": timed([dvc, "repro", f"s{n - 1}"], d, env, repeats, "up to date")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", required=True, type=Path)
    ap.add_argument("--target", default="mix")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("bench/results/noop_parts.json"))
    a = ap.parse_args()
    project = a.project.resolve()
    env = {**os.environ, "PATH": f"{project / '.venv' / 'bin'}:{os.environ['PATH']}",
           "PYTHONPATH": str(project / "src"), "DVC_NO_ANALYTICS": "1"}
    dvc = str(project / ".venv" / "bin" / "dvc")
    yaml_p, lock_p = project / "dvc.yaml", project / "dvc.lock"
    orig_yaml, orig_lock = yaml_p.read_text(), lock_p.read_text()
    listed = run([dvc, "stage", "list", "--name-only"], project, env)[2].split()
    dot = run([dvc, "dag", "--dot", a.target], project, env)[2]
    upstream = sorted(set(re.findall(r'"([^"]+)"', dot)) & set(listed))
    files = sum(len(fs) for _, _, fs in os.walk(project / "data"))
    res = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "project": str(project),
           "target": a.target, "stages_upstream_of_target": len(upstream), "files_under_data": files,
           "cpu_count": os.cpu_count(), "variants": {}}
    variants = {"as_is": {}, "manifest_deps": {"manifests": True}, "no_code_deps": {"code": False},
                "no_code_no_params": {"code": False, "params": False}}
    try:
        for name, kw in variants.items():
            yaml_p.write_text(rewrite(orig_yaml, **kw))
            lock_p.write_text(orig_lock)
            if kw:
                wall, cpu, out = run([dvc, "commit", "-f", "-q", "--with-deps", a.target], project, env)
                if "ERROR" in out:
                    raise SystemExit(f"dvc commit for {name}: {out[-2000:]}")
            res["variants"][name] = timed([dvc, "repro", a.target], project, env, a.repeats, "up to date")
            print(name, res["variants"][name]["median_wall_s"], "s wall (median),",
                  res["variants"][name]["median_cpu_s"], "s CPU; load", os.getloadavg(), file=sys.stderr, flush=True)
    finally:
        yaml_p.write_text(orig_yaml)
        lock_p.write_text(orig_lock)
    check = run([dvc, "repro", a.target], project, env)[2]
    res["restored_up_to_date"] = "up to date" in check
    res["reference"] = chain(len(upstream), dvc, env, a.repeats)
    for k, v in res["reference"].items():
        print(k, v["median_wall_s"], "s wall (median)", file=sys.stderr)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"-> {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
