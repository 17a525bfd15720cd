"""The one place plain writes meet workflows: a ``BEFORE_VALIDATE`` hook for every object.

Whatever the entry point (API create, update and bulk, forms, imports, automations) a
write of an object with a workflow is held to it here:

- a new record starts in the workflow's initial state (a status sent that is not the
  initial state is refused, 422 naming the field);
- an update may not move the status (only a transition does), nor change a field locked
  in the record's current state (422 naming each).

A transition's own write and the mapping of states to a new workflow version mark the
session (``moving``), and pack demo data loads under ``seeding`` (records may start in any
state, so the demo shows orders along the whole lifecycle); both are the platform's own
writes, never reachable from a request's payload.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from trellis.exceptions import ValidationFailed
from trellis.platform.messages import N_
from trellis.platform.runtime.records.hooks import Action, Hook, hooks
from trellis.platform.workflow import locked_changes, status_problem

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from trellis.platform.runtime.records.hooks import WriteEvent

_MOVING_KEY = "trellis.workflow.moving"
_SEEDING_KEY = "trellis.workflow.seeding"


@contextmanager
def moving(session: Session, object_name: str, record_id: int) -> Iterator[None]:
    """While inside, writes of this record may move its status and change locked fields."""
    held: set[tuple[str, int]] = session.info.setdefault(_MOVING_KEY, set())
    key = (object_name, int(record_id))
    held.add(key)
    try:
        yield
    finally:
        held.discard(key)


@contextmanager
def seeding(session: Session) -> Iterator[None]:
    """While inside (pack demo data), new records may start in any of their states."""
    session.info[_SEEDING_KEY] = True
    try:
        yield
    finally:
        session.info.pop(_SEEDING_KEY, None)


def hold_to_workflow(event: WriteEvent) -> None:
    """Refuse a write that moves the status or changes a locked field; start new records
    in the initial state."""
    workflow = event.meta.workflow
    if workflow is None:
        return
    status = workflow.status_field
    values = event.values
    if event.action is Action.CREATE:
        if event.session.info.get(_SEEDING_KEY):
            values.setdefault(status, workflow.initial_name)
            return
        problem = status_problem(workflow, True, None, values.get(status))
        if problem is not None:
            raise ValidationFailed(problem, [{"field": status, "message": problem}])
        values[status] = workflow.initial_name
        return
    if event.action is not Action.UPDATE or event.old is None:
        return
    if (event.meta.name, event.record_id) in event.session.info.get(_MOVING_KEY, ()):
        return
    old = event.old
    details: list[dict[str, Any]] = []
    problem = status_problem(workflow, False, old.get(status), values.get(status))
    if problem is not None:
        details.append({"field": status, "message": problem})
    state = old.get(status)
    changed = [
        name
        for name in workflow.locked_in(state)
        if name in event.meta.fields and _changed(event, name)
    ]
    for name in locked_changes(workflow, state, sorted(changed)):
        details.append(
            {"field": name, "message": N_("is locked while the record is %(state)s", state=state)}
        )
    if details:
        raise ValidationFailed(N_("the record's workflow does not allow this change"), details)


def changed_fields(event: WriteEvent) -> list[str]:
    """The fields of the object an update changes (as their types compare values)."""
    return [name for name in event.meta.fields if _changed(event, name)]


def _changed(event: WriteEvent, name: str) -> bool:
    """Whether the write changes the field, comparing values as their type stores them
    (``100`` and ``"100.00"`` are one amount)."""
    assert event.old is not None
    before, after = event.old.get(name), event.values.get(name)
    if before == after:
        return False
    if before is None or after is None:
        return True
    spec = event.meta.fields[name]
    try:
        return bool(spec.to_json(spec.to_python(after)) != before)
    except (ValueError, TypeError, ArithmeticError):
        return True  # not a value of the field: changed (validation says why)


hooks.register(
    Hook.BEFORE_VALIDATE,
    hold_to_workflow,
    applies=lambda meta, _registry: meta.workflow is not None,
)
