"""Atomic outputs on a real full disk (a 64 KiB tmpfs), fsync before rename, and stale temps of
killed runs: removed for the output being written when their process is gone, kept otherwise,
and invisible to git and DVC."""
from __future__ import annotations

import errno
import gc
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from _cleankit import BASE, token_inputs, write_ingested
from conftest import BIN, REPO_ROOT, run
from llmpipe.core import atomic
from llmpipe.core.atomic import atomic_path, write_json
from llmpipe.data.table import TableWriter, write_docs
from llmpipe.data.encode import tokenize_source
from llmpipe.data.tokens import SplitWriter

WORDS = sorted(set(BASE.split()))


@pytest.fixture
def small_disk(tmp_path):
    """A real 64 KiB tmpfs (root only). Unmounting fails if a writer left a file open on it."""
    d = tmp_path / "small"
    d.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d)],
                       capture_output=True, text=True) if shutil.which("mount") else None
    if p is None or p.returncode:
        pytest.skip("cannot mount a 64 KiB tmpfs to fill (needs root and the mount binary): "
                    + (p.stderr.strip() if p else "no `mount`"))
    try:
        yield d
    finally:
        gc.collect()
        if subprocess.run(["umount", str(d)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(d)], check=True)
            raise AssertionError(f"{d}: busy at unmount: a writer left a file open")


def prose_rows(n: int, seed: int = 0) -> list[dict]:
    """Distinct documents of shuffled prose words (their MinHash signatures differ: incompressible)."""
    rng = random.Random(seed)
    return [{"id": f"d{i}", "source": "c4", "text": " ".join(rng.choices(WORDS, k=120)) + ".",
             "url": f"https://example.org/{i}", "meta": None} for i in range(n)]


def hex_rows(n: int, start: int = 0) -> dict:
    """Columns of n rows whose text (sha256 hex) zstd cannot shrink much: ~40 bytes a row on disk."""
    import hashlib
    text = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(start, start + n)]
    return {"id": [str(i) for i in range(start, start + n)], "source": ["s"] * n, "text": text,
            "url": [None] * n, "meta": [None] * n}


def assert_enospc_naming(e: pytest.ExceptionInfo, out: Path) -> None:
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(out), repr(e.value)


def test_table_writer_full_disk_at_the_final_flush_renames_nothing(small_disk):
    """Fewer rows than a row group: everything is written by __exit__'s flush and footer, where
    the failure used to be dropped and the partial temp renamed into place."""
    out = small_disk / "t.parquet"
    with pytest.raises(OSError) as e:
        with TableWriter(out) as w:
            w.write(hex_rows(2000))  # < ROW_GROUP_SIZE: nothing reaches the disk before __exit__
    assert os.listdir(small_disk) == []
    assert_enospc_naming(e, out)


def test_table_writer_full_disk_mid_write_keeps_the_previous_output(small_disk):
    out = small_disk / "t.parquet"
    write_docs(out, [{"id": "a", "source": "s", "text": "old"}])
    before = out.read_bytes()
    with pytest.raises(OSError) as e:
        with TableWriter(out) as w:
            for lo in range(0, 20_000, 1000):  # several row groups: the disk fills inside write()
                w.write(hex_rows(1000, lo))
    assert os.listdir(small_disk) == ["t.parquet"] and out.read_bytes() == before
    assert_enospc_naming(e, out)


def test_write_json_full_disk(small_disk):
    out = small_disk / "r.json"
    write_json(out, {"ok": 1})
    with pytest.raises(OSError) as e:
        write_json(out, {"big": "x" * 200_000})
    assert os.listdir(small_disk) == ["r.json"] and json.loads(out.read_text()) == {"ok": 1}
    assert_enospc_naming(e, out)


def test_split_writer_full_disk(small_disk):
    out = small_disk / "tok"
    toks = np.tile(np.array([5, 6, 7, 3], np.uint16), 10_000)  # 80 KB > the disk
    with pytest.raises(OSError) as e:
        with atomic_path(out) as tmp:
            tmp.mkdir()
            with SplitWriter(tmp, "train", np.uint16) as w:
                for part in np.split(toks, 10):
                    w.add(part, np.full(1000, 4), np.full(1000, 9), ["x"] * 1000, ["s"] * 1000)
                w.close()
    assert os.listdir(small_disk) == []
    assert_enospc_naming(e, out)


