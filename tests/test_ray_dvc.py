"""The data stages under the real `dvc repro` on a real 2-node local Ray cluster (conftest
`ray_cluster`, `exec.backend: ray`), with a Ray worker SIGKILLed while it cleans a shard: every
stage still completes and every output and report is byte-identical to the local backend's
(the session's `built_repo`, same code, same params but `exec`)."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from _raykit import diagnose
from conftest import BIN, make_repo

pytestmark = pytest.mark.slow

DATA_STAGES = ("ingest", "clean", "filter", "dedup", "tokenizer", "tokenize", "mix")


def outs(repo: Path) -> dict[str, str]:
    """{output path: md5 (a folder's is its listing's)} of the data stages in dvc.lock."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return {o["path"]: o["md5"] for name, st in lock.items() if name.split("@")[0] in DATA_STAGES
            for o in st.get("outs", [])}


def reports(repo: Path) -> dict[str, bytes]:
    return {str(p.relative_to(repo)): p.read_bytes() for p in sorted((repo / "reports").rglob("*.json"))
            if p.parent.name in ("ingest", "filter") or p.name in ("dedup.json", "mix.json")}


def ray_tasks(name: str) -> list[int]:
    """PIDs of Ray worker processes running a task `name` now (their title is `ray::NAME`)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                title = f.read().split(b"\0")[0]
        except OSError:
            continue
        if title == f"ray::{name}".encode():
            found.append(int(pid))
    return found


def test_data_stages_on_ray_are_byte_identical_even_after_a_worker_is_killed(built_repo, ray_cluster, tmp_path):
    repo = make_repo(tmp_path / "repo", {"exec.backend": "ray", "exec.address": ray_cluster})
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "PYTHONPATH": f"{repo / 'src'}{os.pathsep}{repo}"}
    log = tmp_path / "repro.log"
    with log.open("w") as out:
        proc = subprocess.Popen([str(BIN / "dvc"), "repro", "mix"], cwd=repo, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    killed = None
    try:
        end = time.monotonic() + 300
        while killed is None and proc.poll() is None and time.monotonic() < end:
            running = ray_tasks("clean_shard")  # the first source's clean task, mid-shard
            if running:
                time.sleep(0.2)
                os.kill(running[0], signal.SIGKILL)
                killed = running[0]
            time.sleep(0.02)
        rc = proc.wait(600)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert rc == 0, text[-6000:] + "\n" + diagnose(ray_cluster)
    assert killed is not None, "no clean task was seen running on the cluster"
    assert "Ray cluster with 2 CPUs" in text  # the stages really ran their tasks on the cluster
    assert outs(repo) == outs(built_repo)
    assert reports(repo) == reports(built_repo)
    assert len(reports(repo)) == 10
    assert not list((repo / "data").rglob(".*.tmp-*")), "a killed task left a temp behind"
