"""Text cleaners, quality signals and threshold rules.

Two halves, run by two DVC stages so that the expensive one is cached:
  * `clean@SRC` (`pipeline.py`): per source kind, cleaners rewrite the text (`c4.py`,
    `wikipedia.py`, `gutenberg.py`, `quality.py` for whitespace) and report characters removed;
    then every quality signal is computed once (`signals.py`) and stored as a column.
  * `filter@SRC` (`rules.py`): thresholds from `params.yaml` compared with the stored columns,
    vectorised; the first failing rule is the document's drop reason.
This package's `__init__` imports nothing, so `rules.py` loads without the cleaners.
"""
