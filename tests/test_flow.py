"""The whole sign-in, over real HTTP to the emulator on loopback."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from flask import Flask, redirect
from flask.testing import FlaskClient
from itsdangerous import URLSafeTimedSerializer
from support.browser import authorize, finish, query_of, start_login

from flask_alipay import (
    AlipayError,
    AlipayUser,
    login_failed,
    user_logged_in,
    user_logged_out,
)
from flask_alipay.oauth import MAX_PENDING_LOGINS, PENDING_BYTES
from flask_alipay.redirects import MAX_NEXT_BYTES, stored_size
from flask_alipay.testing import AlipayEmulator
from flask_alipay.testing.pytest_plugin import SignIn


@contextmanager
def received(signal: Any) -> Iterator[list[dict[str, Any]]]:
    calls: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        calls.append({"sender": sender, **kwargs})

    signal.connect(receiver)
    try:
        yield calls
    finally:
        signal.disconnect(receiver)


def session_of(app: Flask, client: FlaskClient) -> dict[str, Any]:
    """Decode the session cookie as the browser holds it."""
    cookie = client.get_cookie("session")
    if cookie is None:
        return {}
    interface = app.session_interface
    serializer = interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    assert isinstance(serializer, URLSafeTimedSerializer)
    return dict(serializer.loads(cookie.value))


# The authorize redirect ---------------------------------------------------


def test_login_redirects_to_authorize_with_alipay_params(
    client: FlaskClient, alipay_emulator: AlipayEmulator
) -> None:
    url = start_login(client, "/private")
    assert url.startswith(alipay_emulator.server.authorize_url + "?")  # type: ignore[union-attr]
    params = query_of(url)
    assert set(params) == {"app_id", "scope", "redirect_uri", "state"}
    assert params["app_id"] == alipay_emulator.app_id
    assert params["scope"] == "auth_user"
    assert params["redirect_uri"] == "http://localhost/alipay/callback"
    state = params["state"]
    assert 0 < len(state) <= 100 and state.isalnum()
    assert start_login(client) != url  # a fresh state every time


def test_redirect_uri_setting_is_sent_verbatim(make_site: Callable[..., Flask]) -> None:
    site = make_site(ALIPAY_REDIRECT_URI="https://shop.example.cn/alipay/callback")
    url = start_login(site.test_client())
    assert query_of(url)["redirect_uri"] == "https://shop.example.cn/alipay/callback"


# A good sign-in -----------------------------------------------------------


def test_full_sign_in(
    alipay_sign_in: SignIn, site: Flask, client: FlaskClient, alipay_emulator: AlipayEmulator
) -> None:
    with received(user_logged_in) as logins:
        response = alipay_sign_in(client, next="/private?tab=1")
    assert response.status_code == 302
    assert response.headers["Location"] == "/private?tab=1"

    assert len(logins) == 1
    user, token = logins[0]["user"], logins[0]["token"]
    assert logins[0]["sender"] is site
    default = alipay_emulator.default_user
    assert isinstance(user, AlipayUser)
    assert user.id == default.open_id and user.id_kind == "open_id"
    assert user["nick_name"] == "小明"
    assert user["avatar"] == alipay_emulator.server.url + default.avatar  # type: ignore[union-attr]
    assert "user_id" not in user
    with pytest.raises(TypeError):
        user["nick_name"] = "x"  # type: ignore[index]
    for name in ("expires_in", "re_expires_in", "expires_at"):
        assert isinstance(token[name], int)
    assert abs(token["expires_at"] - (time.time() + token["expires_in"])) < 5
    assert token["access_token"] and token["refresh_token"]

    page = client.get("/private")
    assert page.status_code == 200
    assert page.get_data(as_text=True) == f"private {default.open_id} 小明"
    stored = session_of(site, client)
    assert stored["_alipay_user"]["open_id"] == default.open_id
    assert token["access_token"] not in json.dumps(stored)
    assert token["refresh_token"] not in json.dumps(stored)


def test_gateway_requests_are_split_signed_and_in_beijing_time(
    alipay_sign_in: SignIn, client: FlaskClient, alipay_emulator: AlipayEmulator
) -> None:
    assert alipay_sign_in(client).status_code == 302
    token_call, info_call = alipay_emulator.requests
    assert token_call.method == "alipay.system.oauth.token"
    assert set(token_call.form) == {"grant_type", "code"}
    assert token_call.form["grant_type"] == "authorization_code"
    assert {
        "app_id",
        "method",
        "format",
        "charset",
        "sign_type",
        "sign",
        "timestamp",
        "version",
    } <= set(token_call.query)
    assert token_call.query["charset"] == "utf-8" and token_call.query["version"] == "1.0"
    beijing = datetime.now(timezone(timedelta(hours=8))).replace(tzinfo=None)
    sent = datetime.strptime(token_call.query["timestamp"], "%Y-%m-%d %H:%M:%S")
    assert abs((sent - beijing).total_seconds()) < 60
    assert info_call.method == "alipay.user.info.share"
    assert set(info_call.form) == {"auth_token"} and "auth_token" not in info_call.query


@pytest.mark.parametrize("sign_type", ["RSA2", "RSA"])
@pytest.mark.parametrize("charset", ["utf8", "gbk"])
def test_sign_types_and_charsets_with_chinese_nicknames(
    alipay_sign_in: SignIn,
    make_site: Callable[..., Flask],
    alipay_emulator: AlipayEmulator,
    sign_type: str,
    charset: str,
) -> None:
    alipay_emulator.add_user("wang", nick_name="王小二·嘰", city="深圳市", province="广东省")
    site = make_site(ALIPAY_SIGN_TYPE=sign_type, ALIPAY_CHARSET=charset)
    client = site.test_client()
    with received(user_logged_in) as logins:
        assert alipay_sign_in(client, "wang").status_code == 302
    user = logins[0]["user"]
    assert user["nick_name"] == "王小二·嘰" and user["city"] == "深圳市"
    wire = "GBK" if charset == "gbk" else "utf-8"
    assert {r.query["charset"] for r in alipay_emulator.requests} == {wire}
    assert {r.query["sign_type"] for r in alipay_emulator.requests} == {sign_type}


def test_union_id_is_kept(
    alipay_sign_in: SignIn, client: FlaskClient, alipay_emulator: AlipayEmulator
) -> None:
    alipay_emulator.add_user("grouped", union_id="union-123")
    with received(user_logged_in) as logins:
        alipay_sign_in(client, "grouped")
    assert logins[0]["user"]["union_id"] == "union-123"


def test_auth_base_makes_no_profile_call(
    alipay_sign_in: SignIn, make_site: Callable[..., Flask], alipay_emulator: AlipayEmulator
) -> None:
    site = make_site(ALIPAY_SCOPE="auth_base")
    client = site.test_client()
    assert query_of(start_login(client))["scope"] == "auth_base"
    with received(user_logged_in) as logins:
        assert alipay_sign_in(client).status_code == 302
    assert [r.method for r in alipay_emulator.requests] == ["alipay.system.oauth.token"]
    user = logins[0]["user"]
    assert user.id == alipay_emulator.default_user.open_id
    assert "nick_name" not in user


def test_expires_in_as_strings(
    alipay_sign_in: SignIn, make_site: Callable[..., Flask], alipay_emulator: AlipayEmulator
) -> None:
    alipay_emulator.expires_as_string = True
    with received(user_logged_in) as logins:
        alipay_sign_in(make_site().test_client())
    token = logins[0]["token"]
    assert token["expires_in"] == alipay_emulator.token_ttl
    assert token["re_expires_in"] == alipay_emulator.refresh_ttl


def test_sparse_profile(
    alipay_sign_in: SignIn, client: FlaskClient, alipay_emulator: AlipayEmulator
) -> None:
    alipay_emulator.add_user("sparse", nick_name=None, avatar=None)
    with received(user_logged_in) as logins:
        assert alipay_sign_in(client, "sparse").status_code == 302
    user = logins[0]["user"]
    assert "nick_name" not in user and "avatar" not in user
    assert client.get("/private").status_code == 200


def test_slash_escapes_signed_unescaped_still_verify(
    alipay_sign_in: SignIn, client: FlaskClient, alipay_emulator: AlipayEmulator
) -> None:
    alipay_emulator.sign_unescaped_slashes = True
    with received(user_logged_in) as logins:
        assert alipay_sign_in(client).status_code == 302
    assert logins[0]["user"]["avatar"].startswith("http://127.0.0.1:")


def test_receiver_response_overrides_the_redirect(
    alipay_sign_in: SignIn, client: FlaskClient
) -> None:
    def welcome(sender: Any, **kwargs: Any) -> Any:
        return redirect("/welcome")

    user_logged_in.connect(welcome)
    try:
        response = alipay_sign_in(client, next="/private")
    finally:
        user_logged_in.disconnect(welcome)
    assert response.headers["Location"] == "/welcome"


# Two tabs and the cookie bound --------------------------------------------


def test_two_tabs_both_finish(client: FlaskClient) -> None:
    first = authorize(start_login(client, "/first"))
    second = authorize(start_login(client, "/second"))
    assert finish(client, second).headers["Location"] == "/second"
    assert finish(client, first).headers["Location"] == "/first"


def test_abandoned_logins_never_grow_the_cookie_past_4kb(site: Flask, client: FlaskClient) -> None:
    long_next = "/" + "p" * 500
    urls = [start_login(client, long_next) for _ in range(40)]
    assert len(client.get_cookie("session").value) < 4096  # type: ignore[union-attr]
    stored = session_of(site, client)
    pending = [k for k in stored if k.startswith("_state_alipay_")]
    assert 1 < len(pending) <= MAX_PENDING_LOGINS
    assert sum(stored_size({k: stored[k]}) for k in pending) <= PENDING_BYTES
    # The newest still work; the oldest were dropped.
    assert finish(client, authorize(urls[-1])).headers["Location"] == long_next
    assert finish(client, authorize(urls[0])).status_code == 400


# Bad callbacks: 4xx, never 500 --------------------------------------------


def expect_failure(client: FlaskClient, path: str, status: int) -> AlipayError:
    with received(login_failed) as failures:
        response = client.get(path)
    assert response.status_code == status, response.data
    body = response.get_data(as_text=True)
    assert "Traceback" not in body
    assert 'href="/alipay/login"' in body
    assert len(failures) == 1
    error = failures[0]["error"]
    assert isinstance(error, AlipayError) and error.status_code == status
    return error


def test_callback_without_state(client: FlaskClient) -> None:
    assert expect_failure(client, "/alipay/callback?auth_code=abc", 400).reason == "state"


def test_callback_with_unknown_state(client: FlaskClient) -> None:
    start_login(client)
    error = expect_failure(client, "/alipay/callback?auth_code=abc&state=forged", 400)
    assert error.reason == "state"


def test_state_is_single_use(client: FlaskClient) -> None:
    callback = authorize(start_login(client))
    assert finish(client, callback).status_code == 302
    parts = urlsplit(callback)
    assert expect_failure(client, parts.path + "?" + parts.query, 400).reason == "state"


def test_state_expires_after_ten_minutes(client: FlaskClient) -> None:
    callback = authorize(start_login(client))
    with client.session_transaction() as sess:
        for key, value in list(sess.items()):
            if key.startswith("_state_alipay_"):
                assert 590 < value["exp"] - time.time() <= 600
                sess[key] = {**value, "exp": time.time() - 1}
    parts = urlsplit(callback)
    assert expect_failure(client, parts.path + "?" + parts.query, 400).reason == "state"


def test_cancelled_sign_in(client: FlaskClient) -> None:
    state = query_of(start_login(client))["state"]
    error = expect_failure(client, f"/alipay/callback?state={state}&app_id=2021000000000001", 400)
    assert error.reason == "cancelled"


def test_callback_for_another_app(client: FlaskClient) -> None:
    state = query_of(start_login(client))["state"]
    error = expect_failure(
        client, f"/alipay/callback?state={state}&app_id=2021999999999999&auth_code=x", 400
    )
    assert error.reason == "app_id"


def test_spent_auth_code_is_400(client: FlaskClient, alipay_emulator: AlipayEmulator) -> None:
    code = alipay_emulator.issue_code()
    for attempt in range(2):
        state = query_of(start_login(client))["state"]
        path = f"/alipay/callback?state={state}&auth_code={code}"
        if attempt == 0:
            assert client.get(path).status_code == 302
        else:
            assert expect_failure(client, path, 400).sub_code == "isv.code-invalid"


# Alipay's failures: 502, and 504 for a timeout ----------------------------


@pytest.mark.parametrize(
    "method, injection, status, reason, sub_code",
    [
        (
            "alipay.system.oauth.token",
            {"sub_code": "isv.invalid-app-id", "code": "40002"},
            502,
            "alipay",
            "isv.invalid-app-id",
        ),
        (
            "alipay.system.oauth.token",
            {"sub_code": "isv.code-invalid", "code": "40002"},
            400,
            "alipay",
            "isv.code-invalid",
        ),
        (
            "alipay.user.info.share",
            {"sub_code": "isv.insufficient-isv-permissions", "code": "40006"},
            502,
            "alipay",
            "isv.insufficient-isv-permissions",
        ),
        ("alipay.system.oauth.token", {"gbk_error": True}, 502, "alipay", "isv.invalid-signature"),
        ("alipay.system.oauth.token", {"bad_signature": True}, 502, "signature", None),
        ("alipay.user.info.share", {"wrong_key": True}, 502, "signature", None),
        ("alipay.user.info.share", {"unsigned": True}, 502, "signature", None),
        ("alipay.system.oauth.token", {"html_status": 502}, 502, "malformed", None),
        ("alipay.system.oauth.token", {"html_status": 200}, 502, "malformed", None),
        ("alipay.user.info.share", {"truncated": True}, 502, "malformed", None),
    ],
)
def test_gateway_failures(
    client: FlaskClient,
    alipay_emulator: AlipayEmulator,
    method: str,
    injection: dict[str, Any],
    status: int,
    reason: str,
    sub_code: str | None,
) -> None:
    if injection.get("gbk_error"):
        injection = {**injection, "sub_code": "isv.invalid-signature", "sub_msg": "验签出错"}
    alipay_emulator.inject(method, **injection)
    callback = authorize(start_login(client))
    parts = urlsplit(callback)
    error = expect_failure(client, parts.path + "?" + parts.query, status)
    assert (error.reason, error.sub_code) == (reason, sub_code)
    assert error.hint
    assert client.get("/private").status_code == 302  # nobody was signed in


def test_timeout_is_504(make_site: Callable[..., Flask], alipay_emulator: AlipayEmulator) -> None:
    client = make_site(ALIPAY_TIMEOUT=0.5).test_client()
    alipay_emulator.inject("alipay.system.oauth.token", delay=1.5)
    parts = urlsplit(authorize(start_login(client)))
    assert expect_failure(client, parts.path + "?" + parts.query, 504).reason == "timeout"


def test_unreachable_gateway_is_502(
    make_site: Callable[..., Flask], alipay_emulator: AlipayEmulator
) -> None:
    client = make_site(ALIPAY_GATEWAY_URL="http://127.0.0.1:9/gateway.do").test_client()
    parts = urlsplit(authorize(start_login(client)))
    assert expect_failure(client, parts.path + "?" + parts.query, 502).reason == "unreachable"


def test_wrong_alipay_public_key_is_502(make_site: Callable[..., Flask], other_key: Any) -> None:
    from support.keys import pem_public

    client = make_site(ALIPAY_PUBLIC_KEY=pem_public(other_key.public_key())).test_client()
    parts = urlsplit(authorize(start_login(client)))
    assert expect_failure(client, parts.path + "?" + parts.query, 502).reason == "signature"


def test_app_error_handler_takes_over(site: Flask, client: FlaskClient) -> None:
    @site.errorhandler(AlipayError)
    def handle(error: AlipayError) -> tuple[str, int]:
        return f"custom {error.reason}", 418

    response = client.get("/alipay/callback?state=nope")
    assert (response.status_code, response.get_data(as_text=True)) == (418, "custom state")


def test_debug_page_shows_the_full_hint(site: Flask, client: FlaskClient) -> None:
    short = client.get("/alipay/callback?state=x").get_data(as_text=True)
    site.debug = True
    full = client.get("/alipay/callback?state=x").get_data(as_text=True)
    assert "Start the sign-in again." in full  # the whole hint: here no pending sign-in
    assert "Start the sign-in again." not in short


# next, login_required, logout ---------------------------------------------


@pytest.mark.parametrize(
    "attempt",
    [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example/",
        "\\\\evil.example",
        "javascript:alert(1)",
        "/\t/evil.example",
        "http:/evil.example",
        "evil.example",
        "/" + "x" * 600,
    ],
)
def test_open_redirects_fall_back(
    alipay_sign_in: SignIn, client: FlaskClient, attempt: str
) -> None:
    assert alipay_sign_in(client, next=attempt).headers["Location"] == "/"


def test_default_next_setting(alipay_sign_in: SignIn, make_site: Callable[..., Flask]) -> None:
    client = make_site(ALIPAY_DEFAULT_NEXT="/dashboard").test_client()
    assert alipay_sign_in(client, next="//evil").headers["Location"] == "/dashboard"
    assert client.post("/alipay/logout").headers["Location"] == "/dashboard"


def test_login_required_redirects_browsers_with_next(
    alipay_sign_in: SignIn, client: FlaskClient
) -> None:
    response = client.get("/private?x=1", headers={"Accept": "text/html"})
    assert response.status_code == 302
    location = response.headers["Location"]
    assert urlsplit(location).path == "/alipay/login"
    assert query_of(location)["next"] == "/private?x=1"
    assert (
        alipay_sign_in(client, next=query_of(location)["next"]).headers["Location"]
        == "/private?x=1"
    )
    assert client.get("/private?x=1").status_code == 200


def test_login_required_answers_json_with_401(alipay_sign_in: SignIn, client: FlaskClient) -> None:
    response = client.get("/api/me", headers={"Accept": "application/json"})
    assert response.status_code == 401
    assert response.json is not None and response.json["error"] == "login_required"
    alipay_sign_in(client)
    me = client.get("/api/me", headers={"Accept": "application/json"})
    assert me.status_code == 200 and me.json is not None and me.json["nick_name"] == "小明"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Sec-Fetch-Site": "same-origin"}, {"Origin": "http://localhost"}],
    ids=["no-browser-headers", "same-origin", "origin"],
)
def test_logout(alipay_sign_in: SignIn, client: FlaskClient, headers: dict[str, str]) -> None:
    alipay_sign_in(client)
    assert client.get("/private").status_code == 200
    with received(user_logged_out) as logouts:
        response = client.post("/alipay/logout", headers=headers)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert len(logouts) == 1 and isinstance(logouts[0]["user"], AlipayUser)
    assert client.get("/private").status_code == 302
    assert client.get("/").get_data(as_text=True) == "home anonymous"


def test_one_gateway_session_per_app(alipay_sign_in: SignIn, site: Flask) -> None:
    alipay = site.extensions["alipay"]
    with site.app_context():
        first = alipay.gateway.http
    client = site.test_client()
    alipay_sign_in(client)
    alipay_sign_in(client)
    with site.app_context():
        assert alipay.gateway.http is first


def test_failure_log_line_carries_the_hint(
    alipay_sign_in: SignIn,
    client: FlaskClient,
    alipay_emulator: AlipayEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    alipay_emulator.inject("alipay.user.info.share", sub_code="isv.insufficient-isv-permissions")
    with caplog.at_level(logging.WARNING, logger="flask_alipay"):
        assert alipay_sign_in(client).status_code == 502
    (line,) = [r.getMessage() for r in caplog.records if "sign-in failed" in r.getMessage()]
    assert "isv.insufficient-isv-permissions" in line and "获取会员信息" in line


def test_unsigned_answers_pass_only_when_the_site_opts_out(
    make_site: Callable[..., Flask], alipay_emulator: AlipayEmulator, alipay_sign_in: SignIn
) -> None:
    alipay_emulator.inject(unsigned=True, times=2)
    refused = alipay_sign_in(make_site().test_client())
    assert refused.status_code == 502
    alipay_emulator.reset()
    alipay_emulator.inject(unsigned=True, times=2)
    opted_out = make_site(ALIPAY_PUBLIC_KEY=None, ALIPAY_VERIFY_ANSWERS=False)
    assert alipay_sign_in(opted_out.test_client()).status_code == 302


@pytest.mark.parametrize(
    "method, headers, status",
    [
        ("get", {}, 405),  # a link or an <img> on any site
        ("post", {"Sec-Fetch-Site": "cross-site"}, 403),
        ("post", {"Origin": "https://evil.example"}, 403),
        ("post", {"Origin": "null"}, 403),
    ],
)
def test_no_cross_site_logout(
    alipay_sign_in: SignIn,
    client: FlaskClient,
    method: str,
    headers: dict[str, str],
    status: int,
) -> None:
    alipay_sign_in(client)
    with received(user_logged_out) as logouts:
        response = getattr(client, method)("/alipay/logout", headers=headers)
    assert response.status_code == status
    assert logouts == [] and client.get("/private").status_code == 200


def cookie_bytes(client: FlaskClient) -> int:
    cookie = client.get_cookie("session")
    return 0 if cookie is None else len("session=") + len(cookie.value)


def chinese(length: int, seed: int = 0) -> str:
    """Characters that zlib cannot squeeze, 6 bytes each as the session stores them; each
    seed gives another string, so repeats across values cannot be squeezed either."""
    return "".join(chr(0x4E00 + (n * 7919 + seed * 104729) % 20000) for n in range(length))


@pytest.mark.parametrize("length", [80, 500], ids=["just-under-the-bound", "over-the-bound"])
def test_long_chinese_next_values_cannot_crowd_out_a_sign_in(
    alipay_sign_in: SignIn, client: FlaskClient, length: int
) -> None:
    for n in range(12):  # navigations an attacker drives in the victim's browser
        planted = "/商品/" + chinese(length, seed=n + 1)
        assert client.get("/alipay/login", query_string={"next": planted}).status_code == 302
        assert cookie_bytes(client) < 4000  # past 4 KB a browser drops the whole cookie
    response = alipay_sign_in(client, next="/private")
    assert response.status_code == 302 and response.headers["Location"] == "/private"
    assert cookie_bytes(client) < 4000
    assert client.get("/private").status_code == 200


def test_a_next_over_the_byte_bound_falls_back(alipay_sign_in: SignIn, client: FlaskClient) -> None:
    too_long = "/" + chinese(90)  # 91 characters, 542 bytes as stored
    assert len(too_long) < MAX_NEXT_BYTES < stored_size(too_long)
    assert alipay_sign_in(client, next=too_long).headers["Location"] == "/"
    just_fits = "/" + chinese(84)
    assert stored_size(just_fits) <= MAX_NEXT_BYTES
    location = alipay_sign_in(client, next=just_fits).headers["Location"]
    assert unquote(location) == just_fits  # Werkzeug percent-encodes it for the header
