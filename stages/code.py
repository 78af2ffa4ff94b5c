"""Stage `code`: what code each stage runs, one small JSON file per stage script.

    python -m stages.code --out data/code

`data/code/stages.NAME.json` lists every project file that `python -m stages.NAME` can execute
(the static import closure of `llmpipe.core.code`: imports anywhere in a file, package
`__init__`s, discovered kinds) with its sha256, and their combined fingerprint (the one sharded
stages put in each shard's fingerprint). Every other stage depends on its own file here instead
of on each code file: a code edit reruns this stage (under a second), and then exactly the stages
whose closure holds the edited file, as before; a no-op `dvc repro` checks one file per stage
instead of ~25 (docs/ARCHITECTURE.md, "Exact dependencies"). This stage depends on the folders
`src/llmpipe` and `stages` as a whole (bytecode is in .dvcignore).
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from llmpipe.core import code
from llmpipe.core.atomic import atomic_path, write_json
from llmpipe.core.errors import entry
from llmpipe.core.log import get_logger

log = get_logger("code")


def stage_modules() -> list[str]:
    """`stages.NAME` for every stage script in stages/ (not the package itself)."""
    return sorted(f"stages.{p.stem}" for p in code.ROOTS["stages"].glob("*.py") if p.stem != "__init__")


def record(module: str) -> dict:
    files = sorted(f.relative_to(code.ROOT).as_posix() for f in code.closure(code.module_file(module)))
    return {"module": module, "fingerprint": code.fingerprint(module),
            "files": {f: hashlib.sha256((code.ROOT / f).read_bytes()).hexdigest()
                      for f in files if f not in code.SKIP}}


@entry("code")
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output directory: one stages.NAME.json per stage script")
    a = ap.parse_args(argv)
    modules = stage_modules()
    with atomic_path(Path(a.out)) as tmp:
        tmp.mkdir()
        for m in modules:
            write_json(tmp / f"{m}.json", record(m))
    log.info("code: %d stage scripts fingerprinted -> %s", len(modules), a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
