"""What flask_alipay writes to logs, and how secrets and forged lines are kept out.

Values that came from outside (Alipay's sub_msg, an answer's alipay_cert_sn, a
browser's state or next) are escaped before they reach a log line, so a
newline in them cannot start a line of its own.
"""

from __future__ import annotations

import logging
import re
import threading
import weakref

from .errors import AlipayError, redact

__all__ = [
    "REDACTED_LOGGERS",
    "RedactingFilter",
    "log",
    "log_failure",
    "log_no_regenerate",
    "printable",
]

log = logging.getLogger("flask_alipay")

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(value: object) -> str:
    """``value`` as one line of text: control characters become visible escapes."""
    return _UNPRINTABLE.sub(
        lambda m: m.group().encode("unicode_escape").decode("ascii"), str(value)
    )


class RedactingFilter(logging.Filter):
    """Hide secrets in other libraries' log lines.

    Werkzeug's and gunicorn's access logs show the callback's ``auth_code``
    (spent by then, but policy may forbid it).  flask_alipay puts no secret in any
    URL it requests, so urllib3's lines carry none; the filter sits on urllib3
    too, as a second line of defence.  Servers that log outside Python (uWSGI,
    nginx) need their own mask: docs/deployment.md shows it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_REDACTING_FILTER = RedactingFilter()
#: Loggers whose lines quote URLs: access logs, and the HTTP client's own.
REDACTED_LOGGERS = ("werkzeug", "gunicorn.access", "urllib3.connectionpool", "urllib3.connection")
for _name in REDACTED_LOGGERS:
    logging.getLogger(_name).addFilter(_REDACTING_FILTER)


def log_failure(error: AlipayError) -> None:
    """One WARNING per failed sign-in, with the fix, and nothing forged or secret in it.

    The record also carries ``alipay_reason``, ``alipay_status`` and
    ``alipay_sub_code`` (and ``alipay_state_case`` for a state failure) as
    attributes, so a JSON formatter or an alert rule can read them.
    """
    fields = {
        "alipay_reason": error.reason,
        "alipay_status": error.status_code,
        "alipay_sub_code": printable(error.sub_code) if error.sub_code else None,
    }
    case = getattr(error, "case", None)
    if case is not None:
        fields["alipay_state_case"] = case
    log.warning(
        "Alipay sign-in failed (%s, status %s, sub_code %s): %s Hint: %s",
        error.reason,
        error.status_code,
        printable(error.sub_code),
        printable(redact(str(error))),
        printable(error.hint),
        extra=fields,
    )


def log_receiver_failure(error: BaseException, name: str) -> None:
    """A site's user_logged_in receiver raised: the identity was dropped; the app handles it."""
    log.error(
        "A user_logged_in receiver of %r raised %s; the Alipay identity was not kept in the "
        "session, and the exception goes on to the app's own error handling.",
        name,
        type(error).__name__,
        extra={"alipay_reason": "receiver", "alipay_status": 500, "alipay_sub_code": None},
    )


_warned_interfaces: weakref.WeakSet[object] = weakref.WeakSet()
_warned_ids: set[int] = set()  # interfaces that take no weak reference (__slots__)
_warned_lock = threading.Lock()


def log_no_regenerate(interface: object) -> None:
    """Once per session interface: it has no ``regenerate``, so sign-in keeps the session id."""
    with _warned_lock:
        try:
            if interface in _warned_interfaces:
                return
            _warned_interfaces.add(interface)
        except TypeError:
            if id(interface) in _warned_ids:
                return
            _warned_ids.add(id(interface))
    kind = type(interface)
    log.warning(
        "The session interface %s.%s has no regenerate(session), so the session id is not "
        "replaced at sign-in: an id planted in a browser before sign-in (session fixation) "
        "stays signed in. Use Flask-Session 0.7 or later, or give the interface a "
        "regenerate(session) that moves the session to a new id.",
        kind.__module__,
        kind.__qualname__,
    )
