"""What a browser sees: the authorize page, the consent page, the avatars.

The authorize page refuses what Alipay refuses (an unknown APPID, a bad scope,
a relative ``redirect_uri``, an over-long ``state``), then either approves at
once (``auto_approve``, for tests) or shows a bilingual consent page where a
person picks an account or adds one.  Approval redirects with ``auth_code``
and the parameters Alipay adds.
"""

from __future__ import annotations

import html
import re
import urllib.parse
from collections.abc import Mapping
from typing import Protocol

from flask import Response, request

from flask_alipay.protocol import is_known_scope, split_scope, wants_profile

from .paths import AUTHORIZE_PATH
from .state import ID_KINDS, EmulatedUser, IdKind, State

__all__ = ["Host", "Pages", "avatar_svg", "html_page"]

_STATE = re.compile(r"[A-Za-z0-9._~-]{0,100}")
_AVATAR_COLOURS = ("#1677ff", "#13c2c2", "#fa8c16", "#eb2f96", "#52c41a", "#722ed1")


class Host(Protocol):
    """What the pages need from the emulator: a setting, the default user, and codes."""

    auto_approve: bool
    default_user: EmulatedUser

    def issue_code(
        self,
        user_key: str | None = ...,
        scope: str = ...,
        app_id: str | None = ...,
        path: str = ...,
    ) -> str:
        """Mint an auth_code as if the user had approved."""
        ...


class Pages:
    """The browser-facing views, over the emulator's state."""

    def __init__(self, host: Host, state: State) -> None:
        self.host = host
        self.state = state

    def authorize(self) -> Response:
        """``publicAppAuthorize.htm``: check, then approve, consent or redirect back."""
        self.state.count_authorize()
        app_id = request.args.get("app_id", "")
        scope = request.args.get("scope", "")
        redirect_uri = request.args.get("redirect_uri", "")
        state = request.args.get("state")
        problem = self._authorize_problem(app_id, scope, redirect_uri, state)
        if problem:
            return html_page("授权失败 / Authorization error", _error_body(problem), 400)
        if request.method == "POST":
            if request.form.get("decision") != "approve":
                return _redirect(redirect_uri, [("app_id", app_id)], state)
            user_key = self._chosen_user(request.form)
        elif self.host.auto_approve:
            user_key = request.args.get("login_as") or None
        else:
            return self._consent_page(app_id, scope, request.args.get("login_as"))
        # Inside Alipay's own browser (a phone's hand-off), or any other browser.
        path = "alipay_app" if "AlipayClient" in request.headers.get("User-Agent", "") else "web"
        code = self.host.issue_code(user_key, scope, app_id, path)
        params = [
            ("app_id", app_id),
            ("source", "alipay_wallet"),
            ("scope", scope),
            ("auth_code", code),
        ]
        return _redirect(redirect_uri, params, state)

    def avatar(self, key: str) -> Response:
        """A user's made-up avatar, drawn here so pages load offline."""
        user = self.state.find_user(key)
        if user is None:
            return Response("no such user", status=404, content_type="text/plain")
        svg = avatar_svg(user.nick_name or user.key, user.key)
        return Response(svg, content_type="image/svg+xml; charset=utf-8")

    def _chosen_user(self, form: Mapping[str, str]) -> str | None:
        """The picked account, or a new one when a nickname was typed in."""
        new_name = (form.get("new_nick_name") or "").strip()[:32]
        if new_name:
            kind = form.get("new_id_kind", "open_id")
            id_kind: IdKind = ID_KINDS[ID_KINDS.index(kind)] if kind in ID_KINDS else "open_id"
            return self.state.add_user(nick_name=new_name, id_kind=id_kind).key
        return form.get("user") or None

    def _authorize_problem(
        self, app_id: str, scope: str, redirect_uri: str, state: str | None
    ) -> str | None:
        """Why Alipay would refuse this authorize request, or None."""
        known, _ = self.state.app_key(app_id)
        if not known:
            return f"应用不存在 / unknown app_id {app_id!r}"
        scopes = split_scope(scope)
        if not scopes or not all(is_known_scope(name) for name in scopes):
            return f"scope 无效 / scope must be auth_user or auth_base, not {scope!r}"
        if "auth_base" in scopes and len(scopes) > 1:
            return f"scope 无效 / auth_base is asked for alone, not in {scope!r}"
        parts = urllib.parse.urlsplit(redirect_uri)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return "redirect_uri 无效 / redirect_uri must be an absolute http(s) URL"
        if state is not None and not _STATE.fullmatch(state):
            return "state 无效 / state must be at most 100 URL-safe characters"
        return None

    def _consent_page(self, app_id: str, scope: str, login_as: str | None) -> Response:
        """Pick an account or add one, then approve or cancel."""
        selected = login_as or self.host.default_user.key
        options = "".join(
            f'<option value="{html.escape(user.key)}"'
            f"{' selected' if user.key == selected else ''}>"
            f"{html.escape(user.nick_name or user.key)} · {html.escape(_id_label(user))}</option>"
            for user in self.state.all_users()
        )
        what = (
            "获取你的头像、昵称等公开信息 / your nickname, avatar and public profile"
            if wants_profile(scope)
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
        return html_page("支付宝授权 / Alipay authorization", body)


def _redirect(redirect_uri: str, params: list[tuple[str, str]], state: str | None) -> Response:
    """Back to the app's ``redirect_uri``, echoing ``state`` when one was sent."""
    if state is not None:
        params = [*params, ("state", state)]
    return Response(status=302, headers={"Location": _add_query(redirect_uri, params)})


def _add_query(url: str, params: list[tuple[str, str]]) -> str:
    """Append params to a URL, after any query it already has."""
    parts = urllib.parse.urlsplit(url)
    extra = urllib.parse.urlencode(params)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urllib.parse.urlunsplit(parts._replace(query=query))


def _id_label(user: EmulatedUser) -> str:
    """Which ids an account has, so a tester picks the right kind."""
    kinds = [kind for kind in ("open_id", "user_id") if getattr(user, kind)]
    return " + ".join(kinds)


def _error_body(problem: str) -> str:
    """The refusal, escaped: it quotes what the request sent."""
    return f"<h1>授权失败 · Authorization error</h1><p>{html.escape(problem)}</p>"


def avatar_svg(label: str, key: str) -> str:
    """A coloured square with the nickname's first character; the colour follows the key."""
    colour = _AVATAR_COLOURS[sum(key.encode()) % len(_AVATAR_COLOURS)]
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="160" height="160" viewBox="0 0 160 160">'
        f'<rect width="160" height="160" fill="{colour}"/>'
        '<text x="80" y="104" font-size="72" text-anchor="middle" fill="#fff" '
        'font-family="PingFang SC,Microsoft YaHei,Noto Sans CJK SC,sans-serif">'
        f"{html.escape(label[:1] or '?')}</text></svg>"
    )


def html_page(title: str, body: str, status: int = 200) -> Response:
    """A page in the emulator's look, marked as the emulator's so no one mistakes it."""
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
