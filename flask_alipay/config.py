"""The ALIPAY_* settings as one table, read and checked once, with errors that name the key.

``SETTINGS`` lists every key with its default, its parser and one line of
documentation.  ``init_app`` validation, ``flask alipay check`` and the table
in ``docs/configuration.md`` all come from it.  Keys are parsed once, at
``init_app``: loading a 2048-bit private key costs about 40 ms, signing with a
loaded one 0.4 ms.

Key and certificate settings follow one rule: ``X`` holds the text itself and
``X_FILE`` the path of a file holding it; setting both is an error.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from .certs import CertificateError, leaf_certificates, root_cert_sn
from .errors import AlipayConfigError
from .keys import KeyFormatError, load_private_key, load_public_key, same_public_key
from .protocol import CHARSETS, ENDPOINTS, SCOPES, SIGN_TYPES
from .redirects import safe_next

__all__ = [
    "ENDPOINTS",
    "REQUIRED",
    "SETTINGS",
    "AlipayConfig",
    "Setting",
    "inspect_config",
    "load_config",
    "markdown_table",
]

log = logging.getLogger("flask_alipay")


class _Required:
    def __repr__(self) -> str:
        return "required"


#: The default of a setting that must be set.
REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Setting:
    """One ALIPAY_* key: its name without the prefix, default, parser and meaning."""

    key: str
    default: Any
    #: Turns the raw value into the setting; raises ValueError with the problem.
    parse: Callable[[Any], Any]
    doc: str
    #: The default as the docs show it, when ``repr`` would not say it well.
    shown: str | None = None
    #: Also read from ``<key>_FILE``, a path (key and certificate material).
    material: bool = False
    #: The Logto connector's name for it, for people moving from Logto.
    logto: str | None = None
    #: The problem when a required setting is missing, after its key.
    missing: str | None = None


# Parsers: each takes the raw value and raises ValueError(problem) --------------------


def _text(value: Any) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)


def _app_id(value: Any) -> str:
    text = _text(value).strip()
    if not text:
        raise ValueError(
            "is required: set it to the APPID shown for your web app in the "
            "Alipay open platform console (开放平台控制台)."
        )
    if any(c.isspace() for c in text):
        raise ValueError("must not contain spaces.")
    return text


def _private_key(value: Any) -> RSAPrivateKey:
    try:
        return load_private_key(_text(value))
    except KeyFormatError as error:
        raise ValueError(
            f"is not a usable RSA private key: {error}. Use PEM (PKCS#1 or "
            "PKCS#8) or the bare base64 body."
        ) from None


def _public_key(value: Any) -> RSAPublicKey:
    try:
        return load_public_key(_text(value))
    except KeyFormatError as error:
        raise ValueError(
            f"is not a usable RSA public key: {error}. Paste Alipay's public key "
            "(支付宝公钥) from the console."
        ) from None


def _pem(value: Any) -> str:
    text = _text(value)
    if "-----BEGIN" not in text:
        raise ValueError("takes the certificate's PEM text; for a path, set {key}_FILE instead.")
    return text


def _choice(allowed: Mapping[str, str]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = _text(value).strip()
        for spelling, normalised in allowed.items():
            if text.lower() == spelling.lower():
                return normalised
        names = ", ".join(dict.fromkeys(allowed))
        raise ValueError(f"must be one of {names}; got {text[:40]!r}.")

    return parse


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = _text(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"must be true or false; got {_text(value)[:40]!r}.")


def _url(value: Any) -> str | None:
    text = _text(value).strip()
    if not text:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an absolute http(s) URL; got {text[:80]!r}.")
    return text


def _url_prefix(value: Any) -> str:
    text = _text(value).strip()
    if not text.startswith("/"):
        raise ValueError(f"must start with '/'; got {text[:40]!r}.")
    return text.rstrip("/") or ""


def _default_next(value: Any) -> str:
    text = _text(value).strip()
    if safe_next(text) is None:
        raise ValueError(f"must be a path on this site such as '/'; got {text[:80]!r}.")
    return text


def _timeout(value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 < seconds <= 300:
        raise ValueError(f"must be a number of seconds in (0, 300]; got {value!r}.")
    return seconds


_CERT_FILES = {
    "APP_CERT": "appCertPublicKey_<APPID>.crt",
    "ALIPAY_CERT": "alipayCertPublicKey_RSA2.crt",
    "ROOT_CERT": "alipayRootCert.crt",
}

#: Every setting, in the order the docs list them.
SETTINGS: tuple[Setting, ...] = (
    Setting(
        "APP_ID",
        REQUIRED,
        _app_id,
        "the APPID of your web app (网页应用)",
        logto="appId",
        missing="is required: set it to the APPID shown for your web app in the Alipay "
        "open platform console (开放平台控制台).",
    ),
    Setting(
        "PRIVATE_KEY",
        REQUIRED,
        _private_key,
        "your app private key (应用私钥): PEM (PKCS#1 or PKCS#8, real newlines or literal "
        "`\\n`) or the bare one-line base64 from Alipay's key tool",
        material=True,
        logto="privateKey",
        missing="(or {prefix}PRIVATE_KEY_FILE) is required: set it to your app private key "
        "(应用私钥), PEM or the one-line base64 from Alipay's key tool. `flask alipay keygen` "
        "makes one.",
    ),
    Setting(
        "PUBLIC_KEY",
        None,
        _public_key,
        "Alipay's public key (支付宝公钥) from the console, PEM or one-line base64; "
        "verifies every answer",
        shown="none",
        material=True,
    ),
    Setting(
        "APP_CERT",
        None,
        _pem,
        "certificate mode: your app certificate, `appCertPublicKey_<APPID>.crt`",
        shown="none",
        material=True,
    ),
    Setting(
        "ALIPAY_CERT",
        None,
        _pem,
        "certificate mode: Alipay's certificate, `alipayCertPublicKey_RSA2.crt`",
        shown="none",
        material=True,
    ),
    Setting(
        "ROOT_CERT",
        None,
        _pem,
        "certificate mode: Alipay's root bundle, `alipayRootCert.crt`",
        shown="none",
        material=True,
    ),
    Setting(
        "SIGN_TYPE",
        "RSA2",
        _choice({name: name for name in SIGN_TYPES}),
        "`RSA2` (SHA256withRSA) or `RSA` (SHA1withRSA, not advised)",
        logto="signType",
    ),
    Setting(
        "CHARSET",
        "utf8",
        _choice(CHARSETS),
        "`utf8` or `gbk` (`utf-8` and `GBK` too); the wire says `utf-8` or `GBK`",
        logto="charset",
    ),
    Setting(
        "SCOPE",
        "auth_user",
        _choice({scope: scope for scope in SCOPES}),
        "`auth_user` (consent page and profile) or `auth_base` (silent, ids only)",
        logto="scope",
    ),
    Setting(
        "SANDBOX",
        False,
        _flag,
        "use the sandbox (沙箱) endpoints; a bool, or `1`/`0`, `true`/`false`, `yes`/`no`",
    ),
    Setting(
        "AUTHORIZE_URL",
        None,
        _url,
        "the authorize page, an absolute http(s) URL (the emulator, a proxy)",
        shown="from `{prefix}SANDBOX`",
    ),
    Setting(
        "GATEWAY_URL",
        None,
        _url,
        "the gateway, an absolute http(s) URL (the emulator, a proxy)",
        shown="from `{prefix}SANDBOX`",
    ),
    Setting(
        "REDIRECT_URI",
        None,
        _url,
        "the exact callback URL sent to Alipay, equal to the console's 授权回调地址; set it "
        "behind a proxy",
        shown="built per request",
    ),
    Setting(
        "URL_PREFIX",
        None,
        _url_prefix,
        "where the blueprint lives; must start with `/`",
        shown="`/alipay`",
    ),
    Setting(
        "DEFAULT_NEXT",
        "/",
        _default_next,
        "a path on this site, for a sign-in without a valid `next` and after logout",
    ),
    Setting(
        "TIMEOUT",
        10.0,
        _timeout,
        "seconds allowed for each gateway call, more than 0 and at most 300",
        shown="`10`",
    ),
)


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
    """Reads one prefix's settings, collecting every problem instead of stopping at one."""

    def __init__(self, config: Mapping[str, Any], prefix: str) -> None:
        self.config = config
        self.prefix = prefix
        self.errors: list[AlipayConfigError] = []
        #: Which key each setting came from (``X`` or ``X_FILE``), for those that are set.
        self.used: dict[str, str] = {}

    def name(self, key: str) -> str:
        return self.prefix + key

    def fail(self, key: str, problem: str) -> None:
        problem = problem.replace("{key}", self.name(key)).replace("{prefix}", self.prefix)
        self.errors.append(AlipayConfigError(f"{self.name(key)} {problem}"))

    def _value(self, key: str) -> Any:
        value = self.config.get(self.name(key))
        return None if value is None or value == "" else value

    def _raw(self, setting: Setting) -> Any:
        """The setting's raw value (a file's bytes for ``X_FILE``), None, or _PROBLEM."""
        value = self._value(setting.key)
        path = self._value(setting.key + "_FILE") if setting.material else None
        if value is not None and path is not None:
            self.fail(
                setting.key, f"and {self.name(setting.key + '_FILE')} are both set: keep only one."
            )
            return _PROBLEM
        if path is None:
            if value is not None:
                self.used[setting.key] = setting.key
            return value
        self.used[setting.key] = setting.key + "_FILE"
        try:
            with open(os.fspath(path), "rb") as handle:
                return handle.read()
        except OSError as error:
            self.fail(
                setting.key + "_FILE",
                f"names a file that cannot be read ({error.strerror}): {path}",
            )
            return _PROBLEM

    def read(self, setting: Setting) -> Any:
        """The parsed setting, its default when unset, or None after recording a problem."""
        value = self._raw(setting)
        if value is _PROBLEM:
            return None
        if value is None:
            if setting.default is REQUIRED:
                self.fail(setting.key, setting.missing or "is required.")
                return None
            return None if setting.default is None else setting.parse(setting.default)
        try:
            return setting.parse(value)
        except ValueError as error:
            self.fail(self.used[setting.key], str(error))
            return None


