"""What each kind of automation action does (the document format: docs/automations.md).

Every write goes through the record service as the system, in the caller's transaction.
Notifications and webhooks are handed to ``notifications.notify`` and ``webhooks.publish``
(their outbox rows commit with the write, so nothing is lost); those two are reached in
``_capability`` only, the one place that names them.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from trellis.exceptions import BadRequest
from trellis.platform.messages import N_
from trellis.platform.metadata.automations import ActionKind, Automation
from trellis.platform.runtime.automations import pack_hooks
from trellis.platform.runtime.models import User, UserRole
from trellis.platform.runtime.records import RecordService

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from trellis.platform.runtime.records import WriteEvent
    from trellis.platform.runtime.registry import MetaRegistry, ObjectMeta


def system_records(session: Session, registry: MetaRegistry) -> RecordService:
    """The record service as the system: what every automation writes with."""
    return RecordService(session, registry, None)


def values_of(
    session: Session,
    registry: MetaRegistry,
    spec: dict[str, Any],
    source: ObjectMeta,
    record: dict[str, Any],
) -> dict[str, Any]:
    """An action's ``values``: literals as written, ``{"expression": …}`` computed over the
    triggering ``record`` (of ``source``) and sent as JSON."""
    from trellis.platform.runtime.automations.engine import evaluate

    unit = system_records(session, registry).unit
    out: dict[str, Any] = {}
    for name, value in spec.items():
        if isinstance(value, dict):
            value = _as_json(evaluate(registry, source, value["expression"], record, unit))
        out[name] = value
    return out


def _as_json(value: Any) -> Any:
    """An expression's value as a record's JSON holds it (the field type checks it then)."""
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def set_fields(event: WriteEvent, action: dict[str, Any]) -> None:
    """Put the action's values into the record about to be validated and saved."""
    assert event.registry is not None
    values = values_of(event.session, event.registry, action["values"], event.meta, event.values)
    event.values.update(values)


def run(
    session: Session,
    registry: MetaRegistry,
    automation: Automation,
    action: dict[str, Any],
    record_id: int | None,
    record: dict[str, Any],
) -> None:
    """One after-save action of ``automation`` on the record that set it off."""
    kind = ActionKind(action["type"])
    meta = registry.get(automation.object_name)
    if kind is ActionKind.SET_FIELDS:  # a scheduled run: the record is updated (a write's own
        # automations set fields before it is saved, in ``engine.before_save``)
        assert record_id is not None
        values = values_of(session, registry, action["values"], meta, record)
        written = system_records(session, registry).update(
            meta.name, record_id, {**values, "version": record["version"]}
        )
        record.update(written)  # a later action of the run builds on this version
    elif kind is ActionKind.CREATE_RECORD:
        values = values_of(session, registry, action["values"], meta, record)
        system_records(session, registry).create(action["object"], values)
    elif kind is ActionKind.HOOK:
        hook = pack_hooks.get(action["name"])
        if hook is None:
            pack_hooks.load_installed(registry)
            hook = pack_hooks.get(action["name"])
        if hook is None:
            raise BadRequest(N_("no pack hook is named %(name)s", name=repr(action["name"])))
        hook(
            pack_hooks.HookContext(
                session=session,
                registry=registry,
                records=system_records(session, registry),
                automation=automation.name,
                object_name=meta.name,
                record_id=record_id,
                record=record,
            )
        )
    elif kind is ActionKind.NOTIFY:
        user_ids = recipients(session, action["users"], record)
        if user_ids:
            _capability("notifications").notify(
                session,
                user_ids,
                title=dict(action["message"]),
                body=None,
                link=(meta.name, record_id),
                email=bool(action.get("email", False)),
            )
    elif kind is ActionKind.WEBHOOK:
        _capability("webhooks").publish(
            session, action["event"], meta.name, record, registry=registry
        )
    else:  # START_APPROVAL: fire the named transition, which submits the record
        from trellis.platform.runtime.workflow.transitions import TransitionService

        if record_id is None:
            raise BadRequest(N_("an approval starts for a record"))
        service = TransitionService(session, registry, None)
        _meta, workflow = service.workflow_of(meta.name)
        transition = workflow.transition(action["flow"])
        if transition is None or transition.approval is None:
            raise BadRequest(
                N_(
                    "%(name)s is not a transition of %(workflow)s that submits for approval",
                    name=repr(action["flow"]),
                    workflow=workflow.name,
                )
            )
        service.fire(meta.name, record_id, transition.name)


def recipients(session: Session, users: dict[str, Any], record: dict[str, Any]) -> list[int]:
    """The active users a ``notify`` names: by id, holders of a role, or a user field of
    the record (``owner_id`` included), each once, in id order."""
    wanted: set[int] = {int(i) for i in users.get("ids", [])}
    for name in users.get("fields", []):
        value = record.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            wanted.add(value)
    roles = users.get("roles", [])
    condition: Any = User.id.in_(wanted) if wanted else sa.false()
    if roles:
        holders = sa.select(UserRole.user_id).where(UserRole.role_name.in_(roles))
        condition = sa.or_(condition, User.id.in_(holders))
    return list(
        session.scalars(
            sa.select(User.id).where(condition, User.is_active.is_(True)).order_by(User.id)
        )
    )


def _capability(name: str) -> ModuleType:
    """``trellis.platform.runtime.<name>`` (notifications, webhooks), or a refusal that
    says this build has no such capability (the run is recorded as failed)."""
    try:
        return importlib.import_module(f"trellis.platform.runtime.{name}")
    except ModuleNotFoundError:
        raise BadRequest(
            N_("%(capability)s are not available in this installation", capability=name)
        ) from None
