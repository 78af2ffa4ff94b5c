"""English prose that ships with every Python install: the stdlib's own docstrings and docs text.

The built-in sample corpus (`sample.py`) is made of this prose. We never import a stdlib module
(importing runs code and differs by platform); we parse each `.py` file with `ast` in sorted path
order and take:
  * module, class and function docstrings (`ast.get_docstring`), and
  * the long string constants of `pydoc_data/topics.py`, which hold the text of the language
    reference that `help()` shows (~0.6 MB of English on CPython 3.11).

Each docstring becomes a *passage* (a list of paragraphs). Only prose paragraphs survive: at least
8 words, ending in terminal punctuation, mostly letters, no doctest or indented code lines, and
each paragraph at most once in the whole pool (so nothing the sample generator builds is an
accidental duplicate of something else).

The pool depends on the Python version (docstrings change between releases): same Python, same
pool, byte for byte. On CPython 3.11 it is ~9,000 paragraphs, ~1.3 MB, parsed in ~3 s.
"""
from __future__ import annotations

import ast
import functools
import os
import re
import sysconfig
from pathlib import Path

# Directories that hold no user-facing prose (tests, vendored third-party packages).
_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
_CODE_LINE = re.compile(r"^\s*(>>>|\.\.\.|\$ |% )")
_UNDERLINE = re.compile(r"^\s*([-=~^*#])\1{2,}\s*$")
_PARA_SPLIT = re.compile(r"\n\s*\n")
MIN_WORDS = 8
MIN_ALPHA = 0.8  # share of letters and spaces in a kept paragraph


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _py_files(root: Path) -> list[Path]:
    """All stdlib .py files except tests and site-packages, in sorted relative-path order."""
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if x not in _SKIP_DIRS]
        out += [Path(d) / f for f in files if f.endswith(".py")]
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


def prose_paragraphs(doc: str) -> list[str]:
    """The prose paragraphs of one docstring, each unwrapped to a single line."""
    out = []
    for block in _PARA_SPLIT.split(doc):
        lines = block.strip("\n").splitlines()
        if not lines or any(_CODE_LINE.match(ln) or _UNDERLINE.match(ln) for ln in lines):
            continue
        if any(ln.startswith((" ", "\t")) for ln in lines[1:]) or lines[0].startswith("  "):
            continue  # indented: a code block or a definition list, not running prose
        para = " ".join(ln.strip() for ln in lines)
        if len(para.split()) < MIN_WORDS or para[-1] not in ".!?":
            continue
        if sum(c.isalpha() or c == " " for c in para) < MIN_ALPHA * len(para):
            continue
        out.append(para)
    return out


def _docstrings(tree: ast.AST, is_topics: bool) -> list[str]:
    if is_topics:  # a dict literal of help topics: every long string constant is documentation
        return [n.value for n in ast.walk(tree)
                if isinstance(n, ast.Constant) and isinstance(n.value, str) and len(n.value) > 200]
    docs = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc:
                docs.append(doc)
    return docs


@functools.lru_cache(maxsize=1)
def passages(root: str | None = None) -> tuple[tuple[str, ...], ...]:
    """The prose pool: passages (tuples of unique paragraphs) in deterministic order."""
    base = Path(root) if root else stdlib_dir()
    seen: set[str] = set()
    pool = []
    for path in _py_files(base):
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, OSError):
            continue  # e.g. a lib2to3 fixture written in Python 2: not our prose
        for doc in _docstrings(tree, path.name == "topics.py" and path.parent.name == "pydoc_data"):
            kept = []
            for para in prose_paragraphs(doc):
                if para not in seen:
                    seen.add(para)
                    kept.append(para)
            if kept:
                pool.append(tuple(kept))
    if sum(len(p) for ps in pool for p in ps) < 200_000:
        raise RuntimeError(f"{base}: found too little docstring prose for the sample corpus "
                           f"({len(pool)} passages); is this a full CPython standard library?")
    return tuple(pool)
