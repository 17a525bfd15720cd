"""Automations as metadata: what to do when a record is written, on a schedule, or near a
date. Pure: documents in, problems and decisions out (the runtime acts on them, in
``runtime/automations``).

```json
{"x-name": "confirm_big_orders",
 "x-label": {"en": "Flag big orders", "zh-CN": "标记大额订单"},
 "object": "sales_order",
 "trigger": {"on": "field_changed", "fields": ["total_amount"]},
 "condition": "total_amount > 100000",
 "actions": [{"type": "set_fields", "values": {"priority": "high"}},
             {"type": "notify", "users": {"roles": ["channel_manager"]},
              "message": {"en": "A big order", "zh-CN": "一笔大额订单"}}]}
```

A value in ``set_fields`` / ``create_record`` is a JSON literal, or ``{"expression": "…"}``
computed over the triggering record.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator

from trellis.platform.expressions import BOOLEAN, NULL, ExpressionError, compile_expression
from trellis.platform.messages import N_, schema_message
from trellis.platform.metadata.computed import expression_problem
from trellis.platform.metadata.definition import Problem, _pointer
from trellis.platform.metadata.fieldtypes import LABEL_SCHEMA
from trellis.platform.metadata.names import NAME_PATTERN, SYSTEM_COLUMNS


class TriggerKind(StrEnum):
    """When an automation runs."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    FIELD_CHANGED = "field_changed"
    CONDITION_TRUE = "condition_true"  # the trigger's condition turned true (an edge)
    SCHEDULE = "schedule"  # a cron schedule, over the records its condition selects
    DATE = "date"  # relative to a date field of each record
    WORKFLOW = "workflow"  # a workflow or approval event of the record


class WorkflowEvent(StrEnum):
    """The workflow and approval events an automation may trigger on."""

    ENTERED_STATE = "entered_state"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"
    RETURNED = "returned"
    RECALLED = "recalled"
    ESCALATED = "escalated"


# Triggers that fire on a record's write (the others are run by the scheduler).
WRITE_TRIGGERS = frozenset(
    {
        TriggerKind.CREATE,
        TriggerKind.UPDATE,
        TriggerKind.DELETE,
        TriggerKind.FIELD_CHANGED,
        TriggerKind.CONDITION_TRUE,
    }
)


class ActionKind(StrEnum):
    """What an automation does."""

    SET_FIELDS = "set_fields"
    CREATE_RECORD = "create_record"
    NOTIFY = "notify"
    WEBHOOK = "webhook"
    HOOK = "hook"
    START_APPROVAL = "start_approval"


# A pack hook's name: "<pack>.<action>", as the pack's hooks.py registers it.
_HOOK_NAME = r"^[a-z][a-z0-9_]{0,39}\.[a-z][a-z0-9_]{0,39}$"
# A webhook event type, as webhooks subscribe to them ("erp.sync", "record.updated").
_EVENT = r"^[a-z][a-z0-9_]{0,28}(\.[a-z][a-z0-9_]{0,28}){1,2}$"
_NAMES = {"type": "array", "items": {"type": "string", "pattern": NAME_PATTERN}, "minItems": 1}
_EXPRESSION = {"type": "string", "minLength": 1, "maxLength": 2000}
_VALUES = {
    "type": "object",
    "propertyNames": {"pattern": NAME_PATTERN},
    "additionalProperties": {
        "if": {"type": "object"},
        "then": {
            "properties": {"expression": _EXPRESSION},
            "required": ["expression"],
            "additionalProperties": False,
        },
    },
}


def _trigger(kind: TriggerKind, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "if": {"properties": {"on": {"const": kind.value}}, "required": ["on"]},
        "then": {
            "properties": {"on": {}, **properties},
            "required": required,
            "additionalProperties": False,
        },
    }


def _action(kind: ActionKind, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "if": {"properties": {"type": {"const": kind.value}}, "required": ["type"]},
        "then": {
            "properties": {"type": {}, **properties},
            "required": required,
            "additionalProperties": False,
        },
    }


