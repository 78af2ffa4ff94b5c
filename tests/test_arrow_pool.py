"""`import llmpipe` makes Arrow allocate through jemalloc (README "Memory": pyarrow's default
mimalloc keeps freed pages, so shard-after-shard stages grew with the shard count), in the process
and the workers it starts, and leaves a pool the user chose alone."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PROBE = ("import llmpipe, pyarrow as pa, subprocess, sys; print(pa.default_memory_pool().backend_name); "
         "print(subprocess.run([sys.executable, '-c', 'import pyarrow as pa; print(pa.default_memory_pool().backend_name)'],"
         " capture_output=True, text=True).stdout.strip())")


def pools(**env) -> list[str]:
    full = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    full.update(env, PYTHONPATH=str(SRC))
    p = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=full, check=True)
    return p.stdout.split()


def test_llmpipe_processes_and_their_workers_allocate_through_jemalloc():
    assert pools() == ["jemalloc", "jemalloc"]


def test_a_pool_the_user_chose_is_kept():
    assert pools(ARROW_DEFAULT_MEMORY_POOL="system") == ["system", "system"]
