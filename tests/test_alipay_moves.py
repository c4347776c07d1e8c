"""Alipay moves: one pinned user id through the OpenID migration, the whole verified
profile for the app and only a few fields in the session, several scopes at once."""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from support.browser import query_of, start_login

from flask_alipay import (
    AlipayConfigError,
    AlipayError,
    AlipayLogin,
    MissingUserId,
    login_failed,
    user_logged_in,
)
from flask_alipay.protocol import TOKEN_METHOD, USER_INFO_METHOD
from flask_alipay.settings import COOKIE_SESSION_FIELDS
from flask_alipay.testing import AlipayEmulator
from flask_alipay.testing.pytest_plugin import SignIn

#: The conversion method of the guide, as the official SDKs name it.
UID_TO_OPENID = "alipay.open.app.openid.uidtoopenid.batchquery"
APPROVED = {"mobile": "13800138000", "email": "xm@example.cn", "user_name": "张小明"}


@contextmanager
def received(signal: Any, site: Flask) -> Iterator[list[dict[str, Any]]]:
    calls: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        calls.append(kwargs)

    signal.connect(receiver, sender=site)
    try:
        yield calls
    finally:
        signal.disconnect(receiver, sender=site)


def session_user(site: Flask, client: Any) -> dict[str, str]:
    with client.session_transaction() as session:
        return dict(session["_alipay_user"])


# One user id ------------------------------------------------------------------------


@pytest.mark.parametrize("id_field", ["open_id", "user_id"])
def test_the_id_is_the_pinned_field_when_alipay_sends_both(
    alipay_sign_in: SignIn,
    make_site: Callable[..., Flask],
    alipay_emulator: AlipayEmulator,
    id_field: str,
) -> None:
    account = alipay_emulator.add_user("migrating", id_kind="both")
    site = make_site(ALIPAY_ID_FIELD=id_field)
    client = site.test_client()
    with received(user_logged_in, site) as logins:
        assert alipay_sign_in(client, "migrating").status_code == 302
    user = logins[0]["user"]
    assert user.id == getattr(account, id_field) and user.id_kind == id_field
    assert (user["user_id"], user["open_id"]) == (account.user_id, account.open_id)
    stored = session_user(site, client)
    assert (stored["user_id"], stored["open_id"]) == (account.user_id, account.open_id)
    assert client.get("/").get_data(as_text=True) == f"home {getattr(account, id_field)}"


@pytest.mark.parametrize(("id_field", "sent"), [("open_id", "user_id"), ("user_id", "open_id")])
def test_an_answer_without_the_pinned_id_is_a_502_naming_the_console_setting(
    alipay_sign_in: SignIn,
    make_site: Callable[..., Flask],
    alipay_emulator: AlipayEmulator,
    id_field: str,
    sent: str,
) -> None:
    alipay_emulator.add_user("halfway", id_kind=sent)  # type: ignore[arg-type]
    site = make_site(ALIPAY_ID_FIELD=id_field)
    client = site.test_client()
    with received(login_failed, site) as failures:
        response = alipay_sign_in(client, "halfway")
    assert response.status_code == 502
    error: AlipayError = failures[0]["error"]
    assert error.reason == "id_field"
    assert "开发设置 › openid配置管理" in error.hint and "ALIPAY_ID_FIELD" in error.hint
    with client.session_transaction() as session:
        assert "_alipay_user" not in session


def test_the_hint_names_a_named_instances_own_key(alipay_config: dict[str, str]) -> None:
    app = Flask("named")
    app.config.update(
        SECRET_KEY="s",
        **{key.replace("ALIPAY_", "ALIPAY_MINI_", 1): v for key, v in alipay_config.items()},
        ALIPAY_MINI_SCOPE="auth_base",  # the token alone decides
    )
    mini = AlipayLogin(app, name="mini", config_prefix="ALIPAY_MINI_")
    with app.app_context(), pytest.raises(MissingUserId) as raised:
        mini.user_from_token({"access_token": "x", "user_id": "2088000000000001"})
    assert "ALIPAY_MINI_ID_FIELD" in raised.value.hint


def test_a_session_from_before_a_switch_of_the_id_field_is_signed_out(
    alipay_sign_in: SignIn, make_site: Callable[..., Flask], alipay_emulator: AlipayEmulator
) -> None:
    alipay_emulator.add_user("old", id_kind="user_id")
    site = make_site(ALIPAY_ID_FIELD="user_id")
    client = site.test_client()
    alipay_sign_in(client, "old")
    assert client.get("/private").status_code == 200
    cookie = client.get_cookie("session")
    assert cookie is not None
    switched = make_site(ALIPAY_ID_FIELD="open_id").test_client()
    switched.set_cookie("session", cookie.value)
    assert switched.get("/private").status_code == 302  # to the sign-in, never a 500


