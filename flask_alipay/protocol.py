"""Alipay's gateway protocol as plain data: what a request is, how an answer is read.

Nothing here does I/O or touches Flask.  ``signed_request`` turns a method and
its parameters into the exact URL, body and headers to send; ``read_answer``
turns the bytes that came back into a verified node or an :class:`AlipayError`.
``gateway/`` moves the bytes in between.  The rules, and where each comes
from, are in ``docs/protocol.md``.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from .errors import (
    AlipayError,
    AlipayRefused,
    CertificateRotated,
    MalformedAnswer,
    UnverifiedAnswer,
    redact,
)
from .signing import (
    SIGN_TYPES,
    AnswerFormatError,
    SignedAnswer,
    parse_answer,
    read_node,
    sign_text,
    signed_bytes,
    string_to_sign,
)

if TYPE_CHECKING:
    from .config import AlipayConfig

__all__ = [
    "BEIJING",
    "BODY_PARAMS",
    "CERT_PARAMS",
    "CHARSETS",
    "COMMON_PARAMS",
    "ENDPOINTS",
    "ERROR_NODE",
    "IDENTITY_FIELDS",
    "PROFILE_SCOPE",
    "QUERY_PARAMS",
    "SCOPES",
    "SCOPE_SEPARATOR",
    "SIGN_TYPES",
    "SUCCESS_CODE",
    "TIMESTAMP_FORMAT",
    "TOKEN_METHOD",
    "USER_INFO_METHOD",
    "SignedRequest",
    "alipay_error",
    "answer_key",
    "beijing_timestamp",
    "is_known_scope",
    "is_local_gateway",
    "is_scope_name",
    "node_name",
    "normalise_token",
    "parse",
    "read_answer",
    "signed_request",
    "split_scope",
    "verify",
    "wants_profile",
    "wire_charset",
]

TOKEN_METHOD = "alipay.system.oauth.token"
USER_INFO_METHOD = "alipay.user.info.share"

#: ``auth_user`` shows a consent page and allows the profile call; ``auth_base`` is
#: silent.  The others are the further scopes Alipay's authorization docs list, asked
#: for beside ``auth_user``.
SCOPES = ("auth_user", "auth_base", "auth_ecard", "auth_invoice_info", "auth_puc_charge")
#: Several scopes go in one ``scope`` parameter, joined by commas (``auth_user,auth_ecard``).
SCOPE_SEPARATOR = ","
#: The scope that allows ``alipay.user.info.share``.
PROFILE_SCOPE = "auth_user"


def split_scope(scope: str) -> list[str]:
    """The scopes of a ``scope`` parameter, in order, without repeats."""
    return list(
        dict.fromkeys(part.strip() for part in scope.split(SCOPE_SEPARATOR) if part.strip())
    )


#: What a scope name looks like: Alipay approves more scopes than it documents in one
#: place, so any such name is accepted and only a malformed one refused.
_SCOPE_NAME = re.compile(r"[a-z0-9_]+")


def is_scope_name(name: str) -> bool:
    """A well-formed scope name: lowercase letters, digits and ``_``."""
    return _SCOPE_NAME.fullmatch(name) is not None


def is_known_scope(name: str) -> bool:
    """One of the scopes in SCOPES; ``flask alipay check`` warns of others (a typo?)."""
    return name in SCOPES


def wants_profile(scope: str) -> bool:
    """Whether a sign-in with this scope may read the profile."""
    return PROFILE_SCOPE in split_scope(scope)


#: (authorize page, gateway) for production (False) and the sandbox (True).
ENDPOINTS: dict[bool, tuple[str, str]] = {
    False: (
        "https://openauth.alipay.com/oauth2/publicAppAuthorize.htm",
        "https://openapi.alipay.com/gateway.do",
    ),
    True: (
        "https://openauth-sandbox.dl.alipaydev.com/oauth2/publicAppAuthorize.htm",
        "https://openapi-sandbox.dl.alipaydev.com/gateway.do",
    ),
}

#: Every accepted spelling of a charset -> the name the gateway expects on the wire.
CHARSETS: dict[str, str] = {"utf8": "utf-8", "utf-8": "utf-8", "gbk": "GBK"}

#: The gateway reads its timestamps as Beijing time, whatever the caller's zone.
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"

#: Parameters every call carries; the official SDKs send them in the query string.
COMMON_PARAMS = ("app_id", "method", "format", "charset", "sign_type", "timestamp", "version")
#: Certificate mode adds these two signed common parameters.
CERT_PARAMS = ("app_cert_sn", "alipay_root_cert_sn")
#: Everything the official SDKs put in the query string; the rest goes in the body.
QUERY_PARAMS = (*COMMON_PARAMS, "sign", "auth_token", *CERT_PARAMS)
#: Of those, what flask_alipay sends in the body instead: the gateway reads every
#: parameter from either place once ``charset`` is in the query (docs/protocol.md
#: §11), and a token in a URL ends up in every log line that quotes the URL.
BODY_PARAMS = ("auth_token",)

ERROR_NODE = "error_response"
#: ``code`` of a successful business answer (a token answer has no code at all).
SUCCESS_CODE = "10000"
#: The ids an answer may carry for a user.
IDENTITY_FIELDS = ("user_id", "open_id", "union_id")


def is_local_gateway(url: str) -> bool:
    """A gateway that cannot be Alipay's: plain http, or this machine (an emulator, say)."""
    parts = urlsplit(url)
    return parts.scheme == "http" or parts.hostname in ("localhost", "127.0.0.1", "::1")


