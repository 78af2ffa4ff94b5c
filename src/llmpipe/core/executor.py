"""Where the per-shard work of the data stages runs: this machine's worker processes (`local`,
the default) or tasks on a Ray cluster (`ray`), chosen by the `exec` params section.

A stage hands the executor a function and a list of argument tuples, one per unit of work (an
input file of `ingest`, a shard of `clean`, `filter` and `tokenize`, a partition step of
`dedup`), and gets the results back in the order of the calls. The driver (the stage process)
keeps everything else: it plans the units, records each finished unit in its `ShardedDir` and
publishes the folder and its manifest. Tasks get file paths and small arguments, never arrays
of the corpus, and write their shard files into the stage's temp folder themselves.

`local`: `jobs` processes of this machine (each stage's own `jobs` param), exactly as before
this module existed; nothing beyond llmpipe's own requirements is needed.

`ray` (`pip install 'llmpipe[ray]'`): each unit is one Ray task (`ray.remote`, with
`max_retries` for a worker or node that dies and `retry_exceptions` for OSError, e.g. a
shared filesystem that hiccups). What makes this safe:
  - every path a task reads or writes must be reachable under the same name on every node: a
    shared filesystem mounted at the same path (CephFS, NFS, Lustre), with the checkout on it;
    a task runs in the driver's working directory, so relative paths mean the same there;
  - a task writes each file under a temp name and renames it when complete (`core.atomic`),
    so a task killed mid-write leaves no file under a final name; its retry removes the dead
    attempt's temp (same machine) and writes the file again from the start;
  - a retried task computes the same bytes: a unit's output depends only on its arguments;
  - the driver records a unit only when its task returned, so a lost node costs its own
    units, never a half-written one.
Workers import llmpipe from the same source tree as the driver (the job's runtime_env puts
its folder on PYTHONPATH), so a cluster runs the code the stage's fingerprint names.

The section is not a DVC dependency of any stage (tests/test_pipeline_contract.py exempts it):
which machines run the tasks changes no byte of any output (tests/test_ray_dvc.py checks every
output hash against the local backend), so switching backend or cluster address reruns nothing.
"""
from __future__ import annotations

import logging
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

from llmpipe.core import workers
from llmpipe.core.config import Section, check, check_nonneg
from llmpipe.core.errors import UserError
from llmpipe.core.log import get_logger

log = get_logger("exec")

BACKENDS = ("local", "ray")
IN_FLIGHT = 2  # tasks submitted per slot (slots from the cluster's CPUs): Ray runs as many as the
               # CPUs allow and starts the next as soon as one ends; bounds the driver's memory


@dataclass
class ExecParams(Section):
    """Where the data stages' per-shard tasks run (README "Scaling out"). Outputs are the same
    bytes whatever these are, so no stage depends on them in dvc.yaml."""

    backend: str = "local"
    """`local`: worker processes of this machine (each stage's `jobs`); `ray`: tasks on a Ray
    cluster (`pip install 'llmpipe[ray]'`)."""
    address: Optional[str] = None
    """ray: the cluster to join (`HOST:6379` of `ray start --head`, or `auto`); null: the
    `RAY_ADDRESS` environment variable, else the cluster last `ray start`ed on this machine, else
    a Ray instance started for the stage (Ray's own order: `RAY_ADDRESS` wins when set)."""
    workers: int = 0
    """ray: tasks running at once (at most); 0 -> as many as the cluster's CPUs allow
    (CPUs / cpus_per_task when the stage starts)."""
    cpus_per_task: float = 1.0
    """ray: CPUs Ray reserves per task (a clean or tokenize task uses floor(this) processes)."""
    memory_mb: int = 0
    """ray: memory Ray reserves per task for scheduling, in MiB; 0 -> none reserved."""
    max_retries: int = 3
    """ray: times a task is retried after its worker or node died or it raised an OSError; other
    errors (bad input) fail the stage at once."""

    def __post_init__(self) -> None:
        check(self.backend in BACKENDS, "exec.backend", f"must be one of {', '.join(BACKENDS)}, "
                                                        f"got {self.backend!r}")
        check_nonneg(self.workers, "exec.workers")
        check(self.cpus_per_task > 0, "exec.cpus_per_task", f"must be > 0, got {self.cpus_per_task}")
        check_nonneg(self.memory_mb, "exec.memory_mb")
        check_nonneg(self.max_retries, "exec.max_retries")


