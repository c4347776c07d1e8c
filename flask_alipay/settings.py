"""The ALIPAY_* settings as one table: each key's default, parser and one line of docs.

``init_app`` validation, ``flask alipay check`` and the settings table in
``docs/configuration.md`` all come from ``SETTINGS``.  A parser takes the raw
value and raises ValueError with the problem, which ``config.py`` prefixes with
the key that was set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from .keys import KeyFormatError, load_private_key, load_public_key
from .phone import aes_key
from .protocol import CHARSETS, SCOPE_SEPARATOR, SIGN_TYPES, is_scope_name, split_scope
from .redirects import safe_next

__all__ = [
    "CERT_FILES",
    "COOKIE_SESSION_FIELDS",
    "ID_FIELDS",
    "REQUIRED",
    "SESSION_ID_FIELDS",
    "SETTINGS",
    "Setting",
]


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


def _scope(value: Any) -> str:
    parts = [_text(part) for part in value] if isinstance(value, (list, tuple)) else [_text(value)]
    scopes = split_scope(SCOPE_SEPARATOR.join(parts))
    if not scopes:
        raise ValueError("must name at least one scope, such as auth_user.")
    for scope in scopes:
        if not is_scope_name(scope):
            raise ValueError(
                "must be scope names (lowercase letters, digits and _, such as auth_user), "
                f"several separated by commas; got {scope[:40]!r}."
            )
    if "auth_base" in scopes and len(scopes) > 1:
        raise ValueError("auth_base is the silent sign-in: ask for it alone.")
    return SCOPE_SEPARATOR.join(scopes)


#: The id fields ``ALIPAY_ID_FIELD`` may name.
ID_FIELDS = ("open_id", "user_id")
#: Profile fields always kept in the session: the ids.
SESSION_ID_FIELDS = ("user_id", "open_id", "union_id")
#: What ALIPAY_SESSION_FIELDS may name besides the ids while the session is Flask's
#: readable cookie: an allow-list (Alipay adds fields) of facts that neither identify,
#: locate nor reach a person.  Names, numbers, addresses, e-mail, birthdays: server-side.
COOKIE_SESSION_FIELDS = (
    *("nick_name", "avatar"),  # what a site shows of anyone who posts
    *("gender", "province", "city", "country_code"),  # coarse, shared by millions
    *("user_type", "user_status", "is_certified", "is_student_certified"),  # the account
)


def _id_field(value: Any) -> str:
    text = _text(value).strip()
    if text not in ID_FIELDS:
        raise ValueError(
            f'must be "open_id" or "user_id", the field that keys your users; got {text[:40]!r}.'
        )
    return text


def _session_fields(value: Any) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)):
        names = [name.strip() for name in _text(value).split(",")]
    elif isinstance(value, (list, tuple, set, frozenset)):
        names = [_text(name).strip() for name in value]
    else:
        raise ValueError("must be a list of profile field names, such as ['nick_name', 'avatar'].")
    for name in names:
        if not name.isidentifier():
            raise ValueError(f"must hold profile field names; got {name[:40]!r}.")
    return tuple(dict.fromkeys([*SESSION_ID_FIELDS, *(n for n in names if n)]))


CERT_FILES = {
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
        "verifies every answer. Required outside certificate mode",
        shown="required",
        material=True,
    ),
    Setting(
        "VERIFY_ANSWERS",
        True,
        _flag,
        "verify every answer's signature; `False` is the only way to run without "
        "`{prefix}PUBLIC_KEY`, warns at every start, and `flask alipay check` calls it an error",
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
        _scope,
        "`auth_user` (consent page and profile), `auth_base` (silent, ids only, alone), or "
        "several scopes separated by commas (`auth_user,auth_ecard`), the profile read when "
        "`auth_user` is among them; `flask alipay check` warns of names Alipay does not list",
        logto="scope",
    ),
    Setting(
        "ID_FIELD",
        "open_id",
        _id_field,
        "which id is `user.id`: `open_id` or `user_id`; pin it before Alipay's OpenID "
        "migration changes what it sends (docs/openid-migration.md)",
    ),
    Setting(
        "SESSION_FIELDS",
        ("nick_name", "avatar"),
        _session_fields,
        "profile fields kept in the session besides the ids (`user_id`, `open_id`, "
        "`union_id`, always kept); with Flask's cookie sessions only display fields ("
        + ", ".join(f"`{name}`" for name in COOKIE_SESSION_FIELDS)
        + "), anything else needs server-side sessions; the whole profile goes to "
        "`user_logged_in`",
        shown="`['nick_name', 'avatar']`",
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
        "a path on this site, for a sign-in without a valid `next` and after logout; under a "
        "path prefix (SCRIPT_NAME, ProxyFix) the prefix is put in front",
    ),
    Setting(
        "TIMEOUT",
        10.0,
        _timeout,
        "seconds allowed for each gateway call, more than 0 and at most 300",
        shown="`10`",
    ),
    Setting(
        "MOBILE_HANDOFF",
        True,
        _flag,
        "a phone browser outside Alipay may open the sign-in in the Alipay app; `False`: redirect",
    ),
    Setting(
        "CODE_ENDPOINT",
        False,
        _flag,
        "serve `POST <prefix>/code`: sign in with a mini program's or app's `auth_code` (JSON)",
    ),
    Setting(
        "AES_KEY",
        None,
        aes_key,
        "接口内容加密密钥 (base64), for `decrypt_phone_number`",
        "none",
        True,
    ),
)
