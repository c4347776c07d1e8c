"""The demo in a real browser: Debian's chromium, driven by Playwright, no network."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Browser, Page, expect, sync_playwright
from support.site import serving

from demo import create_app
from flask_alipay.testing import AlipayEmulator

CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 15_000
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "demo.png"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    for name in list(os.environ):
        if name.startswith("ALIPAY_") or name == "DEMO_EMULATOR_PORT":
            monkeypatch.delenv(name)
    app = create_app(instance_path=str(tmp_path / "instance"))
    yield app
    app.extensions["demo_emulator"].stop()


@pytest.fixture
def base_url(demo: Flask) -> Iterator[str]:
    """The demo on a real threaded server, as `flask run` would serve it."""
    with serving(demo) as url:
        yield url


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 900, "height": 640}, locale="zh-CN")
    context.set_default_timeout(TIMEOUT_MS)
    yield context.new_page()
    context.close()


def emulator_of(app: Flask) -> AlipayEmulator:
    emulator: AlipayEmulator = app.extensions["demo_emulator"]
    return emulator


def open_consent_page(page: Page, base_url: str, emulator: AlipayEmulator) -> None:
    """Home -> the sign-in button -> the emulator's consent page."""
    page.goto(base_url + "/")
    page.get_by_role("link", name="使用支付宝登录 / Sign in with Alipay").click()
    assert emulator.server is not None
    page.wait_for_url(emulator.server.authorize_url + "?*")
    expect(page.locator("body")).to_contain_text(emulator.app_id)
    expect(page.locator("body")).to_contain_text("auth_user")


def test_sign_in_profile_and_sign_out(
    page: Page, demo: Flask, base_url: str, tmp_path: Path
) -> None:
    emulator = emulator_of(demo)
    open_consent_page(page, base_url, emulator)
    page.get_by_role("button", name="同意 / Approve").click()

    page.wait_for_url(base_url + "/profile")
    expect(page.get_by_role("heading", name="小明")).to_be_visible()
    expect(page.locator(".kind")).to_have_text("open_id")
    # The emulator serves avatars itself, so the picture loads offline.
    page.wait_for_function(
        "() => { const img = document.querySelector('img.avatar');"
        " return img && img.complete && img.naturalWidth > 0; }"
    )

    page.screenshot(path=tmp_path / "demo.png")
    if os.environ.get("UPDATE_DEMO_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(tmp_path / "demo.png", SCREENSHOT)

    page.get_by_role("button", name="退出登录 / Sign out").click()
    page.wait_for_url(base_url + "/")
    expect(page.get_by_role("link", name="使用支付宝登录 / Sign in with Alipay")).to_be_visible()

    page.goto(base_url + "/profile")  # signed out: back through login to Alipay's consent
    assert emulator.server is not None
    page.wait_for_url(emulator.server.authorize_url + "?*")
    expect(page.get_by_role("button", name="同意 / Approve")).to_be_visible()


def test_cancel_ends_on_the_friendly_page(page: Page, demo: Flask, base_url: str) -> None:
    emulator = emulator_of(demo)
    open_consent_page(page, base_url, emulator)
    with page.expect_navigation(url=base_url + "/alipay/callback?*") as navigation:
        page.get_by_role("button", name="取消 / Cancel").click()

    response = navigation.value
    assert response is not None and response.status == 400
    text = page.title() + "\n" + page.locator("body").inner_text()
    assert "Sign-in with Alipay did not complete" in text
    assert "cancelled" in text
    retry = page.get_by_role("link", name="重试 · Try again")
    expect(retry).to_be_visible()
    retry.click()  # and trying again goes straight back to Alipay
    assert emulator.server is not None
    page.wait_for_url(emulator.server.authorize_url + "?*")


IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)


def test_a_phone_gets_the_handoff_page_and_can_continue(
    browser: Browser, demo: Flask, base_url: str, tmp_path: Path
) -> None:
    """At a phone's viewport: open in Alipay (the alipays:// link), or continue here."""
    context = browser.new_context(
        viewport={"width": 390, "height": 844},
        user_agent=IPHONE,
        is_mobile=True,
        has_touch=True,
        locale="zh-CN",
    )
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        page.goto(base_url + "/")
        page.get_by_role("link", name="使用支付宝登录 / Sign in with Alipay").click()
        page.wait_for_url(base_url + "/alipay/login**")
        open_in_alipay = page.get_by_role("link", name="在支付宝中打开 / Open in Alipay")
        expect(open_in_alipay).to_be_visible()
        href = open_in_alipay.get_attribute("href") or ""
        assert href.startswith("alipays://platformapi/startapp?appId=20000067&url=")
        # Both choices fit the phone's width, one under the other.
        first = open_in_alipay.bounding_box()
        second = page.get_by_role("link", name="继续 / Continue in this browser").bounding_box()
        assert first and second and first["y"] < second["y"]
        assert first["x"] + first["width"] <= 390 and second["x"] + second["width"] <= 390
        page.screenshot(path=tmp_path / "handoff.png")

        page.get_by_role("link", name="继续 / Continue in this browser").click()
        emulator = emulator_of(demo)
        assert emulator.server is not None
        page.wait_for_url(emulator.server.authorize_url + "?*")
        page.get_by_role("button", name="同意 / Approve").click()
        page.wait_for_url(base_url + "/profile")
        expect(page.get_by_role("heading", name="小明")).to_be_visible()
        assert emulator.sign_ins == [("default", "web")]
    finally:
        context.close()
