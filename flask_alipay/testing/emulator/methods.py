"""The gateway's side of a call: the checks Alipay makes, then the method.

Nothing here reads HTTP or writes bytes.  A call arrives as the pairs
``gateway.py`` decoded off the wire and leaves as an :class:`Answer` (a node
name and its members) that ``answers.py`` writes out.  A request the gateway
turns down raises :class:`Refused` on the way and answers ``error_response``.

Methods are looked up in :data:`METHODS`; a new one is a function and a row.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from flask_alipay.protocol import (
    BEIJING,
    ERROR_NODE,
    SUCCESS_CODE,
    TIMESTAMP_FORMAT,
    TOKEN_METHOD,
    USER_INFO_METHOD,
    node_name,
    wants_profile,
)

from .checks import (
    Refused,
    SignatureMember,
    check_charset,
    check_placement,
    check_required,
    check_sign_type,
    check_signature,
    insufficient,
    invalid,
    missing,
)
from .paths import AVATAR_PATH
from .pki import Pki
from .state import GatewayRequest, Grant, Injection, State

__all__ = [
    "METHODS",
    "Answer",
    "Call",
    "Method",
    "Methods",
    "Refused",
    "Settings",
    "beijing_now",
    "injected_error",
]

_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


def beijing_now() -> datetime:
    """Now in Beijing time, naive: the clock Alipay's timestamps are read against."""
    return datetime.now(BEIJING).replace(tzinfo=None)


@dataclass(frozen=True)
class Answer:
    """A gateway answer before rendering: the node name and its members in order."""

    node: str
    data: dict[str, Any]
    #: How the answer carries ``sign``: Alipay leaves some errors unsigned.
    signature: SignatureMember = "signed"


@dataclass(frozen=True)
class Call:
    """One gateway call as the wire gave it: the record, its pairs in order, and where."""

    record: GatewayRequest
    query_pairs: list[tuple[str, str]]
    form_pairs: list[tuple[str, str]]
    #: The codec the call is decoded and verified in (utf-8 when none is named).
    charset: str
    #: ``http://host:port/`` of the emulator as the caller reached it.
    host_url: str

    @property
    def params(self) -> dict[str, str]:
        """Query and body parameters together, as the gateway signs them."""
        return self.record.params


class Settings(Protocol):
    """The emulator's settings the methods read, at call time (tests change them)."""

    token_ttl: int
    refresh_ttl: int
    expires_as_string: bool
    timestamp_tolerance: float
    strict: bool


@dataclass(frozen=True)
class Method:
    """A gateway method: what runs it, and where its business errors go.

    ``errors_in_node``: the method answers its errors inside its own node (as
    ``alipay.user.info.share`` does, with code 20001) rather than in
    ``error_response``.
    """

    run: Callable[[Methods, Call], Answer]
    errors_in_node: bool = False


