"""The strict params loader core: sections, range checks, YAML 1.2 parsing, dataclass building.

Every section is a dataclass (a `Section`) whose fields are the only keys allowed. Unknown keys,
wrong types and out-of-range values raise `ParamsError` (a UserError) naming the key path and
what is allowed, e.g. ``mix.weights.c4: must be >= 0, got -0.1``. A section's `__post_init__`
does the range checks; the loader prefixes its message with the key path. Sections live beside
their owners (`llmpipe.data.config`, `llmpipe.train.config`, `llmpipe.eval.config`, each source
kind's package); `llmpipe.params` assembles the whole file.
"""
from __future__ import annotations

import atexit
import dataclasses
import json
import math
import os
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

from llmpipe.core.errors import UserError

class ParamsError(UserError, ValueError):
    """A params.yaml problem; the message starts with the key path."""



# --------------------------------------------------------------------------- read audit

_AUDIT_ENV = "LLMPIPE_AUDIT_DIR"
_accessed: set[str] | None = None  # dotted keys read, when auditing (tests/test_pipeline_contract.py)


class Section:
    """Base of every params section. When `LLMPIPE_AUDIT_DIR` is set, leaf reads are recorded
    (`filter.c4.min_alpha_ratio`), and at exit the process writes them with the llmpipe modules
    it imported, so a test can compare what each stage reads with what dvc.yaml declares."""

    _path: str = ""
    _live: bool = False  # set once the whole file is validated: validation reads are not audited

    def __getattribute__(self, name: str) -> Any:
        value = object.__getattribute__(self, name)
        if (_accessed is not None and not name.startswith("_") and name in type(self).__dataclass_fields__
                and object.__getattribute__(self, "_live")):
            key = _join(object.__getattribute__(self, "_path"), _public(name))
            if isinstance(value, dict) and any(isinstance(v, Section) for v in value.values()):
                _accessed.add(key + "[]")  # the set of names (e.g. which sources exist)
            elif not isinstance(value, Section):
                _accessed.add(key)
        return value


def _public(name: str) -> str:
    return {v: k for k, v in _KEYWORD_KEYS.items()}.get(name, name)


def _start_audit() -> None:
    global _accessed
    if _accessed is not None or not os.environ.get(_AUDIT_ENV):
        return
    _accessed = set()

    def dump() -> None:
        out = Path(os.environ[_AUDIT_ENV])
        out.mkdir(parents=True, exist_ok=True)
        mods = sorted(m.__file__ for k, m in list(sys.modules.items())
                      if k.startswith("llmpipe") and getattr(m, "__file__", None))
        rec = {"argv": sys.argv, "params": sorted(_accessed or ()), "modules": mods}
        (out / f"{os.getpid()}.json").write_text(json.dumps(rec, indent=1))

    atexit.register(dump)


# --------------------------------------------------------------------------- helpers for sections

def check(cond: bool, key: str, msg: str) -> None:
    """Range check inside __post_init__: raises with the field name, the loader adds the path."""
    if not cond:
        raise ParamsError(f"{key}: {msg}")


def check_fraction(value: float | None, key: str, *, open_low: bool = False) -> None:
    if value is None:
        return
    ok = (0.0 < value <= 1.0) if open_low else (0.0 <= value <= 1.0)
    check(ok, key, f"must be in {'(0, 1]' if open_low else '[0, 1]'}, got {value!r}")


def check_positive(value: float | int | None, key: str) -> None:
    if value is not None:
        check(value > 0, key, f"must be > 0, got {value!r}")


def check_nonneg(value: float | int | None, key: str) -> None:
    if value is not None:
        check(value >= 0, key, f"must be >= 0, got {value!r}")


def check_thresholds(section) -> None:
    """Every `min_*`/`max_*` threshold: >= 0, fractions (`*_ratio` shares) in [0, 1], min <= max.
    A section lists the `*_ratio` signals that are counts per word (may exceed 1) in its class
    attribute `unbounded_ratios`."""
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if not f.name.startswith(("min_", "max_")) or value is None:
            continue
        check_nonneg(value, f.name)
        if f.name.endswith("_ratio") and f.name[4:] not in getattr(section, "unbounded_ratios", ()):
            check_fraction(value, f.name)
        if f.name.startswith("min_"):
            hi = getattr(section, "max_" + f.name[4:], None)
            check(hi is None or value <= hi, f.name, f"must be <= max_{f.name[4:]} ({hi}), got {value}")



