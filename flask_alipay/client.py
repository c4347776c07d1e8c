"""Authlib's OAuth 2 client, customised for Alipay's signed gateway.

This is the one place that does HTTP.  Authlib keeps doing what it does well
(state per value in the session, the authorize redirect, ``fetch_token`` with
its auth-method and compliance-hook seams); Alipay's differences plug into
those seams:

* the authorize URL carries ``app_id`` and no ``response_type``;
* the callback carries ``auth_code``, not ``code``;
* the token request is signed with RSA in a custom token-endpoint auth method,
  common parameters in the query string and business ones in the body;
* answers are verified and unwrapped in compliance hooks.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

import requests
from authlib.common.urls import add_params_to_uri, url_decode
from authlib.integrations.flask_client import FlaskIntegration, FlaskOAuth2App
from authlib.integrations.requests_client.oauth2_session import OAuth2ClientAuth
from authlib.oauth2.client import OAuth2Client
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from flask import request, session
from flask.sessions import SessionMixin

from .config import AlipayConfig
from .errors import AlipayError, redact
from .signing import (
    AnswerFormatError,
    SignedAnswer,
    parse_answer,
    sign_text,
    string_to_sign,
    verify_signature,
)

__all__ = ["TOKEN_METHOD", "USER_INFO_METHOD", "AlipayOAuth2App", "Gateway"]

log = logging.getLogger("flask_alipay")

TOKEN_METHOD = "alipay.system.oauth.token"
USER_INFO_METHOD = "alipay.user.info.share"
AUTH_METHOD_NAME = "alipay_rsa"

#: Gateway answers larger than this are refused unread.
MAX_ANSWER_BYTES = 1024 * 1024
#: Pending sign-ins kept per session; older ones are dropped (4 KB cookie).
MAX_PENDING_LOGINS = 5
#: Seconds a ``state`` stays valid.
STATE_TTL = 600

_BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
#: Parameters the gateway reads from the query string (ALIPAY.md §5).
_COMMON = ("app_id", "method", "format", "charset", "sign_type", "timestamp", "version")
#: Token-request parameters that may reach Alipay; Authlib adds others.
_TOKEN_BODY = ("grant_type", "code", "refresh_token")
_IDENTITY = ("user_id", "open_id", "union_id")


class RedactingFilter(logging.Filter):
    """Hide secrets in other libraries' log lines.

    urllib3 logs each request line at DEBUG, and ``auth_token`` rides in the
    gateway's query string; Werkzeug's access log shows the callback's
    ``auth_code``.  Both loggers get this filter once, at import.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_REDACTING_FILTER = RedactingFilter()
for _name in ("urllib3.connectionpool", "werkzeug"):
    logging.getLogger(_name).addFilter(_REDACTING_FILTER)


def beijing_timestamp(now: datetime | None = None) -> str:
    """The gateway's timestamp: Beijing time whatever this server's zone is."""
    moment = (now or datetime.now(timezone.utc)).astimezone(_BEIJING)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


class GatewaySession(requests.Session):
    """A keep-alive session whose failures are AlipayErrors that quote no URL.

    requests puts the URL, and so ``auth_token``, into its exception messages;
    the errors raised here are built outside the ``except`` so that no chained
    exception carries it either.
    """

    def request(  # type: ignore[override]
        self, method: str, url: str, *args: Any, **kwargs: Any
    ) -> requests.Response:
        kwargs["stream"] = True
        failure: AlipayError | None = None
        try:
            response = super().request(method, url, *args, **kwargs)
            _read_bounded(response)
        except requests.Timeout:
            failure = AlipayError(
                "The Alipay gateway timed out.", reason="timeout", status_code=504
            )
        except requests.RequestException:
            failure = AlipayError("The Alipay gateway could not be reached.", reason="unreachable")
        if failure is not None:
            raise failure
        return response


def _read_bounded(response: requests.Response) -> None:
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_content(65536):
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise AlipayError("The Alipay gateway's answer is too large.", reason="malformed")
            chunks.append(chunk)
    finally:
        response.close()
    response._content = b"".join(chunks)


