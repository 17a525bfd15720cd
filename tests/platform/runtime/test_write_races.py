"""State changes under real concurrency: delete, restore and references.

Each change must happen only from the state it was decided from: ten parallel deletes of
one order leave one history row and one version bump, and an order created while its
dealer is being deleted never ends up pointing at a deleted dealer.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.conftest import Api
from tests.factories import dealer_definition, order_definitions
from tests.platform.runtime.concurrency import in_threads
from tests.platform.runtime.helpers import create, define, error_of, fetch, raw_rows
from trellis.exceptions import ReferencedRecord, ValidationFailed
from trellis.extensions import Database
from trellis.platform.runtime.records import RecordService


@pytest.fixture
def orders(api: Api) -> dict[str, Any]:
    define(api, dealer_definition())
    order, line = order_definitions()
    define(api, order)
    define(api, line)
    dealer = create(api, "dealer", {"name": "Acme"})
    placed = create(
        api, "sales_order", {"dealer": dealer["id"], "lines": [{"quantity": 1}, {"quantity": 2}]}
    )
    return {"dealer": dealer, "order": placed}


CREATE_DELETE = ["create", "delete"]


def _history(database: Database, object_name: str, record_id: int) -> list[dict[str, Any]]:
    return [
        r
        for r in raw_rows(database, "record_history")
        if r["object_name"] == object_name and r["record_id"] == record_id
    ]


def test_ten_parallel_deletes_one_wins(
    app: Flask, admin_token: str, orders: dict[str, Any], database: Database
) -> None:
    order_id = orders["order"]["id"]
    statuses = in_threads(
        app,
        admin_token,
        10,
        lambda api, _: api.delete(f"/records/sales_order/{order_id}").status_code,
    )
    assert Counter(statuses)[204] == 1, statuses
    assert set(statuses) <= {204, 404, 409, 503}, statuses
    row = next(r for r in raw_rows(database, "obj_sales_order") if r["id"] == order_id)
    assert row["version"] == 2 and row["deleted_at"] is not None
    assert [h["action"] for h in _history(database, "sales_order", order_id)] == CREATE_DELETE
    lines = {r["id"]: r for r in raw_rows(database, "obj_order_line")}
    for line in orders["order"]["lines"]:
        assert [h["action"] for h in _history(database, "order_line", line["id"])] == CREATE_DELETE
        assert lines[line["id"]]["version"] == 2


def test_ten_parallel_restores_one_wins(
    app: Flask, api: Api, admin_token: str, orders: dict[str, Any], database: Database
) -> None:
    order_id = orders["order"]["id"]
    assert api.delete(f"/records/sales_order/{order_id}").status_code == 204
    statuses = in_threads(
        app,
        admin_token,
        10,
        lambda client, _: client.post(f"/records/sales_order/{order_id}/restore").status_code,
    )
    assert Counter(statuses)[200] == 1, statuses
    assert set(statuses) <= {200, 409, 503}, statuses
    assert fetch(api, "sales_order", order_id)["version"] == 3
    assert [h["action"] for h in _history(database, "sales_order", order_id)] == [
        "create",
        "delete",
        "restore",
    ]
    assert len(fetch(api, "sales_order", order_id)["lines"]) == 2


def test_delete_carries_the_version_it_read(api: Api, orders: dict[str, Any]) -> None:
    dealer = create(api, "dealer", {"name": "Versioned"})
    path = f"/records/dealer/{dealer['id']}"
    assert api.patch(path, {"version": 1, "level": "gold"}).status_code == 200
    error_of(api.delete(f"{path}?version=1"), 409, "stale_version")
    error_of(api.delete(path, headers={"If-Match": '"1"'}), 409, "stale_version")
    error_of(api.delete(f"{path}?version=abc"), 400)
    assert fetch(api, "dealer", dealer["id"])["version"] == 2  # nothing changed
    assert api.delete(path, headers={"If-Match": '"2"'}).status_code == 204
    error_of(api.delete(f"{path}?version=3"), 404)


def test_orders_racing_a_dealer_delete_never_point_at_a_deleted_dealer(
    app: Flask, admin_token: str, orders: dict[str, Any], database: Database
) -> None:
    for attempt in range(5):
        api = Api(app.test_client(), admin_token)
        dealer_id = create(api, "dealer", {"name": f"Racer {attempt}"})["id"]

        def work(client: Api, index: int, dealer_id: int = dealer_id) -> int:
            if index == 0:
                return client.delete(f"/records/dealer/{dealer_id}").status_code
            return client.post("/records/sales_order", {"dealer": dealer_id}).status_code

        statuses = in_threads(app, admin_token, 8, work)
        assert statuses[0] in (204, 409, 503), statuses
        dealer = next(r for r in raw_rows(database, "obj_dealer") if r["id"] == dealer_id)
        live_orders = [
            r
            for r in raw_rows(database, "obj_sales_order")
            if r["dealer"] == dealer_id and r["deleted_at"] is None
        ]
        if dealer["deleted_at"] is not None:
            assert live_orders == [], (statuses, live_orders)


def _service(session: Any, app: Flask) -> RecordService:
    return RecordService(session, app.extensions["trellis.registry"])


def test_a_reference_check_holds_the_target_until_commit(
    app: Flask, orders: dict[str, Any], database: Database
) -> None:
    """Order first: the delete waits for the order's transaction, then sees the order."""
    if database.dialect != "postgresql":
        pytest.skip("SQLite serialises writers: there is no interleaving to test")
    dealer_id = orders["dealer"]["id"]
    engine = database.engine
    outcome: dict[str, Any] = {}
    with database.session() as first:
        _service(first, app).registry.ensure_current(first)
        _service(first, app).create("sales_order", {"dealer": dealer_id})

        def delete_dealer() -> None:
            with database.session() as second:
                try:
                    _service(second, app).delete("dealer", dealer_id)
                    second.commit()
                    outcome["deleted"] = True
                except ReferencedRecord:
                    outcome["deleted"] = False

        thread = threading.Thread(target=delete_dealer)
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive(), "the delete did not wait for the order's lock"
        first.commit()
        thread.join(10)
    assert outcome == {"deleted": False}
    with engine.connect() as connection:
        deleted = connection.execute(
            sa.text("SELECT deleted_at FROM obj_dealer WHERE id = :id"), {"id": dealer_id}
        ).scalar()
    assert deleted is None


def test_a_delete_in_flight_makes_the_reference_check_wait_and_fail(
    app: Flask, orders: dict[str, Any], database: Database
) -> None:
    """Delete first: the order's check waits for it, then finds the dealer deleted."""
    if database.dialect != "postgresql":
        pytest.skip("SQLite serialises writers: there is no interleaving to test")
    dealer = orders["dealer"]["id"]
    outcome: dict[str, Any] = {}
    with database.session() as first:
        service = RecordService(first, app.extensions["trellis.registry"])
        service.registry.ensure_current(first)
        service.delete("sales_order", orders["order"]["id"])  # the dealer is then unreferenced
        service.delete("dealer", dealer)

        def place_order() -> None:
            with database.session() as second:
                try:
                    RecordService(second, app.extensions["trellis.registry"]).create(
                        "sales_order", {"dealer": dealer}
                    )
                    second.commit()
                    outcome["created"] = True
                except ValidationFailed as exc:
                    outcome["created"] = exc.details

        thread = threading.Thread(target=place_order)
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive(), "the reference check did not wait for the delete"
        first.commit()
        thread.join(10)
    assert outcome["created"] == [{"field": "dealer", "message": f"no dealer with id {dealer}"}]
