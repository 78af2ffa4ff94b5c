"""English prose that ships with every Python install: the stdlib's own docstrings, docs text and comments.

The built-in sample corpus (`sample.py`) is made of this prose. We never import a stdlib module
(importing runs code and differs by platform); we parse each `.py` file with `ast` in sorted path
order and take:
  * module, class and function docstrings (`ast.get_docstring`), each one passage,
  * the long string constants of `pydoc_data/topics.py`, which hold the text of the language
    reference that `help()` shows (~0.6 MB of English on CPython 3.11), and
  * the file's full-line `#` comments (outside string literals), runs of comment lines joined
    into paragraphs, a blank `#` line between paragraphs: one passage per file.

Only prose paragraphs survive: at least 8 words, ending in terminal punctuation, mostly letters,
no doctest or indented code lines. Each paragraph is in the pool at most once, and a paragraph
sharing any 13-word n-gram (whitespace words, counting the n-grams that run on from the
passage's previous kept paragraph) with the pool so far is dropped too, so two documents built
from different paragraphs practically never share a 13-gram: the train/val leakage check
(`leakage.py`, GPT-3's 13-gram test) sees only the overlaps the generator plants on purpose.

The pool depends on the Python version (docstrings change between releases): same Python, same
pool, byte for byte. On CPython 3.11 it is ~11,500 paragraphs, ~1.6 MB, parsed in ~3-4 s.
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
NGRAM = 13  # words; paragraphs sharing an n-gram this long with an earlier one are dropped
_COMMENT = re.compile(r"[ \t]*#+ ?")  # then the rest of the line, trailing blanks cut


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


def _docstrings(tree: ast.AST, is_topics: bool) -> tuple[list[str], set[int]]:
    """(docstrings, line numbers inside multi-line string literals) of one parsed file."""
    docs, in_string = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.end_lineno and node.end_lineno > node.lineno:
                in_string.update(range(node.lineno, node.end_lineno + 1))
            if is_topics and len(node.value) > 200:  # help topics: every long string is documentation
                docs.append(node.value)
        elif not is_topics and isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                                 ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc:
                docs.append(doc)
    return docs, in_string


def comment_text(source: str, skip: set[int] = frozenset()) -> str:
    """The full-line `#` comments of a source file as docstring-like text for `prose_paragraphs`.

    A run of comment lines is one block; a blank `#` line or any code line ends a paragraph.
    Lines in `skip` (1-based; those inside string literals) are not comments.
    """
    lines: list[str] = []
    for i, line in enumerate(source.splitlines(), 1):
        m = None if i in skip else _COMMENT.match(line)
        text = line[m.end():].rstrip() if m else ""
        if text or (lines and lines[-1]):
            lines.append(text)
    return "\n".join(lines)


def _new_grams(words: list[str], seen: set[tuple[str, ...]]) -> set[tuple[str, ...]] | None:
    """The word NGRAM-grams of `words`, or None when one of them is already in `seen`."""
    grams = {tuple(words[i:i + NGRAM]) for i in range(len(words) - NGRAM + 1)}
    return None if grams & seen else grams


@functools.lru_cache(maxsize=1)
def passages(root: str | None = None) -> tuple[tuple[str, ...], ...]:
    """The prose pool: passages (tuples of paragraphs) in deterministic order, no paragraph
    repeated and no 13-word n-gram in two paragraphs."""
    base = Path(root) if root else stdlib_dir()
    seen: set[str] = set()
    grams: set[tuple[str, ...]] = set()
    pool = []
    for path in _py_files(base):
        try:
            raw = path.read_bytes()
            tree = ast.parse(raw, filename=str(path))
        except (SyntaxError, ValueError, OSError):
            continue  # e.g. a lib2to3 fixture written in Python 2: not our prose
        docs, in_string = _docstrings(tree, path.name == "topics.py" and path.parent.name == "pydoc_data")
        docs.append(comment_text(raw.decode("utf-8", "replace"), in_string))
        for doc in docs:
            kept, tail = [], []  # tail: the passage's last NGRAM-1 words, since documents use
            for para in prose_paragraphs(doc):  # consecutive paragraphs and n-grams span them
                words = tail + para.split()
                new = None if para in seen else _new_grams(words, grams)
                if new is not None:
                    seen.add(para)
                    grams |= new
                    kept.append(para)
                    tail = words[-(NGRAM - 1):]
            if kept:
                pool.append(tuple(kept))
    if sum(len(p) for ps in pool for p in ps) < 200_000:
        raise RuntimeError(f"{base}: found too little docstring prose for the sample corpus "
                           f"({len(pool)} passages); is this a full CPython standard library?")
    return tuple(pool)
