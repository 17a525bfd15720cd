"""The channel pack's approvals over HTTP with the demo's own users (dealer admin, channel
manager, finance, HQ admin), on SQLite and PostgreSQL: the order's steps in order, wrong
approvers, double decisions and late recalls refused, rejection with its history, the
order read-only on every path while pending, the auto-approval limit, finance's
escalation to HQ after two business days of the Asia/Shanghai calendar (time travel),
notifications, dealer onboarding, a workflow change with requests in flight, and an
upgrade from the pack before approvals."""

from __future__ import annotations

import copy
import datetime as dt
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.conftest import Api
from trellis.extensions import Database, database_of
from trellis.platform.runtime.identity.tokens import issue_token
from trellis.platform.runtime.models import Notification
from trellis.platform.runtime.packs import BUILTIN_PACKS, install_pack
from trellis.platform.runtime.registry import MetaRegistry
from trellis.platform.runtime.workflow import approvals as approvals_module
from trellis.platform.runtime.workflow.approvals import ApprovalService

PACK = BUILTIN_PACKS / "channel_pack"
SHANGHAI = dt.timezone(dt.timedelta(hours=8))


def install(app: Flask, folder: Path = PACK, demo: bool = True) -> None:
    registry: MetaRegistry = app.extensions["trellis.registry"]
    with database_of(app).session() as session:
        install_pack(session, registry, folder, author_id=None, with_demo=demo)
        session.commit()


@pytest.fixture
def people(app: Flask, database: Database) -> dict[str, Api]:
    install(app)
    found = {}
    for key, email in [("dealer", "east.admin@example.com"), ("channel", "channel@example.com"),
                       ("finance", "finance@example.com"), ("hq", "hq@example.com"),
                       ("north", "north.admin@example.com")]:  # fmt: skip
        with database.session() as session:
            token = issue_token(session, email, name="tests")
            session.commit()
        found[key] = Api(app.test_client(), token)
    return found


def user_id(database: Database, email: str) -> int:
    with database.engine.connect() as connection:
        return int(
            connection.execute(sa.text("SELECT id FROM users WHERE email = :e"), {"e": email})
            .scalar_one()
        )  # fmt: skip


def new_order(api: Api, amount: float) -> int:
    dealer = api.get("/me").get_json()["partner"]
    product = api.get("/records/product?limit=1").get_json()["items"][0]["id"]
    body = {"dealer": dealer, "order_date": "2026-12-01",
            "lines": [{"product": product, "quantity": 1, "unit_price": amount}]}  # fmt: skip
    response = api.post("/records/sales_order", body)
    assert response.status_code == 201, response.get_json()
    return int(response.get_json()["id"])


def submit(api: Api, order: int) -> Any:
    return api.post(f"/records/sales_order/{order}/approval", {})


def state(api: Api, order: int) -> dict[str, Any]:
    response = api.get(f"/records/sales_order/{order}/approval")
    assert response.status_code == 200, response.get_json()
    return dict(response.get_json())


def task_of(api: Api, order: int) -> int:
    items = api.get("/approvals/inbox", query_string={"object": "sales_order", "limit": 200})
    found = [i["id"] for i in items.get_json()["items"] if i["record_id"] == order]
    assert found, items.get_json()
    return int(found[0])


def act(api: Api, task: int, action: str, **body: Any) -> Any:
    return api.post(f"/approvals/{task}/{action}", body)


def status(api: Api, order: int) -> str:
    return str(api.get(f"/records/sales_order/{order}").get_json()["status"])


def notes(database: Database, email: str, order: int) -> list[str]:
    """The English titles of the user's notifications about the order."""
    with database.engine.connect() as connection:
        rows = connection.execute(
            sa.select(Notification.title).where(
                Notification.user_id == user_id(database, email),
                Notification.object_name == "sales_order",
                Notification.record_id == order,
            ).order_by(Notification.id)
        ).scalars()  # fmt: skip
        return [str(title["en"]) for title in rows]


def test_the_demo_inboxes_are_not_empty(people: dict[str, Api]) -> None:
    channel = people["channel"].get("/approvals/inbox").get_json()
    finance = people["finance"].get("/approvals/inbox").get_json()
    assert {i["object"] for i in channel["items"]} == {"sales_order", "dealer"}
    assert [i["step"] for i in finance["items"]] == ["finance"] and finance["count"] == 1


