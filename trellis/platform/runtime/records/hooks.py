"""Hooks: where later capabilities plug into the record write path.

Formulas, validation rules, workflow locks, automations and the outbox all need to act
at a known moment of every write, whichever entry point made it (API, bulk, forms,
imports, pack installs). They register a function for a ``Hook`` here, for one object or
for all of them, and the pipeline calls it:

- ``BEFORE_VALIDATE``: the record's JSON values may still change (compute formulas);
- ``VALIDATE``: check the record; raise ``ValidationFailed`` (or another ``TrellisError``);
- ``AFTER_WRITE``: the row is written, in the same transaction (roll-ups, outbox rows);
- ``AFTER_COMMIT``: the transaction has committed (enqueue jobs). Never runs after a
  rollback; an error here is logged, not raised, since the change has already happened;
- ``RECOMPUTED``: another record's write moved this record's stored values — a roll-up
  over its lines, a formula reading a record it looks up — in the same transaction. Once
  per record and service call, at its end, as an ``UPDATE`` event from the values before
  the first move to those after the last (``changes``: the fields that moved). Records
  the call created, or deleted, are not told.

A hook receives a ``WriteEvent``. Hooks run in the order they were registered, object
hooks after the hooks for every object.
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from trellis.platform.runtime.identity import Caller
    from trellis.platform.runtime.registry import MetaRegistry, ObjectMeta

log = logging.getLogger(__name__)


class Hook(StrEnum):
    """The moments of the write path a hook can attach to."""

    BEFORE_VALIDATE = "before_validate"
    VALIDATE = "validate"
    AFTER_WRITE = "after_write"
    AFTER_COMMIT = "after_commit"
    RECOMPUTED = "recomputed"


class Action(StrEnum):
    """What a write does to a record (also the ``action`` of its history row)."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    RESTORE = "restore"


@dataclass
class WriteEvent:
    """One record's write, as a hook sees it.

    ``values`` are the record's JSON values as they will be stored (for an update: the
    stored record with the change applied); a ``BEFORE_VALIDATE`` hook may change them.
    ``old`` is the stored record before an update, delete or restore; ``changes`` maps
    each changed field to ``[old, new]`` once the row is written. ``notes`` is the same
    dict at every moment of one record's write: what a hook decided early (the
    automations a write set off) for its later moments. ``registry`` is the metadata the
    write runs under.
    """

    meta: ObjectMeta
    action: Action
    values: dict[str, Any]
    session: Session
    caller: Caller | None
    record_id: int | None = None
    old: dict[str, Any] | None = None
    changes: dict[str, list[Any]] | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    registry: MetaRegistry | None = None


HookFunction = Callable[[WriteEvent], None]
Applies = Callable[["ObjectMeta", "MetaRegistry | None"], bool]
_AFTER_COMMIT_KEY = "trellis.after_commit"
_COLLECTED_KEY = "trellis.after_commit.collected"
_LISTENING_KEY = "trellis.after_commit.listening"


