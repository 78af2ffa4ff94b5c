"""Stage entry points, one thin script per dvc.yaml stage: `python -m stages.NAME ...`.

Run as modules (not `python stages/NAME.py`), so that the repo root, not this folder, leads
sys.path and `stages/tokenize.py` cannot shadow the stdlib `tokenize` module.
"""
