"""The channel pack's automations (issue 9 item 7): ERP sync of new and changed dealers and
confirmed orders, the exposure alert to channel managers (an edge: once per crossing), and
the nightly deactivation of dealers whose contract has ended."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.conftest import Api, template_for
from tests.platform.runtime.helpers import create, fetch
from trellis.extensions import Database
from trellis.platform.runtime.automations import schedule
from trellis.platform.runtime.models import AutomationRun, Notification
from trellis.platform.runtime.packs import (
    BUILTIN_PACKS,
    automation_files,
    load_manifest,
)

PACK = BUILTIN_PACKS / "channel_pack"
AUTOMATIONS = {
    "credit_exposure_alert",
    "deactivate_expired_dealers",
    "erp_sync_changed_dealer",
    "erp_sync_confirmed_order",
    "erp_sync_new_dealer",
}


@pytest.fixture
def db_template(request: pytest.FixtureRequest) -> str | None:
    return template_for(request, pack="channel")


@pytest.fixture
def pack(app: Flask, api: Api) -> Api:
    """The admin's API on the channel pack (no demo data): the database starts as its copy."""
    assert app.extensions["trellis.registry"].find("sales_order") is not None
    return api


def runs_of(database: Database, name: str) -> list[tuple[int | None, str]]:
    with database.session() as session:
        rows = session.execute(
            sa.select(AutomationRun.record_id, AutomationRun.outcome)
            .where(AutomationRun.automation_name == name)
            .order_by(AutomationRun.id)
        ).all()
    return [(r[0], r[1]) for r in rows]


def test_the_pack_ships_its_automations(pack: Api) -> None:
    files = automation_files(PACK, load_manifest(PACK))
    assert len(files) == len(AUTOMATIONS)
    items = pack.get("/automations").get_json()["items"]
    assert {a["x-name"] for a in items} == AUTOMATIONS
    for item in items:
        assert set(item["x-label"]) == {"en", "zh-CN"}


def dealer(api: Api, code: str, **values: Any) -> dict[str, Any]:
    return create(api, "dealer", {"name": f"Dealer {code}", "code": code, "level": "regional",
                                  "region": "east", "active": True, **values})  # fmt: skip


def test_erp_sync_runs_for_new_and_changed_dealers_and_confirmed_orders(
    pack: Api, database: Database
) -> None:
    record = dealer(pack, "ERP-1", credit_limit=100000)
    assert [rid for rid, _ in runs_of(database, "erp_sync_new_dealer")] == [record["id"]]
    body = {"contact_name": "Li", "version": record["version"]}
    assert pack.patch(f"/records/dealer/{record['id']}", body).status_code == 200
    assert [rid for rid, _ in runs_of(database, "erp_sync_changed_dealer")] == [record["id"]]
    order = create(pack, "sales_order", {"dealer": record["id"], "status": "draft",
                                         "order_date": "2026-12-01"})  # fmt: skip
    line(pack, order["id"], 100)  # an order is submitted with lines
    fire(pack, order["id"], "submit")  # only transitions move it
    approve(pack, order["id"])  # the approval's outcome fires "approve"
    for transition in ("confirm", "ship"):
        fire(pack, order["id"], transition)
    assert [rid for rid, _ in runs_of(database, "erp_sync_confirmed_order")] == [order["id"]]


def line(api: Api, order_id: int, amount: int) -> None:
    product = create(api, "product", {"sku": f"SKU-{order_id}-{amount}", "name": "Thing",
                                      "list_price": amount})  # fmt: skip
    body = {"sales_order": order_id, "product": product["id"], "quantity": 1, "unit_price": amount}
    create(api, "order_line", body)


def fire(api: Api, order_id: int, transition: str) -> None:
    """Move an order along its workflow (the status is not written directly)."""
    response = api.post(f"/records/sales_order/{order_id}/transitions/{transition}", {})
    assert response.status_code == 200, response.get_json()


def submit(api: Api, order_id: int, transition: str = "submit") -> None:
    fire(api, order_id, transition)


