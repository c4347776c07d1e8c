"""The demo: the Flask-Login recipe as running code, on SQLite and on a real PostgreSQL.

SQLite ignores column lengths, so a receiver that overflows a column would pass
here and fail in production; every account test runs on both databases.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import flask_login
import pytest
import requests
import sqlalchemy
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.exc import DataError
from support.keys import pem_private, pem_public
from werkzeug.test import TestResponse

from demo import create_app
from demo.models import AVATAR_LENGTH, NICK_NAME_LENGTH, Account, db
from flask_alipay import (
    AlipayLogin,
    AlipayUser,
    current_alipay_user,
    login_failed,
    user_logged_in,
    user_logged_out,
)
from flask_alipay.testing import AlipayEmulator
from flask_alipay.testing.pytest_plugin import SignIn

PRODUCTION = (
    "https://openauth.alipay.com/oauth2/publicAppAuthorize.htm",
    "https://openapi.alipay.com/gateway.do",
)
ENVIRONMENT = ("DEMO_EMULATOR_PORT", "SECRET_KEY", "DATABASE_URL")
SANDBOX = (
    "https://openauth-sandbox.dl.alipaydev.com/oauth2/publicAppAuthorize.htm",
    "https://openapi-sandbox.dl.alipaydev.com/gateway.do",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No ALIPAY_* or database settings from the machine running the tests."""
    for name in list(os.environ):
        if name.startswith("ALIPAY_") or name in (
            "DEMO_EMULATOR_PORT",
            "SECRET_KEY",
            "DATABASE_URL",
        ):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def make_demo(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, database_url: str
) -> Iterator[Callable[..., Flask]]:
    """Build demo apps in a tmp instance folder; stop their emulators and engines after."""
    apps: list[Flask] = []

    def make(instance: Path | None = None, **config: Any) -> Flask:
        """``SQLALCHEMY_DATABASE_URI=None`` leaves the database to the demo (DATABASE_URL)."""
        settings = {"TESTING": True, "SQLALCHEMY_DATABASE_URI": database_url, **config}
        settings = {name: value for name, value in settings.items() if value is not None}
        app = create_app(settings, instance_path=str(instance or tmp_path / "instance"))
        apps.append(app)
        return app

    yield make
    for app in apps:
        with app.app_context():
            db.engine.dispose()
        emulator = app.extensions.get("demo_emulator")
        if emulator is not None and emulator.server is not None:
            emulator.stop()


@pytest.fixture
def demo(make_demo: Callable[..., Flask]) -> Flask:
    return make_demo()


@pytest.fixture
def client(demo: Flask) -> FlaskClient:
    return demo.test_client()


def emulator_of(app: Flask) -> AlipayEmulator:
    emulator: AlipayEmulator = app.extensions["demo_emulator"]
    return emulator


def consent(client: FlaskClient, user: str = "default") -> str:
    """Login view -> the emulator's consent page -> approve; returns the callback path."""
    start = client.get("/alipay/login", query_string={"next": "/profile"})
    assert start.status_code == 302
    authorize_url = start.headers["Location"]
    page = requests.get(authorize_url, timeout=10)
    assert page.status_code == 200 and "同意 / Approve" in page.text
    approved = requests.post(
        authorize_url, data={"user": user, "decision": "approve"}, allow_redirects=False, timeout=10
    )
    assert approved.status_code == 302, approved.text
    callback = urlsplit(approved.headers["Location"])
    assert callback.path == "/alipay/callback"
    return f"{callback.path}?{callback.query}"


def sign_in(client: FlaskClient, user: str = "default") -> TestResponse:
    return client.get(consent(client, user))


def accounts(app: Flask) -> list[Account]:
    with app.app_context():
        found = db.session.execute(db.select(Account)).scalars().all()
        db.session.expunge_all()
        return list(found)


def test_home_offers_the_sign_in_button(client: FlaskClient) -> None:
    page = client.get("/").get_data(as_text=True)
    assert "使用支付宝登录 / Sign in with Alipay" in page
    assert 'href="/alipay/login?next=/profile"' in page


