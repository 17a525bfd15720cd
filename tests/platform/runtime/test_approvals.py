"""Approval flows over HTTP on a small expense object: steps in order with a condition and
a branch, 或签 / 会签 / M of N / 依次, rejection to the end, to the submitter and back to a
step, handover, added signers, recall, read-only while pending on every write path,
out-of-office delegates, deadlines with time travel, and two approvers racing."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.conftest import Api
from tests.factories import definition, field
from trellis.extensions import Database
from trellis.platform.runtime.identity.tokens import issue_token
from trellis.platform.runtime.workflow.approvals import ApprovalService

LABEL = {"en": "x", "zh-CN": "x"}
PASSWORD = "correct horse battery"


def expense() -> dict[str, Any]:
    return definition(
        "expense",
        {
            "title": field("text", "Title"),
            "amount": field("currency", "Amount"),
            "note": field("text", "Note"),
            "status": field(
                "picklist",
                "Status",
                enum=["draft", "pending", "approved", "rejected"],
                default="draft",
            ),
            "reviewer": field("user", "Reviewer"),
        },
        required=["title"],
        **{"x-title-field": "title"},
    )


def step(name: str, approvers: list[dict[str, Any]], **more: Any) -> dict[str, Any]:
    return {"name": name, "label": {"en": name.title(), "zh-CN": name}, "approvers": approvers,
            **more}  # fmt: skip


def workflow(steps: list[dict[str, Any]], **approval: Any) -> dict[str, Any]:
    return {
        "x-name": "expense_flow",
        "x-label": LABEL,
        "object": "expense",
        "status_field": "status",
        "states": [
            {"name": "draft", "label": LABEL, "category": "draft"},
            {"name": "pending", "label": LABEL, "category": "in_progress", "locked": ["amount"]},
            {"name": "approved", "label": LABEL, "category": "done"},
            {"name": "rejected", "label": LABEL, "category": "cancelled"},
        ],
        "transitions": [
            {"name": "submit", "from": "draft", "to": "pending", "label": LABEL,
             "approval": {"approved": "approve", "rejected": "reject", "returned": "rework",
                          "steps": steps, **approval}},
            {"name": "approve", "from": "pending", "to": "approved", "label": LABEL,
             "roles": ["nobody"]},
            {"name": "reject", "from": "pending", "to": "rejected", "label": LABEL,
             "roles": ["nobody"]},
            {"name": "rework", "from": "pending", "to": "draft", "label": LABEL,
             "roles": ["nobody"]},
        ],
    }  # fmt: skip


ROLE = {"objects": {"expense": {"read": "all", "create": "all", "update": "all"}}}


@pytest.fixture
def people(app: Flask, database: Database, api: Api) -> dict[str, Api]:
    """An admin, a submitter, a manager over the submitter, three in role 'board'."""
    assert api.post("/objects", expense()).status_code == 201
    for role in ("clerk", "board", "nobody"):
        body = {"x-name": role, "x-label": {"en": role, "zh-CN": role}, **ROLE}
        assert api.post("/roles", body).status_code == 201, body
    users: dict[str, Api] = {"admin": api}
    ids: dict[str, int] = {}
    for name, roles in [("boss", ["clerk"]), ("sam", ["clerk"]), ("b1", ["board"]),
                        ("b2", ["board"]), ("b3", ["board"]), ("kim", ["clerk"])]:  # fmt: skip
        body = {"email": f"{name}@example.com", "password": PASSWORD, "name": name.title(),
                "roles": roles}  # fmt: skip
        if name == "sam":
            body["manager"] = ids["boss"]
        created = api.post("/users", body)
        assert created.status_code == 201, created.get_json()
        ids[name] = created.get_json()["id"]
        with database.session() as session:
            token = issue_token(session, body["email"], name="tests")
            session.commit()
        users[name] = Api(app.test_client(), token)
    users["ids"] = ids  # type: ignore[assignment]
    return users


def put_flow(api: Api, steps: list[dict[str, Any]], **approval: Any) -> None:
    document = workflow(steps, **approval)
    existing = api.get("/workflows/expense_flow")
    if existing.status_code == 200:
        response = api.put("/workflows/expense_flow", document)
    else:
        response = api.post("/workflows", document)
    assert response.status_code in (200, 201), response.get_json()


def new_expense(api: Api, amount: float = 100, **more: Any) -> int:
    response = api.post("/records/expense", {"title": "Trip", "amount": amount, **more})
    assert response.status_code == 201, response.get_json()
    return int(response.get_json()["id"])


def submit(api: Api, record_id: int, **body: Any) -> Any:
    return api.post(f"/records/expense/{record_id}/approval", body)


def state(api: Api, record_id: int) -> dict[str, Any]:
    response = api.get(f"/records/expense/{record_id}/approval")
    assert response.status_code == 200, response.get_json()
    return dict(response.get_json())


def my_task(api: Api, record_id: int) -> int:
    items = api.get("/approvals/inbox", query_string={"object": "expense"}).get_json()["items"]
    found = [i["id"] for i in items if i["record_id"] == record_id]
    assert found, items
    return int(found[0])


def act(api: Api, task: int, action: str, **body: Any) -> Any:
    return api.post(f"/approvals/{task}/{action}", body)


def status(api: Api, record_id: int) -> str:
    return str(api.get(f"/records/expense/{record_id}").get_json()["status"])


def test_steps_in_order_with_a_condition_and_history(people: dict[str, Api]) -> None:
    admin, sam, boss, b1 = people["admin"], people["sam"], people["boss"], people["b1"]
    put_flow(admin, [step("manager", [{"manager": 1}]),
                     step("board", [{"role": "board"}], when="amount > 1000")])  # fmt: skip
    small = new_expense(sam, 100)
    submitted = submit(sam, small, comment="taxi")
    assert submitted.status_code == 201, submitted.get_json()
    assert status(sam, small) == "pending"
    assert submitted.get_json()["request"]["step"] == "manager"
    # The wrong approver is refused; the record is read-only while pending.
    task = my_task(boss, small)
    assert act(b1, task, "approve").status_code == 403
    assert sam.patch(f"/records/expense/{small}", {"note": "x", "version": 2}).status_code == 409
    assert sam.post(f"/records/expense/{small}/transitions/rework").status_code == 409
    assert act(boss, task, "approve", comment="ok").status_code == 200
    assert act(boss, task, "approve").status_code == 409  # a double decision
    # Amount ≤ 1000: the board step is skipped, the request approved, approve fired.
    assert status(sam, small) == "approved"
    done = state(sam, small)
    assert done["request"]["status"] == "approved"
    actions = [h["action"] for h in done["history"]]
    assert actions[0] == "submitted" and "step_skipped" in actions and actions[-1] == "completed"
    approved = next(h for h in done["history"] if h["action"] == "approved")
    assert approved["by"]["name"] == "Boss" and approved["comment"] == "ok"
    big = new_expense(sam, 5000)
    assert submit(sam, big).status_code == 201
    assert act(boss, my_task(boss, big), "approve").status_code == 200
    assert state(sam, big)["request"]["step"] == "board"
    assert act(b1, my_task(b1, big), "approve").status_code == 200  # 或签: one is enough
    assert status(sam, big) == "approved"
    assert people["b2"].get("/approvals/inbox").get_json()["count"] == 0


def test_quorum_counts_exactly_and_rejection_returns(people: dict[str, Api]) -> None:
    admin, sam, boss = people["admin"], people["sam"], people["boss"]
    b1, b2, b3 = people["b1"], people["b2"], people["b3"]
    board = step("board", [{"role": "board"}], mode="quorum", quorum={"count": 2})
    put_flow(admin, [step("manager", [{"manager": 1}]), board])
    record = new_expense(sam, 10)
    assert submit(sam, record).status_code == 201
    assert act(boss, my_task(boss, record), "approve").status_code == 200
    assert act(b1, my_task(b1, record), "approve").status_code == 200
    assert state(sam, record)["request"]["status"] == "pending"
    # A rejection back to an earlier step (退回): the manager decides again.
    refused = act(b2, my_task(b2, record), "reject", to="nowhere")
    assert refused.status_code == 422
    assert act(b2, my_task(b2, record), "reject", to="manager").status_code == 200
    # 2 of 3 still reachable (b1 yes, b2 no, b3 open): nothing moves yet.
    assert state(sam, record)["request"]["step"] == "board"
    assert act(b3, my_task(b3, record), "reject", to="manager").status_code == 200
    now = state(sam, record)
    assert now["request"]["step"] == "manager" and now["request"]["round"] == 1
    # Back at the manager, who sends it to the submitter for rework: draft again.
    assert act(boss, my_task(boss, record), "reject", to="submitter").status_code == 200
    assert status(sam, record) == "draft"
    assert state(sam, record)["request"]["status"] == "returned"
    # Reworked and resubmitted: a new request.
    version = sam.get(f"/records/expense/{record}").get_json()["version"]
    reworked = sam.patch(f"/records/expense/{record}", {"note": "fixed", "version": version})
    assert reworked.status_code == 200, reworked.get_json()
    assert submit(sam, record).status_code == 201


def test_all_and_sequential_and_reject_to_end(people: dict[str, Api]) -> None:
    admin, sam, b1, b2, b3 = (people[k] for k in ("admin", "sam", "b1", "b2", "b3"))
    put_flow(admin, [step("board", [{"role": "board"}], mode="sequential")])
    record = new_expense(sam)
    assert submit(sam, record).status_code == 201
    tasks = state(sam, record)["tasks"]
    assert [t["status"] for t in tasks] == ["pending", "waiting", "waiting"]
    waiting = tasks[1]["id"]
    assert act(b2, waiting, "approve").status_code == 409  # not b2's turn yet
    assert act(b1, tasks[0]["id"], "approve").status_code == 200
    assert act(b2, waiting, "approve").status_code == 200
    assert act(b3, tasks[2]["id"], "reject", comment="no budget").status_code == 200
    assert status(sam, record) == "rejected"
    history = state(sam, record)["history"]
    assert any(h["action"] == "rejected" and h["comment"] == "no budget" for h in history)


def test_handover_add_signer_and_recall(people: dict[str, Api]) -> None:
    admin, sam, boss, kim, b1 = (people[k] for k in ("admin", "sam", "boss", "kim", "b1"))
    ids: dict[str, int] = people["ids"]  # type: ignore[assignment]
    put_flow(admin, [step("manager", [{"manager": 1}])])
    recalled = new_expense(sam)
    assert submit(sam, recalled).status_code == 201
    assert boss.post(f"/records/expense/{recalled}/approval/recall").status_code == 403
    assert sam.post(f"/records/expense/{recalled}/approval/recall").status_code == 200
    assert status(sam, recalled) == "draft"
    record = new_expense(sam)
    assert submit(sam, record).status_code == 201
    task = my_task(boss, record)
    # 转交 to Kim, who adds B1 after herself (加签).
    assert act(boss, task, "handover", user=ids["boss"]).status_code == 422
    assert act(boss, task, "handover", user="kim@example.com").status_code == 200
    assert act(boss, task, "approve").status_code == 403
    assert sam.post(f"/records/expense/{record}/approval/recall").status_code == 409
    assert act(kim, task, "add_signer", user=ids["b1"], position="after").status_code == 200
    assert act(kim, task, "approve").status_code == 200
    assert status(sam, record) == "pending"  # B1 signs after Kim
    assert act(b1, my_task(b1, record), "approve").status_code == 200
    assert status(sam, record) == "approved"
    actions = [h["action"] for h in state(sam, record)["history"]]
    assert "handed_over" in actions and "signer_added" in actions


def test_pending_records_are_read_only_on_every_path(
    app: Flask, database: Database, people: dict[str, Api]
) -> None:
    admin, sam, boss = people["admin"], people["sam"], people["boss"]
    put_flow(admin, [step("manager", [{"manager": 1}], editable=["note"])])
    record = new_expense(sam)
    assert submit(sam, record).status_code == 201
    version = sam.get(f"/records/expense/{record}").get_json()["version"]
    refused = sam.patch(f"/records/expense/{record}", {"note": "x", "version": version})
    assert refused.status_code == 409
    assert refused.get_json()["error"]["code"] == "awaiting_approval"
    assert admin.delete(f"/records/expense/{record}").status_code == 409
    # The step opens "note" to its approver, and only that field.
    assert (
        boss.patch(f"/records/expense/{record}", {"note": "seen", "version": version}).status_code
        == 200
    )
    assert (
        boss.patch(f"/records/expense/{record}", {"title": "t", "version": version + 1}).status_code
        == 409
    )
    with app.app_context(), database.session() as session:
        from trellis.platform.runtime.records import RecordService

        registry = app.extensions["trellis.registry"]
        registry.ensure_current(session)
        with pytest.raises(Exception, match="awaiting approval"):
            RecordService(session, registry, None).update(
                "expense", record, {"note": "z", "version": version + 1}
            )


def test_out_of_office_delegates_and_deadline_escalates(
    app: Flask, database: Database, people: dict[str, Api]
) -> None:
    admin, sam, boss, kim = (people[k] for k in ("admin", "sam", "boss", "kim"))
    ids: dict[str, int] = people["ids"]  # type: ignore[assignment]
    today = dt.date.today()
    away = boss.put("/approvals/out-of-office", {"delegate": "kim@example.com",
                    "starts_on": today.isoformat(), "ends_on": today.isoformat()})  # fmt: skip
    assert away.status_code == 200 and away.get_json()["out_of_office"]["active"]
    deadline = {"days": 2, "action": "escalate", "to": {"role": "board"}}
    put_flow(admin, [step("manager", [{"manager": 1}], deadline=deadline)])
    record = new_expense(sam)
    assert submit(sam, record).status_code == 201
    task = state(sam, record)["tasks"][0]
    assert task["approver"]["id"] == ids["kim"] and task["on_behalf_of"]["id"] == ids["boss"]
    assert task["due_at"] is not None
    due = dt.datetime.fromisoformat(task["due_at"].replace("Z", "+00:00"))
    registry = app.extensions["trellis.registry"]

    def run(now: dt.datetime) -> int:
        with app.app_context(), database.write_session() as session:
            registry.ensure_current(session)
            acted = ApprovalService(session, registry, None).run_deadlines(now)
            session.commit()
            return acted

    assert run(due - dt.timedelta(minutes=1)) == 0
    # Two workers at the deadline: exactly one escalates.
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(run(due))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [0, 1]
    escalated = state(sam, record)
    assert escalated["tasks"][0]["approver"]["id"] == ids["b1"]
    assert [h["action"] for h in escalated["history"]].count("escalated") == 1
    assert kim.get("/approvals/inbox").get_json()["count"] == 0
    assert people["b1"].get("/approvals/inbox").get_json()["count"] == 1


def test_two_approvers_racing(app: Flask, database: Database, people: dict[str, Api]) -> None:
    admin, sam = people["admin"], people["sam"]
    put_flow(admin, [step("board", [{"role": "board"}], mode="quorum", quorum={"count": 2})])
    record = new_expense(sam)
    assert submit(sam, record).status_code == 201
    tasks = {t["approver"]["name"]: t["id"] for t in state(sam, record)["tasks"]}
    answers: dict[str, int] = {}

    def decide(name: str) -> None:
        client = people[name.lower()]
        answers[name] = act(client, tasks[name], "approve").status_code

    threads = [threading.Thread(target=decide, args=(n,)) for n in ("B1", "B2", "B3")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 2 of 3: exactly two votes counted, the third finds the step decided.
    assert sorted(answers.values()) == [200, 200, 409], answers
    final = state(sam, record)
    assert final["request"]["status"] == "approved"
    assert sum(1 for t in final["tasks"] if t["status"] == "approved") == 2
    with database.session() as session:
        count = session.execute(
            sa.text(
                "SELECT count(*) FROM record_history WHERE record_id = :r AND action = 'transition'"
            ),
            {"r": record},
        ).scalar()
    assert count == 2  # submit and approve, once each


def test_automations_trigger_on_workflow_events(people: dict[str, Api]) -> None:
    admin, sam, boss = people["admin"], people["sam"], people["boss"]
    put_flow(admin, [step("manager", [{"manager": 1}])])
    ids: dict[str, int] = people["ids"]  # type: ignore[assignment]
    for name, trigger in [
        ("on_approved", {"on": "workflow", "events": ["approved"]}),
        ("on_entered", {"on": "workflow", "events": ["entered_state"], "states": ["pending"]}),
    ]:
        body = {
            "x-name": name,
            "x-label": LABEL,
            "object": "expense",
            "trigger": trigger,
            "actions": [{"type": "notify", "users": {"ids": [ids["kim"]]},
                         "message": {"en": name, "zh-CN": name}}],
        }  # fmt: skip
        created = admin.post("/automations", body)
        assert created.status_code == 201, created.get_json()
    record = new_expense(sam)
    assert submit(sam, record).status_code == 201
    assert act(boss, my_task(boss, record), "approve").status_code == 200
    titles = [n["title"]["en"] for n in people["kim"].get("/notifications").get_json()["items"]]
    assert titles.count("on_entered") == 1 and titles.count("on_approved") == 1
