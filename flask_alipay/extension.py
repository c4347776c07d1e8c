"""AlipayLogin: reads the config once, wires the blueprint, keeps per-app state.

A sign-in flows one way from here: views.py -> oauth.py (Authlib) ->
gateway/ (HTTP) -> protocol.py (requests and answers as data) ->
signing.py -> keys.py.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask, current_app, session
from flask.sessions import SecureCookieSessionInterface
from flask.typing import ResponseReturnValue

from .config import AlipayConfig, load_config
from .errors import AlipayConfigError, AlipayError, MalformedAnswer, MissingUserId
from .gateway import Gateway
from .identity import ANONYMOUS, AlipayUser, AnonymousAlipayUser, default_unauthorized, guard
from .logs import log_no_regenerate
from .oauth import AlipayOAuth2App
from .protocol import IDENTITY_FIELDS, USER_INFO_METHOD
from .signals import send, token_refreshed
from .views import as_http_error, make_blueprint

__all__ = ["DIAGNOSING", "AlipayLogin"]

F = TypeVar("F", bound=Callable[..., Any])
U = TypeVar("U", bound=Callable[[], ResponseReturnValue])

#: Set by ``flask alipay check`` while it loads the app, so that a broken config
#: is reported in full by the check instead of stopping the app at init_app.
DIAGNOSING: ContextVar[bool] = ContextVar("flask_alipay_diagnosing", default=False)


@dataclass(frozen=True)
class _AppState:
    """What one app needs per request, built once at ``init_app``."""

    config: AlipayConfig
    gateway: Gateway
    oauth: AlipayOAuth2App


class AlipayLogin:
    """Sign in with Alipay (支付宝登录) for a Flask app.

    ``AlipayLogin(app)``, or ``alipay = AlipayLogin()`` then
    ``alipay.init_app(app)`` in an app factory.  The extension is stored in
    ``app.extensions[name]``; one instance can serve several apps.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        name: str = "alipay",
        config_prefix: str = "ALIPAY_",
    ) -> None:
        if not name.isidentifier():
            raise ValueError(f"name must be a Python identifier; got {name!r}")
        self.name = name
        self.config_prefix = config_prefix
        self._states: weakref.WeakKeyDictionary[Flask, _AppState] = weakref.WeakKeyDictionary()
        self._unauthorized: Callable[[], ResponseReturnValue] | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Validate config, parse keys, register the blueprint; fail fast on mistakes."""
        app.extensions[self.name] = self
        try:
            config = load_config(app.config, self.config_prefix)
            _require_secret_key(app)
            problem = personal_fields_problem(app, config, self.config_prefix)
            if problem:
                raise AlipayConfigError(problem)
        except AlipayConfigError:
            if DIAGNOSING.get():
                return  # `flask alipay check` reports every problem itself
            raise
        self.reconfigure(app, config)
        app.register_blueprint(make_blueprint(self, config.url_prefix))
        if not _has_handler(app, AlipayError):
            # An AlipayError escaping one of the site's own views (alipay.call()
            # in a view, say) is a plain 502/504, not the sign-in error page.
            app.register_error_handler(AlipayError, as_http_error)

    # Per-app state ------------------------------------------------------

    def config_for(self, app: Flask) -> AlipayConfig:
        """The settings ``app`` runs with, outside a request as well."""
        try:
            return self._states[app].config
        except KeyError:
            raise RuntimeError(self._not_initialised()) from None

    def reconfigure(self, app: Flask, config: AlipayConfig) -> None:
        """Run ``app`` with other settings from now on: a new gateway and client.

        For tools that re-point a running app, such as the emulator's
        ``point()``; ``config_for(app)`` beforehand gives what to restore.
        """
        gateway = Gateway(config)
        old = self._states.get(app)
        self._states[app] = _AppState(config, gateway, AlipayOAuth2App(gateway, self.name))
        if old is not None:
            old.gateway.close()

    def session_problem(self, app: Flask) -> str | None:
        """Why ``app``'s session cannot hold a sign-in now, or None; the views ask per request."""
        return request_session_problem(app, self.config_for(app), self.config_prefix)

    def _state(self) -> _AppState:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        try:
            return self._states[app]
        except KeyError:
            raise RuntimeError(self._not_initialised()) from None

    def _not_initialised(self) -> str:
        return (
            f"AlipayLogin {self.name!r} is not initialised on this app: call init_app(app) first."
        )

    @property
    def config(self) -> AlipayConfig:
        """The current app's validated settings."""
        return self._state().config

    @property
    def oauth(self) -> AlipayOAuth2App:
        """The current app's Authlib client app."""
        return self._state().oauth

    @property
    def gateway(self) -> Gateway:
        """The current app's signed gateway."""
        return self._state().gateway

    # Identity -----------------------------------------------------------

    @property
    def session_key(self) -> str:
        return f"_{self.name}_user"

    @property
    def current_user(self) -> AlipayUser | AnonymousAlipayUser:
        """The signed-in user, or the falsy anonymous user; read from the session each time."""
        return self._session_user() or ANONYMOUS

    def _session_user(self) -> AlipayUser | None:
        fields = session.get(self.session_key)
        if not isinstance(fields, dict):
            return None
        try:
            return AlipayUser(fields, self.config.id_field)
        except ValueError:
            return None  # e.g. signed in before ALIPAY_ID_FIELD changed: signed out

    def remember(self, user: AlipayUser) -> None:
        """Store the ids and ``ALIPAY_SESSION_FIELDS`` in the session, under a new session id.

        Never tokens, and by default no personal data beyond nickname and
        avatar: Flask's session is a signed but readable cookie.

        A server-side session keeps its id in the cookie, so an attacker who planted
        an id in the victim's browser would share the signed-in session: the id is
        replaced first (``session_interface.regenerate``, as Flask-Session has it).
        """
        rotate_session_id(current_app, session)
        session[self.session_key] = user.only(self.config.session_fields).to_dict()

    def forget(self) -> AlipayUser | None:
        """Clear the identity; return who was signed in."""
        user = self._session_user()
        session.pop(self.session_key, None)
        return user

    def login_required(self, view: F) -> F:
        """``@login_required`` for this instance."""
        return guard(lambda: self, view)

    def unauthorized_handler(self, callback: U) -> U:
        """Decorate the function that answers a visitor who is not signed in.

        It takes no arguments and returns a response, as Flask-Login's does.
        """
        self._unauthorized = callback
        return callback

    def unauthorized(self) -> ResponseReturnValue:
        """The answer for someone who is not signed in: the site's handler, else ours."""
        if self._unauthorized is not None:
            return current_app.ensure_sync(self._unauthorized)()  # type: ignore[no-any-return]
        return default_unauthorized(self)

    def user_from_token(self, token: Mapping[str, Any]) -> AlipayUser:
        """The user behind a fresh token: the whole profile when the scope allows it."""
        ids = {k: token[k] for k in IDENTITY_FIELDS if token.get(k)}
        fields: dict[str, Any] = dict(ids)
        if self.config.wants_profile:
            profile = self.call(USER_INFO_METHOD, auth_token=token["access_token"])
            for name in ("user_id", "open_id"):
                if ids.get(name) and profile.get(name) and profile[name] != ids[name]:
                    raise MalformedAnswer(
                        "Alipay's profile belongs to another user than the token."
                    )
            fields.update(profile)
        return self._user(fields)

    # Calls after sign-in: need an app context, not a request --------------

    def call(
        self,
        method: str,
        biz_content: Mapping[str, Any] | str | None = None,
        *,
        auth_token: str | None = None,
        **params: str,
    ) -> dict[str, Any]:
        """A signed, verified call of any gateway method; returns the answer's node.

        ``biz_content`` (a dict is sent as compact JSON), ``params`` and
        ``auth_token`` go in the body, never in the URL.  Raises AlipayError.
        """
        business = dict(params)
        if biz_content is not None:
            business["biz_content"] = (
                biz_content
                if isinstance(biz_content, str)
                else json.dumps(biz_content, ensure_ascii=False, separators=(",", ":"))
            )
        return self.gateway.call(method, business, auth_token=auth_token)

    def fetch_profile(self, access_token: str) -> AlipayUser:
        """``alipay.user.info.share`` for a token from an ``auth_user`` sign-in."""
        return self._user(self.call(USER_INFO_METHOD, auth_token=access_token))

    def _user(self, fields: Mapping[str, Any]) -> AlipayUser:
        id_field = self.config.id_field
        try:
            return AlipayUser(fields, id_field)
        except ValueError:
            raise MissingUserId(
                f"Alipay's answer has no {id_field}, the id this site is keyed on.",
                setting=self.config_prefix + "ID_FIELD",
            ) from None

    def refresh_token(self, refresh_token: str) -> dict[str, Any]:
        """Trade a refresh token for a new verified token; sends ``token_refreshed``."""
        token = self.oauth.refresh(refresh_token)
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        send(token_refreshed, app, token=token, name=self.name)
        return token


