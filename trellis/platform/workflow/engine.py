"""What a workflow allows, decided without I/O: which transitions leave a state, whether a
caller may fire one, what a write may do to the status and the locked fields, and how the
states of records map from one version of a workflow to the next.

The runtime (``runtime/workflow.py``) reads the record, asks here, and applies the answer
in one transaction. A guard needs the record and its lookups, so the caller passes its
outcome in as a function; everything else is plain data.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from enum import StrEnum

from trellis.platform.messages import N_, Message
from trellis.platform.workflow.document import NO_STATE, CommentRule, Transition, Workflow


class Refusal(StrEnum):
    """Why a transition cannot fire (the runtime maps each to its HTTP status)."""

    UNKNOWN = "unknown_transition"  # 404
    FORBIDDEN = "forbidden"  # 403: the caller's roles may not fire it
    NOT_FROM_HERE = "not_from_state"  # 409: not allowed from the record's current state
    COMMENT_REQUIRED = "comment_required"  # 422
    GUARD_FALSE = "guard_false"  # 422


@dataclass(frozen=True)
class Decision:
    """The engine's answer: the transition to apply, or why not (``refusal``, ``message``)."""

    transition: Transition | None
    refusal: Refusal | None = None
    message: Message | None = None

    @property
    def allowed(self) -> bool:
        """True when the transition may be applied."""
        return self.refusal is None


def role_allows(transition: Transition, roles: Collection[str], is_admin: bool) -> bool:
    """Whether the caller's roles name the transition (no roles named: anyone; an
    administrator always — the bypass is theirs, as for records)."""
    return is_admin or not transition.roles or not transition.roles.isdisjoint(roles)


def available(
    workflow: Workflow, state: str | None, roles: Collection[str], is_admin: bool
) -> list[Transition]:
    """The transitions leaving ``state`` that the caller's roles may fire (scope and guard
    are the runtime's to check, on the record)."""
    return [t for t in workflow.transitions_from(state) if role_allows(t, roles, is_admin)]


def decide(
    workflow: Workflow,
    name: str,
    state: str | None,
    roles: Collection[str],
    is_admin: bool,
    comment: str | None,
    guard_passes: Callable[[str], bool],
) -> Decision:
    """Whether ``name`` may fire now: known, allowed to the caller, from ``state``, with
    its comment, and its guard true — checked in that order, the first failure answered."""
    transition = workflow.transition(name)
    if transition is None:
        return Decision(
            None,
            Refusal.UNKNOWN,
            N_(
                "workflow %(workflow)s has no transition %(name)s",
                workflow=workflow.name,
                name=repr(name),
            ),
        )
    if not role_allows(transition, roles, is_admin):
        return Decision(
            transition,
            Refusal.FORBIDDEN,
            N_("your roles may not %(transition)s this record", transition=transition.name),
        )
    if state not in transition.sources:
        return Decision(
            transition,
            Refusal.NOT_FROM_HERE,
            N_(
                "%(transition)s is not allowed from %(state)s (only from %(sources)s)",
                transition=transition.name,
                state=repr(state),
                sources=", ".join(transition.sources),
            ),
        )
    if transition.comment is CommentRule.REQUIRED and not (comment or "").strip():
        return Decision(
            transition,
            Refusal.COMMENT_REQUIRED,
            N_("%(transition)s needs a comment", transition=transition.name),
        )
    if transition.guard is not None and not guard_passes(transition.guard):
        return Decision(
            transition,
            Refusal.GUARD_FALSE,
            N_(
                "%(transition)s is not possible now: %(guard)s is not true",
                transition=transition.name,
                guard=transition.guard,
            ),
        )
    return Decision(transition)


def status_problem(
    workflow: Workflow, creating: bool, before: str | None, after: str | None
) -> Message | None:
    """What is wrong with a plain write (not a transition) setting the status, if anything:
    a new record starts in the initial state; an update leaves the status alone."""
    if creating:
        if after is None or after == workflow.initial_name:
            return None
        return N_(
            "a new record starts in %(initial)s; only transitions move the status",
            initial=repr(workflow.initial_name),
        )
    if after == before:
        return None
    return N_("only transitions of workflow %(workflow)s move the status", workflow=workflow.name)


def locked_changes(workflow: Workflow, state: str | None, changed: Iterable[str]) -> list[str]:
    """The changed fields that are locked in ``state``, in the order given."""
    locked = workflow.locked_in(state)
    return [name for name in changed if name in locked]


@dataclass(frozen=True)
class Migration:
    """How records' states follow a new workflow version: ``moves`` (old → new state) for
    states that went away and are mapped; ``unmapped`` states that went away and are not."""

    moves: dict[str | None, str]
    unmapped: list[str | None]


def migrate_states(workflow: Workflow, in_use: Iterable[str | None]) -> Migration:
    """The states (``None``: no status) records are in, against the new ``workflow``."""
    moves: dict[str | None, str] = {}
    unmapped: list[str | None] = []
    for state in in_use:
        if state is not None and workflow.state(state) is not None:
            continue
        target = workflow.state_map.get(NO_STATE if state is None else state)
        if target is None:
            unmapped.append(state)
        else:
            moves[state] = target
    return Migration(moves, unmapped)
