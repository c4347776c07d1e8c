"""The demo site, driven over real HTTP against the emulator it starts itself."""

from __future__ import annotations

import os
import socket
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask.testing import FlaskClient
from support.keys import pem_private, pem_public
from werkzeug.test import TestResponse

from demo import create_app
from flask_alipay import AlipayUser, user_logged_in
from flask_alipay.testing import AlipayEmulator

PRODUCTION = (
    "https://openauth.alipay.com/oauth2/publicAppAuthorize.htm",
    "https://openapi.alipay.com/gateway.do",
)
SANDBOX = (
    "https://openauth-sandbox.dl.alipaydev.com/oauth2/publicAppAuthorize.htm",
    "https://openapi-sandbox.dl.alipaydev.com/gateway.do",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No ALIPAY_* settings from the machine running the tests: the demo uses its emulator."""
    for name in list(os.environ):
        if name.startswith("ALIPAY_") or name in ("DEMO_EMULATOR_PORT", "SECRET_KEY"):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def make_demo(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> Iterator[Callable[[], Flask]]:
    """Build demo apps on a tmp database; stop every emulator they started."""
    apps: list[Flask] = []

    def make() -> Flask:
        app = create_app({"TESTING": True, "DATABASE": str(tmp_path / "demo.sqlite3")})
        apps.append(app)
        return app

    yield make
    for app in apps:
        emulator = app.extensions.get("demo_emulator")
        if emulator is not None:
            emulator.stop()


@pytest.fixture
def demo(make_demo: Callable[[], Flask]) -> Flask:
    return make_demo()


@pytest.fixture
def client(demo: Flask) -> FlaskClient:
    return demo.test_client()


def emulator_of(app: Flask) -> AlipayEmulator:
    emulator: AlipayEmulator = app.extensions["demo_emulator"]
    return emulator


def sign_in(client: FlaskClient, user: str = "default") -> TestResponse:
    """Login view -> the emulator's consent page -> approve -> our callback."""
    start = client.get("/alipay/login", query_string={"next": "/profile"})
    assert start.status_code == 302
    authorize_url = start.headers["Location"]
    server = emulator_of(client.application).server
    assert server is not None
    assert authorize_url.startswith(server.authorize_url + "?")
    consent = requests.get(authorize_url, timeout=10)
    assert consent.status_code == 200 and "同意 / Approve" in consent.text
    approved = requests.post(
        authorize_url, data={"user": user, "decision": "approve"}, allow_redirects=False, timeout=10
    )
    assert approved.status_code == 302, approved.text
    callback = urlsplit(approved.headers["Location"])
    assert callback.path == "/alipay/callback"
    return client.get(f"{callback.path}?{callback.query}")


def rows(app: Flask) -> list[dict[str, Any]]:
    with sqlite3.connect(app.config["DATABASE"]) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute("SELECT * FROM users")]


def test_home_offers_the_sign_in_button(client: FlaskClient) -> None:
    page = client.get("/").get_data(as_text=True)
    assert "使用支付宝登录 / Sign in with Alipay" in page
    assert 'href="/alipay/login?next=/profile"' in page


def test_sign_in_creates_the_row_then_updates_it(demo: Flask, client: FlaskClient) -> None:
    default = emulator_of(demo).default_user
    response = sign_in(client)
    assert response.status_code == 302 and response.headers["Location"] == "/profile"
    [first] = rows(demo)
    assert first["id"] == default.open_id
    assert first["id_kind"] == "open_id"
    assert first["nick_name"] == "小明"
    assert first["avatar"] == default.avatar or first["avatar"].endswith(str(default.avatar))
    assert first["sign_in_count"] == 1
    assert first["first_sign_in"] == first["last_sign_in"]

    sign_in(client)
    [second] = rows(demo)
    assert second["sign_in_count"] == 2
    assert second["first_sign_in"] == first["first_sign_in"]
    assert second["last_sign_in"] >= first["last_sign_in"]


