"""flask_alipay inside real Flask stacks: path prefixes, server-side sessions on a real Redis,
Flask-WTF's CSRF protection, receivers that fail or are async, logs ops can alert on."""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from flask import Flask, Request, Response, render_template_string
from flask.sessions import SessionInterface, SessionMixin
from flask.testing import FlaskClient
from flask_session import Session
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from itsdangerous import URLSafeTimedSerializer
from support.browser import authorize, finish, start_login
from support.site import build_site
from werkzeug.datastructures import CallbackDict
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_alipay import (
    AlipayConfigError,
    AlipayLogin,
    InvalidState,
    login_failed,
    login_required,
    user_logged_in,
)
from flask_alipay.oauth import STATE_TTL
from flask_alipay.testing.pytest_plugin import SignIn

# Path prefixes ---------------------------------------------------------------------


class MountedAt:
    """What a WSGI server mounting the site under a prefix passes it: SCRIPT_NAME."""

    def __init__(self, app: Any, prefix: str) -> None:
        self.app, self.prefix = app, prefix

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        environ["SCRIPT_NAME"] = self.prefix
        return self.app(environ, start_response)


def test_a_site_under_scriptname_stays_under_it(make_site: Callable[..., Flask]) -> None:
    site = make_site()
    site.wsgi_app = MountedAt(site.wsgi_app, "/shop")  # type: ignore[method-assign]
    client = site.test_client()
    callback = urlsplit(authorize(start_login(client)))
    assert callback.path == "/shop/alipay/callback"
    # The server takes the prefix off the path, as it does for every request.
    done = client.get(callback.path.removeprefix("/shop") + "?" + callback.query)
    assert done.headers["Location"] == "/shop/"  # no next: the site's own root
    assert client.post("/alipay/logout").headers["Location"] == "/shop/"
    guarded = client.get("/private")
    assert guarded.headers["Location"] == "/shop/alipay/login?next=/shop/private"


def test_proxyfix_x_prefix_and_a_default_next(
    make_site: Callable[..., Flask], alipay_sign_in: SignIn
) -> None:
    site = make_site(ALIPAY_DEFAULT_NEXT="/welcome")
    site.wsgi_app = ProxyFix(site.wsgi_app, x_prefix=1)  # type: ignore[method-assign]
    client = site.test_client()
    client.environ_base["HTTP_X_FORWARDED_PREFIX"] = "/shop"
    assert alipay_sign_in(client).headers["Location"] == "/shop/welcome"
    assert client.post("/alipay/logout").headers["Location"] == "/shop/welcome"


# Receivers that fail, or are async -------------------------------------------------


def test_a_receiver_that_raises_leaves_no_identity_and_reaches_the_app(
    make_site: Callable[..., Flask], alipay_sign_in: SignIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="flask_alipay")
    site = make_site()
    site.config["PROPAGATE_EXCEPTIONS"] = False
    failures: list[BaseException] = []
    handled: list[BaseException] = []

    class Constraint(Exception):
        pass

    def broken(sender: Flask, **extra: Any) -> None:
        raise Constraint("duplicate key value violates unique constraint")

    def on_failure(sender: Flask, error: BaseException, **extra: Any) -> None:
        failures.append(error)

    @site.errorhandler(Constraint)
    def app_handles_it(error: Constraint) -> tuple[str, int]:
        handled.append(error)
        return "the app's own page", 409

    user_logged_in.connect(broken, sender=site)
    login_failed.connect(on_failure, sender=site)
    client = site.test_client()
    response = alipay_sign_in(client)
    assert (response.status_code, response.get_data(as_text=True)) == (409, "the app's own page")
    assert len(failures) == 1 and failures == handled
    assert client.get("/").get_data(as_text=True) == "home anonymous"
    assert client.get("/private").status_code == 302
    # One ERROR, with the attributes an alert rule reads, and no "sign-in failed" WARNING.
    (record,) = [r for r in caplog.records if r.name == "flask_alipay"]
    assert record.levelno == logging.ERROR and "Constraint" in record.getMessage()
    assert (record.alipay_reason, record.alipay_status, record.alipay_sub_code) == (  # type: ignore[attr-defined]
        "receiver",
        500,
        None,
    )


def test_an_async_receiver_is_awaited(
    make_site: Callable[..., Flask], alipay_sign_in: SignIn
) -> None:
    site = make_site()
    seen: list[str] = []

    async def on_login(sender: Flask, user: Any, **extra: Any) -> None:
        seen.append(user.id)

    user_logged_in.connect(on_login, sender=site)
    client = site.test_client()
    assert alipay_sign_in(client).status_code == 302
    assert len(seen) == 1 and client.get("/private").status_code == 200


