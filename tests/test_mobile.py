"""Beyond the desktop browser: phone browsers and the hand-off to the Alipay app, auth codes
from mini programs and apps, and their phone numbers; all against the emulator."""

from __future__ import annotations

import base64
import logging
import re
import secrets
import time
from collections.abc import Callable
from html import unescape
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask.testing import FlaskClient
from support.keys import pem_private
from support.site import build_site

from flask_alipay import (
    AlipayConfigError,
    AlipayError,
    AlipayLogin,
    AlipayRefused,
    MalformedAnswer,
    SignInCancelled,
    UnverifiedAnswer,
    current_alipay_user,
    login_failed,
    user_logged_in,
)
from flask_alipay.handoff import HANDOFF_TTL, in_alipay, is_phone_browser, needs_handoff
from flask_alipay.testing import AlipayEmulator

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
ANDROID_PHONE = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36"
)
ANDROID_TABLET = (
    "Mozilla/5.0 (Linux; Android 14; SM-X910) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
HARMONY_PHONE = (
    "Mozilla/5.0 (Linux; HarmonyOS 4.2; ALN-AL00 Phone) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/114.0.0.0 Safari/537.36"
)
HARMONY_NEXT = (
    "Mozilla/5.0 (Phone; OpenHarmony 5.0) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/114.0.0.0 Safari/537.36 ArkWeb/4.1.6.1 Mobile HuaweiBrowser/5.0.4.300"
)
IPAD_AS_DESKTOP = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15"
)
DESKTOP = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
IN_ALIPAY = IPHONE + " AlipayClient/10.6.8.6000 Language/zh-Hans"
AES_KEY = base64.b64encode(b"0123456789abcdef").decode("ascii")


@pytest.mark.parametrize(
    "agent, phone, handoff",
    [
        (IPHONE, True, True),
        (ANDROID_PHONE, True, True),
        (HARMONY_PHONE, True, True),
        (HARMONY_NEXT, True, True),
        (ANDROID_TABLET, False, False),
        (IPAD_AS_DESKTOP, False, False),
        (DESKTOP, False, False),
        (IN_ALIPAY, True, False),
    ],
    ids=[
        "iphone",
        "android",
        "harmonyos",
        "harmonyos-next",
        "android-tablet",
        "ipad",
        "desktop",
        "alipay-app",
    ],
)
def test_who_is_a_phone_browser(agent: str, phone: bool, handoff: bool) -> None:
    assert is_phone_browser(agent) is phone
    assert needs_handoff(agent) is handoff
    assert in_alipay(agent) is (agent == IN_ALIPAY)


# The hand-off page ------------------------------------------------------------------


def handoff_page(client: FlaskClient, agent: str = IPHONE, **query: str) -> tuple[str, str]:
    """GET /alipay/login as a phone; (the deep link, the continue link) of the page."""
    page = client.get("/alipay/login", query_string=query, headers={"User-Agent": agent})
    assert page.status_code == 200, page.status_code
    html = page.get_data(as_text=True)
    links = dict(re.findall(r'id="([a-z-]+)" href="([^"]+)"', html))
    assert "在支付宝中打开 / Open in Alipay" in html and "继续 / Continue in this browser" in html
    return unescape(links["open-in-alipay"]), unescape(links["continue"])


def test_a_phone_browser_gets_the_choice(site: Flask, client: FlaskClient) -> None:
    deep, stay = handoff_page(client)
    prefix = "alipays://platformapi/startapp?appId=20000067&url="
    assert deep.startswith(prefix)
    inside = unquote(deep[len(prefix) :])
    assert quote(inside, safe="") == deep[len(prefix) :]  # the whole URL, encoded once
    authorize = site.config["ALIPAY_AUTHORIZE_URL"]
    assert inside.startswith(authorize + "?") and stay.startswith(authorize + "?")
    handoff_state = parse_qs(urlsplit(inside).query)["state"][0]
    session_state = parse_qs(urlsplit(stay).query)["state"][0]
    assert handoff_state.startswith("H") and len(handoff_state) <= 100
    assert handoff_state.isalnum() and re.fullmatch("[0-9a-f]{48}", session_state)


@pytest.mark.parametrize("agent", [DESKTOP, IN_ALIPAY, IPAD_AS_DESKTOP, ANDROID_TABLET])
def test_desktops_and_alipays_own_browser_are_redirected(client: FlaskClient, agent: str) -> None:
    response = client.get("/alipay/login", headers={"User-Agent": agent})
    assert response.status_code == 302


def test_the_page_can_be_turned_off(make_site: Callable[..., Flask]) -> None:
    client = make_site(ALIPAY_MOBILE_HANDOFF=False).test_client()
    assert client.get("/alipay/login", headers={"User-Agent": IPHONE}).status_code == 302


