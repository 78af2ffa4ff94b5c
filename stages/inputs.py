"""Stage `inputs`: index every source's input files, one small JSON file per source.

    python -m stages.inputs --out data/inputs

`data/inputs/SRC.json` holds the source's uri and, for local files, each file's path, size and
sha256 (`llmpipe.data.sources.input_index`); it is `ingest@SRC`'s DVC dependency in place of all
of `data/raw`, so a new file under `data/raw/fineweb` reruns `ingest@fineweb` only (the other
sources' indexes come out byte-identical). This stage depends on `data/raw` and the `sources`
params; sha256s are remembered by size, mtime and inode in `data/.inputs.state.json`, so an
unchanged file is not read again. Indexes of sources no longer in params are not written.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llmpipe.core.atomic import atomic_path, write_json
from llmpipe.core.errors import entry
from llmpipe.core.log import get_logger
from llmpipe.params import load_params
from llmpipe.data.sources import input_index
from llmpipe.data.sources.ingest import hash_memory

log = get_logger("inputs")


@entry("inputs")
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output directory: one SRC.json per source")
    ap.add_argument("--params", default="params.yaml")
    a = ap.parse_args(argv)

    params = load_params(a.params)
    out = Path(a.out)
    state_path, state = hash_memory(out)
    files = 0
    with atomic_path(out) as tmp:
        tmp.mkdir()
        for name, sp in params.sources.items():
            index = input_index(name, sp, state)
            files += len(index.get("files", []))
            write_json(tmp / f"{name}.json", index)
    if state:
        write_json(state_path, state)
    log.info("inputs: %d sources, %d local input files indexed -> %s", len(params.sources), files, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
