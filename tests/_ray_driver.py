"""Ray driver checks for `test_executor.py`, run as a subprocess: `python tests/_ray_driver.py
ADDRESS CHECK`. A Ray driver ends its own process (exit status 1, its message on stderr) when the
local raylet goes away, so the driver never runs inside the pytest process: the test sees this
script's exit status and output instead. Exit 0: the check held; 3: it failed (the message on
stderr); anything else: the driver itself died (Ray's runtime, not the check)."""
from __future__ import annotations

import os
import sys
import time
import traceback


def where(i: int, sleep: float) -> tuple:
    """A task: (its input, pid, Ray node) after `sleep` seconds."""
    time.sleep(sleep)
    import ray
    return i, os.getpid(), ray.get_runtime_context().get_node_id()


def refuse(i: int) -> None:
    from llmpipe.core.errors import UserError
    raise UserError(f"data/x/{i}.parquet: row 3: bad thing; fix the input")


def both_nodes(address: str) -> None:
    """Tasks run in other processes on both nodes, results come back in call order, and a
    task's user error is the same one-line error the local backend raises."""
    from llmpipe.core.errors import UserError
    from llmpipe.core.executor import ExecParams, make
    ex = make(ExecParams(backend="ray", address=address))
    assert not ex.local and ex.slots() == 2, f"slots {ex.slots()}, want 2 (1 CPU on each node)"
    out = ex.map(where, [(i, 0.5) for i in range(4)])
    assert [o[0] for o in out] == [0, 1, 2, 3], out
    assert os.getpid() not in {o[1] for o in out}, "a task ran in the driver"
    assert len({o[2] for o in out}) == 2, f"two tasks at once must use both nodes: {out}"
    try:
        ex.map(refuse, [(0,), (1,)])
    except UserError as e:
        assert str(e) == "data/x/0.parquet: row 3: bad thing; fix the input", str(e)
    else:
        raise AssertionError("a task's UserError did not reach the driver")
    ex.close()


def too_big(address: str) -> None:
    """A task no node can fit is refused at once, not left waiting."""
    import re
    from llmpipe.core.errors import UserError
    from llmpipe.core.executor import ExecParams, make
    try:
        make(ExecParams(backend="ray", address=address, cpus_per_task=2)).map(where, [(0, 0.0)])
    except UserError as e:
        assert re.search(r"exec.cpus_per_task: 2 CPUs per task, but the largest node .* has 1", str(e)), str(e)
    else:
        raise AssertionError("a 2-CPU task on 1-CPU nodes was not refused")


if __name__ == "__main__":
    address, check = sys.argv[1], sys.argv[2]
    try:
        {"both_nodes": both_nodes, "too_big": too_big}[check](address)
    except AssertionError:
        traceback.print_exc()
        sys.exit(3)
    print("check held")