def test_steps_in_order_refusals_and_notifications(
    people: dict[str, Api], database: Database
) -> None:
    dealer, channel, finance, north = (people[k] for k in ("dealer", "channel", "finance", "north"))
    order = new_order(dealer, 150000)  # over the dealer's 50,000 and over 100,000
    assert submit(dealer, order).status_code == 201
    assert status(dealer, order) == "submitted"
    assert state(dealer, order)["request"]["step"] == "channel_manager"
    assert notes(database, "channel@example.com", order)[0].startswith("Approval needed:")
    task = task_of(channel, order)
    assert act(finance, task, "approve").status_code == 403  # a wrong approver
    assert act(north, task, "approve").status_code == 403
    # By hand nobody moves a pending order, not even its outcome's transition.
    assert channel.post(f"/records/sales_order/{order}/transitions/approve").status_code == 409
    assert dealer.post(f"/records/sales_order/{order}/transitions/nonsense").status_code == 404
    assert act(channel, task, "approve", comment="ok").status_code == 200
    assert act(channel, task, "approve").status_code == 409  # a double decision
    assert dealer.post(f"/records/sales_order/{order}/approval/recall").status_code == 409
    assert state(dealer, order)["request"]["step"] == "finance"
    assert notes(database, "finance@example.com", order)[0].startswith("Approval needed")
    assert act(finance, task_of(finance, order), "approve").status_code == 200
    assert status(dealer, order) == "approved"
    done = state(dealer, order)
    assert done["request"]["status"] == "approved"
    assert [h["action"] for h in done["history"] if h["by"]] == ["submitted", "approved",
                                                                 "approved"]  # fmt: skip
    # The submitter is told, and the dealer's admins (CC on completion).
    assert notes(database, "east.admin@example.com", order)[-1].startswith("Approved:")


def test_rejection_with_history_and_the_limit(people: dict[str, Api]) -> None:
    dealer, channel = people["dealer"], people["channel"]
    small = new_order(dealer, 20000)  # under the dealer's auto-approval limit
    assert submit(dealer, small).status_code == 201
    assert status(dealer, small) == "approved"
    actions = [h["action"] for h in state(dealer, small)["history"]]
    assert actions.count("step_skipped") == 2 and "completed" in actions
    order = new_order(dealer, 60000)  # over the limit, under finance's
    assert submit(dealer, order).status_code == 201
    refused = act(channel, task_of(channel, order), "reject", comment="price too low")
    assert refused.status_code == 200
    assert status(dealer, order) == "cancelled"
    history = state(dealer, order)["history"]
    rejected = next(h for h in history if h["action"] == "rejected" and h["by"])
    assert rejected["comment"] == "price too low" and rejected["step"] == "channel_manager"
    assert history[-1]["action"] == "rejected"
    # Returned to the dealer for rework: back to draft, and submitted again.
    again = new_order(dealer, 60000)
    assert submit(dealer, again).status_code == 201
    assert act(channel, task_of(channel, again), "reject", to="submitter").status_code == 200
    assert status(dealer, again) == "draft"
    assert submit(dealer, again).status_code == 201
    assert state(dealer, again)["request"]["status"] == "pending"


def test_a_pending_order_is_read_only_on_every_path(people: dict[str, Api]) -> None:
    dealer = people["dealer"]
    order = new_order(dealer, 60000)
    assert submit(dealer, order).status_code == 201
    record = dealer.get(f"/records/sales_order/{order}").get_json()
    written = dealer.patch(f"/records/sales_order/{order}",
                           {"status": "approved", "version": record["version"]})  # fmt: skip
    assert written.status_code in (403, 409, 422)  # the dealer may not write it at all
    noted = dealer.patch(
        f"/records/sales_order/{order}", {"notes": "x", "version": record["version"]}
    )
    assert noted.status_code == 409
    product = dealer.get("/records/product?limit=1").get_json()["items"][0]["id"]
    line = {"sales_order": order, "product": product, "quantity": 1, "unit_price": 5}
    assert dealer.post("/records/order_line", line).status_code == 409
    bulk = dealer.post("/records/order_line/bulk", [line, line])
    assert bulk.status_code == 409, bulk.get_json()
    sheet = f"sales_order,product,quantity,unit_price\n{order},{product},1,5\n".encode()
    uploaded = dealer.client.post(
        "/api/v1/records/order_line/import",
        data={"file": (io.BytesIO(sheet), "lines.csv")},
        headers=dealer.headers,
        content_type="multipart/form-data",
    )
    assert uploaded.status_code == 202, uploaded.get_json()
    run = dealer.get(f"/imports/{uploaded.get_json()['id']}").get_json()
    assert run["status"] in ("done", "failed", "refused") and run.get("created", 0) == 0, run
    lines = dealer.get(f"/records/sales_order/{order}").get_json()
    assert lines["total_amount"] in (60000, "60000.00", 60000.0)
    assert state(dealer, order)["request"]["status"] == "pending"


