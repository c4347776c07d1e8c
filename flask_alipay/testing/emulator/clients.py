"""What Alipay gives a mini program or an app, rather than a browser.

``my.getAuthCode`` and the Alipay app SDK hand the client an auth_code
(:meth:`AlipayEmulator.issue_code` mints one, with its path), and
``my.getPhoneNumber`` hands it an encrypted, signed phone number answer
(:meth:`phone_number`).  The encryption is written here, independent of the
library's decryption (``flask_alipay.phone``), as the official SDKs'
``EncryptUtils`` do it: AES-CBC, an all-zero IV, PKCS#5 padding, base64.
"""

from __future__ import annotations

import base64
import json
import random
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

if TYPE_CHECKING:
    from .pki import AlipayKeys
    from .state import EmulatedUser, State

__all__ = ["NativeClients"]


class NativeClients:
    """The mini program and app side of :class:`AlipayEmulator`."""

    _state: State
    _keys: AlipayKeys
    app_id: str
    code_ttl: float

    def user(self, key: str | None = None) -> EmulatedUser:
        raise NotImplementedError  # AlipayEmulator's

    def issue_code(
        self,
        user_key: str | None = None,
        scope: str = "auth_user",
        app_id: str | None = None,
        path: str = "mini_program",
    ) -> str:
        """An auth_code as ``my.getAuthCode`` (``path="mini_program"``) or the Alipay app
        SDK (``"app"``) gives a client: the user approved, no browser leg."""
        user = self.user(user_key)
        return self._state.issue_code(user.key, scope, app_id or self.app_id, self.code_ttl, path)

    @property
    def sign_ins(self) -> list[tuple[str, str]]:
        """(user key, path) of every auth_code traded for tokens, in order; the path is
        ``web``, ``alipay_app`` (the authorize page inside Alipay's browser),
        ``mini_program`` or ``app``."""
        with self._state.lock:
            return list(self._state.sign_ins)

    def phone_number(
        self,
        aes_key: str,
        user_key: str | None = None,
        *,
        sub_code: str | None = None,
        charset: str = "utf-8",
    ) -> dict[str, str]:
        """What ``my.getPhoneNumber`` gives the client: ``{"response": ..., "sign": ...}``.

        ``aes_key`` is the app's 接口内容加密密钥 (base64).  The number is the user's
        ``mobile`` (``add_user(..., mobile=...)``), or a made-up one.  With
        ``sub_code`` the encrypted content is that error instead, as Alipay sends
        ``isv.insufficient-isv-permissions`` to a mini program without the product.
        """
        content: dict[str, Any]
        if sub_code is not None:
            content = {
                "code": "40006",
                "msg": "Insufficient Permissions",
                "subCode": sub_code,
                "subMsg": "ISV权限不足，建议在开发者中心检查对应功能是否已经添加",
            }
        else:
            user = self.user(user_key)
            mobile = (
                user.extra.get("mobile") or f"1{random.randint(3, 9)}{random.randrange(10**9):09d}"
            )
            content = {"code": "10000", "msg": "Success", "mobile": str(mobile)}
        plain = json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode(charset)
        padder = padding.PKCS7(128).padder()
        padded = padder.update(plain) + padder.finalize()
        encryptor = Cipher(
            algorithms.AES(base64.b64decode(aes_key)), modes.CBC(bytes(16))
        ).encryptor()
        response = base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode("ascii")
        key, _sn = self._keys.current()
        signed = ('"' + response + '"').encode(charset)
        signature = key.sign(signed, rsa_padding.PKCS1v15(), hashes.SHA256())
        return {"response": response, "sign": base64.b64encode(signature).decode("ascii")}
