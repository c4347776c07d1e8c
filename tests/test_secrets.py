"""No private key, token or auth_code in a log line, a page or an exception."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from support.browser import authorize, finish, query_of, start_login
from support.keys import pem_body, pem_private
from support.raw_http import raw_server
from support.servers import free_port
from support.site import build_site, serving

from flask_alipay import AlipayError, login_failed, user_logged_in
from flask_alipay.logs import RedactingFilter
from flask_alipay.testing import AlipayEmulator


class Seen:
    """Everything a sign-in left behind where an operator or attacker could read it."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def add(self, *texts: Any) -> None:
        self.texts.extend(str(t) for t in texts)

    def assert_free_of(self, *secrets: str) -> None:
        for secret in secrets:
            assert secret and len(secret) >= 8
            for text in self.texts:
                assert secret not in text, f"secret leaked into: {text[:200]!r}"


@pytest.fixture
def seen(caplog: pytest.LogCaptureFixture) -> Seen:
    caplog.set_level(logging.DEBUG)
    return Seen()


def _collect(seen: Seen, caplog: pytest.LogCaptureFixture, errors: list[AlipayError]) -> None:
    for record in caplog.records:
        seen.add(record.getMessage(), record.exc_text or "")
        if record.exc_info and record.exc_info[1] is not None:
            seen.add(repr(record.exc_info[1]))
    for error in errors:
        seen.add(str(error), repr(error), error.hint, error.sub_msg or "")
        context = error.__context__ or error.__cause__
        while context is not None:
            seen.add(str(context), repr(context))
            context = context.__context__ or context.__cause__


def test_success_and_every_failure_leak_nothing(
    make_site: Callable[..., Flask],
    alipay_emulator: AlipayEmulator,
    app_key: rsa.RSAPrivateKey,
    other_key: rsa.RSAPrivateKey,
    seen: Seen,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tokens: list[str] = []
    codes: list[str] = []
    errors: list[AlipayError] = []

    def on_login(sender: Any, token: dict[str, Any], **kwargs: Any) -> None:
        tokens.extend([token["access_token"], token["refresh_token"]])

    def on_failure(sender: Any, error: AlipayError, **kwargs: Any) -> None:
        errors.append(error)

    def attempt(site: Flask) -> None:
        client = site.test_client()
        callback = authorize(start_login(client))
        codes.append(query_of(callback)["auth_code"])
        response = finish(client, callback)
        seen.add(response.get_data(as_text=True), dict(response.headers))

    user_logged_in.connect(on_login)
    login_failed.connect(on_failure)
    try:
        site = make_site()
        attempt(site)  # success
        site.debug = True  # the debug page shows the most
        attempt(site)  # another success
        alipay_emulator.inject(
            "alipay.user.info.share", sub_code="aop.invalid-auth-token", code="20001"
        )
        attempt(site)
        alipay_emulator.inject("alipay.user.info.share", bad_signature=True)
        attempt(site)
        alipay_emulator.inject("alipay.user.info.share", html_status=500)
        attempt(site)
        # The gateway quotes its string to sign, code included, for a bad signature.
        attempt(make_site(ALIPAY_PRIVATE_KEY=pem_private(other_key)))
        attempt(make_site(ALIPAY_TIMEOUT=0.3))  # fine: no delay, but exercise config
        alipay_emulator.inject("alipay.system.oauth.token", delay=0.8)
        attempt(make_site(ALIPAY_TIMEOUT=0.3))
        attempt(make_site(ALIPAY_GATEWAY_URL="http://127.0.0.1:9/gateway.do"))
    finally:
        user_logged_in.disconnect(on_login)
        login_failed.disconnect(on_failure)

    assert len(errors) == 6 and len(tokens) == 6
    # Tokens of the sign-ins whose profile call failed count as well.
    tokens += [r.params["auth_token"] for r in alipay_emulator.requests if "auth_token" in r.params]
    assert len(set(tokens)) > 6
    assert any(
        r.query.get("sign_type") and e.sub_code == "isv.invalid-signature"
        for r in alipay_emulator.requests
        for e in errors
    )
    _collect(seen, caplog, errors)
    key_lines = [line for line in pem_private(app_key).splitlines() if "-----" not in line]
    seen.assert_free_of(*tokens, *codes, *key_lines[1:-1], pem_body(pem_private(other_key))[40:90])


def test_profile_call_that_cannot_connect_leaks_no_token(
    make_site: Callable[..., Flask], seen: Seen, caplog: pytest.LogCaptureFixture
) -> None:
    site = make_site(ALIPAY_GATEWAY_URL="http://127.0.0.1:9/gateway.do")
    secret = "SECRET-ACCESS-TOKEN-42"
    with site.app_context(), pytest.raises(AlipayError) as caught:
        site.extensions["alipay"].gateway.call("alipay.user.info.share", auth_token=secret)
    error = caught.value
    assert error.status_code == 502 and error.reason == "unreachable"
    assert error.__context__ is None and error.__cause__ is None
    _collect(seen, caplog, [error])
    seen.assert_free_of(secret)


def test_urllib3_debug_lines_are_redacted(
    make_site: Callable[..., Flask], seen: Seen, caplog: pytest.LogCaptureFixture
) -> None:
    tokens: list[str] = []

    def on_login(sender: Any, token: dict[str, Any], **kwargs: Any) -> None:
        tokens.append(token["access_token"])

    user_logged_in.connect(on_login)
    try:
        client = make_site().test_client()
        callback = authorize(start_login(client))
        finish(client, callback)
    finally:
        user_logged_in.disconnect(on_login)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("urllib3")]
    assert any("gateway.do" in line for line in lines)  # the lines exist...
    _collect(seen, caplog, [])
    seen.assert_free_of(*tokens)  # ...but carry no token


