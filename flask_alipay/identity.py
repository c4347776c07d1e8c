"""Who is signed in: AlipayUser, what lives in the session, and the guards.

Only the identity and profile are kept in the session, never tokens: the
session is a signed but readable cookie by default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar, cast

from flask import current_app, jsonify, redirect, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.local import LocalProxy

if TYPE_CHECKING:
    from .extension import AlipayLogin

__all__ = ["PROFILE_FIELDS", "AlipayUser", "current_alipay_user", "login_required"]

#: The profile fields kept, as Alipay names them.
PROFILE_FIELDS = (
    "user_id",
    "open_id",
    "union_id",
    "nick_name",
    "avatar",
    "gender",
    "province",
    "city",
)

F = TypeVar("F", bound=Callable[..., Any])


class AlipayUser(Mapping[str, str]):
    """A signed-in Alipay user: a read-only mapping of the profile as Alipay gave it.

    ``id`` is ``open_id`` when present, else ``user_id``: apps on Alipay's
    OpenID standard get no ``user_id`` at all.
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: Mapping[str, Any]) -> None:
        kept = {
            name: str(fields[name])
            for name in PROFILE_FIELDS
            if fields.get(name) is not None and str(fields[name]) != ""
        }
        if "open_id" not in kept and "user_id" not in kept:
            raise ValueError("an Alipay user needs an open_id or a user_id")
        self._fields = kept

    @property
    def id(self) -> str:
        """The stable key for this user in this app: open_id, else user_id."""
        return self._fields.get("open_id") or self._fields["user_id"]

    @property
    def id_kind(self) -> str:
        """Which id ``id`` is: ``"open_id"`` or ``"user_id"``."""
        return "open_id" if "open_id" in self._fields else "user_id"

    def __getitem__(self, name: str) -> str:
        return self._fields[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AlipayUser):
            return self._fields == other._fields
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.id_kind, self.id))

    def __repr__(self) -> str:
        return f"AlipayUser({self.id_kind}={self.id!r})"

    def to_dict(self) -> dict[str, str]:
        """A plain dict, for the session or JSON."""
        return dict(self._fields)


def _default_extension() -> AlipayLogin:
    ext = current_app.extensions.get("alipay")
    if ext is None:
        raise RuntimeError(
            "flask_alipay is not set up on this app: call AlipayLogin(app) or "
            "alipay.init_app(app) first."
        )
    return cast("AlipayLogin", ext)


def _current_user() -> AlipayUser | None:
    return _default_extension().current_user


#: The signed-in AlipayUser of the default ("alipay") instance, or None.
current_alipay_user: AlipayUser | None = cast("AlipayUser | None", LocalProxy(_current_user))


def guard(get_extension: Callable[[], AlipayLogin], view: F) -> F:
    """Wrap a view so only a signed-in user reaches it."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        ext = get_extension()
        if ext.current_user is not None:
            return cast(ResponseReturnValue, current_app.ensure_sync(view)(*args, **kwargs))
        return unauthorized(ext)

    return cast(F, wrapper)


def login_required(view: F) -> F:
    """Let a signed-in Alipay user through; send others to sign in.

    A browser gets a 302 to the login view with ``next`` set to this page; a
    request that prefers JSON gets a 401 JSON body instead.
    """
    return guard(_default_extension, view)


def unauthorized(ext: AlipayLogin) -> ResponseReturnValue:
    """The answer for someone who is not signed in."""
    here = request.script_root + request.path
    if request.query_string:
        here += "?" + request.query_string.decode("latin-1")
    login_url = url_for(f"{ext.name}.login", next=here)
    if _prefers_json():
        body = jsonify(error="login_required", login_url=login_url)
        return body, 401
    return redirect(login_url)


def _prefers_json() -> bool:
    accept = request.accept_mimetypes
    best = accept.best_match(["text/html", "application/json"])
    return best == "application/json" and accept["application/json"] > accept["text/html"]
