"""Warm storage on S3: real `dvc push`/`dvc pull` against a real S3 server process (moto_server).

Each test starts its own server on a free 127.0.0.1 port, works on a private copy of the built
pipeline repo (`repo_copy`), and keeps credentials out of committed files: they go only into
`.dvc/config.local` (`dvc remote modify --local`) or the environment.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from _warmkit import (add_blobs, assert_remote_in_sync, assert_workspace_clean, cache_objects,
                      cached_outputs, committed_text, drop_local, fingerprint, git_clone,
                      remote_objects, tracked_by_git)
from conftest import BIN, dvc, git_commit, stages_ran
from servers import isolate_aws, moto_s3

pytestmark = pytest.mark.slow

PREFIX = "llmpipe/cache"  # objects live under s3://BUCKET/PREFIX/files/md5/..


@pytest.fixture
def s3(monkeypatch, tmp_path):
    isolate_aws(monkeypatch, tmp_path)
    with moto_s3() as server:
        yield server


def add_s3_remote(repo, server, bucket: str, local_keys: bool = True) -> None:
    """What README "Warm storage" tells users to run (endpoint committed, keys local-only)."""
    dvc(repo, "remote", "add", "-d", "warm", f"s3://{bucket}/{PREFIX}")
    dvc(repo, "remote", "modify", "warm", "endpointurl", server.endpoint)
    if local_keys:
        dvc(repo, "remote", "modify", "--local", "warm", "access_key_id", server.access_key)
        dvc(repo, "remote", "modify", "--local", "warm", "secret_access_key", server.secret_key)


def test_push_delete_pull_restores_every_output_byte_identical(repo_copy, s3):
    repo = repo_copy
    bucket = s3.create_bucket("llmpipe-warm")
    add_s3_remote(repo, s3, bucket)
    git_commit(repo, "warm remote")

    # The keys are in .dvc/config.local (git-ignored), never in the committed config.
    for text in ((repo / ".dvc" / "config").read_text(), committed_text(repo, ".dvc/config")):
        assert s3.endpoint in text
        assert s3.secret_key not in text and s3.access_key not in text
    assert s3.secret_key in (repo / ".dvc" / "config.local").read_text()
    assert ".dvc/config.local" not in tracked_by_git(repo)

    before = fingerprint(repo)
    cached = cached_outputs(repo)
    assert cached, "the pipeline produced no cached outputs to push"
    dvc(repo, "push")
    pushed = remote_objects(s3.keys(bucket))
    assert pushed and pushed <= cache_objects(repo)
    assert_remote_in_sync(repo)

    assert drop_local(repo) == cached
    assert not any((repo / p).exists() for p in cached)
    missing = dvc(repo, "status", "--json").stdout
    assert all(p in missing for p in cached), missing

    dvc(repo, "pull")
    assert fingerprint(repo) == before
    assert cache_objects(repo) == pushed  # exactly what the workspace needs, nothing else
    assert_workspace_clean(repo)
    assert_remote_in_sync(repo)


def test_missing_credentials_and_missing_bucket_fail_clearly(repo_copy, s3):
    """What a user sees before the bucket exists, and without keys; then env-only keys work."""
    repo = repo_copy
    add_s3_remote(repo, s3, "llmpipe-not-created-yet", local_keys=False)
    assert not (repo / ".dvc" / "config.local").exists()

    p = dvc(repo, "push", check=False)
    assert p.returncode != 0
    assert "Unable to locate credentials" in p.stderr + p.stdout

    p = dvc(repo, "push", check=False, env=s3.env())
    assert p.returncode != 0
    err = p.stderr + p.stdout
    assert "The specified bucket does not exist" in err and "NoSuchBucket" in err, err
    assert [b["Name"] for b in s3.client().list_buckets()["Buckets"]] == [], "push created a bucket"

    s3.create_bucket("llmpipe-not-created-yet")
    dvc(repo, "push", env=s3.env())
    assert remote_objects(s3.keys("llmpipe-not-created-yet")) <= cache_objects(repo)
    assert_remote_in_sync(repo, env=s3.env())


def wait_for_objects(server, bucket: str, at_least: int, proc: subprocess.Popen,
                     timeout: float = 120) -> int:
    """Poll the bucket until it holds `at_least` objects; fail if the push ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = len(server.keys(bucket))
        if n >= at_least:
            return n
        assert proc.poll() is None, (
            f"dvc push finished (rc={proc.returncode}) with only {n} objects before it could be "
            f"interrupted:\n{proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.02)
    raise AssertionError(f"no {at_least} objects in {bucket} after {timeout}s")


def test_interrupted_push_resumes_and_fresh_clone_pulls_everything(repo_copy, s3, tmp_path):
    repo = repo_copy
    add_blobs(repo, count=48, size=256 * 1024)  # 12 MiB in 48 incompressible files
    bucket = s3.create_bucket("llmpipe-warm")
    add_s3_remote(repo, s3, bucket)
    git_commit(repo, "warm remote")
    before = fingerprint(repo)

    # One upload at a time so the push is still running when we pull the plug on the client.
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.Popen([str(BIN / "dvc"), "push", "-j", "1"], cwd=repo, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        wait_for_objects(s3, bucket, 8, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the client dies mid-push: no cleanup, no retry
        proc.wait(timeout=30)
    partial = remote_objects(s3.keys(bucket))
    p = dvc(repo, "status", "--cloud", "--json", check=False)
    assert p.stdout.strip() not in ("", "{}"), "dvc status -c should list what is not pushed yet"

    # Rerun: the missing objects go up and the remote then has everything the workspace uses.
    dvc(repo, "push")
    total = remote_objects(s3.keys(bucket))
    assert 0 < len(partial) < len(total) and partial <= total, (len(partial), len(total))
    assert_remote_in_sync(repo)

    # A second machine: git clone (no data, no cache), local keys, pull.
    clone = git_clone(repo, tmp_path / "clone")
    assert not (clone / ".dvc" / "config.local").exists()
    assert not any((clone / p).exists() for p in cached_outputs(clone))
    dvc(clone, "remote", "modify", "--local", "warm", "access_key_id", s3.access_key)
    dvc(clone, "remote", "modify", "--local", "warm", "secret_access_key", s3.secret_key)
    dvc(clone, "pull")
    assert fingerprint(clone) == before
    assert_workspace_clean(clone)
    p = dvc(clone, "repro")
    assert stages_ran(p) == set(), p.stdout
