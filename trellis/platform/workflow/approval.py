"""Approval flows: the steps a transition's submission goes through. Pure.

A transition of a workflow may carry an ``approval``: firing it (the *submission*) moves
the record to the transition's target state and opens an approval request; while it is
pending the record is read-only. The flow's outcome fires one of the workflow's own
transitions out of that state.

```json
{"name": "submit", "from": "draft", "to": "submitted", "label": {…},
 "approval": {
   "approved": "approve", "rejected": "reject", "returned": "return", "recalled": "return",
   "cc": {"submitted": [{"role": "sales_director"}], "completed": [{"field": "owner_id"}]},
   "calendar": {"timezone": "Asia/Shanghai", "holidays": ["2027-02-11"],
                "workdays": ["2027-02-07"]},
   "steps": [
     {"name": "manager", "label": {…}, "approvers": [{"role": "channel_manager"}],
      "mode": "any", "when": "total_amount > dealer.auto_approve_limit",
      "editable": ["internal_notes"],
      "next": [{"when": "total_amount > 100000", "step": "finance"}]},
     {"name": "finance", "label": {…}, "approvers": [{"role": "finance"}],
      "mode": "quorum", "quorum": {"count": 2},
      "deadline": {"days": 2, "action": "escalate", "to": {"role": "hq_admin"}}}]}}
```

- ``approvers``: ``{"user": e-mail}``, ``{"role": name}``, ``{"manager": n}`` (the
  submitter's manager, ``n`` levels up), ``{"field": name}`` (a user field of the record),
  ``{"partner_admins": role}`` (users of the record's partner holding ``role``).
- ``mode``: ``any`` (或签: the first decision decides), ``all`` (会签), ``quorum`` (M of N:
  ``{"count": m}`` or ``{"ratio": r}``) and ``sequential`` (依次: one after another).
- ``when``: the step's entry condition (skipped when false); ``next``: branches taken
  when the step is approved (the first true one; else the next step in order).
- ``deadline``: ``days`` (business days of ``calendar``) or ``hours``; then ``remind``,
  ``escalate`` (to ``to``, else the approver's manager; the clock restarts), ``approve``
  or ``reject``.

Each step's approvers are *lanes*. A lane is one approver, or (``sequential``, and after
加签) several who decide one after another; a lane is approved when all its tasks are,
rejected when one is. The step's mode counts lanes (``step_outcome``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from trellis.platform.messages import N_
from trellis.platform.metadata.definition import Problem
from trellis.platform.metadata.fieldtypes import LABEL_SCHEMA
from trellis.platform.metadata.names import NAME_PATTERN

BILINGUAL: dict[str, Any] = {**LABEL_SCHEMA, "required": ["en", "zh-CN"]}
MAX_STEPS = 20
MAX_DEADLINE_DAYS = 365


class Mode(StrEnum):
    """How a step's lanes decide it."""

    ANY = "any"  # 或签
    ALL = "all"  # 会签
    QUORUM = "quorum"  # M of N
    SEQUENTIAL = "sequential"  # 依次


class DeadlineAction(StrEnum):
    """What a step does when its deadline passes."""

    REMIND = "remind"
    ESCALATE = "escalate"
    APPROVE = "approve"
    REJECT = "reject"


class Outcome(StrEnum):
    """How a step (or a lane) stands."""

    APPROVED = "approved"
    REJECTED = "rejected"


# Where a rejection sends the request: ``END`` fires ``rejected``, ``SUBMITTER`` fires
# ``returned`` (rework and resubmit); any other value names an earlier step (退回).
END = "end"
SUBMITTER = "submitter"


