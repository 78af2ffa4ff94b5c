"""Stage `params`: params.yaml cut into one small JSON file per key, which the other stages depend on.

    python -m stages.params --params params.yaml --out data/params

`data/params/KEY.json` holds the value of every key of params.yaml down to three levels
(`train.json`, `filter.global.json`, `sources.c4.kind.json`) as canonical JSON (sorted keys), one
line. A stage lists the files of the keys it reads among its deps instead of a DVC `params:`
list, because DVC parses params.yaml once per stage that has one (~13 ms each: the largest part
of a no-op `dvc repro` after DVC's own start); a file dep costs a stat. This stage tracks the whole
file as DVC params (`- params.yaml:`), so `dvc exp show`, `dvc params diff` and `dvc exp run -S`
see every param; it reruns on any value change (a comment edit reruns nothing), and a key whose
value is unchanged keeps its file's bytes, so an edit reruns exactly the stages that read that
key, as DVC's per-key params did (docs/ARCHITECTURE.md, "Exact dependencies").

The whole file is validated first (`llmpipe.params.load_params`), so a typo anywhere fails here,
with one line naming the key, before any stage runs. Keys that are not plain names (letters,
digits, `_`, `-`) get no file: no stage could name them.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Iterator

from llmpipe.core.atomic import atomic_path
from llmpipe.core.errors import entry
from llmpipe.core.log import get_logger
from llmpipe.params import load_params, read_params_tree

log = get_logger("params")

DEPTH = 3
_NAME = re.compile(r"[A-Za-z0-9_-]+")


def slices(tree: Any, depth: int = DEPTH, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    """(dotted key, value) for every key of the nested mapping `tree` down to `depth` levels."""
    if len(prefix) >= depth or not isinstance(tree, dict):
        return
    for k, v in tree.items():
        if not isinstance(k, str) or not _NAME.fullmatch(k):
            continue
        key = prefix + (k,)
        yield ".".join(key), v
        yield from slices(v, depth, key)


def encode(value: Any) -> str:
    """The file's text: canonical JSON of the value (sorted keys, no spaces), one line."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str) + "\n"


@entry("params")
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", required=True, help="output directory: one KEY.json per key")
    a = ap.parse_args(argv)
    tree = read_params_tree(a.params)
    load_params(a.params, tree)    # a bad value anywhere fails here, before any stage runs
    n = 0
    with atomic_path(Path(a.out)) as tmp:
        tmp.mkdir()
        for key, value in slices(tree or {}):
            (tmp / f"{key}.json").write_text(encode(value), encoding="utf-8")
            n += 1
    log.info("params: %d keys of %s -> %s", n, a.params, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
