"""Automations on record writes: each write trigger, the set-fields / create-record /
pack-hook actions, the loop guard, bad documents refused with pointers, and that only
administrators manage them (through the REST API, on SQLite and PostgreSQL)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.conftest import Api
from tests.factories import definition, field
from tests.platform.runtime.helpers import create, define, error_of, fetch
from trellis.extensions import db
from trellis.platform.runtime.automations import HookContext, pack_hook
from trellis.platform.runtime.identity.tokens import issue_token
from trellis.platform.runtime.models import AuditEvent, AutomationRun


@pytest.fixture(autouse=True)
def _in_app_context(request: pytest.FixtureRequest) -> Any:
    if "app" not in request.fixturenames:
        yield
        return
    with request.getfixturevalue("app").app_context():
        yield


def dealer() -> dict[str, Any]:
    return definition(
        "dealer",
        {
            "name": field("text", "Name"),
            "status": field("picklist", "Status", enum=["new", "active", "blocked"]),
            "credit_limit": field("currency", "Credit limit"),
            "exposure": field("currency", "Exposure"),
            "flag": field("text", "Flag"),
            "touches": field("integer", "Touches"),
            "manager": field("user", "Manager"),
        },
        required=["name"],
    )


def task() -> dict[str, Any]:
    return definition(
        "task",
        {
            "subject": field("text", "Subject"),
            "dealer": field("lookup", "Dealer", **{"x-target": "dealer"}),
        },
    )


def automation(name: str, trigger: dict[str, Any], actions: list[Any], **more: Any) -> dict:
    return {
        "x-name": name,
        "x-label": {"en": name.replace("_", " "), "zh-CN": name},
        "object": more.pop("object", "dealer"),
        "trigger": trigger,
        "actions": actions,
        **more,
    }


def set_flag(value: Any) -> dict[str, Any]:
    return {"type": "set_fields", "values": {"flag": value}}


def save(api: Api, document: dict[str, Any]) -> None:
    response = api.post("/automations", document)
    assert response.status_code == 201, response.get_json()


def runs(name: str) -> list[tuple[int | None, str]]:
    with db.session() as session:
        rows = session.execute(
            sa.select(AutomationRun.record_id, AutomationRun.outcome)
            .where(AutomationRun.automation_name == name)
            .order_by(AutomationRun.id)
        ).all()
    return [(r[0], r[1]) for r in rows]


def update(api: Api, record: dict[str, Any], **values: Any) -> dict[str, Any]:
    current = fetch(api, "dealer", record["id"])
    response = api.patch(
        f"/records/dealer/{record['id']}", {**values, "version": current["version"]}
    )
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


@pytest.fixture
def objects(api: Api) -> Api:
    define(api, dealer())
    define(api, task())
    return api


# --- triggers ---------------------------------------------------------------------------


def test_create_trigger_sets_fields_before_save(objects: Api) -> None:
    save(
        objects,
        automation("greet", {"on": "create"}, [set_flag({"expression": "CONCAT('hi ', name)"})]),
    )
    record = create(objects, "dealer", {"name": "Acme"})
    assert record["flag"] == "hi Acme"
    assert fetch(objects, "dealer", record["id"])["flag"] == "hi Acme"
    assert runs("greet") == [(record["id"], "done")]
    update(objects, record, credit_limit=5)  # not a create: nothing more
    assert len(runs("greet")) == 1


def test_update_trigger_only_on_a_real_change(objects: Api) -> None:
    save(objects, automation("count", {"on": "update"}, [set_flag("changed")]))
    record = create(objects, "dealer", {"name": "Acme"})
    assert record["flag"] is None
    assert update(objects, record, name="Acme")["flag"] is None  # unchanged: no write at all
    assert update(objects, record, credit_limit=10)["flag"] == "changed"
    assert runs("count") == [(record["id"], "done")]


def test_field_changed_trigger_and_condition(objects: Api) -> None:
    save(
        objects,
        automation(
            "on_status",
            {"on": "field_changed", "fields": ["status"]},
            [set_flag({"expression": "CONCAT('status ', status)"})],
            condition="status != 'new'",
        ),
    )
    record = create(objects, "dealer", {"name": "Acme", "status": "new"})
    assert record["flag"] is None  # the condition is false
    assert update(objects, record, credit_limit=3)["flag"] is None  # status did not change
    assert update(objects, record, status="active")["flag"] == "status active"


def test_condition_true_is_an_edge(objects: Api) -> None:
    save(
        objects,
        automation(
            "exposure_high",
            {"on": "condition_true", "condition": "exposure > credit_limit * 0.9"},
            [
                {
                    "type": "create_record",
                    "object": "task",
                    "values": {
                        "subject": {"expression": "CONCAT('check ', name)"},
                        "dealer": {"expression": "id"},
                    },
                }
            ],
        ),
    )
    record = create(objects, "dealer", {"name": "Acme", "credit_limit": 100, "exposure": 10})
    update(objects, record, exposure=95)  # false → true: fires
    update(objects, record, exposure=99)  # true → true: level, not edge
    update(objects, record, exposure=20)  # back to false
    update(objects, record, exposure=91)  # false → true again: fires
    tasks = objects.get("/records/task").get_json()["items"]
    assert [(t["subject"], t["dealer"]) for t in tasks] == [("check Acme", record["id"])] * 2
    assert [outcome for _rid, outcome in runs("exposure_high")] == ["done", "done"]


def test_delete_trigger_runs_after_the_delete(objects: Api) -> None:
    save(
        objects,
        automation(
            "log_delete",
            {"on": "delete"},
            [
                {
                    "type": "create_record",
                    "object": "task",
                    "values": {"subject": {"expression": "CONCAT('deleted ', name)"}},
                }
            ],
        ),
    )
    record = create(objects, "dealer", {"name": "Gone"})
    assert objects.delete(f"/records/dealer/{record['id']}").status_code in (200, 204)
    tasks = objects.get("/records/task").get_json()["items"]
    assert [t["subject"] for t in tasks] == ["deleted Gone"]


def test_inactive_automation_does_not_run(objects: Api) -> None:
    save(objects, automation("off", {"on": "create"}, [set_flag("x")], active=False))
    assert create(objects, "dealer", {"name": "Acme"})["flag"] is None
    assert runs("off") == []


# --- actions ----------------------------------------------------------------------------


def test_a_failing_action_is_recorded_and_the_write_stands(objects: Api) -> None:
    save(
        objects,
        automation(
            "bad_task",
            {"on": "create"},
            [{"type": "create_record", "object": "task", "values": {"dealer": 999999}}],
        ),
    )
    record = create(objects, "dealer", {"name": "Acme"})
    assert fetch(objects, "dealer", record["id"])["name"] == "Acme"
    assert objects.get("/records/task").get_json()["items"] == []
    history = objects.get("/automations/bad_task/runs").get_json()["items"]
    assert [(r["record_id"], r["outcome"]) for r in history] == [(record["id"], "failed")]
    assert "dealer" in history[0]["error"]


def test_a_run_that_fails_halfway_leaves_nothing_behind(objects: Api) -> None:
    """Its first action's record is rolled back with the second's refusal (a savepoint)."""
    good = {"type": "create_record", "object": "task", "values": {"subject": "first"}}
    bad = {"type": "create_record", "object": "task", "values": {"dealer": 999999}}
    save(objects, automation("half_task", {"on": "create"}, [good, bad]))
    record = create(objects, "dealer", {"name": "Acme"})
    assert objects.get("/records/task").get_json()["items"] == []
    assert runs("half_task") == [(record["id"], "failed")]


def test_a_lone_webhook_action_needs_no_savepoint(app: Flask, objects: Api) -> None:
    """Publishing cannot half-apply: a write whose automation only publishes opens no
    savepoint, and reads the webhooks only once per metadata revision."""
    app.config["WEBHOOK_ALLOWED_NETWORKS"] = "127.0.0.0/8"
    hook = {"name": "ERP", "url": "http://127.0.0.1:9/hook", "events": ["erp.sync"]}
    assert objects.post("/webhooks", hook).status_code == 201
    save(objects, automation("sync", {"on": "create"}, [{"type": "webhook", "event": "erp.sync"}]))
    sent: list[str] = []
    savepoints: list[str | None] = []

    def record_statement(_c: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    def record_savepoint(_c: Any, name: str | None) -> None:
        savepoints.append(name)

    app.extensions["trellis.jobs.polling"] = True  # the events stay in the outbox here
    try:
        create(objects, "dealer", {"name": "Warm-up"})  # the webhooks read for this revision
        sa.event.listen(db.engine, "before_cursor_execute", record_statement)
        sa.event.listen(db.engine, "savepoint", record_savepoint)
        try:
            record = create(objects, "dealer", {"name": "Acme"})
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", record_statement)
            sa.event.remove(db.engine, "savepoint", record_savepoint)
    finally:
        app.extensions.pop("trellis.jobs.polling")
    assert savepoints == []
    assert not [s for s in sent if "FROM webhooks" in s]
    assert len([s for s in sent if s.startswith("INSERT INTO outbox_events")]) == 1
    assert runs("sync")[-1] == (record["id"], "done")


def test_set_fields_must_pass_validation(objects: Api) -> None:
    save(
        objects,
        automation(
            "bad_status",
            {"on": "create"},
            [{"type": "set_fields", "values": {"status": "nonsense"}}],
        ),
    )
    response = objects.post("/records/dealer", {"name": "Acme"})
    error = error_of(response, 422)
    assert any(d["field"] == "status" for d in error["details"])
    assert runs("bad_status") == []  # the write rolled back, and its run with it


_TOUCHED: list[tuple[str, int | None]] = []


@pack_hook("testpack.touch")
def _touch(ctx: HookContext) -> None:
    """A pack hook that writes the record that set it off (a loop, unless stopped)."""
    _TOUCHED.append((ctx.automation, ctx.record_id))
    assert ctx.record_id is not None
    current = ctx.records.get(ctx.object_name, ctx.record_id)
    ctx.records.update(
        ctx.object_name,
        ctx.record_id,
        {"touches": (current["touches"] or 0) + 1, "version": current["version"]},
    )


def test_pack_hook_runs_and_the_loop_guard_stops_it(objects: Api) -> None:
    _TOUCHED.clear()
    save(
        objects,
        automation("toucher", {"on": "update"}, [{"type": "hook", "name": "testpack.touch"}]),
    )
    record = create(objects, "dealer", {"name": "Acme"})
    update(objects, record, credit_limit=1)
    # The hook's own update set the automation off again on the same record: stopped.
    assert [("toucher", record["id"])] == _TOUCHED
    assert fetch(objects, "dealer", record["id"])["touches"] == 1
    assert runs("toucher") == [(record["id"], "stopped"), (record["id"], "done")]
    with db.session() as session:
        events = session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "automation.loop_stopped")
        ).all()
    assert [e.target for e in events] == ["automation/toucher"]
    assert events[0].detail["reason"] == "repeated"


def test_depth_limit_stops_a_chain_of_new_records(objects: Api) -> None:
    # Each new task creates another task: new records every time, so only depth stops it.
    save(
        objects,
        automation(
            "breed",
            {"on": "create"},
            [
                {
                    "type": "create_record",
                    "object": "task",
                    "values": {"subject": {"expression": "CONCAT('child of ', subject)"}},
                }
            ],
            object="task",
        ),
    )
    create(objects, "task", {"subject": "root"})
    tasks = objects.get("/records/task").get_json()["items"]
    assert len(tasks) == 1 + 5  # the root, then AUTOMATION_MAX_DEPTH generations
    assert [o for _r, o in runs("breed")].count("stopped") == 1


# --- roll-ups moved by other records' writes -------------------------------------------


def ledger(api: Api) -> Api:
    """An account whose ``balance`` sums its entries (a lookup roll-up, as a dealer's
    open exposure sums its orders)."""
    account = definition("account", {"name": field("text", "Name"), "flag": field("text")})
    define(api, account)
    entries = {
        "account": field("lookup", "Account", **{"x-target": "account"}),
        "amount": field("currency", "Amount"),
    }
    define(api, definition("entry", entries))
    account["properties"]["balance"] = field(
        "rollup",
        type=["number", "null"],
        **{"x-rollup": {"of": "entry.account", "function": "SUM", "field": "amount"}},
    )
    assert api.put("/objects/account", account).status_code == 200
    return api


def entry(api: Api, account: dict[str, Any], amount: float) -> dict[str, Any]:
    return create(api, "entry", {"account": account["id"], "amount": amount})


def test_a_rollup_moved_by_a_child_sets_off_the_parents_automations(api: Api) -> None:
    """An entry written moves its account's balance: the account's condition-true (an
    edge: once per crossing), field-changed and update automations see it, in the
    entry's transaction; a bulk write of three entries tells the account once."""
    ledger(api)
    save(
        api,
        automation("crossed", {"on": "condition_true", "condition": "balance > 100"},
                   [set_flag("over")], object="account"),
    )  # fmt: skip
    save(api, automation("moved", {"on": "field_changed", "fields": ["balance"]},
                         [{"type": "create_record", "object": "entry", "values": {}}],
                         object="account", condition="balance > 0"))  # fmt: skip
    save(api, automation("touched", {"on": "update"}, [set_flag("touched")],
                         object="account", condition="ISBLANK(flag)"))  # fmt: skip
    account = create(api, "account", {"name": "Acme"})
    assert runs("crossed") == runs("moved") == runs("touched") == []
    entry(api, account, 60)
    assert runs("crossed") == [] and runs("moved") == [(account["id"], "done")]
    assert runs("touched") == [(account["id"], "done")]
    assert fetch(api, "account", account["id"])["flag"] == "touched"
    entry(api, account, 50)  # 110: past the line
    assert runs("crossed") == [(account["id"], "done")]
    stored = fetch(api, "account", account["id"])
    assert (stored["balance"], stored["flag"]) == (110, "over")
    entry(api, account, 30)  # still over: no second alert
    assert len(runs("crossed")) == 1 and len(runs("moved")) == 3
    other = create(api, "account", {"name": "Bulk"})
    bulk = [{"account": other["id"], "amount": a} for a in (1, 2, 3)]
    assert api.post("/records/entry/bulk", bulk).status_code == 201
    assert [r for r in runs("moved") if r[0] == other["id"]] == [(other["id"], "done")]
    assert fetch(api, "account", other["id"])["balance"] == 6


