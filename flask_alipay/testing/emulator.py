"""A local stand-in for Alipay's authorize page and OpenAPI gateway.

Tests of a "Sign in with Alipay" integration cannot reach Alipay, and mocking
the HTTP calls hides the mistakes that matter: which parameter goes in the
query string and which in the body, the charset, the Beijing-time timestamp,
the exact bytes that are signed.  The emulator serves both endpoints over real
HTTP on loopback and checks each request the way the real gateway does, so a
client that signs in here speaks the protocol.  It can also misbehave on
demand (:meth:`AlipayEmulator.inject`) the ways Alipay has been seen to.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import http
import json
import re
import secrets
import string
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID
from flask import Flask, Response, request
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from flask_alipay.certs import cert_sn, root_cert_sn
from flask_alipay.keys import load_public_key, public_key_base64
from flask_alipay.signing import SIGN_TYPES, sign_text, string_to_sign, verify_signature

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = [
    "AUTHORIZE_PATH",
    "AUTO",
    "CERT_SETTINGS",
    "CONTROL_PATH",
    "GATEWAY_PATH",
    "AlipayEmulator",
    "EmulatedUser",
    "EmulatorServer",
    "GatewayRequest",
    "Injection",
    "beijing_now",
]

AUTHORIZE_PATH = "/oauth2/publicAppAuthorize.htm"
GATEWAY_PATH = "/gateway.do"
AVATAR_PATH = "/avatar/"
#: The opt-in control channel's prefix (``AlipayEmulator(control=True)``).
CONTROL_PATH = "/_emulator/"
#: The longest ``delay`` the control channel queues, in seconds.
MAX_CONTROL_DELAY = 600.0
TOKEN_METHOD = "alipay.system.oauth.token"
USER_INFO_METHOD = "alipay.user.info.share"
SCOPES = ("auth_user", "auth_base")
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
BEIJING = timezone(timedelta(hours=8), "CST")

#: Common parameters: the official SDKs put them in the query string, and a
#: gateway that reads ``charset`` from the query needs them there to verify.
QUERY_PARAMS = frozenset(
    {
        "app_id",
        "method",
        "format",
        "charset",
        "sign_type",
        "sign",
        "timestamp",
        "version",
        "auth_token",
        "app_cert_sn",
        "alipay_root_cert_sn",
    }
)
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

_CHARSETS = {"utf-8": "utf-8", "utf8": "utf-8", "gbk": "GBK"}
_STATE = re.compile(r"[A-Za-z0-9._~-]{0,100}")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
_ALNUM = string.ascii_letters + string.digits
# Printable ASCII stays as sent; only stray raw bytes get percent-escaped.
_PRINTABLE_ASCII = "".join(chr(i) for i in range(0x20, 0x7F))
_NICKNAMES = ("小红", "阿强", "小芳", "大伟", "小丽", "老王", "小杰", "阿珍")


class _Auto:
    """Type of :data:`AUTO`: "make a value up", as distinct from None ("absent")."""

    def __repr__(self) -> str:
        return "AUTO"


#: Pass for a profile field to have the emulator make up a plausible value.
AUTO = _Auto()


def beijing_now() -> datetime:
    """Now in Beijing time, naive: the clock Alipay's timestamps are read against."""
    return datetime.now(BEIJING).replace(tzinfo=None)


def _new_user_id() -> str:
    return "2088" + "".join(secrets.choice(string.digits) for _ in range(12))


def _new_open_id() -> str:
    return "0" + "".join(secrets.choice(_ALNUM) for _ in range(46))


def _served_avatar(key: str) -> str:
    # Relative until answered: the profile call makes it absolute on the
    # emulator's own host, so avatars load offline in a browser.
    return AVATAR_PATH + urllib.parse.quote(key, safe="") + ".svg"


_AVATAR_COLOURS = ("#1677ff", "#13c2c2", "#fa8c16", "#eb2f96", "#52c41a", "#722ed1")


def _avatar_svg(label: str, key: str) -> str:
    colour = _AVATAR_COLOURS[sum(key.encode()) % len(_AVATAR_COLOURS)]
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="160" height="160" viewBox="0 0 160 160">'
        f'<rect width="160" height="160" fill="{colour}"/>'
        '<text x="80" y="104" font-size="72" text-anchor="middle" fill="#fff" '
        'font-family="PingFang SC,Microsoft YaHei,Noto Sans CJK SC,sans-serif">'
        f"{html.escape(label[:1] or '?')}</text></svg>"
    )


@dataclass
class EmulatedUser:
    """An Alipay account the emulator signs in.  Profile fields set to None are absent
    from answers, as they are for real users who never set them."""

    key: str
    user_id: str | None = None
    open_id: str | None = None
    union_id: str | None = None
    nick_name: str | None = None
    avatar: str | None = None
    gender: str | None = None
    province: str | None = None
    city: str | None = None

    def identity(self) -> dict[str, str]:
        """The ids Alipay puts in the token answer."""
        ids = {"open_id": self.open_id, "union_id": self.union_id, "user_id": self.user_id}
        return {name: value for name, value in ids.items() if value is not None}

    def profile(self) -> dict[str, str]:
        """The fields of ``alipay.user.info.share``, absent ones left out."""
        fields = {
            "avatar": self.avatar,
            "city": self.city,
            "gender": self.gender,
            "nick_name": self.nick_name,
            "open_id": self.open_id,
            "province": self.province,
            "user_id": self.user_id,
        }
        return {name: value for name, value in fields.items() if value is not None}


@dataclass(frozen=True)
class GatewayRequest:
    """One gateway call as it arrived, kept so tests can assert on the wire."""

    method: str | None
    query: dict[str, str]
    form: dict[str, str]
    string_to_sign: str
    content_type: str | None
    charset: str | None

    @property
    def params(self) -> dict[str, str]:
        """Query and body parameters together, as the gateway signs them."""
        return {**self.query, **self.form}


@dataclass
class Injection:
    """A misbehaviour queued for the next ``times`` matching gateway calls."""

    method: str | None = None
    sub_code: str | None = None
    code: str = "40004"
    msg: str = "Business Failed"
    sub_msg: str | None = None
    delay: float = 0
    bad_signature: bool = False
    wrong_key: bool = False
    unsigned: bool = False
    gbk_error: bool = False
    html_status: int | None = None
    truncated: bool = False
    times: int = 1

    def matches(self, method: str | None) -> bool:
        return self.times > 0 and (self.method is None or self.method == method)

    def error(self) -> dict[str, str]:
        """The error members this injection answers with."""
        return {
            "code": self.code,
            "msg": self.msg,
            "sub_code": self.sub_code or "isp.unknow-error",
            "sub_msg": self.sub_msg or "系统繁忙，请稍后再试",
        }


@dataclass
class _Grant:
    """What a code or token stands for: who signed in, to which app, for what."""

    app_id: str
    user_key: str
    scope: str
    expires_at: float

    def expired(self) -> bool:
        return time.monotonic() >= self.expires_at


@dataclass(frozen=True)
class _Answer:
    """A gateway answer before rendering: the node name and its members in order."""

    node: str
    data: dict[str, Any]