def test_tokenize_full_disk(small_disk, tmp_path, capfd):
    clean, masks, spm = token_inputs(tmp_path)
    out = small_disk / "a"
    with pytest.raises(OSError) as e:
        tokenize_source(clean, masks, spm, out, source="a", val_fraction=0.3, seed=0, jobs=1)
    assert os.listdir(small_disk) == []
    assert_enospc_naming(e, out)
    gc.collect()  # a file object left open would now fail its flush and print "Exception ignored"
    assert "Exception ignored" not in capfd.readouterr().err


def test_clean_stage_on_a_full_disk_says_one_line_and_exits_2(small_disk, tmp_path):
    src = write_ingested(tmp_path / "in", prose_rows(300))  # a shard directory, as ingest writes it
    out = small_disk / "x"
    p = run([sys.executable, "-m", "stages.clean", "--source", "c4", "--in", str(src), "--out", str(out),
             "--params", str(REPO_ROOT / "params.yaml"), "--jobs", "1"], REPO_ROOT, check=False)
    assert p.returncode == 2, p.stderr
    assert os.listdir(small_disk) == []  # was: a 65,536-byte shard without a footer
    lines = [ln for ln in p.stderr.replace("\r", "\n").splitlines() if ln.strip() and "clean c4:" not in ln]
    assert lines == [f"clean@c4: error: {out}: No space left on device: free disk space (or point the "
                     "outputs at a bigger disk) and rerun"], p.stderr


def test_a_failing_fsync_removes_the_temp(tmp_path, monkeypatch):
    """Network filesystems report a full disk at fsync; tmpfs never does, so inject it there."""
    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(atomic.os, "fsync", fsync)
    for out in (tmp_path / "r.json", tmp_path / "d"):
        with pytest.raises(OSError) as e:
            with atomic_path(out) as tmp:
                if out.suffix:
                    tmp.write_text("{}")
                else:
                    tmp.mkdir()
                    (tmp / "f").write_text("x")
        assert_enospc_naming(e, out)
    assert os.listdir(tmp_path) == []


def test_data_is_synced_before_the_rename_and_the_rename_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(a, b):
        events.append(("replace", str(a)))
        real_replace(a, b)
    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    out = tmp_path / "d"
    with atomic_path(out) as tmp:
        tmp.mkdir()
        (tmp / "sub").mkdir()
        (tmp / "sub/f.bin").write_bytes(b"x")
    tmp = str(tmp_path / f".d.tmp-{os.getpid()}")  # the temp naming convention
    assert events == [("fsync", f"{tmp}/sub/f.bin"), ("fsync", f"{tmp}/sub"), ("fsync", tmp),
                      ("replace", tmp), ("fsync", str(tmp_path))]


def test_a_keyboard_interrupt_at_close_removes_the_temp(tmp_path, monkeypatch):
    """Ctrl-C just as the footer is written (an injected interrupt in the real writer's close)."""
    out = tmp_path / "t.parquet"

    class Interrupted(pq.ParquetWriter):
        def close(self):
            super().close()
            raise KeyboardInterrupt
    monkeypatch.setattr(pq, "ParquetWriter", Interrupted)
    with pytest.raises(KeyboardInterrupt):
        with TableWriter(out) as w:
            w.write(hex_rows(10))
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- stale temps

