"""Where a sign-in lives: which session the app has, and what it may hold.

Flask's own sessions are a signed but readable cookie that needs SECRET_KEY;
Flask-Session keeps the data server-side behind an id in the cookie, which
must be replaced at sign-in (session fixation).  These checks run at
``init_app``, in ``flask alipay check``, and before each sign-in request, since
``Session(app)`` may run after ``init_app``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from .errors import AlipayConfigError
from .logs import log_no_regenerate
from .settings import COOKIE_SESSION_FIELDS, SESSION_ID_FIELDS

if TYPE_CHECKING:
    from .config import AlipayConfig

__all__ = [
    "request_session_problem",
    "require_secret_key",
    "rotate_session_id",
    "secret_key_problem",
    "session_fields_problem",
]


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


def require_secret_key(app: Flask) -> None:
    """Raise AlipayConfigError when the session cannot hold pending sign-ins."""
    problem = secret_key_problem(app)
    if problem:
        raise AlipayConfigError(problem)


def session_fields_problem(app: Flask, config: AlipayConfig, prefix: str) -> str | None:
    """Why ALIPAY_SESSION_FIELDS would put personal data in the readable cookie, or None.

    With cookie sessions only the ids and settings.COOKIE_SESSION_FIELDS may be
    kept: an allow-list, so a field Alipay adds later is refused until judged.
    """
    allowed = {*SESSION_ID_FIELDS, *COOKIE_SESSION_FIELDS}
    personal = [name for name in config.session_fields if name not in allowed]
    if personal and _cookie_sessions(app):
        return (
            f"{prefix}SESSION_FIELDS names {', '.join(personal)}, which Flask's session "
            "cookie would carry where the browser can read it. With cookie sessions it may "
            f"name only display fields: {', '.join(COOKIE_SESSION_FIELDS)}. Keep other "
            "fields in your database from the user_logged_in signal, or use server-side "
            "sessions (Flask-Session)."
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
    allowed = {*SESSION_ID_FIELDS, *COOKIE_SESSION_FIELDS}
    personal = [name for name in config.session_fields if name not in allowed]
    if personal:
        return (
            f"{prefix}SESSION_FIELDS keeps {', '.join(personal)} in the session, but the app "
            "is on Flask's cookie sessions, which the browser can read: call Session(app) "
            "(Flask-Session) where the app is created."
        )
    return None
