"""The demo's accounts: Flask-SQLAlchemy, SQLite by default, PostgreSQL with DATABASE_URL.

Column lengths are real limits on PostgreSQL (SQLite ignores them), so the
receiver fits each value to its column rather than trusting Alipay's lengths.
"""

from __future__ import annotations

from datetime import datetime, timezone

from flask_login import UserMixin
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import DateTime, Integer, String
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from flask_alipay import AlipayUser

db = SQLAlchemy()

#: open_ids are up to 64 characters; user_ids are 16 digits.
ID_LENGTH = 64
NICK_NAME_LENGTH = 64
AVATAR_LENGTH = 512


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Account(UserMixin, db.Model):  # type: ignore[name-defined,misc]
    """One local account per Alipay user of this app, keyed on ``AlipayUser.id``."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alipay_id: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True, nullable=False)
    id_kind: Mapped[str] = mapped_column(String(8), nullable=False)
    nick_name: Mapped[str | None] = mapped_column(String(NICK_NAME_LENGTH))
    avatar: Mapped[str | None] = mapped_column(String(AVATAR_LENGTH))
    first_sign_in: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    last_sign_in: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    sign_in_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


def _fit(value: str | None, length: int) -> str | None:
    return None if value is None else value[:length]


def save_account(user: AlipayUser) -> Account:
    """Create the account on a first sign-in; refresh its profile and count on later ones.

    Alipay may drop a field the user cleared, so a missing one is stored as NULL.
    An avatar URL too long for its column is dropped rather than cut into a broken URL.
    """
    try:
        return _save(user)
    except IntegrityError:  # the same user's first sign-in, just now, in another worker
        db.session.rollback()
        return _save(user)


def _save(user: AlipayUser) -> Account:
    account = db.session.execute(
        db.select(Account).filter_by(alipay_id=user.id)
    ).scalar_one_or_none()
    if account is None:
        account = Account(alipay_id=user.id, id_kind=user.id_kind, sign_in_count=0)
        db.session.add(account)
    avatar = user.get("avatar")
    account.id_kind = user.id_kind
    account.nick_name = _fit(user.get("nick_name"), NICK_NAME_LENGTH)
    account.avatar = avatar if avatar is None or len(avatar) <= AVATAR_LENGTH else None
    account.last_sign_in = utcnow()
    account.sign_in_count += 1
    db.session.commit()
    return account
