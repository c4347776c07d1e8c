"""Alipay's sub_codes in words: what each means and what to change.

Alipay's sub_codes are terse and its console is in Chinese, so each hint says
what to do, in English with the Chinese term the user will see in the console.
The list follows docs/protocol.md §8.
"""

from __future__ import annotations

__all__ = ["HINTS"]

#: sub_code -> what it means and what to do (docs/protocol.md §8).
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
    "isv.missing-encrypt-key": (
        "The app has no 接口内容加密 (AES) key in the console: set one under 开发设置 › "
        "接口内容加密方式, and put the same key in ALIPAY_AES_KEY."
    ),
    "isp.unknow-error": "Alipay is busy (系统繁忙). Try again later.",
    "aop.unknow-error": "Alipay is busy (系统繁忙). Try again later.",
}
