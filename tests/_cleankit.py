"""Helpers for the clean/filter tests: hand-written prose and a one-document filter run."""
from __future__ import annotations

import dataclasses
import itertools

import pyarrow as pa

from llmpipe.data.clean import pipeline, rules, signals
from llmpipe.params import CleanParams, FilterParams

# Hand-written English prose: 3 paragraphs, ~200 words, no repeated 5-gram, every line ends a
# sentence. It passes every default rule of every kind.
BASE = (
    "The old lighthouse stood at the edge of the harbour for more than a century. Sailors "
    "trusted its beam on winter nights, when fog rolled in from the open sea and the rocks "
    "below were hidden from view. A keeper lived in the small cottage beside it with his "
    "family, and he climbed the spiral stairs every evening to light the lamp.\n\n"
    "When the town council decided to automate the light, many residents were unhappy. They "
    "argued that a machine could not notice a ship in trouble or row out to help a stranded "
    "crew. After several long meetings, the council agreed to keep the cottage open as a small "
    "museum, where visitors could learn about the history of the coast.\n\n"
    "Today the museum welcomes school groups throughout the year. Children examine brass "
    "instruments, read letters written by former keepers, and look through a telescope toward "
    "the distant islands. Volunteers explain how the lens focused a weak flame into a beam "
    "visible for twenty miles, and they describe storms that tested the courage of everyone "
    "who worked there."
)
assert len(BASE) > 1000


def synthetic_words(n: int, syllables: int = 3) -> list[str]:
    """n distinct lowercase pseudo-words (no digits), deterministic."""
    syl = ["ka", "lo", "mi", "ne", "ru", "ta", "so", "vi", "de", "pu", "ho", "ga"]
    words = ("".join(p) for p in itertools.product(syl, repeat=syllables))
    return list(itertools.islice(words, n))


def filter_params(kind_off: str | None = None, **overrides) -> FilterParams:
    """Default FilterParams; `kind_off` switches off that kind's own rules; overrides are
    `section__field=value` (section `global` for filter.global)."""
    fp = FilterParams()
    if kind_off:
        sec = getattr(fp, kind_off)
        for f in dataclasses.fields(sec):
            if f.name.startswith(("min_", "max_")):
                setattr(sec, f.name, None)
    for key, value in overrides.items():
        section, name = key.split("__")
        setattr(getattr(fp, "global_" if section == "global" else section), name, value)
    return fp


def only_repetition(rule: str, value: float | None = None) -> dict:
    """Overrides switching off every global repetition rule but `rule` (optionally set to value)."""
    fields = [f.name for f in dataclasses.fields(FilterParams().global_)
              if f.name.startswith(("max_dup_", "max_top_"))]
    out = {f"global__{f}": None for f in fields if f != rule}
    if value is not None:
        out[f"global__{rule}"] = value
    return out


def signal_table(texts: list[str], kind: str, clean: CleanParams | None = None) -> pa.Table:
    clean = clean or CleanParams()
    cols = pipeline.process_batch(texts, kind, clean, ngram=5, num_perm=8, seed=1)
    names = list(signals.signal_types(kind)) + ["chars_raw"]
    names += [f"removed_{c}" for c in pipeline.cleaner_names(kind)]
    return pa.table({k: cols[k] for k in names})


def reason(text: str, kind: str, fp: FilterParams | None = None,
           clean: CleanParams | None = None) -> str | None:
    """The drop reason of one document under `fp` (default params), or None if kept."""
    fp = fp or FilterParams()
    rs = rules.rules_for(fp, kind)
    code = int(rules.apply_rules(signal_table([text], kind, clean), rs)[0])
    return None if code == rules.KEPT else rs[code - 1].reason
