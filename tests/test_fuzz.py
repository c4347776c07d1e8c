"""Hostile input, generated: answers from a gateway, and query strings from browsers.

Either an identity comes from a verified body, or there is an AlipayError; a
callback answers 4xx; nothing else, ever.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.browser import query_of, start_login
from support.keys import pem_private

from flask_alipay import AlipayError
from flask_alipay.config import load_config
from flask_alipay.gateway import Gateway, GatewayReply
from flask_alipay.keys import public_key_base64
from flask_alipay.protocol import USER_INFO_METHOD
from flask_alipay.redirects import safe_next
from flask_alipay.signing import AnswerFormatError, parse_answer

NODE = "alipay_user_info_share_response"
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# Text full of what breaks naive parsers: braces, quotes, backslashes, slashes, CJK.
tricky_text = st.text(
    alphabet=st.sampled_from(list('{}[]"\\/:,') + list("abc 嘰乗你好😀\t\n")), max_size=40
)
profile_values = st.dictionaries(
    st.sampled_from(["nick_name", "city", "province", "avatar", "gender", "x", "y"]),
    tricky_text,
    max_size=6,
)


def alipay_json(data: dict[str, Any]) -> str:
    """As Alipay writes it: raw CJK, escaped slashes, compact."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("/", "\\/")


def signed_body(data: dict[str, Any], key: rsa.RSAPrivateKey, charset: str = "utf-8") -> bytes:
    content = alipay_json(data).encode(charset)
    signature = key.sign(content, padding.PKCS1v15(), hashes.SHA256())
    sign = base64.b64encode(signature).decode()
    return b'{"' + NODE.encode() + b'":' + content + b',"sign":"' + sign.encode() + b'"}'


@pytest.fixture(scope="module")
def gateways(app_key: rsa.RSAPrivateKey, alipay_key: rsa.RSAPrivateKey) -> dict[str, Gateway]:
    """A gateway reading utf-8 (the default) and one reading GBK, by wire charset."""
    return {
        charset: Gateway(
            load_config(
                {
                    "ALIPAY_APP_ID": "2021000000000001",
                    "ALIPAY_PRIVATE_KEY": pem_private(app_key),
                    "ALIPAY_PUBLIC_KEY": public_key_base64(alipay_key.public_key()),
                    "ALIPAY_CHARSET": charset,
                }
            )
        )
        for charset in ("utf-8", "GBK")
    }


@pytest.fixture(scope="module")
def gateway(gateways: dict[str, Gateway]) -> Gateway:
    return gateways["utf-8"]


def outcome(gateway: Gateway, body: bytes) -> dict[str, Any] | AlipayError:
    try:
        return gateway.read(USER_INFO_METHOD, GatewayReply(200, body))
    except AlipayError as error:
        return error


@FUZZ
@given(body=st.binary(max_size=400))
def test_random_bytes_are_an_error(gateway: Gateway, body: bytes) -> None:
    assert isinstance(outcome(gateway, body), AlipayError)


@FUZZ
@given(
    data=st.recursive(
        st.none() | st.booleans() | st.integers() | tricky_text,
        lambda children: (
            st.lists(children, max_size=3) | st.dictionaries(tricky_text, children, max_size=3)
        ),
        max_leaves=12,
    )
)
def test_random_json_is_an_error_unless_signed(gateway: Gateway, data: Any) -> None:
    body = json.dumps({NODE: data, "sign": "AAAA"}, ensure_ascii=False).encode()
    assert isinstance(outcome(gateway, body), AlipayError)


@FUZZ
@given(fields=profile_values, charset=st.sampled_from(["utf-8", "GBK"]))
def test_signed_answers_verify_and_round_trip(
    gateways: dict[str, Gateway],
    alipay_key: rsa.RSAPrivateKey,
    fields: dict[str, str],
    charset: str,
) -> None:
    data = {"code": "10000", "msg": "Success", "open_id": "o1", **fields}
    try:
        body = signed_body(data, alipay_key, charset)
    except UnicodeEncodeError:
        body, charset = signed_body(data, alipay_key), "utf-8"  # emoji has no GBK form
    assert outcome(gateways[charset], body) == data


