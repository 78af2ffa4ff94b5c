"""Source readers: local parquet / jsonl(.gz) / txt (file, directory or glob), `hf://` and any
fsspec URL, and the built-in offline sample corpus (`sample://KIND`).

`ingest_source(name, params, out)` turns one `sources.SRC` entry into the Document table.
Modules: `files` (uri -> input files), `readers` (file -> records or `Bad`), `ingest` (records ->
documents, accounting), `prose` + `sample*` (the sample corpus).
"""
from llmpipe.data.sources.files import SourceError, SourceNotFound, resolve
from llmpipe.data.sources.ingest import ingest_source, input_index, iter_items

__all__ = ["SourceError", "SourceNotFound", "ingest_source", "input_index", "iter_items", "resolve"]