@cache
def approval_schema() -> dict[str, Any]:
    """The JSON Schema of a transition's ``approval`` (part of the workflow meta-schema)."""
    name = {"type": "string", "pattern": NAME_PATTERN}
    approver = {
        "type": "object",
        "oneOf": [
            {"required": ["user"]},
            {"required": ["role"]},
            {"required": ["manager"]},
            {"required": ["field"]},
            {"required": ["partner_admins"]},
        ],
        "properties": {
            "user": {"type": "string", "minLength": 3, "maxLength": 254},
            "role": name,
            "manager": {"type": "integer", "minimum": 1, "maximum": 10},
            "field": name,
            "partner_admins": name,
        },
        "additionalProperties": False,
    }
    approvers = {"type": "array", "items": approver, "minItems": 1, "maxItems": 20}
    expression = {"type": "string", "minLength": 1, "maxLength": 2000}
    deadline = {
        "type": "object",
        "properties": {
            "days": {"type": "integer", "minimum": 1, "maximum": MAX_DEADLINE_DAYS},
            "hours": {"type": "integer", "minimum": 1, "maximum": 24 * MAX_DEADLINE_DAYS},
            "action": {"enum": [a.value for a in DeadlineAction]},
            "to": approver,
        },
        "oneOf": [{"required": ["days"]}, {"required": ["hours"]}],
        "required": ["action"],
        "additionalProperties": False,
    }
    step = {
        "type": "object",
        "properties": {
            "name": name,
            "label": BILINGUAL,
            "approvers": approvers,
            "mode": {"enum": [m.value for m in Mode]},
            "quorum": {
                "type": "object",
                "properties": {
                    "count": {"type": "integer", "minimum": 1, "maximum": 100},
                    "ratio": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                },
                "oneOf": [{"required": ["count"]}, {"required": ["ratio"]}],
                "additionalProperties": False,
            },
            "when": expression,
            "next": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"when": expression, "step": name},
                    "required": ["when", "step"],
                    "additionalProperties": False,
                },
                "maxItems": 20,
            },
            "editable": {"type": "array", "items": name, "uniqueItems": True},
            "deadline": deadline,
        },
        "required": ["name", "label", "approvers"],
        "additionalProperties": False,
    }
    day = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"}
    return {
        "type": "object",
        "properties": {
            "approved": name,
            "rejected": name,
            "returned": name,
            "recalled": name,
            "steps": {"type": "array", "items": step, "minItems": 1, "maxItems": MAX_STEPS},
            "cc": {
                "type": "object",
                "properties": {"submitted": approvers, "completed": approvers},
                "additionalProperties": False,
            },
            "calendar": {
                "type": "object",
                "properties": {
                    "timezone": {"type": "string", "minLength": 1, "maxLength": 64},
                    "holidays": {"type": "array", "items": day, "maxItems": 400},
                    "workdays": {"type": "array", "items": day, "maxItems": 100},
                },
                "additionalProperties": False,
            },
        },
        "required": ["approved", "rejected", "steps"],
        "additionalProperties": False,
    }


# --- the parsed flow --------------------------------------------------------------------


@dataclass(frozen=True)
class Approver:
    """Where a step finds its approvers: ``kind`` is user, role, manager, field or
    partner_admins; ``value`` the e-mail, role, levels, field or role."""

    kind: str
    value: Any

    @classmethod
    def of(cls, spec: dict[str, Any]) -> Approver:
        """The one key of an approver spec."""
        ((kind, value),) = spec.items()
        return cls(kind, value)

    def as_json(self) -> dict[str, Any]:
        """The spec as the document holds it."""
        return {self.kind: self.value}


@dataclass(frozen=True)
class Deadline:
    """When a step's task runs out and what happens then."""

    action: DeadlineAction
    days: int | None = None
    hours: int | None = None
    to: Approver | None = None


@dataclass(frozen=True)
class Branch:
    """Taken after the step is approved when ``when`` holds: continue at ``step``."""

    when: str
    step: str


@dataclass(frozen=True)
class Step:
    """One step of a flow."""

    name: str
    label: dict[str, str]
    approvers: tuple[Approver, ...]
    mode: Mode = Mode.ANY
    quorum_count: int | None = None
    quorum_ratio: float | None = None
    when: str | None = None
    branches: tuple[Branch, ...] = ()
    editable: frozenset[str] = frozenset()
    deadline: Deadline | None = None

    def needed(self, lanes: int) -> int:
        """How many approved lanes approve the step, of ``lanes``."""
        if self.mode is Mode.ANY:
            return 1 if lanes else 0
        if self.mode is Mode.QUORUM:
            if self.quorum_count is not None:
                return min(self.quorum_count, lanes)
            return min(lanes, max(1, math.ceil((self.quorum_ratio or 1) * lanes - 1e-9)))
        return lanes


