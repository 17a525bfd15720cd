"""Workflow documents: a state machine over one picklist field of an object. Pure.

A workflow names its object and status field, its states (each with a bilingual label, a
category and the fields locked in it) and its transitions (from one or several states to
one, who may fire them, a guard, an optional required comment, and actions). It is a
versioned document like an object definition or a role (``runtime/versioning.py``).

```json
{"x-name": "order_flow", "x-label": {"en": "Order", "zh-CN": "订单"},
 "object": "sales_order", "status_field": "status",
 "states": [{"name": "draft", "label": {"en": "Draft", "zh-CN": "草稿"}, "category": "draft"},
            {"name": "submitted", "label": {"en": "Submitted", "zh-CN": "已提交"},
             "category": "in_progress", "locked": ["dealer"]}],
 "transitions": [{"name": "submit", "from": ["draft"], "to": "submitted",
                  "label": {"en": "Submit", "zh-CN": "提交"}, "roles": ["dealer_admin"],
                  "guard": "total_amount > 0", "comment": "optional",
                  "actions": [{"type": "set_fields", "fields": {"internal_notes": "sent"}}]}]}
```

``validate_workflow`` returns every problem at its JSON pointer (guards are checked with
the expression checker against the object, with the character where they go wrong);
``parse_workflow`` turns a valid document into the dataclasses the engine reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator

from trellis.platform.expressions import ExpressionError
from trellis.platform.messages import N_, schema_message
from trellis.platform.metadata.computed import compile_at, expression_problem
from trellis.platform.metadata.definition import Problem, _pointer
from trellis.platform.metadata.fieldtypes import LABEL_SCHEMA
from trellis.platform.metadata.names import NAME_PATTERN
from trellis.platform.workflow.approval import (
    ApprovalFlow,
    approval_schema,
    flow_expressions,
    flow_problems,
    parse_flow,
)

# Records that have no status yet are mapped by this key of ``x-state-map``.
NO_STATE = ""


class Category(StrEnum):
    """What a state means to people and pages (the colour of its badge)."""

    DRAFT = "draft"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    CANCELLED = "cancelled"


class CommentRule(StrEnum):
    """Whether firing a transition takes a comment."""

    NONE = "none"
    OPTIONAL = "optional"
    REQUIRED = "required"


class ActionType(StrEnum):
    """What a transition may do besides moving the status. Only ``set_fields`` runs today;
    the automation actions join this list as they are wired (the document format is ready)."""

    SET_FIELDS = "set_fields"


# Action kinds the automation actions will bring; a document naming one is refused for now.
PLANNED_ACTIONS = ("send_notification", "call_webhook", "create_record", "run_hook")

# A label people read in both languages the platform ships (English and Simplified Chinese).
BILINGUAL: dict[str, Any] = {**LABEL_SCHEMA, "required": ["en", "zh-CN"]}


@cache
def workflow_meta_schema() -> dict[str, Any]:
    """The JSON Schema every workflow document must satisfy (built once)."""
    name = {"type": "string", "pattern": NAME_PATTERN}
    names = {"type": "array", "items": name, "uniqueItems": True}
    state = {
        "type": "object",
        "properties": {
            "name": name,
            "label": BILINGUAL,
            "category": {"enum": [c.value for c in Category]},
            "locked": names,
            "initial": {"type": "boolean"},
        },
        "required": ["name", "label", "category"],
        "additionalProperties": False,
    }
    action = {
        "type": "object",
        "properties": {
            "type": {"type": "string"},
            "fields": {
                "type": "object",
                "propertyNames": {"pattern": NAME_PATTERN},
                "minProperties": 1,
            },
        },
        "required": ["type"],
    }
    transition = {
        "type": "object",
        "properties": {
            "name": name,
            "label": BILINGUAL,
            "from": {"oneOf": [name, {**names, "minItems": 1}]},
            "to": name,
            "roles": names,
            "guard": {"type": "string", "minLength": 1, "maxLength": 2000},
            "guard_message": BILINGUAL,
            "comment": {"enum": [c.value for c in CommentRule]},
            "actions": {"type": "array", "items": action, "maxItems": 20},
            "approval": approval_schema(),
        },
        "required": ["name", "label", "from", "to"],
        "additionalProperties": False,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Trellis workflow",
        "type": "object",
        "properties": {
            "x-name": name,
            "x-label": BILINGUAL,
            "x-description": LABEL_SCHEMA,
            "object": name,
            "status_field": name,
            "states": {"type": "array", "items": state, "minItems": 1, "maxItems": 50},
            "transitions": {"type": "array", "items": transition, "maxItems": 200},
            "x-state-map": {
                "type": "object",
                "propertyNames": {"anyOf": [{"pattern": NAME_PATTERN}, {"const": NO_STATE}]},
                "additionalProperties": name,
            },
        },
        "required": ["x-name", "x-label", "object", "status_field", "states", "transitions"],
        "additionalProperties": False,
    }


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(workflow_meta_schema())


@dataclass(frozen=True)
class State:
    """One state: its name, label, category and the fields no one may change in it."""

    name: str
    label: dict[str, str]
    category: Category
    locked: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Action:
    """Something a transition does in its own transaction (``fields``: for ``set_fields``)."""

    type: ActionType
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Transition:
    """A named move from one of several states to one, and who may make it."""

    name: str
    label: dict[str, str]
    sources: tuple[str, ...]
    target: str
    # Empty: anyone who may update the record. Whoever fires a transition must always be
    # able to update the record (its scope), whatever the roles say.
    roles: frozenset[str] = frozenset()
    guard: str | None = None
    guard_message: dict[str, str] | None = None
    comment: CommentRule = CommentRule.NONE
    actions: tuple[Action, ...] = ()
    # Firing it submits the record for this approval (``platform/workflow/approval.py``).
    approval: ApprovalFlow | None = None


@dataclass(frozen=True)
class Workflow:
    """A parsed, valid workflow document."""

    name: str
    label: dict[str, str]
    object_name: str
    status_field: str
    states: tuple[State, ...]
    transitions: tuple[Transition, ...]
    initial_name: str
    state_map: dict[str, str] = field(default_factory=dict)
    version: int = 0

    @property
    def initial(self) -> State:
        """Where every new record starts: the state marked initial, else the first."""
        return next(s for s in self.states if s.name == self.initial_name)

    def state(self, name: str | None) -> State | None:
        """The state named ``name``; ``None`` when it is not one of this workflow's."""
        return next((s for s in self.states if s.name == name), None)

    def transition(self, name: str) -> Transition | None:
        """The transition named ``name``, or ``None``."""
        return next((t for t in self.transitions if t.name == name), None)

    def transitions_from(self, state: str | None) -> list[Transition]:
        """The transitions that may leave ``state``, in document order."""
        return [t for t in self.transitions if state in t.sources]

    def locked_in(self, state: str | None) -> frozenset[str]:
        """The fields no write may change while a record is in ``state``."""
        found = self.state(state)
        return found.locked if found is not None else frozenset()

    def flow_pending_in(self, state: str | None) -> ApprovalFlow | None:
        """The approval whose requests wait in ``state``, if any."""
        return next(
            (t.approval for t in self.transitions if t.approval and t.target == state), None
        )

    @property
    def has_approvals(self) -> bool:
        """Whether any transition submits for approval."""
        return any(t.approval for t in self.transitions)

    @property
    def state_names(self) -> list[str]:
        """Every state's name, in order."""
        return [s.name for s in self.states]


