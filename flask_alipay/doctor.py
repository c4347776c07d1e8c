"""What ``flask alipay check`` finds: every config problem with its fix, and a live probe.

Alipay's console is where users lose days: the wrong key pasted in the wrong box,
a callback Alipay refuses, an APPID from the sandbox.  Each finding says what to
change, in English with the Chinese console term.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flask import Flask

from .config import AlipayConfig, default_url_prefix, inspect_config, readable_settings
from .errors import AlipayError, UnverifiedAnswer
from .gateway import Gateway
from .protocol import ENDPOINTS, SCOPES, TOKEN_METHOD, is_known_scope, is_local_gateway, split_scope
from .sessions import secret_key_problem, session_fields_problem
from .settings import CERT_FILES

if TYPE_CHECKING:
    from .extension import AlipayLogin

__all__ = ["Finding", "Report", "callback_url", "examine", "gateway_finding", "probe"]

#: The auth code the live probe sends: wrong on purpose, so nothing is granted.
PROBE_CODE = "flask-alipay-check-invalid-code"
MIN_BITS = 2048


@dataclass(frozen=True)
class Finding:
    """One line of the report: ``level`` is ``error``, ``warning`` or ``ok``."""

    level: str
    message: str
    fix: str = ""


@dataclass
class Report:
    """Everything ``flask alipay check`` prints, found in one pass whatever is wrong."""

    #: The usable settings, or None when an error stops the app from starting.
    config: AlipayConfig | None
    findings: list[Finding]
    #: The 授权回调地址 to register in the console.
    callback_url: str


def examine(app: Flask, ext: AlipayLogin) -> Report:
    """Check an app's settings without serving: every error, every warning, the callback."""
    prefix = ext.config_prefix
    loaded, errors = inspect_config(app.config, prefix)
    values = readable_settings(app.config, prefix)
    findings = [Finding("error", str(error)) for error in errors]
    if app.config.get(prefix + "PUBLIC_KEY") and any(
        app.config.get(prefix + key) or app.config.get(prefix + key + "_FILE") for key in CERT_FILES
    ):
        findings.append(
            Finding(
                "warning",
                f"{prefix}PUBLIC_KEY is ignored in certificate mode.",
                f"Answers are verified with {prefix}ALIPAY_CERT; remove {prefix}PUBLIC_KEY.",
            )
        )
    problem = secret_key_problem(app)
    if problem:
        findings.append(Finding("error", problem))
    if loaded is not None:
        personal = session_fields_problem(app, loaded, prefix)
        if personal:
            findings.append(Finding("error", personal))
        findings += _key_findings(loaded, prefix)
    findings += _setting_findings(values, prefix)
    url = callback_url(
        app, values.get("REDIRECT_URI"), values.get("URL_PREFIX", default_url_prefix(prefix))
    )
    findings += _callback_warnings(url, prefix)
    if not any(f.level == "error" for f in findings):
        findings.insert(0, Finding("ok", f"{prefix}* settings load and keys parse."))
    return Report(loaded, findings, url)


def _key_findings(cfg: AlipayConfig, prefix: str, now: datetime | None = None) -> list[Finding]:
    """What only parsed keys and certificates can tell."""
    if cfg.cert_mode:
        return _certificate_findings(cfg, prefix, now)
    if cfg.alipay_public_key is not None and cfg.alipay_public_key.key_size < MIN_BITS:
        return [
            Finding(
                "warning",
                f"{prefix}PUBLIC_KEY is {cfg.alipay_public_key.key_size} bits.",
                "Check that it is Alipay's public key (支付宝公钥) for RSA2.",
            )
        ]
    return []