def follow_in_alipays_browser(deep_link: str) -> tuple[FlaskClient, str]:
    """What the Alipay app does with the deep link: its own browser, none of our cookies."""
    inside = unquote(deep_link.split("&url=", 1)[1])
    answer = requests.get(
        inside, headers={"User-Agent": IN_ALIPAY}, allow_redirects=False, timeout=10
    )
    assert answer.status_code == 302, answer.text
    callback = urlsplit(answer.headers["Location"])
    return callback.path + "?" + callback.query


def test_a_handoff_sign_in_completes_inside_alipays_browser(
    site: Flask, client: FlaskClient, alipay_emulator: AlipayEmulator
) -> None:
    deep, _stay = handoff_page(client, next="/private")
    callback = follow_in_alipays_browser(deep)
    alipays_browser = site.test_client()  # a new cookie jar: Alipay's in-app browser
    done = alipays_browser.get(callback, headers={"User-Agent": IN_ALIPAY})
    assert done.status_code == 302 and done.headers["Location"] == "/"  # ALIPAY_DEFAULT_NEXT
    assert alipays_browser.get("/private").status_code == 200  # signed in there...
    assert client.get("/private").status_code == 302  # ...not in the phone's own browser
    assert alipay_emulator.sign_ins == [("default", "alipay_app")]
    # Once only: the same callback again (a reload, a replay) is refused.
    again = site.test_client().get(callback, headers={"User-Agent": IN_ALIPAY})
    assert again.status_code == 400


def test_continuing_in_the_phone_browser_keeps_the_session_state(
    site: Flask, client: FlaskClient, alipay_emulator: AlipayEmulator
) -> None:
    _deep, stay = handoff_page(client, next="/private")
    answer = requests.get(stay, headers={"User-Agent": IPHONE}, allow_redirects=False, timeout=10)
    callback = urlsplit(answer.headers["Location"])
    done = client.get(f"{callback.path}?{callback.query}", headers={"User-Agent": IPHONE})
    assert done.status_code == 302 and done.headers["Location"] == "/private"
    assert alipay_emulator.sign_ins == [("default", "web")]
    # The same callback in another browser has no pending sign-in: login CSRF stays shut.
    other = site.test_client().get(f"{callback.path}?{callback.query}")
    assert other.status_code == 400


def test_a_handoff_state_only_works_for_a_handoff(
    make_site: Callable[..., Flask], client: FlaskClient
) -> None:
    deep, _stay = handoff_page(client)
    callback = follow_in_alipays_browser(deep)
    # Outside Alipay's browser (a link an attacker sends to a desktop browser): refused.
    assert client.get(callback, headers={"User-Agent": DESKTOP}).status_code == 400
    # A site that turned the hand-off off accepts no hand-off state at all.
    site = client.application
    off = make_site(ALIPAY_MOBILE_HANDOFF=False, ALIPAY_APP_ID=site.config["ALIPAY_APP_ID"])
    assert off.test_client().get(callback, headers={"User-Agent": IN_ALIPAY}).status_code == 400


@pytest.mark.parametrize("case", ["forged", "tampered", "expired"])
def test_a_handoff_state_carries_a_proof_that_cannot_be_made_up(
    site: Flask, client: FlaskClient, case: str
) -> None:
    failures: list[AlipayError] = []
    login_failed.connect(lambda s, error, **e: failures.append(error), sender=site, weak=False)
    with site.app_context():
        handoff = site.extensions["alipay"].handoff
        if case == "forged":
            state = "H" + secrets.token_hex(8) + f"{int(time.time()) + 60:010d}" + "0" * 32
        elif case == "tampered":  # a later expiry on a real state
            real = handoff.issue()
            state = real[:17] + f"{int(real[17:27]) + 3600:010d}" + real[27:]
        else:
            state = handoff.issue(now=time.time() - HANDOFF_TTL - 1)
    response = client.get(
        "/alipay/callback",
        query_string={"state": state, "auth_code": "abc123"},
        headers={"User-Agent": IN_ALIPAY},
    )
    assert response.status_code == 400
    assert failures[0].reason == "state"
    assert failures[0].case == ("expired" if case == "expired" else "unknown")


# Mini programs and apps: an auth_code from the client -----------------------------------


def signals_of(app: Flask) -> tuple[list[Any], list[AlipayError]]:
    users: list[Any] = []
    failures: list[AlipayError] = []
    user_logged_in.connect(lambda s, user, **e: users.append(user), sender=app, weak=False)
    login_failed.connect(lambda s, error, **e: failures.append(error), sender=app, weak=False)
    return users, failures


