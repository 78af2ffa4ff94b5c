"""Stage entry points, one thin script per dvc.yaml stage: `python -m stages.NAME ...`.

Run as modules (not `python stages/NAME.py`), so that the repo root, not this folder, leads
sys.path and `stages/tokenize.py` cannot shadow the stdlib `tokenize` module.
"""

import argparse


def source_params(ap: argparse.ArgumentParser, params, name: str):
    """`params.sources[name]`, or a usage error (exit 2) naming the sources params.yaml has."""
    if name not in params.sources:
        ap.error(f"--source {name!r} is not in params.yaml sources ({', '.join(params.sources)})")
    return params.sources[name]


def manifest_arg(ap: argparse.ArgumentParser) -> None:
    """`--manifest PATH`: where a per-source stage also writes a copy of OUT/manifest.json
    (`core.shards.publish_manifest`), what the stages reading every source depend on."""
    ap.add_argument("--manifest", default=None,
                    help="write a copy of OUT/manifest.json here (what stages reading every source depend on)")