class Gateway:
    """One Alipay app's gateway: signs requests, sends them, verifies answers.

    Built once per app at ``init_app``, holding the parsed keys and the one
    keep-alive ``requests.Session``.
    """

    def __init__(self, config: AlipayConfig) -> None:
        self.config = config
        self.http = GatewaySession()
        self.http.headers["User-Agent"] = "Flask-Alipay-Login"
        # requests re-reads proxies, CA bundle and ~/.netrc from the environment on
        # every call (0.1-1.5 ms); read them once here instead.  No netrc credentials
        # are ever sent to the gateway.
        env = self.http.merge_environment_settings(config.gateway_url, {}, None, None, None)
        self.http.proxies.update(env["proxies"])
        self.http.verify = env["verify"]
        self.http.trust_env = False

    def signed_request(
        self,
        method: str,
        business: Mapping[str, str],
        *,
        auth_token: str | None = None,
    ) -> tuple[str, bytes, dict[str, str]]:
        """(url, body, headers): common params and ``sign`` in the query, the rest in the body."""
        cfg = self.config
        common = {
            "app_id": cfg.app_id,
            "method": method,
            "format": "JSON",
            "charset": cfg.charset,
            "sign_type": cfg.sign_type,
            "timestamp": beijing_timestamp(),
            "version": "1.0",
        }
        if auth_token:
            common["auth_token"] = auth_token
        if cfg.app_cert_sn and cfg.alipay_root_cert_sn:
            common["app_cert_sn"] = cfg.app_cert_sn
            common["alipay_root_cert_sn"] = cfg.alipay_root_cert_sn
        text = string_to_sign({**business, **common})
        if log.isEnabledFor(logging.DEBUG):
            log.debug("string to sign for %s: %s", method, redact(text))
        common["sign"] = sign_text(text, cfg.private_key, cfg.sign_type, cfg.charset)
        separator = "&" if "?" in cfg.gateway_url else "?"
        url = cfg.gateway_url + separator + urlencode(common, encoding=cfg.charset)
        body = urlencode(business, encoding=cfg.charset).encode("ascii")
        headers = {
            "Content-Type": f"application/x-www-form-urlencoded;charset={cfg.charset}",
            "Accept": "application/json",
        }
        return url, body, headers

    def call(
        self,
        method: str,
        business: Mapping[str, str] | None = None,
        *,
        auth_token: str | None = None,
    ) -> dict[str, Any]:
        """A signed, verified gateway call; returns the answer's node."""
        url, body, headers = self.signed_request(method, business or {}, auth_token=auth_token)
        response = self.http.post(url, data=body, headers=headers, timeout=self.config.timeout)
        return self.read_answer(method, response)

    def read_answer(self, method: str, response: requests.Response) -> dict[str, Any]:
        """Verify an answer and return its node, or raise AlipayError."""
        if response.status_code != 200:
            raise AlipayError(
                f"The Alipay gateway answered HTTP {response.status_code}.",
                reason="malformed",
            )
        node = method.replace(".", "_") + "_response"
        try:
            answer = parse_answer(response.content, node, self.config.charset)
        except AnswerFormatError as error:
            raise AlipayError(
                f"The Alipay gateway's answer is malformed: {error}.", reason="malformed"
            ) from None
        data = answer.data
        is_error = answer.node == "error_response" or (
            "code" in data and str(data["code"]) != "10000"
        )
        if answer.sign or not is_error:
            self._check_signature(answer)
        if is_error:
            raise _alipay_error(data)
        return data

    def _verifying_key(self, answer: SignedAnswer) -> RSAPublicKey | None:
        """Alipay's public key, or in certificate mode the certificate the answer names."""
        cfg = self.config
        if not cfg.cert_mode:
            return cfg.alipay_public_key
        if not answer.cert_sn:
            raise AlipayError("Alipay's answer names no alipay_cert_sn.", reason="signature")
        key = cfg.alipay_certs.get(answer.cert_sn)
        if key is None:
            raise AlipayError(
                f"Alipay's answer is signed with certificate {answer.cert_sn[:40]}, "
                "which ALIPAY_ALIPAY_CERT does not hold.",
                reason="cert_rotated",
            )
        return key

    def _check_signature(self, answer: SignedAnswer) -> None:
        key = self._verifying_key(answer)
        if key is None:
            return
        if not answer.sign:
            raise AlipayError("Alipay's answer is not signed.", reason="signature")
        if not verify_signature(answer.content, answer.sign, key, self.config.sign_type):
            raise AlipayError(
                "Alipay's answer did not verify with ALIPAY_PUBLIC_KEY.",
                reason="signature",
            )

    # Authlib seams ------------------------------------------------------

    def sign_token_request(
        self,
        client_auth: Any,
        http_method: str,
        uri: str,
        headers: dict[str, str],
        body: str | bytes | None,
    ) -> tuple[str, dict[str, str], bytes]:
        """Authlib token-endpoint auth method: rewrite the request as a signed one."""
        text = body.decode("utf-8") if isinstance(body, bytes) else (body or "")
        sent = dict(url_decode(text))
        business = {name: sent[name] for name in _TOKEN_BODY if sent.get(name)}
        url, signed_body, signed_headers = self.signed_request(TOKEN_METHOD, business)
        headers.update(signed_headers)
        return url, headers, signed_body

    def unwrap_token_response(self, response: requests.Response) -> requests.Response:
        """Authlib compliance hook: verify the answer, then hand Authlib a flat token."""
        token = normalise_token(self.read_answer(TOKEN_METHOD, response))
        response._content = json.dumps(token).encode("utf-8")
        return response


