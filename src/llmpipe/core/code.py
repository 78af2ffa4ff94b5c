"""What code a stage runs: the static import closure of a stage script, and its fingerprint.

`closure(file)` is every project file (under `src/llmpipe/` and `stages/`) that importing `file`
can execute, found statically: `import` / `from ... import` statements anywhere in a file
(function-level imports included, so lazy imports count), with each imported package's
`__init__.py`, and every subpackage of a package that discovers its subpackages at run time
(`DISCOVERS`). `scripts/code_deps.py` writes it into dvc.yaml as each stage's code deps;
`fingerprint(script)` hashes the same files, so a sharded stage (core/shards.py) redoes its
shards when, and only when, the code that makes them changed.
"""
from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
ROOTS = {"llmpipe": ROOT / "src" / "llmpipe", "stages": ROOT / "stages"}
SKIP = {"src/llmpipe/__init__.py"}

# Packages that import their subpackages by discovery (pkgutil) or by name at run time
# (`kinds.text(kind)`), which `ast` cannot see: a stage that imports one depends on its whole
# folder, one dep line that also covers a kind added later (and names no kind in dvc.yaml).
DISCOVERS = {"llmpipe.data.kinds"}
COLLAPSE = ["src/llmpipe/data/kinds"]


def module_file(name: str) -> Path | None:
    """`llmpipe.data.mix` -> its .py file (or package __init__.py); None outside the project."""
    top, *rest = name.split(".")
    if top not in ROOTS:
        return None
    base = ROOTS[top].joinpath(*rest)
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def module_name(path: Path) -> str:
    for top, root in ROOTS.items():
        if path.is_relative_to(root):
            parts = [top, *path.relative_to(root).with_suffix("").parts]
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    raise ValueError(path)


def _discovered(name: str) -> set[str]:
    base = module_file(name)
    if name not in DISCOVERS or base is None:
        return set()
    return {f"{name}.{d.name}" for d in sorted(base.parent.iterdir())
            if d.is_dir() and (d / "__init__.py").is_file()}


def _imported(path: Path) -> set[str]:
    """Module names a file imports (absolute, relative resolved; `from X import Y` tries X.Y)."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names.add(mod)
            names.update(f"{mod}.{a.name}" for a in node.names)
    return names | {sub for n in names for sub in _discovered(n)} | _discovered(me)


@lru_cache(maxsize=None)
def closure(path: Path) -> frozenset[Path]:
    """Every project file importing `path` executes (itself, imports, their packages); reaching a
    discovering package (`COLLAPSE`) takes every .py file under its folder, since modules there
    are imported by name at run time (`kinds.text(kind)` loads `kinds/KIND/text.py`)."""
    seen: set[Path] = set()
    todo = [path]
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        for folder in COLLAPSE:
            base = ROOT / folder
            if f.is_relative_to(base):
                todo.extend(p for p in sorted(base.rglob("*.py")) if "__pycache__" not in p.parts)
        for name in _imported(f):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__
                target = module_file(".".join(parts[:i]))
                if target is not None and target not in seen:
                    todo.append(target)
    return frozenset(seen)


@lru_cache(maxsize=None)
def fingerprint(module: str) -> str:
    """sha256 over the path and bytes of every file in the closure of `module` (`stages.clean`)."""
    h = hashlib.sha256()
    start = module_file(module)
    if start is None:  # no stages/ beside src/ (an installed package): the whole package counts
        start = ROOTS["llmpipe"] / "__init__.py"
        files = sorted(ROOTS["llmpipe"].rglob("*.py"))
    else:
        files = sorted(closure(start))
    for f in files:
        rel = f.relative_to(ROOT).as_posix()
        if rel in SKIP:
            continue
        h.update(rel.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()