def parse_workflow(document: dict[str, Any], version: int = 0) -> Workflow:
    """A valid workflow document as the engine's dataclasses."""
    states = tuple(
        State(s["name"], dict(s["label"]), Category(s["category"]), frozenset(s.get("locked", [])))
        for s in document["states"]
    )
    transitions = tuple(
        Transition(
            name=t["name"],
            label=dict(t["label"]),
            sources=tuple([t["from"]] if isinstance(t["from"], str) else t["from"]),
            target=t["to"],
            roles=frozenset(t.get("roles", [])),
            guard=t.get("guard"),
            guard_message=t.get("guard_message"),
            comment=CommentRule(t.get("comment", CommentRule.NONE)),
            actions=tuple(
                Action(ActionType(a["type"]), dict(a.get("fields", {})))
                for a in t.get("actions", [])
            ),
            approval=parse_flow(t) if "approval" in t else None,
        )
        for t in document["transitions"]
    )
    marked = [s["name"] for s in document["states"] if s.get("initial")]
    return Workflow(
        name=document["x-name"],
        label=dict(document["x-label"]),
        object_name=document["object"],
        status_field=document["status_field"],
        states=states,
        transitions=transitions,
        initial_name=marked[0] if marked else states[0].name,
        state_map=dict(document.get("x-state-map", {})),
        version=version,
    )