def test_string_to_sign_is_logged_at_debug_with_secrets_redacted(
    make_site: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="flask_alipay")
    client = make_site().test_client()
    callback = authorize(start_login(client))
    code = query_of(callback)["auth_code"]
    finish(client, callback)
    lines = [r.getMessage() for r in caplog.records if "string to sign" in r.getMessage()]
    assert any("code=***" in line and "method=alipay.system.oauth.token" in line for line in lines)
    assert any("auth_token=***" in line for line in lines)
    assert not any(code in line for line in lines)
    assert urlsplit(callback).path == "/alipay/callback"


def test_werkzeug_access_log_hides_the_auth_code(caplog: pytest.LogCaptureFixture) -> None:
    import flask_alipay.logs  # noqa: F401  - installs the filter

    caplog.set_level(logging.INFO, logger="werkzeug")
    logging.getLogger("werkzeug").info(
        '%s - - [%s] "%s" %s -',
        "127.0.0.1",
        "24/Nov/2026 10:00:00",
        "GET /alipay/callback?app_id=1&auth_code=SECRETCODE123456&state=abc HTTP/1.1",
        302,
    )
    (record,) = [r for r in caplog.records if r.name == "werkzeug"]
    assert "SECRETCODE123456" not in record.getMessage()
    assert "auth_code=***" in record.getMessage() and "state=abc" in record.getMessage()


def test_after_sign_in_failures_leak_nothing(
    site: Flask,
    alipay_emulator: AlipayEmulator,
    app_key: rsa.RSAPrivateKey,
    seen: Seen,
    caplog: pytest.LogCaptureFixture,
) -> None:
    alipay = site.extensions["alipay"]
    refresh_secret = "SECRET-REFRESH-TOKEN-0001"
    access_secret = "SECRET-ACCESS-TOKEN-0002"
    errors: list[AlipayError] = []
    with site.app_context():
        for attempt in (
            lambda: alipay.refresh_token(refresh_secret),
            lambda: alipay.fetch_profile(access_secret),
            lambda: alipay.call("alipay.emulator.unknown", {"a": 1}, auth_token=access_secret),
        ):
            with pytest.raises(AlipayError) as caught:
                attempt()
            errors.append(caught.value)
        alipay_emulator.inject(html_status=500)
        with pytest.raises(AlipayError) as caught:
            alipay.fetch_profile(access_secret)
        errors.append(caught.value)
        seen.add(repr(alipay.config), repr(alipay.gateway.config), repr(alipay))
    _collect(seen, caplog, errors)
    key_lines = [line for line in pem_private(app_key).splitlines() if "-----" not in line]
    seen.assert_free_of(refresh_secret, access_secret, *key_lines[1:-1])


