"""The REST API under ``/api/v1``: one module per resource, the unit of work here.

Views parse input and shape output; the services do the work. Each request is one
unit of work: the session opened in ``before_request`` is committed by the view
that changes something and rolled back by ``teardown`` otherwise, so a failure at
any step leaves nothing half-applied.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask, current_app, g, jsonify, request
from flask import session as flask_session
from flask_wtf.csrf import validate_csrf
from sqlalchemy.exc import DataError
from wtforms import ValidationError

from trellis.exceptions import BadRequest, CsrfFailed, Forbidden
from trellis.extensions import db
from trellis.platform.runtime import audit
from trellis.platform.runtime.identity import Caller, Identity
from trellis.platform.runtime.identity.sessions import authenticate_session
from trellis.platform.runtime.identity.tokens import authenticate_token, touch_token
from trellis.platform.runtime.models import iso
from trellis.platform.runtime.objects import ObjectService
from trellis.platform.runtime.records import RecordService
from trellis.platform.runtime.registry import MetaRegistry
from trellis.platform.runtime.unicode_text import may_hold_lone_surrogate, refuse_lone_surrogates

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

bp = Blueprint("api", __name__, url_prefix="/api/v1")
log = logging.getLogger(__name__)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@bp.errorhandler(DataError)
def value_refused_by_database(exc: DataError) -> Any:
    """Input the database cannot hold that got past validation (a NUL in text on PostgreSQL…).

    Bad input is a 400, never a 500; the request's transaction is rolled back by teardown.
    """
    log.info("value refused by the database on %s %s: %s", request.method, request.path, exc.orig)
    error = BadRequest(
        "the request holds a value the database cannot store (such as a NUL character)"
    )
    return jsonify(error.to_dict()), error.status


def when(moment: dt.datetime) -> str:
    """A stored moment as ISO 8601 with its zone (SQLite hands them back without it)."""
    return str(iso(moment))


def registry() -> MetaRegistry:
    """The app's ``MetaRegistry`` (brought up to date by ``open_unit_of_work``)."""
    registry: MetaRegistry = current_app.extensions["trellis.registry"]
    return registry


@bp.before_request
def open_unit_of_work() -> None:
    """Open the request's session and identify the caller before any view runs.

    A write takes SQLite's write lock up front; no or a bad token is 401 and a session
    write without its CSRF token 403, before the view sees the request.
    """
    session = db.session()
    g.session = session
    if request.method in WRITE_METHODS:
        # SQLite: take the write lock up front (BEGIN IMMEDIATE) so writers queue.
        session.connection(execution_options={"trellis_write": True})
    identity = _identify(session)
    registry().ensure_current(session, identity.revision)
    g.caller = caller_of(identity)
    if identity.needs_touch:
        g.touch_token = identity.token_id


def _identify(session: Session) -> Identity:
    """The bearer token when one is sent, else the signed-in browser's session.

    A token request never reads the cookie. A session write must also carry the page's
    CSRF token: the browser sends the cookie with any site's request, not the header.
    """
    authorization = request.headers.get("Authorization")
    if authorization or "user_id" not in flask_session:
        return authenticate_token(session, authorization)
    identity = authenticate_session(
        session, flask_session.get("user_id"), flask_session.get("stamp")
    )
    if request.method in WRITE_METHODS:
        _require_csrf_token()
    return identity


def _require_csrf_token() -> None:
    headers = current_app.config.get("WTF_CSRF_HEADERS") or ["X-CSRFToken"]
    sent = next((request.headers[name] for name in headers if request.headers.get(name)), None)
    try:
        validate_csrf(sent)
    except ValidationError as exc:
        raise CsrfFailed(
            f"{exc} A signed-in page must send its CSRF token in the X-CSRFToken header."
        ) from None


def caller_of(identity: Identity) -> Caller:
    """The identity with its rights (cached per role set until the metadata moves)."""
    permissions = registry().permissions
    return Caller.of(
        identity,
        permissions(identity.roles, identity.is_admin),
        permissions(identity.roles, False),
    )


def end_session(session: Session) -> None:
    """Close a request's session: roll back what was not committed, and forget metadata
    caches built from a transaction that did not commit (API and pages alike)."""
    if session.info.pop("metadata_changed", False):
        registry().invalidate()
    session.close()


