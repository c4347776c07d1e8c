"""Real Redis and PostgreSQL servers, started on loopback ports picked here, stopped after.

Debian's ``redis-server`` and ``postgresql`` packages provide them (``.ci/run``
installs both). A missing server fails the test with the package to install:
these tests are never run against a fake.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

POSTGRES_BIN = Path("/usr/lib/postgresql")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _need(program: str | None, package: str) -> str:
    if program is None or not Path(program).exists():
        pytest.fail(f"{package} is not installed: apt-get install -y {package}")
    return program


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port} within 30 s")


@contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway redis-server on a free loopback port; yields its URL."""
    program = _need(shutil.which("redis-server"), "redis-server")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="alipay-redis-") as folder:
        process = subprocess.Popen(
            [program, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", folder],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for_port(port, process, "redis-server")
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(timeout=30)


def _postgres_program(name: str) -> str:
    versions = sorted(POSTGRES_BIN.glob(f"*/bin/{name}")) if POSTGRES_BIN.exists() else []
    found = str(versions[-1]) if versions else shutil.which(name)
    return _need(found, "postgresql")


@contextmanager
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free loopback port; yields a SQLAlchemy URL.

    PostgreSQL refuses to run as root, so under root it runs as the ``postgres``
    user that Debian's package creates.
    """
    initdb, pg_ctl = _postgres_program("initdb"), _postgres_program("pg_ctl")
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="alipay-postgres-"))
    if as_user:
        shutil.chown(folder, "postgres")
    data = folder / "data"
    run = {"check": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
    subprocess.run([*as_user, initdb, "-D", str(data), "-U", "alipay", "--auth=trust"], **run)
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {folder} -c fsync=off"
    subprocess.run(
        [
            *as_user,
            pg_ctl,
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(folder / "log"),
            "-w",
            "start",
        ],
        **run,
    )
    try:
        yield f"postgresql+psycopg://alipay@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], **run)
        shutil.rmtree(folder, ignore_errors=True)
