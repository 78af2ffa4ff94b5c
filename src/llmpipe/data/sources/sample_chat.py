"""The chat source of the sample corpus (`sample://chat`): question/answer conversations about
the standard library, built from what ships with Python (see `sample.py`).

Each conversation is about one function or method of a stdlib module whose whole docstring is
one short sentence ("Return the absolute path."): the user asks what it does and the assistant
answers with that sentence; some conversations go on with a question about its parameters
(answered from the parsed signature), some open with a system message. The short docstrings
are never in the prose pool (its paragraphs have at least 8 words), so no chat text is in another
sample source, and they are too short to share a 13-word n-gram with anything (the mix's
leakage check). Records: `id`, `messages` ([{role, content}], the SmolTalk / UltraChat layout),
and `planted` (`exact_dup`: a copy of an earlier conversation, ~3%, for dedup).

Deterministic: files in sorted path order, parsed with `ast` (never imported), choices from a
`random.Random` seeded by the sample seed.
"""
from __future__ import annotations

import ast
import functools
import random

from llmpipe.data.sources.prose import _py_files, stdlib_dir
from llmpipe.data.sources.sample import counts, plant

SYSTEM = ("You answer questions about the Python standard library.",
          "You are a concise assistant for Python programmers.")
ASK_WHAT = ("What does `{q}` do?", "In Python, what is `{q}` for?", "Can you tell me what `{q}` does?",
            "Explain `{q}` in one sentence.")
ASK_ARGS = ("What parameters does it take?", "Which arguments does `{q}` accept?", "And its parameters?")


@functools.lru_cache(maxsize=1)
def facts() -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """(qualified name, one-sentence docstring, parameter names) of stdlib functions and methods
    whose docstring is a single sentence of 3-7 words, in sorted file order, each name once."""
    root = stdlib_dir()
    out, seen = [], set()
    for path in _py_files(root):
        rel = path.relative_to(root).with_suffix("")
        module = ".".join(p for p in rel.parts if p != "__init__")
        if any(part.startswith("_") for part in module.split(".")):
            continue  # private modules
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, OSError):
            continue
        scopes = [(module, tree)] + [(f"{module}.{c.name}", c) for c in tree.body if isinstance(c, ast.ClassDef)
                                     and not c.name.startswith("_")]
        for prefix, scope in scopes:
            for fn in scope.body:
                if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) or fn.name.startswith("_"):
                    continue
                doc = (ast.get_docstring(fn) or "").strip()
                words = doc.split()
                if "\n" in doc or not 3 <= len(words) <= 7 or not doc.endswith(".") or not doc[0].isupper():
                    continue
                if not all(c.isalnum() or c in " ,.'-()" for c in doc):
                    continue
                q = f"{prefix}.{fn.name}()"
                if q in seen:
                    continue
                seen.add(q)
                a = fn.args
                params = [x.arg for x in (*a.posonlyargs, *a.args) if x.arg not in ("self", "cls")]
                params += [f"*{a.vararg.arg}"] if a.vararg else []
                params += [x.arg for x in a.kwonlyargs] + ([f"**{a.kwarg.arg}"] if a.kwarg else [])
                out.append((q, doc, tuple(params)))
    return tuple(out)


def _params_answer(q: str, params: tuple[str, ...]) -> str:
    if not params:
        return f"`{q}` takes no arguments."
    names = [f"`{p}`" for p in params]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"`{q}` takes {listed}."


def chat_records(n: int, seed: int) -> list[dict]:
    """`n` conversations (fewer when the functions run out), ~3% of them exact copies."""
    rng = random.Random(f"chat:{seed}")
    pool = list(facts())
    rng.shuffle(pool)
    c = counts(n)
    docs = []
    for q, doc, params in pool[:max(1, n - c)]:
        msgs = [{"role": "system", "content": rng.choice(SYSTEM)}] if rng.random() < 0.3 else []
        msgs += [{"role": "user", "content": rng.choice(ASK_WHAT).format(q=q)},
                 {"role": "assistant", "content": doc}]
        if rng.random() < 0.4:
            msgs += [{"role": "user", "content": rng.choice(ASK_ARGS).format(q=q)},
                     {"role": "assistant", "content": _params_answer(q, params)}]
        docs.append({"id": f"chat-{seed}-{len(docs):05d}", "messages": msgs})
    extra = []
    for k in range(c if docs else 0):
        i = rng.randrange(len(docs))
        extra.append(({"id": f"chat-{seed}-dup{k:03d}", "messages": docs[i]["messages"], "planted": "exact_dup"}, i))
    return plant(docs, extra, rng)[:n]
