"""Real S3 servers for the warm-storage tests, each a separate process on 127.0.0.1.

`moto_s3()` runs moto's standalone server (`python -m moto.server`, the one DVC's own tests use)
on a free port; `ceph_rgw()` brings up a single-node Ceph with an RGW through
`scripts/ceph-dev-rgw.sh`. Both yield an `S3Server` that knows its endpoint and keys, creates
buckets and lists objects with boto3, and can be killed mid-test. Nothing here is mocked: DVC
talks HTTP to these processes exactly as it would to Ceph or MinIO.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

REPO_ROOT = Path(__file__).resolve().parents[1]
CEPH_SCRIPT = REPO_ROOT / "scripts" / "ceph-dev-rgw.sh"
CEPH_BINARIES = ("ceph-mon", "ceph-osd", "ceph-mgr", "radosgw", "ceph", "radosgw-admin", "monmaptool")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_answers(url: str, timeout: float = 2.0) -> bool:
    """True once something serves HTTP at `url` (any status code counts)."""
    try:
        urllib.request.urlopen(url, timeout=timeout).close()
        return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


@dataclass
class S3Server:
    """An S3 endpoint plus the keys that open it, and the process behind it (if we own one)."""

    endpoint: str
    access_key: str
    secret_key: str
    proc: subprocess.Popen | None = None
    workdir: Path | None = None  # ceph_rgw: the cluster's directory (pid files under run/)
    buckets: list[str] = field(default_factory=list)

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
                            config=Config(s3={"addressing_style": "path"},
                                          retries={"max_attempts": 2}))

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        self.buckets.append(name)
        return name

    def keys(self, bucket: str) -> list[str]:
        """Every object key in `bucket` (paginated)."""
        out: list[str] = []
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket):
            out.extend(o["Key"] for o in page.get("Contents", []))
        return out

    def env(self) -> dict[str, str]:
        """Credentials the way a user's shell would hold them (never written to the repo)."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def kill(self) -> None:
        """SIGKILL the server process (a crash, not a shutdown)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def start_moto(port: int | None = None, timeout: float = 60.0) -> S3Server:
    """Start `moto.server` on 127.0.0.1 and wait until it answers HTTP."""
    port = port or free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while not http_answers(endpoint + "/moto-api/"):
        if proc.poll() is not None:
            raise RuntimeError(f"moto.server exited with {proc.returncode} before serving on {port}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"moto.server did not answer on {endpoint} within {timeout:.0f}s")
        time.sleep(0.1)
    # moto accepts any keys; these are still passed only through env / config.local in tests.
    return S3Server(endpoint, "moto-test-access-key", "moto-test-secret-key", proc)


@contextlib.contextmanager
def moto_s3() -> Iterator[S3Server]:
    server = start_moto()
    try:
        yield server
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.send_signal(signal.SIGTERM)
            try:
                server.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()


def ceph_missing() -> str | None:
    """Why the Ceph RGW cannot run here, or None when it can."""
    absent = [b for b in CEPH_BINARIES if shutil.which(b) is None]
    if absent:
        return (f"Ceph packages absent ({', '.join(absent)} not on PATH); install them with "
                f"scripts/ceph-install.sh (CI does)")
    return None


def _read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs}


@contextlib.contextmanager
def ceph_rgw(workdir: Path, timeout: float = 300) -> Iterator[S3Server]:
    """A single-node Ceph (mon, mgr, memstore OSD) + RGW under `workdir`, torn down afterwards."""
    workdir = Path(workdir)
    try:
        p = subprocess.run(["bash", str(CEPH_SCRIPT), "start", str(workdir)], capture_output=True,
                           text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            logs = "\n".join(f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}"
                             for f in sorted((workdir / "log").glob("*.log")))
            raise RuntimeError(f"ceph-dev-rgw.sh start failed ({p.returncode}):\n{p.stderr}\n{logs}")
        env = _read_env(workdir / "rgw.env")
        yield S3Server(env["RGW_ENDPOINT"], env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"],
                       workdir=workdir)
    finally:
        subprocess.run(["bash", str(CEPH_SCRIPT), "clean", str(workdir)], capture_output=True,
                       text=True, timeout=120, stdin=subprocess.DEVNULL)


def isolate_aws(monkeypatch, tmp: Path) -> None:
    """Keep DVC/boto away from the user's ~/.aws, AWS_* variables and any cloud metadata service:
    the only credentials a test's `dvc` sees are the ones the test hands it."""
    for var in [v for v in os.environ if v.startswith("AWS_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
