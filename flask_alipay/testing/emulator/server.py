"""The emulator served over real HTTP on loopback, in a daemon thread.

Real HTTP, not a test client, so the app under test goes through its own HTTP
stack (``requests``, its pool, its timeouts) as it would to Alipay.  Threaded,
since a sign-in in a test calls the gateway while the test's client waits.
"""

from __future__ import annotations

import threading

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .paths import AUTHORIZE_PATH, GATEWAY_PATH

__all__ = ["EmulatorServer"]


class _QuietHandler(WSGIRequestHandler):
    """Keeps the test output free of one access-log line per request."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class EmulatorServer:
    """The emulator running on a loopback port, in a daemon thread."""

    def __init__(self, app: Flask, host: str, port: int, quiet: bool) -> None:
        handler = _QuietHandler if quiet else WSGIRequestHandler
        self._server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=handler
        )
        self.url = f"http://{host}:{self._server.server_port}"
        self.authorize_url = self.url + AUTHORIZE_PATH
        self.gateway_url = self.url + GATEWAY_PATH
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            # A short poll keeps stop() quick: tests start and stop many servers.
            kwargs={"poll_interval": 0.05},
            name="alipay-emulator",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> EmulatorServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
