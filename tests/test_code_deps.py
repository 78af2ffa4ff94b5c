"""dvc.yaml's code deps are generated from the import graph (scripts/code_deps.py): a newcomer who
moves a function between modules runs `make deps`, never edits dvc.yaml by hand."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _in_copy(root: Path, expr: str):
    """`expr` evaluated by the copy at `root`'s scripts/code_deps.py (as `mod`), in a fresh process:
    its closure logic lives in the copy's src/llmpipe/core/code.py, which this process has already
    imported from REPO."""
    prog = ("import importlib.util, json, sys\n"
            "spec = importlib.util.spec_from_file_location('code_deps', sys.argv[1])\n"
            "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
            "from llmpipe.core import code\n"
            f"print(json.dumps({expr}))\n")
    p = subprocess.run([sys.executable, "-c", prog, str(root / "scripts/code_deps.py")],
                       capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def _stage_code_deps(root: Path, script: str) -> list[str]:
    return _in_copy(root, f"mod.stage_code_deps({script!r})")


def _fingerprints(root: Path) -> dict[str, str]:
    return _in_copy(root, "{s: code.fingerprint(s) for s in ('stages.mix', 'stages.clean')}")


def test_dvc_yaml_code_deps_are_the_generated_ones():
    p = subprocess.run([sys.executable, str(REPO / "scripts/code_deps.py")], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_a_new_import_shows_up_and_write_fixes_it(tmp_path):
    root = tmp_path / "repo"
    for part in ("scripts", "stages", "src"):
        shutil.copytree(REPO / part, root / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    before = _fingerprints(root)
    # move a helper into a new module that mix.py imports lazily, inside a function
    (root / "src/llmpipe/data/newhelper.py").write_text("def f():\n    return 1\n")
    mix = root / "src/llmpipe/data/mix.py"
    mix.write_text(mix.read_text() + "\n\ndef _uses_helper():\n    from .newhelper import f\n    return f()\n")
    tool = [sys.executable, str(root / "scripts/code_deps.py")]
    stale = subprocess.run(tool, capture_output=True, text=True)
    # mix and mix_phase (the later phases' mix: the same script) and nothing else
    assert stale.returncode == 1 and "stale code deps in mix, mix_phase;" in stale.stderr, stale.stderr
    assert subprocess.run([*tool, "--write"], capture_output=True, text=True).returncode == 0
    assert subprocess.run(tool, capture_output=True, text=True).returncode == 0
    assert "src/llmpipe/data/newhelper.py" in _stage_code_deps(root, "stages.mix")
    assert "src/llmpipe/data/newhelper.py" not in _stage_code_deps(root, "stages.clean")
    assert (root / "dvc.yaml").read_text().count("- src/llmpipe/data/newhelper.py") == 2  # only mix and mix_phase import data/mix.py
    # the shards' code fingerprint (core/code.py) follows the same closure: mix's shards are
    # redone, clean's are not
    after = _fingerprints(root)
    assert after["stages.mix"] != before["stages.mix"] and after["stages.clean"] == before["stages.clean"]