class _Refused(Exception):
    """A request the gateway turns down with an ``error_response``."""

    def __init__(self, code: str, msg: str, sub_code: str, sub_msg: str) -> None:
        super().__init__(sub_code)
        self.error = {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}


def _invalid(sub_code: str, sub_msg: str) -> _Refused:
    return _Refused("40002", "Invalid Arguments", sub_code, sub_msg)


def _missing(sub_code: str, sub_msg: str) -> _Refused:
    return _Refused("40001", "Missing Required Arguments", sub_code, sub_msg)


def _token_refused(sub_code: str, sub_msg: str) -> _Answer:
    error = {
        "code": "20001",
        "msg": "Insufficient Token Permissions",
        "sub_code": sub_code,
        "sub_msg": sub_msg,
    }
    return _Answer(_node_name(USER_INFO_METHOD), error)


def _node_name(method: str | None) -> str:
    """``alipay.system.oauth.token`` answers in ``alipay_system_oauth_token_response``."""
    return f"{(method or '').replace('.', '_')}_response"


def _wire_charset(name: str | None) -> str | None:
    """The codec for a charset the gateway accepts, or None."""
    if name is None:
        return None
    return _CHARSETS.get(name.strip().lower())


def _decode_pairs(raw: bytes, charset: str) -> list[tuple[str, str]]:
    """Percent-decode ``k=v&...`` in the request charset, as the gateway does."""
    text = urllib.parse.quote_from_bytes(raw, safe=_PRINTABLE_ASCII)
    return urllib.parse.parse_qsl(text, keep_blank_values=True, encoding=charset, errors="replace")


def _first_value(raw: bytes, name: str) -> str | None:
    for key, value in _decode_pairs(raw, "latin-1"):
        if key == name:
            return value
    return None


def _is_form(content_type: str | None) -> bool:
    media_type = (content_type or "").split(";")[0].strip().lower()
    return media_type == "application/x-www-form-urlencoded"


def _alipay_json(data: Mapping[str, Any], charset: str) -> str:
    """JSON as Alipay writes it: compact, raw Chinese, ``/`` escaped as ``\\/``.

    Characters the charset cannot encode (an emoji in GBK) become ``\\u`` escapes,
    so the text encodes exactly and the signed bytes are the sent bytes.
    """
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    # "/" is never structural in JSON, so every one is inside a string.
    text = text.replace("/", "\\/")
    try:
        text.encode(charset)
    except UnicodeEncodeError:
        text = "".join(_encodable(char, charset) for char in text)
    return text


def _encodable(char: str, charset: str) -> str:
    try:
        char.encode(charset)
    except UnicodeEncodeError:
        return json.dumps(char)[1:-1]
    return char


def _corrupt(signature: str) -> str:
    """A well-formed signature that does not verify: one bit flipped."""
    raw = bytearray(base64.b64decode(signature))
    raw[len(raw) // 2] ^= 0x01
    return base64.b64encode(bytes(raw)).decode("ascii")


def _add_query(url: str, params: list[tuple[str, str]]) -> str:
    """Append params to a URL, after any query it already has."""
    parts = urllib.parse.urlsplit(url)
    extra = urllib.parse.urlencode(params)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urllib.parse.urlunsplit(parts._replace(query=query))


def _html_page(title: str, body: str, status: int = 200) -> Response:
    page = (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{body}<p class=note>Alipay emulator · 支付宝模拟器</p>"
        "</main></body></html>"
    )
    return Response(page, status=status, content_type="text/html; charset=utf-8")


_CSS = (
    "body{font-family:system-ui,'PingFang SC','Microsoft YaHei',sans-serif;"
    "background:#f3f5f8;margin:0;color:#1f2329}"
    "main{max-width:26rem;margin:3rem auto;background:#fff;padding:1.75rem 2rem;"
    "border-radius:12px;box-shadow:0 2px 12px #0001}"
    ".logo{width:48px;height:48px;border-radius:12px;background:#1677ff;color:#fff;"
    "font-size:28px;line-height:48px;text-align:center;font-weight:600}"
    "h1{font-size:1.2rem;margin:.8rem 0}code{background:#f2f3f5;padding:.1em .35em;"
    "border-radius:4px}.scope{color:#646a73}"
    "label{display:block;margin:.7rem 0 .2rem;font-size:.9rem;color:#646a73}"
    "select,input{display:block;width:100%;box-sizing:border-box;font-size:1rem;"
    "padding:.45rem .6rem;margin-top:.25rem;border:1px solid #d0d3d6;border-radius:6px}"
    "details{margin:.6rem 0;font-size:.9rem}summary{cursor:pointer;color:#1677ff}"
    ".buttons{display:flex;gap:.6rem;margin-top:1.2rem}"
    "button{flex:1;font-size:1rem;padding:.6rem;border-radius:6px;border:1px solid #d0d3d6;"
    "background:#fff;cursor:pointer}"
    "button[value=approve]{background:#1677ff;color:#fff;border-color:#1677ff}"
    ".note{color:#999;font-size:.8rem;margin-top:1.5rem;text-align:center}"
)


def _id_label(user: EmulatedUser) -> str:
    kinds = [kind for kind in ("open_id", "user_id") if getattr(user, kind)]
    return " + ".join(kinds)


class _QuietHandler(WSGIRequestHandler):
    """Keeps the test output free of one access-log line per request."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class EmulatorServer:
    """The emulator running on a loopback port, in a daemon thread."""

    def __init__(self, app: Flask, host: str, port: int, quiet: bool) -> None:
        handler = _QuietHandler if quiet else WSGIRequestHandler
        self._server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=handler
        )
        self.url = f"http://{host}:{self._server.server_port}"
        self.authorize_url = self.url + AUTHORIZE_PATH
        self.gateway_url = self.url + GATEWAY_PATH
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            # A short poll keeps stop() quick: tests start and stop many servers.
            kwargs={"poll_interval": 0.05},
            name="alipay-emulator",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> EmulatorServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# -- certificate mode: a throwaway PKI laid out like Alipay's ------------------

#: The ``ALIPAY_*`` settings that hold certificates, in the order they are written; each
#: has a ``_FILE`` twin that names the file instead.
CERT_SETTINGS = ("ALIPAY_APP_CERT", "ALIPAY_ALIPAY_CERT", "ALIPAY_ROOT_CERT")
#: A made-up Alipay partner id (2088...) for the certificates' subjects.
_PARTNER_ID = "2088000000000000"
_CA_ORG = "Flask-Alipay-Login"
_CA_UNIT = "Alipay Emulator"
_CA_DAYS = 3650
_LEAF_DAYS = 365
#: Certificates start a little in the past, so a slow clock elsewhere still accepts them.
_BACKDATE = timedelta(minutes=5)


def _x509_name(common_name: str, unit: str, organization: str) -> x509.Name:
    """A name in ASN.1 order (C first), so RFC 4514 reads ``CN=…,OU=…,O=…,C=CN`` as Alipay's."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca_name(common_name: str) -> x509.Name:
    return _x509_name(common_name, _CA_UNIT, _CA_ORG)


@dataclass(frozen=True)
class _Issued:
    """A certificate with the two forms the emulator hands out: PEM text and Alipay's SN."""

    cert: x509.Certificate
    pem: str
    sn: str

    @classmethod
    def of(cls, cert: x509.Certificate) -> _Issued:
        der = cert.public_bytes(serialization.Encoding.DER)
        pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
        return cls(cert=cert, pem=pem, sn=cert_sn(der))


def _issue(
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    issuer: x509.Name,
    issuer_key: RSAPrivateKey | EllipticCurvePrivateKey,
    *,
    days: int,
    ca: bool | None,
) -> _Issued:
    """One certificate signed with SHA-256 (RSA or ECDSA, after the issuer's key).

    ``ca`` None leaves BasicConstraints out, as on Alipay's own certificate.
    """
    now = datetime.now(timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=None), critical=True
        )
    builder = builder.add_extension(
        x509.KeyUsage(
            digital_signature=not ca,
            content_commitment=not ca,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=bool(ca),
            crl_sign=bool(ca),
            encipher_only=False,
            decipher_only=False,
        ),
        critical=True,
    )
    return _Issued.of(builder.sign(issuer_key, hashes.SHA256()))


