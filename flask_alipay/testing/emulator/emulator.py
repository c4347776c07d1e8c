"""AlipayEmulator: the facade that composes the layers and keeps the public API.

Each layer lives in its own module (see the package docstring); this one wires
them into one Flask app and holds the settings tests read and change.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from flask import Flask

from flask_alipay.keys import load_public_key, public_key_base64

from .clients import NativeClients
from .control import add_control_routes
from .gateway import GatewayView
from .methods import Methods
from .pages import Pages
from .paths import AUTHORIZE_PATH, AVATAR_PATH, GATEWAY_PATH
from .pki import AlipayKeys, write_cert_files
from .pointing import Pointed
from .server import EmulatorServer
from .state import AUTO, EmulatedUser, GatewayRequest, Injection, State, _Auto

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["AlipayEmulator"]


class AlipayEmulator(NativeClients):
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

    ``strict=True`` refuses parameters outside the SDKs' query/body split (the real
    gateway answers them); ``timestamp_tolerance`` is the timestamp window, seconds.

    With ``control=True`` another process can steer it over HTTP (off by
    default, when those paths answer 404): ``POST /_emulator/inject`` with a
    JSON object of :meth:`inject` keyword arguments (``method`` included),
    ``POST /_emulator/reset`` (:meth:`reset`), ``POST /_emulator/rotate`` with a
    JSON object of :meth:`rotate_alipay_cert` arguments (certificate mode; answers
    the new SN), ``GET /_emulator/stats`` (call counts and pending injections,
    :meth:`stats`) and ``GET /_emulator/users`` (every user's ids and profile, by key).
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
        strict: bool = False,
    ) -> None:
        self.app_id = app_id
        self.auto_approve = auto_approve
        self.code_ttl = code_ttl
        self.token_ttl = token_ttl
        self.refresh_ttl = refresh_ttl
        self.expires_as_string = expires_as_string
        self.sign_unescaped_slashes = sign_unescaped_slashes
        self.timestamp_tolerance = timestamp_tolerance
        self.strict = strict
        self._state = State()
        self._lock = self._state.lock
        self._keys = AlipayKeys(alipay_private_key, cert_mode, self._lock)
        self._pki = self._keys.pki
        # The state's own containers, not copies: the layers and a test see one object.
        self.apps: dict[str, RSAPublicKey | None] = self._state.apps
        self.users: dict[str, EmulatedUser] = self._state.users
        self.requests: list[GatewayRequest] = self._state.requests
        self.injections: list[Injection] = self._state.injections
        self.server: EmulatorServer | None = None
        self._pointed = Pointed()
        self.control = control
        self.register_app(app_id, app_public_key)
        self.default_user = self.add_user(
            "default", nick_name="小明", gender="m", province="浙江省", city="杭州市"
        )
        self.app = self._make_app()

    # -- keys --------------------------------------------------------------

    @property
    def alipay_public_key(self) -> RSAPublicKey:
        """The key that verifies the emulator's answers (Alipay's public key)."""
        return self._keys.private_key.public_key()

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

    @property
    def root_cert_pem(self) -> str:
        """``alipayRootCert.crt`` as Alipay lays it out: blank-line separated PEM blocks, a
        non-RSA (ECC) root first, which must not count in the SN, then an RSA root."""
        return self._keys.certs().root_bundle

    @property
    def alipay_cert_pem(self) -> str:
        """``alipayCertPublicKey_RSA2.crt``: Alipay's certificate alone, as the real file.
        (``alipay.open.app.alipaycert.download`` serves it with its intermediate.)"""
        return self._keys.alipay_cert().pem

    @property
    def alipay_cert_download_pem(self) -> str:
        """What ``alipay.open.app.alipaycert.download`` serves: the certificate, then its
        intermediate (the download, not the file)."""
        return self._keys.alipay_chain(self.alipay_cert_sn) or ""

    def app_cert_pem(self, app_id: str | None = None) -> str:
        """``appCertPublicKey_<APPID>.crt``: the certificate Alipay issued for the app's key."""
        return self._keys.app_cert(app_id or self.app_id).pem

    @property
    def alipay_cert_sn(self) -> str:
        """The SN answers carry in ``alipay_cert_sn``; it changes on :meth:`rotate_alipay_cert`."""
        return self._keys.alipay_cert().sn

    @property
    def root_cert_sn(self) -> str:
        """What the gateway expects in ``alipay_root_cert_sn`` (the RSA root's SN only)."""
        return self._keys.certs().root_sn

    def app_cert_sn(self, app_id: str | None = None) -> str:
        """What the gateway expects in ``app_cert_sn`` from this APPID."""
        return self._keys.app_cert(app_id or self.app_id).sn

    def write_cert_files(self, directory: str | Path, app_id: str | None = None) -> dict[str, Path]:
        """Write the three files an app in certificate mode is configured with, under
        Alipay's file names; return the settings naming them (absolute paths)."""
        app_id = app_id or self.app_id
        pems = self.app_cert_pem(app_id), self.alipay_cert_pem, self.root_cert_pem
        return write_cert_files(directory, app_id, *pems)

    def rotate_alipay_cert(self, new_key: bool = False, *, untrusted: bool = False) -> str:
        """Issue Alipay a new certificate (a new serial, so a new SN), as Alipay does when
        it rotates; with ``new_key`` also a new key pair, which signs answers from now on.

        Apps still holding the old certificate then see an ``alipay_cert_sn`` they do
        not know, and ``alipay.open.app.alipaycert.download`` serves the new one (the
        certificate followed by its intermediate, base64).  With ``untrusted`` the new
        certificate comes from a CA outside the root bundle, so no app may trust it.
        Returns the new SN.
        """
        return self._keys.rotate(new_key, untrusted)

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
            if self._pki is not None:
                self._pki.register_app(app_id, public_key, old_key)

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
        **extra: Any,
    ) -> EmulatedUser:
        """Create an account.  ``id_kind`` picks the ids Alipay gives: new apps get only
        ``open_id``, old ones ``user_id``, apps mid-migration both.  Other keyword
        arguments are profile fields the app was approved for, any JSON value
        (``mobile="138..."``, ``deliver_addresses=[{...}]``), sent by
        ``alipay.user.info.share``."""
        return self._state.add_user(
            key,
            id_kind=id_kind,
            user_id=user_id,
            open_id=open_id,
            union_id=union_id,
            nick_name=nick_name,
            avatar=avatar,
            gender=gender,
            province=province,
            city=city,
            extra=extra,
        )

    def user(self, key: str | None = None) -> EmulatedUser:
        """The user with this key, created on first use; the default user for None."""
        if key is None:
            return self.default_user
        return self._state.user(key)

    def expire_code(self, code: str) -> None:
        """Make an auth_code expired, to test the path without waiting."""
        self._state.expire_code(code)

    def expire_token(self, token: str) -> None:
        """Make an access token or a refresh token expired, to test the path without waiting."""
        self._state.expire_token(token)

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
        return self._state.queue(injection)

    def reset(self) -> None:
        """Forget recorded requests and pending injections between tests."""
        self._state.reset()

    def stats(self) -> dict[str, Any]:
        """Counts since start (:meth:`reset` leaves them): gateway calls by method,
        authorize-page hits, users, and the injections still pending."""
        return self._state.stats()

    # -- serving -------------------------------------------------------------

    def _served_host(self) -> str | None:
        """``host:port`` as a client names it, while serving."""
        return urlsplit(self.server.url).netloc if self.server is not None else None

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
        return self._pointed.point(
            app,
            name,
            cert_mode=self._pki is not None,
            server=self.server,
            alipay_public_key=self.alipay_public_key,
            register_app=self.register_app,
        )

    def unpoint(self) -> None:
        """Give every app that :meth:`point` changed its own settings back."""
        self._pointed.unpoint()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """WSGI, so the emulator can be mounted or served by any server."""
        return self.app(environ, start_response)

    def _make_app(self) -> Flask:
        """One Flask app for every endpoint; the layers provide the views."""
        # The package's name, as when the emulator was one module of that name.
        app = Flask(__name__.rpartition(".")[0])
        pages = Pages(self, self._state)
        gateway = GatewayView(self._state, Methods(self._state, self, self._pki), self._keys, self)
        app.add_url_rule(AUTHORIZE_PATH, "authorize", pages.authorize, methods=["GET", "POST"])
        app.add_url_rule(GATEWAY_PATH, "gateway", gateway.view, methods=["GET", "POST"])
        app.add_url_rule(AVATAR_PATH + "<key>.svg", "avatar", pages.avatar)
        if self.control:
            add_control_routes(
                app, self._state, self.inject, self.rotate_alipay_cert, self._served_host
            )
        return app
