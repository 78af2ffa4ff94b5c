"""llmpipe: a DVC-native pipeline from raw text corpora to a trained, evaluated small LLM."""
import os as _os

__version__ = "0.1.0"

# Arrow allocates through jemalloc in every llmpipe process (and the workers it starts), unless
# the user chose a pool. It must be set before pyarrow is first imported. pyarrow's default here,
# mimalloc, keeps freed pages, so a stage that reads one shard after another grew with the shard
# count (tokenize@gutenberg's parent: 106 -> 155 MB anonymous from 261 to 1,027 shards of the
# same text; with jemalloc 55 -> 61 MB: README "Memory"). A pyarrow built without jemalloc says
# so on stderr and keeps its default.
_os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