# Keys that are Python keywords are spelled with a trailing underscore in the dataclass.
_KEYWORD_KEYS = {"global": "global_"}



# --------------------------------------------------------------------------- the loader

def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Check `value` against the type hint `tp`, recursively; return the converted value."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        errors = []
        for a in non_none:
            try:
                return _convert(value, a, path)
            except ParamsError as e:
                errors.append(str(e))
        raise ParamsError(errors[0] if len(non_none) == 1 else
                          f"{path}: expected {' or '.join(_type_name(a) for a in non_none)} "
                          f"(or null), got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ParamsError(f"{path}: must be {_type_name(tp)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ParamsError(f"{path}: expected a list, got {value!r}")
        return [_convert(v, args[0], f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ParamsError(f"{path}: expected a mapping, got {value!r}")
        return {str(k): _convert(v, args[1], f"{path}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{path}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, float) and math.isfinite(value) and value == int(value):
            return int(value)  # `tokens: 1e9` (YAML 1.2 reads it as a float) is exactly 10**9
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"{path}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ParamsError(f"{path}: must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ParamsError(f"{path}: expected a string, got {value!r}")
        return value
    raise TypeError(f"params.py: unsupported type hint {tp!r} at {path}")  # programming error


def from_dict(cls: type, data: Any, path: str = ""):
    """Build dataclass `cls` from a mapping, strictly. `path` prefixes every error."""
    where = path or "params.yaml"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParamsError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    flds = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        name = _KEYWORD_KEYS.get(key, key)
        if name not in flds:
            allowed = ", ".join(sorted(k.rstrip("_") for k in flds))
            raise ParamsError(f"{_join(path, key)}: unknown key; allowed keys here: {allowed}")
        kwargs[name] = _convert(value, hints[name], _join(path, key))
    missing = [n for n, f in flds.items() if n not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]  # type: ignore[misc]
    if missing:
        raise ParamsError(f"{where}: missing required key(s): {', '.join(m.rstrip('_') for m in missing)}")
    try:
        obj = cls(**kwargs)
    except ParamsError as e:
        raise ParamsError(f"{_join(path, str(e))}" if path else str(e)) from None
    object.__setattr__(obj, "_path", path)
    return obj


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file as DVC does: YAML 1.2 (`6e-4`, `1e-05` and `1E3` are numbers, `.inf`
    is infinity, `yes`/`on` are strings) and a key given twice in one mapping is an error."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    path = Path(path)
    try:
        return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        dup = re.match(r'found duplicate key "(.*?)"', str(e.problem or ""))
        if dup:  # DVC refuses such a file too; PyYAML would silently keep the last value
            raise ParamsError(f"{where}: key {dup.group(1)!r} is given twice in one mapping; "
                              f"keep one") from None
        what = "; ".join(str(x) for x in (e.context, e.problem) if x)
        raise ParamsError(f"{where}: not valid YAML: {what}") from None
    except YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from None


def start_audit(params: Any) -> None:
    """After a whole file is validated: record the leaf keys read from now on (when auditing)."""
    _start_audit()
    if _accessed is not None:
        _set_live(params)


def _set_live(obj: Any) -> None:
    if isinstance(obj, Section):
        object.__setattr__(obj, "_live", True)
        for f in dataclasses.fields(obj):
            _set_live(object.__getattribute__(obj, f.name))
    elif isinstance(obj, dict):
        for v in obj.values():
            _set_live(v)


def as_dict(obj: Any) -> Any:
    """A section back as plain data (for reports and fingerprints); `global_` -> `global`."""
    if dataclasses.is_dataclass(obj):
        inv = {v: k for k, v in _KEYWORD_KEYS.items()}
        return {inv.get(f.name, f.name): as_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: as_dict(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [as_dict(v) for v in obj]
    return obj