def node_name(method: str) -> str:
    """``alipay.system.oauth.token`` answers in ``alipay_system_oauth_token_response``."""
    return method.replace(".", "_") + "_response"


def wire_charset(name: str | None) -> str | None:
    """The wire name of a charset the gateway accepts, or None."""
    if name is None:
        return None
    return CHARSETS.get(name.strip().lower())


def beijing_timestamp(now: datetime | None = None) -> str:
    """The gateway's timestamp: Beijing time whatever this server's zone is."""
    moment = (now or datetime.now(timezone.utc)).astimezone(BEIJING)
    return moment.strftime(TIMESTAMP_FORMAT)


# Requests ------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedRequest:
    """One gateway call, signed and ready to send: the gateway POSTs ``body`` to ``url``."""

    method: str
    url: str = field(repr=False)
    body: bytes = field(repr=False)
    headers: Mapping[str, str]
    #: The string that was signed; it holds the code or token, so it is never shown raw.
    signed_text: str = field(repr=False)

    @property
    def redacted_text(self) -> str:
        """The string to sign with secrets hidden, to diff against Alipay's 验签字符串."""
        return redact(self.signed_text)


def signed_request(
    cfg: AlipayConfig,
    method: str,
    business: Mapping[str, str],
    *,
    auth_token: str | None = None,
    now: datetime | None = None,
) -> SignedRequest:
    """Common parameters and ``sign`` in the query; business ones and ``auth_token`` in the body.

    No secret travels in the URL, so none reaches a log line that quotes it.
    """
    common = {
        "app_id": cfg.app_id,
        "method": method,
        "format": "JSON",
        "charset": cfg.charset,
        "sign_type": cfg.sign_type,
        "timestamp": beijing_timestamp(now),
        "version": "1.0",
    }
    body = dict(business)
    if auth_token:
        body["auth_token"] = auth_token
    if cfg.app_cert_sn and cfg.alipay_root_cert_sn:
        common["app_cert_sn"] = cfg.app_cert_sn
        common["alipay_root_cert_sn"] = cfg.alipay_root_cert_sn
    text = string_to_sign({**body, **common})
    common["sign"] = sign_text(text, cfg.private_key, cfg.sign_type, cfg.charset)
    separator = "&" if "?" in cfg.gateway_url else "?"
    return SignedRequest(
        method=method,
        url=cfg.gateway_url + separator + urlencode(common, encoding=cfg.charset),
        body=urlencode(body, encoding=cfg.charset).encode("ascii"),
        headers={
            "Content-Type": f"application/x-www-form-urlencoded;charset={cfg.charset}",
            "Accept": "application/json",
        },
        signed_text=text,
    )


# Answers -------------------------------------------------------------------------

#: An SN is an MD5 in hex; anything else in ``alipay_cert_sn`` is never downloaded.
_CERT_SN = re.compile(r"[0-9a-f]{32}")


def parse(cfg: AlipayConfig, method: str, status: int, body: bytes) -> SignedAnswer:
    """Find the signed node of an answer, or raise MalformedAnswer.

    Error answers have been seen in GBK when utf-8 was asked, so an error may be
    read in the other charset; a success answer is read in the asked one or not
    at all, so no stray byte can turn a signed nickname into mojibake.
    """
    if status != 200:
        raise MalformedAnswer(f"The Alipay gateway answered HTTP {status}.")
    try:
        return parse_answer(body, node_name(method), cfg.charset)
    except AnswerFormatError as error:
        problem = error
    try:
        answer = parse_answer(body, node_name(method), _other_charset(cfg.charset))
    except AnswerFormatError:
        answer = None
    if answer is None:
        raise MalformedAnswer(f"The Alipay gateway's answer is malformed: {problem}.")
    if not is_error(answer):
        raise MalformedAnswer(
            f"The Alipay gateway's answer is not {cfg.charset} text, as ALIPAY_CHARSET asks."
        )
    return answer


def _other_charset(charset: str) -> str:
    return "GBK" if charset == "utf-8" else "utf-8"