@cache
def automation_meta_schema() -> dict[str, Any]:
    """The JSON Schema every automation document must satisfy (built once, cached)."""
    trigger = {
        "type": "object",
        "properties": {"on": {"enum": [kind.value for kind in TriggerKind]}},
        "required": ["on"],
        "allOf": [
            _trigger(TriggerKind.CREATE, {}, []),
            _trigger(TriggerKind.UPDATE, {}, []),
            _trigger(TriggerKind.DELETE, {}, []),
            _trigger(TriggerKind.FIELD_CHANGED, {"fields": _NAMES}, ["fields"]),
            _trigger(TriggerKind.CONDITION_TRUE, {"condition": _EXPRESSION}, ["condition"]),
            _trigger(
                TriggerKind.SCHEDULE,
                {"cron": {"type": "string", "minLength": 9, "maxLength": 100}},
                ["cron"],
            ),
            _trigger(
                TriggerKind.DATE,
                {
                    "field": {"type": "string", "pattern": NAME_PATTERN},
                    "offset_days": {"type": "integer", "minimum": -365, "maximum": 365},
                },
                ["field", "offset_days"],
            ),
            _trigger(
                TriggerKind.WORKFLOW,
                {
                    "events": {
                        "type": "array",
                        "items": {"enum": [e.value for e in WorkflowEvent]},
                        "minItems": 1,
                        "uniqueItems": True,
                    },
                    "states": _NAMES,
                },
                ["events"],
            ),
        ],
    }
    users = {
        "type": "object",
        "properties": {
            "ids": {"type": "array", "items": {"type": "integer", "minimum": 1}},
            "roles": {"type": "array", "items": {"type": "string", "pattern": NAME_PATTERN}},
            "fields": {"type": "array", "items": {"type": "string", "pattern": NAME_PATTERN}},
        },
        "minProperties": 1,
        "additionalProperties": False,
    }
    action = {
        "type": "object",
        "properties": {"type": {"enum": [kind.value for kind in ActionKind]}},
        "required": ["type"],
        "allOf": [
            _action(ActionKind.SET_FIELDS, {"values": {**_VALUES, "minProperties": 1}}, ["values"]),
            _action(
                ActionKind.CREATE_RECORD,
                {"object": {"type": "string", "pattern": NAME_PATTERN}, "values": _VALUES},
                ["object", "values"],
            ),
            _action(
                ActionKind.NOTIFY,
                {
                    "users": users,
                    "message": LABEL_SCHEMA,
                    "email": {"type": "boolean"},
                },
                ["users", "message"],
            ),
            _action(
                ActionKind.WEBHOOK, {"event": {"type": "string", "pattern": _EVENT}}, ["event"]
            ),
            _action(ActionKind.HOOK, {"name": {"type": "string", "pattern": _HOOK_NAME}}, ["name"]),
            _action(
                ActionKind.START_APPROVAL,
                {"flow": {"type": "string", "pattern": NAME_PATTERN}},
                ["flow"],
            ),
        ],
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Trellis automation",
        "type": "object",
        "properties": {
            "x-name": {"type": "string", "pattern": NAME_PATTERN},
            "x-label": LABEL_SCHEMA,
            "x-description": LABEL_SCHEMA,
            "object": {"type": "string", "pattern": NAME_PATTERN},
            "active": {"type": "boolean"},
            "trigger": trigger,
            "condition": _EXPRESSION,
            "actions": {"type": "array", "items": action, "minItems": 1, "maxItems": 20},
        },
        "required": ["x-name", "x-label", "object", "trigger", "actions"],
        "additionalProperties": False,
    }


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(automation_meta_schema())


def validate_automation(
    document: Any,
    objects: Mapping[str, dict[str, Any]],
    *,
    hook_names: frozenset[str] = frozenset(),
    cron_problem: Callable[[str], str | None] | None = None,
) -> list[Problem]:
    """Every problem with an automation document, each at its JSON pointer.

    ``objects`` maps object names to definitions (fields and expressions are checked
    against them), ``hook_names`` are the pack hooks registered, ``cron_problem`` says
    what is wrong with a cron expression (``None``: nothing).
    """
    if not isinstance(document, dict):
        return [Problem("", N_("an automation must be a JSON object"))]
    problems = [
        Problem(_pointer(error.absolute_path), schema_message(error))
        for error in _validator().iter_errors(document)
    ]
    if problems:
        return problems
    object_name = document["object"]
    definition = objects.get(object_name)
    if definition is None:
        return [Problem("/object", N_("unknown object %(name)s", name=repr(object_name)))]
    problems.extend(_trigger_problems(document, definition, objects, cron_problem))
    if "condition" in document:
        problems.extend(
            _condition_problems("/condition", document["condition"], definition, objects)
        )
    kind = TriggerKind(document["trigger"]["on"])
    for index, action in enumerate(document["actions"]):
        at = f"/actions/{index}"
        problems.extend(_action_problems(at, action, kind, definition, objects, hook_names))
    return problems


