"""A small real site on flask_alipay: sign in with Alipay, accounts in a database, Flask-Login.

Run it from the repository root::

    flask --app demo run            # add --debug for the reloader; the emulator survives it

With no ``ALIPAY_APP_ID`` in the environment it plays Alipay with the emulator
(``demo/emulator.py``), so it works offline and without an account.  Set
``ALIPAY_APP_ID``, ``ALIPAY_PRIVATE_KEY`` and ``ALIPAY_PUBLIC_KEY`` (and
``ALIPAY_SANDBOX=1``) to talk to real Alipay.  ``DATABASE_URL`` names the
database (SQLite in ``instance/`` by default; ``postgresql+psycopg://...`` for
PostgreSQL).  ``SECRET_KEY`` is read from the environment; without it a
development key is made once and kept in ``instance/``, so every worker and
every reload shares it.

This is the Flask-Login recipe from docs/signals.md as running, tested code.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask, render_template
from flask.typing import ResponseReturnValue
from flask_login import LoginManager, current_user, login_required, login_user, logout_user
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from flask_alipay import AlipayLogin, AlipayUser, user_logged_in, user_logged_out

from .emulator import dev_emulator_settings, running_here
from .models import Account, db, save_account

alipay = AlipayLogin()
login_manager = LoginManager()
login_manager.login_view = "alipay.login"  # Flask-Login sends visitors to sign in with Alipay


def create_app(
    test_config: dict[str, Any] | None = None, instance_path: str | None = None
) -> Flask:
    """The app factory ``flask --app demo run`` finds; tests pass their own config and folder."""
    app = Flask(__name__, instance_path=instance_path, instance_relative_config=True)
    instance = Path(app.instance_path)
    instance.mkdir(parents=True, exist_ok=True)
    app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY") or _dev_secret_key(instance)
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ.get("DATABASE_URL") or (
        f"sqlite:///{instance / 'demo.sqlite3'}"
    )
    if os.environ.get("ALIPAY_APP_ID"):
        app.config.update({k: v for k, v in os.environ.items() if k.startswith("ALIPAY_")})
    else:
        port = os.environ.get("DEMO_EMULATOR_PORT")
        app.config.update(dev_emulator_settings(instance, int(port) if port else None))
        app.extensions["demo_emulator"] = running_here(instance)
    app.config.update(test_config or {})

    db.init_app(app)
    login_manager.init_app(app)
    alipay.init_app(app)
    with app.app_context():
        _create_tables()
    # Only this app's sign-ins: one process may hold many apps (tests do).
    user_logged_in.connect(_sign_in_account, sender=app)
    user_logged_out.connect(_sign_out_account, sender=app)

    @app.get("/")
    def home() -> str:
        return render_template("home.html", account=current_user)

    @app.get("/profile")
    @login_required
    def profile() -> ResponseReturnValue:
        return render_template("profile.html", account=current_user)

    return app


@login_manager.user_loader
def _load_account(account_id: str) -> Account | None:
    return db.session.get(Account, int(account_id))


def _sign_in_account(sender: Flask, user: AlipayUser, **extra: Any) -> None:
    """The recipe: the verified Alipay user becomes a local account and a Flask-Login user."""
    login_user(save_account(user), remember=True)


def _sign_out_account(sender: Flask, **extra: Any) -> None:
    """Every Alipay logout signs out of Flask-Login too, remember-me cookie included."""
    logout_user()


def _create_tables() -> None:
    """Create the tables that are missing.  Workers that start together on a new
    database race to do it: the loser finds them made ("already exists") and looks again."""
    try:
        db.create_all()
    except (OperationalError, ProgrammingError, IntegrityError):
        db.create_all()  # made by another worker meanwhile: nothing is left to create


def _dev_secret_key(instance: Path) -> str:
    """A key made once and kept in instance/, so reloads and workers share sessions."""
    path = instance / "dev-secret-key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made by an earlier run, or by the other reloader process
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))
    return path.read_text().strip()


@event.listens_for(Engine, "connect")
def _sqlite_for_many_writers(connection: Any, record: Any) -> None:
    """SQLite under many threads: WAL, and writers wait for the lock instead of failing."""
    if type(connection).__module__.startswith("sqlite3"):
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()
