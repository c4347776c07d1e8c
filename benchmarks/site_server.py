"""Serve one of the three benchmark sites on a threaded WSGI server, on 127.0.0.1.

    python benchmarks/site_server.py ours|minimal|sdk --config FILE [--profile KIND]

``ours`` is flask_alipay (``AlipayLogin`` + ``@login_required``); ``minimal`` and
``sdk`` are benchmarks/minimal_site.py signing with ``cryptography`` or with the
official SDK.  All three serve ``/alipay/login``, ``/alipay/callback`` and ``/me``.
Prints ``LISTENING <url>`` once it accepts connections; SIGTERM stops it.
``--profile`` is ``cprofile`` or ``pyinstrument``.

With ``--profile`` the server runs single-threaded with the profiler on, and
writes the profile to ``--profile-out`` when stopped.  cProfile is given
``time.process_time`` as its clock, so it attributes CPU time, not waiting.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from flask import Flask
from werkzeug.serving import WSGIRequestHandler, make_server

sys.path.insert(0, str(Path(__file__).resolve().parent))


class QuietHandler(WSGIRequestHandler):
    """No access-log line per request, for every site alike."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def ours(config: dict[str, str]) -> Flask:
    """The flask_alipay site: the README's usage, pointed at the emulator."""
    from flask_alipay import AlipayLogin, current_alipay_user, login_required

    app = Flask("bench_ours")
    app.config.update(
        SECRET_KEY=config["secret_key"],
        ALIPAY_APP_ID=config["app_id"],
        ALIPAY_PRIVATE_KEY_FILE=config["app_private_key_file"],
        ALIPAY_PUBLIC_KEY=config["alipay_public_key"],
        ALIPAY_AUTHORIZE_URL=config["authorize_url"],
        ALIPAY_GATEWAY_URL=config["gateway_url"],
    )
    AlipayLogin(app)

    @app.route("/me")
    @login_required
    def me() -> str:
        assert current_alipay_user is not None
        return f"hello {current_alipay_user.id}"

    return app


def build(kind: str, config: dict[str, str]) -> Flask:
    if kind == "ours":
        return ours(config)
    from minimal_site import create_app

    return create_app(config, signer="sdk" if kind == "sdk" else "cryptography")


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["ours", "minimal", "sdk"])
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--profile", choices=["cprofile", "pyinstrument"])
    parser.add_argument("--profile-out", type=Path)
    args = parser.parse_args()

    app = build(args.kind, json.loads(args.config.read_text(encoding="utf-8")))
    threaded = args.profile is None  # a profiler follows one thread: serve on it
    server = make_server(
        "127.0.0.1", args.port, app, threaded=threaded, request_handler=QuietHandler
    )
    signal.signal(signal.SIGTERM, _stop)
    print(f"LISTENING http://127.0.0.1:{server.server_port}", flush=True)

    if args.profile == "cprofile":
        import cProfile

        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        try:
            server.serve_forever()
        finally:
            profiler.disable()
            profiler.dump_stats(str(args.profile_out))
    elif args.profile == "pyinstrument":
        from pyinstrument import Profiler

        sampler = Profiler(interval=0.0005)
        sampler.start()
        try:
            server.serve_forever()
        finally:
            sampler.stop()
            args.profile_out.write_text(
                sampler.output_text(unicode=True, color=False, show_all=False), encoding="utf-8"
            )
    else:
        try:
            server.serve_forever()
        finally:
            server.server_close()


if __name__ == "__main__":
    main()
