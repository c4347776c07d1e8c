"""The deadline of one gateway call: a watchdog thread cuts the sockets of calls that run late.

A per-read timeout lets a gateway that sends one byte at a time hold a call
forever; ``ALIPAY_TIMEOUT`` is a deadline for the whole call instead.  Each
call registers the sockets it uses (urllib3 connections report them), and one
daemon thread shuts them down when the deadline passes, which wakes the read.
"""

from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from ..errors import GatewayTimedOut

__all__ = ["Watch", "WatchedAdapter", "deadline"]


class Watch:
    """One call's deadline and the sockets it uses, so the watchdog can cut them."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.fired = False
        self._ended = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def expired(self) -> bool:
        return self.fired or time.monotonic() >= self.deadline

    def check(self) -> None:
        if self.expired():
            raise GatewayTimedOut("The Alipay gateway timed out.")

    def add(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            if not self.fired:
                self._sockets.append(sock)
                return
        _cut(sock)

    def fire(self) -> None:
        with self._lock:
            if self._ended:
                return  # the call ended in time; its sockets are back in the pool
            self.fired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _cut(sock)

    def end(self) -> None:
        """The call is over: a watchdog that comes late must not cut a pooled socket."""
        with self._lock:
            self._ended = True
            self._sockets = []


def _cut(sock: socket.socket) -> None:
    # shutdown() wakes a thread blocked in recv() on this socket; close() would not.
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """A single daemon thread that fires each watch at its deadline, unless it ended first."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Watch]] = []
        self._done: set[int] = set()
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def start(self, watch: Watch) -> int:
        ticket = next(self._order)
        with self._wake:
            heapq.heappush(self._heap, (watch.deadline, ticket, watch))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="flask-alipay-deadlines", daemon=True
                )
                self._thread.start()
            self._wake.notify()
        return ticket

    def end(self, ticket: int) -> None:
        with self._wake:
            self._done.add(ticket)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._heap:
                    self._wake.wait()
                deadline, ticket, watch = self._heap[0]
                if ticket in self._done:
                    heapq.heappop(self._heap)
                    self._done.discard(ticket)
                    continue
                delay = deadline - time.monotonic()
                if delay > 0:
                    self._wake.wait(delay)
                    continue
                heapq.heappop(self._heap)
            watch.fire()


_WATCHDOG = _Watchdog()
#: The watch of the gateway call running in this thread (or greenlet), if any.
_CURRENT: ContextVar[Watch | None] = ContextVar("flask_alipay_gateway_call", default=None)


@contextmanager
def deadline(seconds: float) -> Iterator[Watch]:
    watch = Watch(time.monotonic() + seconds)
    ticket = _WATCHDOG.start(watch)
    token = _CURRENT.set(watch)
    try:
        yield watch
    finally:
        watch.end()
        _CURRENT.reset(token)
        _WATCHDOG.end(ticket)


def _watch_socket(sock: socket.socket | None) -> None:
    watch = _CURRENT.get()
    if watch is not None:
        watch.add(sock)


class _WatchedHTTPConnection(HTTPConnection):
    """urllib3's connection, telling the current call's watch which socket it uses."""

    def _new_conn(self) -> socket.socket:
        # urllib3 has no public seam for "a socket was made"; this is the one place
        # we reach inside it, so that even a TLS handshake cannot outlive the deadline.
        sock = super()._new_conn()
        _watch_socket(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch_socket(self.sock)  # a kept-alive connection, reused by this call
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(_WatchedHTTPConnection, HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _watch_socket(self.sock)  # the TLS socket that wraps the one _new_conn made


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class WatchedAdapter(HTTPAdapter):
    """requests' adapter with pools whose connections report their sockets."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        return manager
