"""One unit of work per page, like the API's: the signed-in caller and their session.

A page request opens one database session, identifies the signed-in user from the
signed cookie (the same check the API makes for a session), and builds the same
``Caller`` the API builds, so pages are served by the same services with the same
rights. A page that changes something commits; teardown rolls back anything else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import current_app, g, request, session

from trellis.exceptions import AuthenticationRequired
from trellis.extensions import db
from trellis.platform.runtime.api import caller_of, end_session
from trellis.platform.runtime.identity import RoleService
from trellis.platform.runtime.identity.sessions import authenticate_session_user
from trellis.platform.runtime.objects import ObjectService
from trellis.platform.runtime.records import RecordService
from trellis.platform.runtime.views import ListViewService

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from trellis.platform.runtime.identity import Caller
    from trellis.platform.runtime.registry import MetaRegistry

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Pages that write in transactions of their own (a sign-in attempt is counted and
# committed even when it is refused): they must not hold the page's write lock.
OWN_TRANSACTIONS = frozenset({"ui.login", "ui.logout", "ui.change_password"})


def open_page() -> None:
    """Identify the signed-in user of a page request (``g.user``, ``g.caller``), if any."""
    g.user = None
    g.caller = None
    user_id = session.get("user_id")
    if user_id is None or request.path.startswith(("/api/", "/ui/static/")):
        return
    db_session = db.session()
    g.ui_session = db_session
    if request.method in WRITE_METHODS and request.endpoint not in OWN_TRANSACTIONS:
        # SQLite: take the write lock up front (BEGIN IMMEDIATE) so writers queue.
        db_session.connection(execution_options={"trellis_write": True})
    try:
        identity, user, unread, pending = authenticate_session_user(
            db_session, user_id, session.get("stamp")
        )
    except AuthenticationRequired:
        session.clear()
        return
    registry().ensure_current(db_session, identity.revision)
    g.user = user
    g.unread_notifications = unread  # the bell's count, read with the user
    g.pending_approvals = pending  # the approvals badge, in the same query
    g.caller = caller_of(identity)


def close_page(_exc: BaseException | None) -> None:
    """Teardown: end the page's session, if it opened one (what was not committed rolls back)."""
    db_session = g.pop("ui_session", None)
    if db_session is not None:
        end_session(db_session)


def registry() -> MetaRegistry:
    """The app's ``MetaRegistry``, shared with the API."""
    found: MetaRegistry = current_app.extensions["trellis.registry"]
    return found


def page_session() -> Session:
    """The page's database session (the user is signed in)."""
    found: Session = g.ui_session
    return found


def user_choices() -> list[tuple[int, str]]:
    """The active users as a user field's select offers them (read once per page)."""
    from trellis.platform.runtime.records.attachments import active_user_choices

    found: list[tuple[int, str]] | None = g.get("user_choices")
    if found is None:
        found = g.user_choices = active_user_choices(page_session())
    return found


def caller() -> Caller:
    """The signed-in ``Caller`` (set by ``open_page``; ``None`` when nobody is signed in)."""
    found: Caller = g.caller
    return found


def records() -> RecordService:
    """The record service, acting as the signed-in user."""
    return RecordService(page_session(), registry(), caller())


def objects() -> ObjectService:
    """The metadata service, acting as the signed-in admin."""
    return ObjectService(page_session(), registry(), caller().user_id, audit_context())


def roles() -> RoleService:
    """The role service, acting as the signed-in admin."""
    return RoleService(page_session(), registry(), caller().user_id, audit_context())


def audit_context() -> dict[str, str | None]:
    """What a service names in the audit trail besides the user's id: e-mail, address, agent."""
    return {
        "actor_email": caller().email,
        "ip": request.remote_addr,
        "user_agent": request.user_agent.string,
    }


def commit() -> None:
    """Commit the page's unit of work; its metadata changes then stand, so teardown need not
    forget the registry's caches.
    """
    db_session = page_session()
    db_session.commit()
    db_session.info.pop("metadata_changed", None)


# A service's refusals a page shows on itself (bad input, a conflict, invalid values); any
# other error goes to the app's error page.
REFUSALS = frozenset({400, 409, 422})


def rollback() -> None:
    """Undo a refused change; metadata cached from inside it is forgotten and reloaded."""
    db_session = page_session()
    db_session.rollback()
    if db_session.info.pop("metadata_changed", None):
        registry().invalidate()
    registry().ensure_current(db_session)


def list_views() -> ListViewService:
    """The saved list views, as the signed-in user sees and changes them."""
    return ListViewService(page_session(), registry(), caller(), audit_context())