class HookRegistry:
    """Hook functions by moment and object (``None``: every object)."""

    def __init__(self) -> None:
        self._hooks: dict[tuple[Hook, str | None], list[HookFunction]] = defaultdict(list)
        self._applies: dict[HookFunction, Applies] = {}
        self.generation = 0  # moves at every (un)registration: what a caller kept is stale

    def register(
        self,
        hook: Hook,
        function: HookFunction,
        object_name: str | None = None,
        *,
        applies: Applies | None = None,
    ) -> HookFunction:
        """Call ``function`` at ``hook`` for writes of ``object_name`` (or of every object).

        ``applies(meta, registry)`` says, from the metadata alone, whether the function
        has anything to do for writes of an object (the automation engine: the object has
        automations); where it says no, the write path neither calls the function nor
        builds its event."""
        self._hooks[(Hook(hook), object_name)].append(function)
        if applies is not None:
            self._applies[function] = applies
        self.generation += 1
        return function

    def unregister(
        self, hook: Hook, function: HookFunction, object_name: str | None = None
    ) -> None:
        """Stop calling ``function``; unknown functions are ignored."""
        functions = self._hooks.get((Hook(hook), object_name), [])
        if function in functions:
            functions.remove(function)
        if not any(function in registered for registered in self._hooks.values()):
            self._applies.pop(function, None)
        self.generation += 1

    def functions(self, hook: Hook, object_name: str) -> list[HookFunction]:
        """The functions to call, for every object first, then for this one."""
        return [*self._hooks.get((hook, None), ()), *self._hooks.get((hook, object_name), ())]

    def has(self, hook: Hook, object_name: str) -> bool:
        """Whether any function is registered (so the pipeline can skip building events)."""
        return bool(self._hooks.get((hook, None)) or self._hooks.get((hook, object_name)))

    def wanted(
        self, hook: Hook, meta: ObjectMeta, registry: MetaRegistry | None
    ) -> list[HookFunction]:
        """The functions to call for a write of ``meta`` under ``registry``: those
        registered whose ``applies`` (if any) holds."""
        found = self.functions(hook, meta.name)
        if not self._applies:
            return found
        applies = self._applies
        return [f for f in found if f not in applies or applies[f](meta, registry)]

    def run(
        self, hook: Hook, event: WriteEvent, functions: list[HookFunction] | None = None
    ) -> None:
        """Call the hook's functions (``wanted``, unless given) now, in order;
        ``AFTER_COMMIT`` ones are queued instead."""
        if functions is None:
            functions = self.wanted(hook, event.meta, event.registry)
        if hook is Hook.AFTER_COMMIT:
            for function in functions:
                _queue_after_commit(event.session, function, event)
            return
        for function in functions:
            function(event)


hooks = HookRegistry()
"""The process-wide registry; packs and the platform's own capabilities register here."""


def _queue_after_commit(session: Session, function: HookFunction, event: WriteEvent) -> None:
    after_commit(session, functools.partial(function, event), f"{function!r} for {event.meta.name}")


def after_commit(session: Session, callback: Callable[[], None], what: str = "") -> None:
    """Call ``callback`` once ``session``'s transaction commits; drop it on a rollback.

    The one after-commit mechanism: record hooks and the jobs queue both use it. A failing
    callback is logged, not raised, since the change has already happened.
    """
    if not session.info.get(_LISTENING_KEY):
        # Once per session, never removed: a listener cannot leave while it is being called.
        sa.event.listen(session, "after_commit", _run_after_commit)
        sa.event.listen(session, "after_rollback", _drop_after_commit)
        session.info[_LISTENING_KEY] = True
    session.info.setdefault(_AFTER_COMMIT_KEY, []).append((callback, what or repr(callback)))


def collect_until_commit(
    session: Session, key: str, callback: Callable[[list[Any]], None]
) -> list[Any]:
    """A list that gathers items during ``session``'s transaction (jobs to push, events to
    relay); once it commits, ``callback`` gets them in one call. A rollback drops them.

    The same ``key`` in the same transaction returns the same list, so a bulk write of a
    thousand records still leads to one follow-up, not a thousand.
    """
    collected: dict[str, list[Any]] = session.info.setdefault(_COLLECTED_KEY, {})
    if key not in collected:
        items: list[Any] = []
        collected[key] = items
        after_commit(session, functools.partial(callback, items), key)
    return collected[key]


def _run_after_commit(session: Session) -> None:
    session.info.pop(_COLLECTED_KEY, None)
    for callback, what in session.info.pop(_AFTER_COMMIT_KEY, []):
        try:
            callback()
        except Exception:  # the change is committed; a failing follow-up must not undo it
            log.exception("after-commit callback %s failed", what)


def _drop_after_commit(session: Session) -> None:
    session.info.pop(_AFTER_COMMIT_KEY, None)
    session.info.pop(_COLLECTED_KEY, None)
