"""The ALIPAY_* keys, their defaults, and validation whose errors name the key.

Configuration is read and keys are parsed once, at ``init_app``: parsing a
2048-bit private key costs about 40 ms, signing with a parsed one 0.4 ms.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from .certs import CertificateError, leaf_certificates, root_cert_sn
from .errors import AlipayConfigError
from .keys import KeyFormatError, load_private_key, load_public_key, same_public_key
from .redirects import safe_next

__all__ = ["ENDPOINTS", "AlipayConfig", "inspect_config", "load_config"]

log = logging.getLogger("flask_alipay")

T = TypeVar("T")

#: (authorize page, gateway) for production and sandbox (ALIPAY.md §2).
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

SIGN_TYPE = "RSA2"
CHARSET = "utf8"
SCOPE = "auth_user"
TIMEOUT = 10.0

#: Config spellings -> the charset names the gateway expects on the wire.
_WIRE_CHARSETS = {"utf8": "utf-8", "utf-8": "utf-8", "gbk": "GBK"}
_SCOPES = ("auth_user", "auth_base")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


@dataclass(frozen=True)
class AlipayConfig:
    """One Alipay app's settings, validated, with its keys parsed."""

    app_id: str
    private_key: RSAPrivateKey
    alipay_public_key: RSAPublicKey | None
    sign_type: str
    charset: str
    scope: str
    sandbox: bool
    authorize_url: str
    gateway_url: str
    redirect_uri: str | None
    url_prefix: str
    default_next: str
    timeout: float
    #: Certificate mode (公钥证书): our SNs, and Alipay's certificate keys by SN.
    app_cert_sn: str | None = None
    alipay_root_cert_sn: str | None = None
    alipay_certs: Mapping[str, RSAPublicKey] = field(default_factory=dict)

    @property
    def cert_mode(self) -> bool:
        return self.app_cert_sn is not None

    def __repr__(self) -> str:
        # Never let a key object's repr near a log line.
        return (
            f"AlipayConfig(app_id={self.app_id!r}, sign_type={self.sign_type!r}, "
            f"charset={self.charset!r}, scope={self.scope!r}, "
            f"gateway_url={self.gateway_url!r})"
        )


class _Reader:
    """Reads prefixed keys so error messages name exactly what the user set."""

    def __init__(self, config: Mapping[str, Any], prefix: str) -> None:
        self.config = config
        self.prefix = prefix

    def name(self, key: str) -> str:
        return self.prefix + key

    def get(self, key: str, default: Any = None) -> Any:
        value = self.config.get(self.name(key), default)
        return default if value is None else value

    def fail(self, key: str, problem: str) -> AlipayConfigError:
        return AlipayConfigError(f"{self.name(key)} {problem}")


def load_config(config: Mapping[str, Any], prefix: str = "ALIPAY_") -> AlipayConfig:
    """Validate every ALIPAY_* key and parse the keys; raise AlipayConfigError."""
    loaded, errors = inspect_config(config, prefix)
    if loaded is None:
        raise errors[0]
    if loaded.alipay_public_key is None and not loaded.cert_mode:
        log.warning(
            "%s is not set: answers from Alipay cannot be verified. Paste "
            "Alipay's public key (支付宝公钥) from the console.",
            prefix + "PUBLIC_KEY",
        )
    return loaded


