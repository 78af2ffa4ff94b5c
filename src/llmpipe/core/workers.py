"""The one worker-count rule: a `jobs` (or threads) param of 0 means every core this process may
run on (its CPU affinity, which containers and `taskset` narrow), otherwise the number given."""
from __future__ import annotations

import os
import sys


def cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no affinity API
        return os.cpu_count() or 1


def resolve(jobs: int) -> int:
    """`jobs` if > 0, else every core."""
    return jobs if jobs > 0 else cores()


def die_with_parent() -> None:
    """In a worker process (a pool's initializer): have Linux SIGKILL it when its parent dies, so a
    stage that is SIGKILLed (by DVC, the OOM killer or a user) leaves no worker running on its own,
    holding the stage's pipes or writing into its temp folder. Nothing elsewhere."""
    if sys.platform != "linux":
        return
    import ctypes
    import signal
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request: it would never fire
        os._exit(1)
