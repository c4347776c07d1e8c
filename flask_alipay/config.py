"""Reading the ALIPAY_* settings once, with errors that name the key.

The settings themselves (defaults, parsers, docs) are the table in
``settings.py``.  Keys are parsed once, at ``init_app``: loading a 2048-bit
private key costs about 40 ms, signing with a loaded one 0.4 ms.

Key and certificate settings follow one rule: ``X`` holds the text itself and
``X_FILE`` the path of a file holding it; setting both is an error.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from .certs import (
    CertificateError,
    certificate_expiries,
    leaf_certificates,
    load_roots,
    root_cert_sn,
)
from .errors import AlipayConfigError
from .keys import same_public_key
from .protocol import ENDPOINTS, wants_profile
from .settings import CERT_FILES, REQUIRED, SETTINGS, Setting

__all__ = [
    "ENDPOINTS",
    "SETTINGS",
    "AlipayConfig",
    "default_url_prefix",
    "inspect_config",
    "load_config",
    "markdown_table",
    "readable_settings",
]

log = logging.getLogger("flask_alipay")


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
    #: Which id is ``user.id`` (ALIPAY_ID_FIELD), and what the session keeps.
    id_field: str = "open_id"
    session_fields: tuple[str, ...] = ("user_id", "open_id", "union_id", "nick_name", "avatar")
    #: False only when the site chose to run unverified (ALIPAY_VERIFY_ANSWERS).
    verify_answers: bool = True
    #: Certificate mode (公钥证书): our SNs, and Alipay's certificate keys by SN.
    app_cert_sn: str | None = None
    alipay_root_cert_sn: str | None = None
    alipay_certs: Mapping[str, RSAPublicKey] = field(default_factory=dict)
    #: The root bundle's usable certificates, which a downloaded certificate must chain to.
    root_certs: tuple[x509.Certificate, ...] = ()
    #: (setting without prefix, subject, last valid moment) of every certificate; the
    #: moment is None for one that cannot be loaded, whose expiry is not known.
    cert_expiries: tuple[tuple[str, str, datetime | None], ...] = ()
    #: Phones: the hand-off page, the auth_code endpoint, the key for phone numbers.
    mobile_handoff: bool = True
    code_endpoint: bool = False
    aes_key: bytes | None = None

    @property
    def cert_mode(self) -> bool:
        return self.app_cert_sn is not None

    @property
    def wants_profile(self) -> bool:
        """The scope allows ``alipay.user.info.share`` (``auth_user`` is among them)."""
        return wants_profile(self.scope)

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
    if not loaded.verify_answers:
        log.warning(
            "%sVERIFY_ANSWERS is False: answers from Alipay are NOT verified, so whoever "
            "answers for the gateway chooses who signs in. Never run like this in production.",
            prefix,
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
    unverifiable = public_key is None and not certificates
    chose_keys = "PUBLIC_KEY" in r.used or any(key in r.used for key in CERT_FILES)
    if unverifiable and not chose_keys and values["VERIFY_ANSWERS"] is not False:
        r.fail(
            "PUBLIC_KEY",
            f"(or {r.name('PUBLIC_KEY_FILE')}) is required: it verifies every answer from "
            "Alipay. Paste Alipay's public key (支付宝公钥) from the console, or use "
            f"certificate mode. To run unverified, set {r.name('VERIFY_ANSWERS')} = False.",
        )
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
        url_prefix = default_url_prefix(prefix)
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
        id_field=values["ID_FIELD"],
        session_fields=values["SESSION_FIELDS"],
        verify_answers=values["VERIFY_ANSWERS"] is not False,
        mobile_handoff=values["MOBILE_HANDOFF"],
        code_endpoint=values["CODE_ENDPOINT"],
        aes_key=values["AES_KEY"],
        **(certificates or {}),
    )
    return loaded, []


def default_url_prefix(prefix: str) -> str:
    """Where the blueprint mounts when ALIPAY_URL_PREFIX is unset: ``ALIPAY_`` -> ``/alipay``."""
    return "/" + prefix.rstrip("_").lower()


def readable_settings(config: Mapping[str, Any], prefix: str = "ALIPAY_") -> dict[str, Any]:
    """Every setting that reads on its own, defaults included, whatever else is wrong.

    ``flask alipay check`` goes on past errors with these, so one missing key does
    not hide the warnings and the callback URL.
    """
    r = _Reader(config, prefix)
    values = {setting.key: r.read(setting) for setting in SETTINGS}
    return {key: value for key, value in values.items() if value is not None}


def _certificates(
    r: _Reader, values: Mapping[str, Any], private_key: RSAPrivateKey | None
) -> dict[str, Any] | None:
    """Certificate mode, switched on by any of the three certificate keys."""
    texts = {key: values[key] for key in CERT_FILES}
    if not any(key in r.used for key in CERT_FILES):
        return None
    for key in CERT_FILES:
        if key not in r.used:
            r.fail(
                key,
                f"(or {r.name(key + '_FILE')}) is required in certificate mode (公钥证书): "
                f"set it to {CERT_FILES[key]} from the Alipay console.",
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
        "root_certs": load_roots(texts["ROOT_CERT"]),
        "cert_expiries": tuple(
            (key, subject, not_after)
            for key in CERT_FILES
            for subject, not_after in certificate_expiries(texts[key])
        ),
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
        doc = setting.doc.replace("{prefix}", prefix)
        rows.append(f"| {key} | {default} | {doc} | {logto} |")
    return "\n".join(rows)
