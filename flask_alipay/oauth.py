"""Authlib's Flask OAuth 2 client, speaking Alipay through its public seams.

Authlib keeps doing what it does well: per-state storage in the session with
an expiry (so two tabs both finish), the authorize URL, and ``fetch_token`` /
``refresh_token``.  Alipay's differences plug into the seams Authlib documents:

* ``client_cls`` and ``client_kwargs``: our client is Authlib's OAuth2Client
  whose ``session`` is the app's Gateway, so every byte goes through gateway/;
* a client auth method signs the token request (common parameters in the
  query, business ones in the body);
* compliance hooks verify the answer and hand Authlib the token node, which
  Authlib then reads once, as it reads any token;
* the Flask integration's state storage, with a TTL we enforce and a bound.

Nothing here touches Flask's request globals: the views pass the session in.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any

from authlib.common.urls import add_params_to_uri, url_decode
from authlib.integrations.flask_client import FlaskIntegration, FlaskOAuth2App
from authlib.oauth2.client import OAuth2Client
from flask.sessions import SessionMixin

from .errors import AppIdMismatch, InvalidState, SignInCancelled
from .gateway import Gateway, GatewayReply
from .protocol import TOKEN_METHOD, normalise_token
from .redirects import stored_size

__all__ = [
    "MAX_PENDING_LOGINS",
    "STATE_TTL",
    "AlipayOAuth2App",
    "AlipayOAuth2Client",
    "StateStore",
    "callback_code",
    "valid_code",
]

AUTH_METHOD_NAME = "alipay_rsa"
#: Pending sign-ins kept per session; older ones are dropped.
MAX_PENDING_LOGINS = 5
#: Bytes all pending sign-ins may take in the session, measured as it stores them.
#: With the signed-in identity and base64 on top, the cookie stays under 4,000 bytes.
PENDING_BYTES = 2000
#: Seconds a ``state`` stays valid.
STATE_TTL = 600
#: Longer auth codes are refused before they reach the gateway.
MAX_CODE_LENGTH = 256
#: What an auth_code may hold: Alipay's are hex or alphanumeric, with at most - and _.
_CODE = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_CODE_LENGTH}}}")


class _VerifiedToken:
    """What a compliance hook hands Authlib: a verified token node, already unwrapped.

    Authlib reads a hook's result only through ``status_code`` and ``json()``.
    """

    status_code = 200

    def __init__(self, token: dict[str, Any]) -> None:
        self._token = token

    def json(self) -> dict[str, Any]:
        return self._token


class AlipayOAuth2Client(OAuth2Client):  # type: ignore[misc]
    """Authlib's OAuth2Client with the Gateway as its session; cheap, made per flow.

    FlaskOAuth2App builds it from ``client_cls`` with our ``client_kwargs``.
    """

    def __init__(self, gateway: Gateway, **kwargs: Any) -> None:
        kwargs.pop("client_secret", None)  # Alipay has none; the RSA key never goes here
        kwargs.setdefault("client_id", gateway.config.app_id)
        kwargs.setdefault("token_endpoint", gateway.url)
        super().__init__(session=gateway, token_endpoint_auth_method=AUTH_METHOD_NAME, **kwargs)
        self.gateway = gateway
        self.register_client_auth_method((AUTH_METHOD_NAME, self._sign))
        self.register_compliance_hook("access_token_response", self._unwrap)
        self.register_compliance_hook("refresh_token_response", self._unwrap)

    # FlaskOAuth2App treats client_cls like a requests.Session: it sets a header
    # and opens it in a ``with`` block.  This client owns no connection (the
    # Gateway does, for the app's lifetime), so the block has nothing to close.
    @property
    def headers(self) -> Any:
        return self.gateway.http.headers

    def __enter__(self) -> AlipayOAuth2Client:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def create_authorization_url(
        self, url: str, state: str | None = None, code_verifier: str | None = None, **kwargs: Any
    ) -> tuple[str, str]:
        """Alipay's authorize URL: ``app_id``, ``scope``, ``redirect_uri``, ``state``."""
        state = state or secrets.token_hex(24)  # 48 alphanumerics, 192 bits
        params = [
            ("app_id", self.client_id),
            ("scope", kwargs.get("scope") or self.gateway.config.scope),
            ("redirect_uri", kwargs.get("redirect_uri") or self.redirect_uri),
            ("state", state),
        ]
        return add_params_to_uri(url, params), state

    def _sign(
        self, auth: Any, method: str, uri: str, headers: dict[str, str], body: str
    ) -> tuple[str, dict[str, str], bytes]:
        """Client auth method: Authlib's token request, re-sent as a signed gateway call."""
        request = self.gateway.sign(TOKEN_METHOD, dict(url_decode(body or "")))
        headers.update(request.headers)
        return request.url, headers, request.body

    def _unwrap(self, reply: GatewayReply) -> _VerifiedToken:
        """Compliance hook: verify Alipay's answer and give Authlib the token inside."""
        return _VerifiedToken(normalise_token(self.gateway.read(TOKEN_METHOD, reply)))


