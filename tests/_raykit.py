"""A real local Ray cluster for tests and benchmarks: `ray start --head` on 127.0.0.1 plus a second
node joined to it (`ray start --address`), 1 CPU each, so two tasks at once run in worker
processes of two nodes. Each node is `ray start --block` in its own process group, on ports of
its own, so stopping it ends exactly its processes (never `ray stop`, which would end every Ray
on the machine) and another cluster on the same machine is left alone. Ray's memory monitor,
dashboard and usage stats are off; a node is marked dead only after ~90 s of missed health
checks (a loaded 2-core machine misses some); each node's object store is 100 MB. Token
authentication is off (`RAY_AUTH_MODE=disabled`, for the nodes and, while the cluster runs, for this process and
the drivers it starts): since Ray 2.5x a `ray.init()` that starts a local Ray writes
~/.ray/auth_token, and a token there would otherwise switch auth on for some processes only."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

BIN = Path(sys.executable).parent
_RUNNING: dict[str, tuple[Path, list]] = {}  # address -> (temp dir, node processes), for diagnose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node(args: list[str], temp: Path, log: Path) -> subprocess.Popen:
    ports = [f"--{k}={free_port()}" for k in ("node-manager-port", "object-manager-port",
                                              "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                              "runtime-env-agent-port", "metrics-export-port")]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_memory_monitor_refresh_ms": "0",
           "RAY_AUTH_MODE": "disabled", "RAY_health_check_failure_threshold": "30"}
    cmd = [str(BIN / "ray"), "start", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=1",
           "--object-store-memory=100000000", "--disable-usage-stats", f"--temp-dir={temp}", *ports, *args]
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    """Stop a node's process group: SIGTERM, then SIGKILL whatever is left after 3 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            pass


def _wait(address: str, n: int, nodes: list, logs: Path, timeout: float = 120) -> None:
    """Until n nodes' `ray start` said they started (printed once the node is registered)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for p in nodes:
            if p.poll() is not None:
                raise AssertionError(f"ray start exited {p.returncode}:\n" +
                                     "\n".join(f.read_text()[-3000:] for f in logs.glob("*.log")))
        if sum("Ray runtime started" in f.read_text() for f in logs.glob("*.log")) >= n:
            return
        time.sleep(0.2)
    raise AssertionError(f"the Ray cluster at {address} did not reach {n} nodes in {timeout} s")


@contextlib.contextmanager
def local_cluster(logs: Path) -> Iterator[str]:
    """Start the cluster (logs of `ray start` in `logs`), yield its address, stop it."""
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths live under it
    auth = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    port = free_port()
    address = f"127.0.0.1:{port}"
    nodes = [_node(["--head", f"--port={port}", "--include-dashboard=false"], temp, logs / "head.log")]
    try:
        _wait(address, 1, nodes, logs)
        nodes.append(_node([f"--address={address}"], temp, logs / "worker.log"))
        _wait(address, 2, nodes, logs)
        _RUNNING[address] = (temp, nodes)
        yield address
    finally:
        _RUNNING.pop(address, None)
        for p in reversed(nodes):
            _stop(p)
        shutil.rmtree(temp, ignore_errors=True)
        if auth is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = auth


def diagnose(address: str, tail: int = 1500) -> str:
    """What a failed check against the cluster at `address` needs to say why: whether each node's
    `ray start` still runs, and the ends of the nodes' raylet and GCS logs (where Ray writes why
    a raylet or a driver went away)."""
    if address not in _RUNNING:
        return f"(no cluster of this run at {address})"
    temp, nodes = _RUNNING[address]
    lines = [f"node {i}: `ray start` pid {p.pid} " + ("running" if p.poll() is None else f"exited {p.returncode}")
             for i, p in enumerate(nodes)]
    for f in sorted(temp.glob("session_*/logs/*")):
        if f.name.startswith(("raylet", "gcs_server")) and f.is_file() and f.stat().st_size:
            lines.append(f"--- {f.name} (last {tail} chars)\n" + f.read_text(errors="replace")[-tail:])
    return "\n".join(lines)