def validate_workflow(
    document: Any,
    objects: dict[str, dict[str, Any]],
    roles: set[str] | frozenset[str],
) -> list[Problem]:
    """Every problem with a workflow document, each at its JSON pointer.

    ``objects`` maps object names to their definitions; ``roles`` are the role names.
    """
    if not isinstance(document, dict):
        return [Problem("", N_("a workflow must be a JSON object"))]
    problems = [
        Problem(_pointer(error.absolute_path), schema_message(error))
        for error in _validator().iter_errors(document)
    ]
    if problems:
        return problems
    definition = objects.get(document["object"])
    if definition is None:
        return [Problem("/object", N_("unknown object %(name)s", name=repr(document["object"])))]
    properties: dict[str, Any] = definition.get("properties", {})
    status = properties.get(document["status_field"])
    if not isinstance(status, dict) or status.get("x-type") != "picklist":
        return [
            Problem(
                "/status_field",
                N_(
                    "%(name)s is not a picklist field of %(object)s",
                    name=repr(document["status_field"]),
                    object=document["object"],
                ),
            )
        ]
    problems.extend(_state_problems(document, properties, status))
    problems.extend(_transition_problems(document, definition, objects, roles))
    problems.extend(_map_problems(document))
    return problems


def _state_problems(
    document: dict[str, Any], properties: dict[str, Any], status: dict[str, Any]
) -> list[Problem]:
    problems: list[Problem] = []
    options = list(status.get("enum", []))
    seen: set[str] = set()
    for index, state in enumerate(document["states"]):
        at = f"/states/{index}"
        name = state["name"]
        if name in seen:
            problems.append(Problem(f"{at}/name", N_("another state is named %(name)s", name=name)))
        seen.add(name)
        if name not in options:
            problems.append(
                Problem(
                    f"{at}/name",
                    N_(
                        "%(name)s is not an option of %(field)s",
                        name=repr(name),
                        field=document["status_field"],
                    ),
                )
            )
        for position, locked in enumerate(state.get("locked", [])):
            if locked not in properties:
                problems.append(
                    Problem(
                        f"{at}/locked/{position}", N_("%(name)s is not a field", name=repr(locked))
                    )
                )
    initials = [i for i, s in enumerate(document["states"]) if s.get("initial")]
    if len(initials) > 1:
        problems.append(
            Problem(f"/states/{initials[1]}/initial", N_("only one state may be initial"))
        )
    default = status.get("default")
    initial = document["states"][initials[0] if initials else 0]["name"]
    if default is not None and default != initial:
        problems.append(
            Problem(
                "/status_field",
                N_(
                    "the field's default %(default)s must be the initial state %(initial)s",
                    default=repr(default),
                    initial=repr(initial),
                ),
            )
        )
    return problems


