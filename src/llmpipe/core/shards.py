"""Sharded outputs: a stage's output is a directory of shards plus `manifest.json`, rebuilt shard
by shard, so that a new input file costs its own shard and nothing else.

A source's documents live in shards: one per input file (a large file is cut into pieces of
`sources.SRC.shard_mb` of text, with stable names `FILE.00000`, `FILE.00001`, ...). Every
per-source stage writes one directory (one DVC output) holding, per shard, its files, and a
manifest listing the *units* of work in order:

    {"format": "llmpipe.shards/1", "stage": "clean", "source": "c4", ...,
     "units": [{"key": "part-01.00000", "fingerprint": "…",
                "files": {"part-01.00000.parquet": {"bytes": …, "sha256": …}, …},
                "shards": [{"name": "part-01.00000", "docs": 812}],
                "stats": {…counts the stage's report adds up…}}, …]}

A unit is what is redone or reused as a whole: one shard, or for `ingest` one input file (which
may make several shards). Its `fingerprint` is a sha256 of everything its bytes depend on: the
code of the stage (`core.code.fingerprint`), the params it reads and the sha256 of its inputs. A
stage run (`ShardedDir`) rebuilds only the units whose fingerprint is new; every other unit's
files are hard-linked, unchanged, from the previous output of the same directory (a link, not a
copy: no bytes are written, and DVC, whose cache the link points into, hashes nothing new).

Where the previous output is found (`Previous`):
1. the directory itself, when it is still there (a run outside `dvc repro`);
2. DVC's cache: `dvc repro` deletes a stage's outputs before running it, so the previous version
   is read from the cache through `dvc.lock` (the out's `.dir` listing, then each file's object).
   With `cache.type: hardlink` (this repo's `.dvc/config`) a reused shard is the very inode the
   cache holds; with `copy`, a link into the cache is still made (read-only, like a hardlink
   checkout) and DVC hashes it once more.
Neither found (a fresh clone without `dvc pull`): every unit is built. The result is the same
bytes either way: reuse is an optimisation, never a different output.

Units are written straight into the temp directory of an `atomic_path`, so a killed or failed run
leaves nothing under the final name and a previous output stays intact. A run that is killed
(SIGKILL, OOM, power) or interrupted (Ctrl-C) keeps the units it finished in its temp folder, each
with a marker (`.units/KEY.json`); the next run of the same output takes over those whose
fingerprint still matches (logged as `reused (interrupted run)`), so a ten-hour `clean` killed
at hour nine redoes one hour, not ten.
"""
from __future__ import annotations

import configparser
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from llmpipe.core.atomic import atomic_path, pid_alive, sha256_file, temp_path, temp_pid
from llmpipe.core.errors import UserError
from llmpipe.core.log import get_logger

log = get_logger("shards")

FORMAT = "llmpipe.shards/1"
MANIFEST = "manifest.json"
UNITS = ".units"           # in a run's temp folder: one JSON per finished unit (for a rerun after a kill)
SALVAGE = ".salvage"       # suffix of an interrupted run's temp folder kept for the next run
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")
_TEMP = re.compile(r"\..+\.tmp-[1-9][0-9]*")  # `.NAME.tmp-PID` (core.atomic.temp_path)


