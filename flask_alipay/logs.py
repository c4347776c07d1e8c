"""What flask_alipay writes to logs, and how secrets and forged lines are kept out.

Values that came from outside (Alipay's sub_msg, an answer's alipay_cert_sn, a
browser's state or next) are escaped before they reach a log line, so a
newline in them cannot start a line of its own.
"""

from __future__ import annotations

import logging
import re

from .errors import AlipayError, redact

__all__ = ["RedactingFilter", "log", "log_failure", "printable"]

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

    Werkzeug's access log shows the callback's ``auth_code``.  flask_alipay puts no
    secret in any URL it requests, so urllib3's lines carry none; the filter sits
    on urllib3 too, as a second line of defence.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_REDACTING_FILTER = RedactingFilter()
for _name in ("werkzeug", "urllib3.connectionpool", "urllib3.connection"):
    logging.getLogger(_name).addFilter(_REDACTING_FILTER)


def log_failure(error: AlipayError) -> None:
    """One WARNING per failed sign-in, with the fix, and nothing forged or secret in it."""
    log.warning(
        "Alipay sign-in failed (%s, status %s, sub_code %s): %s Hint: %s",
        error.reason,
        error.status_code,
        printable(error.sub_code),
        printable(redact(str(error))),
        printable(error.hint),
    )
