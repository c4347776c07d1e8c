"""After sign-in: refresh, generic calls and profiles, outside any request."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from support.browser import authorize, finish, start_login

from flask_alipay import AlipayError, AlipayUser, token_refreshed, user_logged_in
from flask_alipay.testing import AlipayEmulator


def signed_in_token(site: Flask) -> dict[str, Any]:
    tokens: list[dict[str, Any]] = []

    def keep(sender: Any, token: dict[str, Any], **extra: Any) -> None:
        tokens.append(token)

    user_logged_in.connect(keep, sender=site)
    try:
        client = site.test_client()
        assert finish(client, authorize(start_login(client))).status_code == 302
    finally:
        user_logged_in.disconnect(keep, sender=site)
    return tokens[0]


def test_refresh_token_outside_a_request(site: Flask, alipay_emulator: AlipayEmulator) -> None:
    first = signed_in_token(site)
    alipay = site.extensions["alipay"]
    refreshed: list[dict[str, Any]] = []

    def on_refresh(sender: Any, token: dict[str, Any], name: str, **extra: Any) -> None:
        assert sender is site and name == "alipay"
        refreshed.append(token)

    token_refreshed.connect(on_refresh)
    try:
        with site.app_context():  # a CLI or a job queue: no request
            token = alipay.refresh_token(first["refresh_token"])
    finally:
        token_refreshed.disconnect(on_refresh)
    assert refreshed == [token]
    assert token["access_token"] != first["access_token"]
    assert token["refresh_token"] != first["refresh_token"]
    assert isinstance(token["expires_in"], int) and isinstance(token["re_expires_in"], int)
    assert abs(token["expires_at"] - (time.time() + token["expires_in"])) < 5
    call = alipay_emulator.requests[-1]
    assert call.form == {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    with site.app_context():
        profile = alipay.fetch_profile(token["access_token"])
    assert isinstance(profile, AlipayUser) and profile["nick_name"] == "小明"


def test_refresh_token_is_single_use(site: Flask) -> None:
    first = signed_in_token(site)
    alipay = site.extensions["alipay"]
    with site.app_context():
        alipay.refresh_token(first["refresh_token"])
        with pytest.raises(AlipayError) as caught:
            alipay.refresh_token(first["refresh_token"])
    assert caught.value.sub_code == "isv.refresh-token-invalid"
    assert "Sign in again" in caught.value.hint


def test_expired_refresh_token(site: Flask, alipay_emulator: AlipayEmulator) -> None:
    first = signed_in_token(site)
    alipay_emulator.expire_token(first["refresh_token"])
    with site.app_context(), pytest.raises(AlipayError) as caught:
        site.extensions["alipay"].refresh_token(first["refresh_token"])
    assert caught.value.sub_code == "isv.refresh-token-time-out"


def test_fetch_profile_with_an_expired_token(site: Flask, alipay_emulator: AlipayEmulator) -> None:
    token = signed_in_token(site)
    alipay_emulator.expire_token(token["access_token"])
    with site.app_context(), pytest.raises(AlipayError) as caught:
        site.extensions["alipay"].fetch_profile(token["access_token"])
    assert caught.value.sub_code == "aop.auth-token-time-out"
    assert "Refresh it" in caught.value.hint


def test_generic_call_with_params(site: Flask, alipay_emulator: AlipayEmulator) -> None:
    code = alipay_emulator.issue_code()
    with site.app_context():
        node = site.extensions["alipay"].call(
            "alipay.system.oauth.token", grant_type="authorization_code", code=code
        )
    assert node["open_id"] == alipay_emulator.default_user.open_id and node["access_token"]


@pytest.mark.parametrize("charset", ["utf8", "gbk"])
def test_generic_call_sends_biz_content_as_json(
    make_site: Callable[..., Flask], alipay_emulator: AlipayEmulator, charset: str
) -> None:
    site = make_site(ALIPAY_CHARSET=charset)
    content = {"out_biz_no": "订单-1", "amount": "1.00", "nested": {"k": [1, 2]}}
    with site.app_context(), pytest.raises(AlipayError) as caught:
        site.extensions["alipay"].call("alipay.emulator.unknown", content, auth_token="tok")
    # The emulator checked our signature first, then refused the unknown method.
    assert caught.value.sub_code == "isv.invalid-method"
    (sent,) = alipay_emulator.requests
    assert json.loads(sent.form["biz_content"]) == content
    assert "订单-1" in sent.form["biz_content"]  # raw Chinese, in the request charset
    assert sent.form["auth_token"] == "tok" and "biz_content" not in sent.query
    assert "auth_token" not in sent.query  # no token in any URL


def test_profile_of_another_user_than_the_token_is_refused(
    site: Flask, alipay_emulator: AlipayEmulator
) -> None:
    token = signed_in_token(site)
    alipay = site.extensions["alipay"]
    with site.app_context():
        assert alipay.user_from_token(token).id == alipay_emulator.default_user.open_id
        swapped = {**token, "open_id": alipay_emulator.add_user("someone-else").open_id}
        with pytest.raises(AlipayError) as caught:
            alipay.user_from_token(swapped)
    assert caught.value.reason == "malformed" and caught.value.status_code == 502