class Executor:
    """Runs independent calls of one function; results in call order (see the module doc)."""

    local = True

    def __init__(self, jobs: int = 0):
        self.jobs = jobs

    def slots(self, jobs: int | None = None) -> int:
        """Calls that run at once (a stage's `jobs` for local: 0 = every core)."""
        return workers.resolve(self.jobs if jobs is None else jobs)

    def task_jobs(self) -> int:
        """Processes one task may use for its own inner pool (ray: floor(cpus_per_task))."""
        return 1

    def each(self, fn: Callable, calls: list[tuple], *, jobs: int | None = None, desc: str = "",
             unit: str = "shard") -> Iterator:
        """fn(*args) for each call, in `jobs` spawned processes when there are several calls (0 =
        every core), yielded in call order as each is done, so a stage records a unit as soon as
        it is finished and a Ctrl-C or a failure keeps what was. A task's exception (a UserError
        included) is raised here; then, or when the caller stops early (Ctrl-C), the queued calls
        are cancelled and the running ones waited for (at most one unit per process: none is left
        writing into a folder the stage is about to keep or remove)."""
        from tqdm import tqdm
        calls = list(calls)
        jobs = min(self.slots(jobs), len(calls))
        with tqdm(total=len(calls), desc=desc, unit=unit, disable=None if calls else True, leave=False) as bar:
            if jobs <= 1:
                for args in calls:
                    out = fn(*args)
                    bar.update(1)
                    yield out
                return
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor
            ex = ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=workers.die_with_parent)
            done = False
            try:
                futs = [ex.submit(fn, *args) for args in calls]   # arguments are paths and small values
                for f in futs:
                    out = f.result()
                    bar.update(1)
                    yield out
                done = True
            finally:
                ex.shutdown(wait=True, cancel_futures=not done)

    def map(self, fn: Callable, calls: list[tuple], *, jobs: int | None = None, desc: str = "",
            unit: str = "shard") -> list:
        """[fn(*args) for args in calls], as `each` runs them."""
        return list(self.each(fn, calls, jobs=jobs, desc=desc, unit=unit))

    def close(self) -> None:
        pass

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


LOCAL = Executor()


def shard_tasks(executor: Executor | None, jobs: int, todo: int, per_shard: float, fill: float) -> Executor | None:
    """Where a stage should run whole shards as tasks: the cluster `executor` always; locally a
    pool of `jobs` processes, one shard each, when that keeps more cores busy than splitting each
    shard over the pool in turn: at least two shards to build, and either 2 x jobs of them (the
    uneven last ones balance out) or shards too small to fill the pool alone (`per_shard`, the
    mean work units of a shard to build, below `fill`, what `jobs` workers need: a Gutenberg
    shard is one book, one batch, one busy core). None: shard after shard, each split over
    `jobs` workers (one new shard of a big source, or a single core)."""
    if executor is not None and not executor.local:
        return executor
    if jobs <= 1 or todo < 2:
        return None
    return Executor(jobs) if todo >= 2 * jobs or per_shard < fill else None


def _in_cwd(cwd: str, fn: Callable, args: tuple) -> Any:
    """The body of every Ray task: run `fn(*args)` in the driver's working directory."""
    if os.getcwd() != cwd:
        os.chdir(cwd)
    return fn(*args)


