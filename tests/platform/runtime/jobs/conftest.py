"""Fixtures of the job tests: a real ``redis-server`` and real ``trellis worker`` processes.

Redis is started by the tests on a free port without persistence (``--save "" --appendonly
no``), so stopping it loses every RQ queue, as an outage with a restart would; it fails
under CI when ``redis-server`` is missing (``require_service``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.conftest import require_service

WORKTREE = Path(__file__).resolve().parents[4]
SAMPLE_JOBS = "tests.platform.runtime.jobs.sample_jobs"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """A ``redis-server`` of the test's own, which the test may stop and start again."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._answers, what="redis-server to answer")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(16).startswith(b"+PONG")
        except OSError:
            return False


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        require_service("Redis", "redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


class WorkerProcess:
    """A real ``trellis worker`` subprocess on the test's database and Redis."""

    def __init__(self, environment: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "trellis", "worker"],
                env=environment,
                cwd=WORKTREE,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as when a machine dies."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def start_worker(app: Flask, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start ``trellis worker`` processes on the app's database (and Redis, when the app
    has one); each is stopped at the end of the test."""
    started: list[WorkerProcess] = []

    def start(**settings: Any) -> WorkerProcess:
        environment = {
            **os.environ,
            "PYTHONPATH": str(WORKTREE),
            "TRELLIS_DATABASE_URL": app.config["DATABASE_URL"],
            "TRELLIS_SECRET_KEY": "test-secret",
            "TRELLIS_INSTANCE_PATH": str(tmp_path / "instance"),
            "TRELLIS_JOB_MODULES": SAMPLE_JOBS,
            "TRELLIS_JOB_LEASE_SECONDS": "2",
            "TRELLIS_JOB_REPUSH_SECONDS": "2",
            "TRELLIS_RETRY_BASE_SECONDS": "0",
            "TRELLIS_WORKER_POLL_SECONDS": "1",
        }
        environment.pop("TRELLIS_REDIS_URL", None)
        if app.config.get("REDIS_URL"):
            environment["TRELLIS_REDIS_URL"] = app.config["REDIS_URL"]
        environment.update({f"TRELLIS_{k}": str(v) for k, v in settings.items()})
        worker = WorkerProcess(environment, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 90.0) -> Any:
    """Poll ``condition`` until it is true (its value is returned); fail after ``timeout``
    seconds. The machine is shared: the bound is generous, and no test asserts a speed."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)
