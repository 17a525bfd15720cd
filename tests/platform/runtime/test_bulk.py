"""POST /records/<object>/bulk: many records, one transaction, through the same pipeline."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api
from tests.factories import dealer_definition, definition, field, order_definitions
from tests.platform.runtime.helpers import (
    all_rows,
    create,
    define,
    error_of,
    raw_rows,
    redefine,
)
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
    (repeat,) = [d for d in error["details"] if d["index"] == 2]
    assert "already taken by record 0" in repeat["message"] and repeat["duplicate_of"] == 0
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


def _every_kind() -> dict[str, Any]:
    return definition(
        "sample",
        {
            "title": field("text", "Title", **{"x-unique": True}),
            "body": field("textarea", "Body"),
            "count": field("integer", "Count"),
            "ratio": field("number", "Ratio"),
            "amount": field("currency", "Amount", **{"x-scale": 2}),
            "done": field("boolean", "Done"),
            "due": field("date", "Due"),
            "at": field("datetime", "At"),
            "kinds": field("multipicklist", "Kinds"),
            "extra": field("json", "Extra"),
        },
        required=["title"],
    )


def test_a_batch_stores_every_kind_of_value_as_a_single_create_does(
    api: Api, database: Database
) -> None:
    # On PostgreSQL a batch travels as one JSON document: each value must land exactly as
    # the single create (one bound parameter per column) stores it.
    define(api, _every_kind())
    values: dict[str, Any] = {
        "body": 'quotes " \\ and 中文, a tab\tand a newline\n',
        "count": 9_007_199_254_740_993,  # beyond a float's integers
        "ratio": 0.1,
        "amount": 12345678901234.57,
        "done": False,
        "due": "2026-02-28",
        "at": "2026-02-28T23:59:58Z",
        "kinds": ["b", "a"],
        "extra": {"nested": [1, "two", None], "flag": True},
    }
    single = create(api, "sample", {"title": "single", **values})
    response = api.post(
        "/records/sample/bulk",
        [{"title": "bulk 1", **values}, {"title": "bulk 2"}, {"title": "bulk 3", **values}],
    )
    assert response.status_code == 201, response.get_json()
    items = response.get_json()["items"]
    stored = {r["title"]: r for r in raw_rows(database, "obj_sample")}
    for title in ("bulk 1", "bulk 3"):
        assert {k: stored[title][k] for k in values} == {k: stored["single"][k] for k in values}
    assert {k: v for k, v in stored["bulk 2"].items() if k in values} == dict.fromkeys(values)
    for record in (items[0], items[2]):
        assert {k: record[k] for k in values} == {k: single[k] for k in values}
    assert [r["id"] for r in items] == sorted(r["id"] for r in items)
    assert {r["title"]: r["id"] for r in items} == {
        t: stored[t]["id"] for t in ("bulk 1", "bulk 2", "bulk 3")
    }
    history = {
        r["record_id"]: r["changes"]
        for r in raw_rows(database, "record_history")
        if r["object_name"] == "sample"
    }
    assert history[items[0]["id"]] == {
        k: [None, v] for k, v in items[0].items() if k in values or k == "title"
    }
    assert history[items[1]["id"]] == {"title": [None, "bulk 2"]}


def test_a_changed_definition_is_written_with_its_new_columns(api: Api, database: Database) -> None:
    # The write path keeps its statements per definition version: after a change, single
    # and bulk creates write (and check) the new field.
    define(api, dealer_definition())
    api.post("/records/dealer/bulk", [{"name": "A"}, {"name": "B"}])
    create(api, "dealer", {"name": "C"})
    redefine(api, dealer_definition(code=field("text", "Code", **{"x-unique": True})))
    created = create(api, "dealer", {"name": "D", "code": "d"})
    assert created["code"] == "d"
    response = api.post("/records/dealer/bulk", [{"name": "E", "code": "e"}, {"name": "F"}])
    assert response.status_code == 201, response.get_json()
    assert [r.get("code") for r in response.get_json()["items"]] == ["e", None]
    taken = api.post("/records/dealer/bulk", [{"name": "G", "code": "d"}])
    assert error_of(taken, 422)["details"][0]["field"] == "[0].code"
    codes = {r["name"]: r["code"] for r in raw_rows(database, "obj_dealer")}
    assert codes == {"A": None, "B": None, "C": None, "D": "d", "E": "e", "F": None}


def test_a_batch_document_is_the_json_the_standard_library_would_write() -> None:
    """The rows of a batch statement go through orjson; what it refuses (an integer past
    64 bits, a time with a zone) falls back to ``json.dumps``: the same text either way."""
    import datetime as dt
    import json
    from decimal import Decimal

    from trellis.platform.runtime.records.pipeline import _json_of, json_document

    moment = dt.datetime(2026, 12, 3, 8, 30, 15, 120, tzinfo=dt.UTC)
    rows = [
        {"at": moment, "day": dt.date(2026, 1, 2), "amount": Decimal("12.50"), "n": None},
        {"name": "华东", "flag": True, "big": 2**70, "t": dt.time(1, 2, tzinfo=dt.UTC)},
    ]
    assert json.loads(json_document(rows, _json_of)) == json.loads(
        json.dumps(rows, default=_json_of)
    )
    assert json.loads(json_document(rows[:1], _json_of)) == [
        {"at": "2026-12-03T08:30:15.000120+00:00", "day": "2026-01-02", "amount": "12.50",
         "n": None}
    ]  # fmt: skip
