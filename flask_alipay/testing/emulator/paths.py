"""The emulator's URL layout, shared by the server, the pages, the gateway and the facade.

The authorize page and the gateway sit at the paths of Alipay's own endpoints
(taken from the library's ``protocol.ENDPOINTS``, so there is one spelling of
them), so an app pointed at the emulator only changes the host.
"""

from __future__ import annotations

import urllib.parse

from flask_alipay.protocol import ENDPOINTS

__all__ = ["AUTHORIZE_PATH", "AVATAR_PATH", "CONTROL_PATH", "GATEWAY_PATH", "served_avatar"]

_AUTHORIZE_URL, _GATEWAY_URL = ENDPOINTS[False]
AUTHORIZE_PATH = urllib.parse.urlsplit(_AUTHORIZE_URL).path
GATEWAY_PATH = urllib.parse.urlsplit(_GATEWAY_URL).path
AVATAR_PATH = "/avatar/"
#: The opt-in control channel's prefix (``AlipayEmulator(control=True)``).
CONTROL_PATH = "/_emulator/"


def served_avatar(key: str) -> str:
    """The avatar the emulator serves for a user, so avatars load offline in a browser.

    Relative until answered: the profile call makes it absolute on the
    emulator's own host.
    """
    return AVATAR_PATH + urllib.parse.quote(key, safe="") + ".svg"
