"""While a record awaits approval it is read-only, on every write path.

One ``BEFORE_VALIDATE`` hook holds updates (API, bulk, forms, imports, automations) and the
record service asks ``refuse_pending_delete`` before a delete. Lines of a master-detail
parent awaiting approval are held with it (a new line would change the amount being
approved). The only writes that pass are the platform's own (the transitions an outcome
fires, ``moving``) and, for the fields the current step opens to its approvers
(``editable``), a write by one of that step's pending approvers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa

from trellis.exceptions import AwaitingApproval
from trellis.platform.messages import N_
from trellis.platform.runtime.models import ApprovalRequest, ApprovalTask
from trellis.platform.runtime.records.hooks import Action, Hook, hooks
from trellis.platform.runtime.workflow.guard import _MOVING_KEY, _SEEDING_KEY, changed_fields

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from trellis.platform.runtime.records.hooks import WriteEvent
    from trellis.platform.runtime.registry import MetaRegistry, ObjectMeta

REQUESTS = cast("sa.Table", ApprovalRequest.__table__)
TASKS = cast("sa.Table", ApprovalTask.__table__)


def pending_request(session: Session, object_name: str, record_id: int) -> Any:
    """The record's pending request row (``id``, ``step_index``, ``round``, …), or None."""
    return (
        session.execute(
            sa.select(REQUESTS).where(
                REQUESTS.c.object_name == object_name,
                REQUESTS.c.record_id == int(record_id),
                REQUESTS.c.status == "pending",
            )
        )
        .mappings()
        .first()
    )


def awaiting(meta: ObjectMeta, record_id: int) -> AwaitingApproval:
    """The refusal of a write to a record awaiting approval."""
    message = N_(
        "%(object)s %(id)s is awaiting approval and cannot be changed until it is decided "
        "or recalled",
        object=meta.name,
        id=record_id,
    )
    return AwaitingApproval(message, [{"field": "approval", "message": message}])


def _held_parent(event: WriteEvent) -> tuple[ObjectMeta, int] | None:
    """The master-detail parent awaiting approval that this line belongs to, if any."""
    registry: MetaRegistry | None = event.registry
    master = event.meta.definition.master_field()
    if master is None or registry is None:
        return None
    parent = registry.get(str(master.target))
    if parent.workflow is None or not parent.workflow.has_approvals:
        return None
    parent_ids = {v for v in (event.values.get(master.name), (event.old or {}).get(master.name))}
    for parent_id in parent_ids:
        if isinstance(parent_id, int) and pending_request(event.session, parent.name, parent_id):
            return parent, parent_id
    return None


def hold_while_pending(event: WriteEvent) -> None:
    """Refuse an update of a record awaiting approval (409), or of its lines, except the
    current step's ``editable`` fields written by one of its pending approvers."""
    if event.session.info.get(_SEEDING_KEY):
        return
    held = _held_parent(event)
    if held is not None:
        raise awaiting(*held)
    workflow = event.meta.workflow
    if workflow is None or not workflow.has_approvals or event.action is not Action.UPDATE:
        return
    assert event.record_id is not None
    if (event.meta.name, event.record_id) in event.session.info.get(_MOVING_KEY, ()):
        return
    request = pending_request(event.session, event.meta.name, event.record_id)
    if request is None:
        return
    changed = changed_fields(event)
    if not changed:
        return
    flow = next((t.approval for t in workflow.transitions if t.name == request["transition"]), None)
    step = (
        flow.steps[request["step_index"]]
        if flow is not None and request["step_index"] is not None
        and request["step_index"] < len(flow.steps)
        else None
    )  # fmt: skip
    if step is not None and event.caller is not None and set(changed) <= step.editable:
        approver = event.session.execute(
            sa.select(TASKS.c.id).where(
                TASKS.c.request_id == request["id"],
                TASKS.c.step_index == request["step_index"],
                TASKS.c.round == request["round"],
                TASKS.c.approver_id == event.caller.user_id,
                TASKS.c.status == "pending",
            )
        ).first()
        if approver is not None:
            return
    raise awaiting(event.meta, event.record_id)


def refuse_pending_delete(
    session: Session, registry: MetaRegistry, meta: ObjectMeta, record_id: int, row: Any
) -> None:
    """Refuse deleting a record awaiting approval, or a line of one (409)."""
    if session.info.get(_SEEDING_KEY):
        return
    pending = meta.workflow is not None and meta.workflow.has_approvals
    if pending and pending_request(session, meta.name, record_id) is not None:
        raise awaiting(meta, record_id)
    master = meta.definition.master_field()
    if master is None:
        return
    parent = registry.get(str(master.target))
    parent_id = row[master.name]
    held = parent.workflow is not None and parent.workflow.has_approvals and parent_id is not None
    if held and pending_request(session, parent.name, parent_id) is not None:
        raise awaiting(parent, parent_id)


hooks.register(Hook.BEFORE_VALIDATE, hold_while_pending)