def digest(*parts: Any) -> str:
    """sha256 of the canonical JSON of `parts` (sorted keys): a fingerprint of anything plain."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def shard_base(rel: str) -> str:
    """A file-name-safe, stable base for the shards of input file `rel` (`a/b/part-1.jsonl.gz` ->
    `a~b~part-1.jsonl.gz`); distinct inputs give distinct bases (the separator is not in names)."""
    return "~".join(_UNSAFE.sub("_", p) for p in rel.split("/") if p) or "input"


def shard_name(base: str, piece: int) -> str:
    return f"{base}.{piece:05d}"


# --------------------------------------------------------------------------- manifests

def read_manifest(out_dir: str | Path, rerun: str) -> dict:
    """The manifest of an upstream sharded directory, or a user error saying what to run."""
    p = Path(out_dir) / MANIFEST
    if not p.exists():
        raise FileNotFoundError(f"{p}: not found; did you run `dvc repro {rerun}`?")
    try:
        m = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{p}: not valid JSON ({e}); rerun `dvc repro {rerun}`") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT or not isinstance(m.get("units"), list):
        raise UserError(f"{p}: not a {FORMAT} manifest (an output of an older llmpipe?); "
                        f"rerun `dvc repro {rerun}`")
    return m


def publish_manifest(out_dir: str | Path, copy: str | Path | None) -> None:
    """Copy `out_dir`'s manifest.json to `copy` (written atomically), when one is given: a stage
    that reads every source depends on the folder of these copies (`data/manifests/STAGE/`, one
    small file per source) instead of the shard folders, so DVC checks ~4 files there instead of
    every shard file of every source on each `dvc repro` (docs/ARCHITECTURE.md). The manifest holds
    each file's size and sha256, so the copy changes exactly when the folder's bytes do."""
    if copy is None:
        return
    copy = Path(copy)
    copy.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(copy) as tmp:
        shutil.copyfile(Path(out_dir) / MANIFEST, tmp)


def shards(manifest: dict) -> list[dict]:
    """Every shard of a manifest in order: {name, docs, unit (its key), files and stats (of its unit)}."""
    return [{**s, "unit": u["key"], "files": u["files"], "stats": u["stats"]}
            for u in manifest["units"] for s in u["shards"]]


# --------------------------------------------------------------------------- previous output

def _repo_root(start: Path) -> Path | None:
    for d in (start, *start.parents):
        if (d / ".dvc").is_dir():
            return d
    return None


def _cache_dir(root: Path) -> Path:
    """DVC's local cache folder (`cache.dir` in .dvc/config(.local), else .dvc/cache)."""
    found = root / ".dvc" / "cache"
    for name in ("config", "config.local"):
        cfg = configparser.ConfigParser(strict=False, interpolation=None)
        try:
            cfg.read(root / ".dvc" / name, encoding="utf-8")
            d = cfg.get("cache", "dir", fallback=None)
        except (configparser.Error, UnicodeDecodeError):
            continue
        if d:
            found = (root / ".dvc" / d.strip().strip("'\"")).resolve()
    return found


def _object(cache: Path, md5: str) -> Path | None:
    for p in (cache / "files" / "md5" / md5[:2] / md5[2:], cache / md5[:2] / md5[2:]):  # DVC 3, 2
        if p.exists():
            return p
    return None


