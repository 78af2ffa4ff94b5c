"""A source kind is one package: dropping `data/kinds/NAME/` (params sections + cleaners and
signals) into the library, its params.yaml sections and a source of that kind is all it takes
(dvc.yaml and its generated code deps stay as they are). The real `dvc repro` runs it."""
from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest
import yaml

from _cleankit import read_shards
from conftest import dvc, git_commit, stages_ran

pytestmark = pytest.mark.slow

KIND_INIT = '''"""Source kind `poem` (a throwaway kind written by a test)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from llmpipe.core.config import Section
from llmpipe.data.kinds.base import KindFilter


@dataclass
class CleanParams(Section):
    stanza_numbers: bool = True
    """Drop the roman-numeral lines that number stanzas."""


@dataclass
class FilterParams(KindFilter):
    min_stanza_count: Optional[int] = 2
    """A poem of fewer stanzas is dropped."""
'''

KIND_TEXT = '''import re

CLEANERS = ("poem_stanza_numbers",)
SIGNALS = {"stanza_count": "int"}
_NUMBER = re.compile(r"^[IVXLC]+\\.$")


def clean(text, p):
    if not p.stanza_numbers:
        return text, {"poem_stanza_numbers": 0}
    kept = [ln for ln in text.split("\\n") if not _NUMBER.match(ln.strip())]
    new = "\\n".join(kept)
    return new, {"poem_stanza_numbers": len(text) - len(new)}


def signals(raw, text, words, lines):
    return {"stanza_count": sum(1 for b in text.split("\\n\\n") if b.strip())}
'''


def _stanzas() -> list[str]:
    """Real English prose in distinct paragraphs: stdlib docstrings."""
    import argparse, collections, dataclasses, functools, logging, pathlib, string, textwrap  # noqa: E401
    out = []
    for mod in (argparse, collections, dataclasses, functools, logging, pathlib, string, textwrap):
        for _, obj in inspect.getmembers(mod):
            doc = inspect.getdoc(obj)
            if doc and 200 <= len(doc) <= 900 and "\n\n" not in doc and doc not in out:
                out.append(" ".join(doc.split()))
    return out


def test_a_new_kind_is_one_package_and_its_params(repo_copy):
    repo = repo_copy
    pkg = repo / "src/llmpipe/data/kinds/poem"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(KIND_INIT)
    (pkg / "text.py").write_text(KIND_TEXT)
    raw = repo / "data/raw/verse"
    raw.mkdir()
    st = _stanzas()
    for i in range(4):  # three poems of three numbered stanzas, one of a single stanza
        n = 3 if i < 3 else 1
        body = "\n\n".join(f"{'I' * (j + 1)}.\n{st[3 * i + j]}" for j in range(n))
        (raw / f"poem{i}.txt").write_text(body + "\n")
    p = yaml.safe_load((repo / "params.yaml").read_text())
    p["sources"]["verse"] = {"kind": "poem", "uri": "data/raw/verse", "format": "txt"}
    p["mix"]["weights"]["verse"] = 0.05
    p["clean"]["poem"] = {"stanza_numbers": True}
    p["filter"]["poem"] = {"min_stanza_count": 2, "skip_global": ["min_words", "min_chars"]}
    (repo / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    dvc_yaml = (repo / "dvc.yaml").read_text()
    deps = subprocess.run([sys.executable, "scripts/code_deps.py"], cwd=repo, capture_output=True, text=True)
    assert deps.returncode == 0, deps.stderr  # the kinds folder is one dep: nothing to regenerate
    assert (repo / "dvc.yaml").read_text() == dvc_yaml and "poem" not in dvc_yaml
    git_commit(repo, "add kind poem")

    ran = stages_ran(dvc(repo, "repro", "filter@verse"))
    assert {"ingest@verse", "clean@verse", "filter@verse"} <= ran
    clean = read_shards(repo / "data/clean/verse").to_pydict()  # its 4 files' shards, in order
    assert clean["stanza_count"] == [3, 3, 3, 1]
    assert all(r > 0 for r in clean["removed_poem_stanza_numbers"])
    assert not any(ln.strip() in ("I.", "II.", "III.") for t in clean["text"] for ln in t.split("\n"))
    report = json.loads((repo / "reports/filter/verse.json").read_text())
    assert report["dropped_by_reason"]["poem_min_stanza_count"] == 1
    assert report["docs_in"] == 4

    # a threshold of the new kind reruns only its filter
    p["filter"]["poem"]["min_stanza_count"] = 1
    (repo / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    assert stages_ran(dvc(repo, "repro", "filter@verse")) == {"filter@verse"}