class _Pki:
    """Alipay's certificate layout in miniature.

    An RSA root and an ECC root make the root bundle (only the RSA one counts
    in ``alipay_root_cert_sn``); an RSA intermediate outside the bundle signs
    the Alipay certificate and every app certificate, as Ant Financial's
    "Class 2 R1" CA does.
    """

    def __init__(self, alipay_key: RSAPublicKey) -> None:
        root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        root_name = _ca_name("Emulated Alipay Root CA")
        self.root = _issue(
            root_name, root_key.public_key(), root_name, root_key, days=_CA_DAYS, ca=True
        )
        ec_key = ec.generate_private_key(ec.SECP256R1())
        ec_name = _ca_name("Emulated Alipay ECC Root CA")
        self.ec_root = _issue(ec_name, ec_key.public_key(), ec_name, ec_key, days=_CA_DAYS, ca=True)
        self._intermediate_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.intermediate = _issue(
            _ca_name("Emulated Ant Financial Certification Authority Class 2 R1"),
            self._intermediate_key.public_key(),
            root_name,
            root_key,
            days=_CA_DAYS,
            ca=True,
        )
        self.root_bundle = self.root.pem + self.ec_root.pem
        self.root_sn = root_cert_sn(self.root_bundle)
        self.alipay = self.issue_alipay(alipay_key)

    def issue_alipay(self, public_key: RSAPublicKey) -> _Issued:
        """Alipay's certificate: no BasicConstraints at all, like the real one."""
        subject = _x509_name(f"支付宝(中国)网络技术有限公司-{_PARTNER_ID}", "Alipay", _CA_ORG)
        return self._issue_leaf(subject, public_key, ca=None)

    def issue_app(self, app_id: str, public_key: RSAPublicKey) -> _Issued:
        """An app's certificate (``appCertPublicKey_<APPID>.crt``): a leaf with ca=False."""
        subject = _x509_name(f"{_PARTNER_ID}-{app_id}", "Alipay", _CA_ORG)
        return self._issue_leaf(subject, public_key, ca=False)

    def _issue_leaf(self, subject: x509.Name, public_key: RSAPublicKey, ca: bool | None) -> _Issued:
        return _issue(
            subject,
            public_key,
            self.intermediate.cert.subject,
            self._intermediate_key,
            days=_LEAF_DAYS,
            ca=ca,
        )


def _same_key(a: RSAPublicKey, b: RSAPublicKey) -> bool:
    return a.public_numbers() == b.public_numbers()


