"""The demo's users table in SQLite: plain ``sqlite3``, one connection per request."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import datetime, timezone

from flask import Flask, current_app, g

from flask_alipay import AlipayUser

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id            TEXT PRIMARY KEY,   -- AlipayUser.id: open_id, else user_id
    id_kind       TEXT NOT NULL,      -- 'open_id' or 'user_id'
    nick_name     TEXT,               -- absent when the user never set one
    avatar        TEXT,
    first_sign_in TEXT NOT NULL,      -- UTC, 'YYYY-MM-DD HH:MM:SS'
    last_sign_in  TEXT NOT NULL,
    sign_in_count INTEGER NOT NULL
)
"""

UPSERT = """
INSERT INTO users (id, id_kind, nick_name, avatar, first_sign_in, last_sign_in, sign_in_count)
VALUES (:id, :id_kind, :nick_name, :avatar, :now, :now, 1)
ON CONFLICT (id) DO UPDATE SET
    id_kind = excluded.id_kind,
    nick_name = excluded.nick_name,
    avatar = excluded.avatar,
    last_sign_in = excluded.last_sign_in,
    sign_in_count = sign_in_count + 1
"""


def init_app(app: Flask) -> None:
    """Create the table up front, and close each request's connection after it."""
    with closing(_connect(app.config["DATABASE"])) as conn:
        # WAL lets readers and the one writer proceed together; it sticks to the file.
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(SCHEMA)
    app.teardown_appcontext(close_db)


def _connect(path: str) -> sqlite3.Connection:
    # Autocommit: each statement is its own short transaction, so a thread never
    # holds the write lock between an INSERT and a later COMMIT.  Under many
    # threaded workers (gunicorn -k gthread) that is what avoided
    # "database is locked"; the timeout lets writers queue instead of failing.
    return sqlite3.connect(path, timeout=30, isolation_level=None)


def get_db() -> sqlite3.Connection:
    """This app context's connection; sqlite3 connections must not cross threads."""
    if "db" not in g:
        g.db = _connect(current_app.config["DATABASE"])
        g.db.row_factory = sqlite3.Row
    conn: sqlite3.Connection = g.db
    return conn


def close_db(_exc: BaseException | None = None) -> None:
    conn = g.pop("db", None)
    if conn is not None:
        conn.close()


def save_user(user: AlipayUser) -> None:
    """Create the row on a first sign-in, refresh the profile and count on later ones.

    Alipay may drop a field the user cleared, so a missing one is stored as NULL.
    """
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    row = {
        "id": user.id,
        "id_kind": user.id_kind,
        "nick_name": user.get("nick_name"),
        "avatar": user.get("avatar"),
        "now": now,
    }
    get_db().execute(UPSERT, row)  # one atomic statement, committed at once


def load_user(user_id: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = (
        get_db().execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
    )
    return row