def normalise_token(node: Mapping[str, Any]) -> dict[str, Any]:
    """The token as we promise it: ints for lifetimes, ``expires_at`` in epoch seconds."""
    access_token = node.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise AlipayError("Alipay's token answer has no access_token.", reason="malformed")
    token: dict[str, Any] = {"access_token": access_token, "token_type": "Bearer"}
    refresh_token = node.get("refresh_token")
    if isinstance(refresh_token, str) and refresh_token:
        token["refresh_token"] = refresh_token
    now = int(time.time())
    for name in ("expires_in", "re_expires_in"):
        if node.get(name) is not None:
            token[name] = _seconds(node[name], name)
    if "expires_in" in token:
        token["expires_at"] = now + token["expires_in"]
    for name in (*_IDENTITY, "auth_start"):
        value = node.get(name)
        if isinstance(value, (str, int)) and str(value):
            token[name] = str(value)
    return token


def _seconds(value: Any, name: str) -> int:
    # Documented as strings, usually sent as numbers: accept both.
    try:
        seconds = int(str(value).strip())
    except ValueError:
        raise AlipayError(f"Alipay's token answer has a bad {name}.", reason="malformed") from None
    if seconds < 0:
        raise AlipayError(f"Alipay's token answer has a bad {name}.", reason="malformed")
    return seconds


def _alipay_error(data: Mapping[str, Any]) -> AlipayError:
    sub_code = str(data.get("sub_code") or "") or None
    code = str(data.get("code") or "") or None
    status = 400 if sub_code == "isv.code-invalid" else 502
    return AlipayError(
        "Alipay refused the request.",
        reason="alipay",
        code=code,
        sub_code=sub_code,
        sub_msg=str(data.get("sub_msg") or data.get("msg") or "") or None,
        status_code=status,
    )


class AlipayOAuth2Client(OAuth2Client):  # type: ignore[misc]
    """Authlib's OAuth2Client speaking Alipay; cheap, made per call.

    The per-call client holds Authlib's per-flow state; the shared
    ``GatewaySession`` underneath keeps connections alive across calls.
    """

    client_auth_class = OAuth2ClientAuth
    SESSION_REQUEST_PARAMS = ("timeout",)

    def __init__(self, gateway: Gateway) -> None:
        cfg = gateway.config
        super().__init__(
            session=gateway.http,
            client_id=cfg.app_id,
            token_endpoint_auth_method=AUTH_METHOD_NAME,
            scope=cfg.scope,
            token_endpoint=cfg.gateway_url,
        )
        self.register_client_auth_method((AUTH_METHOD_NAME, gateway.sign_token_request))
        self.register_compliance_hook("access_token_response", gateway.unwrap_token_response)
        self.register_compliance_hook("refresh_token_response", gateway.unwrap_token_response)

    def create_authorization_url(
        self, url: str, state: str | None = None, code_verifier: str | None = None, **kwargs: Any
    ) -> tuple[str, str]:
        """Alipay's authorize URL: ``app_id``, ``scope``, ``redirect_uri``, ``state``."""
        state = state or secrets.token_hex(24)  # 48 alphanumerics, 192 bits
        params = [
            ("app_id", self.client_id),
            ("scope", kwargs.get("scope") or self.scope),
            ("redirect_uri", kwargs.get("redirect_uri") or self.redirect_uri),
            ("state", state),
        ]
        return add_params_to_uri(url, params), state

    def __enter__(self) -> AlipayOAuth2Client:
        return self

    def __exit__(self, *exc: object) -> None:
        """The gateway session outlives this client, so nothing is closed."""


