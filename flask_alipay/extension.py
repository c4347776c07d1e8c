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

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from flask import Flask, current_app, session
from flask.typing import ResponseReturnValue

from .config import AlipayConfig, load_config
from .errors import AlipayConfigError, AlipayError, MalformedAnswer, MissingUserId
from .gateway import Gateway
from .handoff import HandoffStates
from .identity import ANONYMOUS, AlipayUser, AnonymousAlipayUser, default_unauthorized, guard
from .logs import log_failure
from .oauth import AlipayOAuth2App, valid_code
from .phone import decrypt_phone_answer
from .protocol import IDENTITY_FIELDS, USER_INFO_METHOD
from .sessions import (
    request_session_problem,
    require_secret_key,
    rotate_session_id,
    session_fields_problem,
)
from .signals import login_failed, send, token_refreshed, user_logged_in
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
    handoff: HandoffStates


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
            require_secret_key(app)
            problem = session_fields_problem(app, config, self.config_prefix)
            if problem:
                raise AlipayConfigError(problem)
        except AlipayConfigError:
            if DIAGNOSING.get():
                return  # `flask alipay check` reports every problem itself
            raise
        self.reconfigure(app, config)
        app.register_blueprint(make_blueprint(self, config.url_prefix, config.code_endpoint))
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
        self._states[app] = _AppState(
            config,
            gateway,
            AlipayOAuth2App(gateway, self.name),
            HandoffStates(config.private_key),
        )
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

    @property
    def handoff(self) -> HandoffStates:
        """The current app's hand-off states, for phone browsers (handoff.py)."""
        return self._state().handoff

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

        Never tokens, and with cookie sessions no personal data (init_app refuses
        it): Flask's session is a signed but readable cookie.

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

    def exchange_code(self, auth_code: str) -> tuple[AlipayUser, dict[str, Any]]:
        """An auth_code's verified token and user; no session, no signal."""
        token = self.oauth.exchange(valid_code(auth_code))
        return self.user_from_token(token), token

    def sign_in_with_code(self, auth_code: str) -> tuple[AlipayUser, dict[str, Any]]:
        """Sign in with an auth_code from a mini program (``my.getAuthCode``) or an app.

        The same exchange and verification as the web callback, and the same
        ``user_logged_in``, but no session is touched: for backends that issue
        their own tokens.  Needs an app context; raises AlipayError.
        """
        try:
            user, token = self.exchange_code(auth_code)
        except AlipayError as error:
            self.report_failure(error)
            raise
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        send(user_logged_in, app, user=user, token=token, name=self.name)
        return user, token

    def report_failure(self, error: AlipayError) -> None:
        """A failed sign-in, by any path: one escaped log line and ``login_failed``."""
        log_failure(error)
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        send(login_failed, app, error=error, name=self.name)

    def decrypt_phone_number(self, response: str, sign: str) -> dict[str, Any]:
        """The answer of a mini program's ``my.getPhoneNumber``: ``mobile`` and the rest.

        ``sign`` is verified with Alipay's key before anything is decrypted with
        ``ALIPAY_AES_KEY``.  Raises AlipayError; the number is never logged.
        """
        cfg = self.config
        if cfg.aes_key is None:
            raise AlipayConfigError(
                f"{self.config_prefix}AES_KEY is not set: put the 接口内容加密密钥 from the "
                "console there to read phone numbers."
            )
        keys: list[RSAPublicKey] | None = None
        if cfg.verify_answers:
            keys = [cfg.alipay_public_key] if cfg.alipay_public_key else []
            keys += [*cfg.alipay_certs.values(), *self.gateway.downloaded_keys]
        return decrypt_phone_answer(
            response,
            sign,
            aes=cfg.aes_key,
            keys=keys,
            sign_type=cfg.sign_type,
            charset=cfg.charset,
        )

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


def _has_handler(app: Flask, exc_class: type[BaseException]) -> bool:
    handlers = app.error_handler_spec.get(None, {}).get(None, {})
    return any(
        issubclass(exc_class, cls) for cls in handlers if cls not in (Exception, BaseException)
    )
