"""Source kinds: one package per kind in this folder, found when this module is imported.

A kind package `NAME/` holds everything about documents of that kind:
  * `__init__.py`: its params sections, typed with a docstring per field:
      - `CleanParams` (a `Section`): the switches of its cleaners, `clean.NAME` in params.yaml;
        leave it out when the kind has no cleaners of its own;
      - `FilterParams` (a `KindFilter`): its thresholds, `filter.NAME`; field order is rule
        order, and they run before `filter.global` (minus `skip_global`).
  * `text.py`: the code, imported only by `clean@SRC` for sources of this kind:
      - `CLEANERS`: cleaner names in the order they run (`removed_<name>` columns);
      - `SIGNALS`: signal column -> "int" | "float", in storage order;
      - `clean(text, params) -> (text, {cleaner: chars removed})`;
      - `signals(raw, text, words, lines) -> {signal: value}`;
      - optional `WHITESPACE = False`: the global whitespace cleaner leaves this kind alone.
Adding a kind is a new package here, its `clean.NAME` / `filter.NAME` sections in params.yaml
and its tests: every stage depends on this folder as a whole (dvc.yaml), so nothing else
changes. docs/ARCHITECTURE.md walks through it.
"""
from __future__ import annotations

import functools
import importlib
import pkgutil
from types import ModuleType

from llmpipe.core.errors import UserError


def _discover() -> dict[str, ModuleType]:
    kinds = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.ispkg:
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if not hasattr(mod, "FilterParams"):  # a programming error in the kind package
            raise TypeError(f"{mod.__name__}: a source kind package must define FilterParams")
        kinds[info.name] = mod
    return kinds


KINDS: dict[str, ModuleType] = _discover()


def names() -> list[str]:
    return list(KINDS)


def get(kind: str) -> ModuleType:
    """The declarations (params classes) of `kind`."""
    if kind not in KINDS:
        raise UserError(f"source kind {kind!r} is unknown; kinds are {', '.join(KINDS)}")
    return KINDS[kind]


@functools.lru_cache(maxsize=None)
def text(kind: str) -> ModuleType:
    """The cleaners and signals of `kind` (its `text.py`); cached, as clean calls it per document."""
    get(kind)
    return importlib.import_module(f"{__name__}.{kind}.text")

