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
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException, InternalServerError, default_exceptions

from .errors import AlipayConfigError, AlipayError, InvalidState
from .handoff import deep_link, in_alipay, is_handoff_state, needs_handoff
from .identity import AlipayUser
from .logs import log_receiver_failure
from .oauth import callback_code
from .redirects import safe_next
from .signals import login_failed, send, user_logged_in, user_logged_out

if TYPE_CHECKING:
    from .extension import AlipayLogin

__all__ = ["ERROR_TEMPLATE", "as_http_error", "make_blueprint", "render_error"]

#: The error page's template; a site overrides it with its own file of that name.
ERROR_TEMPLATE = "flask_alipay/error.html"
#: The page a phone browser outside Alipay gets: open in Alipay, or stay here.
HANDOFF_TEMPLATE = "flask_alipay/handoff.html"
#: Where the callback keeps the failed sign-in's ``next`` for the page's "Try again".
RETRY_NEXT = "_flask_alipay_retry_next"


def make_blueprint(ext: AlipayLogin, url_prefix: str, code_endpoint: bool = False) -> Blueprint:
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
        authorize_url = ext.oauth.begin(session, redirect_uri, next_url)
        if cfg.mobile_handoff and needs_handoff(request.headers.get("User-Agent", "")):
            # A phone browser outside Alipay: open the sign-in in the Alipay app, whose
            # browser has none of our cookies (a hand-off state), or stay here.
            handoff_url = ext.oauth.handoff_url(redirect_uri, ext.handoff.issue())
            return render_template(
                HANDOFF_TEMPLATE,
                open_in_alipay=deep_link(handoff_url),
                continue_url=authorize_url,
            )
        return redirect(authorize_url)

    @bp.route("/callback")
    def callback() -> ResponseReturnValue:
        state = request.args.get("state")
        try:
            if is_handoff_state(state):
                pending = take_handoff_state(ext, str(state))
            else:
                pending = ext.oauth.take_state(session, state)
            g.setdefault(RETRY_NEXT, pending.get("next"))  # "Try again" goes back there too
            user, token = ext.exchange_code(callback_code(request.args, ext.config.app_id))
        except AlipayError as error:
            ext.report_failure(error)
            raise
        overridden = sign_in(ext, user, token)
        return overridden or redirect(str(pending.get("next") or default_next()))

    if code_endpoint:

        @bp.route("/code", methods=["POST"])
        def code() -> ResponseReturnValue:
            """An auth_code from a mini program or app, as JSON; signs in to the session."""
            if request.mimetype != "application/json":
                # JSON only: a cross-site form cannot send it, so no page can sign a
                # visitor in as someone else.
                return _json_error("unsupported_media_type", "Send JSON.", 415)
            body = request.get_json(silent=True)
            auth_code = body.get("auth_code") if isinstance(body, dict) else None
            if not isinstance(auth_code, str) or not auth_code:
                return _json_error("bad_request", 'Send {"auth_code": "..."}.', 400)
            try:
                user, token = ext.exchange_code(auth_code)
            except AlipayError as error:
                ext.report_failure(error)
                return _json_error(error.reason, error.message, error.status_code, error.sub_code)
            overridden = sign_in(ext, user, token)
            return overridden or jsonify(
                user={**user.to_dict(), "id": user.id, "id_kind": user.id_kind}
            )

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


def take_handoff_state(ext: AlipayLogin, state: str) -> dict[str, Any]:
    """A hand-off sign-in ends in Alipay's own browser, and only there; once, unexpired."""
    if not ext.config.mobile_handoff or not in_alipay(request.headers.get("User-Agent", "")):
        raise InvalidState(case="unknown")
    ext.handoff.redeem(state)
    return {}  # it carries no next: the sign-in lands on ALIPAY_DEFAULT_NEXT


def sign_in(ext: AlipayLogin, user: AlipayUser, token: dict[str, Any]) -> Response | None:
    """Keep the user in the session and tell the receivers; a receiver's Response wins.

    A receiver that fails (a database constraint, say) leaves no half sign-in,
    neither ours nor what an earlier receiver stored (Flask-Login's, say).
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    before = dict(session)
    ext.remember(user)
    try:
        results = send(user_logged_in, app, user=user, token=token, name=ext.name)
    except Exception as error:
        session.clear()
        session.update(before)
        log_receiver_failure(error, ext.name)
        send(login_failed, app, error=error, name=ext.name)
        raise
    for _receiver, result in results:
        if isinstance(result, Response):
            return result
    return None


def _json_error(
    error: str, message: str, status: int, sub_code: str | None = None
) -> ResponseReturnValue:
    return jsonify(error=error, message=message, sub_code=sub_code), status


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
    next_url = g.get(RETRY_NEXT)
    if next_url == request.script_root + ext.config.default_next:
        next_url = None  # where a sign-in without next lands anyway
    html = render_template(
        ERROR_TEMPLATE,
        error=error,
        user_message=error.user_message,
        debug=current_app.debug,
        retry_url=url_for(f"{ext.name}.login", **({"next": next_url} if next_url else {})),
        home_url=request.script_root + "/",
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