def test_sign_in_with_code_touches_no_session(site: Flask, alipay_emulator: AlipayEmulator) -> None:
    users, _failures = signals_of(site)
    code = alipay_emulator.issue_code("default", path="mini_program")
    with site.test_request_context():
        user, token = site.extensions["alipay"].sign_in_with_code(code)
        assert not current_alipay_user  # nothing went into the session
        from flask import session

        assert dict(session) == {}
    assert user.id == alipay_emulator.default_user.open_id and user["nick_name"] == "小明"
    assert token["access_token"].startswith("authusr") and users == [user]
    assert alipay_emulator.sign_ins == [("default", "mini_program")]


def test_a_spent_code_is_refused_and_reported(site: Flask, alipay_emulator: AlipayEmulator) -> None:
    _users, failures = signals_of(site)
    code = alipay_emulator.issue_code(path="app")
    with site.app_context():
        site.extensions["alipay"].sign_in_with_code(code)
        with pytest.raises(AlipayRefused) as caught:
            site.extensions["alipay"].sign_in_with_code(code)
        with pytest.raises(SignInCancelled):
            site.extensions["alipay"].sign_in_with_code("not a code\n")
    assert caught.value.status_code == 400 and caught.value.sub_code == "isv.code-invalid"
    assert failures[0] is caught.value


@pytest.fixture
def code_site(make_site: Callable[..., Flask]) -> Flask:
    return make_site(ALIPAY_CODE_ENDPOINT=True, ALIPAY_TIMEOUT=0.5)


def test_the_code_endpoint_is_off_unless_asked_for(client: FlaskClient) -> None:
    assert client.post("/alipay/code", json={"auth_code": "abc"}).status_code == 404


def test_the_code_endpoint_signs_in_to_the_session(
    code_site: Flask, alipay_emulator: AlipayEmulator
) -> None:
    client = code_site.test_client()
    answer = client.post("/alipay/code", json={"auth_code": alipay_emulator.issue_code()})
    assert answer.status_code == 200
    user = answer.get_json()["user"]
    default = alipay_emulator.default_user
    assert user["id"] == default.open_id and user["id_kind"] == "open_id"
    assert user["nick_name"] == "小明" and user["open_id"] == default.open_id
    assert client.get("/private").status_code == 200


@pytest.mark.parametrize(
    "body, content_type",
    [
        ("auth_code=abc", "application/x-www-form-urlencoded"),
        ('{"auth_code": "abc"}', "text/plain"),
        ("auth_code=abc", "multipart/form-data; boundary=x"),
    ],
    ids=["form", "text-plain", "multipart"],
)
def test_the_code_endpoint_takes_json_only(
    code_site: Flask, alipay_emulator: AlipayEmulator, body: str, content_type: str
) -> None:
    """A cross-site form can send only these: none may sign a visitor in."""
    answer = code_site.test_client().post(
        "/alipay/code", data=body, headers={"Content-Type": content_type}
    )
    assert answer.status_code == 415
    assert answer.get_json()["error"] == "unsupported_media_type"
    assert alipay_emulator.requests == []


@pytest.mark.parametrize(
    "body, status, error, sub_code, injection",
    [
        ({}, 400, "bad_request", None, None),
        ({"auth_code": 42}, 400, "bad_request", None, None),
        ({"auth_code": "spent"}, 400, "alipay", "isv.code-invalid", None),
        ({"auth_code": "a\nb"}, 400, "cancelled", None, None),
        ({}, 502, "signature", None, {"bad_signature": True}),
        ({}, 504, "timeout", None, {"delay": 1}),
    ],
    ids=["no-code", "not-a-string", "spent", "not-alipays", "bad-signature", "timeout"],
)
def test_the_code_endpoint_answers_failures_as_json(
    code_site: Flask,
    alipay_emulator: AlipayEmulator,
    body: dict[str, Any],
    status: int,
    error: str,
    sub_code: str | None,
    injection: dict[str, Any] | None,
) -> None:
    if injection is not None:
        alipay_emulator.inject("alipay.system.oauth.token", **injection)
        body = {"auth_code": alipay_emulator.issue_code()}
    answer = code_site.test_client().post("/alipay/code", json=body)
    assert answer.status_code == status
    got = answer.get_json()
    assert set(got) == {"error", "message", "sub_code"}
    assert (got["error"], got["sub_code"]) == (error, sub_code) and got["message"]


