"""Keep each dvc.yaml stage's code dependency the stage's own fingerprint file.

    python scripts/code_deps.py           # exit 1 and list the stages whose code dep is stale
    python scripts/code_deps.py --write   # rewrite them in dvc.yaml (`make deps`)

A stage's code is its script (`cmd: python -m stages.NAME`) and every file of `src/` and
`stages/` it can import, found statically (`llmpipe.core.code.closure`: the closure of `import` /
`from ... import` statements, function-level imports included, with each imported package's
`__init__.py`). The stage `code` (stages/code.py) writes that list, with each file's sha256, to
`data/code/stages.NAME.json`; every other stage depends on its own file there, one dep line
instead of ~25 (a no-op `dvc repro` checks ~25x fewer code files; an edit still reruns exactly
the stages whose closure holds the file). This script puts that one line in each stage (in place
of any code lines it finds, old per-file lists included). Data deps and everything else in
`deps:` are kept as written. tests/test_pipeline_contract.py checks the closure against the
modules a real run imported.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from llmpipe.core.code import COLLAPSE, ROOT  # noqa: E402


_STAGE = re.compile(r"^  ([A-Za-z0-9_-]+):\n", re.M)
_CMD = re.compile(r"python -m (stages\.[A-Za-z0-9_]+)")
_CODE = re.compile(r"^(\s*)- ((?:src|stages)/[^\s$]+\.py|" + "|".join(map(re.escape, COLLAPSE))
                   + r"|data/code/stages\.[A-Za-z0-9_]+\.json)\s*(#.*)?$")  # templated lines (${...}) are kept
CODE_STAGE = "stages.code"  # depends on src/llmpipe and stages as folders (written by hand)


def code_dep(script: str) -> str:
    """The one code dependency of the stage that runs `python -m SCRIPT`."""
    return f"data/code/{script}.json"


def rewrite(text: str) -> tuple[str, list[str]]:
    """dvc.yaml text with every stage's code deps regenerated; and the names of changed stages."""
    head, sep, body = text.partition("\nstages:\n")
    starts = [m.start() for m in _STAGE.finditer(body)] + [len(body)]
    out, changed = [body[: starts[0]]], []
    for a, b in zip(starts, starts[1:]):
        block = body[a:b]
        name = _STAGE.match(block).group(1)
        cmd = _CMD.search(block)
        if cmd is None or cmd.group(1) == CODE_STAGE:
            out.append(block)
            continue
        lines = block.split("\n")
        code_at = [i for i, ln in enumerate(lines) if _CODE.match(ln)]
        if not code_at:
            out.append(block)
            continue
        indent = _CODE.match(lines[code_at[0]]).group(1)
        want = [f"{indent}- {code_dep(cmd.group(1))}"]
        have = [lines[i] for i in code_at]
        if [h.split("#")[0].rstrip() for h in have] != want:
            changed.append(name)
        keep = [ln for i, ln in enumerate(lines) if i not in set(code_at)]
        first = code_at[0]
        out.append("\n".join(keep[:first] + want + keep[first:]))
    return head + sep + "".join(out), changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="rewrite dvc.yaml")
    ap.add_argument("--dvc-yaml", type=Path, default=ROOT / "dvc.yaml")
    a = ap.parse_args(argv)
    new, changed = rewrite(a.dvc_yaml.read_text(encoding="utf-8"))
    if not changed:
        print("code_deps: dvc.yaml code deps are up to date", file=sys.stderr)
        return 0
    if a.write:
        a.dvc_yaml.write_text(new, encoding="utf-8")
        print(f"code_deps: rewrote the code deps of {', '.join(changed)}", file=sys.stderr)
        return 0
    print(f"code_deps: stale code deps in {', '.join(changed)} (want one line, data/code/stages.NAME.json); "
          "run `make deps`", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