def test_sign_in_creates_the_account_then_updates_it(demo: Flask, client: FlaskClient) -> None:
    default = emulator_of(demo).default_user
    response = sign_in(client)
    assert response.status_code == 302 and response.headers["Location"] == "/profile"
    [first] = accounts(demo)
    assert (first.alipay_id, first.id_kind, first.nick_name) == (default.open_id, "open_id", "小明")
    assert first.avatar and first.avatar.endswith(str(default.avatar))
    assert first.sign_in_count == 1

    sign_in(client)
    [second] = accounts(demo)
    assert second.sign_in_count == 2 and second.first_sign_in == first.first_sign_in
    assert second.last_sign_in >= first.last_sign_in


def test_flask_login_user_until_logout(demo: Flask, client: FlaskClient) -> None:
    assert client.get("/profile").status_code == 302  # Flask-Login's login_required
    sign_in(client)
    page = client.get("/profile").get_data(as_text=True)
    assert "小明" in page and str(emulator_of(demo).default_user.open_id) in page

    # The page reads the database, not just the session.
    with demo.app_context():
        db.session.execute(db.update(Account).values(nick_name="小明明", sign_in_count=41))
        db.session.commit()
    page = client.get("/profile").get_data(as_text=True)
    assert "小明明" in page and "<dd>41</dd>" in page

    logout = client.post("/alipay/logout")
    assert logout.status_code == 302 and logout.headers["Location"] == "/"
    assert client.get("/profile").status_code == 302  # signed out of Flask-Login as well
    assert "使用支付宝登录" in client.get("/").get_data(as_text=True)
    assert len(accounts(demo)) == 1  # signing out keeps the account


def test_remember_me_after_a_browser_restart_then_logout(demo: Flask, client: FlaskClient) -> None:
    sign_in(client)
    assert client.get_cookie("remember_token") is not None
    client.delete_cookie("session")  # the browser restarts: session cookies are gone
    assert client.get("/profile").status_code == 200  # Flask-Login restores the user...
    with client:
        client.get("/")
        assert not current_alipay_user  # ...but no Alipay identity is in the session
    seen: list[Any] = []

    def on_logout(sender: Flask, user: AlipayUser | None, **extra: Any) -> None:
        seen.append(user)

    user_logged_out.connect(on_logout, sender=demo)
    assert client.post("/alipay/logout").status_code == 302
    assert seen == [None]  # sent anyway, with no Alipay user
    assert client.get_cookie("remember_token") is None  # Flask-Login cleared it
    assert client.get("/profile").status_code == 302


def test_user_id_user_without_avatar_or_nickname(make_demo: Callable[..., Flask]) -> None:
    demo = make_demo(ALIPAY_ID_FIELD="user_id")  # an app from before the OpenID migration
    client = demo.test_client()
    legacy = emulator_of(demo).add_user("legacy", id_kind="user_id", nick_name=None, avatar=None)
    sign_in(client, user="legacy")
    [row] = accounts(demo)
    assert (row.alipay_id, row.id_kind, row.nick_name, row.avatar) == (
        legacy.user_id,
        "user_id",
        None,
        None,
    )
    page = client.get("/profile").get_data(as_text=True)
    assert "user_id" in page and "No nickname" in page
    assert "<img" not in page and 'class="avatar placeholder"' in page


def test_the_longest_values_fit_their_columns(demo: Flask, client: FlaskClient) -> None:
    emulator_of(demo).add_user(
        "long",
        open_id="0" + "a-b_C9" * 10 + "xyz",  # 64 characters, as long as open_ids get
        nick_name="长" * 200,
        avatar="https://tfs.alipayobjects.com/" + "x" * AVATAR_LENGTH,
    )
    assert sign_in(client, user="long").status_code == 302
    [row] = accounts(demo)
    assert len(row.alipay_id) == 64
    assert row.nick_name == "长" * NICK_NAME_LENGTH and row.avatar is None


