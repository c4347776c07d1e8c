"""Lenient like the gateway, strict on request; the timestamp window's edges.

The real gateway answers parameters placed outside the official SDKs' split
(docs/protocol.md §11).  A default AlipayEmulator does too, and notes each
departure on the recorded call; ``strict=True`` (the pytest plugin's
emulator) refuses them, so a site's own tests catch a misplaced parameter.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from datetime import timedelta

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from support.gateway_client import APP_ID, TOKEN, TOKEN_NODE, Client

from flask_alipay.signing import parse_answer, sign_text, string_to_sign
from flask_alipay.testing import AlipayEmulator, beijing_now

FORM = "application/x-www-form-urlencoded;charset=utf-8"


@pytest.fixture
def lenient(app_key: rsa.RSAPrivateKey, alipay_key: rsa.RSAPrivateKey) -> Iterator[AlipayEmulator]:
    """An emulator as AlipayEmulator() makes it: not strict."""
    emulator = AlipayEmulator(app_public_key=app_key.public_key(), alipay_private_key=alipay_key)
    assert emulator.strict is False
    with emulator.serve():
        yield emulator


def _signed(emulator: AlipayEmulator, key: rsa.RSAPrivateKey) -> dict[str, str]:
    """Every parameter of a code exchange, signed."""
    params = {
        "app_id": APP_ID,
        "method": TOKEN,
        "format": "JSON",
        "charset": "utf-8",
        "sign_type": "RSA2",
        "timestamp": beijing_now().strftime("%Y-%m-%d %H:%M:%S"),
        "version": "1.0",
        "grant_type": "authorization_code",
        "code": emulator.issue_code(),
    }
    params["sign"] = sign_text(string_to_sign(params), key, "RSA2", "utf-8")
    return params


def _send(emulator: AlipayEmulator, key: rsa.RSAPrivateKey, placement: str) -> dict[str, str]:
    """A code exchange placed as one real client places it; the answer's node."""
    assert emulator.server is not None
    url = emulator.server.gateway_url
    params = _signed(emulator, key)
    if placement == "all in the query of a POST":  # Logto's connector
        response = requests.post(url + "?" + urllib.parse.urlencode(params), timeout=10)
    elif placement == "all in a GET query":
        response = requests.get(url, params=params, timeout=10)
    else:  # yansongda/pay: only charset in the query
        body = {name: value for name, value in params.items() if name != "charset"}
        response = requests.post(
            url + "?charset=utf-8",
            data=urllib.parse.urlencode(body),
            headers={"Content-Type": FORM},
            timeout=10,
        )
    assert response.status_code == 200
    return dict(parse_answer(response.content, TOKEN_NODE, "utf-8").data)


PLACEMENTS = ["all in the query of a POST", "all in a GET query", "only charset in the query"]


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_a_default_emulator_answers_what_the_gateway_answers_and_warns(
    lenient: AlipayEmulator, app_key: rsa.RSAPrivateKey, placement: str
) -> None:
    node = _send(lenient, app_key, placement)
    assert node["access_token"].startswith("authusrB")
    (call,) = lenient.requests
    assert call.warnings and all(w.startswith("placement: ") for w in call.warnings)
    if placement == "only charset in the query":
        assert any("common parameter app_id in the body" in w for w in call.warnings)
    else:
        assert any("parameter code in the query" in w for w in call.warnings)
    assert any("GET" in w for w in call.warnings) == (placement == "all in a GET query")


def test_the_sdks_split_has_no_warning(lenient: AlipayEmulator, app_key: rsa.RSAPrivateKey) -> None:
    assert Client(lenient, app_key).exchange(lenient.issue_code())[0] == TOKEN_NODE
    assert lenient.requests[-1].warnings == ()


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_strict_refuses_what_the_sdks_would_not_send(
    alipay_emulator: AlipayEmulator, app_key: rsa.RSAPrivateKey, placement: str
) -> None:
    """The plugin's emulator is strict, so a site's tests catch a misplaced parameter."""
    assert alipay_emulator.strict is True
    node = _send(alipay_emulator, app_key, placement)
    assert node["sub_code"] == "isv.invalid-parameter"
    assert alipay_emulator.requests[-1].warnings  # recorded in strict mode too
    alipay_emulator.strict = False  # read per call: a test may switch it
    assert "access_token" in _send(alipay_emulator, app_key, placement)


def test_charset_outside_the_query_is_refused_even_when_lenient(
    lenient: AlipayEmulator, app_key: rsa.RSAPrivateKey
) -> None:
    response = Client(lenient, app_key).call(
        TOKEN,
        {"grant_type": "authorization_code", "code": lenient.issue_code()},
        move_to_body=("charset",),
    )
    error = parse_answer(response.content, TOKEN_NODE, "utf-8").data
    assert error["sub_code"] == "isv.invalid-signature"


# -- the timestamp window ------------------------------------------------------------


@pytest.mark.parametrize("direction", [-1, 1])
def test_the_timestamp_tolerance_is_a_window_with_two_edges(
    emulator: AlipayEmulator, app_key: rsa.RSAPrivateKey, direction: int
) -> None:
    """``timestamp_tolerance`` seconds either side of Beijing time: just inside is
    answered, just outside is isv.invalid-timestamp (5 s margins for slow runs)."""
    emulator.timestamp_tolerance = 60
    client = Client(emulator, app_key)

    def stamped(offset: float) -> dict[str, str]:
        moment = beijing_now() + timedelta(seconds=direction * offset)
        return client.exchange(emulator.issue_code(), timestamp=f"{moment:%Y-%m-%d %H:%M:%S}")[1]

    assert "access_token" in stamped(55)
    assert stamped(66)["sub_code"] == "isv.invalid-timestamp"
    emulator.timestamp_tolerance = 120
    assert "access_token" in stamped(66)


def test_the_default_tolerance_is_ten_minutes(app_key: rsa.RSAPrivateKey) -> None:
    assert AlipayEmulator(app_public_key=app_key.public_key()).timestamp_tolerance == 600
