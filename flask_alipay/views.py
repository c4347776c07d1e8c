"""The blueprint: login, callback, logout, and the small error page."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from flask import (
    Blueprint,
    Response,
    current_app,
    redirect,
    render_template_string,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue

from .errors import AlipayError
from .redirects import safe_next
from .signals import login_failed, user_logged_in, user_logged_out

if TYPE_CHECKING:
    from .extension import AlipayLogin

__all__ = ["ERROR_PAGE", "make_blueprint", "render_error"]

log = logging.getLogger("flask_alipay")

ERROR_PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>支付宝登录失败 · Sign-in failed</title>
<style>
body{font:16px/1.5 system-ui,-apple-system,"PingFang SC","Microsoft YaHei",sans-serif;
background:#f5f7fa;color:#1f2329;margin:0;display:flex;min-height:100vh;
align-items:center;justify-content:center}
main{background:#fff;border-radius:12px;box-shadow:0 2px 12px #0001;padding:2rem;max-width:32rem}
h1{font-size:1.25rem;margin:0 0 .5rem}p{margin:.5rem 0}.hint{color:#646a73}
code{background:#f2f3f5;padding:.1rem .3rem;border-radius:4px}
a.button{display:inline-block;margin-top:1rem;background:#1677ff;color:#fff;
padding:.5rem 1.25rem;border-radius:6px;text-decoration:none}
</style></head><body><main>
<h1>支付宝登录未完成 · Sign-in with Alipay did not complete</h1>
<p>{{ error.message }}</p>
{% if debug %}<p class="hint">{{ error.hint }}</p>
{% if error.sub_code %}<p><code>{{ error.sub_code }}</code> {{ error.sub_msg or "" }}</p>{% endif %}
{% else %}<p class="hint">{{ short_hint }}</p>{% endif %}
<a class="button" href="{{ retry_url }}">重试 · Try again</a>
</main></body></html>
"""


def render_error(ext: AlipayLogin, error: AlipayError) -> ResponseReturnValue:
    """The small HTML page for an AlipayError; full hint only in debug mode."""
    hint = error.hint
    short_hint = hint.split(". ")[0].rstrip(".") + "."
    html = render_template_string(
        ERROR_PAGE,
        error=error,
        debug=current_app.debug,
        short_hint=short_hint,
        retry_url=url_for(f"{ext.name}.login"),
    )
    return html, error.status_code


def make_blueprint(ext: AlipayLogin, url_prefix: str) -> Blueprint:
    """A blueprint named after the extension, so several instances can coexist."""
    bp = Blueprint(ext.name, __name__, url_prefix=url_prefix)

    @bp.route("/login")
    def login() -> ResponseReturnValue:
        cfg = ext.config
        next_url = safe_next(request.args.get("next")) or cfg.default_next
        redirect_uri = cfg.redirect_uri or url_for(f"{ext.name}.callback", _external=True)
        return redirect(ext.oauth.start(redirect_uri, next_url))

    @bp.route("/callback")
    def callback() -> ResponseReturnValue:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        try:
            token, state_data = ext.oauth.authorize_access_token()
            user = ext.user_from_token(token)
        except AlipayError as error:
            log.warning(
                "Alipay sign-in failed (%s, status %s, sub_code %s): %s Hint: %s",
                error.reason,
                error.status_code,
                error.sub_code,
                error.message,
                error.hint,
            )
            login_failed.send(app, error=error, name=ext.name)
            raise
        ext.remember(user)
        for _receiver, result in user_logged_in.send(app, user=user, token=token, name=ext.name):
            if isinstance(result, Response):
                return result
        return redirect(str(state_data.get("next") or ext.config.default_next))

    @bp.route("/logout", methods=["GET", "POST"])
    def logout() -> ResponseReturnValue:
        user = ext.forget()
        if user is not None:
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            user_logged_out.send(app, user=user, name=ext.name)
        next_url = safe_next(request.values.get("next")) or ext.config.default_next
        return redirect(next_url)

    return bp