def test_profile_shows_the_row_and_logout_clears_it(demo: Flask, client: FlaskClient) -> None:
    assert client.get("/profile").headers["Location"] == "/alipay/login?next=/profile"
    sign_in(client)
    page = client.get("/profile").get_data(as_text=True)
    assert "小明" in page and "open_id" in page
    assert str(emulator_of(demo).default_user.open_id) in page
    assert '<img class="avatar"' in page

    # The page reads SQLite, not just the session.
    with sqlite3.connect(demo.config["DATABASE"]) as conn:
        conn.execute("UPDATE users SET nick_name = '小明明', sign_in_count = 41")
    page = client.get("/profile").get_data(as_text=True)
    assert "小明明" in page and "<dd>41</dd>" in page

    logout = client.post("/alipay/logout")
    assert logout.status_code == 302 and logout.headers["Location"] == "/"
    assert client.get("/profile").status_code == 302
    assert "使用支付宝登录" in client.get("/").get_data(as_text=True)
    assert len(rows(demo)) == 1  # signing out keeps the account


def test_user_id_user_without_avatar_or_nickname(demo: Flask, client: FlaskClient) -> None:
    legacy = emulator_of(demo).add_user("legacy", id_kind="user_id", nick_name=None, avatar=None)
    sign_in(client, user="legacy")
    [row] = rows(demo)
    assert (row["id"], row["id_kind"], row["nick_name"], row["avatar"]) == (
        legacy.user_id,
        "user_id",
        None,
        None,
    )
    page = client.get("/profile").get_data(as_text=True)
    assert "user_id" in page and "No nickname" in page
    assert "<img" not in page and 'class="avatar placeholder"' in page


def test_signals_from_other_apps_are_ignored(demo: Flask) -> None:
    other = Flask("other")
    with other.app_context():
        user_logged_in.send(other, user=AlipayUser({"open_id": "0other"}), token={})
    assert rows(demo) == []


def test_emulator_port_from_environment(
    make_demo: Callable[[], Flask], clean_env: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    clean_env.setenv("DEMO_EMULATOR_PORT", str(port))
    app = make_demo()
    assert app.config["ALIPAY_GATEWAY_URL"] == f"http://127.0.0.1:{port}/gateway.do"
    assert emulator_of(app).auto_approve is False


def test_secret_key_from_environment(
    make_demo: Callable[[], Flask], clean_env: pytest.MonkeyPatch
) -> None:
    assert make_demo().secret_key != make_demo().secret_key  # random per app without it
    clean_env.setenv("SECRET_KEY", "from-the-environment")
    assert make_demo().secret_key == "from-the-environment"


@pytest.mark.parametrize(("sandbox", "endpoints"), [(None, PRODUCTION), ("1", SANDBOX)])
def test_real_alipay_from_environment(
    make_demo: Callable[[], Flask],
    clean_env: pytest.MonkeyPatch,
    app_key: rsa.RSAPrivateKey,
    alipay_key: rsa.RSAPrivateKey,
    sandbox: str | None,
    endpoints: tuple[str, str],
) -> None:
    app_private = pem_private(app_key)
    alipay_public = pem_public(alipay_key.public_key())
    clean_env.setenv("ALIPAY_APP_ID", "2021004100000000")
    clean_env.setenv("ALIPAY_PRIVATE_KEY", app_private)
    clean_env.setenv("ALIPAY_PUBLIC_KEY", alipay_public)
    clean_env.setenv("ALIPAY_SCOPE", "auth_base")  # every ALIPAY_* is read
    if sandbox is not None:
        clean_env.setenv("ALIPAY_SANDBOX", sandbox)

    app = make_demo()
    assert "demo_emulator" not in app.extensions
    with app.app_context():
        config = app.extensions["alipay"].config
        assert (config.authorize_url, config.gateway_url) == endpoints
        assert config.app_id == "2021004100000000"
        assert config.scope == "auth_base"
    location = app.test_client().get("/alipay/login").headers["Location"]
    assert location.startswith(endpoints[0] + "?app_id=2021004100000000&")