@dataclass(frozen=True)
class Calendar:
    """Working days: Monday to Friday in ``timezone``, less ``holidays``, plus ``workdays``
    (the weekend days worked in exchange, 调休)."""

    timezone: str = "UTC"
    holidays: frozenset[dt.date] = frozenset()
    workdays: frozenset[dt.date] = frozenset()

    def is_workday(self, day: dt.date) -> bool:
        """Whether people work on ``day``."""
        if day in self.workdays:
            return True
        return day.weekday() < 5 and day not in self.holidays

    def add(self, start: dt.datetime, deadline: Deadline) -> dt.datetime:
        """When a deadline set at ``start`` (aware) runs out: ``hours`` of the clock, or
        ``days`` working days later at the same time of day (a start on a day off counts
        from the next working day's beginning)."""
        if deadline.hours is not None:
            return start + dt.timedelta(hours=deadline.hours)
        zone = _zone(self.timezone)
        local = start.astimezone(zone)
        if not self.is_workday(local.date()):
            day = local.date()
            while not self.is_workday(day):
                day += dt.timedelta(days=1)
            local = dt.datetime.combine(day, dt.time(0, 0), zone)
        day, left = local.date(), deadline.days or 0
        while left > 0:
            day += dt.timedelta(days=1)
            if self.is_workday(day):
                left -= 1
        moment = dt.datetime.combine(day, local.timetz().replace(tzinfo=None), zone)
        return moment.astimezone(dt.UTC)


def _zone(name: str) -> dt.tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return dt.UTC


@dataclass(frozen=True)
class ApprovalFlow:
    """A parsed ``approval`` of the transition ``submit``."""

    submit: str
    pending_state: str
    approved: str
    rejected: str
    returned: str
    recalled: str
    steps: tuple[Step, ...]
    cc_submitted: tuple[Approver, ...] = ()
    cc_completed: tuple[Approver, ...] = ()
    calendar: Calendar = field(default_factory=Calendar)

    def step(self, name: str) -> Step | None:
        """The step named ``name``."""
        return next((s for s in self.steps if s.name == name), None)

    def index(self, name: str) -> int:
        """The position of step ``name`` (``ValueError`` when unknown)."""
        return [s.name for s in self.steps].index(name)


def parse_flow(transition: dict[str, Any]) -> ApprovalFlow:
    """A valid transition's ``approval`` as an ``ApprovalFlow``."""
    doc = transition["approval"]
    steps = []
    for s in doc["steps"]:
        quorum = s.get("quorum", {})
        deadline = s.get("deadline")
        steps.append(
            Step(
                name=s["name"],
                label=dict(s["label"]),
                approvers=tuple(Approver.of(a) for a in s["approvers"]),
                mode=Mode(s.get("mode", Mode.ANY)),
                quorum_count=quorum.get("count"),
                quorum_ratio=quorum.get("ratio"),
                when=s.get("when"),
                branches=tuple(Branch(b["when"], b["step"]) for b in s.get("next", [])),
                editable=frozenset(s.get("editable", [])),
                deadline=Deadline(
                    DeadlineAction(deadline["action"]),
                    deadline.get("days"),
                    deadline.get("hours"),
                    Approver.of(deadline["to"]) if "to" in deadline else None,
                )
                if deadline
                else None,
            )
        )
    calendar = doc.get("calendar", {})
    returned = doc.get("returned", doc["rejected"])
    return ApprovalFlow(
        submit=transition["name"],
        pending_state=transition["to"],
        approved=doc["approved"],
        rejected=doc["rejected"],
        returned=returned,
        recalled=doc.get("recalled", returned),
        steps=tuple(steps),
        cc_submitted=tuple(Approver.of(a) for a in doc.get("cc", {}).get("submitted", [])),
        cc_completed=tuple(Approver.of(a) for a in doc.get("cc", {}).get("completed", [])),
        calendar=Calendar(
            calendar.get("timezone", "UTC"),
            frozenset(dt.date.fromisoformat(d) for d in calendar.get("holidays", [])),
            frozenset(dt.date.fromisoformat(d) for d in calendar.get("workdays", [])),
        ),
    )


# --- checks against the workflow and the object -----------------------------------------