class StateStore(FlaskIntegration):  # type: ignore[misc]
    """Authlib's per-state session storage, with a TTL it enforces and a bound.

    Each pending sign-in has its own slot, so two tabs both finish.  At most
    MAX_PENDING_LOGINS are kept, in at most PENDING_BYTES as stored, oldest
    dropped first: sign-ins an attacker starts in a victim's browser cannot
    push the cookie past what browsers accept, and the newest always fits.
    """

    expires_in = STATE_TTL

    def _keys(self, session: SessionMixin) -> list[str]:
        prefix = f"_state_{self.name}_"
        return [key for key in session if key.startswith(prefix) and key[len(prefix) :].isalnum()]

    @staticmethod
    def well_formed(state: str) -> bool:
        return 0 < len(state) <= 100 and state.isalnum()

    def diagnose(self, session: SessionMixin, state: str | None) -> str:
        """Why ``state`` would not be accepted, told apart for the log (see InvalidState)."""
        spent = session.get(self._spent_key)
        if state and isinstance(spent, list) and _digest(state) in spent:
            return "used"
        entry = session.get(f"_state_{self.name}_{state}") if state else None
        if isinstance(entry, dict) and entry.get("exp", 0) < time.time():
            return "expired"
        if not self._keys(session) and not spent:
            return "no_pending"
        return "unknown"

    @property
    def _spent_key(self) -> str:
        return f"_{self.name}_spent_states"

    def mark_spent(self, session: SessionMixin, state: str) -> None:
        """Remember the last few spent states (as short digests) to name a replay as one."""
        spent = session.get(self._spent_key)
        spent = spent if isinstance(spent, list) else []
        session[self._spent_key] = [*spent[-(MAX_PENDING_LOGINS - 1) :], _digest(state)]

    def get_state_data(self, session: SessionMixin, state: str | None) -> Any:
        if not state or not self.well_formed(state):
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
        new_key = f"_state_{self.name}_{state}"
        new_size = stored_size({new_key: {"data": data, "exp": now + self.expires_in}})
        sizes = {key: stored_size({key: session[key]}) for _, key in pending}
        while pending and (
            len(pending) >= MAX_PENDING_LOGINS or sum(sizes.values()) + new_size > PENDING_BYTES
        ):
            _, oldest = pending.pop(0)
            session.pop(oldest)
            sizes.pop(oldest)
        super().set_state_data(session, state, data)


class AlipayOAuth2App(FlaskOAuth2App):  # type: ignore[misc]
    """One app's Authlib client: start a sign-in, take its state back, trade codes."""

    client_cls = AlipayOAuth2Client

    def __init__(self, gateway: Gateway, name: str) -> None:
        cfg = gateway.config
        super().__init__(
            StateStore(name),
            name=name,
            client_id=cfg.app_id,
            authorize_url=cfg.authorize_url,
            access_token_url=cfg.gateway_url,
            client_kwargs={"gateway": gateway},
            user_agent="Flask-Alipay-Login",
        )
        self.gateway = gateway

    def begin(self, session: SessionMixin, redirect_uri: str, next_url: str) -> str:
        """The authorize URL for a new sign-in, remembered in ``session`` under its state."""
        rv = self.create_authorization_url(redirect_uri)
        self.framework.set_state_data(session, rv["state"], {"next": next_url})
        return str(rv["url"])

    def handoff_url(self, redirect_uri: str, state: str) -> str:
        """An authorize URL whose ``state`` is kept elsewhere (a hand-off state), not here."""
        return str(self.create_authorization_url(redirect_uri, state=state)["url"])

    def take_state(self, session: SessionMixin, state: str | None) -> dict[str, Any]:
        """The pending sign-in for ``state``, spent at once so a callback cannot be replayed."""
        store: StateStore = self.framework
        case = store.diagnose(session, state)
        data = store.get_state_data(session, state)
        if state and store.well_formed(state):
            store.clear_state_data(session, state)
        if not isinstance(data, dict):
            raise InvalidState(case=case)
        store.mark_spent(session, str(state))
        return data

    def exchange(self, auth_code: str) -> dict[str, Any]:
        """Trade an ``auth_code`` for a verified token through Authlib's ``fetch_token``."""
        return dict(self.fetch_access_token(code=auth_code))

    def refresh(self, refresh_token: str) -> dict[str, Any]:
        """Trade a refresh token for a new verified token through Authlib's ``refresh_token``."""
        client = self.client_cls(self.gateway)
        return dict(client.refresh_token(self.gateway.url, refresh_token=refresh_token))


def _digest(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()[:12]


def callback_code(args: Mapping[str, str], app_id: str) -> str:
    """The ``auth_code`` of a callback meant for ``app_id``, or the 400 it deserves."""
    echoed = args.get("app_id")
    if echoed is not None and echoed != app_id:
        raise AppIdMismatch("The callback is for another Alipay app.")
    auth_code = args.get("auth_code", "")
    if not auth_code:
        raise SignInCancelled("Alipay did not return an auth_code: the sign-in was cancelled.")
    return valid_code(auth_code)


def valid_code(auth_code: str) -> str:
    """An auth_code as Alipay issues them, or the 400 it deserves.

    Alipay's codes are short and alphanumeric; anything else is not Alipay's,
    and never reaches the gateway or a log line.
    """
    if not _CODE.fullmatch(auth_code):
        raise SignInCancelled("The auth_code is not one Alipay issues.")
    return auth_code