def inspect_config(
    config: Mapping[str, Any], prefix: str = "ALIPAY_"
) -> tuple[AlipayConfig | None, list[AlipayConfigError]]:
    """Every problem at once, for ``flask alipay check``: (config or None, errors)."""
    r = _Reader(config, prefix)
    errors: list[AlipayConfigError] = []

    def attempt(read: Callable[[], T], fallback: T) -> T:
        try:
            return read()
        except AlipayConfigError as error:
            errors.append(error)
            return fallback

    app_id = attempt(lambda: _app_id(r), "")
    private_key = attempt(lambda: _private_key(r), None)
    certificates = attempt(lambda: _certificates(r, private_key), None)
    public_key = None if certificates else attempt(lambda: _alipay_public_key(r, private_key), None)
    sandbox = attempt(lambda: _flag(r, "SANDBOX"), False)
    authorize_default, gateway_default = ENDPOINTS[sandbox]
    sign_type = attempt(
        lambda: _choice(r, "SIGN_TYPE", SIGN_TYPE, {"RSA2": "RSA2", "RSA": "RSA"}), SIGN_TYPE
    )
    charset = attempt(lambda: _choice(r, "CHARSET", CHARSET, _WIRE_CHARSETS), "utf-8")
    scope = attempt(lambda: _choice(r, "SCOPE", SCOPE, {s: s for s in _SCOPES}), SCOPE)
    authorize_url = attempt(lambda: _url(r, "AUTHORIZE_URL", authorize_default), None)
    gateway_url = attempt(lambda: _url(r, "GATEWAY_URL", gateway_default), None)
    redirect_uri = attempt(lambda: _url(r, "REDIRECT_URI", None), None)
    url_prefix = attempt(lambda: _url_prefix(r), "")
    default_next = attempt(lambda: _default_next(r), "/")
    timeout = attempt(lambda: _timeout(r), TIMEOUT)
    if errors or private_key is None:
        return None, errors
    loaded = AlipayConfig(
        app_id=app_id,
        private_key=private_key,
        alipay_public_key=public_key,
        sign_type=sign_type,
        charset=charset,
        scope=scope,
        sandbox=sandbox,
        authorize_url=authorize_url or authorize_default,
        gateway_url=gateway_url or gateway_default,
        redirect_uri=redirect_uri,
        url_prefix=url_prefix,
        default_next=default_next,
        timeout=timeout,
        **(certificates or {}),
    )
    return loaded, []


def _app_id(r: _Reader) -> str:
    value = r.get("APP_ID")
    if value is None or str(value).strip() == "":
        raise r.fail(
            "APP_ID",
            "is required: set it to the APPID shown for your web app in the "
            "Alipay open platform console (开放平台控制台).",
        )
    text = str(value).strip()
    if any(c.isspace() for c in text):
        raise r.fail("APP_ID", "must not contain spaces.")
    return text


def _text_or_file(r: _Reader, key: str) -> tuple[str, str] | None:
    """(the key that was set, its text) for KEY or KEY_FILE, refusing both."""
    text = r.get(key)
    path = r.get(key + "_FILE")
    if text and path:
        raise r.fail(key, f"and {r.name(key + '_FILE')} are both set: keep only one.")
    if path:
        try:
            with open(os.fspath(path), "rb") as handle:
                return key + "_FILE", handle.read().decode("ascii", "replace")
        except OSError as error:
            raise r.fail(
                key + "_FILE",
                f"names a file that cannot be read ({error.strerror}): {path}",
            ) from None
    if text:
        if isinstance(text, bytes):
            text = text.decode("ascii", "replace")
        return key, str(text)
    return None


def _private_key(r: _Reader) -> RSAPrivateKey:
    found = _text_or_file(r, "PRIVATE_KEY")
    if found is None:
        raise r.fail(
            "PRIVATE_KEY",
            f"(or {r.name('PRIVATE_KEY_FILE')}) is required: set it to your app "
            "private key (应用私钥), PEM or the one-line base64 from Alipay's key "
            "tool. `flask alipay keygen` makes one.",
        )
    key_name, text = found
    try:
        return load_private_key(text)
    except KeyFormatError as error:
        raise r.fail(
            key_name,
            f"is not a usable RSA private key: {error}. Use PEM (PKCS#1 or "
            "PKCS#8) or the bare base64 body.",
        ) from None


def _alipay_public_key(r: _Reader, private_key: RSAPrivateKey | None) -> RSAPublicKey | None:
    found = _text_or_file(r, "PUBLIC_KEY")
    if found is None:
        return None
    key_name, text = found
    try:
        key = load_public_key(text)
    except KeyFormatError as error:
        raise r.fail(
            key_name,
            f"is not a usable RSA public key: {error}. Paste Alipay's public key "
            "(支付宝公钥) from the console.",
        ) from None
    if private_key is not None and same_public_key(key, private_key.public_key()):
        raise r.fail(
            key_name,
            "is your app public key (应用公钥), the public half of "
            f"{r.name('PRIVATE_KEY')}: paste Alipay's public key (支付宝公钥) "
            "from the console instead.",
        )
    return key