def _fields_of(definition: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = definition.get("properties", {})
    return properties


def _trigger_problems(
    document: dict[str, Any],
    definition: dict[str, Any],
    objects: Mapping[str, dict[str, Any]],
    cron_problem: Callable[[str], str | None] | None,
) -> Iterator[Problem]:
    trigger = document["trigger"]
    kind = TriggerKind(trigger["on"])
    fields = _fields_of(definition)
    if kind is TriggerKind.FIELD_CHANGED:
        for index, name in enumerate(trigger["fields"]):
            if name not in fields:
                yield Problem(
                    f"/trigger/fields/{index}", N_("%(name)s is not a field", name=repr(name))
                )
    elif kind is TriggerKind.CONDITION_TRUE:
        yield from _condition_problems(
            "/trigger/condition", trigger["condition"], definition, objects
        )
    elif kind is TriggerKind.SCHEDULE and cron_problem is not None:
        problem = cron_problem(trigger["cron"])
        if problem is not None:
            yield Problem("/trigger/cron", N_("not a cron schedule: %(reason)s", reason=problem))
    elif kind is TriggerKind.WORKFLOW:
        if "states" in trigger and WorkflowEvent.ENTERED_STATE not in trigger["events"]:
            yield Problem("/trigger/states", N_("states narrow the entered_state event only"))
    elif kind is TriggerKind.DATE:
        name = trigger["field"]
        if fields.get(name, {}).get("x-type") not in ("date", "datetime"):
            yield Problem("/trigger/field", N_("%(name)s is not a date field", name=repr(name)))


def _condition_problems(
    pointer: str, text: str, definition: dict[str, Any], objects: Mapping[str, dict[str, Any]]
) -> Iterator[Problem]:
    try:
        compiled = compile_expression(text, definition, dict(objects))
    except ExpressionError as exc:
        at, message, position = expression_problem(pointer, exc)
        yield Problem(at, message, (position["offset"], position["line"], position["column"]))
        return
    if compiled.type not in (BOOLEAN, NULL):
        yield Problem(
            pointer, N_("must be a condition (true or false), not %(found)s", found=compiled.type)
        )
    if compiled.uses_user:
        yield Problem(pointer, N_("an automation runs for no user: it cannot read $user"))


def _action_problems(
    at: str,
    action: dict[str, Any],
    trigger: TriggerKind,
    definition: dict[str, Any],
    objects: Mapping[str, dict[str, Any]],
    hook_names: frozenset[str],
) -> Iterator[Problem]:
    kind = ActionKind(action["type"])
    if kind is ActionKind.SET_FIELDS:
        if trigger is TriggerKind.DELETE:
            yield Problem(f"{at}/type", N_("a deleted record's fields cannot be set"))
        yield from _value_problems(
            f"{at}/values", action["values"], definition, definition, objects
        )
    elif kind is ActionKind.CREATE_RECORD:
        target = objects.get(action["object"])
        if target is None:
            yield Problem(
                f"{at}/object", N_("unknown object %(name)s", name=repr(action["object"]))
            )
        else:
            yield from _value_problems(
                f"{at}/values", action["values"], target, definition, objects
            )
    elif kind is ActionKind.NOTIFY:
        fields = _fields_of(definition)
        for index, name in enumerate(action["users"].get("fields", [])):
            if name != "owner_id" and fields.get(name, {}).get("x-type") != "user":
                yield Problem(
                    f"{at}/users/fields/{index}",
                    N_("%(name)s is not a user field", name=repr(name)),
                )
    elif kind is ActionKind.HOOK:
        if action["name"] not in hook_names:
            yield Problem(
                f"{at}/name", N_("no pack hook is named %(name)s", name=repr(action["name"]))
            )
    elif kind is ActionKind.START_APPROVAL and trigger is TriggerKind.WORKFLOW:
        yield Problem(
            f"{at}/type",
            N_("an automation on workflow events cannot start an approval (it would loop)"),
        )


def _value_problems(
    at: str,
    values: dict[str, Any],
    target: dict[str, Any],
    source: dict[str, Any],
    objects: Mapping[str, dict[str, Any]],
) -> Iterator[Problem]:
    """Each value names a writable field of ``target``; an expression reads ``source``."""
    fields = _fields_of(target)
    for name, value in values.items():
        pointer = f"{at}/{name}"
        prop = fields.get(name)
        if prop is None or name in SYSTEM_COLUMNS:
            yield Problem(pointer, N_("%(name)s is not a field", name=repr(name)))
            continue
        if prop.get("x-type") in ("formula", "rollup", "autonumber"):
            yield Problem(pointer, N_("%(name)s is computed; it cannot be set", name=repr(name)))
            continue
        if isinstance(value, dict):
            try:
                compile_expression(value["expression"], source, dict(objects))
            except ExpressionError as exc:
                where, message, position = expression_problem(f"{pointer}/expression", exc)
                yield Problem(
                    where, message, (position["offset"], position["line"], position["column"])
                )


# --- decisions -------------------------------------------------------------------------


@dataclass(frozen=True)
class Automation:
    """An automation document, read: what the runtime asks of it."""

    name: str
    version: int
    document: dict[str, Any]

    @property
    def object_name(self) -> str:
        """The object whose records it acts on."""
        return str(self.document["object"])

    @property
    def trigger(self) -> dict[str, Any]:
        """The trigger as written."""
        trigger: dict[str, Any] = self.document["trigger"]
        return trigger

    @property
    def kind(self) -> TriggerKind:
        """When it runs."""
        return TriggerKind(self.trigger["on"])

    @property
    def active(self) -> bool:
        """Inactive automations are kept but never run."""
        return bool(self.document.get("active", True))

    @property
    def condition(self) -> str | None:
        """The expression a record must meet (any trigger), if there is one."""
        return self.document.get("condition")

    @property
    def actions(self) -> list[dict[str, Any]]:
        """The actions, in order."""
        actions: list[dict[str, Any]] = self.document["actions"]
        return actions

    def actions_of(self, *, before_save: bool) -> list[dict[str, Any]]:
        """``set_fields`` (run before the record is validated and saved), or the others."""
        return [a for a in self.actions if (a["type"] == ActionKind.SET_FIELDS) is before_save]


def changed_fields(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> set[str]:
    """The fields whose value differs between ``old`` and ``new`` (every field set in
    ``new`` when there is no ``old``)."""
    if old is None:
        return {name for name, value in new.items() if value is not None}
    return {name for name in set(old) | set(new) if old.get(name) != new.get(name)}


def write_matches(
    automation: Automation,
    action: str,
    changed: set[str],
    condition_before: bool | None,
    condition_after: bool | None,
) -> bool:
    """Whether a write fires the automation's trigger (its ``condition`` aside).

    ``action`` is the write's (create, update, delete); ``changed`` the fields it changes;
    ``condition_before`` / ``condition_after`` the trigger condition's value on the record
    before and after the write (a ``condition_true`` trigger only: an edge, false or
    absent before and true after).
    """
    kind = automation.kind
    if kind is TriggerKind.CREATE:
        return action == "create"
    if kind is TriggerKind.UPDATE:
        return action == "update" and bool(changed)
    if kind is TriggerKind.DELETE:
        return action == "delete"
    if kind is TriggerKind.FIELD_CHANGED:
        return action in ("create", "update") and bool(changed & set(automation.trigger["fields"]))
    if kind is TriggerKind.CONDITION_TRUE:
        return (
            action in ("create", "update")
            and condition_before is not True
            and (condition_after is True)
        )
    return False


def due_date(value: dt.date, offset_days: int) -> dt.date:
    """The day a date trigger fires for a record whose date field holds ``value``."""
    return value + dt.timedelta(days=offset_days)


def field_date_window(
    today: dt.date, offset_days: int, catch_up_days: int
) -> tuple[dt.date, dt.date]:
    """The field values whose due day is today or one of the ``catch_up_days`` before
    (a scheduler that was down catches up; run keys keep each firing to once)."""
    latest = today - dt.timedelta(days=offset_days)
    return latest - dt.timedelta(days=catch_up_days), latest
