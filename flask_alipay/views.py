"""The blueprint: login, callback, logout, and the error page of its own views.

This is the only layer that reads Flask's request globals; everything below
is handed what it needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException, InternalServerError, default_exceptions

from .errors import AlipayConfigError, AlipayError
from .logs import log_failure, log_receiver_failure
from .oauth import callback_code
from .redirects import safe_next
from .signals import login_failed, send, user_logged_in, user_logged_out

if TYPE_CHECKING:
    from .extension import AlipayLogin

__all__ = ["ERROR_TEMPLATE", "as_http_error", "make_blueprint", "render_error"]

#: The error page's template; a site overrides it with its own file of that name.
ERROR_TEMPLATE = "flask_alipay/error.html"


def make_blueprint(ext: AlipayLogin, url_prefix: str) -> Blueprint:
    """A blueprint named after the extension, so several instances can coexist."""
    bp = Blueprint(ext.name, __name__, url_prefix=url_prefix, template_folder="templates")

    @bp.before_request
    def session_ready() -> None:
        # SESSION_TYPE without Session(app) would be a bare 500 at the first write.
        problem = ext.session_problem(current_app._get_current_object())  # type: ignore[attr-defined]
        if problem:
            raise AlipayConfigError(problem)

    def default_next() -> str:
        # Under a path prefix (SCRIPT_NAME, ProxyFix x_prefix) "/" means the site's root.
        return request.script_root + ext.config.default_next

    @bp.route("/login")
    def login() -> ResponseReturnValue:
        cfg = ext.config
        next_url = safe_next(request.args.get("next")) or default_next()
        redirect_uri = cfg.redirect_uri or url_for(f"{ext.name}.callback", _external=True)
        return redirect(ext.oauth.begin(session, redirect_uri, next_url))

    @bp.route("/callback")
    def callback() -> ResponseReturnValue:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        try:
            pending = ext.oauth.take_state(session, request.args.get("state"))
            token = ext.oauth.exchange(callback_code(request.args, ext.config.app_id))
            user = ext.user_from_token(token)
        except AlipayError as error:
            log_failure(error)
            send(login_failed, app, error=error, name=ext.name)
            raise
        before = dict(session)
        ext.remember(user)
        try:
            results = send(user_logged_in, app, user=user, token=token, name=ext.name)
        except Exception as error:
            # A receiver failed (a database constraint, say): no half sign-in, neither ours
            # nor what an earlier receiver stored (Flask-Login's login_user, say).
            session.clear()
            session.update(before)
            log_receiver_failure(error, ext.name)
            send(login_failed, app, error=error, name=ext.name)
            raise
        for _receiver, result in results:
            if isinstance(result, Response):
                return result
        return redirect(str(pending.get("next") or default_next()))

    @bp.route("/logout", methods=["POST"])
    def logout() -> ResponseReturnValue:
        # POST only, so a link or an image on another site cannot sign anyone out; a
        # browser that says the form came from another site is refused as well.
        if cross_site(
            request.headers.get("Sec-Fetch-Site"), request.headers.get("Origin"), request.host_url
        ):
            return "Cross-site logout refused.", 403
        user = ext.forget()
        # Sent on every logout, so a site on Flask-Login (remember-me included) can
        # sign out of it too, even when no Alipay identity was left in the session.
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        send(user_logged_out, app, user=user, name=ext.name)
        return redirect(safe_next(request.values.get("next")) or default_next())

    bp.register_error_handler(AlipayError, lambda error: render_error(ext, error))
    return bp


def cross_site(fetch_site: str | None, origin: str | None, host_url: str) -> bool:
    """True when the browser says the request comes from another site.

    ``Sec-Fetch-Site`` when the browser sends it, else ``Origin``; a request with
    neither (an old browser, a script) is left to CSRF protection.
    """
    if fetch_site is not None:
        return fetch_site == "cross-site"
    if origin is None or origin == "null":
        return origin == "null"
    return origin.rstrip("/") != host_url.rstrip("/")


def render_error(ext: AlipayLogin, error: AlipayError) -> ResponseReturnValue:
    """The sign-in error page, for the blueprint's own views; a site's own handler wins."""
    handler = site_handler(current_app, error)
    if handler is not None:
        return handler(error)  # type: ignore[no-any-return]
    hint = error.hint
    html = render_template(
        ERROR_TEMPLATE,
        error=error,
        debug=current_app.debug,
        short_hint=hint.split(". ")[0].rstrip(".") + ".",
        retry_url=url_for(f"{ext.name}.login"),
    )
    return html, error.status_code


def as_http_error(error: AlipayError) -> ResponseReturnValue:
    """An AlipayError from one of the site's own views: a plain HTTP error, not our page."""
    exception_class = default_exceptions.get(error.status_code, InternalServerError)
    http_error: HTTPException = exception_class()
    return current_app.handle_http_exception(http_error)


def site_handler(app: Flask, error: AlipayError) -> Any:
    """The handler the site registered for this error's class or a parent up to AlipayError."""
    handlers = app.error_handler_spec.get(None, {}).get(None, {})
    for cls in type(error).__mro__:
        handler = handlers.get(cls)
        if handler is not None and handler is not as_http_error:
            return handler
        if cls is AlipayError:
            break
    return None