@bp.teardown_request
def close_unit_of_work(_exc: BaseException | None) -> None:
    """End the request's session (rolling back what no view committed), then write
    what must outlive it in transactions of its own: a token's use and deferred events.
    """
    session = g.pop("session", None)
    if session is None:
        return
    end_session(session)
    # Written after the request's transaction is gone: they must outlive its rollback,
    # and on SQLite a second writer inside the request would wait on the first.
    token_id = g.pop("touch_token", None)
    if token_id is not None:
        with db.engine.begin() as connection:
            touch_token(connection, token_id)
        audit.record_now(db.engine, "token.used", target=f"token/{token_id}", **_who())
    for action, target, detail in g.pop("deferred_events", []):
        audit.record_now(db.engine, action, target=target, detail=detail, **_who())


def _who() -> dict[str, Any]:
    who = g.get("caller")
    return {
        "actor_id": who.user_id if who else None,
        "actor_email": who.email if who else None,
        "ip": request.remote_addr,
        "user_agent": request.user_agent.string,
    }


def audit_context() -> dict[str, Any]:
    """What a service names in the audit trail besides the acting user's id."""
    who = _who()
    del who["actor_id"]
    return who


def defer_event(action: str, target: str | None, detail: dict[str, Any]) -> None:
    """Audit something about a request that will roll back (a denial, a failure)."""
    g.setdefault("deferred_events", []).append((action, target, detail))


def record_event(action: str, target: str | None, detail: dict[str, Any] | None = None) -> None:
    """Audit a change in the request's own transaction (it commits with the change)."""
    audit.record(g.session, action, target=target, detail=detail, **_who())


def caller() -> Caller:
    """The request's ``Caller``, set by ``open_unit_of_work``."""
    who: Caller = g.caller
    return who


def require_admin() -> None:
    """Refuse a caller who is not an administrator with ``Forbidden`` (403)."""
    if not caller().is_admin:
        raise Forbidden("only administrators may read or change metadata")


def json_body() -> Any:
    """The request's JSON body, parsed strictly: valid JSON, well-formed Unicode (else 400)."""
    raw = request.get_data(cache=True)
    if not raw:
        raise BadRequest("the request needs a JSON body")
    try:
        body = json.loads(raw, parse_constant=_not_json)
    except ValueError as exc:
        raise BadRequest(
            "the request body is not valid JSON", [{"field": "", "message": str(exc)}]
        ) from None
    except RecursionError:
        raise BadRequest(
            "the request body is nested too deeply", [{"field": "", "message": "too deep"}]
        ) from None
    if may_hold_lone_surrogate(raw):
        refuse_lone_surrogates(body)
    return body


def _not_json(constant: str) -> Any:
    """Python's json accepts NaN and Infinity; JSON does not."""
    raise ValueError(f"{constant} is not a JSON value")


def object_service() -> ObjectService:
    """An ``ObjectService`` on the request's session, authored by the caller."""
    return ObjectService(g.session, registry(), caller().user_id, audit_context())


def record_service() -> RecordService:
    """A ``RecordService`` on the request's session, with the caller's rights."""
    return RecordService(g.session, registry(), caller())


def commit() -> None:
    """Commit the request's unit of work; its metadata changes then stand, so teardown
    need not forget the registry's caches.
    """
    g.session.commit()
    g.session.info.pop("metadata_changed", None)


def init_app(app: Flask) -> None:
    """Register the API: its blueprint, with every resource module's views."""
    from trellis.platform.runtime.api import (
        approvals,
        audit_log,
        automations,
        files,
        identity,
        imports,
        jobs,
        metadata,
        notifications,
        outbox,
        records,
        roles,
        views,
        webhooks,
        workflows,
    )

    del (
        approvals,
        audit_log,
        automations,
        files,
        identity,
        jobs,
        imports,
        metadata,
        notifications,
        outbox,
        records,
        roles,
        views,
        webhooks,
        workflows,
    )  # imported for their routes
    app.extensions["trellis.registry"] = MetaRegistry()
    app.register_blueprint(bp)
