"""The signals, in a Namespace of our own so receivers can tell them from Flask's."""

from __future__ import annotations

from blinker import Namespace

__all__ = ["login_failed", "user_logged_in", "user_logged_out"]

_signals = Namespace()

#: Sent after a verified sign-in, before the redirect:
#: ``user_logged_in.send(app, user=AlipayUser, token=dict)``.  A receiver that
#: returns a Response replaces the redirect.
user_logged_in = _signals.signal("alipay-user-logged-in")

#: Sent for every failure once the callback starts:
#: ``login_failed.send(app, error=AlipayError)``.
login_failed = _signals.signal("alipay-login-failed")

#: Sent by the logout view when someone was signed in:
#: ``user_logged_out.send(app, user=AlipayUser)``.
user_logged_out = _signals.signal("alipay-user-logged-out")