def travel(monkeypatch: pytest.MonkeyPatch, moment: dt.datetime) -> None:
    monkeypatch.setattr(approvals_module, "utcnow", lambda: moment.astimezone(dt.UTC))


def deadlines(app: Flask, database: Database, now: dt.datetime) -> int:
    registry: MetaRegistry = app.extensions["trellis.registry"]
    with app.app_context(), database.write_session() as session:
        registry.ensure_current(session)
        acted = ApprovalService(session, registry, None).run_deadlines(now.astimezone(dt.UTC))
        session.commit()
        return acted


@pytest.mark.parametrize(
    ("submitted", "escalates"),
    [
        # A Friday's submission escalates on Tuesday, at the same time of day.
        (dt.datetime(2026, 11, 13, 10, 0, tzinfo=SHANGHAI),
         dt.datetime(2026, 11, 17, 10, 0, tzinfo=SHANGHAI)),
        # Wednesday 30 September: 1–3 October are holidays, 4 October a Sunday.
        (dt.datetime(2026, 9, 30, 10, 0, tzinfo=SHANGHAI),
         dt.datetime(2026, 10, 6, 10, 0, tzinfo=SHANGHAI)),
    ],
)  # fmt: skip
def test_finance_escalates_to_hq_after_two_business_days(
    app: Flask, database: Database, people: dict[str, Api], monkeypatch: pytest.MonkeyPatch,
    submitted: dt.datetime, escalates: dt.datetime,
) -> None:  # fmt: skip
    dealer, channel, finance, hq = (people[k] for k in ("dealer", "channel", "finance", "hq"))
    order = new_order(dealer, 150000)
    travel(monkeypatch, submitted)
    assert submit(dealer, order).status_code == 201
    assert act(channel, task_of(channel, order), "approve").status_code == 200
    task = state(dealer, order)["tasks"][-1]
    assert task["step"] == "finance"
    due = dt.datetime.fromisoformat(task["due_at"].replace("Z", "+00:00"))
    assert due == escalates
    assert deadlines(app, database, escalates - dt.timedelta(minutes=1)) == 0
    assert deadlines(app, database, escalates) == 1
    assert deadlines(app, database, escalates) == 0  # once
    after = state(dealer, order)
    assert [h["action"] for h in after["history"]].count("escalated") == 1
    assert after["tasks"][-1]["approver"]["email"] == "hq@example.com"
    assert act(finance, task["id"], "approve").status_code == 403  # it is HQ's now
    monkeypatch.undo()
    assert act(hq, task_of(hq, order), "approve").status_code == 200
    assert status(dealer, order) == "approved"


def test_dealer_onboarding_is_approved_in_two_steps(people: dict[str, Api]) -> None:
    channel, finance, hq = people["channel"], people["finance"], people["hq"]
    created = hq.post("/records/dealer", {"name": "新申请", "code": "NEW-1", "level": "regional"})
    assert created.status_code == 201, created.get_json()
    dealer = created.get_json()["id"]
    assert hq.post(f"/records/dealer/{dealer}/approval", {}).status_code == 201
    flow = hq.get(f"/records/dealer/{dealer}/approval").get_json()
    assert [s["name"] for s in flow["steps"]] == ["review", "credit"]
    items = channel.get("/approvals/inbox", query_string={"object": "dealer"}).get_json()
    review = next(i["id"] for i in items["items"] if i["record_id"] == dealer)
    assert act(channel, review, "approve").status_code == 200
    items = finance.get("/approvals/inbox", query_string={"object": "dealer"}).get_json()
    credit = next(i["id"] for i in items["items"] if i["record_id"] == dealer)
    assert act(finance, credit, "approve").status_code == 200
    record = hq.get(f"/records/dealer/{dealer}").get_json()
    assert record["onboarding_status"] == "credit_approved"
    activated = hq.post(f"/records/dealer/{dealer}/transitions/activate", {})
    assert activated.status_code == 200
    assert activated.get_json()["record"]["onboarding_status"] == "active"


