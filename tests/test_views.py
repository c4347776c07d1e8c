"""Where our error page shows, who wins over it, and how it is overridden.

These tests use the shipped pytest plugin (``alipay_config``, ``alipay_emulator``,
``alipay_sign_in``) the way a site's own tests would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_alipay import (
    AlipayError,
    AlipayLogin,
    AlipayRefused,
    GatewayTimedOut,
    InvalidState,
    MalformedAnswer,
    SignInCancelled,
    UnverifiedAnswer,
    login_failed,
)
from flask_alipay.testing import AlipayEmulator

OUR_PAGE = "支付宝登录未完成"
USER_INFO = "alipay.user.info.share"


def make_app(config: dict[str, Any], **flask_options: Any) -> Flask:
    """A site with one view of its own that calls the gateway."""
    app = Flask("site", **flask_options)
    app.config.update(SECRET_KEY="test", **config)
    alipay = AlipayLogin(app)

    @app.route("/orders")
    def orders() -> str:
        alipay.call(USER_INFO, auth_token="not-a-token")
        return "unreachable"

    return app


def test_an_error_in_a_site_view_is_a_plain_http_error(alipay_config: dict[str, Any]) -> None:
    response = make_app(alipay_config).test_client().get("/orders")
    assert response.status_code == 502
    assert OUR_PAGE not in response.get_data(as_text=True)
    assert "Bad Gateway" in response.get_data(as_text=True)


def test_a_timeout_in_a_site_view_is_a_504(
    alipay_config: dict[str, Any], alipay_emulator: AlipayEmulator
) -> None:
    app = make_app({**alipay_config, "ALIPAY_TIMEOUT": 0.3})
    alipay_emulator.inject(USER_INFO, delay=1)
    response = app.test_client().get("/orders")
    assert response.status_code == 504 and OUR_PAGE not in response.get_data(as_text=True)


def test_the_sites_502_page_serves_its_own_views(alipay_config: dict[str, Any]) -> None:
    app = make_app(alipay_config)
    app.register_error_handler(502, lambda error: ("our 502 page", 502))
    response = app.test_client().get("/orders")
    assert response.get_data(as_text=True) == "our 502 page"


def test_our_page_serves_only_the_blueprints_views(alipay_config: dict[str, Any]) -> None:
    client = make_app(alipay_config).test_client()
    failed = client.get("/alipay/callback?state=unknown&auth_code=x")
    assert failed.status_code == 400
    assert OUR_PAGE in failed.get_data(as_text=True)


@pytest.mark.parametrize("when", ["before", "after"])
def test_the_sites_handler_wins_everywhere(alipay_config: dict[str, Any], when: str) -> None:
    def handler(error: AlipayError) -> tuple[str, int]:
        return f"site handler: {type(error).__name__} {error.reason}", 418

    app = Flask("site")
    app.config.update(SECRET_KEY="test", **alipay_config)
    if when == "before":
        app.register_error_handler(AlipayError, handler)
    alipay = AlipayLogin(app)
    if when == "after":
        app.register_error_handler(AlipayError, handler)
    app.add_url_rule("/orders", "orders", lambda: alipay.call(USER_INFO, auth_token="x"))
    client = app.test_client()
    callback = client.get("/alipay/callback?state=unknown")
    assert (callback.status_code, callback.get_data(as_text=True)) == (
        418,
        "site handler: InvalidState state",
    )
    own = client.get("/orders")
    assert own.status_code == 418 and "AlipayRefused" in own.get_data(as_text=True)


def test_a_handler_for_one_kind_leaves_the_others_to_our_page(
    alipay_config: dict[str, Any], alipay_emulator: AlipayEmulator, alipay_sign_in: Any
) -> None:
    app = make_app({**alipay_config, "ALIPAY_TIMEOUT": 0.3})
    app.register_error_handler(GatewayTimedOut, lambda error: ("slow, sorry", 504))
    client = app.test_client()
    alipay_emulator.inject("alipay.system.oauth.token", delay=1)
    assert alipay_sign_in(client).get_data(as_text=True) == "slow, sorry"
    state_failure = client.get("/alipay/callback?state=nope")
    assert OUR_PAGE in state_failure.get_data(as_text=True)


def test_a_site_overrides_the_page_with_its_own_template(
    alipay_config: dict[str, Any], tmp_path: Path
) -> None:
    (tmp_path / "flask_alipay").mkdir()
    (tmp_path / "flask_alipay" / "error.html").write_text(
        "<p>our own page: {{ error.reason }} {{ error.status_code }} {{ retry_url }}</p>",
        encoding="utf-8",
    )
    app = make_app(alipay_config, template_folder=str(tmp_path))
    response = app.test_client().get("/alipay/callback?state=gone")
    assert response.status_code == 400
    assert response.get_data(as_text=True) == "<p>our own page: state 400 /alipay/login</p>"


@pytest.mark.parametrize(
    "kind, status, reason",
    [
        (InvalidState, 400, "state"),
        (SignInCancelled, 400, "cancelled"),
        (AlipayRefused, 502, "alipay"),
        (UnverifiedAnswer, 502, "signature"),
        (MalformedAnswer, 502, "malformed"),
        (GatewayTimedOut, 504, "timeout"),
    ],
)
def test_each_kind_carries_its_status_reason_and_hint(
    kind: type[AlipayError], status: int, reason: str
) -> None:
    error = kind()
    assert isinstance(error, AlipayError)
    assert (error.status_code, error.reason) == (status, reason)
    assert error.hint and error.message
    assert kind("custom", status_code=418).status_code == 418


# The page speaks to the person signing in -------------------------------------------

#: (name, how the sign-in goes wrong, the exception class it raises)
FAILURES: list[tuple[str, dict[str, Any], type[AlipayError]]] = [
    (
        "spent-code",
        {"method": "alipay.system.oauth.token", "sub_code": "isv.code-invalid"},
        AlipayRefused,
    ),
    (
        "no-permission",
        {"method": USER_INFO, "sub_code": "isv.insufficient-isv-permissions"},
        AlipayRefused,
    ),
    (
        "bad-signature",
        {"method": "alipay.system.oauth.token", "bad_signature": True},
        UnverifiedAnswer,
    ),
    ("html", {"method": USER_INFO, "html_status": 502}, MalformedAnswer),
    ("timeout", {"method": "alipay.system.oauth.token", "delay": 1}, GatewayTimedOut),
]


@pytest.mark.parametrize(
    "injection, kind", [(f[1], f[2]) for f in FAILURES], ids=[f[0] for f in FAILURES]
)
def test_the_page_speaks_to_people_and_keeps_next(
    alipay_config: dict[str, Any],
    alipay_emulator: AlipayEmulator,
    alipay_sign_in: Any,
    injection: dict[str, Any],
    kind: type[AlipayError],
) -> None:
    app = make_app({**alipay_config, "ALIPAY_TIMEOUT": 0.5})
    failures: list[AlipayError] = []
    login_failed.connect(lambda s, error, **e: failures.append(error), sender=app, weak=False)
    alipay_emulator.inject(**injection)
    response = alipay_sign_in(app.test_client(), next="/orders?page=2")
    page = response.get_data(as_text=True)
    (error,) = failures
    assert isinstance(error, kind) and response.status_code == error.status_code
    chinese, english = error.user_message
    assert chinese in page and english in page.replace("&#39;", "'")
    # No jargon and no setting names for the person signing in; those are in the log.
    for jargon in ("auth_code", "ALIPAY_", "sub_code", error.message, error.hint):
        assert jargon not in page
    if error.sub_code:
        assert error.sub_code not in page
    assert 'href="/alipay/login?next=/orders?page%3D2"' in page  # 重试 · Try again
    assert "重试 · Try again" in page
    assert f'<main data-reason="{error.reason}">' in page  # for scripts and load tests
    assert 'href="/">返回首页 · Back to home</a>' in page


def test_the_message_and_the_hint_do_not_repeat_each_other() -> None:
    kinds = [
        AlipayError,
        InvalidState,
        SignInCancelled,
        AlipayRefused,
        UnverifiedAnswer,
        MalformedAnswer,
        GatewayTimedOut,
    ]
    for kind in kinds:
        error = kind()
        chinese, english = error.user_message
        assert english not in error.hint and error.hint not in english
        assert english != error.message and chinese and "请" in chinese
        assert "Sign-in with Alipay did not complete" not in english  # the page's title


def test_in_debug_mode_developers_get_the_details(
    alipay_config: dict[str, Any], alipay_emulator: AlipayEmulator, alipay_sign_in: Any
) -> None:
    app = make_app(alipay_config)
    app.debug = True
    alipay_emulator.inject(USER_INFO, sub_code="isv.insufficient-isv-permissions")
    page = alipay_sign_in(app.test_client()).get_data(as_text=True)
    assert "For developers" in page
    assert "isv.insufficient-isv-permissions" in page
    assert "ALIPAY_SCOPE" in page  # the hint names the setting to change


def test_a_failed_state_retries_without_next_and_links_home_under_a_prefix(
    alipay_config: dict[str, Any],
) -> None:
    app = make_app(alipay_config)
    page = (
        app.test_client()
        .get("/alipay/callback?state=gone", environ_overrides={"SCRIPT_NAME": "/shop"})
        .get_data(as_text=True)
    )
    assert 'href="/shop/alipay/login">重试 · Try again</a>' in page
    assert 'href="/shop/">返回首页 · Back to home</a>' in page
