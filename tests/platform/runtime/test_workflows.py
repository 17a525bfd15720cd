"""Workflows over HTTP on the channel pack: transitions by role, scope and guard; the
comment; direct status writes and locked fields refused on every path; a workflow change
with records in flight; two transitions racing on one record."""

from __future__ import annotations

import copy
import json
import threading
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.conftest import Api, template_for
from trellis.extensions import Database, database_of
from trellis.platform.runtime.identity.tokens import issue_token
from trellis.platform.runtime.packs import BUILTIN_PACKS
from trellis.platform.runtime.registry import MetaRegistry

PACK = BUILTIN_PACKS / "channel_pack"


@pytest.fixture
def db_template(request: pytest.FixtureRequest) -> str | None:
    return template_for(request, pack="channel_demo")


@pytest.fixture
def pack(app: Flask) -> None:
    """The channel pack with its demo data: the app's database starts as their copy."""
    assert app.extensions["trellis.registry"].find("sales_order") is not None


def as_user(app: Flask, database: Database, email: str) -> Api:
    with database.session() as session:
        token = issue_token(session, email, name="tests")
        session.commit()
    return Api(app.test_client(), token)


def order_in(api: Api, status: str) -> dict[str, Any]:
    query = json.dumps([["status", "=", status]])
    page = api.get("/records/sales_order", query_string={"filter": query}).get_json()
    return page["items"][0]


