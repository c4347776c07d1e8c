"""The hint catalogue: every sub_code docs/protocol.md §8 names has a human fix."""

from __future__ import annotations

import pytest

from flask_alipay import AlipayError
from flask_alipay.errors import HINTS, redact

SUB_CODES = [
    "isv.code-invalid",
    "isv.invalid-signature",
    "isv.invalid-app-id",
    "isv.missing-signature-config",
    "isv.invalid-timestamp",
    "isv.invalid-charset",
    "isv.insufficient-isv-permissions",
    "aop.invalid-auth-token",
    "aop.auth-token-time-out",
    "isv.refresh-token-invalid",
    "isv.refresh-token-time-out",
    "isv.app-cert-not-exist",
    "invalid-alipay-root-cert-sn",
    "isp.unknow-error",
    "aop.unknow-error",
]


@pytest.mark.parametrize("sub_code", SUB_CODES)
def test_every_sub_code_has_a_bilingual_hint(sub_code: str) -> None:
    hint = AlipayError("x", sub_code=sub_code).hint
    assert hint == HINTS[sub_code]
    assert any("\u4e00" <= c <= "\u9fff" for c in hint), "the Chinese console term"
    assert hint.isascii() is False and len(hint) > 30


def test_unknown_sub_code_still_gets_a_hint() -> None:
    assert "isv.something-new" in AlipayError("x", sub_code="isv.something-new").hint


def test_sub_msg_is_redacted() -> None:
    quoted = "验签出错，网关生成的验签字符串为：app_id=1&code=SECRETCODE&auth_token=TOKENVALUE"
    error = AlipayError("x", sub_code="isv.invalid-signature", sub_msg=quoted)
    assert "SECRETCODE" not in str(error) and "TOKENVALUE" not in (error.sub_msg or "")
    assert redact("refresh_token=abc&state=ok") == "refresh_token=***&state=ok"