def _transition_problems(
    document: dict[str, Any],
    definition: dict[str, Any],
    objects: dict[str, dict[str, Any]],
    roles: set[str] | frozenset[str],
) -> list[Problem]:
    problems: list[Problem] = []
    states = {s["name"] for s in document["states"]}
    properties: dict[str, Any] = definition.get("properties", {})
    seen: set[str] = set()
    for index, transition in enumerate(document["transitions"]):
        at = f"/transitions/{index}"
        if transition["name"] in seen:
            problems.append(
                Problem(
                    f"{at}/name",
                    N_("another transition is named %(name)s", name=transition["name"]),
                )
            )
        seen.add(transition["name"])
        sources = transition["from"]
        pointers = (
            [(f"{at}/from", sources)]
            if isinstance(sources, str)
            else [(f"{at}/from/{i}", s) for i, s in enumerate(sources)]
        )
        for pointer, source in [*pointers, (f"{at}/to", transition["to"])]:
            if source not in states:
                problems.append(Problem(pointer, N_("%(name)s is not a state", name=repr(source))))
        for position, role in enumerate(transition.get("roles", [])):
            if role not in roles:
                problems.append(
                    Problem(f"{at}/roles/{position}", N_("unknown role %(name)s", name=repr(role)))
                )
        if "guard" in transition:
            problems.extend(
                _guard_problems(f"{at}/guard", transition["guard"], definition, objects)
            )
        for position, action in enumerate(transition.get("actions", [])):
            problems.extend(
                _action_problems(f"{at}/actions/{position}", action, document, properties)
            )
        if "approval" in transition:
            problems.extend(_approval_problems(f"{at}/approval", transition, document, definition,
                                               objects, roles))  # fmt: skip
    return problems


def _approval_problems(
    at: str,
    transition: dict[str, Any],
    document: dict[str, Any],
    definition: dict[str, Any],
    objects: dict[str, dict[str, Any]],
    roles: set[str] | frozenset[str],
) -> list[Problem]:
    named = {t["name"]: t for t in document["transitions"]}
    found = flow_problems(at, transition, named, definition.get("properties", {}), roles)
    problems = [Problem(pointer, message) for pointer, message in found]
    pending = transition["to"]
    others = [
        t["name"]
        for t in document["transitions"]
        if t is not transition and "approval" in t and t["to"] == pending
    ]
    if others:
        problems.append(
            Problem(
                f"{at}",
                N_(
                    "%(other)s already submits for approval into %(state)s",
                    other=repr(others[0]),
                    state=repr(pending),
                ),
            )
        )
    for pointer, text in flow_expressions(at, transition):
        problems.extend(_guard_problems(pointer, text, definition, objects))
    return problems


def _guard_problems(
    pointer: str, text: str, definition: dict[str, Any], objects: dict[str, dict[str, Any]]
) -> list[Problem]:
    try:
        compiled = compile_at(text, definition, objects)
    except ExpressionError as exc:
        at, message, position = expression_problem(pointer, exc)
        return [Problem(at, message, (position["offset"], position["line"], position["column"]))]
    if compiled.type not in ("boolean", "null"):
        return [
            Problem(
                pointer,
                N_("must be a condition (true or false), not %(found)s", found=compiled.type),
            )
        ]
    return []


def _action_problems(
    at: str, action: dict[str, Any], document: dict[str, Any], properties: dict[str, Any]
) -> list[Problem]:
    kind = action["type"]
    if kind in PLANNED_ACTIONS:
        return [
            Problem(
                f"{at}/type",
                N_(
                    "%(kind)s actions are not available in workflows yet; use set_fields",
                    kind=repr(kind),
                ),
            )
        ]
    if kind != ActionType.SET_FIELDS:
        return [Problem(f"{at}/type", N_("unknown action type %(kind)s", kind=repr(kind)))]
    if "fields" not in action:
        return [Problem(f"{at}/fields", N_("set_fields needs the fields to set"))]
    problems = []
    for name in action["fields"]:
        prop = properties.get(name)
        if name == document["status_field"]:
            problems.append(
                Problem(f"{at}/fields/{name}", N_("the status moves with the transition itself"))
            )
        elif not isinstance(prop, dict):
            problems.append(
                Problem(f"{at}/fields/{name}", N_("%(name)s is not a field", name=repr(name)))
            )
        elif prop.get("x-type") in ("formula", "rollup", "autonumber") or prop.get("readOnly"):
            problems.append(Problem(f"{at}/fields/{name}", N_("is read-only")))
    return problems


def _map_problems(document: dict[str, Any]) -> list[Problem]:
    states = {s["name"] for s in document["states"]}
    problems = []
    for old, new in document.get("x-state-map", {}).items():
        at = f"/x-state-map/{old}"
        if old in states:
            problems.append(
                Problem(at, N_("%(name)s is still a state; map only removed ones", name=repr(old)))
            )
        if new not in states:
            problems.append(Problem(at, N_("%(name)s is not a state", name=repr(new))))
    return problems