def _setting_findings(values: Mapping[str, Any], prefix: str) -> list[Finding]:
    """What each setting that reads on its own tells, even when others are broken."""
    found: list[Finding] = []
    private_key = values.get("PRIVATE_KEY")
    if private_key is not None and private_key.key_size < MIN_BITS:
        found.append(
            Finding(
                "warning",
                f"{prefix}PRIVATE_KEY is {private_key.key_size} bits.",
                "Alipay expects 2048-bit keys: make a new pair with `flask alipay keygen` "
                "and upload its public key (应用公钥).",
            )
        )
    if values.get("VERIFY_ANSWERS") is False:
        found.append(
            Finding(
                "error",
                f"{prefix}VERIFY_ANSWERS is False: Alipay's answers are not verified, so "
                "whoever answers for the gateway chooses who signs in.",
                f"Set {prefix}PUBLIC_KEY to Alipay's public key (支付宝公钥) and remove "
                f"{prefix}VERIFY_ANSWERS.",
            )
        )
    if values.get("SIGN_TYPE") == "RSA":
        found.append(
            Finding(
                "warning",
                f"{prefix}SIGN_TYPE is RSA, which signs with SHA-1.",
                "Use RSA2 (SHA256withRSA): set the console's 接口加签方式 to RSA2 and "
                f"{prefix}SIGN_TYPE=RSA2.",
            )
        )
    scope = values.get("SCOPE")
    unknown = [s for s in split_scope(scope) if not is_known_scope(s)] if scope else []
    if unknown:
        found.append(
            Finding(
                "warning",
                f"{prefix}SCOPE names {', '.join(unknown)}, which is not among the scopes "
                f"Alipay documents ({', '.join(SCOPES)}).",
                "Check the spelling. A scope Alipay approved for your app is fine as it is.",
            )
        )
    gateway = values.get("GATEWAY_URL") or ENDPOINTS[bool(values.get("SANDBOX"))][1]
    app_id = str(values.get("APP_ID") or "")
    if gateway == ENDPOINTS[False][1] and app_id.startswith("9021"):
        found.append(
            Finding(
                "warning",
                f"{prefix}APP_ID {app_id} looks like a sandbox (沙箱) APPID, but the "
                "production gateway is configured.",
                f"Set {prefix}SANDBOX=1, or use your production APPID.",
            )
        )
    return found


def _certificate_findings(
    cfg: AlipayConfig, prefix: str, now: datetime | None = None
) -> list[Finding]:
    sns = ", ".join(cfg.alipay_certs)
    found = [
        Finding(
            "ok",
            f"Certificate mode (公钥证书): app_cert_sn {cfg.app_cert_sn}, "
            f"alipay_root_cert_sn {cfg.alipay_root_cert_sn}, Alipay certificate SN {sns}.",
        )
    ]
    if any(cfg.alipay_certs[sn].key_size < MIN_BITS for sn in cfg.alipay_certs):
        found.append(Finding("warning", f"{prefix}ALIPAY_CERT carries a key under 2048 bits."))
    return found + _expiry_findings(cfg, prefix, now)


#: ``flask alipay check`` warns this long before a certificate expires.
EXPIRY_WARNING = timedelta(days=30)


def _expiry_findings(cfg: AlipayConfig, prefix: str, now: datetime | None) -> list[Finding]:
    moment = now or datetime.now(timezone.utc)
    found = []
    for key, subject, not_after in cfg.cert_expiries:
        if not_after is None:
            found.append(_unread_finding(prefix, key, subject))
            continue
        day = not_after.date().isoformat()
        what = f"{prefix}{key}: {subject} expires {day}"
        if not_after <= moment:
            found.append(
                Finding(
                    "error",
                    f"{what}: it has expired.",
                    _renew_fix(key),
                )
            )
        elif not_after - moment <= EXPIRY_WARNING:
            days = (not_after - moment).days
            found.append(Finding("warning", f"{what}, in {days} days.", _renew_fix(key)))
        else:
            found.append(Finding("ok", f"{what}."))
    return found


def _unread_finding(prefix: str, key: str, name: str) -> Finding:
    """A certificate the cryptography library cannot load: said, not skipped.

    Alipay's own root bundle holds such roots, so there it is no fault; in the
    other two files it would be.
    """
    message = (
        f"{prefix}{key}: {name} cannot be loaded by the cryptography library, so its "
        "expiry is not checked"
    )
    if key == "ROOT_CERT":
        return Finding("ok", f"{message}, and no downloaded certificate can chain to it.")
    return Finding(
        "warning", f"{message}.", f"Download {CERT_FILES[key]} again from the Alipay console."
    )


def _renew_fix(key: str) -> str:
    if key == "APP_CERT":
        return "Renew the app certificate (应用公钥证书) in the console and download it again."
    return (
        "Download the new certificate from the console (Alipay rotates its own; "
        "flask_alipay fetches a rotated one by itself, but update the file)."
    )


def callback_url(app: Flask, redirect_uri: str | None, url_prefix: str) -> str:
    """The 授权回调地址 to register: the configured one, else what url_for will build."""
    if redirect_uri:
        return redirect_uri
    root = (app.config.get("APPLICATION_ROOT") or "/").rstrip("/")
    server = app.config.get("SERVER_NAME")
    if not server:
        # The host comes from each request; Alipay needs the https one.
        return f"https://<your domain>{root}{url_prefix}/callback"
    scheme = app.config.get("PREFERRED_URL_SCHEME") or "http"
    return f"{scheme}://{server}{root}{url_prefix}/callback"