# Server-side sessions ------------------------------------------------------------


def session_backend(kind: str, tmp_path: Path, redis_url: str | None) -> dict[str, Any]:
    if kind == "redis":
        return {"SESSION_TYPE": "redis", "SESSION_REDIS": redis.Redis.from_url(str(redis_url))}
    if kind == "sqlalchemy":
        return {
            "SESSION_TYPE": "sqlalchemy",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'sessions.sqlite3'}",
        }
    if kind == "filesystem":
        return {"SESSION_TYPE": "filesystem", "SESSION_FILE_DIR": str(tmp_path / "sessions")}
    from cachelib import FileSystemCache

    return {"SESSION_TYPE": "cachelib", "SESSION_CACHELIB": FileSystemCache(str(tmp_path))}


#: Flask-Session 0.7 deprecated its filesystem type (for cachelib); sites still run it.
FILESYSTEM_DEPRECATED = pytest.mark.filterwarnings(
    "ignore:.*(FileSystemSessionInterface|SESSION_FILE_DIR).*deprecated:DeprecationWarning"
)


@pytest.fixture(
    params=[
        "redis",
        "sqlalchemy",
        "cachelib",
        pytest.param("filesystem", marks=FILESYSTEM_DEPRECATED),
    ]
)
def server_side(
    request: pytest.FixtureRequest, alipay_config: dict[str, str], tmp_path: Path
) -> Flask:
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    app = build_site({**alipay_config, **session_backend(request.param, tmp_path, redis_url)})
    if request.param == "sqlalchemy":
        database = SQLAlchemy()
        database.init_app(app)
        app.config["SESSION_SQLALCHEMY"] = database
    Session(app)
    return app


def test_server_side_sessions_sign_in_and_rotate_the_session_id(
    server_side: Flask, alipay_sign_in: SignIn
) -> None:
    attacker = server_side.test_client()
    attacker.get("/alipay/login")  # the attacker gets a session id of their own...
    planted = attacker.get_cookie("session")
    assert planted is not None
    victim = server_side.test_client()
    victim.set_cookie("session", planted.value)  # ...and plants it in the victim's browser
    assert alipay_sign_in(victim).status_code == 302
    assert victim.get("/private").status_code == 200
    rotated = victim.get_cookie("session")
    assert rotated is not None and rotated.value != planted.value
    attacker.set_cookie("session", planted.value)
    assert attacker.get("/private").status_code == 302  # the planted id signs nobody in


class DictSession(CallbackDict[str, Any], SessionMixin):
    def __init__(self, data: dict[str, Any], sid: str) -> None:
        super().__init__(data)
        self.sid = sid


class DictSessionInterface(SessionInterface):
    """A minimal server-side session interface of the older kind: the id in the cookie,
    the data on the server, and no regenerate()."""

    def __init__(self) -> None:
        self.store: dict[str, dict[str, Any]] = {}

    def open_session(self, app: Flask, request: Request) -> DictSession:
        sid = request.cookies.get(self.get_cookie_name(app), "")
        if sid in self.store:
            return DictSession(dict(self.store[sid]), sid)
        return DictSession({}, secrets.token_urlsafe(16))

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        assert isinstance(session, DictSession)
        self.store[session.sid] = dict(session)
        response.set_cookie(self.get_cookie_name(app), session.sid, httponly=True)