def rotate_session_id(app: Flask, session: Any) -> None:
    """Give a server-side session a fresh id; cookie sessions have none to steal.

    ``session_interface.regenerate(session)`` is Flask-Session's (0.7 and later).
    An interface without it cannot be rotated safely from here (only it knows how
    its ids are stored), so the site is told once instead of being left exposed.
    """
    interface = app.session_interface
    regenerate = getattr(interface, "regenerate", None)
    if callable(regenerate):
        regenerate(session)
    elif not isinstance(interface, SecureCookieSessionInterface):
        log_no_regenerate(interface)


def _require_secret_key(app: Flask) -> None:
    problem = secret_key_problem(app)
    if problem:
        raise AlipayConfigError(problem)


#: Profile fields that identify a person beyond the account: never in a cookie.
PERSONAL_FIELDS = frozenset({"mobile", "email", "cert_no", "cert_type", "user_name", "phone"})


def personal_fields_problem(app: Flask, config: AlipayConfig, prefix: str) -> str | None:
    """Why ALIPAY_SESSION_FIELDS would put personal data in the readable cookie, or None."""
    personal = sorted(PERSONAL_FIELDS.intersection(config.session_fields))
    if personal and _cookie_sessions(app):
        return (
            f"{prefix}SESSION_FIELDS keeps {', '.join(personal)} in Flask's session cookie, "
            "which the browser can read. Keep such fields in your database from the "
            "user_logged_in signal, or use server-side sessions (Flask-Session)."
        )
    return None


