"""Real Redis and PostgreSQL servers for the tests: the ones CI started, or our own.

``.ci/run`` starts one redis-server and one PostgreSQL cluster for the whole run
(``.ci/services``) and passes their URLs in ``FLASK_ALIPAY_TEST_REDIS_URL`` and
``FLASK_ALIPAY_TEST_POSTGRES_URL`` (a SQLAlchemy URL of a server on which the
tests may ``CREATE DATABASE``).  Without them, as on a dev machine running
``python -m pytest``, the fixtures start their own on loopback ports picked here
and stop them after the session.

Debian's ``redis-server`` and ``postgresql`` packages provide them.  A missing
server fails the test with the package to install: these tests are never run
against a fake.

The servers started here run as children of the test process, in a session of
their own (so a Ctrl-C in the terminal reaches pytest, which stops them), and
on Linux they are sent a shutdown signal when the test process dies, even by
SIGKILL (``PR_SET_PDEATHSIG``), so a killed pytest leaves no server running; only
its folder under the temporary directory may remain.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

POSTGRES_BIN = Path("/usr/lib/postgresql")
#: Set by .ci/run: servers it started for the whole run.
REDIS_URL_VARIABLE = "FLASK_ALIPAY_TEST_REDIS_URL"
POSTGRES_URL_VARIABLE = "FLASK_ALIPAY_TEST_POSTGRES_URL"
_PR_SET_PDEATHSIG = 1


class MissingServer(RuntimeError):
    """A server the tests need is not installed, or not where its variable says."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


# The servers CI started --------------------------------------------------------------


def given_url(variable: str, environ: dict[str, str] | None = None) -> str | None:
    """The URL in ``variable``, checked to answer; None when the variable is unset.

    The error names the variable and the host and port only, never the whole URL,
    which may carry a password.
    """
    url = (os.environ if environ is None else environ).get(variable, "").strip()
    if not url:
        return None
    parts = urlsplit(url)
    if not parts.hostname or not parts.port:
        raise MissingServer(f"{variable} must name a host and a port, as redis://127.0.0.1:6379/0")
    if not listening(parts.hostname, parts.port):
        raise MissingServer(
            f"{variable} is set, but nothing listens at {parts.hostname}:{parts.port}: "
            f"start that server, or unset {variable} to let the tests start their own."
        )
    return url


@contextmanager
def redis_url(environ: dict[str, str] | None = None) -> Iterator[str]:
    """FLASK_ALIPAY_TEST_REDIS_URL if set, else a redis-server of our own for the block."""
    url = given_url(REDIS_URL_VARIABLE, environ)
    if url is not None:
        yield url
        return
    with redis_server() as url:
        yield url


@contextmanager
def postgres_url(environ: dict[str, str] | None = None) -> Iterator[str]:
    """FLASK_ALIPAY_TEST_POSTGRES_URL if set, else a cluster of our own; a SQLAlchemy URL."""
    url = given_url(POSTGRES_URL_VARIABLE, environ)
    if url is not None:
        # psycopg (3) is the driver the tests install; a plain URL means it.
        for plain in ("postgresql://", "postgres://"):
            if url.startswith(plain):
                url = "postgresql+psycopg://" + url.removeprefix(plain)
        yield url
        return
    with postgres_server() as url:
        yield url


# Servers of our own ---------------------------------------------------------------------


def _need(program: str | None, package: str) -> str:
    if program is None or not Path(program).exists():
        raise MissingServer(f"{package} is not installed: apt-get install -y {package}")
    return program


def _wait_until(ready: Callable[[], bool], process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        if ready():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} was not ready within 30 s")


def die_with_parent(sig: signal.Signals) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets ``sig`` when this process dies (Linux), even by SIGKILL.

    Set after any change of user (which clears it).  The signal follows the thread
    that started the child, and fixtures start servers from pytest's main thread.
    """
    parent = os.getpid()
    try:
        prctl: Any = ctypes.CDLL(None, use_errno=True).prctl
    except (AttributeError, OSError):  # not Linux: stopped at teardown only
        return lambda: None

    def arrange() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig))
        if os.getppid() != parent:  # the parent died before we asked
            os._exit(1)

    return arrange


def _stop(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    if process.poll() is None:
        process.send_signal(sig)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway redis-server on a free loopback port; yields its URL."""
    program = _need(shutil.which("redis-server"), "redis-server")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix=f"alipay-redis-{port}-") as folder:
        process = subprocess.Popen(
            [program, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", folder],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGTERM),
        )
        try:
            _wait_until(lambda: listening("127.0.0.1", port), process, "redis-server")
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            _stop(process, signal.SIGTERM)


def _postgres_program(name: str) -> str:
    versions = sorted(POSTGRES_BIN.glob(f"*/bin/{name}")) if POSTGRES_BIN.exists() else []
    found = str(versions[-1]) if versions else shutil.which(name)
    return _need(found, "postgresql")


@contextmanager
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free loopback port; yields a SQLAlchemy URL.

    PostgreSQL refuses to run as root, so under root initdb and the server run as
    the ``postgres`` user that Debian's package creates.  The server is a direct
    child (not daemonised by pg_ctl), so it can die with this process.
    """
    initdb, postgres = _postgres_program("initdb"), _postgres_program("postgres")
    pg_isready = _postgres_program("pg_isready")
    as_postgres: dict[str, Any] = (
        {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}
    )
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="alipay-postgres-"))
    try:
        if as_postgres:
            shutil.chown(folder, "postgres", "postgres")
        data = folder / "data"
        # UTF8 whatever the locale: with no LANG, initdb picks SQL_ASCII, where VARCHAR
        # lengths count bytes and the column-length tests would not mean what they say.
        subprocess.run(
            [initdb, "-D", str(data), "-U", "alipay", "--auth=trust", "-E", "UTF8", "--locale=C"],
            check=True,
            cwd=folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            **as_postgres,
        )
        options = ["-p", str(port), "-k", str(folder), "-c", "listen_addresses=127.0.0.1"]
        with (folder / "log").open("wb") as log:
            process = subprocess.Popen(
                [postgres, "-D", str(data), *options, "-c", "fsync=off"],
                cwd=folder,
                stdout=log,
                stderr=log,
                start_new_session=True,
                # SIGINT is PostgreSQL's fast shutdown: clients cut off, nothing left behind.
                preexec_fn=die_with_parent(signal.SIGINT),
                **as_postgres,
            )
        try:
            ready = [pg_isready, "-q", "-h", "127.0.0.1", "-p", str(port)]
            _wait_until(lambda: subprocess.run(ready).returncode == 0, process, "postgres")
            yield f"postgresql+psycopg://alipay@127.0.0.1:{port}/postgres"
        finally:
            _stop(process, signal.SIGINT)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