_PROBLEM = object()


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
    values = {setting.key: r.read(setting) for setting in SETTINGS}
    private_key: RSAPrivateKey | None = values["PRIVATE_KEY"]
    certificates = _certificates(r, values, private_key)
    public_key = None if certificates else values["PUBLIC_KEY"]
    if (
        public_key is not None
        and private_key is not None
        and same_public_key(public_key, private_key.public_key())
    ):
        r.fail(
            r.used["PUBLIC_KEY"],
            "is your app public key (应用公钥), the public half of "
            f"{r.name('PRIVATE_KEY')}: paste Alipay's public key (支付宝公钥) "
            "from the console instead.",
        )
    if r.errors or private_key is None:
        return None, r.errors
    authorize_default, gateway_default = ENDPOINTS[values["SANDBOX"]]
    url_prefix = values["URL_PREFIX"]
    if url_prefix is None:
        url_prefix = "/" + prefix.rstrip("_").lower()
    loaded = AlipayConfig(
        app_id=values["APP_ID"],
        private_key=private_key,
        alipay_public_key=public_key,
        sign_type=values["SIGN_TYPE"],
        charset=values["CHARSET"],
        scope=values["SCOPE"],
        sandbox=values["SANDBOX"],
        authorize_url=values["AUTHORIZE_URL"] or authorize_default,
        gateway_url=values["GATEWAY_URL"] or gateway_default,
        redirect_uri=values["REDIRECT_URI"],
        url_prefix=url_prefix,
        default_next=values["DEFAULT_NEXT"],
        timeout=values["TIMEOUT"],
        **(certificates or {}),
    )
    return loaded, []