def _server_side_configured(app: Flask) -> bool:
    return app.config.get("SESSION_TYPE") not in (None, "", "null")


def _cookie_sessions(app: Flask) -> bool:
    on_cookies = isinstance(app.session_interface, SecureCookieSessionInterface)
    return on_cookies and not _server_side_configured(app)


_SET_SECRET_KEY = "Set app.config['SECRET_KEY'] to a long random value."


def secret_key_problem(app: Flask) -> str | None:
    """Why the session cannot hold pending sign-ins, or None.

    Flask's cookie sessions need SECRET_KEY, and so does Flask-Session when it signs
    its session ids (``SESSION_USE_SIGNER``).  Flask-Session may install its
    interface after init_app, so its settings count as well as its interface.
    """
    if app.secret_key:
        return None
    if _cookie_sessions(app):
        return (
            "SECRET_KEY is not set: the sign-in state lives in Flask's signed "
            f"session cookie. {_SET_SECRET_KEY}"
        )
    if app.config.get("SESSION_USE_SIGNER") or getattr(app.session_interface, "use_signer", False):
        return (
            "SECRET_KEY is not set, and SESSION_USE_SIGNER is on: Flask-Session signs "
            f"the session id cookie with SECRET_KEY. {_SET_SECRET_KEY}"
        )
    return None


def request_session_problem(app: Flask, config: AlipayConfig, prefix: str) -> str | None:
    """Why this request's session cannot hold a sign-in, or None.

    init_app trusts ``SESSION_TYPE`` to mean server-side sessions, but only
    ``Session(app)`` installs them: until it runs, the app is on Flask's cookie
    sessions, which need SECRET_KEY and must not hold personal fields.
    """
    if not isinstance(app.session_interface, SecureCookieSessionInterface):
        return None
    if not app.secret_key:
        if _server_side_configured(app):
            return (
                "SESSION_TYPE is set, but the app is still on Flask's cookie sessions: "
                "call Session(app) (Flask-Session) where the app is created, or set "
                "SECRET_KEY for cookie sessions."
            )
        return f"SECRET_KEY is not set, and the app is on cookie sessions. {_SET_SECRET_KEY}"
    personal = sorted(PERSONAL_FIELDS.intersection(config.session_fields))
    if personal:
        return (
            f"{prefix}SESSION_FIELDS keeps {', '.join(personal)} in the session, but the app "
            "is on Flask's cookie sessions, which the browser can read: call Session(app) "
            "(Flask-Session) where the app is created."
        )
    return None


def _has_handler(app: Flask, exc_class: type[BaseException]) -> bool:
    handlers = app.error_handler_spec.get(None, {}).get(None, {})
    return any(
        issubclass(exc_class, cls) for cls in handlers if cls not in (Exception, BaseException)
    )