def flow_problems(
    at: str,
    transition: dict[str, Any],
    transitions: dict[str, dict[str, Any]],
    properties: dict[str, Any],
    roles: set[str] | frozenset[str],
) -> list[tuple[str, Any]]:
    """What is wrong with a (schema-valid) transition's ``approval`` besides expressions:
    each as ``(pointer, message)``. ``transitions`` are the workflow's, by name."""
    doc = transition["approval"]
    problems: list[tuple[str, Any]] = []
    pending = transition["to"]
    if transition["from"] == pending or pending in _sources(transition):
        problems.append((f"{at}/to", N_("a submission must move the record to another state")))
    for key in ("approved", "rejected", "returned", "recalled"):
        if key not in doc:
            continue
        named = transitions.get(doc[key])
        if named is None:
            problems.append(
                (f"{at}/{key}", N_("%(name)s is not a transition", name=repr(doc[key])))
            )
        elif pending not in _sources(named):
            problems.append(
                (
                    f"{at}/{key}",
                    N_(
                        "%(name)s must leave %(state)s, where the request waits",
                        name=repr(doc[key]),
                        state=repr(pending),
                    ),
                )
            )
        elif named.get("approval"):
            problems.append((f"{at}/{key}", N_("an outcome cannot start another approval")))
    seen: dict[str, int] = {}
    for index, step in enumerate(doc["steps"]):
        where = f"{at}/steps/{index}"
        if step["name"] in seen:
            problems.append(
                (f"{where}/name", N_("another step is named %(name)s", name=step["name"]))
            )
        seen.setdefault(step["name"], index)
        mode = step.get("mode", Mode.ANY)
        if (mode == Mode.QUORUM) != ("quorum" in step):
            problems.append(
                (
                    f"{where}/quorum",
                    N_("a quorum step needs its quorum")
                    if mode == Mode.QUORUM
                    else N_("only a quorum step has a quorum"),
                )
            )
        for position, approver in enumerate(step["approvers"]):
            problems.extend(
                _approver_problems(f"{where}/approvers/{position}", approver, properties, roles)
            )
        deadline = step.get("deadline")
        if deadline and "to" in deadline:
            if deadline["action"] != DeadlineAction.ESCALATE:
                problems.append((f"{where}/deadline/to", N_("only an escalation has a target")))
            problems.extend(
                _approver_problems(f"{where}/deadline/to", deadline["to"], properties, roles)
            )
        for position, name in enumerate(step.get("editable", [])):
            prop = properties.get(name)
            if not isinstance(prop, dict):
                problems.append(
                    (f"{where}/editable/{position}", N_("%(name)s is not a field", name=repr(name)))
                )
            elif prop.get("x-type") in ("formula", "rollup", "autonumber") or prop.get("readOnly"):
                problems.append((f"{where}/editable/{position}", N_("is read-only")))
    for index, step in enumerate(doc["steps"]):
        for position, branch in enumerate(step.get("next", [])):
            target = seen.get(branch["step"])
            if target is None:
                problems.append(
                    (
                        f"{at}/steps/{index}/next/{position}/step",
                        N_("%(name)s is not a step", name=repr(branch["step"])),
                    )
                )
            elif target <= index:
                problems.append(
                    (
                        f"{at}/steps/{index}/next/{position}/step",
                        N_("a branch goes forward, to a later step"),
                    )
                )
    for key in ("submitted", "completed"):
        for position, approver in enumerate(doc.get("cc", {}).get(key, [])):
            problems.extend(
                _approver_problems(f"{at}/cc/{key}/{position}", approver, properties, roles)
            )
    calendar = doc.get("calendar", {})
    if "timezone" in calendar:
        try:
            ZoneInfo(calendar["timezone"])
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(
                (
                    f"{at}/calendar/timezone",
                    N_("unknown time zone %(name)s", name=repr(calendar["timezone"])),
                )
            )
    for key in ("holidays", "workdays"):
        for position, day in enumerate(calendar.get(key, [])):
            try:
                dt.date.fromisoformat(day)
            except ValueError:
                problems.append((f"{at}/calendar/{key}/{position}", N_("is not a date")))
    return problems


def flow_expressions(at: str, transition: dict[str, Any]) -> Iterable[tuple[str, str]]:
    """Every expression of the flow, with its pointer (the caller checks them)."""
    for index, step in enumerate(transition["approval"]["steps"]):
        if "when" in step:
            yield f"{at}/steps/{index}/when", step["when"]
        for position, branch in enumerate(step.get("next", [])):
            yield f"{at}/steps/{index}/next/{position}/when", branch["when"]


def _sources(transition: dict[str, Any]) -> list[str]:
    sources = transition["from"]
    return [sources] if isinstance(sources, str) else list(sources)


def _approver_problems(
    at: str, approver: dict[str, Any], properties: dict[str, Any], roles: set[str] | frozenset[str]
) -> list[tuple[str, Any]]:
    for kind in ("role", "partner_admins"):
        if kind in approver and approver[kind] not in roles:
            return [(f"{at}/{kind}", N_("unknown role %(name)s", name=repr(approver[kind])))]
    if "field" in approver:
        prop = properties.get(approver["field"])
        if approver["field"] != "owner_id" and (
            not isinstance(prop, dict) or prop.get("x-type") != "user"
        ):
            return [
                (
                    f"{at}/field",
                    N_("%(name)s is not a user field", name=repr(approver["field"])),
                )
            ]
    return []


