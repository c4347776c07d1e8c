"""The signals, in a Namespace of our own so receivers can tell them from Flask's.

Every signal also carries ``name``, the AlipayLogin instance's name (``"alipay"``
by default), so a site with several Alipay apps can tell them apart.  Receivers
should accept ``**extra``.
"""

from __future__ import annotations

from typing import Any

from blinker import Namespace, Signal
from flask import current_app

__all__ = ["login_failed", "send", "token_refreshed", "user_logged_in", "user_logged_out"]

_signals = Namespace()

#: Sent after a verified sign-in, before the redirect:
#: ``user_logged_in.send(app, user=AlipayUser, token=dict, name=str)``.  A receiver that
#: returns a Response replaces the redirect.
user_logged_in = _signals.signal("alipay-user-logged-in")

#: Sent for every failure once the callback starts:
#: ``login_failed.send(app, error=AlipayError, name=str)``.  When a ``user_logged_in``
#: receiver raises, ``error`` is that exception, which then goes on to the app.
login_failed = _signals.signal("alipay-login-failed")

#: Sent by the logout view on every logout:
#: ``user_logged_out.send(app, user=AlipayUser | None, name=str)``; ``user`` is None
#: when no Alipay identity was in the session (a Flask-Login remember-me visit, say).
user_logged_out = _signals.signal("alipay-user-logged-out")

#: Sent by ``AlipayLogin.refresh_token`` with the new, verified token:
#: ``token_refreshed.send(app, token=dict, name=str)``.
token_refreshed = _signals.signal("alipay-token-refreshed")


def send(signal: Signal, sender: Any, **kwargs: Any) -> list[tuple[Any, Any]]:
    """``signal.send``, with ``async def`` receivers awaited as Flask runs async views.

    blinker refuses a coroutine receiver in a plain ``send``; Flask's
    ``ensure_sync`` runs it to completion instead, so receivers may be either.
    """
    return [
        (receiver, current_app.ensure_sync(receiver)(sender, **kwargs))
        for receiver in signal.receivers_for(sender)
    ]
