"""Keep each dvc.yaml stage's code dependencies equal to what its script imports.

    python scripts/code_deps.py           # exit 1 and list the stages whose code deps are stale
    python scripts/code_deps.py --write   # rewrite them in dvc.yaml (`make deps`)

A stage's code deps are its script (`cmd: python -m stages.NAME`) and every file of `src/` and
`stages/` it can import, found statically: the closure of `import` / `from ... import` statements
(function-level imports included, so lazy imports count), with each imported package's
`__init__.py`. `src/llmpipe/__init__.py` holds only the version and is left out. Data deps and
everything else in `deps:` are kept as written; the code lines are replaced in place, sorted.
tests/test_pipeline_contract.py checks dvc.yaml against this and the modules a real run imported.
"""
from __future__ import annotations

import argparse
import ast
import re
import sys
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROOTS = {"llmpipe": ROOT / "src" / "llmpipe", "stages": ROOT / "stages"}
SKIP = {"src/llmpipe/__init__.py"}


def _module_file(name: str) -> Path | None:
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


def _module_name(path: Path) -> str:
    for top, root in ROOTS.items():
        if path.is_relative_to(root):
            parts = [top, *path.relative_to(root).with_suffix("").parts]
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    raise ValueError(path)


# Packages that import their subpackages by discovery (pkgutil) or by name at run time
# (`kinds.text(kind)`), which `ast` cannot see: a stage that imports one depends on its whole
# folder, one dep line that also covers a kind added later (and names no kind in dvc.yaml).
DISCOVERS = {"llmpipe.data.kinds"}
COLLAPSE = ["src/llmpipe/data/kinds"]


def _discovered(name: str) -> set[str]:
    base = _module_file(name)
    if name not in DISCOVERS or base is None:
        return set()
    return {f"{name}.{d.name}" for d in sorted(base.parent.iterdir())
            if d.is_dir() and (d / "__init__.py").is_file()}


def _imported(path: Path) -> set[str]:
    """Module names a file imports (absolute, relative resolved; `from X import Y` tries X.Y)."""
    me = _module_name(path)
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
    """Every project file importing `path` executes (itself, imports, their packages)."""
    seen: set[Path] = set()
    todo = [path]
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        for name in _imported(f):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__
                target = _module_file(".".join(parts[:i]))
                if target is not None and target not in seen:
                    todo.append(target)
    return frozenset(seen)


def stage_code_deps(script: str) -> list[str]:
    files = closure(_module_file(script))
    rel = {str(f.relative_to(ROOT)) for f in files} - SKIP
    rel = {next((c for c in COLLAPSE if r.startswith(c + "/")), r) for r in rel}
    return sorted(rel, key=lambda r: (not r.startswith("stages/"), r))


_STAGE = re.compile(r"^  ([A-Za-z0-9_-]+):\n", re.M)
_CMD = re.compile(r"python -m (stages\.[A-Za-z0-9_]+)")
_CODE = re.compile(r"^(\s*)- ((?:src|stages)/[^\s$]+\.py|" + "|".join(map(re.escape, COLLAPSE))
                   + r")\s*(#.*)?$")  # templated lines (${...}) are kept


def rewrite(text: str) -> tuple[str, list[str]]:
    """dvc.yaml text with every stage's code deps regenerated; and the names of changed stages."""
    head, sep, body = text.partition("\nstages:\n")
    starts = [m.start() for m in _STAGE.finditer(body)] + [len(body)]
    out, changed = [body[: starts[0]]], []
    for a, b in zip(starts, starts[1:]):
        block = body[a:b]
        name = _STAGE.match(block).group(1)
        cmd = _CMD.search(block)
        if cmd is None:
            out.append(block)
            continue
        lines = block.split("\n")
        code_at = [i for i, ln in enumerate(lines) if _CODE.match(ln)]
        if not code_at:
            out.append(block)
            continue
        indent = _CODE.match(lines[code_at[0]]).group(1)
        want = [f"{indent}- {d}" for d in stage_code_deps(cmd.group(1))]
        have = [lines[i] for i in code_at]
        if [h.split("#")[0].rstrip() for h in have] != want:
            changed.append(name)
        keep = [ln for i, ln in enumerate(lines) if i not in set(code_at)]
        first = code_at[0]
        out.append("\n".join(keep[:first] + want + keep[first:]))
    return head + sep + "".join(out), changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="rewrite dvc.yaml")
    ap.add_argument("--dvc-yaml", type=Path, default=ROOT / "dvc.yaml")
    a = ap.parse_args(argv)
    new, changed = rewrite(a.dvc_yaml.read_text(encoding="utf-8"))
    if not changed:
        print("code_deps: dvc.yaml code deps are up to date", file=sys.stderr)
        return 0
    if a.write:
        a.dvc_yaml.write_text(new, encoding="utf-8")
        print(f"code_deps: rewrote the code deps of {', '.join(changed)}", file=sys.stderr)
        return 0
    print(f"code_deps: stale code deps in {', '.join(changed)}; run `make deps`", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
