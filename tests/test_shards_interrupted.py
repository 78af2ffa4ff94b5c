"""A sharded stage that is killed (SIGKILL) or interrupted (Ctrl-C) keeps the units it finished;
the next run takes them over instead of redoing them, and its output is byte-identical to an
uninterrupted run's (core/shards.py)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def corpus(root: Path, files: int = 6, docs: int = 60, jobs: int = 1) -> Path:
    from llmpipe.data.sources.sample import sample_records
    recs = sample_records("c4", files * docs, 5)
    d = root / "raw"
    d.mkdir(parents=True)
    for k in range(files):
        (d / f"part-{k:02d}.jsonl").write_text("".join(json.dumps({"text": r["text"]}) + "\n"
                                                       for r in recs[k * docs:(k + 1) * docs]))
    (root / "params.yaml").write_text(yaml.safe_dump({"sources": {"c4": {"kind": "c4", "uri": str(d)}},
                                                      "clean": {"jobs": jobs, "batch_docs": 8}}))
    return root


def stage(root: Path, *args: str, wait: bool = True):
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    cmd = [sys.executable, "-m", *args, "--params", str(root / "params.yaml")]
    if not wait:  # SIGINT at its default in the child: a shell's background job inherits it ignored,
        # and Python then installs no KeyboardInterrupt handler (the stage would never see Ctrl-C)
        return subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)


def files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


@pytest.mark.parametrize("how,jobs", [("SIGKILL", 1), ("SIGINT", 1), ("SIGKILL", 2), ("SIGINT", 2)])
def test_a_killed_clean_keeps_its_finished_shards_for_the_next_run(tmp_path, how, jobs):
    # 12 shards, killed after 2: on a loaded CI box 6 left too small a margin (the run could
    # finish and publish between the poll and the signal). jobs 2: 12 shards to build are whole-shard
    # tasks of a pool (core.executor.shard_tasks), each recorded as it returns
    root = corpus(tmp_path, files=12, jobs=jobs)
    assert stage(root, "stages.ingest", "--source", "c4", "--out", "ing/c4", "--jobs", "1").returncode == 0
    ref = stage(root, "stages.clean", "--source", "c4", "--in", "ing/c4", "--out", "ref/c4")
    assert ref.returncode == 0, ref.stderr
    p = stage(root, "stages.clean", "--source", "c4", "--in", "ing/c4", "--out", "out/c4", wait=False)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until two shards are finished, then kill it
        if len(list((root / "out").glob(".c4.tmp-*/.units/*.json"))) >= 2:
            break
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL if how == "SIGKILL" else signal.SIGINT)
    p.communicate(timeout=60)  # returns only when no worker holds the pipes: they die with the stage
    assert p.returncode != 0, "the stage finished before the signal: the test needs more shards"
    assert not (root / "out/c4").exists()  # nothing under the final name
    again = stage(root, "stages.clean", "--source", "c4", "--in", "ing/c4", "--out", "out/c4")
    assert again.returncode == 0, again.stderr
    took = int(again.stderr.split(" built, ")[1].split(" reused")[0])
    assert took >= 2 and "reused (interrupted run)" in again.stderr, again.stderr
    assert files(root / "out/c4") == files(root / "ref/c4")
    assert sorted(os.listdir(root / "out")) == ["c4"]  # the interrupted run's temp is gone
