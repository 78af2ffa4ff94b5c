"""Warm storage on a directory remote (a CephFS / NFS mount in real life): round trip, pulling
only what a machine needs, and `dvc gc` keeping the remote bounded."""
from __future__ import annotations

import random

import pytest
import yaml

from _warmkit import (BLOB_DIR, add_blobs, assert_remote_in_sync, assert_workspace_clean,
                      cache_objects, cached_outputs, drop_local, fingerprint)
from conftest import dvc, git_commit

pytestmark = pytest.mark.slow


def dir_objects(remote) -> set[str]:
    """Content hashes stored in a directory remote (`files/md5/XX/YYYY...`)."""
    root = remote / "files" / "md5"
    return {p.parent.name + p.name for p in root.glob("*/*") if p.is_file()}


@pytest.fixture
def path_remote(repo_copy, tmp_path):
    remote = tmp_path / "warm"  # in real life: /mnt/cephfs/llmpipe-cache
    dvc(repo_copy, "remote", "add", "-d", "warm", str(remote))
    git_commit(repo_copy, "warm remote")
    return remote


def test_path_remote_round_trip_is_byte_identical(repo_copy, path_remote):
    repo = repo_copy
    before = fingerprint(repo)
    dvc(repo, "push")
    pushed = dir_objects(path_remote)
    assert pushed and pushed <= cache_objects(repo)
    assert_remote_in_sync(repo)

    drop_local(repo)
    assert not (repo / ".dvc" / "cache").exists()
    dvc(repo, "pull")
    assert fingerprint(repo) == before
    assert cache_objects(repo) == pushed
    assert_workspace_clean(repo)


def stage_outs(repo, stage: str) -> list[str]:
    """Cached outputs that dvc.lock records for one stage."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    cached = set(cached_outputs(repo))
    return sorted(o["path"] for o in lock[stage].get("outs", []) if o["path"] in cached)


def test_second_machine_pulls_only_what_it_names(repo_copy, path_remote):
    """`dvc pull train` fetches the model, `dvc pull data/mix` the token mix: nothing else."""
    repo = repo_copy
    dvc(repo, "push")
    everything = cached_outputs(repo)
    drop_local(repo)

    want_train = stage_outs(repo, "train")
    assert "runs/train/model.safetensors" in want_train
    dvc(repo, "pull", "train")
    present = {p for p in everything if (repo / p).exists()}
    assert present == set(want_train)

    # By path: data/mix is one directory output, so a training box pulls just the token mix.
    mix = stage_outs(repo, "mix")
    assert mix == ["data/mix"]
    dvc(repo, "pull", "data/mix")
    present = {p for p in everything if (repo / p).exists()}
    assert present == set(want_train) | set(mix)
    assert (repo / "data/mix/train.bin").stat().st_size > 0


def test_gc_cloud_drops_objects_no_commit_uses(repo_copy, path_remote):
    """Old versions pile up on the remote until `dvc gc --cloud` prunes what no kept commit uses."""
    repo = repo_copy
    add_blobs(repo, count=6, size=64 * 1024, seed=1)
    dvc(repo, "push")
    v1 = dir_objects(path_remote)

    # A new version of one blob: the old object stays on the remote after the push.
    (repo / BLOB_DIR / "blob-000.bin").write_bytes(random.Random(2).randbytes(64 * 1024))
    dvc(repo, "add", BLOB_DIR)
    git_commit(repo, "blobs v2")
    dvc(repo, "push")
    v2_all = dir_objects(path_remote)
    assert v1 < v2_all

    # Keep everything any commit uses: nothing goes.
    dvc(repo, "gc", "--all-commits", "--cloud", "--force")
    assert dir_objects(path_remote) == v2_all

    # Keep only the workspace: v1's blob-000 and v1's directory listing go, the rest stays.
    dvc(repo, "gc", "--workspace", "--cloud", "--force")
    kept = dir_objects(path_remote)
    assert kept < v2_all
    assert len(v2_all - kept) == 2  # old blob-000 + old data/blobs .dir manifest
    assert_remote_in_sync(repo)  # ... and what the workspace uses is all still there
    before = fingerprint(repo)
    drop_local(repo)
    dvc(repo, "pull")
    assert fingerprint(repo) == before
    assert_workspace_clean(repo)
