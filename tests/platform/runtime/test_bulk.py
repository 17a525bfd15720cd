"""POST /records/<object>/bulk: many records, one transaction, through the same pipeline."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api
from tests.factories import dealer_definition, order_definitions
from tests.platform.runtime.helpers import all_rows, define, error_of, raw_rows
from trellis.extensions import Database


def _setup(api: Api) -> None:
    define(api, dealer_definition())
    order, line = order_definitions()
    define(api, order)
    define(api, line)


def test_bulk_creates_every_record_with_history(api: Api, database: Database) -> None:
    _setup(api)
    response = api.post(
        "/records/dealer/bulk", [{"name": f"D{i}", "credit_limit": i} for i in range(50)]
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["created"] == 50 and body["errors"] == []
    assert [r["name"] for r in body["items"]] == [f"D{i}" for i in range(50)]
    assert len(all_rows(api, "dealer")) == 50
    history = [r for r in raw_rows(database, "record_history") if r["object_name"] == "dealer"]
    assert sorted(r["record_id"] for r in history) == sorted(r["id"] for r in body["items"])


def test_a_bad_row_refuses_the_whole_batch_naming_it(api: Api, database: Database) -> None:
    _setup(api)
    rows: list[Any] = [{"name": "A"}, {"name": "B", "credit_limit": -1}, {"name": "A"}, "x"]
    error = error_of(api.post("/records/dealer/bulk", {"records": rows}), 422, "validation_failed")
    indexes = {d["index"] for d in error["details"]}
    assert indexes == {1, 2, 3}, error
    assert any(d["field"] == "[1].credit_limit" for d in error["details"])
    assert any("already taken" in d["message"] for d in error["details"] if d["index"] == 2)
    assert all_rows(api, "dealer") == []
    assert raw_rows(database, "record_history") == []


def test_skip_invalid_keeps_the_valid_ones(api: Api) -> None:
    _setup(api)
    existing = api.post("/records/dealer", {"name": "Taken"}).get_json()
    rows = [{"name": "Taken"}, {"name": "Fine"}, {"name": 5}, {"name": "Also fine"}]
    response = api.post("/records/dealer/bulk?mode=skip_invalid", rows)
    assert response.status_code == 201
    body = response.get_json()
    assert body["created"] == 2
    assert [e["index"] for e in body["errors"]] == [0, 2]
    assert body["errors"][0]["code"] == "duplicate"
    names = sorted(r["name"] for r in all_rows(api, "dealer"))
    assert names == ["Also fine", "Fine", "Taken"] and existing["id"]


def test_bulk_orders_with_lines_and_references(api: Api) -> None:
    _setup(api)
    dealer = api.post("/records/dealer", {"name": "Acme"}).get_json()["id"]
    orders = [
        {"dealer": dealer, "lines": [{"quantity": 1}, {"quantity": 2, "sku": "X"}]},
        {"dealer": dealer, "lines": [{"quantity": 0}]},
        {"dealer": 999},
    ]
    error = error_of(api.post("/records/sales_order/bulk", orders), 422)
    fields = {d["field"] for d in error["details"]}
    assert fields == {"[1].lines[0].quantity", "[2].dealer"}, error
    assert all_rows(api, "sales_order") == [] and all_rows(api, "order_line") == []
    response = api.post("/records/sales_order/bulk?mode=skip_invalid", orders)
    body = response.get_json()
    assert body["created"] == 1
    written = body["items"][0]
    assert [line["quantity"] for line in written["lines"]] == [1, 2]
    assert written["number"].startswith("SO-")
    assert len(all_rows(api, "order_line")) == 2  # the bad order's line was never written


def test_bulk_refuses_bad_envelopes(api: Api) -> None:
    _setup(api)
    error_of(api.post("/records/dealer/bulk", []), 400)
    error_of(api.post("/records/dealer/bulk", {"name": "x"}), 400)
    error_of(api.post("/records/dealer/bulk", [{"name": f"n{i}"} for i in range(1001)]), 400)
    error_of(api.post("/records/dealer/bulk?mode=sometimes", [{"name": "x"}]), 400)
    assert all_rows(api, "dealer") == []
