"""Signing in with e-mail and password, slowed and then locked after repeated failures.

Every attempt on an account is counted *before* its password is checked, by one
atomic ``UPDATE … RETURNING`` in a transaction of its own: the decision "may this
attempt check a password" is taken by the database on the row as it is at that
moment, so parallel guesses cannot all read the same low count. A correct password
clears the count afterwards.

- The first ``SLOW_AFTER`` attempts are checked at once.
- After that, an attempt is checked only when ``2 ** (n - SLOW_AFTER)`` seconds have passed
  since the last checked one (n the count). An attempt that comes sooner is refused
  with 429 *and still counted*: hammering during the back-off is guessing too.
- The attempt that brings the count to ``LOCK_AFTER`` locks the account for
  ``LOCK_FOR`` (and restarts the count); while locked, nothing is checked or counted.

So however many requests arrive at once, at most ``LOCK_AFTER`` passwords are
checked before the account locks. The counters outlive the refusal: they are
committed here, not by the caller.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash

from trellis.exceptions import AuthenticationRequired, TooManyAttempts
from trellis.platform.runtime.identity.passwords import dummy_hash
from trellis.platform.runtime.models import User, as_utc, utcnow

SLOW_AFTER = 3  # failures before each next attempt has to wait
LOCK_AFTER = 10  # failures before the account locks
LOCK_FOR = dt.timedelta(minutes=15)

LOCKED_MESSAGE = "too many failed sign-ins; the account is locked for a while"
WAIT_MESSAGE = "too many failed sign-ins; wait before trying again"

_WHEN = User.last_failed_at.type  # binds moments the way the column stores them


@dataclass(frozen=True)
class Reserved:
    """An attempt the database let through: what is needed to check its password."""

    user_id: int
    password_hash: str | None
    is_active: bool


def _moment(value: dt.datetime) -> sa.BindParameter[Any]:
    return sa.bindparam(None, value, type_=_WHEN)


def _not_locked(now: dt.datetime) -> sa.ColumnElement[bool]:
    return sa.or_(User.locked_until.is_(None), User.locked_until <= _moment(now))


def _ready(now: dt.datetime) -> sa.ColumnElement[bool]:
    """The back-off has run out: as SQL, so the row's current count decides."""
    # The wait for each count is bound as the moment the last failure must precede.
    earliest = sa.case(
        {
            count: _moment(now - dt.timedelta(seconds=2 ** (count - SLOW_AFTER)))
            for count in range(SLOW_AFTER, LOCK_AFTER)
        },
        value=User.failed_logins,
        else_=_moment(now - dt.timedelta(seconds=2 ** (LOCK_AFTER - SLOW_AFTER))),
    )
    return sa.or_(
        User.failed_logins < SLOW_AFTER,
        User.last_failed_at.is_(None),
        User.last_failed_at <= earliest,
    )


def _counted(now: dt.datetime, *, checked: bool) -> dict[str, Any]:
    """SET clause of one more attempt; the one reaching LOCK_AFTER locks the account."""
    reaches_lock = User.failed_logins + 1 >= LOCK_AFTER
    values: dict[str, Any] = {
        "failed_logins": sa.case((reaches_lock, 0), else_=User.failed_logins + 1),
        "locked_until": sa.case((reaches_lock, _moment(now + LOCK_FOR)), else_=None),
    }
    # Only a checked attempt moves the back-off's starting point: a refused one must
    # not let the caller push the wait forever, only lengthen it.
    if checked:
        values["last_failed_at"] = _moment(now)
    else:
        values["last_failed_at"] = sa.case((reaches_lock, _moment(now)), else_=User.last_failed_at)
    return values


def _wait_from(row: sa.Row[Any], now: dt.datetime) -> TooManyAttempts:
    """The refusal, with how long to wait, for a row as the counting left it."""
    if row.locked_until is not None and as_utc(row.locked_until) > now:
        wait = int((as_utc(row.locked_until) - now).total_seconds()) + 1
        return TooManyAttempts(LOCKED_MESSAGE, wait)
    wait = 1
    if row.last_failed_at is not None and row.failed_logins >= SLOW_AFTER:
        ready_at = as_utc(row.last_failed_at) + dt.timedelta(
            seconds=2 ** min(row.failed_logins - SLOW_AFTER, LOCK_AFTER - SLOW_AFTER)
        )
        wait = max(1, int((ready_at - now).total_seconds()) + 1)
    return TooManyAttempts(WAIT_MESSAGE, wait)


