"""Firing transitions: the engine decides (``platform/workflow``), this applies, in the
caller's transaction.

A transition locks the record's row first (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite
serialises writers), so of two callers firing at once the second waits, then reads the
state the first left and is refused (409) if its transition no longer leaves it. The
write itself is an update through the record service — formulas, rules, roll-ups,
history and audit apply — with the status, the ``set_fields`` actions' fields, and a
history row that names the transition, its states and the comment. Any refusal raises
before anything is written, and the caller's rollback undoes the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from trellis.exceptions import (
    Forbidden,
    NotFound,
    StaleRecord,
    TransitionNotAllowed,
    TransitionRefused,
)
from trellis.platform.expressions import compiled
from trellis.platform.messages import N_, Localized
from trellis.platform.metadata.permissions import Operation
from trellis.platform.runtime import computed
from trellis.platform.runtime.automations.engine import workflow_event
from trellis.platform.runtime.records import RecordService, pipeline
from trellis.platform.runtime.workflow.guard import moving
from trellis.platform.runtime.workflow.pending import awaiting, pending_request
from trellis.platform.workflow import Refusal, Transition, Workflow, available, decide
from trellis.platform.workflow.document import ActionType

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from trellis.platform.runtime.identity import Caller
    from trellis.platform.runtime.registry import MetaRegistry, ObjectMeta

MAX_COMMENT = 2000


class TransitionService:
    """Lists and fires the transitions of records, as ``caller`` may."""

    def __init__(self, session: Session, registry: MetaRegistry, caller: Caller | None) -> None:
        self.session = session
        self.registry = registry
        self.caller = caller
        self.records = RecordService(session, registry, caller)

    def workflow_of(self, object_name: str) -> tuple[ObjectMeta, Workflow]:
        """The object and its workflow; ``NotFound`` when it has none."""
        meta = self.registry.get(object_name)
        if meta.workflow is None:
            raise NotFound(N_("%(object)s has no workflow", object=meta.name))
        return meta, meta.workflow

    def available(self, object_name: str, record_id: int) -> list[Transition]:
        """The transitions the caller may fire on the record now: from its state, allowed
        to their roles, the record in their update scope, the guard true."""
        meta, workflow = self.workflow_of(object_name)
        row = self._row(meta, record_id, lock=False)
        if not self._may_update(meta, record_id):
            return []
        if workflow.has_approvals and pending_request(self.session, meta.name, record_id):
            return []  # only the approval's outcome moves a record awaiting approval
        state = row[workflow.status_field]
        return [
            t
            for t in available(workflow, state, self._roles(), self._is_admin())
            if t.guard is None or self._guard_passes(meta, row, t.guard)
        ]

    def fire(
        self,
        object_name: str,
        record_id: int,
        name: str,
        comment: str | None = None,
        expected_version: int | None = None,
        *,
        system: bool = False,
    ) -> dict[str, Any]:
        """Apply transition ``name`` to the record; the caller commits.

        ``system``: the platform fires it (an approval's outcome): from its state, without
        roles, guard or comment rule; nothing a request sends can set it.

        403 without the right (roles, or the record outside the caller's update scope);
        404 for an unknown record or transition; 409 when it does not leave the current
        state, or ``expected_version`` is stale; 422 when the guard is false or a
        required comment is missing.
        """
        meta, workflow = self.workflow_of(object_name)
        comment = _comment(comment)
        row = self._row(meta, record_id, lock=True)
        self.records.access.require(meta, Operation.UPDATE)
        pipeline.require_in_scope(self.records.unit, meta, [record_id], Operation.UPDATE)
        if (
            not system
            and workflow.has_approvals
            and workflow.transition(name) is not None  # an unknown one is 404 below
            and pending_request(self.session, meta.name, record_id) is not None
        ):
            raise awaiting(meta, record_id)
        if expected_version is not None and row["version"] != expected_version:
            raise StaleRecord(
                N_(
                    "%(object)s %(id)s is at version %(version)s now, not %(expected)s",
                    object=meta.name,
                    id=record_id,
                    version=row["version"],
                    expected=expected_version,
                ),
                [{"field": "version", "message": N_("is %(version)s now", version=row["version"])}],
            )
        state = row[workflow.status_field]
        decision = decide(
            workflow,
            name,
            state,
            self._roles(),
            self._is_admin() or system,
            comment if not system else comment or "-",
            (lambda _guard: True)
            if system
            else (lambda guard: self._guard_passes(meta, row, guard)),
        )
        if decision.refusal is not None:
            raise _refusal(decision.refusal, decision.message or "", decision.transition)
        transition = decision.transition
        assert transition is not None
        payload: dict[str, Any] = {"version": row["version"]}
        for action in transition.actions:
            if action.type is ActionType.SET_FIELDS:
                payload.update(action.fields)
        payload[workflow.status_field] = transition.target
        detail = {
            "workflow": workflow.name,
            "workflow_version": workflow.version,
            "transition": transition.name,
            "from": state,
            "to": transition.target,
            "comment": comment,
        }
        with moving(self.session, meta.name, record_id):
            record = self.records.update(
                meta.name,
                record_id,
                payload,
                workflow_fields=frozenset(payload),
                history=("transition", detail),
            )
            workflow_event(self.session, self.registry, meta.name, record_id, "entered_state",
                           transition.target)  # fmt: skip
            if transition.approval is not None:
                from trellis.platform.runtime.workflow.approvals import ApprovalService

                ApprovalService(self.session, self.registry, self.caller).open(
                    meta, workflow, transition.approval, record_id, comment
                )
                record = self.records.get(meta.name, record_id)
        return {"record": record, "transition": detail}

    # --- helpers -------------------------------------------------------------------

    def _row(self, meta: ObjectMeta, record_id: int, *, lock: bool) -> Any:
        """The live record the caller may read (404 otherwise), locked when ``lock``."""
        self.records.access.require(meta, Operation.READ)
        table = meta.table
        statement = sa.select(table).where(table.c.id == record_id, table.c.deleted_at.is_(None))
        visible = self.records.access.condition(meta, Operation.READ)
        if visible is not None:
            statement = statement.where(visible)
        if lock and self.records.unit.dialect == "postgresql":
            statement = statement.with_for_update(of=table)
        row = self.session.execute(statement).mappings().first() if record_id > 0 else None
        if row is None:
            raise NotFound(N_("no %(object)s with id %(id)s", object=meta.name, id=record_id))
        return row

    def _may_update(self, meta: ObjectMeta, record_id: int) -> bool:
        access = self.records.access
        if not access.allowed(meta, Operation.UPDATE):
            return False
        condition = access.condition(meta, Operation.UPDATE)
        if condition is None:
            return True
        table = meta.table
        found = self.session.execute(
            sa.select(table.c.id).where(table.c.id == record_id, condition)
        ).first()
        return found is not None

    def _guard_passes(self, meta: ObjectMeta, row: Any, guard: str) -> bool:
        expression = compiled(
            guard,
            ("workflow", meta.name, meta.version, self.registry.revision),
            meta.definition.document,
            self.registry.documents(),
        )
        values = {name: row[name] for name in meta.fields}
        unit = self.records.unit
        user = computed.expression_user(unit)
        return expression(values, computed.record_resolver(unit), user) is True

    def _roles(self) -> tuple[str, ...]:
        return tuple(self.caller.roles) if self.caller else ()

    def _is_admin(self) -> bool:
        return self.caller is None or self.caller.is_admin


def _comment(comment: Any) -> str | None:
    if comment is None:
        return None
    if not isinstance(comment, str):
        raise TransitionRefused(
            N_("the comment must be text"), [{"field": "comment", "message": N_("must be text")}]
        )
    if len(comment) > MAX_COMMENT:
        raise TransitionRefused(
            N_("the comment is too long"),
            [
                {
                    "field": "comment",
                    "message": N_("at most %(limit)s characters", limit=MAX_COMMENT),
                }
            ],
        )
    return comment.strip() or None


def _refusal(refusal: Refusal, message: str, transition: Transition | None) -> Exception:
    if refusal is Refusal.UNKNOWN:
        return NotFound(message)
    if refusal is Refusal.FORBIDDEN:
        return Forbidden(message, [{"field": "transition", "message": message}])
    if refusal is Refusal.NOT_FROM_HERE:
        return TransitionNotAllowed(message, [{"field": "transition", "message": message}])
    if refusal is Refusal.COMMENT_REQUIRED:
        return TransitionRefused(message, [{"field": "comment", "message": N_("is required")}])
    labels = transition.guard_message if transition is not None else None
    shown = Localized(labels) if labels else message
    return TransitionRefused(shown, [{"field": "guard", "message": shown}])
