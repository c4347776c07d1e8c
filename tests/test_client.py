"""The gateway transport: bounded answers, keep-alive, errors that quote no URL."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask import Flask, Response
from support.site import serving

from flask_alipay import AlipayError
from flask_alipay.gateway import MAX_ANSWER_BYTES
from flask_alipay.protocol import beijing_timestamp


@pytest.fixture
def huge_gateway() -> Iterator[str]:
    gateway = Flask("huge")

    @gateway.post("/gateway.do")
    def answer() -> Response:
        body = b'{"alipay_user_info_share_response":{"pad":"' + b"x" * MAX_ANSWER_BYTES + b'"}}'
        return Response(body, content_type="text/html;charset=utf-8")

    with serving(gateway) as url:
        yield url + "/gateway.do"


def test_answers_over_one_mebibyte_are_refused(
    make_site: Callable[..., Flask], huge_gateway: str
) -> None:
    site = make_site(ALIPAY_GATEWAY_URL=huge_gateway)
    with site.app_context(), pytest.raises(AlipayError, match="too large") as caught:
        site.extensions["alipay"].gateway.call("alipay.user.info.share", auth_token="t0ken-value")
    assert caught.value.status_code == 502 and caught.value.reason == "malformed"


def test_beijing_timestamp_whatever_the_zone() -> None:
    from datetime import datetime, timezone

    moment = datetime(2024, 1, 31, 20, 5, 9, tzinfo=timezone.utc)
    assert beijing_timestamp(moment) == "2024-02-01 04:05:09"