def new_draft(api: Api, dealer: int, with_line: bool = True, price: float = 10) -> dict[str, Any]:
    product = api.get("/records/product?limit=1").get_json()["items"][0]["id"]
    body: dict[str, Any] = {"dealer": dealer, "order_date": "2026-12-01"}
    if with_line:
        body["lines"] = [{"product": product, "quantity": 1, "unit_price": price}]
    response = api.post("/records/sales_order", body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def fire(api: Api, order: dict[str, Any], name: str, body: Any = None) -> Any:
    return api.post(f"/records/sales_order/{order['id']}/transitions/{name}", body or {})


@pytest.mark.usefixtures("pack")
def test_the_order_lifecycle_by_role(app: Flask, database: Database, api: Api) -> None:
    dealer_admin = as_user(app, database, "east.admin@example.com")
    channel = as_user(app, database, "channel@example.com")
    finance = as_user(app, database, "finance@example.com")
    dealer = dealer_admin.get("/me").get_json()["partner"]
    # Over the dealer's auto-approval limit (50,000): the channel manager approves.
    order = new_draft(dealer_admin, dealer, price=60000)
    assert order["status"] == "draft"
    listed = dealer_admin.get(f"/records/sales_order/{order['id']}/transitions").get_json()
    assert listed["state"] == "draft" and listed["category"] == "draft"
    assert [t["name"] for t in listed["items"]] == ["submit", "cancel"]
    assert fire(dealer_admin, order, "submit", {"comment": "please"}).status_code == 200
    # While the approval is pending nobody moves it by hand (409), the dealer included.
    assert fire(dealer_admin, order, "approve").status_code == 409
    assert fire(finance, order, "confirm").status_code == 409
    assert fire(channel, order, "approve").status_code == 409  # the approval's to fire now
    state = channel.get(f"/records/sales_order/{order['id']}/approval").get_json()
    (task,) = [t["id"] for t in state["tasks"] if t["mine"]]
    assert channel.post(f"/approvals/{task}/approve", {}).status_code == 200
    assert fire(channel, order, "approve").status_code == 409  # twice: already approved
    assert fire(finance, order, "confirm").status_code == 200
    assert fire(finance, order, "ship").status_code == 200
    assert fire(dealer_admin, order, "receive").status_code == 200
    done = fire(finance, order, "record_payment")
    assert done.status_code == 200 and done.get_json()["record"]["status"] == "paid"
    assert fire(dealer_admin, order, "nonsense").status_code == 404
    history = dealer_admin.get(f"/records/sales_order/{order['id']}/history").get_json()["items"]
    moves = [(h["detail"]["transition"], h["detail"]["comment"]) for h in history if "detail" in h]
    assert moves[:2] == [("submit", "please"), ("approve", None)] and len(moves) == 6
    assert history[1]["action"] == "transition"
    assert history[1]["changes"]["status"] == {"from": "draft", "to": "submitted"}


@pytest.mark.usefixtures("pack")
def test_guard_comment_and_stale_version(app: Flask, database: Database, api: Api) -> None:
    dealer_admin = as_user(app, database, "east.admin@example.com")
    dealer = dealer_admin.get("/me").get_json()["partner"]
    empty = new_draft(dealer_admin, dealer, with_line=False)
    refused = fire(dealer_admin, empty, "submit")
    assert refused.status_code == 422, refused.get_json()
    error = refused.get_json()["error"]
    assert error["code"] == "transition_refused" and "line" in error["message"]
    assert dealer_admin.get(f"/records/sales_order/{empty['id']}").get_json()["status"] == "draft"
    missing = fire(dealer_admin, empty, "cancel")
    assert missing.status_code == 422
    assert missing.get_json()["error"]["details"][0]["field"] == "comment"
    stale = fire(dealer_admin, empty, "cancel", {"comment": "no", "version": 99})
    assert stale.status_code == 409 and stale.get_json()["error"]["code"] == "stale_version"
    bad_body = fire(dealer_admin, empty, "cancel", {"comment": "x", "colour": "red"})
    assert bad_body.status_code == 422
    ok = fire(dealer_admin, empty, "cancel", {"comment": "not needed", "version": empty["version"]})
    assert ok.status_code == 200 and ok.get_json()["record"]["status"] == "cancelled"


@pytest.mark.usefixtures("pack")
def test_the_credit_rule_refuses_a_submit_over_the_limit(api: Api) -> None:
    dealer = api.post("/records/dealer", {"name": "Small", "code": "S-1", "credit_limit": 5})
    order = new_draft(api, dealer.get_json()["id"])  # one line of 10: over a limit of 5
    refused = fire(api, order, "submit")
    assert refused.status_code == 422, refused.get_json()
    assert refused.get_json()["error"]["details"][0]["rule"] == "within_credit_limit"
    assert api.get(f"/records/sales_order/{order['id']}").get_json()["status"] == "draft"


@pytest.mark.usefixtures("pack")
def test_scope_decides_who_may_fire(app: Flask, database: Database, api: Api) -> None:
    north = as_user(app, database, "north.admin@example.com")
    east = as_user(app, database, "east.admin@example.com")
    order = new_draft(east, east.get("/me").get_json()["partner"])
    # Outside the north admin's tree: not even found.
    assert fire(north, order, "submit").status_code == 404
    assert north.get(f"/records/sales_order/{order['id']}/transitions").status_code == 404
    # East sales may update only its own orders: the role allows submit, the scope not.
    sales = as_user(app, database, "east.sales@example.com")
    assert sales.get(f"/records/sales_order/{order['id']}/transitions").get_json()["items"] == []
    assert fire(sales, order, "submit").status_code == 403


@pytest.mark.usefixtures("pack")
def test_direct_status_writes_and_locked_fields_are_refused(
    app: Flask, database: Database, api: Api
) -> None:
    submitted = order_in(api, "submitted")
    patched = api.patch(
        f"/records/sales_order/{submitted['id']}",
        {"version": submitted["version"], "status": "paid"},
    )
    assert patched.status_code == 422
    assert patched.get_json()["error"]["details"][0]["field"] == "status"
    locked = api.patch(
        f"/records/sales_order/{submitted['id']}",
        {"version": submitted["version"], "order_date": "2020-01-01"},
    )
    assert locked.status_code == 422
    assert [d["field"] for d in locked.get_json()["error"]["details"]] == ["order_date"]
    notes = api.patch(
        f"/records/sales_order/{submitted['id']}",
        {"version": submitted["version"], "internal_notes": "fine"},
    )
    assert notes.status_code == 200
    dealer = submitted["dealer"]
    created = api.post(
        "/records/sales_order", {"dealer": dealer, "order_date": "2026-12-01", "status": "paid"}
    )
    assert created.status_code == 422
    bulk = api.post(
        "/records/sales_order/bulk",
        {"records": [
            {"dealer": dealer, "order_date": "2026-12-01"},
            {"dealer": dealer, "order_date": "2026-12-01", "status": "shipped"},
        ]},
    )  # fmt: skip
    assert bulk.status_code == 422
    assert bulk.get_json()["error"]["details"][0]["field"].startswith("[1].status")
    fine = api.post("/records/sales_order", {"dealer": dealer, "order_date": "2026-12-01"})
    assert fine.get_json()["status"] == "draft"


def _order_flow(api: Api) -> dict[str, Any]:
    return api.get("/workflows/order_flow").get_json()["workflow"]


@pytest.mark.usefixtures("pack")
def test_a_change_with_records_in_flight(app: Flask, database: Database, api: Api) -> None:
    document = _order_flow(api)
    without = copy.deepcopy(document)
    without["states"] = [s for s in without["states"] if s["name"] != "received"]
    without["transitions"] = [
        t for t in without["transitions"] if "received" not in (t["to"], t["from"])
    ]
    refused = api.put("/workflows/order_flow", without)
    assert refused.status_code == 422, refused.get_json()
    error = refused.get_json()["error"]
    assert error["code"] == "incompatible_change"
    assert error["details"][0]["field"] == "/x-state-map/received"
    assert "record(s) are in 'received'" in error["details"][0]["message"]
    assert api.get("/workflows/order_flow").get_json()["version"] == 1
    received = order_in(api, "received")
    without["x-state-map"] = {"received": "shipped"}
    mapped = api.put("/workflows/order_flow", without)
    assert mapped.status_code == 200, mapped.get_json()
    moved = api.get(f"/records/sales_order/{received['id']}").get_json()
    assert moved["status"] == "shipped"
    history = api.get(f"/records/sales_order/{received['id']}/history").get_json()["items"]
    assert history[-1]["detail"]["mapped"] == {"from": "received", "to": "shipped"}
    versions = api.get("/workflows/order_flow/versions").get_json()["items"]
    assert [v["version"] for v in versions] == [2, 1]
    restored = api.post("/workflows/order_flow/versions/1/restore")
    assert restored.status_code == 200 and restored.get_json()["version"] == 3


def test_documents_are_checked(app: Flask, api: Api) -> None:
    from trellis.platform.runtime.packs import install_pack as install

    registry: MetaRegistry = app.extensions["trellis.registry"]
    with database_of(app).session() as session:
        install(session, registry, PACK, author_id=None)
        session.commit()
    document = _order_flow(api)
    document["x-name"] = "second"
    assert api.post("/workflows", document).status_code == 422  # one workflow per object
    broken = copy.deepcopy(_order_flow(api))
    broken["transitions"][0]["guard"] = "total_amount >"
    broken["transitions"][1]["roles"] = ["nobody"]
    broken["transitions"][2]["actions"] = [{"type": "send_notification"}]
    broken["states"][1]["locked"] = ["colour"]
    response = api.put("/workflows/order_flow", broken)
    assert response.status_code == 422
    fields = {d["field"] for d in response.get_json()["error"]["details"]}
    assert fields == {
        "/transitions/0/guard",
        "/transitions/1/roles/0",
        "/transitions/2/actions/0/type",
        "/states/1/locked/0",
    }
    guard = next(d for d in response.get_json()["error"]["details"] if d["field"].endswith("guard"))
    assert "offset" in guard and "column" in guard
    plain = as_user(app, database_of(app), "admin@example.com")
    del plain
    assert api.delete("/workflows/order_flow").status_code == 204
    assert api.get("/workflows").get_json()["items"][0]["name"] == "dealer_onboarding"


@pytest.mark.usefixtures("pack")
def test_dealer_onboarding(app: Flask, database: Database, api: Api) -> None:
    channel = as_user(app, database, "channel@example.com")
    finance = as_user(app, database, "finance@example.com")
    created = channel.post("/records/dealer", {"name": "新经销商", "code": "D-9001"})
    dealer = created.get_json()
    assert dealer["onboarding_status"] == "applied"
    base = f"/records/dealer/{dealer['id']}/transitions"
    assert channel.post(f"{base}/review", {}).status_code == 200
    assert finance.post(f"{base}/approve_credit", {}).status_code == 422  # no credit limit
    current = finance.get(f"/records/dealer/{dealer['id']}").get_json()
    finance.patch(f"/records/dealer/{dealer['id']}", {"version": current["version"],
                                                       "credit_limit": 50000})  # fmt: skip
    assert finance.post(f"{base}/approve_credit", {}).status_code == 200
    active = channel.post(f"{base}/activate", {})
    assert active.status_code == 200 and active.get_json()["record"]["active"] is True
    suspended = channel.post(f"{base}/suspend", {"comment": "late payments"})
    assert suspended.get_json()["record"]["active"] is False
    assert channel.post(f"{base}/terminate", {"comment": "x"}).status_code == 403


@pytest.mark.usefixtures("pack")
def test_two_transitions_racing_on_one_record(
    app: Flask, database: Database, api: Api, db_url: str
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("row locks race on PostgreSQL; SQLite serialises writers")
    submitted = order_in(api, "submitted")
    channel = as_user(app, database, "channel@example.com")
    results: list[int] = []
    barrier = threading.Barrier(2)

    def go(name: str, body: dict[str, Any]) -> None:
        client = Api(app.test_client(), channel.headers["Authorization"].split()[1])
        barrier.wait()
        results.append(fire(client, submitted, name, body).status_code)

    threads = [
        threading.Thread(target=go, args=("approve", {})),
        threading.Thread(target=go, args=("return_to_draft", {"comment": "redo"})),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [200, 409]
    with database.session() as session:
        count = session.execute(
            sa.text(
                "SELECT count(*) FROM record_history WHERE object_name = 'sales_order'"
                " AND record_id = :id AND action = 'transition'"
            ),
            {"id": submitted["id"]},
        ).scalar_one()
    assert count == 1