def _take(connection: sa.Connection, which: sa.ColumnElement[bool], now: dt.datetime) -> Any:
    """Count an attempt that may check its password now: the row, or None if it may not."""
    with connection.begin():
        return connection.execute(
            sa.update(User)
            .where(which, _not_locked(now), _ready(now))
            .values(_counted(now, checked=True))
            .returning(User.id, User.password_hash, User.is_active)
        ).first()


def _refuse(connection: sa.Connection, which: sa.ColumnElement[bool], now: dt.datetime) -> Any:
    """Count an attempt turned away by the back-off: the counters after it, or None."""
    refused = (User.failed_logins, User.last_failed_at, User.locked_until)
    with connection.begin():
        row = connection.execute(
            sa.update(User)
            .where(which, _not_locked(now))
            .values(_counted(now, checked=False))
            .returning(*refused)
        ).first()
    if row is None:  # locked (not counted), or no such user
        with connection.begin():
            row = connection.execute(sa.select(*refused).where(which)).first()
    return row


def reserve_attempt(engine: sa.Engine, which: sa.ColumnElement[bool]) -> Reserved | None:
    """Count an attempt on the user ``which`` selects, before its password is checked.

    Returns what the check needs, or ``None`` when there is no such user; raises
    ``TooManyAttempts`` (the attempt counted unless the account is locked) when the
    account is locked or in its back-off. Commits on its own connection whatever the
    outcome, so the count survives the caller's rollback and every parallel request
    sees it at once.
    """
    now = utcnow()
    with engine.connect().execution_options(trellis_write=True) as connection:
        taken = _take(connection, which, now)
        if taken is not None:
            return Reserved(taken.id, taken.password_hash, bool(taken.is_active))
        counters = _refuse(connection, which, now)
    if counters is None:
        return None
    raise _wait_from(counters, now)


def clear_failures(engine: sa.Engine, user_id: int) -> None:
    """A correct password: the count, the back-off and any lock end."""
    with engine.connect().execution_options(trellis_write=True) as connection, connection.begin():
        connection.execute(
            sa.update(User)
            .where(User.id == user_id)
            .values(failed_logins=0, last_failed_at=None, locked_until=None)
        )


def check_counted(engine: sa.Engine, which: sa.ColumnElement[bool], password: str) -> int | None:
    """The id of the active user ``which`` selects when ``password`` is theirs, else ``None``.

    The attempt is counted first (``reserve_attempt``) and cleared when right.
    """
    reserved = reserve_attempt(engine, which)
    if reserved is None:
        # Spend the time a real check takes, so timing does not tell who has an account.
        check_password_hash(dummy_hash(), password)
        return None
    right = bool(reserved.password_hash) and check_password_hash(
        str(reserved.password_hash), password
    )
    if not (right and reserved.is_active):
        return None
    clear_failures(engine, reserved.user_id)
    return reserved.user_id


def sign_in(engine: sa.Engine, email: str, password: str) -> User:
    """The user whose e-mail and password these are, detached from any session.

    Raises ``AuthenticationRequired`` for a wrong e-mail or password (or an inactive
    user) and ``TooManyAttempts`` while the account is slowed down or locked. Works in
    short transactions of its own, committed whatever the outcome.
    """
    address = (email or "").strip().lower()
    user_id = check_counted(engine, User.email == address, password or "")
    if user_id is None:
        raise AuthenticationRequired("wrong e-mail or password")
    with Session(engine, expire_on_commit=False) as session:
        user = session.get(User, user_id)
        if user is None:  # deleted between the check and now
            raise AuthenticationRequired("wrong e-mail or password")
        session.expunge(user)
    return user


def check_current_password(engine: sa.Engine, user_id: int, password: str) -> bool:
    """Whether ``password`` is the signed-in user's, counted like a sign-in attempt.

    Raises ``TooManyAttempts`` while the account is slowed down or locked.
    """
    return check_counted(engine, User.id == user_id, password) is not None
