"""AlipayError and friends, and the sub_code catalogue with human fixes.

Alipay's sub_codes are terse and its console is in Chinese, so every error
carries a ``hint`` that says what to change, in English with the Chinese term
the user will see in the console.
"""

from __future__ import annotations

import re

__all__ = [
    "HINTS",
    "REASON_HINTS",
    "AlipayConfigError",
    "AlipayError",
    "redact",
]

#: sub_code -> what it means and what to do (ALIPAY.md §8).
HINTS: dict[str, str] = {
    "isv.code-invalid": (
        "The auth_code (授权码) is wrong, already used, expired, or was issued to "
        "another APPID. Start the sign-in again; a code can be exchanged only once."
    ),
    "isv.invalid-signature": (
        "Alipay could not verify our request signature (验签出错). The app private "
        "key does not match the app public key (应用公钥) uploaded in the Alipay "
        "console, or the string to sign differs: compare the gateway's "
        "验签字符串 in sub_msg with ours, logged at DEBUG by flask_alipay."
    ),
    "isv.invalid-app-id": (
        "The APPID is wrong, the app is not online (未上线), or a sandbox (沙箱) "
        "APPID is used against production or the reverse. Check ALIPAY_APP_ID "
        "and ALIPAY_SANDBOX."
    ),
    "isv.missing-signature-config": (
        "No app public key (应用公钥) is uploaded for this sign_type. Set the "
        "接口加签方式 (公钥 mode) in the console, or change ALIPAY_SIGN_TYPE."
    ),
    "isv.invalid-timestamp": (
        "The gateway refused the timestamp (时间戳). flask_alipay sends Beijing time "
        "(UTC+8); check that this server's clock is right."
    ),
    "isv.invalid-charset": (
        "The gateway refused the charset (字符集). Set ALIPAY_CHARSET to utf8 or gbk."
    ),
    "isv.insufficient-isv-permissions": (
        "The 获取会员信息 (Get member information) product is not added or signed, "
        "or the app is not online. Add and sign it in the console, or set "
        "ALIPAY_SCOPE to auth_base."
    ),
    "aop.invalid-auth-token": (
        "The access token (访问令牌) is wrong, expired, or came from an auth_base "
        "sign-in, which cannot read the profile. Sign in again."
    ),
    "aop.auth-token-time-out": (
        "The access token (访问令牌) has expired. Refresh it with the refresh "
        "token, or sign in again."
    ),
    "isv.refresh-token-invalid": (
        "The refresh token (刷新令牌) is wrong or already used. Sign in again."
    ),
    "isv.refresh-token-time-out": ("The refresh token (刷新令牌) has expired. Sign in again."),
    "isv.app-cert-not-exist": (
        "Certificate mode (公钥证书): app_cert_sn does not match the app "
        "certificate Alipay holds. Download appCertPublicKey_<APPID>.crt again."
    ),
    "invalid-alipay-root-cert-sn": (
        "Certificate mode (公钥证书): alipay_root_cert_sn is wrong. Download "
        "alipayRootCert.crt again from the console."
    ),
    "isp.unknow-error": "Alipay is busy (系统繁忙). Try again later.",
    "aop.unknow-error": "Alipay is busy (系统繁忙). Try again later.",
}

#: Our own failure reasons (no sub_code) -> what to do.
REASON_HINTS: dict[str, str] = {
    "state": (
        "The sign-in link expired or was already used (state mismatch). Start "
        "the sign-in again from this site."
    ),
    "cancelled": (
        "Alipay returned without an auth_code: the sign-in was cancelled or "
        "refused. Start it again if you want to sign in."
    ),
    "app_id": (
        "The callback names another APPID than ALIPAY_APP_ID. Check that the "
        "授权回调地址 in the console belongs to this app."
    ),
    "signature": (
        "Alipay's answer did not verify. ALIPAY_PUBLIC_KEY must be Alipay's "
        "public key (支付宝公钥) from the console, not your app public key."
    ),
    "cert_rotated": (
        "Alipay rotated its certificate (支付宝公钥证书): download the new "
        "alipayCertPublicKey_RSA2.crt from the console and update ALIPAY_ALIPAY_CERT."
    ),
    "malformed": "Alipay's answer was not in the expected shape. Try again later.",
    "unreachable": (
        "The Alipay gateway could not be reached. Check ALIPAY_GATEWAY_URL and "
        "this server's outbound network."
    ),
    "timeout": (
        "The Alipay gateway did not answer within ALIPAY_TIMEOUT seconds. Try again later."
    ),
}

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

    ``status_code`` is the HTTP status the callback answers with: 400 for a bad
    callback or a spent auth_code, 502 for Alipay errors and answers that do not
    verify, 504 for a timeout.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str = "alipay",
        code: str | None = None,
        sub_code: str | None = None,
        sub_msg: str | None = None,
        status_code: int = 502,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.code = code
        self.sub_code = sub_code
        self.sub_msg = redact(sub_msg) if sub_msg else sub_msg
        self.status_code = status_code

    @property
    def hint(self) -> str:
        """A human fix: the sub_code's, else our reason's, else a generic one."""
        if self.sub_code and self.sub_code in HINTS:
            return HINTS[self.sub_code]
        if self.reason in REASON_HINTS:
            return REASON_HINTS[self.reason]
        if self.sub_code:
            return f"Alipay answered {self.sub_code}; see its sub_msg for details."
        return "Try again later."

    def __str__(self) -> str:
        if self.sub_code:
            return f"{self.message} ({self.sub_code}: {self.sub_msg or ''})"
        return self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, reason={self.reason!r}, "
            f"sub_code={self.sub_code!r}, status_code={self.status_code})"
        )


class AlipayConfigError(ValueError):
    """A missing or invalid ALIPAY_* setting, raised from ``init_app``.

    The message names the key and the fix, and never quotes key material.
    """