class Methods:
    """The gateway's checks and methods over the emulator's state."""

    def __init__(self, state: State, settings: Settings, pki: Pki | None) -> None:
        self.state = state
        self.settings = settings
        self.pki = pki

    def process(self, call: Call) -> Answer:
        """Check the request as the real gateway does, then run the method."""
        try:
            check_charset(call.record.charset)
            check_placement(call.query_pairs, call.form_pairs, self.settings.strict)
            params = call.params
            app_key = self._check_app(params.get("app_id"))
            check_required(params)
            self._check_timestamp(params["timestamp"])
            sign_type = check_sign_type(params["sign_type"])
            check_signature(call.record, app_key, sign_type, call.charset)
            if self.pki is not None:
                self._check_cert_sns(self.pki, params)
            method = METHODS.get(params["method"])
            if method is None:
                raise invalid("isv.invalid-method", "不存在的方法名")
            return method.run(self, call)
        except Refused as refused:
            return Answer(ERROR_NODE, refused.error, refused.signature)

    def _check_app(self, app_id: str | None) -> RSAPublicKey:
        """The APPID's public key; unknown apps and apps with no key are refused."""
        if not app_id:
            raise missing("isv.missing-app-id", "缺少AppID参数")
        known, key = self.state.app_key(app_id)
        if not known:
            # Alipay has no key of an app it does not know to sign with: no sign member.
            raise invalid("isv.invalid-app-id", "无效的AppID参数", signature="absent")
        if key is None:
            raise insufficient(
                "isv.missing-signature-config", "应用未配置对应签名算法的公钥或者证书"
            )
        return key

    def _check_cert_sns(self, pki: Pki, params: Mapping[str, str]) -> None:
        """Certificate mode: the signed common parameters must name the app's current
        certificate and the root bundle, as Alipay checks them."""
        if not params.get("app_cert_sn"):
            raise missing("isv.missing-app-cert-sn", "缺少应用公钥证书序列号")
        with self.state.lock:
            issued = pki.app_certs.get(params["app_id"])
        if issued is None or params.get("app_cert_sn") != issued.sn:
            raise invalid("isv.app-cert-not-exist", "应用公钥证书不存在")
        if params.get("alipay_root_cert_sn") != pki.root_sn:
            raise invalid("invalid-alipay-root-cert-sn", "无效支付宝根证书序列号")

    def _check_timestamp(self, timestamp: str) -> None:
        """Alipay reads the timestamp as Beijing time, whatever the caller's zone."""
        if not _TIMESTAMP.fullmatch(timestamp):
            raise invalid("isv.invalid-timestamp", "非法的时间戳参数")
        try:
            sent = datetime.strptime(timestamp, TIMESTAMP_FORMAT)
        except ValueError:
            raise invalid("isv.invalid-timestamp", "非法的时间戳参数") from None
        if abs((sent - beijing_now()).total_seconds()) > self.settings.timestamp_tolerance:
            raise invalid(
                "isv.invalid-timestamp",
                "非法的时间戳参数，请使用北京时间（UTC+8）",
            )

    # -- alipay.system.oauth.token -------------------------------------------

    def oauth_token(self, call: Call) -> Answer:
        """Exchange an auth_code or a refresh token for new tokens."""
        params = call.params
        app_id = params["app_id"]
        grant_type = params.get("grant_type")
        if grant_type == "authorization_code":
            grant = self._redeem_code(params.get("code", ""), app_id)
        elif grant_type == "refresh_token":
            grant = self._redeem_refresh_token(params.get("refresh_token", ""), app_id)
        else:
            raise invalid("isv.grant-type-invalid", "grant_type参数不正确")
        return self._issue_tokens(grant)

    def _redeem_code(self, code: str, app_id: str) -> Grant:
        """The code's grant, if it is this app's and still fresh."""
        grant = self.state.redeem_code(code)
        if grant is None or grant.app_id != app_id or grant.expired():
            # Seen in certificate mode with "sign":"" (docs/protocol.md §11).
            empty: SignatureMember = "empty" if self.pki is not None else "signed"
            raise invalid("isv.code-invalid", "授权码code无效", signature=empty)
        self.state.record_sign_in(grant)
        return grant

    def _redeem_refresh_token(self, token: str, app_id: str) -> Grant:
        """The refresh token's grant, if it is this app's and still fresh."""
        grant = self.state.redeem_refresh_token(token)
        if grant is None or grant.app_id != app_id:
            raise invalid("isv.refresh-token-invalid", "刷新令牌refresh_token无效")
        if grant.expired():
            raise invalid("isv.refresh-token-time-out", "刷新令牌refresh_token已过期")
        return grant

    def _issue_tokens(self, grant: Grant) -> Answer:
        """The token answer, members in the order Alipay sends them: the token's five,
        then ``user_id``, ``open_id`` (and ``alipay_user_id`` mid-migration)."""
        settings = self.settings
        access_token, refresh_token, user = self.state.issue_tokens(
            grant, settings.token_ttl, settings.refresh_ttl
        )
        expires_in: int | str = settings.token_ttl
        re_expires_in: int | str = settings.refresh_ttl
        if settings.expires_as_string:
            expires_in, re_expires_in = str(expires_in), str(re_expires_in)
        data: dict[str, Any] = {
            "access_token": access_token,
            "auth_start": beijing_now().strftime(TIMESTAMP_FORMAT),
            "expires_in": expires_in,
            "re_expires_in": re_expires_in,
            "refresh_token": refresh_token,
        }
        data.update(user.identity())
        return Answer(node_name(TOKEN_METHOD), data)

    # -- alipay.user.info.share ----------------------------------------------

    def user_info(self, call: Call) -> Answer:
        """The profile; token problems answer inside the node with 20001."""
        params = call.params
        grant = self.state.access_grant(params.get("auth_token", ""))
        if grant is None or grant.app_id != params["app_id"]:
            return _token_refused("aop.invalid-auth-token", "无效的访问令牌")
        if grant.expired():
            return _token_refused("aop.auth-token-time-out", "访问令牌已过期")
        if not wants_profile(grant.scope):
            return _token_refused("aop.invalid-auth-token", "无效的访问令牌")
        with self.state.lock:
            user = self.state.users[grant.user_key]
        profile = user.profile()
        avatar = profile.get("avatar")
        if isinstance(avatar, str) and avatar.startswith(AVATAR_PATH):
            profile["avatar"] = call.host_url.rstrip("/") + avatar
        data: dict[str, Any] = {"code": SUCCESS_CODE, "msg": "Success", **profile}
        return Answer(node_name(USER_INFO_METHOD), data)


#: The methods the gateway serves, by name.
METHODS: dict[str, Method] = {
    TOKEN_METHOD: Method(Methods.oauth_token),
    USER_INFO_METHOD: Method(Methods.user_info, errors_in_node=True),
}


def _token_refused(sub_code: str, sub_msg: str) -> Answer:
    """A token problem: inside the profile node with 20001, as Alipay answers it."""
    error = {
        "code": "20001",
        "msg": "Insufficient Token Permissions",
        "sub_code": sub_code,
        "sub_msg": sub_msg,
    }
    return Answer(node_name(USER_INFO_METHOD), error)


def injected_error(method: str | None, injection: Injection) -> Answer:
    """An injected ``sub_code``, where the method would put a real error of its own."""
    served = METHODS.get(method or "")
    if method is not None and served is not None and served.errors_in_node:
        return Answer(node_name(method), injection.error())
    return Answer(ERROR_NODE, injection.error())


# The open platform's methods beyond sign-in live in their own module.
from . import platform as _platform  # noqa: E402

METHODS.update(_platform.METHODS)
