"""Signing and verifying, per operation: flask_alipay against the floor and two peers.

    python benchmarks/signing.py [--rounds 15] [--batch-seconds 0.05]

The same string to sign (an ``alipay.system.oauth.token`` request) and the same
answer (a token answer, signed as Alipay signs it) go through:

* ours: ``flask_alipay.signing.sign_params`` / ``verify_signature`` (and, as an
  extra row, ``parse_answer`` + ``verify_signature``: what each answer costs);
* floor: raw ``cryptography`` with a cached key, on the ready bytes:
  ``key.sign(data, PKCS1v15(), SHA256())`` and ``public.verify(raw_signature, content,
  PKCS1v15(), SHA256())`` (plus, as an extra verify row, the base64 decode of the
  signature that any real check has to do, since ``sign`` arrives in base64);
* sdk: the official alipay-sdk-python, ``sign_with_rsa2`` / ``verify_with_rsa``,
  called as its users call them (the key text is parsed by pure-Python ``rsa``
  on every call);
* pycryptodome with a cached key.

Rounds are interleaved (every implementation once per round, in a rotating
order) and timed with ``time.process_time``, so a busy neighbour slows all of
them alike; each figure is the median over the rounds, and each ratio the
median of the per-round ratios to the floor.
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from _harness import machine, median, save_results
from alipay.aop.api.util.SignatureUtils import sign_with_rsa2, verify_with_rsa
from Crypto.Hash import SHA256
from Crypto.PublicKey import RSA
from Crypto.Signature import pkcs1_15
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from flask_alipay.protocol import TOKEN_METHOD, beijing_timestamp
from flask_alipay.signing import parse_answer, sign_params, string_to_sign, verify_signature

NODE = TOKEN_METHOD.replace(".", "_") + "_response"
GOAL = 1.1  # ours within 1.1x the floor


@dataclass(frozen=True)
class Case:
    """What every implementation gets: the same keys, text and answer."""

    params: dict[str, str]
    text: str
    data: bytes
    app_pkcs1_body: str  # what the SDK takes
    body: bytes  # the whole answer
    content: bytes  # the signed node, as sliced from the answer
    signature_b64: str
    signature: bytes
    alipay_public_b64: str


def make_case() -> tuple[Case, rsa.RSAPrivateKey, rsa.RSAPublicKey]:
    """A realistic token request and token answer, with fresh 2048-bit keys."""
    app_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    alipay_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    params = {
        "app_id": "2021000000000001",
        "method": TOKEN_METHOD,
        "format": "JSON",
        "charset": "utf-8",
        "sign_type": "RSA2",
        "timestamp": beijing_timestamp(),
        "version": "1.0",
        "grant_type": "authorization_code",
        "code": secrets.token_hex(16),
    }
    text = string_to_sign(params)
    node = {
        "access_token": "authusrB" + secrets.token_hex(16),
        "auth_start": "2024-05-01 12:00:00",
        "expires_in": 1296000,
        "open_id": "0" + secrets.token_urlsafe(35)[:46],
        "re_expires_in": 2592000,
        "refresh_token": "authusrB" + secrets.token_hex(16),
        "union_id": "",
    }
    content = json.dumps(node, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    signature = alipay_key.sign(content, padding.PKCS1v15(), hashes.SHA256())
    signature_b64 = base64.b64encode(signature).decode("ascii")
    body = b'{"' + NODE.encode() + b'":' + content + b',"sign":"' + signature_b64.encode() + b'"}'
    pkcs1 = app_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    spki = alipay_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    case = Case(
        params=params,
        text=text,
        data=text.encode("utf-8"),
        app_pkcs1_body=base64.b64encode(pkcs1).decode("ascii"),
        body=body,
        content=content,
        signature_b64=signature_b64,
        signature=signature,
        alipay_public_b64=base64.b64encode(spki).decode("ascii"),
    )
    return case, app_key, alipay_key.public_key()


def signers(case: Case, key: rsa.RSAPrivateKey) -> dict[str, Callable[[], object]]:
    """One zero-argument call per implementation, each producing a base64 or raw signature."""
    crypto_key = RSA.import_key(
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return {
        "ours": lambda: sign_params(case.params, key, "RSA2", "utf-8"),
        "floor": lambda: key.sign(case.data, padding.PKCS1v15(), hashes.SHA256()),
        "sdk": lambda: sign_with_rsa2(case.app_pkcs1_body, case.text, "utf-8"),
        "pycryptodome": lambda: pkcs1_15.new(crypto_key).sign(SHA256.new(case.data)),
    }


def verifiers(case: Case, public: rsa.RSAPublicKey) -> dict[str, Callable[[], object]]:
    """One zero-argument call per implementation; each must return truthy (or not raise)."""
    crypto_key = RSA.import_key(
        public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )

    def ours_with_parse() -> bool:
        answer = parse_answer(case.body, NODE, "utf-8")
        return verify_signature(answer.content, answer.sign, public, "RSA2")

    def floor() -> bool:
        public.verify(case.signature, case.content, padding.PKCS1v15(), hashes.SHA256())
        return True

    def floor_b64() -> bool:
        raw = base64.b64decode(case.signature_b64)
        public.verify(raw, case.content, padding.PKCS1v15(), hashes.SHA256())
        return True

    def pycryptodome() -> bool:
        pkcs1_15.new(crypto_key).verify(SHA256.new(case.content), case.signature)
        return True

    return {
        "ours": lambda: verify_signature(case.content, case.signature_b64, public, "RSA2"),
        "ours incl. parse_answer": ours_with_parse,
        "floor": floor,
        "floor + base64 decode": floor_b64,
        "sdk": lambda: verify_with_rsa(case.alipay_public_b64, case.content, case.signature_b64),
        "pycryptodome": pycryptodome,
    }


def check(case: Case, key: rsa.RSAPrivateKey, public: rsa.RSAPublicKey) -> None:
    """PKCS#1 v1.5 is deterministic: every signer must give the same bytes, every check pass."""
    for name, sign in signers(case, key).items():
        result = sign()
        raw = result if isinstance(result, bytes) else base64.b64decode(str(result))
        if raw != key.sign(case.data, padding.PKCS1v15(), hashes.SHA256()):
            raise SystemExit(f"{name} signs differently")
    for name, verify in verifiers(case, public).items():
        if not verify():
            raise SystemExit(f"{name} does not verify the answer")
    if parse_answer(case.body, NODE, "utf-8").content != case.content:
        raise SystemExit("parse_answer slices the answer wrongly")