class AlipayEmulator:
    """Alipay's authorize page and gateway, played by the protocol, for tests.

    Point ``ALIPAY_AUTHORIZE_URL``, ``ALIPAY_GATEWAY_URL`` and
    ``ALIPAY_PUBLIC_KEY`` at it (:meth:`config`) and sign in for real::

        emulator = AlipayEmulator(app_public_key=app_key.public_key())
        with emulator.serve():
            app.config.update(emulator.config())

    With ``cert_mode=True`` it plays an app in certificate mode (公钥证书): it
    makes a throwaway PKI laid out like Alipay's, demands ``app_cert_sn`` and
    ``alipay_root_cert_sn`` on every gateway call, and answers with
    ``alipay_cert_sn``; :meth:`config` then gives certificates, not a key.

    With ``control=True`` another process can steer it over HTTP (off by
    default, when those paths answer 404): ``POST /_emulator/inject`` with a
    JSON object of :meth:`inject` keyword arguments (``method`` included),
    ``POST /_emulator/reset`` (:meth:`reset`), ``GET /_emulator/stats`` (call
    counts and pending injections, :meth:`stats`) and ``GET /_emulator/users``
    (every user's ids and profile, by key).
    """

    def __init__(
        self,
        *,
        app_id: str = "2021000000000001",
        app_public_key: str | RSAPublicKey | None = None,
        alipay_private_key: RSAPrivateKey | None = None,
        auto_approve: bool = True,
        code_ttl: float = 180,
        token_ttl: int = 1296000,
        refresh_ttl: int = 2592000,
        expires_as_string: bool = False,
        sign_unescaped_slashes: bool = False,
        timestamp_tolerance: float = 600,
        cert_mode: bool = False,
        control: bool = False,
    ) -> None:
        self.app_id = app_id
        self.auto_approve = auto_approve
        self.code_ttl = code_ttl
        self.token_ttl = token_ttl
        self.refresh_ttl = refresh_ttl
        self.expires_as_string = expires_as_string
        self.sign_unescaped_slashes = sign_unescaped_slashes
        self.timestamp_tolerance = timestamp_tolerance
        self._private_key = alipay_private_key or rsa.generate_private_key(
            public_exponent=65537, key_size=2048
        )
        self._wrong_key: RSAPrivateKey | None = None
        self._lock = threading.RLock()
        self.apps: dict[str, RSAPublicKey | None] = {}
        self.users: dict[str, EmulatedUser] = {}
        self.requests: list[GatewayRequest] = []
        self.injections: list[Injection] = []
        self._codes: dict[str, _Grant] = {}
        self._access_tokens: dict[str, _Grant] = {}
        self._refresh_tokens: dict[str, _Grant] = {}
        self.server: EmulatorServer | None = None
        self._pointed: dict[tuple[int, str], tuple[Flask, Any, Any]] = {}
        self._pki = _Pki(self._private_key.public_key()) if cert_mode else None
        self._app_certs: dict[str, _Issued] = {}
        self.control = control
        self._counts: dict[str, int] = {}
        self._authorize_count = 0
        self.register_app(app_id, app_public_key)
        self.default_user = self.add_user(
            "default",
            nick_name="小明",
            gender="m",
            province="浙江省",
            city="杭州市",
        )
        self.app = self._make_app()

    # -- keys --------------------------------------------------------------

    @property
    def alipay_public_key(self) -> RSAPublicKey:
        """The key that verifies the emulator's answers (Alipay's public key)."""
        return self._private_key.public_key()

    @property
    def alipay_public_key_base64(self) -> str:
        """The one-line form the Alipay console shows as 支付宝公钥."""
        return public_key_base64(self.alipay_public_key)

    @property
    def alipay_public_key_pem(self) -> str:
        return self.alipay_public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    # -- certificates (cert_mode=True) ----------------------------------------

    @property
    def cert_mode(self) -> bool:
        """Whether apps talk to this emulator in certificate mode (公钥证书)."""
        return self._pki is not None

    def _certs(self) -> _Pki:
        if self._pki is None:
            raise RuntimeError(
                "the emulator is in public-key mode and has no certificates: "
                "make it with AlipayEmulator(cert_mode=True)"
            )
        return self._pki

    @property
    def root_cert_pem(self) -> str:
        """``alipayRootCert.crt``: an RSA root, then an ECC root that must not count in the SN."""
        return self._certs().root_bundle

    @property
    def alipay_cert_pem(self) -> str:
        """``alipayCertPublicKey_RSA2.crt``: the intermediate CA first, then Alipay's own
        certificate, so a reader has to pick the one that is not a CA."""
        pki = self._certs()
        with self._lock:
            return pki.intermediate.pem + pki.alipay.pem

    def app_cert_pem(self, app_id: str | None = None) -> str:
        """``appCertPublicKey_<APPID>.crt``: the certificate Alipay issued for the app's key."""
        return self._app_cert(app_id).pem

    @property
    def alipay_cert_sn(self) -> str:
        """The SN answers carry in ``alipay_cert_sn``; it changes on :meth:`rotate_alipay_cert`."""
        pki = self._certs()
        with self._lock:
            return pki.alipay.sn

    @property
    def root_cert_sn(self) -> str:
        """What the gateway expects in ``alipay_root_cert_sn`` (the RSA root's SN only)."""
        return self._certs().root_sn

    def app_cert_sn(self, app_id: str | None = None) -> str:
        """What the gateway expects in ``app_cert_sn`` from this APPID."""
        return self._app_cert(app_id).sn

    def _app_cert(self, app_id: str | None) -> _Issued:
        self._certs()
        app_id = app_id or self.app_id
        with self._lock:
            issued = self._app_certs.get(app_id)
        if issued is None:
            raise KeyError(f"no app certificate for APPID {app_id!r}: register_app() it with a key")
        return issued

    def write_cert_files(self, directory: str | Path, app_id: str | None = None) -> dict[str, Path]:
        """Write the three files an app in certificate mode is configured with, under
        Alipay's file names; return the settings naming them (absolute paths)."""
        app_id = app_id or self.app_id
        files = {
            "ALIPAY_APP_CERT_FILE": (
                f"appCertPublicKey_{app_id}.crt",
                self.app_cert_pem(app_id),
            ),
            "ALIPAY_ALIPAY_CERT_FILE": ("alipayCertPublicKey_RSA2.crt", self.alipay_cert_pem),
            "ALIPAY_ROOT_CERT_FILE": ("alipayRootCert.crt", self.root_cert_pem),
        }
        folder = Path(directory).expanduser().absolute()
        folder.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        for setting, (name, text) in files.items():
            path = folder / name
            path.write_text(text, encoding="ascii", newline="\n")
            paths[setting] = path
        return paths

    def rotate_alipay_cert(self, new_key: bool = False) -> str:
        """Issue Alipay a new certificate (a new serial, so a new SN), as Alipay does when
        it rotates; with ``new_key`` also a new key pair, which signs answers from now on.

        Apps still holding the old certificate then see an ``alipay_cert_sn`` they do
        not know.  Returns the new SN.
        """
        pki = self._certs()
        with self._lock:
            if new_key:
                self._private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pki.alipay = pki.issue_alipay(self._private_key.public_key())
            return pki.alipay.sn

    # -- set-up --------------------------------------------------------------

    def register_app(self, app_id: str, public_key: str | RSAPublicKey | None) -> None:
        """Serve another APPID.  Without a public key the gateway answers
        ``isv.missing-signature-config``, as for an app with no key uploaded.

        In certificate mode the key also gets an app certificate; registering the
        same key again keeps it, a different key gets a new one.
        """
        if isinstance(public_key, str):
            public_key = load_public_key(public_key)
        with self._lock:
            old_key = self.apps.get(app_id)
            self.apps[app_id] = public_key
            if self._pki is None:
                return
            if public_key is None:
                self._app_certs.pop(app_id, None)
            elif old_key is None or not _same_key(old_key, public_key):
                self._app_certs[app_id] = self._pki.issue_app(app_id, public_key)

    def add_user(
        self,
        key: str | None = None,
        *,
        id_kind: Literal["open_id", "user_id", "both"] = "open_id",
        user_id: str | None = None,
        open_id: str | None = None,
        union_id: str | None = None,
        nick_name: str | _Auto | None = AUTO,
        avatar: str | _Auto | None = AUTO,
        gender: str | None = None,
        province: str | None = None,
        city: str | None = None,
    ) -> EmulatedUser:
        """Create an account.  ``id_kind`` picks the ids Alipay gives: new apps get only
        ``open_id``, old ones ``user_id``, apps mid-migration both."""
        with self._lock:
            key = key or self._free_key()
            if id_kind in ("user_id", "both"):
                user_id = user_id or _new_user_id()
            if id_kind in ("open_id", "both"):
                open_id = open_id or _new_open_id()
            user = EmulatedUser(
                key=key,
                user_id=user_id,
                open_id=open_id,
                union_id=union_id,
                nick_name=self._made_up_nick_name() if isinstance(nick_name, _Auto) else nick_name,
                avatar=_served_avatar(key) if isinstance(avatar, _Auto) else avatar,
                gender=gender,
                province=province,
                city=city,
            )
            self.users[key] = user
            return user

    def _free_key(self) -> str:
        number = len(self.users) + 1
        while f"user{number}" in self.users:
            number += 1
        return f"user{number}"

    def _made_up_nick_name(self) -> str:
        return _NICKNAMES[len(self.users) % len(_NICKNAMES)] + str(len(self.users))

    def user(self, key: str | None = None) -> EmulatedUser:
        """The user with this key, created on first use; the default user for None."""
        if key is None:
            return self.default_user
        with self._lock:
            return self.users.get(key) or self.add_user(key)

    def issue_code(
        self, user_key: str | None = None, scope: str = "auth_user", app_id: str | None = None
    ) -> str:
        """Mint an auth_code as if the user had approved, without the browser leg."""
        user = self.user(user_key)
        code = secrets.token_hex(16)
        grant = _Grant(app_id or self.app_id, user.key, scope, time.monotonic() + self.code_ttl)
        with self._lock:
            self._codes[code] = grant
        return code

    def expire_code(self, code: str) -> None:
        """Make an auth_code expired, to test the path without waiting."""
        with self._lock:
            grant = self._codes.get(code)
            if grant is None:
                raise KeyError(f"no such unused auth_code: {code!r}")
            grant.expires_at = 0

    def expire_token(self, token: str) -> None:
        """Make an access token or a refresh token expired, to test the path without waiting."""
        with self._lock:
            grant = self._access_tokens.get(token) or self._refresh_tokens.get(token)
            if grant is None:
                raise KeyError(f"no such access or refresh token: {token!r}")
            grant.expires_at = 0

    def inject(
        self,
        method: str | None = None,
        *,
        sub_code: str | None = None,
        code: str = "40004",
        msg: str = "Business Failed",
        sub_msg: str | None = None,
        delay: float = 0,
        bad_signature: bool = False,
        wrong_key: bool = False,
        unsigned: bool = False,
        gbk_error: bool = False,
        html_status: int | None = None,
        truncated: bool = False,
        times: int = 1,
    ) -> Injection:
        """Queue a misbehaviour for the next ``times`` gateway calls of ``method`` (any
        method for None).

        ``sub_code`` answers that error instead of processing the call (in
        ``error_response``, or inside the node for ``alipay.user.info.share``);
        ``gbk_error`` answers an ``error_response`` in GBK whatever was asked;
        ``html_status`` answers an HTML error page with that status.  The other
        flags process the call normally and then spoil the answer: ``delay``
        seconds late, a corrupted signature, one made with another key, no
        ``sign`` at all, or the body cut in half.
        """
        injection = Injection(
            method=method,
            sub_code=sub_code,
            code=code,
            msg=msg,
            sub_msg=sub_msg,
            delay=delay,
            bad_signature=bad_signature,
            wrong_key=wrong_key,
            unsigned=unsigned,
            gbk_error=gbk_error,
            html_status=html_status,
            truncated=truncated,
            times=times,
        )
        with self._lock:
            self.injections.append(injection)
        return injection

    def reset(self) -> None:
        """Forget recorded requests and pending injections between tests."""
        with self._lock:
            self.requests.clear()
            self.injections.clear()

    def stats(self) -> dict[str, Any]:
        """Counts since start (:meth:`reset` leaves them): gateway calls by method,
        authorize-page hits, users, and the injections still pending."""
        with self._lock:
            pending = [dataclasses.asdict(injection) for injection in self.injections]
            return {
                "gateway_requests": dict(sorted(self._counts.items())),
                "gateway_requests_total": sum(self._counts.values()),
                "authorize_requests": self._authorize_count,
                "users": len(self.users),
                "injections_left": sum(injection["times"] for injection in pending),
                "injections": pending,
            }

    # -- serving -------------------------------------------------------------

    def start(
        self, host: str = "127.0.0.1", port: int = 0, *, quiet: bool = True
    ) -> EmulatorServer:
        """Serve on a free loopback port (or ``port``) until :meth:`stop`."""
        if self.server is not None:
            raise RuntimeError("the emulator is already running; stop() it first")
        self.server = EmulatorServer(self.app, host, port, quiet)
        return self.server

    def stop(self) -> None:
        """Stop serving, and give apps that :meth:`point` changed their settings back."""
        self.unpoint()
        if self.server is not None:
            self.server.stop()
            self.server = None

    @contextmanager
    def serve(self) -> Iterator[EmulatorServer]:
        """Serve for the duration of a ``with`` block."""
        server = self.start()
        try:
            yield server
        finally:
            self.stop()

    def config(self, app_id: str | None = None) -> dict[str, str]:
        """The ``ALIPAY_*`` settings that point an app at this running emulator.

        In certificate mode the three certificates (PEM text) replace
        ``ALIPAY_PUBLIC_KEY``; :meth:`write_cert_files` gives them as files.
        """
        if self.server is None:
            raise RuntimeError(
                "the emulator is not running: use `with emulator.serve():` or emulator.start()"
            )
        app_id = app_id or self.app_id
        settings = {
            "ALIPAY_APP_ID": app_id,
            "ALIPAY_AUTHORIZE_URL": self.server.authorize_url,
            "ALIPAY_GATEWAY_URL": self.server.gateway_url,
        }
        if self._pki is None:
            settings["ALIPAY_PUBLIC_KEY"] = self.alipay_public_key_base64
            return settings
        settings["ALIPAY_APP_CERT"] = self.app_cert_pem(app_id)
        settings["ALIPAY_ALIPAY_CERT"] = self.alipay_cert_pem
        settings["ALIPAY_ROOT_CERT"] = self.root_cert_pem
        return settings

    def point(self, app: Flask, name: str = "alipay") -> Flask:
        """Re-point an app already set up with AlipayLogin at this running emulator.

        Its APPID and app key are kept (the emulator learns the public half);
        the endpoints and Alipay's public key become the emulator's.
        :meth:`unpoint` (and :meth:`stop`) give the app its own settings back.
        """
        from flask_alipay.extension import AlipayLogin

        if self._pki is not None:
            raise RuntimeError(
                "point() swaps in the emulator's public key, which certificate mode does not "
                "use; give the app emulator.config() (or write_cert_files()) instead"
            )
        extension = app.extensions.get(name)
        if not isinstance(extension, AlipayLogin):
            raise RuntimeError(f"the app has no AlipayLogin named {name!r}")
        if self.server is None:
            raise RuntimeError("the emulator is not running: start() or serve() it first")
        original = extension.config_for(app)
        self._pointed.setdefault((id(app), name), (app, extension, original))
        self.register_app(original.app_id, original.private_key.public_key())
        extension.reconfigure(
            app,
            dataclasses.replace(
                original,
                authorize_url=self.server.authorize_url,
                gateway_url=self.server.gateway_url,
                alipay_public_key=self.alipay_public_key,
            ),
        )
        return app

    def unpoint(self) -> None:
        """Give every app that :meth:`point` changed its own settings back."""
        for app, extension, original in self._pointed.values():
            extension.reconfigure(app, original)
        self._pointed.clear()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """WSGI, so the emulator can be mounted or served by any server."""
        return self.app(environ, start_response)

    def _make_app(self) -> Flask:
        app = Flask(__name__)
        app.add_url_rule(AUTHORIZE_PATH, "authorize", self._authorize_view, methods=["GET", "POST"])
        app.add_url_rule(GATEWAY_PATH, "gateway", self._gateway_view, methods=["GET", "POST"])
        app.add_url_rule(AVATAR_PATH + "<key>.svg", "avatar", self._avatar_view)
        if self.control:
            app.add_url_rule(
                CONTROL_PATH + "inject", "control_inject", self._inject_view, methods=["POST"]
            )
            app.add_url_rule(
                CONTROL_PATH + "reset", "control_reset", self._reset_view, methods=["POST"]
            )
            app.add_url_rule(CONTROL_PATH + "stats", "control_stats", self._stats_view)
            app.add_url_rule(CONTROL_PATH + "users", "control_users", self._users_view)
        return app

    # -- the control channel (control=True) ----------------------------------

    def _inject_view(self) -> Response:
        data = request.get_json(force=True, silent=True)
        try:
            arguments = _injection_arguments(data)
        except ValueError as error:
            return _json({"error": str(error)}, 400)
        method = arguments.pop("method", None)
        injection = self.inject(method, **arguments)
        return _json({"queued": dataclasses.asdict(injection), **self._left()})

    def _reset_view(self) -> Response:
        with self._lock:  # re-entrant: count and clear at once
            cleared = sum(injection.times for injection in self.injections)
            self.reset()
        return _json({"injections_cleared": cleared, **self._left()})

    def _stats_view(self) -> Response:
        return _json(self.stats())

    def _users_view(self) -> Response:
        with self._lock:
            users = {key: dataclasses.asdict(user) for key, user in self.users.items()}
        return _json(users)

    def _left(self) -> dict[str, int]:
        with self._lock:
            return {"injections_left": sum(injection.times for injection in self.injections)}

    def _avatar_view(self, key: str) -> Response:
        with self._lock:
            user = self.users.get(key)
        if user is None:
            return Response("no such user", status=404, content_type="text/plain")
        svg = _avatar_svg(user.nick_name or user.key, user.key)
        return Response(svg, content_type="image/svg+xml; charset=utf-8")

    # -- the authorize page --------------------------------------------------

    def _authorize_view(self) -> Response:
        with self._lock:
            self._authorize_count += 1
        app_id = request.args.get("app_id", "")
        scope = request.args.get("scope", "")
        redirect_uri = request.args.get("redirect_uri", "")
        state = request.args.get("state")
        problem = self._authorize_problem(app_id, scope, redirect_uri, state)
        if problem:
            return _html_page("授权失败 / Authorization error", _error_body(problem), 400)
        if request.method == "POST":
            if request.form.get("decision") != "approve":
                return self._redirect(redirect_uri, [("app_id", app_id)], state)
            user_key = self._chosen_user(request.form)
        elif self.auto_approve:
            user_key = request.args.get("login_as") or None
        else:
            return self._consent_page(app_id, scope, request.args.get("login_as"))
        code = self.issue_code(user_key, scope, app_id)
        params = [
            ("app_id", app_id),
            ("source", "alipay_wallet"),
            ("scope", scope),
            ("auth_code", code),
        ]
        return self._redirect(redirect_uri, params, state)

    def _chosen_user(self, form: Mapping[str, str]) -> str | None:
        """The picked account, or a new one when a nickname was typed in."""
        new_name = (form.get("new_nick_name") or "").strip()[:32]
        if new_name:
            kind = form.get("new_id_kind", "open_id")
            if kind not in ("open_id", "user_id", "both"):
                kind = "open_id"
            return self.add_user(nick_name=new_name, id_kind=kind).key  # type: ignore[arg-type]
        return form.get("user") or None

    def _authorize_problem(
        self, app_id: str, scope: str, redirect_uri: str, state: str | None
    ) -> str | None:
        """Why Alipay would refuse this authorize request, or None."""
        if app_id not in self.apps:
            return f"应用不存在 / unknown app_id {app_id!r}"
        if scope not in SCOPES:
            return f"scope 无效 / scope must be auth_user or auth_base, not {scope!r}"
        parts = urllib.parse.urlsplit(redirect_uri)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return "redirect_uri 无效 / redirect_uri must be an absolute http(s) URL"
        if state is not None and not _STATE.fullmatch(state):
            return "state 无效 / state must be at most 100 URL-safe characters"
        return None

    @staticmethod
    def _redirect(redirect_uri: str, params: list[tuple[str, str]], state: str | None) -> Response:
        if state is not None:
            params = [*params, ("state", state)]
        return Response(status=302, headers={"Location": _add_query(redirect_uri, params)})

    def _consent_page(self, app_id: str, scope: str, login_as: str | None) -> Response:
        selected = login_as or self.default_user.key
        with self._lock:
            users = list(self.users.values())
        options = "".join(
            f'<option value="{html.escape(user.key)}"'
            f"{' selected' if user.key == selected else ''}>"
            f"{html.escape(user.nick_name or user.key)} · {html.escape(_id_label(user))}</option>"
            for user in users
        )
        what = (
            "获取你的头像、昵称等公开信息 / your nickname, avatar and public profile"
            if scope == "auth_user"
            else "获取你的支付宝账号标识 / your Alipay account id only"
        )
        action = AUTHORIZE_PATH + "?" + request.query_string.decode("latin-1")
        body = (
            '<div class="logo">支</div>'
            "<h1>支付宝授权 · Sign in with Alipay</h1>"
            f'<p>应用 / App <code class="app">{html.escape(app_id)}</code> 申请 / asks for:</p>'
            f'<p class="scope"><code>{html.escape(scope)}</code> {html.escape(what)}</p>'
            f'<form method="post" action="{html.escape(action)}">'
            f'<label>账号 / Account<select name="user">{options}</select></label>'
            "<details><summary>新建账号 / Add a user</summary>"
            '<label>昵称 / Nickname<input name="new_nick_name" maxlength="32" '
            'placeholder="例如 张三"></label>'
            '<label>标识 / Id kind<select name="new_id_kind">'
            '<option value="open_id">open_id</option><option value="user_id">user_id</option>'
            '<option value="both">open_id + user_id</option></select></label></details>'
            '<div class="buttons"><button name="decision" value="approve">同意 / Approve</button>'
            '<button name="decision" value="cancel">取消 / Cancel</button></div></form>'
        )
        return _html_page("支付宝授权 / Alipay authorization", body)

    # -- the gateway ---------------------------------------------------------

    def _gateway_view(self) -> Response:
        raw_query = request.query_string
        content_type = request.headers.get("Content-Type")
        # Raw bytes, never Flask's form parser: the gateway decodes in the
        # charset named in the query, and only form-encoded bodies at all.
        body = request.get_data(cache=False) if _is_form(content_type) else b""
        named_charset = _first_value(raw_query, "charset")
        charset = _wire_charset(named_charset) or "utf-8"
        query_pairs = _decode_pairs(raw_query, charset)
        form_pairs = _decode_pairs(body, charset)
        record = GatewayRequest(
            method=dict(query_pairs).get("method") or dict(form_pairs).get("method"),
            query=dict(query_pairs),
            form=dict(form_pairs),
            string_to_sign=string_to_sign({**dict(query_pairs), **dict(form_pairs)}),
            content_type=content_type,
            charset=named_charset,
        )
        with self._lock:
            self.requests.append(record)
            counted = record.method or "(none)"
            self._counts[counted] = self._counts.get(counted, 0) + 1
            injection = self._take_injection(record.method)
        sign_type = record.query.get("sign_type", "RSA2")
        if sign_type not in SIGN_TYPES:
            sign_type = "RSA2"
        return self._respond(record, query_pairs, form_pairs, charset, sign_type, injection)

    def _take_injection(self, method: str | None) -> Injection | None:
        for injection in self.injections:
            if injection.matches(method):
                injection.times -= 1
                if injection.times <= 0:
                    self.injections.remove(injection)
                return injection
        return None

    def _respond(
        self,
        record: GatewayRequest,
        query_pairs: list[tuple[str, str]],
        form_pairs: list[tuple[str, str]],
        charset: str,
        sign_type: str,
        injection: Injection | None,
    ) -> Response:
        if injection is None:
            answer = self._process(record, query_pairs, form_pairs, charset)
            return self._render(answer, charset, sign_type)
        if injection.delay:
            time.sleep(injection.delay)
        if injection.html_status is not None:
            return _gateway_html_error(injection.html_status)
        if injection.gbk_error:
            answer = _Answer("error_response", injection.error())
            response = self._render(answer, "GBK", sign_type, injection)
            response.headers["Content-Type"] = f"text/html;charset={charset}"
            return response
        if injection.sub_code is not None:
            answer = self._injected_error(record.method, injection)
        else:
            answer = self._process(record, query_pairs, form_pairs, charset)
        return self._render(answer, charset, sign_type, injection)

    @staticmethod
    def _injected_error(method: str | None, injection: Injection) -> _Answer:
        if method == USER_INFO_METHOD:
            return _Answer(_node_name(method), injection.error())
        return _Answer("error_response", injection.error())

    def _process(
        self,
        record: GatewayRequest,
        query_pairs: list[tuple[str, str]],
        form_pairs: list[tuple[str, str]],
        charset: str,
    ) -> _Answer:
        """Check the request as the real gateway does, then run the method."""
        try:
            self._check_charset(record.charset)
            _check_placement(query_pairs, form_pairs)
            params = record.params
            app_key = self._check_app(params.get("app_id"))
            _check_required(params)
            self._check_timestamp(params["timestamp"])
            sign_type = _check_sign_type(params["sign_type"])
            _check_signature(record, app_key, sign_type, charset)
            if self._pki is not None:
                self._check_cert_sns(params)
            return self._run_method(params)
        except _Refused as refused:
            return _Answer("error_response", refused.error)

    @staticmethod
    def _check_charset(named: str | None) -> None:
        if not named:
            raise _invalid(
                "isv.invalid-signature",
                "验签出错，请确认charset参数放在了URL查询字符串中",
            )
        if _wire_charset(named) is None:
            raise _invalid("isv.invalid-charset", f"字符集错误：{named}，仅支持utf-8和GBK")

    def _check_app(self, app_id: str | None) -> RSAPublicKey:
        if not app_id:
            raise _missing("isv.missing-app-id", "缺少AppID参数")
        with self._lock:
            known = app_id in self.apps
            key = self.apps.get(app_id)
        if not known:
            raise _invalid("isv.invalid-app-id", "无效的AppID参数")
        if key is None:
            raise _invalid(
                "isv.missing-signature-config",
                "验签出错, 未配置对应签名算法的公钥或者证书",
            )
        return key

    def _check_cert_sns(self, params: Mapping[str, str]) -> None:
        """Certificate mode: the signed common parameters must name the app's current
        certificate and the root bundle, as Alipay checks them."""
        with self._lock:
            issued = self._app_certs.get(params["app_id"])
        if issued is None or params.get("app_cert_sn") != issued.sn:
            raise _invalid("isv.app-cert-not-exist", "应用公钥证书不存在")
        if params.get("alipay_root_cert_sn") != self._certs().root_sn:
            raise _invalid("invalid-alipay-root-cert-sn", "无效支付宝根证书序列号")

    def _check_timestamp(self, timestamp: str) -> None:
        """Alipay reads the timestamp as Beijing time, whatever the caller's zone."""
        if not _TIMESTAMP.fullmatch(timestamp):
            raise _invalid("isv.invalid-timestamp", "非法的时间戳参数")
        try:
            sent = datetime.strptime(timestamp, TIMESTAMP_FORMAT)
        except ValueError:
            raise _invalid("isv.invalid-timestamp", "非法的时间戳参数") from None
        if abs((sent - beijing_now()).total_seconds()) > self.timestamp_tolerance:
            raise _invalid(
                "isv.invalid-timestamp",
                "非法的时间戳参数，请使用北京时间（UTC+8）",
            )

    def _run_method(self, params: dict[str, str]) -> _Answer:
        method = params["method"]
        if method == TOKEN_METHOD:
            return self._oauth_token(params)
        if method == USER_INFO_METHOD:
            return self._user_info(params)
        raise _invalid("isv.invalid-method", "不存在的方法名")

    # -- alipay.system.oauth.token -------------------------------------------

    def _oauth_token(self, params: dict[str, str]) -> _Answer:
        app_id = params["app_id"]
        grant_type = params.get("grant_type")
        if grant_type == "authorization_code":
            grant = self._redeem_code(params.get("code", ""), app_id)
        elif grant_type == "refresh_token":
            grant = self._redeem_refresh_token(params.get("refresh_token", ""), app_id)
        else:
            raise _invalid("isv.grant-type-invalid", "grant_type参数不正确")
        return self._issue_tokens(grant)

    def _redeem_code(self, code: str, app_id: str) -> _Grant:
        """Codes are single-use: burned here whether or not the exchange succeeds."""
        with self._lock:
            grant = self._codes.pop(code, None)
        if grant is None or grant.app_id != app_id or grant.expired():
            raise _invalid("isv.code-invalid", "授权码code无效")
        return grant

    def _redeem_refresh_token(self, token: str, app_id: str) -> _Grant:
        with self._lock:
            grant = self._refresh_tokens.pop(token, None)
        if grant is None or grant.app_id != app_id:
            raise _invalid("isv.refresh-token-invalid", "刷新令牌refresh_token无效")
        if grant.expired():
            raise _invalid("isv.refresh-token-time-out", "刷新令牌refresh_token已过期")
        return grant

    def _issue_tokens(self, grant: _Grant) -> _Answer:
        prefix = "authusrB" if grant.scope == "auth_user" else "authbseB"
        access_token = prefix + secrets.token_hex(16)
        refresh_token = prefix + secrets.token_hex(16)
        now = time.monotonic()
        with self._lock:
            self._access_tokens[access_token] = _Grant(
                grant.app_id, grant.user_key, grant.scope, now + self.token_ttl
            )
            self._refresh_tokens[refresh_token] = _Grant(
                grant.app_id, grant.user_key, grant.scope, now + self.refresh_ttl
            )
            user = self.users[grant.user_key]
        expires_in: int | str = self.token_ttl
        re_expires_in: int | str = self.refresh_ttl
        if self.expires_as_string:
            expires_in, re_expires_in = str(expires_in), str(re_expires_in)
        data: dict[str, Any] = {
            "access_token": access_token,
            "auth_start": beijing_now().strftime(TIMESTAMP_FORMAT),
            "expires_in": expires_in,
            "re_expires_in": re_expires_in,
            "refresh_token": refresh_token,
        }
        data.update(user.identity())
        return _Answer(_node_name(TOKEN_METHOD), dict(sorted(data.items())))

    # -- alipay.user.info.share ----------------------------------------------

    def _user_info(self, params: dict[str, str]) -> _Answer:
        """Token problems answer inside the node with 20001, not in error_response."""
        with self._lock:
            grant = self._access_tokens.get(params.get("auth_token", ""))
        if grant is None or grant.app_id != params["app_id"]:
            return _token_refused("aop.invalid-auth-token", "无效的访问令牌")
        if grant.expired():
            return _token_refused("aop.auth-token-time-out", "访问令牌已过期")
        if grant.scope != "auth_user":
            return _token_refused("aop.invalid-auth-token", "无效的访问令牌")
        with self._lock:
            user = self.users[grant.user_key]
        profile = user.profile()
        if profile.get("avatar", "").startswith(AVATAR_PATH):
            profile["avatar"] = request.host_url.rstrip("/") + profile["avatar"]
        data: dict[str, Any] = {"code": "10000", "msg": "Success", **profile}
        return _Answer(_node_name(USER_INFO_METHOD), data)

    # -- answers -------------------------------------------------------------

    def _render(
        self,
        answer: _Answer,
        charset: str,
        sign_type: str,
        injection: Injection | None = None,
    ) -> Response:
        """``{"<node>":{...},"sign":"..."}`` with the node's exact bytes signed; in
        certificate mode ``"alipay_cert_sn"`` sits between the node and ``"sign"``."""
        with self._lock:  # key and SN together, even while rotate_alipay_cert() runs
            key = self._private_key
            alipay_cert_sn = self._pki.alipay.sn if self._pki is not None else None
        node_text = _alipay_json(answer.data, charset)
        parts = [f"{{{json.dumps(answer.node)}:{node_text}"]
        if alipay_cert_sn is not None:
            parts.append(f',"alipay_cert_sn":"{alipay_cert_sn}"')
        if injection is None or not injection.unsigned:
            signature = self._sign(node_text, key, charset, sign_type, injection)
            parts.append(f',"sign":"{signature}"')
        parts.append("}")
        body = "".join(parts).encode(charset)
        if injection is not None and injection.truncated:
            body = body[: len(body) // 2]
        return Response(body, status=200, content_type=f"text/html;charset={charset}")

    def _sign(
        self,
        node_text: str,
        key: RSAPrivateKey,
        charset: str,
        sign_type: str,
        injection: Injection | None,
    ) -> str:
        if self.sign_unescaped_slashes:
            node_text = node_text.replace("\\/", "/")
        if injection is not None and injection.wrong_key:
            key = self._other_key()
        signature = sign_text(node_text, key, sign_type, charset)
        if injection is not None and injection.bad_signature:
            signature = _corrupt(signature)
        return signature

    def _other_key(self) -> RSAPrivateKey:
        with self._lock:
            if self._wrong_key is None:
                self._wrong_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            return self._wrong_key


def _json(data: Mapping[str, Any], status: int = 200) -> Response:
    return Response(
        json.dumps(data, ensure_ascii=False),
        status=status,
        content_type="application/json; charset=utf-8",
    )


#: What each :meth:`AlipayEmulator.inject` argument accepts over the control channel.
_INJECT_TEXT = ("method", "sub_code", "sub_msg")
_INJECT_REQUIRED_TEXT = ("code", "msg")
_INJECT_FLAGS = ("bad_signature", "wrong_key", "unsigned", "gbk_error", "truncated")


def _injection_arguments(data: object) -> dict[str, Any]:
    """``inject()`` keyword arguments from a JSON body, checked; ValueError says why not."""
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object of inject() arguments")
    known = {field.name for field in dataclasses.fields(Injection)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown inject() arguments: {', '.join(unknown)}")
    for name, value in data.items():
        if name in _INJECT_TEXT:
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} must be a string or null")
        elif name in _INJECT_REQUIRED_TEXT:
            if not isinstance(value, str):
                raise ValueError(f"{name} must be a string")
        elif name in _INJECT_FLAGS:
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false")
        elif name == "delay":
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 <= value <= MAX_CONTROL_DELAY
            ):
                raise ValueError(f"delay must be a number of seconds in [0, {MAX_CONTROL_DELAY:g}]")
        elif name == "html_status":
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 599
            ):
                raise ValueError("html_status must be an HTTP status (100-599) or null")
        elif name == "times" and (
            isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000
        ):
            raise ValueError("times must be a whole number from 1 to 1000000")
    return dict(data)


