"""dvc.yaml's code deps are generated from the import graph (scripts/code_deps.py): a newcomer who
moves a function between modules runs `make deps`, never edits dvc.yaml by hand."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _records(root: Path) -> dict[str, dict]:
    """What the copy's stage `code` writes for every stage script (its stages/code.py, run there)."""
    prog = ("import json, sys\n"
            f"sys.path[:0] = [{str(root / 'src')!r}, {str(root)!r}]\n"
            "from stages.code import record, stage_modules\n"
            "print(json.dumps({m: record(m) for m in stage_modules()}))\n")
    p = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, cwd=root,
                       env={"PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_dvc_yaml_code_deps_are_the_generated_ones():
    p = subprocess.run([sys.executable, str(REPO / "scripts/code_deps.py")], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_a_new_import_shows_up_in_the_stages_code_record_and_fingerprint(tmp_path):
    """A stage depends on data/code/stages.NAME.json (stage `code`), which lists its import
    closure: a new module that mix.py imports lazily, inside a function, lands in mix's record
    and fingerprint (so mix and its shards are redone) and in no other stage's; dvc.yaml needs
    no edit."""
    root = tmp_path / "repo"
    for part in ("scripts", "stages", "src"):
        shutil.copytree(REPO / part, root / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    before = _records(root)
    (root / "src/llmpipe/data/newhelper.py").write_text("def f():\n    return 1\n")
    mix = root / "src/llmpipe/data/mix.py"
    mix.write_text(mix.read_text() + "\n\ndef _uses_helper():\n    from .newhelper import f\n    return f()\n")
    tool = [sys.executable, str(root / "scripts/code_deps.py")]
    assert subprocess.run(tool, capture_output=True, text=True).returncode == 0  # dvc.yaml is still right
    after = _records(root)
    changed = sorted(m for m in after if after[m]["fingerprint"] != before[m]["fingerprint"])
    assert "stages.mix" in changed and "stages.clean" not in changed and "stages.ingest" not in changed
    for m in changed:
        assert "src/llmpipe/data/newhelper.py" in after[m]["files"], m
        assert after[m]["files"]["src/llmpipe/data/mix.py"] != before[m]["files"]["src/llmpipe/data/mix.py"]
    for m in set(after) - set(changed):
        assert after[m] == before[m], m
    assert all("src/llmpipe/data/mix.py" in before[m]["files"] for m in changed)  # exactly mix.py's importers
    assert not [m for m in set(after) - set(changed) if "src/llmpipe/data/mix.py" in after[m]["files"]]


def test_every_stage_depends_on_its_own_code_record_and_code_on_the_folders():
    import yaml
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, st in stages.items():
        body = st.get("do", st)
        script = body["cmd"].split("python -m ")[1].split()[0]
        deps = body["deps"]
        if name == "code":
            assert deps == ["src/llmpipe", "stages"] and body["outs"] == ["data/code"]
            continue
        assert f"data/code/{script}.json" in deps, name
        assert not [d for d in deps if d.startswith(("src/", "stages/"))], name


def test_bytecode_beside_a_code_folder_dependency_reruns_nothing(tmp_path):
    """A stage depends on src/llmpipe/data/kinds as a folder; Python writes __pycache__/*.pyc in
    it on import (unless PYTHONDONTWRITEBYTECODE), which would change the folder's hash between
    runs and clones. The repo's .dvcignore keeps bytecode out of every folder dependency."""
    from conftest import dvc, stages_ran
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    dvc(tmp_path, "init", "-q")
    shutil.copy(REPO / ".dvcignore", tmp_path / ".dvcignore")
    (tmp_path / "kinds").mkdir()
    (tmp_path / "kinds" / "a.py").write_text("X = 1\n")
    (tmp_path / "dvc.yaml").write_text("stages:\n  s:\n    cmd: python -c \"print(1)\" > out.txt\n"
                                       "    deps:\n      - kinds\n    outs:\n      - out.txt\n")
    assert stages_ran(dvc(tmp_path, "repro")) == {"s"}
    (tmp_path / "kinds" / "__pycache__").mkdir()
    (tmp_path / "kinds" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\x00bytecode")
    (tmp_path / "kinds" / "b.pyc").write_bytes(b"\x00bytecode")
    assert stages_ran(dvc(tmp_path, "repro")) == set()
    (tmp_path / "kinds" / "a.py").write_text("X = 2\n")  # a real code change still reruns it
    assert stages_ran(dvc(tmp_path, "repro")) == {"s"}