def per_op(call: Callable[[], object], count: int) -> float:
    """CPU seconds per call, over ``count`` calls."""
    start = time.process_time()
    for _ in range(count):
        call()
    return (time.process_time() - start) / count


def calibrate(call: Callable[[], object], seconds: float) -> int:
    """How many calls make a batch of about ``seconds``."""
    one = per_op(call, 3)
    return max(3, int(seconds / max(one, 1e-7)))


def run(calls: dict[str, Callable[[], object]], rounds: int, seconds: float) -> dict[str, object]:
    """Interleaved rounds; per implementation the median µs/op and median ratio to the floor."""
    counts = {name: calibrate(call, seconds) for name, call in calls.items()}
    names = list(calls)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            samples[name].append(per_op(calls[name], counts[name]) * 1e6)
    floor = samples["floor"]
    return {
        name: {
            "us_per_op": median(values),
            "min": min(values),
            "max": max(values),
            "ratio_to_floor": median([v / f for v, f in zip(values, floor, strict=True)]),
            "calls_per_round": counts[name],
        }
        for name, values in samples.items()
    }


def print_table(title: str, rows: dict[str, dict[str, float]]) -> None:
    print(f"\n{title}")
    print(f"  {'implementation':<26}{'µs/op':>10}{'× floor':>10}   (min–max µs)")
    for name, row in rows.items():
        print(
            f"  {name:<26}{row['us_per_op']:>10.1f}{row['ratio_to_floor']:>10.2f}"
            f"   ({row['min']:.1f}–{row['max']:.1f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch-seconds", type=float, default=0.05)
    args = parser.parse_args()

    case, key, public = make_case()
    check(case, key, public)
    print(f"string to sign ({len(case.data)} bytes): {case.text[:90]}...")
    print(f"answer: {len(case.body)} bytes, signed node {len(case.content)} bytes")
    print(f"{args.rounds} interleaved rounds, ~{args.batch_seconds}s per batch, process CPU time")
    sign = run(signers(case, key), args.rounds, args.batch_seconds)
    verify = run(verifiers(case, public), args.rounds, args.batch_seconds)
    print_table("sign (RSA2, 2048-bit)", sign)  # type: ignore[arg-type]
    print_table("verify (RSA2, 2048-bit)", verify)  # type: ignore[arg-type]
    ours_sign = sign["ours"]["ratio_to_floor"]  # type: ignore[index]
    ours_verify = verify["ours"]["ratio_to_floor"]  # type: ignore[index]
    print(
        f"\ngoal: ours within {GOAL}x the floor -> sign {ours_sign:.2f}x "
        f"({'met' if ours_sign <= GOAL else 'NOT met'}), verify {ours_verify:.2f}x "
        f"({'met' if ours_verify <= GOAL else 'NOT met'})"
    )
    path = save_results(
        "signing",
        {
            "machine": machine(),
            "rounds": args.rounds,
            "string_to_sign_bytes": len(case.data),
            "answer_bytes": len(case.body),
            "sign": sign,
            "verify": verify,
            "goal_ratio": GOAL,
        },
    )
    print(f"saved {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