class StateStore(FlaskIntegration):  # type: ignore[misc]
    """Authlib's per-state session storage, with a TTL it enforces and a bound.

    Each pending sign-in has its own slot, so two tabs both finish; at most
    MAX_PENDING_LOGINS are kept so abandoned ones cannot grow the cookie.
    """

    expires_in = STATE_TTL

    def _keys(self, session: SessionMixin) -> list[str]:
        prefix = f"_state_{self.name}_"
        return [key for key in session if key.startswith(prefix) and key[len(prefix) :].isalnum()]

    def get_state_data(self, session: SessionMixin, state: str | None) -> Any:
        if not state or len(state) > 100 or not state.isalnum():
            return None
        entry = session.get(f"_state_{self.name}_{state}")
        if not isinstance(entry, dict) or entry.get("exp", 0) < time.time():
            return None
        return entry.get("data")

    def set_state_data(self, session: SessionMixin, state: str, data: Any) -> None:
        now = time.time()
        pending = sorted(
            (session[key].get("exp", 0) if isinstance(session[key], dict) else 0, key)
            for key in self._keys(session)
        )
        for exp, key in pending:
            if exp < now:
                session.pop(key)
        pending = [(exp, key) for exp, key in pending if exp >= now]
        while len(pending) >= MAX_PENDING_LOGINS:
            session.pop(pending.pop(0)[1])
        super().set_state_data(session, state, data)


class AlipayOAuth2App(FlaskOAuth2App):  # type: ignore[misc]
    """Authlib's Flask client app, reading ``auth_code`` and sharing one gateway."""

    def __init__(self, gateway: Gateway, name: str) -> None:
        cfg = gateway.config
        super().__init__(
            StateStore(name),
            name=name,
            client_id=cfg.app_id,
            authorize_url=cfg.authorize_url,
            access_token_url=cfg.gateway_url,
        )
        self.gateway = gateway

    def _get_oauth_client(self, **metadata: Any) -> AlipayOAuth2Client:
        return AlipayOAuth2Client(self.gateway)

    def start(self, redirect_uri: str, next_url: str) -> str:
        """Create the authorize URL and remember this sign-in under its state."""
        rv = self.create_authorization_url(redirect_uri)
        self.framework.set_state_data(
            session, rv["state"], {"redirect_uri": redirect_uri, "next": next_url}
        )
        return str(rv["url"])

    def authorize_access_token(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Check the callback and exchange ``auth_code``: (token, state data).

        The state is spent before anything else, so a failed or replayed
        callback cannot be retried with it.
        """
        state = request.args.get("state")
        state_data = self.framework.get_state_data(session, state)
        if state:
            self.framework.clear_state_data(session, state)
        if not isinstance(state_data, dict):
            raise AlipayError(
                "This sign-in link has expired or was already used.",
                reason="state",
                status_code=400,
            )
        app_id = request.args.get("app_id")
        if app_id is not None and app_id != self.client_id:
            raise AlipayError(
                "The callback is for another Alipay app.", reason="app_id", status_code=400
            )
        auth_code = request.args.get("auth_code", "")
        if not auth_code or len(auth_code) > 256:
            raise AlipayError(
                "Alipay did not return an auth_code: the sign-in was cancelled.",
                reason="cancelled",
                status_code=400,
            )
        params = self._format_state_params(state_data, {"code": auth_code})
        token = self.fetch_access_token(**params, timeout=self.gateway.config.timeout, **kwargs)
        return dict(token), state_data