def test_a_mini_program_with_its_own_appid_is_a_named_instance(
    alipay_config: dict[str, str], alipay_emulator: AlipayEmulator, other_key: rsa.RSAPrivateKey
) -> None:
    mini_app_id = "2021000000000777"
    alipay_emulator.register_app(mini_app_id, other_key.public_key())
    site = build_site(alipay_config)
    site.config.update(
        {
            **{k.replace("ALIPAY_", "ALIPAY_MINI_"): v for k, v in alipay_config.items()},
            "ALIPAY_MINI_APP_ID": mini_app_id,
            "ALIPAY_MINI_PRIVATE_KEY": pem_private(other_key),
            "ALIPAY_MINI_CODE_ENDPOINT": True,
        }
    )
    AlipayLogin(site, name="alipay_mini", config_prefix="ALIPAY_MINI_")
    code = alipay_emulator.issue_code(app_id=mini_app_id)
    answer = site.test_client().post("/alipay_mini/code", json={"auth_code": code})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    calls = [r.method for r in alipay_emulator.requests if r.query["app_id"] == mini_app_id]
    assert calls == ["alipay.system.oauth.token", "alipay.user.info.share"]


# Phone numbers -------------------------------------------------------------------------


def decrypt(site: Flask, answer: dict[str, str]) -> dict[str, Any]:
    with site.app_context():
        result: dict[str, Any] = site.extensions["alipay"].decrypt_phone_number(
            answer["response"], answer["sign"]
        )
        return result


def test_a_phone_number_is_verified_then_decrypted(
    make_site: Callable[..., Flask],
    alipay_emulator: AlipayEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    site = make_site(ALIPAY_AES_KEY=AES_KEY)
    alipay_emulator.add_user("carol", mobile="13800138000")
    answer = alipay_emulator.phone_number(AES_KEY, "carol")
    assert "13800138000" not in answer["response"]
    data = decrypt(site, answer)
    assert data["mobile"] == "13800138000" and data["code"] == "10000"
    assert not [r for r in caplog.records if "13800138000" in r.getMessage()]


def test_a_phone_number_answer_that_does_not_verify_is_refused(
    make_site: Callable[..., Flask], alipay_emulator: AlipayEmulator
) -> None:
    site = make_site(ALIPAY_AES_KEY=AES_KEY)
    answer = alipay_emulator.phone_number(AES_KEY)
    other = alipay_emulator.phone_number(AES_KEY)  # another number: its sign is not ours
    with pytest.raises(UnverifiedAnswer):
        decrypt(site, {"response": answer["response"], "sign": other["sign"]})
    with pytest.raises(UnverifiedAnswer):
        decrypt(site, {"response": answer["response"], "sign": ""})


def test_a_wrong_aes_key_says_so_without_the_text(
    make_site: Callable[..., Flask], alipay_emulator: AlipayEmulator
) -> None:
    other_key = base64.b64encode(b"fedcba9876543210").decode("ascii")
    site = make_site(ALIPAY_AES_KEY=other_key)
    answer = alipay_emulator.phone_number(AES_KEY)
    with pytest.raises(MalformedAnswer) as caught:
        decrypt(site, answer)
    assert "ALIPAY_AES_KEY" in str(caught.value) and other_key not in str(caught.value)


def test_an_error_inside_the_answer_gets_a_hint(
    make_site: Callable[..., Flask], alipay_emulator: AlipayEmulator
) -> None:
    site = make_site(ALIPAY_AES_KEY=AES_KEY)
    answer = alipay_emulator.phone_number(AES_KEY, sub_code="isv.insufficient-isv-permissions")
    with pytest.raises(AlipayRefused) as caught:
        decrypt(site, answer)
    assert caught.value.sub_code == "isv.insufficient-isv-permissions"
    assert "获取会员手机号" in caught.value.hint


def test_the_aes_key_is_checked_at_start_up(
    make_site: Callable[..., Flask], alipay_emulator: AlipayEmulator
) -> None:
    with pytest.raises(AlipayConfigError, match="ALIPAY_AES_KEY is not an AES key"):
        make_site(ALIPAY_AES_KEY=base64.b64encode(b"short").decode())
    with pytest.raises(AlipayConfigError, match="ALIPAY_AES_KEY is not base64"):
        make_site(ALIPAY_AES_KEY="not base64!")
    site = make_site()
    with pytest.raises(AlipayConfigError, match="ALIPAY_AES_KEY is not set"):
        decrypt(site, alipay_emulator.phone_number(AES_KEY))


def test_csrfprotect_and_the_documented_exemption(
    code_site: Flask, alipay_emulator: AlipayEmulator
) -> None:
    from flask_wtf.csrf import CSRFProtect

    csrf = CSRFProtect(code_site)
    client = code_site.test_client()
    refused = client.post("/alipay/code", json={"auth_code": alipay_emulator.issue_code()})
    assert refused.status_code == 400  # Flask-WTF's "The CSRF token is missing."
    csrf.exempt("flask_alipay.views.code")  # as docs/mini-programs.md shows
    answer = client.post("/alipay/code", json={"auth_code": alipay_emulator.issue_code()})
    assert answer.status_code == 200
    assert client.post("/alipay/logout").status_code == 400  # everything else keeps it