class RayExecutor(Executor):
    """Each call is a Ray task on the cluster `params.address` (joined at the first call)."""

    local = False

    def __init__(self, params: ExecParams):
        super().__init__(0)
        self.params = params
        self._remote = None
        self._slots = 0

    def _start(self) -> None:
        if self._remote is not None:
            return
        try:
            import ray
        except ImportError:
            raise UserError("exec.backend: ray needs Ray installed: pip install 'llmpipe[ray]' "
                            "(or set exec.backend: local)") from None
        p = self.params
        root = str(Path(__file__).resolve().parents[2])  # the folder llmpipe is imported from
        path = os.pathsep.join(x for x in (root, os.getcwd(), os.environ.get("PYTHONPATH", "")) if x)
        self._own = not ray.is_initialized()
        if self._own:
            try:
                ray.init(address=p.address, runtime_env={"env_vars": {"PYTHONPATH": path}},
                         logging_level=logging.WARNING, log_to_driver=False,
                         configure_logging=True)
            except ConnectionError as e:
                raise UserError(f"exec.address: cannot join the Ray cluster at {p.address or 'RAY_ADDRESS'}: "
                                f"{e}; start it with `ray start --head` or fix the address") from None
        cpus = float(ray.cluster_resources().get("CPU", 0))
        biggest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=0)
        if p.cpus_per_task > biggest:  # Ray would wait forever for a node that fits the task
            raise UserError(f"exec.cpus_per_task: {p.cpus_per_task:g} CPUs per task, but the largest node of the "
                            f"Ray cluster has {biggest:g}; lower it or start nodes with more --num-cpus")
        self._slots = p.workers or max(1, int(cpus // p.cpus_per_task))
        opts: dict = {"num_cpus": p.cpus_per_task, "max_retries": p.max_retries, "retry_exceptions": [OSError]}
        if p.memory_mb:
            opts["memory"] = p.memory_mb << 20
        self._ray, self._remote, self._opts = ray, ray.remote(_in_cwd), opts
        log.info("exec: Ray cluster with %g CPUs, %d tasks at once", cpus, self._slots)

    def close(self) -> None:
        """Leave the cluster (when this executor joined it); the cluster keeps running."""
        if self._remote is not None and self._own:
            self._ray.shutdown()
        self._remote = None

    def slots(self, jobs: int | None = None) -> int:
        self._start()
        return self._slots

    def task_jobs(self) -> int:
        return max(1, int(self.params.cpus_per_task))

    def _get(self, ref, fn: Callable):
        ray = self._ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as e:  # the task's own exception, as the local backend raises it
            cause = getattr(e, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from None
            raise
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                ray.exceptions.ObjectLostError) as e:
            raise UserError(f"exec: a Ray task of {fn.__name__} failed {self.params.max_retries + 1} times "
                            f"(its worker or node died: {type(e).__name__}); see the Ray logs of the "
                            f"cluster, or raise exec.max_retries") from None

    def imap(self, fn: Callable, calls: Iterable[tuple]) -> Iterator:
        """fn(*args) for each call, as tasks, yielded in call order, with at most IN_FLIGHT x
        slots tasks submitted at once (`exec.workers` when given: exactly that many)."""
        self._start()
        ahead = self._slots if self.params.workers else IN_FLIGHT * self._slots
        cwd = os.getcwd()
        name = getattr(fn, "__name__", "task")
        pending: deque = deque()
        try:
            for args in calls:
                pending.append(self._remote.options(name=name, **self._opts).remote(cwd, fn, args))
                if len(pending) >= ahead:
                    yield self._get(pending.popleft(), fn)
            while pending:
                yield self._get(pending.popleft(), fn)
        finally:
            for ref in pending:  # a failed stage leaves no task running on the cluster
                self._ray.cancel(ref, force=True)

    def each(self, fn: Callable, calls: list[tuple], *, jobs: int | None = None, desc: str = "",
             unit: str = "shard") -> Iterator:
        from tqdm import tqdm
        calls = list(calls)
        if not calls:  # nothing to do: the cluster is not even joined
            return
        with tqdm(total=len(calls), desc=desc, unit=unit, disable=None, leave=False) as bar:
            for r in self.imap(fn, calls):
                bar.update(1)
                yield r


def make(params: ExecParams | None) -> Executor:
    """The executor `params` (the `exec` section) asks for; local when None."""
    if params is None or params.backend == "local":
        return LOCAL
    return RayExecutor(params)