# The whole profile ------------------------------------------------------------------


def test_the_signal_carries_every_approved_field_and_the_session_only_a_few(
    alipay_sign_in: SignIn, make_site: Callable[..., Flask], alipay_emulator: AlipayEmulator
) -> None:
    alipay_emulator.add_user("approved", union_id="union-7", cert_type="0", **APPROVED)
    site = make_site()
    client = site.test_client()
    with received(user_logged_in, site) as logins:
        alipay_sign_in(client, "approved")
    user = logins[0]["user"]
    for name, value in {**APPROVED, "cert_type": "0", "union_id": "union-7"}.items():
        assert user[name] == value
    assert "code" not in user and "msg" not in user  # the answer's status, not the user's
    stored = session_user(site, client)
    assert set(stored) == {"open_id", "union_id", "nick_name", "avatar"}
    cookie = client.get_cookie("session")
    assert cookie is not None and "13800138000" not in cookie.value
    me = client.get("/api/me").get_json()
    assert "mobile" not in json.dumps(me)


def test_session_fields_choose_what_the_session_keeps(
    alipay_sign_in: SignIn, make_site: Callable[..., Flask], alipay_emulator: AlipayEmulator
) -> None:
    alipay_emulator.add_user("city", city="杭州市", id_kind="both")
    site = make_site(ALIPAY_SESSION_FIELDS=["city"])
    client = site.test_client()
    alipay_sign_in(client, "city")
    assert set(session_user(site, client)) == {"user_id", "open_id", "city"}


#: List fields of AlipayUserInfoShareResponse, shaped as its domain classes are.
LISTS: dict[str, Any] = {
    "deliver_addresses": [
        {
            "address": "文一西路969号",
            "deliver_city": "杭州市",
            "deliver_province": "浙江省",
            "default_deliver_address": "T",
        }
    ],
    "person_pictures": [{"picture_type": "AVATAR", "picture_url": "https://example.cn/a.jpg"}],
}


def test_list_fields_reach_the_signal_whole_and_read_only(
    alipay_sign_in: SignIn, make_site: Callable[..., Flask], alipay_emulator: AlipayEmulator
) -> None:
    alipay_emulator.add_user("lists", mobile="13800138000", **LISTS)
    site = make_site()
    client = site.test_client()
    with received(user_logged_in, site) as logins:
        alipay_sign_in(client, "lists")
    user = logins[0]["user"]
    assert user["deliver_addresses"] == LISTS["deliver_addresses"]
    assert user["person_pictures"] == LISTS["person_pictures"]
    user["deliver_addresses"][0]["address"] = "changed"  # a copy: the user is read-only
    assert user["deliver_addresses"] == LISTS["deliver_addresses"]
    assert user.to_dict()["person_pictures"] == LISTS["person_pictures"]
    assert set(session_user(site, client)) == {"open_id", "nick_name", "avatar"}


def test_a_server_side_session_may_keep_list_and_personal_fields(
    alipay_sign_in: SignIn,
    make_site: Callable[..., Flask],
    alipay_emulator: AlipayEmulator,
    tmp_path: Path,
) -> None:
    from cachelib import FileSystemCache
    from flask_session import Session

    alipay_emulator.add_user("kept", mobile="13800138000", **LISTS)
    site = make_site(
        SESSION_TYPE="cachelib",
        SESSION_CACHELIB=FileSystemCache(str(tmp_path)),
        ALIPAY_SESSION_FIELDS=["nick_name", "mobile", "deliver_addresses"],
    )
    Session(site)
    client = site.test_client()
    assert alipay_sign_in(client, "kept").status_code == 302
    me = client.get("/api/me").get_json()
    assert me["mobile"] == "13800138000"
    assert me["deliver_addresses"] == LISTS["deliver_addresses"]
    assert "person_pictures" not in me


def test_emulated_profile_fields_must_be_json(alipay_emulator: AlipayEmulator) -> None:
    with pytest.raises(ValueError, match="must be JSON values"):
        alipay_emulator.add_user("odd", pictures={1, 2})


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        (["nick_name", "mobile"], "mobile"),
        ("email", "email"),
        (["display_name"], "display_name"),
        (["avatar", "person_birthday", "cert_no"], "person_birthday, cert_no"),
        (["deliver_addresses"], "deliver_addresses"),
        (["some_field_alipay_adds_later"], "some_field_alipay_adds_later"),
    ],
)
def test_only_display_fields_may_go_into_a_cookie_session(
    make_site: Callable[..., Flask], fields: Any, named: str
) -> None:
    with pytest.raises(AlipayConfigError) as refused:
        make_site(ALIPAY_SESSION_FIELDS=fields)
    message = str(refused.value)
    assert message.startswith(f"ALIPAY_SESSION_FIELDS names {named}, which Flask's session")
    assert "server-side sessions" in message


