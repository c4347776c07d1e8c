"""Alipay's official Python SDK as a witness: it signs in against the emulator.

``alipay-sdk-python`` (a test-only dependency) builds, signs and sends the
requests with its own ``DefaultAlipayClient`` and request classes, and
verifies every answer inside ``execute()`` with its own verifier.  So the
emulator is checked by a client it had no hand in, over RSA2 and RSA, utf-8
and GBK: if the emulator drifted from Alipay's wire format, the SDK would
fail here.

The SDK's own bugs are worked around here, never in the emulator:

* its ``WebUtils.get_http_connection`` always connects to port 80 (and would
  crash on ``str + int`` for a URL with a port): the test swaps in a copy that
  keeps the port, for the SDK module only;
* it stamps ``datetime.now()``, local time, where Alipay reads Beijing time:
  the test runs it with ``TZ`` set to Beijing's zone and restores the zone;
* it reads only PKCS#1 private keys: it is given one.
"""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.parse
from collections.abc import Iterator
from http.client import HTTPConnection
from typing import Any

import pytest
from alipay.aop.api.AlipayClientConfig import AlipayClientConfig
from alipay.aop.api.DefaultAlipayClient import DefaultAlipayClient
from alipay.aop.api.exception.Exception import ResponseException
from alipay.aop.api.request.AlipaySystemOauthTokenRequest import (
    AlipaySystemOauthTokenRequest,
)
from alipay.aop.api.request.AlipayUserInfoShareRequest import (
    AlipayUserInfoShareRequest,
)
from alipay.aop.api.util import WebUtils
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from flask_alipay.testing import AlipayEmulator


def _connection_keeping_the_port(
    url: str, query_string: str, timeout: float
) -> tuple[str, HTTPConnection]:
    """``WebUtils.get_http_connection`` as it should be: host *and* port (http only)."""
    parts = urllib.parse.urlsplit(url)
    assert parts.scheme == "http" and parts.hostname is not None
    connection = HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    return f"{url}?{query_string}", connection


@pytest.fixture
def sdk_patched(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The SDK's URL parsing keeps the port, and its local clock reads Beijing time.

    ``CST-8`` is POSIX for UTC+8 (Asia/Shanghai today) and needs no tz database.
    """
    monkeypatch.setattr(WebUtils, "get_http_connection", _connection_keeping_the_port)
    monkeypatch.setenv("TZ", "CST-8")
    time.tzset()
    try:
        yield
    finally:
        monkeypatch.undo()
        time.tzset()


def _pkcs1_body(key: rsa.RSAPrivateKey) -> str:
    """The one-line PKCS#1 body the SDK reads (it cannot read Alipay's PKCS#8 one)."""
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return base64.b64encode(der).decode("ascii")


def _client(
    emulator: AlipayEmulator, app_key: rsa.RSAPrivateKey, sign_type: str, charset: str
) -> DefaultAlipayClient:
    assert emulator.server is not None
    config = AlipayClientConfig()
    config.server_url = emulator.server.gateway_url
    config.app_id = emulator.app_id
    config.app_private_key = _pkcs1_body(app_key)
    config.alipay_public_key = emulator.alipay_public_key_base64
    config.sign_type = sign_type
    config.charset = charset
    return DefaultAlipayClient(alipay_client_config=config)


def _token_request(grant_type: str, value: str) -> AlipaySystemOauthTokenRequest:
    request = AlipaySystemOauthTokenRequest()
    request.grant_type = grant_type
    if grant_type == "authorization_code":
        request.code = value
    else:
        request.refresh_token = value
    return request


def _execute(client: DefaultAlipayClient, request: Any) -> dict[str, Any]:
    """``execute()`` sends, then verifies the answer's signature before it returns."""
    node: dict[str, Any] = json.loads(client.execute(request))
    return node


@pytest.mark.parametrize("charset", ["utf-8", "GBK"])
@pytest.mark.parametrize("sign_type", ["RSA2", "RSA"])
def test_the_official_sdk_signs_in_and_verifies_every_answer(
    emulator: AlipayEmulator,
    app_key: rsa.RSAPrivateKey,
    sdk_patched: None,
    sign_type: str,
    charset: str,
) -> None:
    """Code exchange, profile, refresh, profile again: the SDK's requests pass the
    emulator's checks, and the emulator's answers pass the SDK's verifier."""
    user = emulator.add_user("sdk", id_kind="both", nick_name="支付宝用户", city="杭州市")
    client = _client(emulator, app_key, sign_type, charset)

    token = _execute(client, _token_request("authorization_code", emulator.issue_code("sdk")))
    assert token["open_id"] == user.open_id and token["user_id"] == user.user_id
    assert token["access_token"].startswith("authusrB")

    profile_request = AlipayUserInfoShareRequest()
    profile_request.udf_params = {"auth_token": token["access_token"]}
    profile = _execute(client, profile_request)
    assert profile["code"] == "10000"
    assert profile["nick_name"] == "支付宝用户" and profile["city"] == "杭州市"

    refreshed = _execute(client, _token_request("refresh_token", token["refresh_token"]))
    assert refreshed["access_token"] != token["access_token"]
    assert refreshed["open_id"] == user.open_id

    again = AlipayUserInfoShareRequest()
    again.udf_params = {"auth_token": refreshed["access_token"]}
    assert _execute(client, again)["open_id"] == user.open_id

    calls = emulator.requests
    assert [call.params["method"] for call in calls] == [
        "alipay.system.oauth.token",
        "alipay.user.info.share",
        "alipay.system.oauth.token",
        "alipay.user.info.share",
    ]
    assert {call.charset for call in calls} == {charset}
    assert {call.params["sign_type"] for call in calls} == {sign_type}


def test_the_sdk_really_verifies_a_bad_signature_is_refused(
    emulator: AlipayEmulator, app_key: rsa.RSAPrivateKey, sdk_patched: None
) -> None:
    """The witness is only worth something if its verifier runs: a spoiled signature
    makes ``execute()`` raise, and the same call unspoiled goes through."""
    client = _client(emulator, app_key, "RSA2", "utf-8")
    emulator.inject("alipay.system.oauth.token", bad_signature=True)
    request = _token_request("authorization_code", emulator.issue_code())
    with pytest.raises(ResponseException, match="sign verify failed"):
        client.execute(request)
    fresh = _token_request("authorization_code", emulator.issue_code())
    assert _execute(client, fresh)["access_token"].startswith("authusrB")


def test_the_sdk_verifies_error_answers_too(
    emulator: AlipayEmulator, app_key: rsa.RSAPrivateKey, sdk_patched: None
) -> None:
    """A signed error answer verifies; the SDK hands back the error node."""
    client = _client(emulator, app_key, "RSA2", "utf-8")
    error = _execute(client, _token_request("authorization_code", "not-a-code"))
    assert error["sub_code"] == "isv.code-invalid"


def test_without_beijing_time_the_sdk_is_refused(
    emulator: AlipayEmulator, app_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clock workaround is needed: on a machine eight hours off Beijing, the SDK's
    local timestamp falls outside the emulator's window, as it would at Alipay."""
    monkeypatch.setattr(WebUtils, "get_http_connection", _connection_keeping_the_port)
    monkeypatch.setenv("TZ", "UTC0")
    time.tzset()
    try:
        client = _client(emulator, app_key, "RSA2", "utf-8")
        error = _execute(client, _token_request("authorization_code", emulator.issue_code()))
    finally:
        monkeypatch.undo()
        time.tzset()
    assert error["sub_code"] == "isv.invalid-timestamp"
    assert os.environ.get("TZ") != "UTC0"
