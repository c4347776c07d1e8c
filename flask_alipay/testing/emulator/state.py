"""What the emulator remembers: apps, users, grants, injections and the calls it saw.

The server answers in threads while a test pokes the emulator from its own, so
everything here sits behind one re-entrant lock (:attr:`State.lock`), which
the other layers also take when they must read two things at once.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from .ids import new_access_token, new_alipay_user_id, new_auth_code, new_open_id, new_user_id
from .paths import served_avatar

__all__ = [
    "AUTO",
    "ID_KINDS",
    "EmulatedUser",
    "GatewayRequest",
    "Grant",
    "IdKind",
    "Injection",
    "State",
]

#: Which ids Alipay gives an app's users: new apps get only ``open_id``, old ones
#: ``user_id``, apps mid-migration both.
IdKind = Literal["open_id", "user_id", "both"]
ID_KINDS: tuple[IdKind, ...] = ("open_id", "user_id", "both")

_NICKNAMES = ("小红", "阿强", "小芳", "大伟", "小丽", "老王", "小杰", "阿珍")


class _Auto:
    """Type of :data:`AUTO`: "make a value up", as distinct from None ("absent")."""

    def __repr__(self) -> str:
        return "AUTO"


#: Pass for a profile field to have the emulator make up a plausible value.
AUTO = _Auto()


@dataclass
class EmulatedUser:
    """An Alipay account the emulator signs in.  Profile fields set to None are absent
    from answers, as they are for real users who never set them."""

    key: str
    user_id: str | None = None
    open_id: str | None = None
    union_id: str | None = None
    #: The deprecated id migration-era answers still carry (users with both ids).
    alipay_user_id: str | None = None
    nick_name: str | None = None
    avatar: str | None = None
    gender: str | None = None
    province: str | None = None
    city: str | None = None
    #: Fields an app is approved for beyond the basic profile: ``mobile``, ``email``,
    #: ``user_name``, ``deliver_addresses`` (a list)...  Any JSON value; sent in
    #: ``alipay.user.info.share`` as given.
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def identity(self) -> dict[str, str]:
        """The ids Alipay puts in the token answer, in its order: ``user_id``, then
        ``open_id``, then the others."""
        ids = {
            "user_id": self.user_id,
            "open_id": self.open_id,
            "union_id": self.union_id,
            "alipay_user_id": self.alipay_user_id,
        }
        return {name: value for name, value in ids.items() if value is not None}

    def profile(self) -> dict[str, Any]:
        """The fields of ``alipay.user.info.share``, absent ones left out."""
        fields = {
            "avatar": self.avatar,
            "city": self.city,
            "gender": self.gender,
            "nick_name": self.nick_name,
            "open_id": self.open_id,
            "province": self.province,
            "user_id": self.user_id,
        }
        kept = {name: value for name, value in fields.items() if value is not None}
        return {**kept, **self.extra}


@dataclass(frozen=True)
class GatewayRequest:
    """One gateway call as it arrived, kept so tests can assert on the wire."""

    method: str | None
    query: dict[str, str]
    form: dict[str, str]
    string_to_sign: str
    content_type: str | None
    charset: str | None
    #: What the call did that the official SDKs do not, each a line starting with
    #: ``placement: `` (a parameter outside the SDKs' query/body split, a GET).  The
    #: emulator answers such calls as the gateway does, unless it is ``strict``.
    warnings: tuple[str, ...] = ()

    @property
    def params(self) -> dict[str, str]:
        """Query and body parameters together, as the gateway signs them."""
        return {**self.query, **self.form}


@dataclass
class Injection:
    """A misbehaviour queued for the next ``times`` matching gateway calls."""

    method: str | None = None
    sub_code: str | None = None
    code: str = "40004"
    msg: str = "Business Failed"
    sub_msg: str | None = None
    delay: float = 0
    bad_signature: bool = False
    wrong_key: bool = False
    unsigned: bool = False
    gbk_error: bool = False
    html_status: int | None = None
    truncated: bool = False
    times: int = 1

    def matches(self, method: str | None) -> bool:
        """Whether this injection still applies to a call of ``method``."""
        return self.times > 0 and (self.method is None or self.method == method)

    def error(self) -> dict[str, str]:
        """The error members this injection answers with."""
        return {
            "code": self.code,
            "msg": self.msg,
            "sub_code": self.sub_code or "isp.unknow-error",
            "sub_msg": self.sub_msg or "系统繁忙，请稍后再试",
        }


@dataclass
class Grant:
    """What a code or token stands for: who signed in, to which app, for what."""

    app_id: str
    user_key: str
    scope: str
    expires_at: float
    #: Where the code came from: ``web`` (the authorize page in a browser),
    #: ``alipay_app`` (that page inside Alipay's own browser), ``mini_program`` or ``app``.
    path: str = "web"

    def expired(self) -> bool:
        """Monotonic time, so a test that moves the wall clock does not expire grants."""
        return time.monotonic() >= self.expires_at


class State:
    """The emulator's memory, thread-safe: every change happens under :attr:`lock`."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.apps: dict[str, RSAPublicKey | None] = {}
        self.users: dict[str, EmulatedUser] = {}
        self.requests: list[GatewayRequest] = []
        self.injections: list[Injection] = []
        self.codes: dict[str, Grant] = {}
        self.access_tokens: dict[str, Grant] = {}
        self.refresh_tokens: dict[str, Grant] = {}
        self.counts: dict[str, int] = {}
        self.authorize_count = 0
        #: (user key, path) of every code traded for tokens, in order.
        self.sign_ins: list[tuple[str, str]] = []

    # -- apps and users --------------------------------------------------------

    def app_key(self, app_id: str) -> tuple[bool, RSAPublicKey | None]:
        """Whether the APPID is known, and its public key (None when none was uploaded)."""
        with self.lock:
            return app_id in self.apps, self.apps.get(app_id)

    def add_user(
        self,
        key: str | None = None,
        *,
        id_kind: IdKind = "open_id",
        user_id: str | None = None,
        open_id: str | None = None,
        union_id: str | None = None,
        nick_name: str | _Auto | None = AUTO,
        avatar: str | _Auto | None = AUTO,
        gender: str | None = None,
        province: str | None = None,
        city: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> EmulatedUser:
        """Create an account, making up what was left to :data:`AUTO`.

        ``extra`` fields must be JSON values, since Alipay's answer is JSON.
        """
        try:
            extra = json.loads(json.dumps(extra or {}, allow_nan=False))
        except (TypeError, ValueError):
            raise ValueError("add_user()'s extra profile fields must be JSON values") from None
        with self.lock:
            key = key or self._free_key()
            if id_kind in ("user_id", "both"):
                user_id = user_id or new_user_id()
            if id_kind in ("open_id", "both"):
                open_id = open_id or new_open_id()
            legacy = new_alipay_user_id() if id_kind == "both" else None
            user = EmulatedUser(
                key=key,
                user_id=user_id,
                open_id=open_id,
                union_id=union_id,
                alipay_user_id=legacy,
                nick_name=self._made_up_nick_name() if isinstance(nick_name, _Auto) else nick_name,
                avatar=served_avatar(key) if isinstance(avatar, _Auto) else avatar,
                gender=gender,
                province=province,
                city=city,
                extra=extra,
            )
            self.users[key] = user
            return user

    def _free_key(self) -> str:
        """The first ``userN`` not taken."""
        number = len(self.users) + 1
        while f"user{number}" in self.users:
            number += 1
        return f"user{number}"

    def _made_up_nick_name(self) -> str:
        """A Chinese nickname, numbered so two users never look alike."""
        return _NICKNAMES[len(self.users) % len(_NICKNAMES)] + str(len(self.users))

    def find_user(self, key: str) -> EmulatedUser | None:
        """The user with this key, or None: for readers that must not create one."""
        with self.lock:
            return self.users.get(key)

    def user(self, key: str) -> EmulatedUser:
        """The user with this key, created on first use."""
        with self.lock:
            return self.users.get(key) or self.add_user(key)

    def all_users(self) -> list[EmulatedUser]:
        """A snapshot of the users, safe to iterate while others sign up."""
        with self.lock:
            return list(self.users.values())

    # -- grants ------------------------------------------------------------------

    def issue_code(
        self, user_key: str, scope: str, app_id: str, ttl: float, path: str = "web"
    ) -> str:
        """Mint an auth_code for a user who approved ``scope`` for ``app_id``."""
        code = new_auth_code()
        grant = Grant(app_id, user_key, scope, time.monotonic() + ttl, path)
        with self.lock:
            self.codes[code] = grant
        return code

    def expire_code(self, code: str) -> None:
        """Make an unused auth_code expired; KeyError if there is none."""
        with self.lock:
            grant = self.codes.get(code)
            if grant is None:
                raise KeyError(f"no such unused auth_code: {code!r}")
            grant.expires_at = 0

    def expire_token(self, token: str) -> None:
        """Make an access or refresh token expired; KeyError if there is none."""
        with self.lock:
            grant = self.access_tokens.get(token) or self.refresh_tokens.get(token)
            if grant is None:
                raise KeyError(f"no such access or refresh token: {token!r}")
            grant.expires_at = 0

    def redeem_code(self, code: str) -> Grant | None:
        """Codes are single-use: burned here whether or not the exchange succeeds."""
        with self.lock:
            return self.codes.pop(code, None)

    def record_sign_in(self, grant: Grant) -> None:
        """A code was traded for tokens: who signed in, and by which path."""
        with self.lock:
            self.sign_ins.append((grant.user_key, grant.path))

    def redeem_refresh_token(self, token: str) -> Grant | None:
        """Refresh tokens are single-use too: a refresh issues a new one."""
        with self.lock:
            return self.refresh_tokens.pop(token, None)

    def access_grant(self, token: str) -> Grant | None:
        """What an access token stands for, if it was ever issued."""
        with self.lock:
            return self.access_tokens.get(token)

    def issue_tokens(
        self, grant: Grant, token_ttl: float, refresh_ttl: float
    ) -> tuple[str, str, EmulatedUser]:
        """A new access and refresh token for the grant's user, and that user.

        The prefix tells ``auth_user`` tokens from ``auth_base`` ones, as Alipay's do.
        """
        access_token = new_access_token(grant.scope)
        refresh_token = new_access_token(grant.scope)
        now = time.monotonic()
        with self.lock:
            self.access_tokens[access_token] = Grant(
                grant.app_id, grant.user_key, grant.scope, now + token_ttl
            )
            self.refresh_tokens[refresh_token] = Grant(
                grant.app_id, grant.user_key, grant.scope, now + refresh_ttl
            )
            return access_token, refresh_token, self.users[grant.user_key]

    # -- injections and the record -----------------------------------------------

    def queue(self, injection: Injection) -> Injection:
        """Queue a misbehaviour; the first matching one is taken first."""
        with self.lock:
            self.injections.append(injection)
        return injection

    def _take(self, method: str | None) -> Injection | None:
        """Use up one time of the first matching injection; callers hold the lock."""
        for injection in self.injections:
            if injection.matches(method):
                injection.times -= 1
                if injection.times <= 0:
                    self.injections.remove(injection)
                return injection
        return None

    def record(self, call: GatewayRequest) -> Injection | None:
        """Keep a gateway call, count it, and take the injection it meets, all at once
        so two concurrent calls never take the same last use of an injection."""
        with self.lock:
            self.requests.append(call)
            counted = call.method or "(none)"
            self.counts[counted] = self.counts.get(counted, 0) + 1
            return self._take(call.method)

    def count_authorize(self) -> None:
        """One more hit on the authorize page, for :meth:`stats`."""
        with self.lock:
            self.authorize_count += 1

    def injections_left(self) -> int:
        """How many gateway calls the pending injections will still spoil."""
        with self.lock:
            return sum(injection.times for injection in self.injections)

    def reset(self) -> None:
        """Forget recorded requests and pending injections; counts and grants stay."""
        with self.lock:
            self.requests.clear()
            self.injections.clear()
            self.sign_ins.clear()

    def stats(self) -> dict[str, Any]:
        """Counts since start, users, and the injections still pending."""
        with self.lock:
            pending = [dataclasses.asdict(injection) for injection in self.injections]
            return {
                "gateway_requests": dict(sorted(self.counts.items())),
                "gateway_requests_total": sum(self.counts.values()),
                "authorize_requests": self.authorize_count,
                "users": len(self.users),
                "injections_left": sum(injection["times"] for injection in pending),
                "injections": pending,
            }
