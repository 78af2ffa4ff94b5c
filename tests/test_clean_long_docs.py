"""clean.max_doc_chars / clean.on_long_doc: a document longer than the limit is cut (or emptied)
before any cleaner or signal sees it, and every character stays accounted for: the
`removed_max_doc_chars` column, `clean_table`'s stats, the stage's summary line and the filter
report (`chars_removed_by_cleaner.max_doc_chars`)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import yaml

from _cleankit import BASE, doc_rows, write_ingested
from llmpipe.data.clean.pipeline import clean_table, cleaner_names, process_batch
from llmpipe.data.clean.rules import filter_table
from llmpipe.data.table import write_docs
from llmpipe.core.log import get_logger
from llmpipe.params import CleanParams, FilterParams, ParamsError, from_dict

REPO = Path(__file__).resolve().parents[1]
LONG = BASE + "\n\n" + BASE.replace("lighthouse", "windmill")  # its first len(BASE) chars are BASE


def _removed(cols: dict, i: int) -> int:
    return sum(cols[f"removed_{c}"][i] for c in cleaner_names("c4"))


@pytest.mark.parametrize("mode", ["cut", "skip"])
def test_long_document_is_cut_or_skipped_and_counted(mode):
    p = CleanParams(max_doc_chars=len(BASE), on_long_doc=mode)
    cols = process_batch([BASE, LONG], "c4", p, 5, 8, 1)
    assert cols["chars_raw"] == [len(BASE), len(LONG)]
    assert cols["removed_max_doc_chars"] == [0, len(LONG) - (len(BASE) if mode == "cut" else 0)]
    assert cols["text"] == [BASE, BASE if mode == "cut" else ""]
    for i in range(2):  # every character is removed by exactly one named step
        assert cols["chars_raw"][i] - cols["chars"][i] == _removed(cols, i)
    if mode == "cut":  # the signals and the signature are those of the cut text
        same = process_batch([BASE, BASE], "c4", p, 5, 8, 1)
        assert cols["words"] == same["words"] and cols["nav_line_ratio"] == same["nav_line_ratio"]
        assert np.array_equal(cols["minhash"], same["minhash"])
    else:
        assert cols["words"][1] == 0 and cols["exact_hash"][1] == process_batch([""], "c4", p, 5, 8, 1)["exact_hash"][0]


def test_documents_at_the_limit_are_untouched():
    cols = process_batch([BASE], "c4", CleanParams(max_doc_chars=len(BASE)), 5, 8, 1)
    assert cols["text"] == [BASE] and cols["removed_max_doc_chars"] == [0]


def test_clean_table_stats_stage_line_and_filter_report_count_long_docs(tmp_path):
    texts = [BASE, LONG, LONG + LONG]
    src = tmp_path / "in.parquet"
    write_docs(src, [{"id": f"d{i}", "source": "s", "text": t, "url": None, "meta": None}
                     for i, t in enumerate(texts)])
    cut = len(LONG) - len(BASE) + 2 * len(LONG) - len(BASE)
    stats = clean_table(src, tmp_path / "c.parquet", "c4", CleanParams(max_doc_chars=len(BASE)), 5, 8, 1, jobs=1)
    assert (stats["docs"], stats["long_docs"], stats["long_chars"]) == (3, 2, cut)
    rep = filter_table(tmp_path / "c.parquet", tmp_path / "f.npy", None, "c4", FilterParams())
    assert rep["docs_in"] == 3 and rep["chars_in"] == sum(map(len, texts))
    assert rep["chars_removed_by_cleaner"]["max_doc_chars"] == cut
    assert rep["chars_in"] - rep["chars_after_clean"] == sum(rep["chars_removed_by_cleaner"].values())

    import stages.clean  # the summary line names the limit, the mode and the counts
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["clean"].update(max_doc_chars=len(BASE), on_long_doc="skip")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    lines: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = lines.append
    get_logger("clean")  # configured (level INFO) before our handler joins
    logging.getLogger("llmpipe").addHandler(handler)
    try:
        ing = write_ingested(tmp_path / "ingested", doc_rows(texts))  # what ingest@c4 writes: shards
        assert stages.clean.main(["--source", "c4", "--in", str(ing), "--out", str(tmp_path / "s"),
                                  "--params", str(tmp_path / "params.yaml"), "--jobs", "1"]) == 0
    finally:
        logging.getLogger("llmpipe").removeHandler(handler)
    summary = [r.getMessage() for r in lines if r.getMessage().startswith("clean@c4")]
    assert len(summary) == 1
    assert f"2 docs over clean.max_doc_chars={len(BASE):,} skipped ({len(LONG) + 2 * len(LONG):,} chars)" \
        in summary[0]


@pytest.mark.parametrize("key, value, says", [
    ("max_doc_chars", 0, "clean.max_doc_chars: must be > 0"),
    ("on_long_doc", "drop", "clean.on_long_doc: must be one of 'cut', 'skip', got 'drop'"),
])
def test_bad_limits_are_refused_naming_the_key(key, value, says):
    with pytest.raises(ParamsError, match=says):
        from_dict(CleanParams, {key: value}, "clean")
