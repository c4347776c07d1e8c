"""A minimal hand-written Alipay client for the emulator's tests: the SDKs' split,
signed with flask_alipay.signing only, so it checks the emulator against
docs/protocol.md rather than against the extension's request builder."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any

import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from flask_alipay.signing import parse_answer, sign_text, string_to_sign, verify_signature
from flask_alipay.testing import AlipayEmulator, EmulatorServer, beijing_now

APP_ID = "2021000000000001"
TOKEN = "alipay.system.oauth.token"
USER_INFO = "alipay.user.info.share"
TOKEN_NODE = "alipay_system_oauth_token_response"
USER_INFO_NODE = "alipay_user_info_share_response"


@dataclass
class Client:
    """A minimal hand-written Alipay client: the SDKs' split, signed by hand."""

    emulator: AlipayEmulator
    key: rsa.RSAPrivateKey
    app_id: str = APP_ID

    @property
    def server(self) -> EmulatorServer:
        assert self.emulator.server is not None
        return self.emulator.server

    def call(
        self,
        method: str,
        business: dict[str, str],
        *,
        charset: str = "utf-8",
        sign_type: str = "RSA2",
        auth_token: str | None = None,
        timestamp: str | None = None,
        key: rsa.RSAPrivateKey | None = None,
        move_to_body: tuple[str, ...] = (),
        timeout: float = 10,
    ) -> requests.Response:
        query = {
            "app_id": self.app_id,
            "method": method,
            "format": "JSON",
            "charset": charset,
            "sign_type": sign_type,
            "timestamp": timestamp or beijing_now().strftime("%Y-%m-%d %H:%M:%S"),
            "version": "1.0",
        }
        if auth_token is not None:
            query["auth_token"] = auth_token
        body = dict(business)
        for name in move_to_body:
            body[name] = query.pop(name)
        text = string_to_sign({**query, **body})
        query["sign"] = sign_text(text, key or self.key, sign_type, charset)
        url = self.server.gateway_url + "?" + urllib.parse.urlencode(query, encoding=charset)
        return requests.post(
            url,
            data=urllib.parse.urlencode(body, encoding=charset).encode("ascii"),
            headers={"Content-Type": f"application/x-www-form-urlencoded;charset={charset}"},
            timeout=timeout,
        )

    def read(
        self,
        response: requests.Response,
        node: str,
        charset: str = "utf-8",
        sign_type: str = "RSA2",
    ) -> tuple[str, dict[str, Any]]:
        """The answer's node name and data, after checking Alipay's signature."""
        assert response.status_code == 200
        answer = parse_answer(response.content, node, charset)
        assert answer.sign, "the emulator signs every answer"
        assert verify_signature(
            answer.content, answer.sign, self.emulator.alipay_public_key, sign_type
        ), "the answer's signature does not verify"
        return answer.node, answer.data

    def exchange(self, code: str, **options: Any) -> tuple[str, dict[str, Any]]:
        charset = options.get("charset", "utf-8")
        sign_type = options.get("sign_type", "RSA2")
        response = self.call(TOKEN, {"grant_type": "authorization_code", "code": code}, **options)
        return self.read(response, TOKEN_NODE, charset, sign_type)

    def refresh(self, refresh_token: str) -> tuple[str, dict[str, Any]]:
        business = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        return self.read(self.call(TOKEN, business), TOKEN_NODE)

    def profile(self, access_token: str, **options: Any) -> tuple[str, dict[str, Any]]:
        charset = options.get("charset", "utf-8")
        sign_type = options.get("sign_type", "RSA2")
        response = self.call(USER_INFO, {}, auth_token=access_token, **options)
        return self.read(response, USER_INFO_NODE, charset, sign_type)