def _certificates(
    r: _Reader, values: Mapping[str, Any], private_key: RSAPrivateKey | None
) -> dict[str, Any] | None:
    """Certificate mode, switched on by any of the three certificate keys."""
    texts = {key: values[key] for key in _CERT_FILES}
    if not any(key in r.used for key in _CERT_FILES):
        return None
    for key in _CERT_FILES:
        if key not in r.used:
            r.fail(
                key,
                f"(or {r.name(key + '_FILE')}) is required in certificate mode (公钥证书): "
                f"set it to {_CERT_FILES[key]} from the Alipay console.",
            )
    if any(text is None for text in texts.values()):
        return None
    try:
        app_leaf = leaf_certificates(texts["APP_CERT"])[0]
    except CertificateError as error:
        r.fail("APP_CERT", f"is not a usable certificate: {error}.")
        return None
    if private_key is not None and not same_public_key(
        app_leaf.public_key, private_key.public_key()
    ):
        r.fail(
            "APP_CERT",
            f"does not carry the public half of {r.name('PRIVATE_KEY')}: use the "
            "appCertPublicKey_<APPID>.crt issued for this private key.",
        )
    try:
        alipay_leaves = leaf_certificates(texts["ALIPAY_CERT"])
    except CertificateError as error:
        r.fail("ALIPAY_CERT", f"is not a usable certificate: {error}.")
        return None
    try:
        root_sn = root_cert_sn(texts["ROOT_CERT"])
    except CertificateError as error:
        r.fail("ROOT_CERT", f"is not a usable certificate bundle: {error}.")
        return None
    return {
        "app_cert_sn": app_leaf.sn,
        "alipay_root_cert_sn": root_sn,
        "alipay_certs": {leaf.sn: leaf.public_key for leaf in alipay_leaves},
    }


def markdown_table(prefix: str = "ALIPAY_") -> str:
    """The settings table of ``docs/configuration.md``, made from SETTINGS."""
    rows = ["| key | default | meaning | Logto |", "|---|---|---|---|"]
    for setting in SETTINGS:
        key = f"`{prefix}{setting.key}`"
        if setting.material:
            key += f" / `{prefix}{setting.key}_FILE`"
        if setting.shown is not None:
            default = setting.shown.replace("{prefix}", prefix)
        elif setting.default is REQUIRED:
            default = "required"
        else:
            default = f"`{setting.default}`"
        logto = f"`{setting.logto}`" if setting.logto else "—"
        rows.append(f"| {key} | {default} | {setting.doc} | {logto} |")
    return "\n".join(rows)