def approve(api: Api, order_id: int) -> None:
    """Decide the order's approval: with no channel manager in these tests, its task
    goes to the administrators (the step's approvers resolve to nobody)."""
    state = api.get(f"/records/sales_order/{order_id}/approval").get_json()
    (task,) = [t["id"] for t in state["tasks"] if t["mine"] and t["status"] == "pending"]
    response = api.post(f"/approvals/{task}/approve", {})
    assert response.status_code == 200, response.get_json()
    assert fetch(api, "sales_order", order_id)["status"] == "approved"


def test_exposure_alert_fires_once_per_crossing(pack: Api, database: Database) -> None:
    record = dealer(pack, "EXP-1", credit_limit=1000)
    small = create(pack, "sales_order", {"dealer": record["id"], "status": "draft",
                                         "order_date": "2026-12-01"})  # fmt: skip
    line(pack, small["id"], 500)
    submit(pack, small["id"])  # exposure 500: under 90 %
    assert runs_of(database, "credit_exposure_alert") == []
    big = create(pack, "sales_order", {"dealer": record["id"], "status": "draft",
                                       "order_date": "2026-12-02"})  # fmt: skip
    line(pack, big["id"], 450)
    submit(pack, big["id"])  # exposure 950: past 90 % — the edge
    assert runs_of(database, "credit_exposure_alert") == [(record["id"], "done")]
    approve(pack, big["id"])  # still over the line: no second alert
    assert len(runs_of(database, "credit_exposure_alert")) == 1
    assert fetch(pack, "dealer", record["id"])["open_exposure"] == 950


def test_an_order_line_added_past_the_line_alerts_once(pack: Api, database: Database) -> None:
    """The alert is the dealer's: a line added to an open order moves the order's total
    and the dealer's exposure (roll-ups), and that alone sets it off — once, not again
    while the exposure stays over the line."""
    manager = {"email": "cm@example.com", "password": "a long password 1",
               "roles": ["channel_manager"]}  # fmt: skip
    assert pack.post("/users", manager).status_code == 201
    # Within its auto-approve limit, the order is approved at submission: open, and its
    # lines may still change (a pending order's may not).
    record = dealer(pack, "EXP-2", credit_limit=1000, auto_approve_limit=100000)
    order = create(pack, "sales_order", {"dealer": record["id"], "status": "draft",
                                         "order_date": "2026-12-01"})  # fmt: skip
    line(pack, order["id"], 100)
    submit(pack, order["id"])  # exposure 100
    assert fetch(pack, "sales_order", order["id"])["status"] == "approved"
    assert runs_of(database, "credit_exposure_alert") == []
    line(pack, order["id"], 850)  # 950: the line alone crosses 90 %
    assert runs_of(database, "credit_exposure_alert") == [(record["id"], "done")]
    with database.session() as session:
        told = session.scalars(
            sa.select(Notification).where(Notification.object_name == "dealer")
        ).all()
    assert {(n.record_id, n.title["en"]) for n in told} == {
        (record["id"], "A dealer's open exposure passed 90 % of its credit limit")
    }
    line(pack, order["id"], 10)  # 960: still over, no second alert
    assert len(runs_of(database, "credit_exposure_alert")) == 1
    assert fetch(pack, "dealer", record["id"])["open_exposure"] == 960


def test_nightly_deactivation_of_ended_contracts(app: Flask, database: Database, pack: Api) -> None:
    yesterday = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    next_year = (dt.date.today() + dt.timedelta(days=365)).isoformat()
    ended = dealer(pack, "END-1", contract_end_date=yesterday)
    running = dealer(pack, "RUN-1", contract_end_date=next_year)
    open_ended = dealer(pack, "OPEN-1")
    registry = app.extensions["trellis.registry"]
    slot = schedule.slot_key(dt.datetime.now(dt.UTC).replace(hour=2, minute=0))
    with database.session() as session:
        registry.ensure_current(session)
        counts = schedule.run_schedule(session, registry, "deactivate_expired_dealers", slot)
        session.commit()
    assert counts == {"done": 1}
    assert fetch(pack, "dealer", ended["id"])["active"] is False
    assert fetch(pack, "dealer", running["id"])["active"] is True
    assert fetch(pack, "dealer", open_ended["id"])["active"] is True
    # The deactivation is a change of the dealer: it goes to the ERP too.
    assert ended["id"] in [rid for rid, _ in runs_of(database, "erp_sync_changed_dealer")]