def _locked_listing(out_dir: Path) -> dict[str, Path] | None:
    """{relpath inside out_dir: cache object} of the version of out_dir recorded in dvc.lock."""
    root = _repo_root(out_dir.resolve().parent)
    if root is None or not (root / "dvc.lock").exists():
        return None
    try:
        rel = out_dir.resolve().relative_to(root).as_posix()
        import yaml
        lock = yaml.safe_load((root / "dvc.lock").read_text(encoding="utf-8")) or {}
    except Exception:  # noqa: BLE001 - an unreadable lock (or out of the repo) means no reuse, not an error
        return None
    cache = _cache_dir(root)
    for stage in (lock.get("stages") or {}).values():
        for out in (stage or {}).get("outs") or []:
            path = str(out.get("path", "")).rstrip("/")
            md5 = str(out.get("md5", ""))
            if not md5.endswith(".dir") or not (rel == path or rel.startswith(path + "/")):
                continue
            listing = _object(cache, md5)
            if listing is None:
                return None
            try:
                entries = json.loads(listing.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None
            prefix = "" if rel == path else rel[len(path) + 1:] + "/"
            found = {}
            for e in entries:
                rp = e.get("relpath", "")
                if rp.startswith(prefix) and (obj := _object(cache, e.get("md5", ""))) is not None:
                    found[rp[len(prefix):]] = obj
            return found
    return None


class Previous:
    """The units of the last output of `out_dir` that still exist (see the module doc)."""

    def __init__(self, out_dir: str | Path):
        out_dir = Path(out_dir)
        self.where, self.files, self.units = "none", {}, {}
        if (out_dir / MANIFEST).is_file():
            self.where = "workspace"
            self.files = {p.name: p for p in out_dir.iterdir() if p.is_file()}
        else:
            listing = _locked_listing(out_dir)
            if listing and MANIFEST in listing:
                self.where, self.files = "dvc cache", {k: v for k, v in listing.items() if "/" not in k}
        if MANIFEST in self.files:
            try:
                m = json.loads(self.files[MANIFEST].read_text(encoding="utf-8"))
                if m.get("format") == FORMAT:
                    self.units = {u["key"]: u for u in m["units"]}
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                self.units = {}

    def find(self, key: str, fingerprint: str) -> dict | None:
        """The previous unit `key` if it had this fingerprint and all its files are still there."""
        u = self.get(key)
        return u if u is not None and u.get("fingerprint") == fingerprint else None

    def get(self, key: str) -> dict | None:
        """The previous unit `key`, whatever its fingerprint, if all its files are still there
        (read them through `self.files[name]`: a stage may derive the new unit from the old one)."""
        u = self.units.get(key)
        if u is None:
            return None
        for name, f in u["files"].items():
            p = self.files.get(name)
            if p is None or p.stat().st_size != f["bytes"]:
                return None
        return u


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link src to dst (same filesystem); copy when links are impossible (another device)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


# --------------------------------------------------------------------------- writer

class ShardedDir:
    """Write a sharded output directory atomically, reusing unchanged units.

    >>> with ShardedDir(out, stage="clean", source="c4") as d:
    ...     for key, fp in units:
    ...         if d.reuse(key, fp) is None:
    ...             build(d.tmp / f"{key}.parquet")
    ...             d.add(key, fp, [f"{key}.parquet"], shards=[{"name": key, "docs": n}], stats={...})
    ...     manifest = d.finish(extra={...})
    """

    def __init__(self, out_dir: str | Path, *, stage: str, source: str | None = None):
        self.out_dir, self.stage, self.source = Path(out_dir), stage, source
        self.units: list[dict] = []
        self.reused: list[str] = []
        self.built: list[str] = []
        self.from_interrupted = 0  # of the reused units, those taken over from a killed run

    def __enter__(self) -> "ShardedDir":
        self.previous = Previous(self.out_dir)
        held = _hold_interrupted(self.out_dir)  # before the temp sweep below would delete it
        self._atomic = atomic_path(self.out_dir)
        self.tmp = self._atomic.__enter__()
        self.tmp.mkdir()
        (self.tmp / UNITS).mkdir()
        self.salvaged: dict[str, dict] = {}
        if held is not None:  # its finished units move into this run's temp folder
            for marker in sorted((held / UNITS).glob("*.json")):
                try:
                    u = json.loads(marker.read_text(encoding="utf-8"))
                    if all((held / f).stat().st_size == m["bytes"] for f, m in u["files"].items()):
                        for f in u["files"]:
                            os.replace(held / f, self.tmp / f)
                        self.salvaged[u["key"]] = u
                except (OSError, ValueError, KeyError, TypeError):
                    continue
            shutil.rmtree(held, ignore_errors=True)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if isinstance(exc, KeyboardInterrupt) and self.built and self.tmp.is_dir():
            # Ctrl-C: keep the finished units for the next run (a SIGKILL leaves them anyway)
            os.replace(self.tmp, self.tmp.with_name(self.tmp.name + SALVAGE))
        return self._atomic.__exit__(exc_type, exc, tb)

    def has(self, key: str, fingerprint: str) -> bool:
        """Whether unit `key` with this fingerprint can be reused (previous output or a killed run)."""
        s = self.salvaged.get(key)
        return (s is not None and s["fingerprint"] == fingerprint) or \
            self.previous.find(key, fingerprint) is not None

    def reuse(self, key: str, fingerprint: str) -> dict | None:
        """Link the previous unit `key` into this output if its fingerprint is unchanged (or take
        it over from an interrupted run of this output)."""
        s = self.salvaged.pop(key, None)
        if s is not None and s["fingerprint"] == fingerprint:
            self.units.append(s)
            self.reused.append(key)
            self.from_interrupted += 1
            return s
        if s is not None:  # made with other inputs: its files go before this unit is built
            for f in s["files"]:
                (self.tmp / f).unlink(missing_ok=True)
        u = self.previous.find(key, fingerprint)
        if u is None:
            return None
        for name in u["files"]:
            link_or_copy(self.previous.files[name], self.tmp / name)
        self.units.append(u)
        self.reused.append(key)
        return u

    def add(self, key: str, fingerprint: str, files: list[str], *, shards: list[dict],
            stats: dict | None = None) -> dict:
        """Record a unit just built into `self.tmp` (its files hashed here)."""
        stale = self.salvaged.pop(key, None)  # an interrupted run's version of it, not wanted
        for f in (stale or {}).get("files", {}):
            if f not in files:
                (self.tmp / f).unlink(missing_ok=True)
        u = {"key": key, "fingerprint": fingerprint,
             "files": {f: {"bytes": (self.tmp / f).stat().st_size, "sha256": sha256_file(self.tmp / f)}
                       for f in files},
             "shards": shards, "stats": stats or {}}
        self.units.append(u)
        self.built.append(key)
        marker = self.tmp / UNITS / f"{key}.json"  # after its files: a rerun after a kill takes it over
        marker.write_text(json.dumps(u, sort_keys=True), encoding="utf-8")
        return u

    def finish(self, **extra: Any) -> dict:
        """Write manifest.json (units in the order added) and return it."""
        for s in self.salvaged.values():  # an interrupted run's units this run did not want
            for f in s["files"]:
                (self.tmp / f).unlink(missing_ok=True)
        self.salvaged = {}
        shutil.rmtree(self.tmp / UNITS, ignore_errors=True)
        for e in self.tmp.iterdir():  # a dead task attempt's temp (another node's PID) is never output
            if _TEMP.fullmatch(e.name):
                shutil.rmtree(e) if e.is_dir() and not e.is_symlink() else e.unlink()
        names = [f for u in self.units for f in u["files"]]
        if len(names) != len(set(names)) or MANIFEST in names:
            raise AssertionError(f"{self.out_dir}: two units write the same file")
        m = {"format": FORMAT, "stage": self.stage, "source": self.source, **extra, "units": self.units}
        (self.tmp / MANIFEST).write_text(json.dumps(m, indent=1, sort_keys=True, ensure_ascii=False) + "\n",
                                         encoding="utf-8")
        return m

    def summary(self) -> str:
        """`3 units: 1 built, 2 reused (dvc cache)`."""
        total = len(self.built) + len(self.reused)
        took = self.from_interrupted
        places = ([self.previous.where] if len(self.reused) > took else []) + (["interrupted run"] if took else [])
        where = f" ({', '.join(places)})" if self.reused else ""
        return f"{total} shard unit{'s' if total != 1 else ''}: {len(self.built)} built, {len(self.reused)} reused{where}"


def _hold_interrupted(out_dir: Path) -> Path | None:
    """The temp folder of a dead run of `out_dir` with the most finished units, renamed to this
    process's `.NAME.tmp-PID.salvage` (the temp sweep keeps that name); other dead runs' salvage
    folders are removed. None when there is none."""
    parent = out_dir.parent
    if not parent.is_dir():
        return None
    found = []
    for e in os.scandir(parent):
        name = e.name[:-len(SALVAGE)] if e.name.endswith(SALVAGE) else e.name
        pid = temp_pid(out_dir, name)
        if pid is None or (pid != os.getpid() and pid_alive(pid)) or not e.is_dir():
            continue
        units = Path(e.path) / UNITS
        found.append((len(list(units.glob("*.json"))) if units.is_dir() else 0, e.name, Path(e.path)))
    found.sort(reverse=True)
    for _, name, path in found[1:]:
        if name.endswith(SALVAGE):
            shutil.rmtree(path, ignore_errors=True)
    if not found or not found[0][0]:
        return None
    held = temp_path(out_dir).with_name(temp_path(out_dir).name + SALVAGE)
    if found[0][2] != held:
        os.replace(found[0][2], held)
    log.info("%s: taking over the finished units of an interrupted run (%s)", out_dir, found[0][1])
    return held


def map_units(fn, calls: list[tuple], jobs: int, desc: str = "", unit: str = "shard", executor=None) -> list:
    """[fn(*args) for args in calls] on `executor` (`core.executor`; default: `jobs` worker
    processes of this machine, 0 = every core), results in order; a task's exception (a
    UserError included) is raised here."""
    from llmpipe.core.executor import LOCAL
    return (executor or LOCAL).map(fn, calls, jobs=jobs, desc=desc, unit=unit)


def add_up(parts: list[dict]) -> dict:
    """Sum reports key by key (numbers added, dicts merged recursively, other values: the first)."""
    out: dict = {}
    for p in parts:
        for k, v in p.items():
            if isinstance(v, bool) or not isinstance(v, (int, float, dict)):
                out.setdefault(k, v)
            elif isinstance(v, dict):
                out[k] = add_up([out.get(k, {}), v])
            else:
                out[k] = out.get(k, 0) + v
    return out
