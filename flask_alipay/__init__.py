"""Sign in with Alipay (支付宝登录) for Flask: signed, verified, testable offline."""

from .errors import (
    AlipayConfigError,
    AlipayError,
    AlipayRefused,
    AppIdMismatch,
    CertificateRotated,
    GatewayTimedOut,
    GatewayUnreachable,
    InvalidState,
    MalformedAnswer,
    MissingUserId,
    SignInCancelled,
    UnverifiedAnswer,
)
from .extension import AlipayLogin
from .identity import AlipayUser, AnonymousAlipayUser, current_alipay_user, login_required
from .signals import login_failed, token_refreshed, user_logged_in, user_logged_out

__version__ = "0.1.0"

__all__ = [
    "AlipayConfigError",
    "AlipayError",
    "AlipayLogin",
    "AlipayRefused",
    "AlipayUser",
    "AnonymousAlipayUser",
    "AppIdMismatch",
    "CertificateRotated",
    "GatewayTimedOut",
    "GatewayUnreachable",
    "InvalidState",
    "MalformedAnswer",
    "MissingUserId",
    "SignInCancelled",
    "UnverifiedAnswer",
    "current_alipay_user",
    "login_failed",
    "login_required",
    "token_refreshed",
    "user_logged_in",
    "user_logged_out",
]
