"""Phone numbers from a mini program's ``my.getPhoneNumber``: verify, then decrypt.

The client receives ``{"response": "<base64 ciphertext>", "sign": "..."}`` and
passes both to the backend.  Alipay signs the response as a JSON string, that
is with its double quotes, and encrypts it with the app's 接口内容加密 key: AES
in CBC mode with an all-zero IV and PKCS#5 padding, as the official SDKs'
``EncryptUtils`` do.  No I/O here, and the number is never logged.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .errors import AlipayRefused, MalformedAnswer, UnverifiedAnswer
from .protocol import SUCCESS_CODE
from .signing import verify_signature

__all__ = ["PhoneNumberRefused", "aes_key", "decrypt_phone_answer"]

_ZERO_IV = bytes(16)
#: A ciphertext this long is not a phone number answer.
_MAX_CIPHERTEXT = 8192


def aes_key(value: Any) -> bytes:
    """ALIPAY_AES_KEY: the console's 接口内容加密密钥, base64 of 16, 24 or 32 bytes."""
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "is not base64: paste the AES key (接口内容加密密钥) as the console shows it."
        ) from None
    if len(key) not in (16, 24, 32):
        raise ValueError(
            "is not an AES key: the console's 接口内容加密密钥 is the base64 of 16 bytes."
        )
    return key


class PhoneNumberRefused(AlipayRefused):
    """Alipay's decrypted answer is an error: the hint names the phone-number product."""

    @property
    def hint(self) -> str:
        if self.sub_code == "isv.insufficient-isv-permissions":
            return (
                "The mini program may not read phone numbers: add the 获取会员手机号 "
                "product to it in the console (enterprise mini programs only), and have the "
                "user agree in my.getPhoneNumber."
            )
        return super().hint


def decrypt_phone_answer(
    response: str,
    sign: str,
    *,
    aes: bytes,
    keys: Iterable[RSAPublicKey] | None,
    sign_type: str,
    charset: str,
) -> dict[str, Any]:
    """The decrypted answer (``mobile`` and the rest), or the AlipayError it stands for.

    ``keys`` is None only when the site chose ALIPAY_VERIFY_ANSWERS = False.
    """
    if not isinstance(response, str) or not response or len(response) > _MAX_CIPHERTEXT:
        raise MalformedAnswer("The phone number answer has no usable response.")
    if keys is not None:
        quoted = ('"' + response + '"').encode(charset)
        if not sign or not any(verify_signature(quoted, sign, key, sign_type) for key in keys):
            raise UnverifiedAnswer("The phone number answer did not verify with Alipay's key.")
    data = _decrypt(response, aes, charset)
    if str(data.get("code")) != SUCCESS_CODE:
        sub_code = data.get("subCode") or data.get("sub_code")
        raise PhoneNumberRefused(
            "Alipay did not give the phone number.",
            code=str(data.get("code") or "") or None,
            sub_code=str(sub_code) if sub_code else None,
            sub_msg=str(data.get("subMsg") or data.get("sub_msg") or data.get("msg") or "") or None,
        )
    return data


def _decrypt(response: str, aes: bytes, charset: str) -> dict[str, Any]:
    try:
        ciphertext = base64.b64decode(response, validate=True)
        decryptor = Cipher(algorithms.AES(aes), modes.CBC(_ZERO_IV)).decryptor()
        padded = decryptor.update(ciphertext) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        plain = unpadder.update(padded) + unpadder.finalize()
        data = json.loads(plain.decode(charset))
    except (binascii.Error, ValueError):
        # Wrong ALIPAY_AES_KEY, or not Alipay's ciphertext: say neither the text nor the key.
        raise MalformedAnswer(
            "The phone number answer does not decrypt with ALIPAY_AES_KEY."
        ) from None
    if not isinstance(data, dict):
        raise MalformedAnswer("The phone number answer is not a JSON object.")
    return data