def _error_body(problem: str) -> str:
    return f"<h1>授权失败 · Authorization error</h1><p>{html.escape(problem)}</p>"


def _gateway_html_error(status: int) -> Response:
    """What a proxy in front of the gateway shows when it is down: HTML, not JSON."""
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    page = (
        f"<html><head><title>{status} {phrase}</title></head><body>"
        f"<center><h1>{status} {phrase}</h1></center><hr><center>Tengine</center>"
        "</body></html>"
    )
    return Response(page, status=status, content_type="text/html")


def _check_placement(query_pairs: list[tuple[str, str]], form_pairs: list[tuple[str, str]]) -> None:
    """The SDKs' split, enforced: common params in the query, the rest in the body.

    The real gateway is laxer about some of this; the emulator is strict so a
    client's split is tested.
    """
    for name, _ in form_pairs:
        if name in QUERY_PARAMS:
            raise _invalid(
                "isv.invalid-parameter",
                f"公共参数{name}应放在URL查询字符串中 (common parameter {name} "
                "belongs in the query string)",
            )
    for name, _ in query_pairs:
        if name not in QUERY_PARAMS and name not in OPTIONAL_QUERY_PARAMS:
            raise _invalid(
                "isv.invalid-parameter",
                f"业务参数{name}应放在请求体中 (parameter {name} belongs in the form body)",
            )
    for pairs in (query_pairs, form_pairs):
        names = [name for name, _ in pairs]
        for name in names:
            if names.count(name) > 1:
                raise _invalid("isv.invalid-parameter", f"参数{name}重复 (repeated)")


