"""Phone browsers: who gets the choice page, the deep link into Alipay, and hand-off states.

Outside the Alipay app a phone browser cannot show Alipay's consent, so the
sign-in is handed to the Alipay app with a deep link.  The authorize page then
opens in Alipay's own browser, which does not share the phone browser's
cookies: the callback arrives there with no pending sign-in in its session.

A hand-off state therefore carries its own proof: a random nonce, an expiry
and an HMAC over both, keyed by a secret derived from the app private key
(the one secret every worker of the app already shares).  It is accepted only
for hand-off sign-ins (a callback inside Alipay's browser), only until it
expires, and only once per process; Alipay's auth_code is single-use too, so
a replay to another worker fails at the code exchange.  Every other sign-in
keeps the session-bound state and its login-CSRF protection.  No I/O here.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict
from urllib.parse import quote

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from .errors import InvalidState

__all__ = [
    "ALIPAY_CLIENT",
    "HANDOFF_TTL",
    "HandoffStates",
    "deep_link",
    "in_alipay",
    "is_handoff_state",
    "is_phone_browser",
    "needs_handoff",
]

#: What Alipay's in-app browser puts in its User-Agent.
ALIPAY_CLIENT = "AlipayClient"
#: Alipay's documented hand-off: open this URL in the Alipay app's own browser.
_STARTAPP = "alipays://platformapi/startapp?appId=20000067&url="
#: iPhone, "Android ... Mobile" (Android tablets say no Mobile), "HarmonyOS ... Phone"
#: (HarmonyOS NEXT writes "(Phone; OpenHarmony ...").  An iPad that sends a desktop
#: User-Agent is a desktop, as it asks to be.
_PHONE = re.compile(r"iPhone|Android.*\bMobile\b|HarmonyOS.*\bPhone\b|\(Phone;[^)]*Harmony")
#: Seconds a hand-off state stays valid: the user switches apps and approves.
HANDOFF_TTL = 300
#: Hand-off states start with H, which a session state (lowercase hex) never does.
_PREFIX = "H"
_STATE = re.compile(r"H([0-9a-f]{16})([0-9]{10})([0-9a-f]{32})")
#: Spent nonces remembered per process; more than a busy site starts in HANDOFF_TTL.
_MAX_SPENT = 50_000


def is_phone_browser(user_agent: str) -> bool:
    """A phone's browser, by the markers phone browsers send."""
    return bool(_PHONE.search(user_agent))


def in_alipay(user_agent: str) -> bool:
    """The Alipay app's own browser, where the authorize page works as it is."""
    return ALIPAY_CLIENT in user_agent


def needs_handoff(user_agent: str) -> bool:
    """A phone browser outside Alipay: it gets the choice page instead of a redirect."""
    return is_phone_browser(user_agent) and not in_alipay(user_agent)


def deep_link(authorize_url: str) -> str:
    """The link that opens ``authorize_url`` inside the Alipay app."""
    return _STARTAPP + quote(authorize_url, safe="")


def is_handoff_state(state: str | None) -> bool:
    """Whether a callback's ``state`` claims to be a hand-off state (not yet checked)."""
    return bool(state) and str(state).startswith(_PREFIX)


class HandoffStates:
    """Issues and redeems hand-off states for one app; thread-safe."""

    def __init__(self, private_key: RSAPrivateKey) -> None:
        der = private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # A key of its own, derived from the app key every worker shares.
        self._key = hashlib.sha256(b"flask_alipay hand-off state v1\0" + der).digest()
        self._spent: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def _mac(self, nonce: str, expires: str) -> str:
        return hmac.new(self._key, f"{nonce}{expires}".encode(), hashlib.sha256).hexdigest()[:32]

    def issue(self, now: float | None = None) -> str:
        """A new state, 59 letters and digits, as Alipay's 100-character limit allows."""
        nonce = secrets.token_hex(8)
        expires = f"{int((time.time() if now is None else now) + HANDOFF_TTL):010d}"
        return f"{_PREFIX}{nonce}{expires}{self._mac(nonce, expires)}"

    def redeem(self, state: str, now: float | None = None) -> None:
        """Accept ``state`` once, or raise InvalidState saying which case it is."""
        found = _STATE.fullmatch(state)
        if found is None:
            raise InvalidState(case="unknown")
        nonce, expires, mac = found.groups()
        if not hmac.compare_digest(mac, self._mac(nonce, expires)):
            raise InvalidState(case="unknown")
        moment = time.time() if now is None else now
        if int(expires) < moment:
            raise InvalidState(case="expired")
        with self._lock:
            if nonce in self._spent:
                raise InvalidState(case="used")
            self._spent[nonce] = int(expires)
            while self._spent and (
                len(self._spent) > _MAX_SPENT or next(iter(self._spent.values())) < moment
            ):
                self._spent.popitem(last=False)
