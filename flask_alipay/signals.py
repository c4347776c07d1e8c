"""The signals, in a Namespace of our own so receivers can tell them from Flask's.

Every signal also carries ``name``, the AlipayLogin instance's name (``"alipay"``
by default), so a site with several Alipay apps can tell them apart.  Receivers
should accept ``**extra``.
"""

from __future__ import annotations

from blinker import Namespace

__all__ = ["login_failed", "token_refreshed", "user_logged_in", "user_logged_out"]

_signals = Namespace()

#: Sent after a verified sign-in, before the redirect:
#: ``user_logged_in.send(app, user=AlipayUser, token=dict, name=str)``.  A receiver that
#: returns a Response replaces the redirect.
user_logged_in = _signals.signal("alipay-user-logged-in")

#: Sent for every failure once the callback starts:
#: ``login_failed.send(app, error=AlipayError, name=str)``.
login_failed = _signals.signal("alipay-login-failed")

#: Sent by the logout view when someone was signed in:
#: ``user_logged_out.send(app, user=AlipayUser, name=str)``.
user_logged_out = _signals.signal("alipay-user-logged-out")

#: Sent by ``AlipayLogin.refresh_token`` with the new, verified token:
#: ``token_refreshed.send(app, token=dict, name=str)``.
token_refreshed = _signals.signal("alipay-token-refreshed")
