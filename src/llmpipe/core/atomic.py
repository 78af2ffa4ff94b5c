"""Atomic outputs: write to a temp name beside the target, rename only when complete.

Every final output of llmpipe (a file or a directory) is written through `atomic_path`:

    with atomic_path("data/clean/c4.parquet") as tmp:   # tmp = data/clean/.c4.parquet.tmp-PID
        write(tmp)                                       # a file, or a directory (tmp.mkdir())

On success the temp is flushed to disk (every file, and every directory of a tree, is fsynced),
renamed onto the target with `os.replace` (atomic on one filesystem) and the parent directory is
fsynced, so the rename itself survives a power cut. On any exception (a full disk at write, close
or fsync time, Ctrl-C, a bug) the temp is removed and nothing appears under the final name; a
previous output there is kept. A device error (no space, quota, I/O) is re-raised as an OSError
with the same errno and the final output's path as filename, so the stage's one-line error
(`llmpipe.core.errors`) names what could not be written.

Temp names follow one convention, `.NAME.tmp-PID` next to the output NAME (files and directories
alike; `.gitignore` and `.dvcignore` ignore them). A run that was killed (SIGKILL, OOM, power) can
leave one behind; `remove_stale_temps(path)` removes the temps of exactly that output whose PID is
not a live process (or is this process), and `atomic_path` calls it on entry. Temps of other
outputs, of live processes (a concurrent run) and names that merely look similar are kept.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable

from llmpipe.core.log import get_logger

log = get_logger("atomic")

TEMP_TAG = ".tmp-"
# errors of the device rather than of a path: they arrive without a filename (a write or close on
# an open file), so the re-raised OSError names the output instead
_DEVICE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}


def temp_path(path: str | Path, pid: int | None = None) -> Path:
    """The temp name of `path` for process `pid` (default: this one): `.NAME.tmp-PID` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}{TEMP_TAG}{os.getpid() if pid is None else pid}")


def temp_pid(path: str | Path, name: str) -> int | None:
    """The PID in `name` if it is exactly a temp name of `path` (`.NAME.tmp-DIGITS`), else None."""
    m = re.fullmatch(re.escape(f".{Path(path).name}{TEMP_TAG}") + "([1-9][0-9]*)", name)
    return int(m.group(1)) if m else None


def pid_alive(pid: int) -> bool:
    """Whether a process `pid` exists on this machine (a zombie counts; so does another user's)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Remove the temps of output `path` left by dead processes (and by this one); returns them.

    Only entries of `path`'s directory named exactly `.NAME.tmp-PID` count, and only when PID is
    not a live process: a concurrent run's temp is never touched. (PIDs are of this machine: two
    machines writing the same output on a shared filesystem at once are not supported.)
    """
    path = Path(path)
    try:
        entries = sorted(os.scandir(path.parent), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for e in entries:
        pid = temp_pid(path, e.name)
        if pid is None or (pid != os.getpid() and pid_alive(pid)):
            continue
        _remove(Path(e.path))
        removed.append(Path(e.path))
    if removed:
        log.info("%s: removed %d stale temp(s) left by an interrupted run: %s", path, len(removed),
                 ", ".join(p.name for p in removed))
    return removed


class atomic_path:
    """`with atomic_path(out) as tmp:` write the file or directory `tmp`; it becomes `out` only
    if the block completes and the data reached the disk (see the module doc)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.tmp = temp_path(self.path)

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.path)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> bool:
        raised_here = False
        if exc is None:
            try:
                self._commit()
                return False
            except BaseException as e:  # noqa: BLE001 - removed below, then re-raised
                exc, raised_here = e, True
        self._abort()
        named = self._named(exc)
        if named is not exc:
            raise named from exc
        if raised_here:
            raise exc
        return False

    def _commit(self) -> None:
        if not (self.tmp.exists() or self.tmp.is_symlink()):
            raise RuntimeError(f"{self.path}: the writer created nothing at {self.tmp}")
        _seal(self.tmp)
        if self.path.is_dir() and not self.path.is_symlink():
            shutil.rmtree(self.path)
        os.replace(self.tmp, self.path)
        _fsync(self.path.parent)

    def _abort(self) -> None:
        try:
            _remove(self.tmp)
        except OSError as e:  # keep the original error; the next run removes it as stale
            log.warning("%s: could not remove the temp %s: %s", self.path, self.tmp, e)

    def _named(self, exc: BaseException) -> BaseException:
        """A device error about the temp (or no file) as the same errno naming the final output."""
        if not isinstance(exc, OSError) or exc.errno not in _DEVICE_ERRNOS:
            return exc
        where = exc.filename
        if where is None or isinstance(where, (str, os.PathLike)) and _inside(Path(where), self.tmp):
            return OSError(exc.errno, os.strerror(exc.errno), str(self.path))
        return exc


def close_all(closers: list[Callable[[], Any]], exc: BaseException | None = None) -> BaseException | None:
    """Call every closer even when one fails; return `exc` or else the first exception raised
    (so a writer's `__exit__` can hand a failure at close time on to its `atomic_path`)."""
    for close in closers:
        try:
            close()
        except BaseException as e:  # noqa: BLE001 - returned to the caller, which raises it
            exc = exc or e
    return exc


def exit_atomic(out: atomic_path, exc: BaseException | None, body_exc: BaseException | None) -> None:
    """Leave `out` with `exc`: commit if None, else remove the temp; raise `exc` unless it is the
    exception of the with-block (`body_exc`), which Python re-raises itself."""
    out.__exit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)
    if exc is not None and exc is not body_exc:
        raise exc


def _inside(p: Path, d: Path) -> bool:
    return p == d or d in p.parents


def _seal(p: Path) -> None:
    """fsync every file (and directory) of `p`, giving files the umask's mode on the way."""
    mask = os.umask(0)
    os.umask(mask)
    if p.is_symlink():
        return
    if p.is_file():
        p.chmod(0o666 & ~mask)
        _fsync(p)
        return
    for root, dirs, files in os.walk(p, topdown=False):
        for name in files:
            f = Path(root) / name
            if not f.is_symlink():
                # some writers (safetensors' save_file) create 0600 files, which a teammate
                # reading the shared DVC cache could not open; a file with other links is one
                # reused from a previous output or DVC's cache (core/shards.py): its mode is theirs
                if f.stat().st_nlink == 1:
                    f.chmod(0o666 & ~mask)
                _fsync(f)
        _fsync(Path(root))


def _fsync(p: Path) -> None:
    fd = os.open(p, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write `obj` as pretty, key-sorted JSON (stable bytes for DVC metrics)."""
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    write_text(path, text)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
