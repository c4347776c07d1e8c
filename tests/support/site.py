"""A small real site on the extension, and a threaded loopback server for any WSGI app."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask, jsonify
from werkzeug.serving import make_server

from flask_alipay import AlipayLogin, current_alipay_user, login_required


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve a WSGI app on a loopback port in a threaded server; yield its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def build_site(config: dict[str, Any]) -> Flask:
    """A small site: a public home, a protected page, a protected JSON API."""
    app = Flask("site")
    app.config.update(SECRET_KEY="test-secret", **config)
    AlipayLogin(app)

    @app.route("/")
    def home() -> str:
        user = current_alipay_user
        return f"home {user.id if user else 'anonymous'}"

    @app.route("/private")
    @login_required
    def private() -> str:
        return f"private {current_alipay_user.id} {current_alipay_user.get('nick_name', '')}"

    @app.route("/api/me")
    @login_required
    def me() -> Any:
        return jsonify({**current_alipay_user, "id": current_alipay_user.id})

    return app