def is_error(answer: SignedAnswer) -> bool:
    """An ``error_response``, or a business node whose ``code`` is not 10000."""
    data = answer.data
    return answer.node == ERROR_NODE or ("code" in data and str(data["code"]) != SUCCESS_CODE)


def answer_key(
    cfg: AlipayConfig, answer: SignedAnswer, downloaded: Mapping[str, RSAPublicKey] | None = None
) -> RSAPublicKey | None:
    """Alipay's public key, or in certificate mode the certificate the answer names:
    one configured, or one ``downloaded`` since a rotation.

    None only when the site chose ``ALIPAY_VERIFY_ANSWERS = False``.
    """
    if not cfg.verify_answers:
        return None
    if not cfg.cert_mode:
        return cfg.alipay_public_key
    if not answer.cert_sn:
        raise UnverifiedAnswer("Alipay's answer names no alipay_cert_sn.")
    key = cfg.alipay_certs.get(answer.cert_sn) or (downloaded or {}).get(answer.cert_sn)
    if key is None:
        raise CertificateRotated(
            f"Alipay's answer is signed with certificate {answer.cert_sn[:40]}, "
            "which ALIPAY_ALIPAY_CERT does not hold.",
            sn=answer.cert_sn if _CERT_SN.fullmatch(answer.cert_sn) else None,
        )
    return key


def verify(cfg: AlipayConfig, answer: SignedAnswer, key: RSAPublicKey | None) -> SignedAnswer:
    """``answer`` as ``key`` signed it, or UnverifiedAnswer (key None: not verifying).

    When only the ``\\/``-unescaped bytes verify, the answer is read again from
    those bytes: the data must be what was signed, or nothing.
    """
    if key is None:
        if cfg.verify_answers:
            raise UnverifiedAnswer("No key to verify Alipay's answer with.")
        return answer
    if not answer.sign:
        raise UnverifiedAnswer("Alipay's answer is not signed.")
    signed = signed_bytes(answer.content, answer.sign, key, cfg.sign_type)
    if signed is None:
        raise UnverifiedAnswer(
            "Alipay's answer did not verify with ALIPAY_PUBLIC_KEY.",
            local_gateway=is_local_gateway(cfg.gateway_url),
        )
    if signed is answer.content:
        return answer
    try:
        data = read_node(signed, answer.charset, answer.node)
    except AnswerFormatError:
        raise UnverifiedAnswer("The bytes Alipay signed are not the answer's JSON.") from None
    return dataclasses.replace(answer, content=signed, data=data)


def read_answer(
    cfg: AlipayConfig,
    method: str,
    status: int,
    body: bytes,
    downloaded: Mapping[str, RSAPublicKey] | None = None,
) -> dict[str, Any]:
    """A verified answer's node, or the AlipayError it stands for.

    Every success answer is verified; an error answer only when it is signed,
    since Alipay leaves some unsigned.  An error is never returned as data.
    """
    answer = parse(cfg, method, status, body)
    if answer.sign or not is_error(answer):
        answer = verify(cfg, answer, answer_key(cfg, answer, downloaded))
    if is_error(answer):
        raise alipay_error(answer.data)
    return answer.data


def alipay_error(data: Mapping[str, Any]) -> AlipayError:
    """The AlipayRefused for an error node; a spent auth_code is the browser's 400."""
    sub_code = str(data.get("sub_code") or "") or None
    return AlipayRefused(
        code=str(data.get("code") or "") or None,
        sub_code=sub_code,
        sub_msg=str(data.get("sub_msg") or data.get("msg") or "") or None,
        status_code=400 if sub_code == "isv.code-invalid" else 502,
    )


def normalise_token(node: Mapping[str, Any], now: float | None = None) -> dict[str, Any]:
    """The token as we promise it: ints for lifetimes, ``expires_at`` in epoch seconds."""
    access_token = node.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise MalformedAnswer("Alipay's token answer has no access_token.")
    token: dict[str, Any] = {"access_token": access_token, "token_type": "Bearer"}
    refresh_token = node.get("refresh_token")
    if isinstance(refresh_token, str) and refresh_token:
        token["refresh_token"] = refresh_token
    for name in ("expires_in", "re_expires_in"):
        if node.get(name) is not None:
            token[name] = _seconds(node[name], name)
    if "expires_in" in token:
        token["expires_at"] = int(time.time() if now is None else now) + token["expires_in"]
    for name in (*IDENTITY_FIELDS, "auth_start"):
        value = node.get(name)
        if isinstance(value, (str, int)) and str(value):
            token[name] = str(value)
    return token


def _seconds(value: Any, name: str) -> int:
    # Documented as strings, usually sent as numbers: accept both.
    try:
        seconds = int(str(value).strip())
    except ValueError:
        raise MalformedAnswer(f"Alipay's token answer has a bad {name}.") from None
    if seconds < 0:
        raise MalformedAnswer(f"Alipay's token answer has a bad {name}.")
    return seconds
