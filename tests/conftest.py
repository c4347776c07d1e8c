"""Shared fixtures: real RSA keys, generated once per test session."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

VECTORS = Path(__file__).parent / "vectors"


def pem_private(key: rsa.RSAPrivateKey, fmt: str = "pkcs8") -> str:
    form = (
        serialization.PrivateFormat.PKCS8
        if fmt == "pkcs8"
        else serialization.PrivateFormat.TraditionalOpenSSL
    )
    return key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption()).decode(
        "ascii"
    )


def pem_public(key: rsa.RSAPublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def pem_body(pem: str) -> str:
    """The base64 between header and footer, on one line."""
    return "".join(line for line in pem.strip().splitlines() if not line.startswith("-----"))


@pytest.fixture(scope="session")
def app_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def alipay_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    return json.loads((VECTORS / "vectors.json").read_text(encoding="utf-8"))


# The flow: a real site on the extension, against the emulator on loopback ----

import threading  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from urllib.parse import parse_qs, urlsplit  # noqa: E402

import requests  # noqa: E402
from flask import Flask, jsonify  # noqa: E402
from flask.testing import FlaskClient  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from flask_alipay import AlipayLogin, current_alipay_user, login_required  # noqa: E402
from flask_alipay.testing import AlipayEmulator  # noqa: E402


@pytest.fixture
def emulator(app_key: rsa.RSAPrivateKey, alipay_key: rsa.RSAPrivateKey) -> Iterator[AlipayEmulator]:
    emu = AlipayEmulator(app_public_key=app_key.public_key(), alipay_private_key=alipay_key)
    with emu.serve():
        yield emu


@contextmanager
def serving(app: Flask) -> Iterator[str]:
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
        assert current_alipay_user is not None
        return f"private {current_alipay_user.id} {current_alipay_user.get('nick_name', '')}"

    @app.route("/api/me")
    @login_required
    def me() -> Any:
        assert current_alipay_user is not None
        return jsonify({**current_alipay_user, "id": current_alipay_user.id})

    return app


@pytest.fixture
def make_site(emulator: AlipayEmulator, app_key: rsa.RSAPrivateKey) -> Callable[..., Flask]:
    def make(**overrides: Any) -> Flask:
        config: dict[str, Any] = {
            **emulator.config(),
            "ALIPAY_PRIVATE_KEY": pem_private(app_key),
            **overrides,
        }
        return build_site({k: v for k, v in config.items() if v is not None})

    return make


@pytest.fixture
def site(make_site: Callable[..., Flask]) -> Flask:
    return make_site()


@pytest.fixture
def client(site: Flask) -> FlaskClient:
    return site.test_client()


def start_login(client: FlaskClient, next_url: str | None = None) -> str:
    """GET /alipay/login; return the authorize URL it redirects to."""
    query = {"next": next_url} if next_url is not None else {}
    response = client.get("/alipay/login", query_string=query)
    assert response.status_code == 302, response.data
    return str(response.headers["Location"])


def authorize(authorize_url: str, login_as: str | None = None) -> str:
    """Follow the authorize URL at the emulator over HTTP; return the callback URL."""
    url = authorize_url + (f"&login_as={login_as}" if login_as else "")
    response = requests.get(url, allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text
    return str(response.headers["Location"])


def finish(client: FlaskClient, callback_url: str) -> Any:
    parts = urlsplit(callback_url)
    return client.get(parts.path + "?" + parts.query)


def sign_in(client: FlaskClient, next_url: str | None = None, login_as: str | None = None) -> Any:
    return finish(client, authorize(start_login(client, next_url), login_as))


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}
