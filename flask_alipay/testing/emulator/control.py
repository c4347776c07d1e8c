"""The opt-in control channel: another process steers the emulator over HTTP.

Off unless ``AlipayEmulator(control=True)``, since it has no authentication:
it exists for load and fault tests where the emulator runs in its own process
(``flask alipay emulator --control``).  Arguments to ``inject`` and ``rotate``
arrive as JSON, so they are checked here, one by one, before they go on.

A web page in the developer's browser must not be able to steer it either:

* a POST must say ``Content-Type: application/json``, which a cross-site form
  or a "simple" ``fetch`` cannot send without a CORS preflight that is refused;
* the ``Host`` header must name the address served, so a DNS-rebinding page
  (its own name resolving to 127.0.0.1) is refused.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, Response, request

from .paths import CONTROL_PATH
from .state import Injection, State

__all__ = [
    "MAX_CONTROL_DELAY",
    "add_control_routes",
    "injection_arguments",
    "rotation_arguments",
]

#: The longest ``delay`` the control channel queues, in seconds.
MAX_CONTROL_DELAY = 600.0

#: What each :meth:`AlipayEmulator.inject` argument accepts over the control channel.
_INJECT_TEXT = ("method", "sub_code", "sub_msg")
_INJECT_REQUIRED_TEXT = ("code", "msg")
_INJECT_FLAGS = ("bad_signature", "wrong_key", "unsigned", "gbk_error", "truncated")
#: The keyword arguments of :meth:`AlipayEmulator.rotate_alipay_cert`, all flags.
_ROTATE_FLAGS = ("new_key", "untrusted")


def add_control_routes(
    app: Flask,
    state: State,
    inject: Callable[..., Injection],
    rotate: Callable[..., str],
    served: Callable[[], str | None],
) -> None:
    """``POST inject``, ``POST reset``, ``POST rotate``, ``GET stats`` and ``GET users``
    under CONTROL_PATH.

    ``inject`` and ``rotate`` are the emulator's own :meth:`inject` and
    :meth:`rotate_alipay_cert`, so both doors act alike; ``served`` gives the
    ``host:port`` the emulator listens on.
    """

    @app.before_request
    def refuse_browsers() -> Response | None:
        """Only a same-host JSON client reaches the control paths."""
        if not request.path.startswith(CONTROL_PATH):
            return None
        if request.host not in _allowed_hosts(served()):
            return _json({"error": "the Host header is not the address the emulator serves"}, 403)
        if request.method == "POST" and request.mimetype != "application/json":
            return _json({"error": "control requests must be application/json"}, 415)
        return None

    def inject_view() -> Response:
        """Queue an injection from a JSON object of inject() arguments."""
        data = request.get_json(force=True, silent=True)
        try:
            arguments = injection_arguments(data)
        except ValueError as error:
            return _json({"error": str(error)}, 400)
        method = arguments.pop("method", None)
        injection = inject(method, **arguments)
        return _json({"queued": dataclasses.asdict(injection), **_left(state)})

    def reset_view() -> Response:
        """Forget requests and injections; say how many uses were cleared."""
        with state.lock:  # re-entrant: count and clear at once
            cleared = state.injections_left()
            state.reset()
        return _json({"injections_cleared": cleared, **_left(state)})

    def rotate_view() -> Response:
        """Rotate Alipay's certificate (certificate mode); answer the new SN."""
        try:
            arguments = rotation_arguments(request.get_json(force=True, silent=True))
        except ValueError as error:
            return _json({"error": str(error)}, 400)
        try:
            sn = rotate(**arguments)
        except RuntimeError as error:  # public-key mode: no certificates to rotate
            return _json({"error": str(error)}, 409)
        return _json({"alipay_cert_sn": sn})

    def stats_view() -> Response:
        """The counts of :meth:`State.stats`, for a load test to read."""
        return _json(state.stats())

    def users_view() -> Response:
        """Every user's ids and profile by key, to match sign-ins to accounts."""
        with state.lock:
            users = {key: dataclasses.asdict(user) for key, user in state.users.items()}
        return _json(users)

    app.add_url_rule(CONTROL_PATH + "inject", "control_inject", inject_view, methods=["POST"])
    app.add_url_rule(CONTROL_PATH + "reset", "control_reset", reset_view, methods=["POST"])
    app.add_url_rule(CONTROL_PATH + "rotate", "control_rotate", rotate_view, methods=["POST"])
    app.add_url_rule(CONTROL_PATH + "stats", "control_stats", stats_view)
    app.add_url_rule(CONTROL_PATH + "users", "control_users", users_view)


def _allowed_hosts(served: str | None) -> set[str]:
    """The served ``host:port``, and its ``localhost`` spelling when that is loopback."""
    if served is None:
        return set()
    host, _, port = served.rpartition(":")
    allowed = {served}
    if host in ("127.0.0.1", "[::1]", "localhost"):
        allowed |= {f"localhost:{port}", f"127.0.0.1:{port}"}
    return allowed


def _left(state: State) -> dict[str, int]:
    """The inject and reset answers say how many spoiled calls are still queued."""
    return {"injections_left": state.injections_left()}


def _json(data: Mapping[str, Any], status: int = 200) -> Response:
    """JSON with raw Chinese, as the rest of the emulator writes it."""
    return Response(
        json.dumps(data, ensure_ascii=False),
        status=status,
        content_type="application/json; charset=utf-8",
    )


def injection_arguments(data: object) -> dict[str, Any]:
    """``inject()`` keyword arguments from a JSON body, checked; ValueError says why not."""
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object of inject() arguments")
    known = {field.name for field in dataclasses.fields(Injection)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown inject() arguments: {', '.join(unknown)}")
    for name, value in data.items():
        if name in _INJECT_TEXT:
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} must be a string or null")
        elif name in _INJECT_REQUIRED_TEXT:
            if not isinstance(value, str):
                raise ValueError(f"{name} must be a string")
        elif name in _INJECT_FLAGS:
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false")
        elif name == "delay":
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 <= value <= MAX_CONTROL_DELAY
            ):
                raise ValueError(f"delay must be a number of seconds in [0, {MAX_CONTROL_DELAY:g}]")
        elif name == "html_status":
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 599
            ):
                raise ValueError("html_status must be an HTTP status (100-599) or null")
        elif name == "times" and (
            isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000
        ):
            raise ValueError("times must be a whole number from 1 to 1000000")
    return dict(data)


def rotation_arguments(data: object) -> dict[str, bool]:
    """``rotate_alipay_cert()`` keyword arguments from a JSON body; ValueError says why not."""
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object of rotate_alipay_cert() arguments")
    unknown = sorted(set(data) - set(_ROTATE_FLAGS))
    if unknown:
        raise ValueError(f"unknown rotate_alipay_cert() arguments: {', '.join(unknown)}")
    for name, value in data.items():
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false")
    return dict(data)
