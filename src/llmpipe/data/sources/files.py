"""Resolve a source `uri` to the list of input files, through fsspec.

One code path for every filesystem: a local path (file, directory or glob, relative to the
working directory), `file://...`, `memory://...` (tests) and `hf://datasets/OWNER/NAME@REV/...`
(huggingface_hub's HfFileSystem, streamed, nothing downloaded up front). A directory is searched
recursively; hidden files and files of other formats (e.g. a README.md beside the data) are
ignored. Files come back in sorted path order, so documents keep a stable order.
"""
from __future__ import annotations

from llmpipe.core.errors import UserError

import os
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

# extension -> format; checked longest first, so ".jsonl.gz" wins over ".gz"
EXTENSIONS = {
    ".parquet": "parquet",
    ".jsonl": "jsonl", ".jsonl.gz": "jsonl", ".json.gz": "jsonl", ".ndjson": "jsonl",
    ".jsonl.bz2": "jsonl", ".jsonl.xz": "jsonl", ".jsonl.zst": "jsonl", ".json.zst": "jsonl",
    ".txt": "txt", ".txt.gz": "txt",
}
_GLOB_CHARS = "*?["


class SourceError(UserError, ValueError):
    """A source problem the user must fix; the message names the file (and line/row) and rule."""


class SourceNotFound(SourceError, FileNotFoundError):
    """The uri names nothing that exists."""


@dataclass(frozen=True)
class InputFile:
    fs: Any        # fsspec filesystem
    path: str      # path on `fs`
    rel: str       # path relative to the uri's base (stable, used in ids and messages)
    format: str    # parquet | jsonl | txt
    display: str   # how error messages name the file (cwd-relative path, or the URL)


def file_format(path: str) -> str | None:
    low = path.lower()
    for ext in sorted(EXTENSIONS, key=len, reverse=True):
        if low.endswith(ext):
            return EXTENSIONS[ext]
    return None


def resolve(uri: str, fmt: str = "auto") -> list[InputFile]:
    """Input files of `uri` in sorted order; raises SourceNotFound / SourceError when none."""
    fs, path = fsspec.core.url_to_fs(uri)
    path = path.rstrip("/") or path
    if any(c in path for c in _GLOB_CHARS):
        base = path[: min(path.find(c) for c in _GLOB_CHARS if c in path)].rsplit("/", 1)[0]
        found = sorted(p for p in fs.glob(path) if fs.isfile(p))
        if not found:
            raise SourceNotFound(f"{uri}: the glob matches no files")
    elif fs.isdir(path):
        base = path
        found = sorted(fs.find(path))
        if not found:
            raise SourceError(f"{uri}: empty source: the directory holds no files")
    elif fs.exists(path):
        base, found = path.rsplit("/", 1)[0] if "/" in path else "", [path]
    else:
        raise SourceNotFound(f"{uri}: no such file or directory")

    files = []
    for p in found:
        rel = p[len(base):].lstrip("/") if base and p.startswith(base) else p.rsplit("/", 1)[-1]
        if any(part.startswith(".") for part in rel.split("/")):
            continue
        f = file_format(p) if fmt == "auto" else (fmt if _matches(p, fmt) else None)
        if f is None and len(found) == 1 and fmt != "auto":
            f = fmt  # a single file named explicitly: trust the declared format
        if f is not None:
            files.append(InputFile(fs, p, rel, f, _display(fs, p)))
    if not files:
        exts = ", ".join(e for e, f in EXTENSIONS.items() if fmt in ("auto", f))
        raise SourceError(f"{uri}: empty source: no input files with a known extension ({exts})")
    return files


def _display(fs: Any, path: str) -> str:
    """How messages name a file: relative to the working directory when local, else its URL."""
    if isinstance(fs, LocalFileSystem):
        rel = os.path.relpath(path)
        return path if rel.startswith("..") else rel
    return fs.unstrip_protocol(path)


def _matches(path: str, fmt: str) -> bool:
    return file_format(path) == fmt
