"""Automations applied to record writes, with the loop guard.

Two record-pipeline hooks (``records/hooks.py``) run every automation of a write:

- ``BEFORE_VALIDATE`` decides which automations the write sets off (its trigger, on the
  record before and after; its condition, on the record after) and applies their
  ``set_fields`` actions to the values about to be validated and saved;
- ``AFTER_WRITE`` runs their other actions in the write's transaction, each automation
  inside a savepoint: one that fails is rolled back alone and recorded as failed, and the
  write stands (a run of one action that cannot half-apply, a webhook, needs none). A
  delete (which has no ``BEFORE_VALIDATE``) decides here;
- ``RECOMPUTED`` (``computed.tell_moved``): a record whose roll-ups or formulas another
  record's write moved — an order line added moves its order's total and the dealer's
  exposure — decides its update, field-changed and condition-true automations on the
  values before and after, at the end of that write's call, and runs them.

What an automation writes goes through the record service as the system (every right,
``created_by`` empty): it is an administrator's metadata acting, not the user whose
write set it off; its runs name the automation and its version.

The loop guard: each write an automation makes runs inside a chain kept on the session.
An automation is stopped, with a ``stopped`` run and an ``automation.loop_stopped`` audit
event, when the chain is ``AUTOMATION_MAX_DEPTH`` deep or already holds the same
(automation, record) — it would re-trigger itself through its own writes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from trellis import defaults
from trellis.exceptions import TrellisError
from trellis.platform.expressions import compiled
from trellis.platform.metadata.automations import (
    WRITE_TRIGGERS,
    ActionKind,
    Automation,
    TriggerKind,
    changed_fields,
    write_matches,
)
from trellis.platform.runtime import audit, computed
from trellis.platform.runtime.automations import actions, runs
from trellis.platform.runtime.records.hooks import Action, Hook, WriteEvent, hooks
from trellis.platform.runtime.records.serialise import serialise

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from trellis.platform.runtime.registry import MetaRegistry, ObjectMeta

log = logging.getLogger(__name__)

CHAIN_KEY = "trellis.automation_chain"
_NOTES_KEY = "automations"  # in WriteEvent.notes: {automation name: "fired" | "stopped"}
_EDGES_KEY = "automation_edges"  # {edge automation: its condition before the write}
_INSTALLED = False


def install() -> None:
    """Register the write hooks and the scheduled automations' jobs, once per process."""
    global _INSTALLED
    if _INSTALLED:
        return
    hooks.register(Hook.BEFORE_VALIDATE, before_save, applies=has_write_automations)
    hooks.register(Hook.AFTER_WRITE, after_save, applies=has_write_automations)
    hooks.register(Hook.RECOMPUTED, after_recompute, applies=has_write_automations)
    # The scheduled automations' jobs and schedules, registered on import.
    from trellis.platform.runtime.automations import background

    del background
    _INSTALLED = True


def has_write_automations(meta: ObjectMeta, registry: MetaRegistry | None) -> bool:
    """Whether writes of ``meta`` may set off an automation (the hooks' ``applies``)."""
    return registry is not None and any(
        a.active and a.kind in WRITE_TRIGGERS for a in registry.automations(meta.name)
    )


def _candidates(event: WriteEvent) -> list[Automation]:
    if event.registry is None or event.action is Action.RESTORE:
        return []
    return [
        a
        for a in event.registry.automations(event.meta.name)
        if a.active and a.kind in WRITE_TRIGGERS
    ]


def evaluate(
    registry: MetaRegistry, meta: ObjectMeta, text: str, values: dict[str, Any], unit: Any
) -> Any:
    """An expression of the object's, over one record's JSON values (lookups followed)."""
    key = (meta.name, meta.version, registry.revision)
    expression = compiled(text, key, meta.definition.document, registry.documents())
    return expression(computed.python_values(meta, values), computed.record_resolver(unit))


