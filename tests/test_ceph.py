"""Warm storage on real Ceph: a single-node cluster with an RGW (scripts/ceph-dev-rgw.sh), DVC
talking S3 to it. Skips, saying why, where the Ceph packages are absent; CI installs them
(scripts/ceph-install.sh via scripts/ci-system-deps.sh)."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from _warmkit import (add_blobs, assert_remote_in_sync, assert_workspace_clean, cache_objects,
                      drop_local, fingerprint, remote_objects)
from conftest import BIN, dvc, git_commit
from servers import CEPH_SCRIPT, ceph_missing, ceph_rgw, isolate_aws

pytestmark = [pytest.mark.ceph, pytest.mark.slow]

if ceph_missing():
    pytest.skip(ceph_missing(), allow_module_level=True)


@pytest.fixture
def rgw(monkeypatch, tmp_path_factory):
    isolate_aws(monkeypatch, tmp_path_factory.mktemp("aws"))
    # Short path: Ceph's admin sockets are UNIX sockets (108-byte path limit).
    workdir = Path(f"/tmp/llmpipe-ceph-{os.getpid()}-{time.monotonic_ns() % 10**6}")
    with ceph_rgw(workdir) as server:
        yield server


def test_rgw_round_trip_survives_a_gateway_crash_mid_push(repo_copy, rgw):
    repo = repo_copy
    add_blobs(repo, count=48, size=256 * 1024)
    bucket = rgw.create_bucket("llmpipe-warm")
    # What README "Warm storage" shows for Ceph RGW: endpoint + region committed, keys local.
    dvc(repo, "remote", "add", "-d", "ceph", f"s3://{bucket}/llmpipe/cache")
    dvc(repo, "remote", "modify", "ceph", "endpointurl", rgw.endpoint)
    dvc(repo, "remote", "modify", "ceph", "region", "us-east-1")
    dvc(repo, "remote", "modify", "--local", "ceph", "access_key_id", rgw.access_key)
    dvc(repo, "remote", "modify", "--local", "ceph", "secret_access_key", rgw.secret_key)
    git_commit(repo, "ceph remote")
    assert rgw.secret_key not in (repo / ".dvc" / "config").read_text()
    before = fingerprint(repo)

    # Crash the gateway (SIGKILL radosgw) while `dvc push` is uploading, one object at a time,
    # and bring it back at once, as an operator (or systemd) would. Objects already written stay
    # in the OSD; the push in flight retries or fails some files; a rerun completes.
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.Popen([str(BIN / "dvc"), "push", "-j", "1"], cwd=repo, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pidfile = rgw.workdir / "run" / "client.rgw.a.pid"
    try:
        deadline = time.monotonic() + 180
        while len(rgw.keys(bucket)) < 8:
            assert proc.poll() is None, f"push ended before the crash:\n{proc.stdout.read()}"
            assert time.monotonic() < deadline, "no objects reached the RGW in 180 s"
            time.sleep(0.05)
        crashed_pid = int(pidfile.read_text())
        os.kill(crashed_pid, signal.SIGKILL)
        assert proc.poll() is None, "the push must still be running when the gateway dies"
        subprocess.run(["bash", str(CEPH_SCRIPT), "restart-rgw", str(rgw.workdir)], check=True,
                       capture_output=True, timeout=180)
        assert int(pidfile.read_text()) != crashed_pid
        partial = remote_objects(rgw.keys(bucket))
        proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()

    dvc(repo, "push")
    pushed = remote_objects(rgw.keys(bucket))
    assert 0 < len(partial) < len(pushed) and partial <= pushed
    assert_remote_in_sync(repo)

    drop_local(repo)
    dvc(repo, "pull")
    assert fingerprint(repo) == before
    assert cache_objects(repo) == pushed
    assert_workspace_clean(repo)
