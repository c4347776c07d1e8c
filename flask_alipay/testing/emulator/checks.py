"""The gateway's request checks that need no state, and how it refuses.

A refused request answers ``error_response`` (:class:`Refused`), with the
codes and texts real answers carry: 40001 for a missing parameter, 40002 for
a wrong one, 40003 for a missing key, and sub_msgs that end, as recent ones
do, with ``，解决方案：https://open.alipay.com/api/errCheck?traceId=…``.
Some refusals go out unsigned, as Alipay's do (:attr:`Refused.signature`).

Placement: the official SDKs put the common parameters in the query string and
the rest in the form body.  The real gateway is laxer: once ``charset`` is in
the query it reads every parameter from either place (Logto's connector sends
everything in the query of a POST, some send a GET, yansongda/pay sends
everything but ``charset`` in the body).  :func:`placement_warnings` names
each departure from the SDKs' split; the emulator records them on every call
and refuses them only when ``strict``.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from flask_alipay.protocol import BODY_PARAMS, CHARSETS, QUERY_PARAMS, SIGN_TYPES, wire_charset
from flask_alipay.signing import verify_signature

from .state import GatewayRequest

__all__ = [
    "OPTIONAL_QUERY_PARAMS",
    "PLACEMENT",
    "Refused",
    "SignatureMember",
    "check_charset",
    "check_placement",
    "check_required",
    "check_sign_type",
    "check_signature",
    "insufficient",
    "invalid",
    "missing",
    "placement_warnings",
]

#: Other system parameters the SDKs may also put in the query string.
OPTIONAL_QUERY_PARAMS = frozenset(
    {
        "alipay_sdk",
        "app_auth_token",
        "notify_url",
        "return_url",
        "prod_code",
        "terminal_type",
        "terminal_info",
    }
)
#: How each placement warning on :attr:`GatewayRequest.warnings` begins.
PLACEMENT = "placement: "
#: "utf-8和GBK": the wire names, in the order the library lists them.
_CHARSET_NAMES = "和".join(dict.fromkeys(CHARSETS.values()))
_ERR_CHECK = "，解决方案：https://open.alipay.com/api/errCheck?traceId="

#: How an answer carries ``sign``: signed, no member at all, or ``"sign":""``.
SignatureMember = Literal["signed", "absent", "empty"]


def _trace_id() -> str:
    """A made-up trace id, 30 hex digits like the gateway's."""
    return secrets.token_hex(15)


class Refused(Exception):
    """A request the gateway turns down with an ``error_response``."""

    def __init__(
        self,
        code: str,
        msg: str,
        sub_code: str,
        sub_msg: str,
        signature: SignatureMember = "signed",
    ) -> None:
        super().__init__(sub_code)
        sub_msg = sub_msg + _ERR_CHECK + _trace_id()
        self.error = {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}
        self.signature: SignatureMember = signature


def invalid(sub_code: str, sub_msg: str, signature: SignatureMember = "signed") -> Refused:
    """40002: a parameter is there but wrong."""
    return Refused("40002", "Invalid Arguments", sub_code, sub_msg, signature)


def missing(sub_code: str, sub_msg: str) -> Refused:
    """40001: a required parameter is absent."""
    return Refused("40001", "Missing Required Arguments", sub_code, sub_msg)


def insufficient(sub_code: str, sub_msg: str) -> Refused:
    """40003: the app lacks what the call needs (a key uploaded for the sign type)."""
    return Refused("40003", "Insufficient Conditions", sub_code, sub_msg)


def check_charset(named: str | None) -> None:
    """``charset`` must be in the query, and one the gateway speaks."""
    if not named:
        raise invalid("isv.invalid-signature", "验签出错，请确认charset参数放在了URL查询字符串中")
    if wire_charset(named) is None:
        raise invalid("isv.invalid-charset", f"字符集错误：{named}，仅支持{_CHARSET_NAMES}")


def placement_warnings(
    query_pairs: list[tuple[str, str]], form_pairs: list[tuple[str, str]], http_method: str
) -> tuple[str, ...]:
    """Each way a call departs from the SDKs' split, as a ``placement: …`` warning.

    ``auth_token`` may ride in the body too (``protocol.BODY_PARAMS``), where
    flask_alipay puts it.
    """
    warnings = []
    if http_method != "POST":
        warnings.append(f"{PLACEMENT}sent with {http_method}; the SDKs POST")
    for name, _ in form_pairs:
        if name in QUERY_PARAMS and name not in BODY_PARAMS:
            warnings.append(
                f"{PLACEMENT}common parameter {name} in the body; the SDKs put it in the query"
            )
    for name, _ in query_pairs:
        if name not in QUERY_PARAMS and name not in OPTIONAL_QUERY_PARAMS:
            warnings.append(
                f"{PLACEMENT}parameter {name} in the query; the SDKs put it in the body"
            )
    return tuple(warnings)


def check_placement(
    query_pairs: list[tuple[str, str]],
    form_pairs: list[tuple[str, str]],
    strict: bool,
) -> None:
    """Repeated parameters are always refused; a departure from the SDKs' split only
    when ``strict`` (the real gateway answers it)."""
    for pairs in (query_pairs, form_pairs):
        names = [name for name, _ in pairs]
        for name in names:
            if names.count(name) > 1:
                raise invalid("isv.invalid-parameter", f"参数{name}重复 (repeated)")
    if not strict:
        return
    for name, _ in form_pairs:
        if name in QUERY_PARAMS and name not in BODY_PARAMS:
            raise invalid(
                "isv.invalid-parameter",
                f"公共参数{name}应放在URL查询字符串中 (common parameter {name} "
                "belongs in the query string)",
            )
    for name, _ in query_pairs:
        if name not in QUERY_PARAMS and name not in OPTIONAL_QUERY_PARAMS:
            raise invalid(
                "isv.invalid-parameter",
                f"业务参数{name}应放在请求体中 (parameter {name} belongs in the form body)",
            )


def check_required(params: Mapping[str, str]) -> None:
    """The common parameters the gateway will not go on without; ``format`` is JSON."""
    required = (
        ("method", "isv.missing-method", "缺少方法名参数"),
        ("timestamp", "isv.missing-timestamp", "缺少时间戳参数"),
        ("sign_type", "isv.missing-signature-type", "缺少签名类型参数"),
        ("sign", "isv.missing-signature", "缺少签名参数"),
        ("version", "isv.missing-version", "缺少版本参数"),
    )
    for name, sub_code, sub_msg in required:
        if not params.get(name):
            raise missing(sub_code, sub_msg)
    if params.get("format", "JSON").upper() != "JSON":
        raise invalid("isv.invalid-format", "无效的数据格式")


def check_sign_type(sign_type: str) -> str:
    """Only the sign types the gateway verifies."""
    if sign_type not in SIGN_TYPES:
        raise invalid("isv.invalid-signature-type", "无效的签名类型")
    return sign_type


def check_signature(
    record: GatewayRequest, key: RSAPublicKey, sign_type: str, charset: str
) -> None:
    """Verify the string to sign in the request charset; on failure quote it as the real
    gateway does, ``&amp;`` between the pairs, so a client can diff it against its own."""
    content = record.string_to_sign.encode(charset, errors="replace")
    if not verify_signature(content, record.params["sign"], key, sign_type):
        quoted = record.string_to_sign.replace("&", "&amp;")
        raise invalid(
            "isv.invalid-signature",
            f"验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配，网关生成的验签字符串为：{quoted}",
        )