def problems_as(found: list[tuple[str, Any]]) -> list[Problem]:
    """``(pointer, message)`` pairs as ``Problem``s."""
    return [Problem(pointer, message) for pointer, message in found]


# --- deciding ---------------------------------------------------------------------------


class TaskStatus(StrEnum):
    """Where one approver's task stands."""

    PENDING = "pending"  # theirs to decide now
    WAITING = "waiting"  # later in its lane (依次, 加签)
    APPROVED = "approved"
    REJECTED = "rejected"
    CANCELLED = "cancelled"  # the step was decided without it, or the request ended

    @property
    def open(self) -> bool:
        """Still to be decided."""
        return self in (TaskStatus.PENDING, TaskStatus.WAITING)


@dataclass(frozen=True)
class TaskView:
    """What the engine needs of one task of a step."""

    id: int
    lane: int
    seq: int
    status: TaskStatus


def lane_outcome(tasks: Sequence[TaskView]) -> Outcome | None:
    """A lane is rejected by one rejection, approved when every task in it is."""
    live = [t for t in tasks if t.status is not TaskStatus.CANCELLED]
    if any(t.status is TaskStatus.REJECTED for t in live):
        return Outcome.REJECTED
    if live and all(t.status is TaskStatus.APPROVED for t in live):
        return Outcome.APPROVED
    return None


def step_outcome(step: Step, tasks: Sequence[TaskView]) -> Outcome | None:
    """The step's outcome from its tasks' decisions (``None``: still open).

    ``any``: the first lane decided decides; ``all`` and ``sequential``: every lane must
    approve, one rejection rejects; ``quorum``: approved at M approved lanes, rejected
    once M can no longer be reached.
    """
    lanes: dict[int, list[TaskView]] = {}
    for task in tasks:
        lanes.setdefault(task.lane, []).append(task)
    outcomes = [lane_outcome(lane) for lane in lanes.values()]
    live = [
        o
        for o, lane in zip(outcomes, lanes.values(), strict=True)
        if any(t.status is not TaskStatus.CANCELLED for t in lane)
    ]
    approved = sum(1 for o in live if o is Outcome.APPROVED)
    rejected = sum(1 for o in live if o is Outcome.REJECTED)
    needed = step.needed(len(live))
    if step.mode is Mode.ANY:
        if approved:
            return Outcome.APPROVED
        return Outcome.REJECTED if rejected else None
    if approved >= needed and needed > 0:
        return Outcome.APPROVED
    if len(live) - rejected < needed or (rejected and step.mode is not Mode.QUORUM):
        return Outcome.REJECTED
    return None


def next_active(tasks: Sequence[TaskView]) -> list[int]:
    """The waiting tasks that become pending: in each lane with no pending task, nothing
    rejected, the waiting task of lowest ``seq``."""
    lanes: dict[int, list[TaskView]] = {}
    for task in tasks:
        lanes.setdefault(task.lane, []).append(task)
    woken = []
    for lane in lanes.values():
        if any(t.status in (TaskStatus.PENDING, TaskStatus.REJECTED) for t in lane):
            continue
        waiting = [t for t in lane if t.status is TaskStatus.WAITING]
        if waiting:
            woken.append(min(waiting, key=lambda t: t.seq).id)
    return woken


def next_step(
    flow: ApprovalFlow, after: int | None, holds: Any, taken_branches: bool = True
) -> int | None:
    """The index of the step that follows step ``after`` (``None``: the start), or
    ``None`` when the flow is done: the first true branch of ``after``, else the next step
    in order, skipping steps whose entry condition is false. ``holds(expression)`` says
    whether an expression is true of the record."""
    index = 0 if after is None else after + 1
    if after is not None and taken_branches:
        for branch in flow.steps[after].branches:
            if holds(branch.when):
                index = flow.index(branch.step)
                break
    while index < len(flow.steps):
        step = flow.steps[index]
        if step.when is None or holds(step.when):
            return index
        index += 1
    return None


def return_target(flow: ApprovalFlow, current: int, to: str | None, visited: Iterable[int]) -> Any:
    """Where a rejection goes: ``END``, ``SUBMITTER`` or the index of an earlier step the
    request went through. ``ValueError`` with the reason when ``to`` is not one of them."""
    if to in (None, "", END):
        return END
    if to == SUBMITTER:
        return SUBMITTER
    step = flow.step(to)
    if step is None:
        raise ValueError(N_("%(name)s is not a step of this approval", name=repr(to)))
    index = flow.index(to)
    if index >= current or index not in set(visited):
        raise ValueError(N_("%(name)s is not an earlier step of this request", name=repr(to)))
    return index