@pytest.fixture
def pids():
    """(a dead PID, a live PID): a child that exited and was reaped, and one still sleeping."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "60"])
    try:
        yield dead.pid, live.pid
    finally:
        live.kill()
        live.wait()


def plant(p: Path, as_dir: bool = False) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    if as_dir:
        p.mkdir()
        (p / "train.bin").write_bytes(b"\0" * (1 << 20))  # a 1 MB partial train.bin
    else:
        p.write_bytes(b"PAR1 partial")
    return p


def test_stage_removes_only_its_outputs_stale_temps(tmp_path, pids):
    dead, live = pids
    d = tmp_path / "data/clean"
    stale = plant(d / f".c4.tmp-{dead}", as_dir=True)  # a killed run's partial shard directory
    kept = [plant(d / n) for n in (
        f".c4.tmp-{live}",                 # a concurrent run's temp
        f".wikipedia.tmp-{dead}",          # another output's temp
        f".c4.tmp-{dead}.bak",             # a user's file that only looks similar
        f"c4.tmp-{dead}", f".c4.tmp-x{dead}", ".c4.tmp-", ".c4.tmp-0",
        f".c4.parquet.tmp-{dead}")]        # the temp of a (pre-shards) c4.parquet
    src = write_ingested(tmp_path / "data/ingested/c4", prose_rows(20))
    from stages.clean import main
    assert main(["--source", "c4", "--in", str(src), "--out", str(d / "c4"),
                 "--params", str(REPO_ROOT / "params.yaml"), "--jobs", "1"]) == 0
    assert not stale.exists() and all(p.exists() for p in kept)
    assert sorted(os.listdir(d)) == sorted(["c4", *(p.name for p in kept)])


def test_tokenize_removes_a_stale_temp_directory(tmp_path, pids):
    dead, live = pids
    clean, masks, spm = token_inputs(tmp_path)
    tokens = tmp_path / "data/tokens"
    stale = plant(tokens / f".a.tmp-{dead}", as_dir=True)
    kept = [plant(tokens / f".a.tmp-{live}", as_dir=True), plant(tokens / f".b.tmp-{dead}", as_dir=True)]
    tokenize_source(clean, masks, spm, tokens / "a", source="a", val_fraction=0.3, seed=0, jobs=1)
    assert not stale.exists() and all((p / "train.bin").stat().st_size == 1 << 20 for p in kept)
    assert sorted(os.listdir(tokens)) == sorted(["a", *(p.name for p in kept)])


def test_remove_stale_temps_of_a_directory_output_and_of_this_process(tmp_path, pids):
    dead, live = pids
    mine = plant(tmp_path / f".mix.tmp-{os.getpid()}", as_dir=True)  # this process: never in use here
    stale = plant(tmp_path / f".mix.tmp-{dead}", as_dir=True)
    other = plant(tmp_path / f".mix.tmp-{live}", as_dir=True)
    assert atomic.remove_stale_temps(tmp_path / "mix") == sorted([mine, stale])
    assert os.listdir(tmp_path) == [other.name]
    assert atomic.remove_stale_temps(tmp_path / "absent-dir/mix") == []


def test_temps_are_invisible_to_git(tmp_path):
    shutil.copy(REPO_ROOT / ".gitignore", tmp_path / ".gitignore")
    for p in ("data/clean/.c4.parquet.tmp-9566", "data/.mix.tmp-12408/train.bin",
              "data/tokens/.c4.tmp-12026/.train.docs.parquet.tmp-12026", "data/clean/c4.parquet.tmp-1"):
        plant(tmp_path / p)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    st = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=tmp_path,
                        check=True, capture_output=True, text=True).stdout
    assert st.splitlines() == ["?? .gitignore", "?? data/clean/c4.parquet.tmp-1"]  # not our pattern


def test_temps_inside_a_dvc_output_are_not_part_of_it(tmp_path):
    """A kill while saving a checkpoint leaves runs/train/ckpt/.step_N.tmp-PID inside a
    persisted DVC output directory; DVC must not hash it into the output."""
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    run([str(BIN / "dvc"), "init", "-q"], tmp_path)
    with open(tmp_path / ".dvcignore", "a") as f:
        f.write((REPO_ROOT / ".dvcignore").read_text())
    plant(tmp_path / "ckpt/step_00000010/meta.json")
    plant(tmp_path / "ckpt/.step_00000020.tmp-4242", as_dir=True)
    run([str(BIN / "dvc"), "add", "-q", "ckpt"], tmp_path)
    assert "nfiles: 1\n" in (tmp_path / "ckpt.dvc").read_text()