def test_no_logger_at_any_level_sees_a_token_or_code(
    make_site: Callable[..., Flask],
    alipay_emulator: AlipayEmulator,
    seen: Seen,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real server, a profile answer with a malformed header line, every logger at DEBUG."""
    assert alipay_emulator.server is not None
    upstream = alipay_emulator.server.gateway_url

    def relay(conn: socket.socket, request: bytes) -> None:
        head, _, body = request.partition(b"\r\n\r\n")
        target = head.split(b" ")[1].decode("ascii")
        answer = requests.post(
            upstream + "?" + urlsplit(target).query,
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"},
            timeout=10,
        )
        broken = b"X-Broken header line without a colon\r\n" if b"user.info" in head else b""
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html;charset=utf-8\r\n"
            + broken
            + f"Content-Length: {len(answer.content)}\r\nConnection: close\r\n\r\n".encode()
            + answer.content
        )

    for name in [*logging.root.manager.loggerDict, "urllib3.connection"]:
        logger = logging.getLogger(name)
        monkeypatch.setattr(logger, "level", logging.NOTSET)  # let everything reach the root
    # The redacting filter on urllib3 is a second line of defence; the first is that no
    # token is ever in a URL, and that is what this test holds us to.
    for name in ("urllib3.connectionpool", "urllib3.connection"):
        logger = logging.getLogger(name)
        monkeypatch.setattr(
            logger, "filters", [f for f in logger.filters if not isinstance(f, RedactingFilter)]
        )
    tokens: list[str] = []

    def on_login(sender: Any, token: dict[str, Any], **kwargs: Any) -> None:
        tokens.extend([token["access_token"], token["refresh_token"]])

    with raw_server(relay) as (gateway, _):
        site = make_site(ALIPAY_GATEWAY_URL=gateway)
        user_logged_in.connect(on_login, sender=site)
        with serving(site) as url:
            browser = requests.Session()
            to_alipay = browser.get(url + "/alipay/login", allow_redirects=False, timeout=10)
            back = requests.get(to_alipay.headers["Location"], allow_redirects=False, timeout=10)
            callback = back.headers["Location"]
            done = browser.get(callback, allow_redirects=False, timeout=10)
    assert done.status_code == 302, done.text
    assert len(tokens) == 2
    names = {record.name for record in caplog.records}
    assert "werkzeug" in names  # the access log, with the callback URL in it
    assert any("Failed to parse headers" in r.getMessage() for r in caplog.records)
    # What the test's own browser logged (urllib3 quoting the callback URL it fetched) is
    # the browser's, not the site's: only records from the site's and gateway's threads count.
    browser = threading.get_ident()
    for record in caplog.records:
        if record.thread != browser:
            seen.add(record.getMessage(), record.exc_text or "")
    seen.assert_free_of(*tokens, query_of(callback)["auth_code"])


def test_what_alipay_sends_cannot_forge_a_log_line(
    client: Any, alipay_emulator: AlipayEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    alipay_emulator.inject(
        "alipay.system.oauth.token",
        sub_code="isv.code-invalid\nINFO forged",
        sub_msg="授权码无效\r\nCRITICAL flask_alipay: admin signed in\u2028",
    )
    caplog.set_level(logging.WARNING, logger="flask_alipay")
    callback = authorize(start_login(client))
    assert finish(client, callback).status_code == 502
    (line,) = [r.getMessage() for r in caplog.records if "sign-in failed" in r.getMessage()]
    assert "\n" not in line and "\r" not in line and "\u2028" not in line
    assert "\\n" in line and "\\r\\n" in line  # still readable, as escapes
    assert "授权码无效" in line  # Chinese stays as it is


def test_what_the_browser_sends_cannot_forge_a_log_line(
    client: Any, alipay_emulator: AlipayEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """An auth_code that is not Alipay's never reaches the gateway or a log line."""
    caplog.set_level(logging.DEBUG)
    callback = authorize(start_login(client))
    forged = callback.replace("auth_code=", "auth_code=zz%0ACRITICAL+flask_alipay%3A+forged")
    assert finish(client, forged).status_code == 400
    assert not [r for r in alipay_emulator.requests if r.method == "alipay.system.oauth.token"]
    messages = [record.getMessage() for record in caplog.records]
    assert any("sign-in failed" in message for message in messages)
    assert not [message for message in messages if "\n" in message or "forged" in message]


def test_what_a_site_signs_is_logged_on_one_line(
    site: Flask, alipay_emulator: AlipayEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """The DEBUG string to sign holds business values a site passes on: escaped."""
    caplog.set_level(logging.DEBUG, logger="flask_alipay")
    with site.app_context(), pytest.raises(AlipayError):
        site.extensions["alipay"].call(
            "alipay.user.certify.open.query", note="a\nCRITICAL flask_alipay: forged"
        )
    (line,) = [r.getMessage() for r in caplog.records if "string to sign" in r.getMessage()]
    assert "\n" not in line and "\\n" in line


def test_an_alipay_cert_sn_cannot_forge_a_log_line(
    app_key: rsa.RSAPrivateKey, alipay_key: rsa.RSAPrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    """Certificate mode: the answer's alipay_cert_sn is quoted in the failure line."""
    emulator = AlipayEmulator(
        strict=True,
        app_public_key=app_key.public_key(),
        alipay_private_key=alipay_key,
        cert_mode=True,
    )
    forged = (
        b'{"alipay_system_oauth_token_response":{"access_token":"x"},'
        b'"alipay_cert_sn":"0a\\nCRITICAL flask_alipay: forged","sign":"AAAA"}'
    )

    def gateway(conn: socket.socket, request: bytes) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html;charset=utf-8\r\n"
            + f"Content-Length: {len(forged)}\r\nConnection: close\r\n\r\n".encode()
            + forged
        )

    caplog.set_level(logging.WARNING, logger="flask_alipay")
    with emulator.serve(), raw_server(gateway) as (url, _):
        site = build_site(
            {
                **emulator.config(),
                "ALIPAY_PRIVATE_KEY": pem_private(app_key),
                "ALIPAY_GATEWAY_URL": url,
            }
        )
        client = site.test_client()
        assert finish(client, authorize(start_login(client))).status_code == 502
    (line,) = [r.getMessage() for r in caplog.records if "sign-in failed" in r.getMessage()]
    assert "\n" not in line and "0a\\nCRITICAL" in line


GUNICORN_APP = """
import flask_alipay  # its import puts the redacting filter on the access loggers
from flask import Flask

app = Flask(__name__)


@app.get("/alipay/callback")
def callback():
    return "spent", 400
"""


def test_gunicorns_access_log_hides_the_auth_code(tmp_path: Path) -> None:
    """A real gunicorn, its access log to a file: the callback's code is masked there."""
    (tmp_path / "siteapp.py").write_text(GUNICORN_APP, encoding="utf-8")
    access_log = tmp_path / "access.log"
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--access-logfile",
            str(access_log),
            "siteapp:app",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    code = "4b203fe6c11548bcabd8da5bb087a83b"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = requests.get(
                    f"http://127.0.0.1:{port}/alipay/callback",
                    params={"auth_code": code, "state": "s"},
                    timeout=5,
                )
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.1)
        assert answer.status_code == 400
    finally:
        server.terminate()
        server.wait(timeout=30)
    logged = access_log.read_text(encoding="utf-8")
    assert "/alipay/callback?auth_code=***&state=s" in logged
    assert code not in logged