def test_a_rollup_automation_that_moves_its_own_rollup_is_stopped(api: Api) -> None:
    """An account automation whose action writes an entry of the same account moves the
    balance again: the loop guard stops it there, with its audit event."""
    ledger(api)
    save(api, automation("echo", {"on": "field_changed", "fields": ["balance"]},
                         [{"type": "create_record", "object": "entry",
                           "values": {"account": {"expression": "id"}, "amount": 1}}],
                         object="account", condition="balance > 0"))  # fmt: skip
    account = create(api, "account", {"name": "Acme"})
    entry(api, account, 5)
    assert fetch(api, "account", account["id"])["balance"] == 6  # 5, and the echo's 1
    assert runs("echo") == [(account["id"], "stopped"), (account["id"], "done")]
    with db.session() as session:
        stopped = session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "automation.loop_stopped")
        ).all()
    assert [(e.target, e.detail["reason"]) for e in stopped] == [("automation/echo", "repeated")]


# --- documents ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "pointer"),
    [
        ({"object": "nothing"}, "/object"),
        ({"trigger": {"on": "sometimes"}}, "/trigger/on"),
        ({"trigger": {"on": "field_changed", "fields": ["nope"]}}, "/trigger/fields/0"),
        ({"trigger": {"on": "field_changed"}}, "/trigger"),
        ({"trigger": {"on": "schedule", "cron": "61 * * * *"}}, "/trigger/cron"),
        ({"trigger": {"on": "date", "field": "name", "offset_days": -3}}, "/trigger/field"),
        ({"condition": "name >"}, "/condition"),
        ({"condition": "name"}, "/condition"),
        ({"actions": []}, "/actions"),
        ({"actions": [{"type": "set_fields", "values": {"nope": 1}}]}, "/actions/0/values/nope"),
        (
            {"actions": [{"type": "set_fields", "values": {"flag": {"expression": "1 +"}}}]},
            "/actions/0/values/flag/expression",
        ),
        (
            {"actions": [{"type": "create_record", "object": "ghost", "values": {}}]},
            "/actions/0/object",
        ),
        ({"actions": [{"type": "hook", "name": "nopack.nothing"}]}, "/actions/0/name"),
        (
            {
                "actions": [
                    {"type": "notify", "users": {"fields": ["name"]}, "message": {"en": "x"}}
                ]
            },
            "/actions/0/users/fields/0",
        ),
        (
            {
                "trigger": {"on": "workflow", "events": ["approved"]},
                "actions": [{"type": "start_approval", "flow": "credit"}],
            },
            "/actions/0/type",
        ),
        (
            {"trigger": {"on": "workflow", "events": ["approved"], "states": ["x"]}},
            "/trigger/states",
        ),
        ({"trigger": {"on": "workflow", "events": ["nonsense"]}}, "/trigger/events/0"),
        ({"x-name": "Bad Name"}, "/x-name"),
        ({"surprise": 1}, ""),
    ],
)
def test_bad_documents_are_refused_with_pointers(
    objects: Api, change: dict[str, Any], pointer: str
) -> None:
    document = {**automation("good", {"on": "create"}, [set_flag("x")]), **change}
    error = error_of(objects.post("/automations", document), 422, "invalid_definition")
    assert pointer in [d["field"] for d in error["details"]], error
    assert objects.get("/automations").get_json()["items"] == []


