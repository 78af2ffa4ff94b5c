"""Stage `ingest@SRC`: read one source (`sources.SRC` in params.yaml) into the Document table.

    python -m stages.ingest --source c4 --out data/ingested/c4 --report reports/ingest/c4.json

Writes the sharded directory (one unit per input file, `manifest.json`) atomically, rebuilding only
the files that changed, and a flat JSON report: docs_in, docs_out, skipped_by_reason, chars_out.
A bad record with `on_bad_record: fail`, a file that breaks part-way with `on_bad_file: fail`
(the default, whatever on_bad_record says), or an unreadable/empty source exits with status 2 and
one line naming the file, line/row and rule; nothing is written.
"""
from __future__ import annotations

import sys
import argparse

from llmpipe.core.shards import publish_manifest
from llmpipe.core.atomic import write_json
from llmpipe.core import executor
from llmpipe.core.errors import entry
from llmpipe.params import load_params
from llmpipe.data.sources import ingest_source
from stages import manifest_arg, source_params



@entry("ingest")
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", required=True, help="a key of `sources` in params.yaml")
    ap.add_argument("--out", required=True, help="output directory of Document shards")
    manifest_arg(ap)
    ap.add_argument("--jobs", type=int, default=0, help="worker processes (0 = all cores; same output)")
    ap.add_argument("--report", help="output JSON report (DVC metric)")
    ap.add_argument("--inputs", help="the `inputs` stage's output folder: the sha256s it remembers "
                    "(by size, mtime and inode) are not computed again")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)

    params = load_params(a.params)
    source = source_params(ap, params, a.source)
    with executor.make(params.exec) as ex:
        report = ingest_source(a.source, source, a.out, progress=not a.no_progress, jobs=a.jobs, executor=ex,
                               inputs=a.inputs)
    if a.report:
        write_json(a.report, report)
    publish_manifest(a.out, a.manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
