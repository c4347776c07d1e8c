"""A local stand-in for Alipay's authorize page and OpenAPI gateway.

Tests of a "Sign in with Alipay" integration cannot reach Alipay, and mocking
the HTTP calls hides the mistakes that matter: which parameter goes in the
query string and which in the body, the charset, the Beijing-time timestamp,
the exact bytes that are signed.  The emulator serves both endpoints over real
HTTP on loopback and checks each request the way the real gateway does, so a
client that signs in here speaks the protocol.  It can also misbehave on
demand (:meth:`AlipayEmulator.inject`) the ways Alipay has been seen to.

The package is split by layer:

* ``state``: apps, users, grants, queued injections, recorded calls; one lock.
* ``methods``: the gateway's stateful checks and its methods, table-driven; no HTTP.
* ``checks``: the stateless checks, how a refusal reads, and placement: lenient
  like the real gateway by default, recorded as ``placement:`` warnings on
  each call, refused with ``strict=True`` (the pytest plugin's emulator).
* ``ids``: made-up ids, codes and tokens shaped like Alipay's.
* ``answers``: answers written the way Alipay writes them, and spoiled on demand.
* ``gateway``: ``gateway.do`` itself: reads a call off the wire, records it,
  answers it.
* ``pages``: the authorize and consent pages, the avatars.
* ``control``: the opt-in control channel (``control=True``).
* ``pki``: Alipay's signing key and the throwaway certificate PKI.
* ``pointing``: re-pointing an app at the emulator through AlipayLogin's API.
* ``server``: the loopback HTTP server; ``paths``: the URL layout.
* ``emulator``: :class:`AlipayEmulator`, which composes them.

What it shares with the library, and why
    The protocol's names come from ``flask_alipay.protocol``: the method
    names, the scopes, the charsets and their wire names, node names, the
    timestamp format and Beijing's zone, the query-string parameters, the
    error node, the success code and the sign types; the endpoints' paths
    come from ``protocol.ENDPOINTS``.  One source of truth: a name is copied
    from Alipay's documentation once, and two copies could only drift apart.
    The price is that a misspelt name would be misspelt in both, which is
    why only names are shared this way, never behaviour.
    The primitives come from ``flask_alipay.signing`` (``string_to_sign``,
    ``sign_text``, ``verify_signature``) and ``flask_alipay.certs``
    (``cert_sn``, ``root_cert_sn``).  The library's tests check them against
    public golden vectors (``tests/vectors``: signatures from other Alipay
    integrations' test suites, a real gateway answer, certificate SNs from
    Alipay's Node SDK), so a mistake in them fails there instead of hiding
    behind a copy here that shares it, and a second copy could only drift.
    Keys are read and compared with ``flask_alipay.keys``: plumbing, not
    protocol.

What it keeps independent, and why
    Reading requests (``gateway``: the raw bytes, percent-decoded in the
    charset the query names) and writing answers (``answers``: Alipay's JSON
    with ``\\/`` escapes and raw Chinese, the node's bytes signed,
    ``alipay_cert_sn`` placement).  That is where clients go wrong, so the
    library's request builder (``protocol.signed_request``) and its answer
    parser (``signing.parse_answer``, ``protocol.read_answer``) are never
    used here: a bug in either is caught by the emulator, not mirrored by it.
"""

from .emulator import AlipayEmulator
from .methods import beijing_now
from .paths import AUTHORIZE_PATH, CONTROL_PATH, GATEWAY_PATH
from .pki import CERT_SETTINGS
from .server import EmulatorServer
from .state import AUTO, EmulatedUser, GatewayRequest, Injection

__all__ = [
    "AUTHORIZE_PATH",
    "AUTO",
    "CERT_SETTINGS",
    "CONTROL_PATH",
    "GATEWAY_PATH",
    "AlipayEmulator",
    "EmulatedUser",
    "EmulatorServer",
    "GatewayRequest",
    "Injection",
    "beijing_now",
]