def test_a_receiver_that_overflows_a_column_leaves_no_half_sign_in(
    demo: Flask, client: FlaskClient, database_url: str
) -> None:
    """What the column lengths are for: on PostgreSQL a naive receiver fails, cleanly."""
    emulator_of(demo).add_user("wordy", nick_name="长" * 200)
    failures: list[BaseException] = []

    def naive(sender: Flask, user: AlipayUser, **extra: Any) -> None:
        naive_account = Account(
            alipay_id="naive-" + user.id[:50], id_kind="open_id", nick_name=user["nick_name"]
        )
        db.session.add(naive_account)
        db.session.commit()

    def on_failure(sender: Flask, error: BaseException, **extra: Any) -> None:
        failures.append(error)

    login_failed.connect(on_failure, sender=demo)
    user_logged_in.connect(naive, sender=demo)
    try:
        if database_url.startswith("sqlite"):
            assert sign_in(client, user="wordy").status_code == 302  # SQLite does not care
            return
        demo.config["PROPAGATE_EXCEPTIONS"] = False
        response = sign_in(client, user="wordy")
    finally:
        user_logged_in.disconnect(naive, sender=demo)
    assert response.status_code == 500  # the app's own error handling, not our page
    assert len(failures) == 1 and isinstance(failures[0], DataError)
    with client:
        client.get("/")
        assert not current_alipay_user  # no Alipay identity left behind
    assert client.get("/profile").status_code == 302


def test_a_reload_keeps_one_emulator_the_session_and_an_open_consent_page(
    make_demo: Callable[..., Flask], tmp_path: Path
) -> None:
    """`flask run --debug` builds the app again at every reload, in a new process."""
    before = make_demo()
    browser = before.test_client()
    start = browser.get("/alipay/login", query_string={"next": "/profile"})
    after = make_demo()  # the same instance folder: what the reloaded process builds
    assert after.config["ALIPAY_GATEWAY_URL"] == before.config["ALIPAY_GATEWAY_URL"]
    assert after.extensions["demo_emulator"] is before.extensions["demo_emulator"]
    assert after.secret_key == before.secret_key
    assert (tmp_path / "instance" / "dev-secret-key").stat().st_mode & 0o777 == 0o600
    # The consent page opened before the reload still answers, and the sign-in finishes.
    approved = requests.post(
        start.headers["Location"],
        data={"user": "default", "decision": "approve"},
        allow_redirects=False,
        timeout=10,
    )
    callback = urlsplit(approved.headers["Location"])
    cookie = browser.get_cookie("session")
    assert cookie is not None
    reloaded = after.test_client()
    reloaded.set_cookie("session", cookie.value)
    done = reloaded.get(f"{callback.path}?{callback.query}")
    assert done.status_code == 302 and done.headers["Location"] == "/profile"
    assert reloaded.get("/profile").status_code == 200


def test_emulator_port_from_environment(
    make_demo: Callable[..., Flask], clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from support.servers import free_port

    port = free_port()
    clean_env.setenv("DEMO_EMULATOR_PORT", str(port))
    first = make_demo()
    second = make_demo()  # the reloader's second build must not crash on the taken port
    assert first.config["ALIPAY_GATEWAY_URL"] == f"http://127.0.0.1:{port}/gateway.do"
    assert second.config["ALIPAY_GATEWAY_URL"] == first.config["ALIPAY_GATEWAY_URL"]
    assert emulator_of(first).auto_approve is False


def test_workers_starting_together_on_a_new_database(
    make_demo: Callable[..., Flask], database_url: str
) -> None:
    """gunicorn starts its workers at once: another one creates the table between this
    worker's look and its CREATE TABLE, as happened under the load test."""
    other_worker = sqlalchemy.create_engine(database_url)

    def created_meanwhile(table: sqlalchemy.Table, connection: Any, **kw: Any) -> None:
        table.create(other_worker)

    sqlalchemy.event.listen(Account.__table__, "before_create", created_meanwhile, once=True)
    try:
        demo = make_demo()
    finally:
        other_worker.dispose()
    assert sign_in(demo.test_client()).status_code == 302
    assert len(accounts(demo)) == 1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_database_url_from_environment(
    make_demo: Callable[..., Flask],
    clean_env: pytest.MonkeyPatch,
    database_url: str,
    tmp_path: Path,
) -> None:
    """README: DATABASE_URL names the database; here a fresh one on the real PostgreSQL."""
    clean_env.setenv("DATABASE_URL", database_url)
    demo = make_demo(SQLALCHEMY_DATABASE_URI=None)
    assert demo.config["SQLALCHEMY_DATABASE_URI"] == database_url
    assert sign_in(demo.test_client()).status_code == 302
    # The account is in that database, read without the app.
    engine = sqlalchemy.create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sqlalchemy.text("SELECT alipay_id FROM accounts")).all()
    finally:
        engine.dispose()
    assert [row[0] for row in rows] == [emulator_of(demo).default_user.open_id]
    assert not (tmp_path / "instance" / "demo.sqlite3").exists()


