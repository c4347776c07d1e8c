"""Who is signed in: AlipayUser, the anonymous user, and the guard for views.

Only the ids and a few display fields are kept in the session, never tokens:
the session is a signed but readable cookie by default.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar, cast

from flask import current_app, jsonify, redirect, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.local import LocalProxy

if TYPE_CHECKING:
    from .extension import AlipayLogin

__all__ = [
    "EXEMPT_METHODS",
    "PROFILE_FIELDS",
    "AlipayUser",
    "AnonymousAlipayUser",
    "current_alipay_user",
    "login_required",
]

#: The fields Alipay's web profile usually has; an app approved for more (``mobile``,
#: ``email``, ``user_name``, ``cert_type``...) gets those too.
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
#: An answer's own status fields, which are not the user's.
_ANSWER_FIELDS = frozenset({"code", "msg", "sub_code", "sub_msg"})

#: Methods ``login_required`` lets through unchecked, as Flask-Login does: CORS
#: preflights carry no cookies, so they can never be signed in.
EXEMPT_METHODS = frozenset({"OPTIONS"})

F = TypeVar("F", bound=Callable[..., Any])


class AlipayUser(Mapping[str, Any]):
    """A signed-in Alipay user: a read-only mapping of the verified profile.

    ``id`` is always the field ``ALIPAY_ID_FIELD`` names (``open_id`` by
    default), never "whichever is present": during Alipay's OpenID migration an
    answer may carry both, and a key that switched silently would orphan accounts.
    Both ids stay readable as ``user["user_id"]`` and ``user["open_id"]``.

    Text and numbers read as strings; lists and objects (``deliver_addresses``,
    ``person_pictures``...) and ``true``/``false`` stay as Alipay sent them, as
    JSON values.  A field Alipay left out or sent empty is absent.
    """

    __slots__ = ("_fields", "_id_field")

    is_authenticated = True
    is_anonymous = False

    def __init__(self, fields: Mapping[str, Any], id_field: str = "open_id") -> None:
        kept: dict[str, Any] = {}
        for name, value in fields.items():
            if isinstance(name, str) and name not in _ANSWER_FIELDS:
                field = _profile_value(value)
                if field is not None:
                    kept[name] = field
        if not isinstance(kept.get(id_field), str):
            raise ValueError(f"an Alipay user needs a {id_field}")
        self._fields = kept
        self._id_field = id_field

    @property
    def id(self) -> str:
        """The stable key for this user in this app: the ``ALIPAY_ID_FIELD`` field."""
        return str(self._fields[self._id_field])

    @property
    def id_kind(self) -> str:
        """Which id ``id`` is: ``"open_id"`` or ``"user_id"``."""
        return self._id_field

    def __getitem__(self, name: str) -> Any:
        value = self._fields[name]
        # A copy of a list or object, so the user stays read-only.
        return copy.deepcopy(value) if isinstance(value, (list, dict)) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AlipayUser):
            return (self._id_field, self._fields) == (other._id_field, other._fields)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.id_kind, self.id))

    def __repr__(self) -> str:
        return f"AlipayUser({self.id_kind}={self.id!r})"

    def to_dict(self) -> dict[str, Any]:
        """Every field, as a plain dict of JSON values (the session keeps fewer)."""
        return copy.deepcopy(self._fields)

    def only(self, names: Iterable[str]) -> AlipayUser:
        """The same user with only these fields (and its id): what a session keeps."""
        wanted = {*names, self._id_field}
        return AlipayUser({k: v for k, v in self._fields.items() if k in wanted}, self._id_field)


class AnonymousAlipayUser(Mapping[str, Any]):
    """Nobody is signed in: falsy, empty, ``is_authenticated`` False.

    ``current_alipay_user`` is this rather than None, so ``if
    current_alipay_user:`` and ``current_alipay_user.get("nick_name")`` both
    work for everyone, as with Flask-Login's ``AnonymousUserMixin``.
    """

    __slots__ = ()

    is_authenticated = False
    is_anonymous = True
    id: str | None = None
    id_kind: str | None = None

    def __getitem__(self, name: str) -> Any:
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AnonymousAlipayUser)

    def __hash__(self) -> int:
        return hash(AnonymousAlipayUser)

    def __repr__(self) -> str:
        return "AnonymousAlipayUser()"

    def to_dict(self) -> dict[str, Any]:
        return {}


ANONYMOUS = AnonymousAlipayUser()


def _profile_value(value: Any) -> Any:
    """A profile field as kept, or None to leave it out.

    Strings stay, numbers become strings (ids have come as both); booleans,
    lists and objects are kept as JSON values, copied, so a session can store
    them; anything empty or not JSON is left out.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return value or None
    if isinstance(value, (list, dict)) and value:
        try:
            return json.loads(json.dumps(value, ensure_ascii=False, allow_nan=False))
        except (TypeError, ValueError):
            return None
    return None


def default_extension() -> AlipayLogin:
    """The app's ``"alipay"`` instance, which the module-level helpers refer to."""
    ext = current_app.extensions.get("alipay")
    if ext is None:
        raise RuntimeError(
            "flask_alipay is not set up on this app: call AlipayLogin(app) or "
            "alipay.init_app(app) first."
        )
    return cast("AlipayLogin", ext)


def _current_user() -> AlipayUser | AnonymousAlipayUser:
    return default_extension().current_user


#: The default ("alipay") instance's user: an AlipayUser, or the falsy AnonymousAlipayUser.
current_alipay_user: AlipayUser | AnonymousAlipayUser = cast(
    "AlipayUser | AnonymousAlipayUser", LocalProxy(_current_user)
)


def guard(get_extension: Callable[[], AlipayLogin], view: F) -> F:
    """Wrap a view so only a signed-in user reaches it (and CORS preflights pass)."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        ext = get_extension()
        if request.method in EXEMPT_METHODS or ext.current_user.is_authenticated:
            return cast(ResponseReturnValue, current_app.ensure_sync(view)(*args, **kwargs))
        return ext.unauthorized()

    return cast(F, wrapper)


def login_required(view: F) -> F:
    """Let a signed-in Alipay user through; send others to sign in.

    A browser gets a 302 to the login view with ``next`` set to this page; a
    request that prefers JSON gets a 401 JSON body instead.  A site can
    answer its own way with ``@alipay.unauthorized_handler``.
    """
    return guard(default_extension, view)


def default_unauthorized(ext: AlipayLogin) -> ResponseReturnValue:
    """The answer for someone who is not signed in, unless the site chose its own."""
    here = request.script_root + request.path
    if request.query_string:
        here += "?" + request.query_string.decode("latin-1")
    login_url = url_for(f"{ext.name}.login", next=here)
    if _prefers_json():
        return jsonify(error="login_required", login_url=login_url), 401
    return redirect(login_url)


def _prefers_json() -> bool:
    accept = request.accept_mimetypes
    best = accept.best_match(["text/html", "application/json"])
    return best == "application/json" and accept["application/json"] > accept["text/html"]