def _callback_warnings(url: str, prefix: str) -> list[Finding]:
    parts = urlsplit(url)
    found: list[Finding] = []
    if parts.scheme == "http":
        found.append(
            Finding(
                "warning",
                f"The callback URL {url} is http://: Alipay wants https.",
                f"Behind a TLS proxy use ProxyFix, or set {prefix}REDIRECT_URI to the https URL.",
            )
        )
    if parts.hostname in ("localhost", "127.0.0.1", "::1"):
        found.append(
            Finding(
                "warning",
                f"The callback URL {url} is on {parts.hostname}: Alipay refuses it as a "
                "授权回调地址.",
                "Use the emulator locally, or a tunnel to a public https hostname and "
                f"{prefix}REDIRECT_URI.",
            )
        )
    return found


#: What each answer to the probe means; ``{who}`` is Alipay or the gateway that answered.
_PROBE_VERDICTS: dict[str, Finding] = {
    "isv.code-invalid": Finding(
        "ok",
        "Live: {who} accepted the APPID, the key and the signature "
        "(isv.code-invalid, as intended).",
    ),
    "isv.invalid-signature": Finding(
        "error",
        "Live: isv.invalid-signature. The private key does not match the app public key "
        "(应用公钥) uploaded to {who}.",
        "Upload the public half of ALIPAY_PRIVATE_KEY (`flask alipay keygen` prints it for new "
        "keys), or set the private key that belongs to the uploaded one.",
    ),
    "isv.invalid-app-id": Finding(
        "error",
        "Live: isv.invalid-app-id. The APPID is wrong or not online, or a sandbox APPID meets "
        "the production gateway (or the reverse).",
        "Check ALIPAY_APP_ID and ALIPAY_SANDBOX.",
    ),
    "isv.missing-signature-config": Finding(
        "error",
        "Live: isv.missing-signature-config. No app public key is uploaded for this sign type.",
        "In the console set 接口加签方式: paste your app public key (应用公钥) in 公钥 mode, "
        "or upload your app certificate in 公钥证书 mode.",
    ),
}


def is_alipays_gateway(url: str) -> bool:
    """Alipay's own gateway, production or sandbox, and not an emulator or a stand-in."""
    return url in (ENDPOINTS[False][1], ENDPOINTS[True][1])


def gateway_finding(cfg: AlipayConfig, prefix: str = "ALIPAY_") -> Finding:
    """Which gateway the live check asks, and a warning when it cannot be Alipay."""
    url = cfg.gateway_url
    if is_local_gateway(url):
        return Finding(
            "warning",
            f"Live: asking {url}, which is not Alipay (http or loopback): an emulator or a "
            "test server answers, so this proves nothing about the Alipay console.",
            f"Unset {prefix}GATEWAY_URL and {prefix}AUTHORIZE_URL to check against Alipay "
            f"({prefix}SANDBOX=1 for its sandbox).",
        )
    who = "Alipay's gateway" if is_alipays_gateway(url) else "the gateway"
    return Finding("ok", f"Live: asking {who} at {url}.")


def probe(cfg: AlipayConfig) -> Finding:
    """One signed token call with a wrong code: the answer tells which setting is off."""
    gateway = Gateway(cfg)
    try:
        gateway.call(TOKEN_METHOD, {"grant_type": "authorization_code", "code": PROBE_CODE})
    except AlipayError as error:
        return _verdict(error, cfg)
    finally:
        gateway.close()
    return Finding(
        "error", f"Live: {_who(cfg)} granted a token for a made-up code. Is this Alipay?"
    )


def _who(cfg: AlipayConfig) -> str:
    if is_alipays_gateway(cfg.gateway_url):
        return "Alipay"
    return f"the gateway at {urlsplit(cfg.gateway_url).netloc}"


def _verdict(error: AlipayError, cfg: AlipayConfig) -> Finding:
    who = _who(cfg)
    known = _PROBE_VERDICTS.get(error.sub_code or "")
    if known is not None:
        return Finding(known.level, known.message.format(who=who), known.fix)
    if error.reason == "signature" and cfg.cert_mode:
        return Finding(
            "error",
            f"Live: {who}'s answer did not verify with ALIPAY_ALIPAY_CERT.",
            "Download alipayCertPublicKey_RSA2.crt again from the console.",
        )
    if error.reason == "signature":
        return Finding(
            "error",
            f"Live: {who}'s answer did not verify: ALIPAY_PUBLIC_KEY is wrong.",
            "Paste Alipay's public key (支付宝公钥) from the console, not your app public key."
            + (UnverifiedAnswer.EMULATOR_HINT if is_local_gateway(cfg.gateway_url) else ""),
        )
    detail = f"{error.sub_code}: {error.sub_msg or ''}" if error.sub_code else error.message
    return Finding("error", f"Live: {detail}", error.hint)


def summary(findings: list[Finding]) -> dict[str, Any]:
    """Counts by level, for the last line of the report."""
    return {
        level: sum(1 for f in findings if f.level == level) for level in ("error", "warning", "ok")
    }
