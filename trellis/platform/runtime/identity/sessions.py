"""Browser sessions: who a signed session cookie stands for, checked against the database.

The cookie is signed but lives in the browser; the *stamp* it carries (the password's
change time and the user's session epoch) is what lets the server end it. Changing the
password, signing out or deactivating the user makes every older cookie worthless.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from trellis.exceptions import AuthenticationRequired
from trellis.platform.metadata.fieldtypes import INT64_MAX
from trellis.platform.runtime.identity.caller import (
    USERS,
    Identity,
    revision_column,
    role_names_column,
    role_tuple,
)
from trellis.platform.runtime.models import ApprovalTask, Notification, User

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def session_stamp(password_changed_at: dt.datetime | None, session_epoch: int) -> str:
    """Changes when the password does or the user signs out: older sessions stop working."""
    if password_changed_at is None:
        return f"-:{session_epoch}"
    # SQLite hands datetimes back without their zone (in UTC), PostgreSQL in the session's
    # time zone, a fresh write in UTC: compare all of them as naive UTC.
    changed = password_changed_at
    if changed.tzinfo is not None:
        changed = changed.astimezone(dt.UTC)
    return f"{changed.replace(tzinfo=None).isoformat(timespec='microseconds')}:{session_epoch}"


def authenticate_session(session: Session, user_id: Any, stamp: Any) -> Identity:
    """The identity behind a session's ``user_id`` and ``stamp``, or ``AuthenticationRequired``.

    One query, like a token's: the user's state, role names and the metadata revision.
    """
    _check_user_id(user_id)
    row = session.execute(_identity_statement(), {"user_id": user_id}).first()
    if row is None:
        raise AuthenticationRequired("the session is not valid; sign in again")
    email, is_admin, is_active, partner_id, changed, epoch, role_names, revision = row
    return _identity(
        user_id, email, is_admin, is_active, partner_id, changed, epoch, stamp, role_names, revision
    )


def authenticate_session_user(
    session: Session, user_id: Any, stamp: Any
) -> tuple[Identity, User, int, int]:
    """``authenticate_session``, the ``User`` itself, their unread notifications and their
    pending approval tasks (for a page: its name, language, bell and approvals badge),
    still in one query."""
    _check_user_id(user_id)
    row = session.execute(_user_identity_statement(), {"user_id": user_id}).first()
    if row is None:
        raise AuthenticationRequired("the session is not valid; sign in again")
    user, role_names, revision, unread, pending = row
    identity = _identity(
        user_id,
        user.email,
        user.is_admin,
        user.is_active,
        user.partner_id,
        user.password_changed_at,
        user.session_epoch,
        stamp,
        role_names,
        revision,
    )
    return identity, user, int(unread or 0), int(pending or 0)


def identity_of_user(session: Session, user_id: int) -> Identity:
    """The identity of an active user by id alone, for work done later on their behalf
    (an import run as a job): the same query as a session's, without a cookie's stamp.
    """
    _check_user_id(user_id)
    row = session.execute(_identity_statement(), {"user_id": user_id}).first()
    if row is None or not row.is_active:
        raise AuthenticationRequired("the user is unknown or no longer active")
    email, is_admin, _active, partner_id, _changed, _epoch, role_names, revision = row
    return Identity(
        user_id=user_id,
        email=email,
        is_admin=bool(is_admin),
        partner_id=partner_id,
        roles=role_tuple(role_names),
        revision=revision or 0,
    )


def _check_user_id(user_id: Any) -> None:
    if isinstance(user_id, bool) or not isinstance(user_id, int) or not 1 <= user_id <= INT64_MAX:
        raise AuthenticationRequired("the session is not valid; sign in again")


def _identity(
    user_id: int,
    email: str,
    is_admin: Any,
    is_active: Any,
    partner_id: int | None,
    changed: dt.datetime | None,
    epoch: int,
    stamp: Any,
    role_names: str | None,
    revision: int | None,
) -> Identity:
    if not is_active or stamp != session_stamp(changed, epoch):
        raise AuthenticationRequired("the session has ended; sign in again")
    return Identity(
        user_id=user_id,
        email=email,
        is_admin=bool(is_admin),
        partner_id=partner_id,
        roles=role_tuple(role_names),
        revision=revision or 0,
    )


@cache
def _identity_statement() -> sa.Select[Any]:
    """Built once: it runs on every API request made with a session."""
    users = USERS.c
    return sa.select(
        users.email,
        users.is_admin,
        users.is_active,
        users.partner_id,
        users.password_changed_at,
        users.session_epoch,
        role_names_column(),
        revision_column(),
    ).where(users.id == sa.bindparam("user_id"))


@cache
def _user_identity_statement() -> sa.Select[Any]:
    """The same, with the whole ``User`` row: a page shows the user's name and language, the
    bell its unread count and the approvals badge the user's pending tasks (both counts read
    by index in the same query)."""
    unread = (
        sa.select(sa.func.count())
        .select_from(Notification)
        .where(Notification.user_id == User.id, Notification.read_at.is_(None))
        .scalar_subquery()
    )
    pending = (
        sa.select(sa.func.count())
        .select_from(ApprovalTask)
        .where(ApprovalTask.approver_id == User.id, ApprovalTask.status == "pending")
        .scalar_subquery()
    )
    return sa.select(User, role_names_column(), revision_column(), unread, pending).where(
        User.id == sa.bindparam("user_id")
    )