def test_every_display_field_may_go_into_a_cookie_session(
    alipay_sign_in: SignIn, make_site: Callable[..., Flask], alipay_emulator: AlipayEmulator
) -> None:
    shown = {"country_code": "CN", "user_type": "2", "user_status": "T", "is_certified": "T"}
    alipay_emulator.add_user("shown", gender="f", province="浙江省", city="杭州市", **shown)
    site = make_site(ALIPAY_SESSION_FIELDS=list(COOKIE_SESSION_FIELDS))
    client = site.test_client()
    alipay_sign_in(client, "shown")
    stored = session_user(site, client)
    assert {name: stored[name] for name in shown} == shown
    assert (stored["gender"], stored["city"]) == ("f", "杭州市")


# Scopes -----------------------------------------------------------------------------


def test_several_scopes_are_asked_for_and_the_profile_read(
    alipay_sign_in: SignIn, make_site: Callable[..., Flask], alipay_emulator: AlipayEmulator
) -> None:
    site = make_site(ALIPAY_SCOPE="auth_user, auth_ecard")
    client = site.test_client()
    assert query_of(start_login(client))["scope"] == "auth_user,auth_ecard"
    with received(user_logged_in, site) as logins:
        assert alipay_sign_in(client).status_code == 302
    assert [r.method for r in alipay_emulator.requests] == [TOKEN_METHOD, USER_INFO_METHOD]
    assert logins[0]["user"]["nick_name"] == alipay_emulator.default_user.nick_name


def test_scopes_without_auth_user_read_no_profile(
    alipay_sign_in: SignIn, make_site: Callable[..., Flask], alipay_emulator: AlipayEmulator
) -> None:
    site = make_site(ALIPAY_SCOPE=["auth_ecard"])
    client = site.test_client()
    assert query_of(start_login(client))["scope"] == "auth_ecard"
    assert alipay_sign_in(client).status_code == 302
    assert [r.method for r in alipay_emulator.requests] == [TOKEN_METHOD]


# The migration guide's back-fill, run as written ----------------------------------


def guide_snippet() -> str:
    text = (Path(__file__).parent.parent / "docs" / "openid-migration.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", textwrap.dedent(text), re.DOTALL)
    (block,) = [b for b in blocks if UID_TO_OPENID in b]
    return textwrap.dedent(block)


def test_the_guides_back_fill_converts_user_ids_through_the_emulator(
    alipay_config: dict[str, str], alipay_emulator: AlipayEmulator
) -> None:
    accounts = [alipay_emulator.add_user(f"old{n}", id_kind="user_id") for n in range(3)]
    both = alipay_emulator.add_user("both", id_kind="both")
    namespace: dict[str, Any] = {}
    exec(compile(guide_snippet(), "openid-migration.md", "exec"), namespace)
    app = Flask("backfill")
    app.config.update(SECRET_KEY="s", **alipay_config)
    namespace["alipay"].init_app(app)
    user_ids = [a.user_id for a in accounts] + [both.user_id, "2088999999999999"]
    namespace["BATCH"] = 2  # several calls, as a long list needs
    with app.app_context():
        found = namespace["open_ids_for"](user_ids)
    assert set(found) == {a.user_id for a in [*accounts, both]}
    assert found[both.user_id] == both.open_id
    assert all(found[a.user_id] == alipay_emulator.user(a.key).open_id for a in accounts)
    calls = [r for r in alipay_emulator.requests if r.method == UID_TO_OPENID]
    assert len(calls) == 3
    # Exactly the parameters of the SDKs' AlipayOpenAppOpenidUidtoopenidBatchqueryModel.
    assert all(set(json.loads(call.form["biz_content"])) == {"user_id_list"} for call in calls)


@pytest.mark.parametrize("business", [{}, {"user_id_list": []}, {"user_id_list": "2088"}])
def test_the_emulators_conversion_refuses_a_missing_or_malformed_list(
    make_site: Callable[..., Flask], business: dict[str, Any]
) -> None:
    site = make_site()
    with site.app_context(), pytest.raises(AlipayError) as refused:
        site.extensions["alipay"].call(UID_TO_OPENID, business)
    assert refused.value.sub_code == "isv.invalid-parameter"
    assert refused.value.status_code == 502