def test_expression_problems_carry_their_position(objects: Api) -> None:
    document = automation("good", {"on": "create"}, [set_flag("x")], condition="name = = 1")
    error = error_of(objects.post("/automations", document), 422)
    detail = next(d for d in error["details"] if d["field"] == "/condition")
    assert {"offset", "line", "column"} <= set(detail)


def test_versions_restore_and_delete(objects: Api) -> None:
    first = automation("greet", {"on": "create"}, [set_flag("one")])
    save(objects, first)
    second = copy.deepcopy(first)
    second["actions"] = [set_flag("two")]
    body = objects.put("/automations/greet", second).get_json()
    assert (body["version"], body["changed"]) == (2, True)
    assert objects.put("/automations/greet", second).get_json()["changed"] is False
    assert create(objects, "dealer", {"name": "A"})["flag"] == "two"
    versions = objects.get("/automations/greet/versions").get_json()["items"]
    assert [v["version"] for v in versions] == [2, 1]
    restored = objects.post("/automations/greet/versions/1/restore").get_json()
    assert restored["version"] == 3
    assert create(objects, "dealer", {"name": "B"})["flag"] == "one"
    renamed = {**second, "x-name": "other"}
    error_of(objects.put("/automations/greet", renamed), 422)
    error_of(objects.post("/automations", first), 409)
    assert objects.delete("/automations/greet").get_json()["deleted"] is True
    error_of(objects.get("/automations/greet"), 404)
    assert create(objects, "dealer", {"name": "C"})["flag"] is None


def test_only_administrators_manage_automations(objects: Api) -> None:
    save(objects, automation("greet", {"on": "create"}, [set_flag("x")]))
    body = {"email": "clerk@example.com", "password": "long enough password", "roles": []}
    assert objects.post("/users", body).status_code == 201
    with db.session() as session:
        token = issue_token(session, body["email"])
        session.commit()
    clerk = Api(objects.client, token)
    document = automation("mine", {"on": "create"}, [set_flag("y")])
    for response in (
        clerk.get("/automations"),
        clerk.get("/automations/greet"),
        clerk.post("/automations", document),
        clerk.put("/automations/greet", document),
        clerk.delete("/automations/greet"),
        clerk.get("/automations/greet/versions"),
        clerk.get("/automations/greet/runs"),
        clerk.post("/automations/greet/versions/1/restore"),
    ):
        error_of(response, 403)
    assert [a["x-name"] for a in objects.get("/automations").get_json()["items"]] == ["greet"]