def _check_required(params: Mapping[str, str]) -> None:
    required = (
        ("method", "isv.missing-method", "缺少方法名参数"),
        ("timestamp", "isv.missing-timestamp", "缺少时间戳参数"),
        ("sign_type", "isv.missing-signature-type", "缺少签名类型参数"),
        ("sign", "isv.missing-signature", "缺少签名参数"),
        ("version", "isv.missing-version", "缺少版本参数"),
    )
    for name, sub_code, sub_msg in required:
        if not params.get(name):
            raise _missing(sub_code, sub_msg)
    if params.get("format", "JSON").upper() != "JSON":
        raise _invalid("isv.invalid-format", "无效的数据格式")


def _check_sign_type(sign_type: str) -> str:
    if sign_type not in SIGN_TYPES:
        raise _invalid("isv.invalid-signature-type", "无效的签名类型")
    return sign_type


def _check_signature(
    record: GatewayRequest, key: RSAPublicKey, sign_type: str, charset: str
) -> None:
    """Verify the string to sign in the request charset; on failure quote it, as the
    real gateway does, so a client can diff it against its own."""
    content = record.string_to_sign.encode(charset, errors="replace")
    if not verify_signature(content, record.params["sign"], key, sign_type):
        raise _invalid(
            "isv.invalid-signature",
            "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配，"
            f"网关生成的验签字符串为：{record.string_to_sign}",
        )