def test_an_interface_without_regenerate_is_named_in_one_warning(
    make_site: Callable[..., Flask], alipay_sign_in: SignIn, caplog: pytest.LogCaptureFixture
) -> None:
    site = make_site()
    site.session_interface = DictSessionInterface()
    caplog.set_level(logging.WARNING, logger="flask_alipay")
    for _ in range(2):
        client = site.test_client()
        client.get("/alipay/login")
        before = client.get_cookie("session")
        assert alipay_sign_in(client).status_code == 302
        assert client.get("/private").status_code == 200
        after = client.get_cookie("session")
        # Not rotated, as the warning says: flask_alipay cannot know how such ids are stored.
        assert before is not None and after is not None and after.value == before.value
    warnings = [r for r in caplog.records if "regenerate" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    assert (warnings[0].levelno, warnings[0].name) == (logging.WARNING, "flask_alipay")
    assert "test_deployments.DictSessionInterface" in message
    assert "session fixation" in message and "Flask-Session 0.7" in message


@pytest.mark.parametrize("order", ["session-first", "alipay-first"])
def test_secret_key_is_not_demanded_for_server_side_sessions(
    alipay_config: dict[str, str], redis_url: str, order: str, alipay_sign_in: SignIn
) -> None:
    app = Flask("no-secret")
    app.config.update(
        alipay_config, SESSION_TYPE="redis", SESSION_REDIS=redis.Redis.from_url(redis_url)
    )
    if order == "session-first":
        Session(app)
        AlipayLogin(app)
    else:
        AlipayLogin(app)
        Session(app)
    assert app.secret_key is None
    assert alipay_sign_in(app.test_client()).status_code == 302


def test_cookie_sessions_still_demand_a_secret_key(alipay_config: dict[str, str]) -> None:
    app = Flask("no-secret")
    app.config.update(alipay_config)
    with pytest.raises(AlipayConfigError, match="SECRET_KEY"):
        AlipayLogin(app)


def no_key_material(message: str, config: dict[str, str]) -> bool:
    key_lines = config["ALIPAY_PRIVATE_KEY"].splitlines()[1:-1]
    return not any(line in message for line in key_lines)


SIGNER_DEPRECATED = "ignore:The 'use_signer' option is deprecated:DeprecationWarning"


@pytest.mark.filterwarnings(SIGNER_DEPRECATED)
@pytest.mark.parametrize("order", ["session-first", "alipay-first"])
def test_session_use_signer_demands_a_secret_key(
    alipay_config: dict[str, str], redis_url: str, order: str
) -> None:
    app = Flask("signed-ids")
    app.config.update(
        alipay_config,
        SESSION_TYPE="redis",
        SESSION_REDIS=redis.Redis.from_url(redis_url),
        SESSION_USE_SIGNER=True,  # Flask-Session signs the session id with SECRET_KEY
    )
    if order == "session-first":
        Session(app)
    with pytest.raises(AlipayConfigError, match=r"SECRET_KEY.*SESSION_USE_SIGNER") as failure:
        AlipayLogin(app)
    assert no_key_material(str(failure.value), alipay_config)


@pytest.mark.filterwarnings(SIGNER_DEPRECATED)
def test_session_use_signer_with_a_secret_key_signs_in(
    alipay_config: dict[str, str], redis_url: str, alipay_sign_in: SignIn
) -> None:
    app = Flask("signed-ids")
    app.config.update(
        alipay_config,
        SECRET_KEY="signs-the-session-ids",
        SESSION_TYPE="redis",
        SESSION_REDIS=redis.Redis.from_url(redis_url),
        SESSION_USE_SIGNER=True,
    )
    AlipayLogin(app)
    Session(app)
    app.add_url_rule("/private", "private", login_required(lambda: "private"))
    client = app.test_client()
    assert alipay_sign_in(client).status_code == 302
    cookie = client.get_cookie("session")
    assert cookie is not None and "." in cookie.value  # a signed session id
    assert client.get("/private").status_code == 200


def forgot_session_app(config: dict[str, Any], redis_url: str) -> Flask:
    """SESSION_TYPE set, Session(app) never called: init_app trusts the setting."""
    app = Flask("forgot-session")
    app.config.update(config, SESSION_TYPE="redis", SESSION_REDIS=redis.Redis.from_url(redis_url))
    AlipayLogin(app)
    return app


def test_session_type_without_session_app_names_the_fix_at_request_time(
    alipay_config: dict[str, str], redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = forgot_session_app(alipay_config, redis_url)
    app.testing = True
    expected = r"SESSION_TYPE is set.*call Session\(app\).*SECRET_KEY"
    with pytest.raises(AlipayConfigError, match=expected) as failure:
        app.test_client().get("/alipay/login")
    assert no_key_material(str(failure.value), alipay_config)
    # In production, the 500 is logged with the same message, not a bare one.
    app.testing = False
    caplog.set_level(logging.ERROR)
    assert app.test_client().get("/alipay/login").status_code == 500
    (record,) = [r for r in caplog.records if r.exc_info]
    assert record.exc_info is not None and isinstance(record.exc_info[1], AlipayConfigError)
    assert "call Session(app)" in str(record.exc_info[1])


def test_personal_fields_without_session_app_are_refused_at_request_time(
    alipay_config: dict[str, str], redis_url: str
) -> None:
    fields = ["nick_name", "mobile"]
    app = forgot_session_app(
        {**alipay_config, "SECRET_KEY": "x", "ALIPAY_SESSION_FIELDS": fields}, redis_url
    )
    app.testing = True
    expected = r"ALIPAY_SESSION_FIELDS keeps mobile.*Session\(app\)"
    with pytest.raises(AlipayConfigError, match=expected):
        app.test_client().get("/alipay/login")
    Session(app)  # now the fields stay on the server
    assert app.test_client().get("/alipay/login").status_code == 302


# CSRF --------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def html_blocks(page: str, section: str) -> list[str]:
    """The ```html blocks of one ``## `` section of a Markdown page."""
    text = (ROOT / page).read_text(encoding="utf-8")
    start = text.index(section)
    end = text.find("\n## ", start + len(section))
    return re.findall(r"^```html\n(.*?)^```", text[start : end if end > 0 else None], re.S | re.M)


def documented_logout_form() -> str:
    """The logout form as the docs show it, in docs/deployment.md and in README alike."""
    (deployment,) = html_blocks("docs/deployment.md", "## CSRF protection")
    readme = [block for block in html_blocks("README.md", "## Usage") if "alipay.logout" in block]
    assert readme == [deployment], "README and docs/deployment.md show different logout forms"
    return deployment


def test_csrfprotect_app_wide_sign_in_and_the_documented_logout_form(
    make_site: Callable[..., Flask], alipay_sign_in: SignIn
) -> None:
    site = make_site()
    CSRFProtect(site)
    form_template = documented_logout_form()
    assert "csrf_token()" in form_template
    site.add_url_rule("/account", "account", lambda: render_template_string(form_template))
    client = site.test_client()
    assert alipay_sign_in(client).status_code == 302
    assert client.post("/alipay/logout").status_code == 400  # no token: Flask-WTF refuses
    assert client.get("/private").status_code == 200
    form = client.get("/account").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token is not None
    done = client.post("/alipay/logout", data={"csrf_token": token[1]})
    assert done.status_code == 302 and client.get("/private").status_code == 302


# Logs ops can alert on -----------------------------------------------------------------


def failure_record(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    (record,) = [r for r in caplog.records if "sign-in failed" in r.getMessage()]
    caplog.clear()
    return record


def test_failure_records_carry_reason_status_and_sub_code(
    client: FlaskClient, alipay_emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="flask_alipay")
    alipay_emulator.inject("alipay.user.info.share", sub_code="isv.insufficient-isv-permissions")
    finish(client, authorize(start_login(client)))
    record = failure_record(caplog)
    assert (record.alipay_reason, record.alipay_status, record.alipay_sub_code) == (  # type: ignore[attr-defined]
        "alipay",
        502,
        "isv.insufficient-isv-permissions",
    )


def expire(site: Flask, client: FlaskClient) -> None:
    """Age every pending sign-in in the client's cookie past its TTL."""
    serializer = site.session_interface.get_signing_serializer(site)  # type: ignore[attr-defined]
    assert isinstance(serializer, URLSafeTimedSerializer)
    cookie = client.get_cookie("session")
    assert cookie is not None
    data = dict(serializer.loads(cookie.value))
    for key, value in data.items():
        if key.startswith("_state_") and isinstance(value, dict):
            value["exp"] = time.time() - STATE_TTL
    client.set_cookie("session", serializer.dumps(data))


def test_a_state_failure_says_which_case_it_is(
    site: Flask, alipay_emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="flask_alipay")
    cases: dict[str, str] = {}

    fresh = site.test_client()  # no pending sign-in at all (a lost cookie, another SECRET_KEY)
    fresh.get("/alipay/callback?state=abc&auth_code=x")
    cases["no_pending"] = failure_record(caplog).alipay_state_case  # type: ignore[attr-defined]

    client = site.test_client()
    callback = authorize(start_login(client))
    client.get("/alipay/callback?state=someoneelse&auth_code=x")  # not this browser's
    cases["unknown"] = failure_record(caplog).alipay_state_case  # type: ignore[attr-defined]

    assert finish(client, callback).status_code == 302
    finish(client, callback)  # the same link again
    cases["used"] = failure_record(caplog).alipay_state_case  # type: ignore[attr-defined]

    late = authorize(start_login(client))
    expire(site, client)
    finish(client, late)
    cases["expired"] = failure_record(caplog).alipay_state_case  # type: ignore[attr-defined]

    assert cases == {case: case for case in cases}
    assert set(cases) == set(InvalidState.CASES)