def test_secret_key_from_environment(
    make_demo: Callable[..., Flask], clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert make_demo(tmp_path / "a").secret_key != make_demo(tmp_path / "b").secret_key
    clean_env.setenv("SECRET_KEY", "from-the-environment")
    assert make_demo().secret_key == "from-the-environment"


@pytest.mark.parametrize(("sandbox", "endpoints"), [(None, PRODUCTION), ("1", SANDBOX)])
def test_real_alipay_from_environment(
    make_demo: Callable[..., Flask],
    clean_env: pytest.MonkeyPatch,
    app_key: rsa.RSAPrivateKey,
    alipay_key: rsa.RSAPrivateKey,
    sandbox: str | None,
    endpoints: tuple[str, str],
) -> None:
    clean_env.setenv("ALIPAY_APP_ID", "2021004100000000")
    clean_env.setenv("ALIPAY_PRIVATE_KEY", pem_private(app_key))
    clean_env.setenv("ALIPAY_PUBLIC_KEY", pem_public(alipay_key.public_key()))
    clean_env.setenv("ALIPAY_SCOPE", "auth_base")  # every ALIPAY_* is read
    if sandbox is not None:
        clean_env.setenv("ALIPAY_SANDBOX", sandbox)
    app = make_demo()
    assert "demo_emulator" not in app.extensions
    with app.app_context():
        config = app.extensions["alipay"].config
        assert (config.authorize_url, config.gateway_url) == endpoints
        assert (config.app_id, config.scope) == ("2021004100000000", "auth_base")
    location = app.test_client().get("/alipay/login").headers["Location"]
    assert location.startswith(endpoints[0] + "?app_id=2021004100000000&")


def test_signals_from_other_apps_are_ignored(demo: Flask) -> None:
    other = Flask("other")
    with other.app_context():
        user_logged_in.send(other, user=AlipayUser({"open_id": "0other"}), token={})
    assert accounts(demo) == []


# The recipe as README prints it ---------------------------------------------------------

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_recipe() -> str:
    """The Python block of README's "Flask-Login recipe" section, as printed."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Flask-Login recipe") :]
    found = re.search(r"^```python\n(.*?)^```", section, re.S | re.M)
    assert found is not None
    return found[1]


def test_readme_recipe_as_printed(
    database_url: str,
    alipay_config: dict[str, str],
    alipay_emulator: AlipayEmulator,
    alipay_sign_in: SignIn,
) -> None:
    recipe: dict[str, Any] = {"__name__": "readme_recipe"}
    exec(compile(readme_recipe(), "README.md (Flask-Login recipe)", "exec"), recipe)
    app = Flask("recipe")
    app.config.update(SECRET_KEY="x", SQLALCHEMY_DATABASE_URI=database_url, **alipay_config)
    recipe["db"].init_app(app)
    recipe["login_manager"].init_app(app)
    AlipayLogin(app)
    me = flask_login.login_required(lambda: flask_login.current_user.nick_name)
    app.add_url_rule("/me", "me", me)
    with app.app_context():
        recipe["db"].create_all()
    alipay_emulator.add_user("wordy", nick_name="长" * 200)  # longer than the column
    try:
        client = app.test_client()
        assert client.get("/me").status_code == 302  # Flask-Login sends the visitor to Alipay
        assert alipay_sign_in(client, "wordy").status_code == 302
        assert client.get("/me").get_data(as_text=True) == "长" * 64
        assert alipay_sign_in(app.test_client(), "wordy").status_code == 302  # found, not added
        with app.app_context():
            assert recipe["db"].session.query(recipe["Account"]).count() == 1
        assert client.post("/alipay/logout").status_code == 302
        assert client.get("/me").status_code == 302  # signed out of Flask-Login too
    finally:
        user_logged_in.disconnect(recipe["log_in_local_user"])
        user_logged_out.disconnect(recipe["log_out_local_user"])
        with app.app_context():
            recipe["db"].engine.dispose()