def _fired(
    event: WriteEvent,
    candidates: list[Automation],
    new: dict[str, Any],
    before: dict[str, bool | None] | None = None,
) -> list[Automation]:
    """The automations a write sets off: trigger, then condition. ``before``: each edge
    trigger's condition on the record before the write, as read then (else read now
    from ``event.old``)."""
    assert event.registry is not None
    registry, meta = event.registry, event.meta
    unit = actions.system_records(event.session, registry).unit
    fields = set(meta.fields)
    old = {k: v for k, v in (event.old or {}).items() if k in fields} if event.old else None
    after = old if event.action is Action.DELETE else {k: v for k, v in new.items() if k in fields}
    assert after is not None
    changed = set() if event.action is Action.DELETE else changed_fields(old, after)
    fired = []
    for automation in candidates:
        before_true = after_true = None
        if automation.kind is TriggerKind.CONDITION_TRUE:
            if before is not None and automation.name in before:
                before_true = before[automation.name]
            else:
                before_true = _edge_before(event, automation, old, unit)
            text = automation.trigger["condition"]
            after_true = evaluate(registry, meta, text, after, unit) is True
        if not write_matches(automation, event.action.value, changed, before_true, after_true):
            continue
        condition = automation.condition
        if condition is not None and evaluate(registry, meta, condition, after, unit) is not True:
            continue
        fired.append(automation)
    return fired


def _edge_before(
    event: WriteEvent, automation: Automation, old: dict[str, Any] | None, unit: Any
) -> bool | None:
    if old is None:
        return None
    assert event.registry is not None
    text = automation.trigger["condition"]
    return evaluate(event.registry, event.meta, text, old, unit) is True


def before_save(event: WriteEvent) -> None:
    """Decide what the write sets off and apply their ``set_fields`` actions to its values.

    An edge trigger (``condition_true``) is decided after the write instead, when what its
    condition reads through lookups has moved too (a dealer's roll-up fed by this order);
    here its condition is read on the record as it was, the "before" of the edge.
    """
    candidates = _candidates(event)
    if not candidates:
        return
    assert event.registry is not None
    unit = actions.system_records(event.session, event.registry).unit
    fields = set(event.meta.fields)
    old = {k: v for k, v in (event.old or {}).items() if k in fields} if event.old else None
    edges = [a for a in candidates if a.kind is TriggerKind.CONDITION_TRUE]
    event.notes[_EDGES_KEY] = {a.name: _edge_before(event, a, old, unit) for a in edges}
    decided: dict[str, str] = {}
    others = [a for a in candidates if a.kind is not TriggerKind.CONDITION_TRUE]
    for automation in _fired(event, others, event.values):
        decided[automation.name] = "fired"
        setters = automation.actions_of(before_save=True)
        if not setters:
            continue
        with guarded(event.session, automation, event.record_id) as allowed:
            if not allowed:
                decided[automation.name] = "stopped"
                continue
            for action in setters:
                actions.set_fields(event, action)
    event.notes[_NOTES_KEY] = decided


def after_save(event: WriteEvent) -> None:
    """Run the fired automations' other actions, each in a savepoint, and record each run;
    decide the edge triggers (whose actions all run now: ``set_fields`` as an update)."""
    candidates = _candidates(event)
    if not candidates:  # the usual write: no automation of its object to decide or run
        return
    decided: dict[str, str] | None = event.notes.get(_NOTES_KEY)
    if decided is None:  # a delete: nothing was decided before it
        decided = {a.name: "fired" for a in _fired(event, candidates, event.values)}
        edges: list[Automation] = []
    else:
        before = event.notes.get(_EDGES_KEY, {})
        pending = [a for a in candidates if a.name in before]
        edges = _fired(event, pending, event.values, before)
    if not decided and not edges:
        return
    assert event.registry is not None
    by_name = {a.name: a for a in event.registry.automations(event.meta.name)}
    for name, state in decided.items():
        automation = by_name[name]
        trigger = automation.kind.value
        if state == "stopped":
            runs.record(event.session, automation, event.record_id, trigger, runs.STOPPED)
            continue
        later = automation.actions_of(before_save=False)
        if not later:
            runs.record(event.session, automation, event.record_id, trigger, runs.DONE)
            continue
        run_actions(
            event.session,
            event.registry,
            automation,
            later,
            event.record_id,
            dict(event.values),
            automation.kind.value,
        )
    _run_all(event, edges)


def after_recompute(event: WriteEvent) -> None:
    """A record's roll-ups or formulas moved by other records' writes (its lines, in the
    same call): its ``update``, ``field_changed`` and ``condition_true`` automations decide
    on the values before and after, as for an update of its own, and run every action
    now (``set_fields`` as an update through the record service, as a scheduled run)."""
    candidates = _candidates(event)
    if candidates:
        _run_all(event, _fired(event, candidates, event.values))


def _run_all(event: WriteEvent, fired: list[Automation]) -> None:
    """Every action of each of ``fired`` on the event's record, now (after its save)."""
    assert event.registry is not None
    for automation in fired:
        run_actions(
            event.session,
            event.registry,
            automation,
            automation.actions,
            event.record_id,
            dict(event.values),
            automation.kind.value,
        )