_CERT_KEYS = ("APP_CERT", "ALIPAY_CERT", "ROOT_CERT")
_CERT_FILES = {
    "APP_CERT": "appCertPublicKey_<APPID>.crt",
    "ALIPAY_CERT": "alipayCertPublicKey_RSA2.crt",
    "ROOT_CERT": "alipayRootCert.crt",
}


def _certificates(r: _Reader, private_key: RSAPrivateKey | None) -> dict[str, Any] | None:
    """Certificate mode, switched on by any of the three certificate keys."""
    texts = {key: _cert_text(r, key) for key in _CERT_KEYS}
    if not any(texts.values()):
        return None
    present = {key: text for key, text in texts.items() if text}
    for key in _CERT_KEYS:
        if key not in present:
            raise r.fail(
                key,
                f"is required in certificate mode (公钥证书): set it to the path or PEM "
                f"text of {_CERT_FILES[key]} from the Alipay console.",
            )
    try:
        app_leaf = leaf_certificates(present["APP_CERT"])[0]
    except CertificateError as error:
        raise r.fail("APP_CERT", f"is not a usable certificate: {error}.") from None
    if private_key is not None and not same_public_key(
        app_leaf.public_key, private_key.public_key()
    ):
        raise r.fail(
            "APP_CERT",
            f"does not carry the public half of {r.name('PRIVATE_KEY')}: use the "
            "appCertPublicKey_<APPID>.crt issued for this private key.",
        )
    try:
        alipay_leaves = leaf_certificates(present["ALIPAY_CERT"])
    except CertificateError as error:
        raise r.fail("ALIPAY_CERT", f"is not a usable certificate: {error}.") from None
    try:
        root_sn = root_cert_sn(present["ROOT_CERT"])
    except CertificateError as error:
        raise r.fail("ROOT_CERT", f"is not a usable certificate bundle: {error}.") from None
    return {
        "app_cert_sn": app_leaf.sn,
        "alipay_root_cert_sn": root_sn,
        "alipay_certs": {leaf.sn: leaf.public_key for leaf in alipay_leaves},
    }


def _cert_text(r: _Reader, key: str) -> str | None:
    """A certificate setting is a path or the PEM text itself."""
    value = r.get(key)
    if not value:
        return None
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
    if "-----BEGIN" in text:
        return text
    try:
        with open(os.fspath(text.strip()), "rb") as handle:
            return handle.read().decode("ascii", "replace")
    except OSError as error:
        raise r.fail(key, f"names a file that cannot be read ({error.strerror}): {text}") from None


def _choice(r: _Reader, key: str, default: str, allowed: Mapping[str, str]) -> str:
    value = str(r.get(key, default)).strip()
    for spelling, normalised in allowed.items():
        if value.lower() == spelling.lower():
            return normalised
    names = ", ".join(dict.fromkeys(allowed))
    raise r.fail(key, f"must be one of {names}; got {value[:40]!r}.")


def _flag(r: _Reader, key: str) -> bool:
    value = r.get(key, False)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise r.fail(key, f"must be true or false; got {str(value)[:40]!r}.")


def _url(r: _Reader, key: str, default: str | None) -> str | None:
    value = r.get(key, default)
    if value is None or value == "":
        return default
    text = str(value).strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise r.fail(key, f"must be an absolute http(s) URL; got {text[:80]!r}.")
    return text


def _url_prefix(r: _Reader) -> str:
    default = "/" + r.prefix.rstrip("_").lower()
    value = str(r.get("URL_PREFIX", default)).strip()
    if not value.startswith("/"):
        raise r.fail("URL_PREFIX", f"must start with '/'; got {value[:40]!r}.")
    return value.rstrip("/") or ""


def _default_next(r: _Reader) -> str:
    value = str(r.get("DEFAULT_NEXT", "/")).strip()
    if safe_next(value) is None:
        raise r.fail(
            "DEFAULT_NEXT", f"must be a path on this site such as '/'; got {value[:80]!r}."
        )
    return value


def _timeout(r: _Reader) -> float:
    value = r.get("TIMEOUT", TIMEOUT)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 < seconds <= 300:
        raise r.fail("TIMEOUT", f"must be a number of seconds in (0, 300]; got {value!r}.")
    return seconds