@FUZZ
@given(
    fields=profile_values,
    cut=st.integers(min_value=0, max_value=10_000),
    flip=st.integers(min_value=0, max_value=10_000),
    bit=st.integers(min_value=0, max_value=7),
)
def test_tampered_or_truncated_answers_never_yield_another_identity(
    gateway: Gateway,
    alipay_key: rsa.RSAPrivateKey,
    fields: dict[str, str],
    cut: int,
    flip: int,
    bit: int,
) -> None:
    data = {"code": "10000", "msg": "Success", "open_id": "o1", **fields}
    body = signed_body(data, alipay_key)
    truncated = body[: cut % len(body)]
    flipped = bytearray(body)
    flipped[flip % len(body)] ^= 1 << bit
    for spoiled in (truncated, bytes(flipped)):
        result = outcome(gateway, spoiled)
        assert isinstance(result, AlipayError) or result == data


@FUZZ
@given(fields=profile_values, other_open_id=st.text(min_size=1, max_size=20))
def test_forged_answers_are_refused(
    gateway: Gateway, other_key: rsa.RSAPrivateKey, fields: dict[str, str], other_open_id: str
) -> None:
    data = {"code": "10000", "msg": "Success", "open_id": other_open_id, **fields}
    result = outcome(gateway, signed_body(data, other_key))
    assert isinstance(result, AlipayError) and result.reason == "signature"


def test_duplicate_nodes_are_refused(gateway: Gateway, alipay_key: rsa.RSAPrivateKey) -> None:
    good = signed_body({"code": "10000", "open_id": "victim"}, alipay_key)
    forged = good[:-1] + b',"' + NODE.encode() + b'":{"code":"10000","open_id":"attacker"}}'
    result = outcome(gateway, forged)
    assert isinstance(result, AlipayError) and result.reason == "malformed"


def test_absurd_nesting_is_an_error_not_a_crash(gateway: Gateway) -> None:
    deep = b'{"' + NODE.encode() + b'":{"a":' + b"[" * 200_000 + b"]" * 200_000 + b'},"sign":"x"}'
    with pytest.raises(AnswerFormatError):
        parse_answer(deep, NODE, "utf-8")
    assert isinstance(outcome(gateway, deep), AlipayError)


# Browsers -------------------------------------------------------------------

query_text = st.text(max_size=300) | st.text(min_size=2000, max_size=9000)
BROWSER_FUZZ = settings(FUZZ, max_examples=60)


@FUZZ
@given(
    params=st.dictionaries(
        st.sampled_from(["state", "auth_code", "app_id", "scope", "source", "error", "x"]),
        query_text,
        max_size=5,
    )
)
def test_random_callbacks_are_4xx(site: Flask, params: dict[str, str]) -> None:
    response = site.test_client().get("/alipay/callback?" + urlencode(params))
    assert 400 <= response.status_code < 500


@BROWSER_FUZZ
@given(auth_code=query_text, app_id=st.none() | st.just("2021000000000001"))
def test_random_codes_with_a_real_state_are_4xx(
    site: Flask, auth_code: str, app_id: str | None
) -> None:
    client = site.test_client()
    state = query_of(start_login(client))["state"]
    params = {"state": state, "auth_code": auth_code, **({"app_id": app_id} if app_id else {})}
    response = client.get("/alipay/callback?" + urlencode(params))
    assert response.status_code == 400


@BROWSER_FUZZ
@given(next_url=query_text)
def test_login_with_any_next_redirects_to_alipay(site: Flask, next_url: str) -> None:
    response = site.test_client().get("/alipay/login?" + urlencode({"next": next_url}))
    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path.endswith("/publicAppAuthorize.htm")


@given(
    value=st.text(max_size=60)
    | st.from_regex(r"\A[/\\\\ \t\r\njavscript:htp]{0,12}evil\.example", fullmatch=True)
)
def test_safe_next_only_passes_same_site_paths(value: str) -> None:
    result = safe_next(value)
    if result is None:
        return
    # Browsers drop tabs and newlines and read "\" as "/" before parsing.
    as_browser = re.sub(r"[\t\r\n]", "", result).replace("\\", "/")
    parts = urlsplit(as_browser)
    assert result.startswith("/") and not as_browser.startswith("//")
    assert not parts.scheme and not parts.netloc
