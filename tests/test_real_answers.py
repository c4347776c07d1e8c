"""Answers shaped like real ones (docs/protocol.md §11), and the library reading them.

The emulator sends what Alipay has been seen to send: unsigned error answers,
the real error texts, the token node's own key order, ids and tokens that
look like Alipay's.  The library must treat every unsigned error as an error,
never as an identity, and still redact and explain the real texts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from support.browser import authorize, sign_in, start_login
from support.gateway_client import APP_ID, TOKEN, TOKEN_NODE, Client
from support.keys import pem_private
from support.site import build_site

from flask_alipay import AlipayError, login_failed, user_logged_in
from flask_alipay.errors import HINTS, redact
from flask_alipay.signing import parse_answer
from flask_alipay.testing import AlipayEmulator

ERR_CHECK = "，解决方案：https://open.alipay.com/api/errCheck?traceId="


@pytest.fixture
def gateway(emulator: AlipayEmulator, app_key: rsa.RSAPrivateKey) -> Client:
    return Client(emulator, app_key)


def _token_body(gateway: Client, code: str) -> bytes:
    response = gateway.call(TOKEN, {"grant_type": "authorization_code", "code": code})
    assert response.status_code == 200
    return response.content


# -- the token node ------------------------------------------------------------


def test_the_token_node_keeps_alipays_key_order(emulator: AlipayEmulator, gateway: Client) -> None:
    emulator.add_user("old", id_kind="user_id")
    _, old = gateway.exchange(emulator.issue_code("old"))
    assert list(old) == [
        "access_token",
        "auth_start",
        "expires_in",
        "re_expires_in",
        "refresh_token",
        "user_id",
    ]
    _, new = gateway.exchange(emulator.issue_code())
    assert list(new)[-1] == "open_id" and "user_id" not in new


def test_migration_era_answers_carry_the_deprecated_alipay_user_id(
    emulator: AlipayEmulator, gateway: Client
) -> None:
    user = emulator.add_user("moving", id_kind="both")
    body = _token_body(gateway, emulator.issue_code("moving"))
    node = json.loads(body)[TOKEN_NODE]
    assert list(node)[5:] == ["user_id", "open_id", "alipay_user_id"]
    assert node["user_id"] == user.user_id and node["open_id"] == user.open_id
    assert re.fullmatch(r"2088\d{16}", node["alipay_user_id"])
    # The raw bytes: members in this order, not sorted.
    assert body.index(b'"auth_start"') < body.index(b'"expires_in"') < body.index(b'"user_id"')
    assert body.index(b'"user_id"') < body.index(b'"open_id"') < body.index(b'"alipay_user_id"')


def test_ids_codes_and_tokens_look_like_alipays(emulator: AlipayEmulator, gateway: Client) -> None:
    users = [emulator.add_user(id_kind="both") for _ in range(20)]
    for user in users:
        assert user.open_id is not None and user.user_id is not None
        assert re.fullmatch(r"0[A-Za-z0-9]{2}-[A-Za-z0-9_-]{42}_[A-Za-z0-9]", user.open_id)
        assert re.fullmatch(r"2088\d{12}", user.user_id)
    code = emulator.issue_code()
    assert re.fullmatch(r"[0-9a-f]{32}", code)
    _, token = gateway.exchange(code)
    assert re.fullmatch(r"authusrB[0-9A-Z]{32}", token["access_token"])
    assert re.fullmatch(r"authusrB[0-9A-Z]{32}", token["refresh_token"])
    _, base = gateway.exchange(emulator.issue_code(scope="auth_base"))
    assert re.fullmatch(r"authbseB[0-9A-Z]{32}", base["access_token"])


def test_the_library_signs_in_a_migration_era_user(
    make_site: Any, alipay_emulator: AlipayEmulator
) -> None:
    """Both ids, alipay_user_id too, an open_id with - and _: the library keys the user
    on the pinned field and keeps working."""
    user = alipay_emulator.add_user("moving", id_kind="both")
    site: Flask = make_site()
    seen: list[Any] = []
    user_logged_in.connect(lambda sender, user, **_: seen.append(user), sender=site, weak=False)
    assert sign_in(site.test_client(), login_as="moving").status_code == 302
    assert seen[0]["open_id"] == user.open_id and seen[0]["user_id"] == user.user_id


# -- unsigned error answers ------------------------------------------------------


@pytest.fixture
def failures(site: Flask) -> Iterator[list[AlipayError]]:
    caught: list[AlipayError] = []

    def keep(sender: Any, error: AlipayError, **_: Any) -> None:
        caught.append(error)

    login_failed.connect(keep, sender=site, weak=False)
    yield caught
    login_failed.disconnect(keep, sender=site)


def test_an_unsigned_invalid_app_id_is_an_error_never_an_identity(
    site: Flask, alipay_emulator: AlipayEmulator, failures: list[AlipayError]
) -> None:
    """The APPID went offline between the authorize page and the code exchange: Alipay
    answers isv.invalid-app-id with no sign member at all."""
    client = site.test_client()
    callback = authorize(start_login(client))
    alipay_emulator.apps.pop(APP_ID)
    parts = urlsplit(callback)
    response = client.get(parts.path + "?" + parts.query)
    assert response.status_code == 502
    (error,) = failures
    assert error.sub_code == "isv.invalid-app-id" and error.code == "40002"
    assert "APPID" in error.hint
    assert client.get("/private").status_code == 302  # nobody was signed in
    (call,) = alipay_emulator.requests
    assert call.method == TOKEN


def test_a_certificate_mode_code_invalid_with_an_empty_sign_is_an_error(
    app_key: rsa.RSAPrivateKey, alipay_key: rsa.RSAPrivateKey
) -> None:
    emulator = AlipayEmulator(
        strict=True,
        app_public_key=app_key.public_key(),
        alipay_private_key=alipay_key,
        cert_mode=True,
    )
    with emulator.serve():
        site = build_site({**emulator.config(), "ALIPAY_PRIVATE_KEY": pem_private(app_key)})
        caught: list[AlipayError] = []
        login_failed.connect(lambda sender, error, **_: caught.append(error), site, weak=False)
        client = site.test_client()
        callback = urlsplit(authorize(start_login(client)))
        code = dict(pair.split("=", 1) for pair in callback.query.split("&"))["auth_code"]
        emulator.expire_code(code)
        response = client.get(callback.path + "?" + callback.query)
        assert response.status_code == 400
        (error,) = caught
        assert error.sub_code == "isv.code-invalid"
        assert client.get("/private").status_code == 302


# -- the real texts ----------------------------------------------------------------


def test_the_quoted_string_to_sign_is_redacted_with_amp_separators(
    emulator: AlipayEmulator, gateway: Client, other_key: rsa.RSAPrivateKey
) -> None:
    code = emulator.issue_code()
    response = gateway.call(
        TOKEN, {"grant_type": "authorization_code", "code": code}, key=other_key
    )
    error = parse_answer(response.content, TOKEN_NODE, "utf-8").data
    sub_msg = error["sub_msg"]
    assert f"&amp;code={code}&amp;" in sub_msg and ERR_CHECK in sub_msg
    redacted = redact(sub_msg)
    assert code not in redacted
    assert "&amp;code=***&amp;format=JSON&amp;grant_type=authorization_code" in redacted
    assert ERR_CHECK in redacted  # the trace id link survives
    raised = AlipayError("x", sub_code=error["sub_code"], sub_msg=sub_msg)
    assert code not in str(raised) and raised.hint == HINTS["isv.invalid-signature"]


@pytest.mark.parametrize(
    "sub_code, sub_msg",
    [
        ("isv.missing-signature-config", "应用未配置对应签名算法的公钥或者证书"),
        ("isv.invalid-app-id", "无效的AppID参数"),
        ("isv.code-invalid", "授权码code无效"),
    ],
)
def test_hints_are_chosen_by_sub_code_whatever_the_sub_msg_says(
    sub_code: str, sub_msg: str
) -> None:
    error = AlipayError("x", sub_code=sub_code, sub_msg=sub_msg + ERR_CHECK + "0b" * 15)
    assert error.hint == HINTS[sub_code]
    assert error.sub_msg is not None and error.sub_msg.endswith("0b" * 15)