def test_a_workflow_change_with_requests_in_flight(people: dict[str, Api], api: Api) -> None:
    dealer, channel = people["dealer"], people["channel"]
    order = new_order(dealer, 150000)
    assert submit(dealer, order).status_code == 201
    assert act(channel, task_of(channel, order), "approve").status_code == 200  # at finance
    document = api.get("/workflows/order_flow").get_json()["workflow"]
    steps = document_steps(document)
    # Kept by name (and moved first): the request stays on its step and goes on.
    kept = copy.deepcopy(document)
    document_steps(kept).reverse()
    changed = api.put("/workflows/order_flow", kept)
    assert changed.status_code == 200, changed.get_json()
    assert state(dealer, order)["request"]["step"] == "finance"
    # Dropping the step a request waits at is refused, naming the record.
    dropped = copy.deepcopy(document)
    document_steps(dropped)[:] = [s for s in steps if s["name"] != "finance"]
    refused = api.put("/workflows/order_flow", dropped)
    assert refused.status_code == 422, refused.get_json()
    assert str(order) in json.dumps(refused.get_json())
    assert act(people["finance"], task_of(people["finance"], order), "approve").status_code == 200
    # The new order puts the channel manager after finance: their step comes again.
    assert state(dealer, order)["request"]["step"] == "channel_manager"
    assert act(channel, task_of(channel, order), "approve").status_code == 200
    assert status(dealer, order) == "approved"


def document_steps(document: dict[str, Any]) -> list[dict[str, Any]]:
    submit_ = next(t for t in document["transitions"] if t["name"] == "submit")
    steps: list[dict[str, Any]] = submit_["approval"]["steps"]
    return steps


def test_an_installed_pack_without_approvals_upgrades(
    app: Flask, database: Database, tmp_path: Path
) -> None:
    older = tmp_path / "channel_pack"
    shutil.copytree(PACK, older)
    for relative in ("workflows/order.json", "workflows/dealer_onboarding.json"):
        path = older / relative
        flow = json.loads(path.read_text(encoding="utf-8"))
        flow["transitions"] = [t for t in flow["transitions"] if "approval" not in t
                               and t["name"] not in ("reject", "approve_application",
                                                     "reject_application",
                                                     "return_application")]  # fmt: skip
        flow["states"] = [s for s in flow["states"] if s["name"] != "in_review"]
        path.write_text(json.dumps(flow), encoding="utf-8")
    submit_ = {"name": "submit", "from": "draft", "to": "submitted",
               "label": {"en": "Submit", "zh-CN": "提交"}}  # fmt: skip
    order_flow = json.loads((older / "workflows/order.json").read_text(encoding="utf-8"))
    order_flow["transitions"].insert(0, submit_)
    (older / "workflows/order.json").write_text(json.dumps(order_flow), encoding="utf-8")
    dealer = json.loads((older / "objects/dealer.json").read_text(encoding="utf-8"))
    del dealer["properties"]["auto_approve_limit"]
    status_ = dealer["properties"]["onboarding_status"]
    status_["enum"].remove("in_review")
    del status_["x-enum-labels"]["in_review"]
    (older / "objects/dealer.json").write_text(json.dumps(dealer), encoding="utf-8")
    manifest = json.loads((older / "pack.json").read_text(encoding="utf-8"))
    manifest["version"] = "0.4.0"
    (older / "pack.json").write_text(json.dumps(manifest), encoding="utf-8")
    install(app, older, demo=False)
    install(app)  # the upgrade: new versions of the dealer and both workflows
    registry: MetaRegistry = app.extensions["trellis.registry"]
    with database.session() as session:
        registry.ensure_current(session)
        assert "auto_approve_limit" in registry.get("dealer").fields
        workflow = registry.get("sales_order").workflow
        assert workflow is not None and workflow.version == 2 and workflow.has_approvals
        assert registry.get("dealer").workflow.version == 2  # type: ignore[union-attr]
