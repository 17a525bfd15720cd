"""The pure workflow engine: documents checked with pointers, decisions, state mapping."""

from __future__ import annotations

import copy
from typing import Any

from tests.factories import definition, field
from trellis.platform.workflow import (
    Refusal,
    available,
    decide,
    locked_changes,
    migrate_states,
    parse_workflow,
    status_problem,
    validate_workflow,
)

LABEL = {"en": "x", "zh-CN": "某"}
TICKET = definition(
    "ticket",
    {
        "status": field("picklist", enum=["open", "working", "closed"], default="open"),
        "title": field("text"),
        "hours": field("integer"),
    },
)
OBJECTS = {"ticket": TICKET}


def document(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "x-name": "ticket_flow",
        "x-label": LABEL,
        "object": "ticket",
        "status_field": "status",
        "states": [
            {"name": "open", "label": LABEL, "category": "draft"},
            {"name": "working", "label": LABEL, "category": "in_progress", "locked": ["title"]},
            {"name": "closed", "label": LABEL, "category": "done"},
        ],
        "transitions": [
            {"name": "start", "label": LABEL, "from": "open", "to": "working", "roles": ["agent"]},
            {"name": "close", "label": LABEL, "from": ["open", "working"], "to": "closed",
             "guard": "hours > 0", "comment": "required"},
        ],
    }  # fmt: skip
    doc.update(changes)
    return doc


def pointers(doc: dict[str, Any]) -> set[str]:
    return {p.pointer for p in validate_workflow(doc, OBJECTS, {"agent"})}


def test_a_valid_document_has_no_problems() -> None:
    assert pointers(document()) == set()


def test_problems_come_with_their_pointers() -> None:
    doc = document()
    doc["states"][0]["label"] = {"en": "only English"}
    assert pointers(doc) == {"/states/0/label"}
    doc = document(status_field="title")
    assert pointers(doc) == {"/status_field"}
    doc = document()
    doc["states"].append({"name": "lost", "label": LABEL, "category": "cancelled"})
    doc["transitions"][0]["to"] = "nowhere"
    doc["transitions"][0]["roles"] = ["stranger"]
    doc["transitions"][1]["guard"] = "hours +"
    doc["transitions"][1]["actions"] = [{"type": "call_webhook"}]
    assert pointers(doc) == {
        "/states/3/name",
        "/transitions/0/to",
        "/transitions/0/roles/0",
        "/transitions/1/guard",
        "/transitions/1/actions/0/type",
    }
    doc = document()
    doc["states"][1]["initial"] = True  # the field's default is open: they must agree
    assert pointers(doc) == {"/status_field"}
    assert pointers(document(**{"x-state-map": {"open": "closed"}})) == {"/x-state-map/open"}


def test_decisions() -> None:
    workflow = parse_workflow(document())
    assert workflow.initial_name == "open"
    assert [t.name for t in available(workflow, "open", ["agent"], False)] == ["start", "close"]
    assert [t.name for t in available(workflow, "open", [], False)] == ["close"]
    assert [t.name for t in available(workflow, "closed", [], True)] == []

    def refusal(name: str, state: str, roles: list[str], comment: str | None, guard: bool) -> Any:
        return decide(workflow, name, state, roles, False, comment, lambda _g: guard).refusal

    assert refusal("start", "open", ["agent"], None, True) is None
    assert refusal("start", "open", [], None, True) is Refusal.FORBIDDEN
    assert refusal("start", "working", ["agent"], None, True) is Refusal.NOT_FROM_HERE
    assert refusal("close", "working", [], "  ", True) is Refusal.COMMENT_REQUIRED
    assert refusal("close", "working", [], "done", False) is Refusal.GUARD_FALSE
    assert refusal("close", "working", [], "done", True) is None
    assert refusal("fly", "open", [], None, True) is Refusal.UNKNOWN


def test_plain_writes_and_locks() -> None:
    workflow = parse_workflow(document())
    assert status_problem(workflow, True, None, None) is None
    assert status_problem(workflow, True, None, "open") is None
    assert status_problem(workflow, True, None, "closed") is not None
    assert status_problem(workflow, False, "open", "open") is None
    assert status_problem(workflow, False, "open", "closed") is not None
    assert locked_changes(workflow, "working", ["hours", "title"]) == ["title"]
    assert locked_changes(workflow, "open", ["title"]) == []


def test_state_mapping() -> None:
    doc = document()
    doc["states"] = [s for s in doc["states"] if s["name"] != "working"]
    doc["transitions"] = [copy.deepcopy(doc["transitions"][1])]
    doc["transitions"][0]["from"] = ["open"]
    migration = migrate_states(parse_workflow(doc), ["open", "working", None])
    assert migration.moves == {} and migration.unmapped == ["working", None]
    doc["x-state-map"] = {"working": "open", "": "open"}
    assert pointers(doc) == set()
    migration = migrate_states(parse_workflow(doc), ["open", "working", None])
    assert migration.moves == {"working": "open", None: "open"} and migration.unmapped == []
