"""The one worker-count rule: a `jobs` (or threads) param of 0 means every core this process may
run on (its CPU affinity, which containers and `taskset` narrow), otherwise the number given."""
from __future__ import annotations

import os


def cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no affinity API
        return os.cpu_count() or 1


def resolve(jobs: int) -> int:
    """`jobs` if > 0, else every core."""
    return jobs if jobs > 0 else cores()
