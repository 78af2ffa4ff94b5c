"""Typed, strict view of params.yaml.

One loader for the whole file: every section is a dataclass whose fields are the only keys
allowed. Unknown keys, wrong types and out-of-range values raise `ParamsError` (a ValueError)
naming the key path and what is allowed, e.g. ``mix.weights.c4: must be >= 0, got -0.1``.

Stage scripts call `load_params()` (which validates the whole file, so a typo anywhere fails
fast) and then read their own section. A section's `__post_init__` does the range checks;
its error message is prefixed with the key path by the loader.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml


class ParamsError(ValueError):
    """A params.yaml problem; the message starts with the key path."""


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


# --------------------------------------------------------------------------- sections

SourceKind = Literal["c4", "wikipedia", "gutenberg", "fineweb"]


@dataclass
class SourceParams:
    """One input corpus (`sources.SRC`)."""

    kind: SourceKind
    """Which per-source cleaner and filter set applies."""
    uri: str
    """`sample://KIND` (built-in offline corpus), a local file/dir/glob, or `hf://datasets/...`."""
    format: Literal["auto", "parquet", "jsonl", "txt"] = "auto"
    """File format; `auto` picks from the extension (.parquet, .jsonl, .jsonl.gz, .json.gz, .txt)."""
    text_field: str = "text"
    id_field: Optional[str] = None
    """Column holding a stable id; None -> sha256 of the text (content id)."""
    url_field: Optional[str] = None
    meta_fields: list[str] = field(default_factory=list)
    """Extra columns kept as JSON in `meta` (e.g. title, timestamp)."""
    txt_mode: Literal["file", "paragraphs"] = "file"
    """For .txt: one document per file, or one per blank-line-separated block."""
    max_docs: Optional[int] = None
    on_bad_record: Literal["fail", "skip"] = "fail"
    sample_docs: int = 0
    """For sample:// only: number of documents to generate (0 -> the generator's default)."""

    def __post_init__(self) -> None:
        check_positive(self.max_docs, "max_docs")
        check_nonneg(self.sample_docs, "sample_docs")
        check(bool(self.uri), "uri", "must be a non-empty string")


@dataclass
class SplitParams:
    """Train/val split by a hash of the document id, decided once in `tokenize`."""

    val_fraction: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        check(0.0 < self.val_fraction < 1.0, "val_fraction", f"must be in (0, 1), got {self.val_fraction}")


# Sections below are owned by the stages that read them; each may grow fields.

@dataclass
class CleanParams:
    """Cleaner switches and signal settings used by `clean@SRC` (expensive, cached)."""

    jobs: int = 0
    """Worker processes; 0 -> all cores."""

    def __post_init__(self) -> None:
        check_nonneg(self.jobs, "jobs")


@dataclass
class FilterParams:
    """Thresholds applied by `filter@SRC` to stored signals. `null` switches a rule off."""

    keep_rejects: bool = False
    global_: dict[str, Any] = field(default_factory=dict)
    c4: dict[str, Any] = field(default_factory=dict)
    wikipedia: dict[str, Any] = field(default_factory=dict)
    gutenberg: dict[str, Any] = field(default_factory=dict)
    fineweb: dict[str, Any] = field(default_factory=dict)


@dataclass
class DedupParams:
    ngram: int = 5
    num_perm: int = 128
    threshold: float = 0.8
    bands: Optional[int] = None
    rows: Optional[int] = None
    priority: list[str] = field(default_factory=list)
    seed: int = 1

    def __post_init__(self) -> None:
        check_positive(self.ngram, "ngram")
        check_positive(self.num_perm, "num_perm")
        check_fraction(self.threshold, "threshold", open_low=True)


@dataclass
class TokenizerParams:
    vocab_size: int = 8000
    sample_chars: int = 5_000_000
    sample_weights: dict[str, float] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        check(self.vocab_size >= 256, "vocab_size", f"must be >= 256, got {self.vocab_size}")
        check_positive(self.sample_chars, "sample_chars")
        for k, w in self.sample_weights.items():
            check(w >= 0, f"sample_weights.{k}", f"must be >= 0, got {w}")


@dataclass
class MixParams:
    weights: dict[str, float] = field(default_factory=dict)
    train_tokens: int = 1_000_000
    val_tokens: int = 100_000
    seed: int = 0
    on_short: Literal["repeat", "renormalize", "fail"] = "repeat"
    tolerance: float = 0.01
    max_val_overlap: float = 0.01

    def __post_init__(self) -> None:
        for k, w in self.weights.items():
            check(w >= 0, f"weights.{k}", f"must be >= 0, got {w}")
        check_positive(self.train_tokens, "train_tokens")
        check_nonneg(self.val_tokens, "val_tokens")


@dataclass
class ModelParams:
    preset: str = "tiny"


@dataclass
class TrainParams:
    tokens: int = 1_000_000
    lr: float = 3e-3
    seed: int = 0


@dataclass
class CostParams:
    hourly_rate: float = 0.0
    max_cost: float = 1.0
    num_devices: int = 1
    require_benchmark: bool = True


@dataclass
class BenchParams:
    steps: int = 10


@dataclass
class EvalParams:
    max_tokens: int = 0


# Keys that are Python keywords are spelled with a trailing underscore in the dataclass.
_KEYWORD_KEYS = {"global": "global_"}


@dataclass
class Params:
    sources: dict[str, SourceParams]
    split: SplitParams = field(default_factory=SplitParams)
    clean: CleanParams = field(default_factory=CleanParams)
    filter: FilterParams = field(default_factory=FilterParams)
    dedup: DedupParams = field(default_factory=DedupParams)
    tokenizer: TokenizerParams = field(default_factory=TokenizerParams)
    mix: MixParams = field(default_factory=MixParams)
    model: ModelParams = field(default_factory=ModelParams)
    train: TrainParams = field(default_factory=TrainParams)
    cost: CostParams = field(default_factory=CostParams)
    bench: BenchParams = field(default_factory=BenchParams)
    eval: EvalParams = field(default_factory=EvalParams)

    def __post_init__(self) -> None:
        check(len(self.sources) > 0, "sources", "must name at least one source")
        names = set(self.sources)
        for section, weights in (("mix.weights", self.mix.weights),
                                 ("tokenizer.sample_weights", self.tokenizer.sample_weights)):
            for k in weights:
                check(k in names, f"{section}.{k}", f"is not a source; sources are {sorted(names)}")
        for k in self.dedup.priority:
            check(k in names, "dedup.priority", f"{k!r} is not a source; sources are {sorted(names)}")


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
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"{path}: expected a number, got {value!r}")
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
        return cls(**kwargs)
    except ParamsError as e:
        raise ParamsError(f"{_join(path, str(e))}" if path else str(e)) from None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def load_params(path: str | Path = "params.yaml") -> Params:
    """Load and validate the whole params file."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: not found (run from the repo root, or pass --params)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from None
    try:
        return from_dict(Params, data, "")
    except ParamsError as e:
        raise ParamsError(f"{path}: {e}") from None


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
