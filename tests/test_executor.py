"""The executor seam (`llmpipe.core.executor`): params, the local backend, and the Ray backend on
a real 2-node local cluster (conftest `ray_cluster`): tasks really run in other processes on both
nodes, results come back in call order, and a task's user error is the same one-line error."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmpipe.core.config import ParamsError, from_dict
from llmpipe.core.errors import UserError
from llmpipe.core.executor import LOCAL, ExecParams, RayExecutor, make
from _raykit import diagnose

HERE = Path(__file__).resolve().parent


def where(i: int, sleep: float) -> tuple:
    """A task: (its input, pid, Ray node) after `sleep` seconds."""
    time.sleep(sleep)
    try:
        import ray
        node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except ImportError:
        node = None
    return i, os.getpid(), node


def refuse(i: int) -> None:
    raise UserError(f"data/x/{i}.parquet: row 3: bad thing; fix the input")


@pytest.mark.parametrize("key, value, says", [
    ("backend", "spark", "exec.backend: must be one of local, ray, got 'spark'"),
    ("cpus_per_task", 0, "exec.cpus_per_task: must be > 0"),
    ("max_retries", -1, "exec.max_retries"),
])
def test_bad_exec_params_name_the_key(key, value, says):
    with pytest.raises(ParamsError, match=says.replace("(", r"\(").replace(")", r"\)")):
        from_dict(ExecParams, {key: value}, "exec")


def test_local_is_the_default_and_maps_in_order_in_other_processes():
    assert make(None) is LOCAL and make(ExecParams()) is LOCAL
    out = LOCAL.map(where, [(i, 0.0) for i in range(4)], jobs=2)
    assert [o[0] for o in out] == [0, 1, 2, 3]
    assert os.getpid() not in {o[1] for o in out}
    with pytest.raises(UserError, match=r"^data/x/0\.parquet: row 3: bad thing; fix the input$"):
        LOCAL.map(refuse, [(0,), (1,)], jobs=2)


def mark_then_maybe_fail(i: int, d: str) -> int:
    """A task: task 0 fails at once; every other one writes d/i after 0.3 s."""
    if i == 0:
        raise UserError("data/x/0.parquet: row 3: bad thing; fix the input")
    time.sleep(0.3)
    Path(d, str(i)).write_text("ran")
    return i


def test_a_failing_task_cancels_the_queued_ones_and_each_yields_as_tasks_finish(tmp_path):
    """`each` raises a task's error with the queued calls cancelled (a failed stage does not go on
    cleaning 12 more shards to throw them away), and yields results one by one in call order."""
    with pytest.raises(UserError, match=r"^data/x/0\.parquet"):
        LOCAL.map(mark_then_maybe_fail, [(i, str(tmp_path)) for i in range(12)], jobs=2)
    ran = sorted(int(p.name) for p in tmp_path.iterdir())
    assert len(ran) < 11, ran            # the workers' running and prefetched calls at most
    (tmp_path / "ok").mkdir()
    gen = LOCAL.each(mark_then_maybe_fail, [(i, str(tmp_path / "ok")) for i in range(1, 5)], jobs=2)
    assert next(gen) == 1 and (tmp_path / "ok/1").exists()
    assert list(gen) == [2, 3, 4]


def test_ray_backend_without_ray_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    ex = RayExecutor(ExecParams(backend="ray"))
    with pytest.raises(UserError, match=r"pip install 'llmpipe\[ray\]'"):
        ex.map(where, [(0, 0.0)])


def driver(address: str, check: str) -> None:
    """Run `tests/_ray_driver.py ADDRESS CHECK` (a Ray driver of its own, so a driver that Ray
    ends cannot end pytest). A driver that died (not a failed check) is run once more on the same
    cluster; the failure shows both outputs and the tails of the nodes' Ray logs."""
    runs = []
    for _ in range(2):
        p = subprocess.run([sys.executable, str(HERE / "_ray_driver.py"), address, check],
                           capture_output=True, text=True, timeout=300, cwd=HERE.parent,
                           env={**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), str(HERE)])})
        if p.returncode == 0:
            return
        runs.append(f"exit {p.returncode}:\n{(p.stdout + p.stderr)[-3000:]}")
        if p.returncode == 3:  # the check itself failed: no second run
            break
    raise AssertionError("\n".join(runs) + "\n" + diagnose(address))


@pytest.mark.slow
def test_ray_tasks_run_on_both_nodes_in_order_and_errors_stay_one_line(ray_cluster):
    driver(ray_cluster, "both_nodes")


@pytest.mark.slow
def test_a_task_no_node_can_fit_is_refused_not_left_waiting(ray_cluster):
    driver(ray_cluster, "too_big")


def test_a_dead_attempts_temp_never_reaches_the_published_folder(tmp_path):
    """A task attempt killed on another node leaves `.NAME.tmp-PID` with a PID this machine may
    know as a live process; the driver drops it when it publishes the folder."""
    from llmpipe.core.shards import ShardedDir
    out = tmp_path / "clean"
    with ShardedDir(out, stage="clean", source="c4") as d:
        (d.tmp / "a.parquet").write_bytes(b"whole")
        (d.tmp / f".a.parquet.tmp-{os.getpid()}").write_bytes(b"half")  # a live PID: no sweep removes it
        d.add("a", "fp", ["a.parquet"], shards=[{"name": "a", "docs": 1}])
        d.finish()
    assert sorted(p.name for p in out.iterdir()) == ["a.parquet", "manifest.json"]
