"""One sign-in leg at a time, for tests that look at what passes between the legs.

A whole sign-in in one call is the shipped plugin's ``alipay_sign_in`` fixture.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from flask.testing import FlaskClient


def start_login(client: FlaskClient, next_url: str | None = None) -> str:
    """GET /alipay/login; return the authorize URL it redirects to."""
    query = {"next": next_url} if next_url is not None else {}
    response = client.get("/alipay/login", query_string=query)
    assert response.status_code == 302, response.data
    return str(response.headers["Location"])


def authorize(authorize_url: str, login_as: str | None = None) -> str:
    """Follow the authorize URL at the emulator over HTTP; return the callback URL."""
    url = authorize_url + (f"&login_as={login_as}" if login_as else "")
    response = requests.get(url, allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text
    return str(response.headers["Location"])


def finish(client: FlaskClient, callback_url: str) -> Any:
    """GET the callback on the site, as the browser would after Alipay's redirect."""
    parts = urlsplit(callback_url)
    return client.get(parts.path + "?" + parts.query)


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


def sign_in(client: FlaskClient, next_url: str | None = None, login_as: str | None = None) -> Any:
    """All three legs against whatever emulator the site points at (auto-approving)."""
    return finish(client, authorize(start_login(client, next_url), login_as))
