"""Many sign-ins at once through a real threaded server: no cross-talk."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from flask import Flask
from support.site import serving

from flask_alipay.testing import AlipayEmulator


@pytest.fixture
def served_site(make_site: Callable[..., Flask]) -> Iterator[str]:
    site = make_site()

    @site.route("/whoami")
    def whoami() -> str:
        from flask_alipay import current_alipay_user

        return current_alipay_user.id if current_alipay_user else "anonymous"

    with serving(site) as url:
        yield url


def test_concurrent_sign_ins_do_not_cross(
    served_site: str, alipay_emulator: AlipayEmulator
) -> None:
    count = 24
    keys = [f"user-{n}" for n in range(count)]
    for key in keys:
        alipay_emulator.add_user(key, id_kind="both" if len(key) % 2 else "open_id")
    barrier = threading.Barrier(count)

    def browse(key: str) -> tuple[str, str, str]:
        with requests.Session() as browser:
            start = browser.get(
                served_site + "/alipay/login?next=/whoami", allow_redirects=False, timeout=10
            )
            barrier.wait(timeout=10)  # all authorize legs and callbacks overlap
            landed = browser.get(start.headers["Location"] + "&login_as=" + key, timeout=20)
            again = browser.get(served_site + "/whoami", timeout=10)
            return key, landed.text, again.text

    with ThreadPoolExecutor(max_workers=count) as pool:
        results = list(pool.map(browse, keys))

    for key, landed, again in results:
        expected = alipay_emulator.users[key].open_id
        assert landed == expected, key
        assert again == expected, key
    assert len({landed for _, landed, _ in results}) == count