def run_actions(
    session: Session,
    registry: MetaRegistry,
    automation: Automation,
    to_run: list[dict[str, Any]],
    record_id: int | None,
    record: dict[str, Any],
    trigger: str,
    run_key: str | None = None,
) -> str:
    """Run ``to_run`` (actions of ``automation``) on one record in a savepoint (unless
    ``_needs_savepoint`` says no); record the run (``done``, ``failed`` or ``stopped``)
    and return its outcome."""
    with guarded(session, automation, record_id) as allowed:
        if not allowed:
            runs.record(session, automation, record_id, trigger, runs.STOPPED, key=run_key)
            return runs.STOPPED
        error: str | None = None
        apart = _needs_savepoint(to_run)
        try:
            with session.begin_nested() if apart else nullcontext(), computed.set_aside(session):
                for action in to_run:
                    actions.run(session, registry, automation, action, record_id, record)
        except TrellisError as exc:
            error = _describe(exc)
        except Exception as exc:  # a pack hook's own code; logged, recorded, the write stands
            if not apart:
                raise  # nothing to roll back to: the write fails, as on any database error
            log.exception("automation %s failed on %s %s", automation.name, trigger, record_id)
            error = repr(exc)
    outcome = runs.DONE if error is None else runs.FAILED
    runs.record(session, automation, record_id, trigger, outcome, error=error, key=run_key)
    return outcome


# An action that refuses before it writes anything, and then only writes rows no check can
# refuse (outbox events): alone in a run, it cannot half-apply.
_ALL_OR_NOTHING = frozenset({ActionKind.WEBHOOK})


def _needs_savepoint(to_run: list[dict[str, Any]]) -> bool:
    """Whether a run's actions need a savepoint, so that a failing one leaves nothing
    behind: not for one action that cannot half-apply (publishing to webhooks), which
    saves the two round trips of a write's usual automation."""
    return not (len(to_run) == 1 and ActionKind(to_run[0]["type"]) in _ALL_OR_NOTHING)


def _describe(exc: TrellisError) -> str:
    details = "; ".join(
        f"{d.get('field')}: {d.get('message')}" for d in exc.details if isinstance(d, dict)
    )
    return f"{exc.message} ({details})" if details else str(exc.message)


@contextmanager
def guarded(session: Session, automation: Automation, record_id: int | None) -> Iterator[bool]:
    """Inside: the automation is on the session's chain (its writes see it). ``False``
    when the loop guard stops it (audited), and nothing is pushed."""
    chain: list[tuple[str, str, int | None]] = session.info.setdefault(CHAIN_KEY, [])
    link = (automation.name, automation.object_name, record_id)
    repeated = record_id is not None and link in chain
    if repeated or len(chain) >= defaults.AUTOMATION_MAX_DEPTH:
        audit.record(
            session,
            "automation.loop_stopped",
            target=f"automation/{automation.name}",
            detail={
                "record": f"{automation.object_name}/{record_id}",
                "reason": "repeated" if repeated else "depth",
                "chain": [f"{name} {obj}/{rid}" for name, obj, rid in chain],
            },
        )
        yield False
        return
    chain.append(link)
    try:
        yield True
    finally:
        chain.pop()


def workflow_event(
    session: Session,
    registry: MetaRegistry,
    object_name: str,
    record_id: int,
    event: str,
    state: str | None = None,
) -> None:
    """Run the automations of the object that trigger on workflow ``event`` (a
    ``WorkflowEvent``: entered_state with the ``state`` entered, submitted, approved,
    rejected, returned, recalled, escalated), in the caller's transaction; each run is
    recorded like any other (a failing action leaves the transition standing)."""
    wanted = [
        a
        for a in registry.automations(object_name)
        if a.active
        and a.kind is TriggerKind.WORKFLOW
        and event in a.trigger["events"]
        and (event != "entered_state" or "states" not in a.trigger or state in a.trigger["states"])
    ]
    if not wanted:
        return
    meta = registry.get(object_name)
    row = session.execute(sa.select(meta.table).where(meta.table.c.id == record_id)).mappings()
    found = row.first()
    if found is None:
        return
    record = serialise(meta, found)
    unit = actions.system_records(session, registry).unit
    for automation in wanted:
        condition = automation.condition
        if condition is not None and evaluate(registry, meta, condition, record, unit) is not True:
            continue
        run_actions(session, registry, automation, automation.actions, record_id, dict(record),
                    TriggerKind.WORKFLOW.value)  # fmt: skip
