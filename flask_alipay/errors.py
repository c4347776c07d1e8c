"""What can go wrong, one class per kind, each with its HTTP status and a human fix.

Alipay's sub_codes are terse and its console is in Chinese, so every error
carries a ``hint`` that says what to change, in English with the Chinese term
the user will see in the console.  ``reason`` names the kind as a short string
for logs and for code written before the classes existed.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from .hints import HINTS

__all__ = [
    "HINTS",
    "REASON_HINTS",
    "AlipayConfigError",
    "AlipayError",
    "AlipayRefused",
    "AppIdMismatch",
    "CertificateRotated",
    "GatewayTimedOut",
    "GatewayUnreachable",
    "InvalidState",
    "MalformedAnswer",
    "MissingUserId",
    "SignInCancelled",
    "UnverifiedAnswer",
    "error_class",
    "redact",
]

# Values that must never reach a log line or a page.  Alipay's own
# isv.invalid-signature sub_msg quotes the string to sign, code included.
_SECRET_VALUE = re.compile(
    r"(?P<name>\b(?:auth_code|code|auth_token|access_token|refresh_token|sign)"
    r"[\"']?\s*[=:]\s*[\"']?)[^&\s\"',}]+"
)


def redact(text: str) -> str:
    """Hide secret-looking ``name=value`` pairs in text that came from outside."""
    return _SECRET_VALUE.sub(r"\g<name>***", text)


class AlipayError(Exception):
    """A sign-in or gateway call that failed; safe to log and to show.

    Catch this to handle every failure, or one subclass for one kind.  Each
    kind has its ``status_code`` (what the callback answers), its ``reason``
    and its ``default_hint``; the constructor can override any of them.
    """

    #: The HTTP status a view answers with for this kind of failure.
    default_status: ClassVar[int] = 502
    #: A short name for the kind, for logs and older code.
    default_reason: ClassVar[str] = "alipay"
    #: The fix for this kind when Alipay gave no sub_code we know.
    default_hint: ClassVar[str] = "Try again later."
    #: The message when the raiser gives none.
    default_message: ClassVar[str] = "Sign-in with Alipay failed."
    #: What the error page tells the person signing in, in Chinese and English: what
    #: happened and what to do, without jargon or setting names (those are for the log).
    default_user_message: ClassVar[tuple[str, str]] = (
        "出了点问题，请稍后再试。",
        "Something went wrong. Please try again later.",
    )

    def __init__(
        self,
        message: str | None = None,
        *,
        reason: str | None = None,
        code: str | None = None,
        sub_code: str | None = None,
        sub_msg: str | None = None,
        status_code: int | None = None,
    ) -> None:
        message = message or self.default_message
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.code = code
        self.sub_code = sub_code
        self.sub_msg = redact(sub_msg) if sub_msg else sub_msg
        self.status_code = status_code or self.default_status

    @property
    def hint(self) -> str:
        """A human fix: the sub_code's, else this kind's."""
        if self.sub_code:
            return HINTS.get(
                self.sub_code, f"Alipay answered {self.sub_code}; see its sub_msg for details."
            )
        if type(self) is AlipayError:
            return REASON_HINTS.get(self.reason, self.default_hint)
        return self.default_hint

    @property
    def user_message(self) -> tuple[str, str]:
        """(Chinese, English) for the person signing in; details go to the log instead."""
        return self.default_user_message

    def __str__(self) -> str:
        if self.sub_code:
            return f"{self.message} ({self.sub_code}: {self.sub_msg or ''})"
        return self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, reason={self.reason!r}, "
            f"sub_code={self.sub_code!r}, status_code={self.status_code})"
        )


class InvalidState(AlipayError):
    """The callback's ``state`` is missing, unknown, expired or already used.

    ``case`` says which, so the log tells a lost cookie from a replay:
    ``no_pending`` (this session holds no pending sign-in at all), ``unknown``,
    ``expired`` or ``used``.
    """

    default_status = 400
    default_user_message = (
        "这个登录链接已过期或已经用过，请重新登录。",
        "This sign-in link has expired or was already used. Please sign in again.",
    )
    default_reason = "state"
    default_hint = (
        "The sign-in link expired or was already used (state mismatch). Start "
        "the sign-in again from this site."
    )
    #: case -> (message, hint)
    CASES: ClassVar[dict[str, tuple[str, str]]] = {
        "no_pending": (
            "This browser session holds no pending sign-in.",
            "The session cookie did not come back with Alipay's redirect: the sign-in "
            "started on another host name, SESSION_COOKIE_SAMESITE is 'Strict' (use 'Lax'), "
            "or the hosts or workers do not share one SECRET_KEY. Start the sign-in again.",
        ),
        "unknown": (
            "This sign-in link was not started in this browser session.",
            "Start the sign-in again from this site.",
        ),
        "expired": (
            "This sign-in link has expired.",
            "A sign-in must finish within 10 minutes. Start it again from this site.",
        ),
        "used": (
            "This sign-in link was already used.",
            "Each sign-in link works once; the browser may have sent it twice. Start the "
            "sign-in again from this site.",
        ),
    }

    def __init__(self, message: str | None = None, *, case: str = "unknown", **kwargs: Any) -> None:
        self.case = case if case in self.CASES else "unknown"
        super().__init__(message or self.CASES[self.case][0], **kwargs)

    @property
    def hint(self) -> str:
        return self.CASES[self.case][1]


class SignInCancelled(AlipayError):
    """The callback came back without an ``auth_code``."""

    default_status = 400
    default_user_message = (
        "支付宝登录已取消或没有完成；如需登录，请再试一次。",
        "Signing in with Alipay was cancelled or did not finish. To sign in, please try again.",
    )
    default_reason = "cancelled"
    default_hint = (
        "Alipay returned without an auth_code: the sign-in was cancelled or "
        "refused. Start it again if you want to sign in."
    )


class AppIdMismatch(AlipayError):
    """The callback names another APPID than ours."""

    default_status = 400
    default_user_message = (
        "这次登录不是从本网站发起的，请在本网站重新登录。",
        "This sign-in was not started on this site. Please sign in again from here.",
    )
    default_reason = "app_id"
    default_hint = (
        "The callback names another APPID than ALIPAY_APP_ID. Check that the "
        "授权回调地址 in the console belongs to this app."
    )


class AlipayRefused(AlipayError):
    """Alipay answered with an error (``sub_code`` says which).

    A spent or wrong ``auth_code`` (``isv.code-invalid``) is the browser's
    problem and answers 400; every other refusal is 502.
    """

    default_status = 502
    default_reason = "alipay"
    default_message = "Alipay refused the request."
    default_user_message = (
        "支付宝没能完成这次登录，请稍后再试；如果一直这样，请联系本网站。",
        "Alipay could not complete this sign-in. Please try again later; if it keeps "
        "happening, please tell this site's team.",
    )

    @property
    def user_message(self) -> tuple[str, str]:
        if self.sub_code == "isv.code-invalid":
            return (
                "这次登录已过期，请重新登录。",
                "This sign-in has expired. Please sign in again.",
            )
        if self.sub_code in ("isp.unknow-error", "aop.unknow-error"):
            return ("支付宝正忙，请稍后再试。", "Alipay is busy. Please try again in a moment.")
        return self.default_user_message


class UnverifiedAnswer(AlipayError):
    """An answer whose signature is missing or does not verify."""

    default_user_message = (
        "这次登录没能完成，请稍后再试。",
        "We could not finish signing you in with Alipay. Please try again later.",
    )
    default_reason = "signature"
    default_hint = (
        "Alipay's answer did not verify. ALIPAY_PUBLIC_KEY must be Alipay's "
        "public key (支付宝公钥) from the console, not your app public key."
    )
    #: Added when the gateway is local: an emulator makes a new key at every start.
    EMULATOR_HINT: ClassVar[str] = (
        " The gateway is local, so this is likely an emulator that restarted with a new "
        "key pair: copy the ALIPAY_PUBLIC_KEY it printed, or start it with "
        "`flask alipay emulator --keys DIR` to keep one key pair across restarts."
    )

    def __init__(
        self, message: str | None = None, *, local_gateway: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        #: The answer came from an http or loopback gateway (an emulator, usually).
        self.local_gateway = local_gateway

    @property
    def hint(self) -> str:
        hint = super().hint
        return hint + self.EMULATOR_HINT if self.local_gateway else hint


class CertificateRotated(UnverifiedAnswer):
    """Certificate mode: the answer names an Alipay certificate we do not hold."""

    default_reason = "cert_rotated"
    default_hint = (
        "Alipay rotated its certificate (支付宝公钥证书): download the new "
        "alipayCertPublicKey_RSA2.crt from the console and update ALIPAY_ALIPAY_CERT."
    )

    def __init__(self, message: str | None = None, *, sn: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        #: The SN the answer named, which flask_alipay tries to download once.
        self.sn = sn

    @property
    def hint(self) -> str:
        # A refused download's sub_code is in the message; the fix is still the file.
        return self.default_hint


class MalformedAnswer(AlipayError):
    """An answer that is not in the shape Alipay signs: HTML, truncated, too large."""

    default_user_message = (
        "这次登录没能完成，请稍后再试。",
        "We could not finish signing you in with Alipay. Please try again later.",
    )
    default_reason = "malformed"
    default_hint = "Alipay's answer was not in the expected shape. Try again later."


class MissingUserId(MalformedAnswer):
    """Alipay's answer lacks the id ``ALIPAY_ID_FIELD`` names.

    Alipay moves apps from ``user_id`` to ``open_id`` in stages, so the id an
    app is keyed on can stop coming: that is a setting to change, never a
    reason to key the user on the other id.
    """

    default_reason = "id_field"
    default_message = "Alipay's answer does not carry the user id this site is keyed on."
    default_hint = (
        "Alipay did not send the id ALIPAY_ID_FIELD names. Alipay is moving apps from "
        "user_id to open_id: check which one the console sends under 开发设置 › "
        "openid配置管理, and set ALIPAY_ID_FIELD to it (docs/openid-migration.md)."
    )

    def __init__(
        self, message: str | None = None, *, setting: str = "ALIPAY_ID_FIELD", **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.setting = setting

    @property
    def hint(self) -> str:
        return self.default_hint.replace("ALIPAY_ID_FIELD", self.setting)


class GatewayUnreachable(AlipayError):
    """The gateway could not be reached at all."""

    default_user_message = (
        "暂时连不上支付宝，请稍后再试。",
        "We cannot reach Alipay right now. Please try again later.",
    )
    default_reason = "unreachable"
    default_hint = (
        "The Alipay gateway could not be reached. Check ALIPAY_GATEWAY_URL and "
        "this server's outbound network."
    )


class GatewayTimedOut(AlipayError):
    """The gateway did not answer within ``ALIPAY_TIMEOUT``."""

    default_status = 504
    default_user_message = (
        "支付宝响应太慢，请稍后再试。",
        "Alipay took too long to answer. Please try again in a moment.",
    )
    default_reason = "timeout"
    default_hint = (
        "The Alipay gateway did not answer within ALIPAY_TIMEOUT seconds. Try again later."
    )


_KINDS: tuple[type[AlipayError], ...] = (
    InvalidState,
    SignInCancelled,
    AppIdMismatch,
    UnverifiedAnswer,
    CertificateRotated,
    MalformedAnswer,
    MissingUserId,
    GatewayUnreachable,
    GatewayTimedOut,
)

#: reason -> its fix, for every kind that has one of its own.
REASON_HINTS: dict[str, str] = {kind.default_reason: kind.default_hint for kind in _KINDS}


def error_class(reason: str) -> type[AlipayError]:
    """The class for a ``reason`` string, so code that knows only reasons gets the kind."""
    for kind in _KINDS:
        if kind.default_reason == reason:
            return kind
    return AlipayRefused if reason == "alipay" else AlipayError


class AlipayConfigError(ValueError):
    """A missing or invalid ALIPAY_* setting, raised from ``init_app``.

    The message names the key and the fix, and never quotes key material.
    """
