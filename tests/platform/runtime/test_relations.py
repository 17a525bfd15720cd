"""Lookups as foreign keys, master-detail writes, and autonumbers, through the API."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.conftest import Api
from tests.factories import dealer_definition, definition, field, order_definitions
from tests.platform.runtime.helpers import (
    all_rows,
    create,
    define,
    detail_fields,
    detail_message,
    error_of,
    fetch,
    raw_rows,
)
from trellis.extensions import Database

YEAR = dt.datetime.now(dt.UTC).year


@pytest.fixture
def orders(api: Api) -> Api:
    define(api, dealer_definition())
    order, line = order_definitions()
    define(api, order)
    define(api, line)
    return api


def contact_definition(on_delete: str | None = None) -> dict[str, Any]:
    extra = {"x-on-delete": on_delete} if on_delete else {}
    return definition(
        "contact",
        {
            "full_name": field("text"),
            "dealer": field("lookup", "Dealer", **{"x-target": "dealer", **extra}),
        },
    )


# --- lookups -------------------------------------------------------------------------


def test_lookup_must_point_at_a_live_record(api: Api) -> None:
    define(api, dealer_definition())
    define(api, contact_definition())
    alive = create(api, "dealer", {"name": "Acme"})
    gone = create(api, "dealer", {"name": "Gone"})
    assert api.delete(f"/records/dealer/{gone['id']}").status_code == 204

    for target in (9999, gone["id"]):
        error = error_of(
            api.post("/records/contact", {"full_name": "x", "dealer": target}),
            422,
            "validation_failed",
        )
        assert detail_fields(error) == {"dealer"}
    error = error_of(api.post("/records/contact", {"dealer": 0}), 422)
    assert "dealer" in detail_fields(error)
    assert all_rows(api, "contact") == []

    contact = create(api, "contact", {"full_name": "x", "dealer": alive["id"]})
    assert contact["dealer"] == alive["id"]
    stale = api.patch(f"/records/contact/{contact['id']}", {"version": 1, "dealer": gone["id"]})
    assert detail_fields(error_of(stale, 422)) == {"dealer"}
    assert fetch(api, "contact", contact["id"])["dealer"] == alive["id"]


def test_deleting_a_referenced_record_is_refused(api: Api) -> None:
    define(api, dealer_definition())
    define(api, contact_definition())
    acme = create(api, "dealer", {"name": "Acme"})
    contact = create(api, "contact", {"full_name": "x", "dealer": acme["id"]})

    error = error_of(api.delete(f"/records/dealer/{acme['id']}"), 409, "referenced")
    assert detail_fields(error) == {"contact.dealer"}
    assert fetch(api, "dealer", acme["id"])["version"] == 1
    assert fetch(api, "contact", contact["id"]) == contact
    assert [
        h["action"] for h in api.get(f"/records/dealer/{acme['id']}/history").get_json()["items"]
    ] == ["create"]

    # a self-reference blocks too, but a record may point at itself
    child = create(api, "dealer", {"name": "Child", "parent": acme["id"]})
    api.delete(f"/records/contact/{contact['id']}")
    error = error_of(api.delete(f"/records/dealer/{acme['id']}"), 409, "referenced")
    assert detail_fields(error) == {"dealer.parent"}
    loner = create(api, "dealer", {"name": "Loner"})
    api.patch(f"/records/dealer/{loner['id']}", {"version": 1, "parent": loner["id"]})
    assert api.delete(f"/records/dealer/{loner['id']}").status_code == 204

    # once the referrer is gone the delete goes through
    assert api.delete(f"/records/dealer/{child['id']}").status_code == 204
    assert api.delete(f"/records/dealer/{acme['id']}").status_code == 204
    # and a restore needs its references alive
    error_of(api.post(f"/records/dealer/{child['id']}/restore"), 409)
    assert api.post(f"/records/dealer/{acme['id']}/restore").status_code == 200
    assert api.post(f"/records/dealer/{child['id']}/restore").status_code == 200


def test_set_null_clears_the_referrers(api: Api) -> None:
    define(api, dealer_definition())
    define(api, contact_definition("set_null"))
    acme = create(api, "dealer", {"name": "Acme"})
    other = create(api, "dealer", {"name": "Other"})
    first = create(api, "contact", {"full_name": "a", "dealer": acme["id"]})
    second = create(api, "contact", {"full_name": "b", "dealer": acme["id"]})
    untouched = create(api, "contact", {"full_name": "c", "dealer": other["id"]})

    assert api.delete(f"/records/dealer/{acme['id']}").status_code == 204
    for contact in (first, second):
        now = fetch(api, "contact", contact["id"])
        assert now["dealer"] is None and now["version"] == 2
        history = api.get(f"/records/contact/{contact['id']}/history").get_json()["items"]
        assert history[-1]["action"] == "update" and history[-1]["version"] == 2
        assert history[-1]["changes"] == {"dealer": {"from": acme["id"], "to": None}}
    assert fetch(api, "contact", untouched["id"]) == untouched
    error_of(api.get(f"/records/dealer/{acme['id']}"), 404)


# --- master-detail -------------------------------------------------------------------


def test_parent_and_children_are_written_together(orders: Api) -> None:
    api = orders
    dealer = create(api, "dealer", {"name": "Acme"})
    body = {
        "dealer": dealer["id"],
        "order_date": "2024-05-01",
        "lines": [{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 5}],
    }
    created = create(api, "sales_order", body)
    assert created["version"] == 1 and created["status"] == "draft"
    lines = created["lines"]
    assert [(line["sku"], line["quantity"]) for line in lines] == [("A", 2), ("B", 5)]
    assert all(line["sales_order"] == created["id"] and line["version"] == 1 for line in lines)

    got = fetch(api, "sales_order", created["id"])
    assert got["lines"] == lines
    assert got["number"] == created["number"]
    assert fetch(api, "order_line", lines[0]["id"])["sku"] == "A"

    # an empty list is fine; children set their own parent even when sent one
    bare = create(api, "sales_order", {"dealer": dealer["id"], "lines": []})
    assert fetch(api, "sales_order", bare["id"])["lines"] == []
    other = create(
        api,
        "sales_order",
        {"dealer": dealer["id"], "lines": [{"quantity": 1, "sales_order": bare["id"]}]},
    )
    assert other["lines"][0]["sales_order"] == other["id"]


def test_one_bad_child_creates_nothing(orders: Api, database: Database) -> None:
    api = orders
    dealer = create(api, "dealer", {"name": "Acme"})
    body = {
        "dealer": dealer["id"],
        "lines": [
            {"sku": "A", "quantity": 2},
            {"sku": "B", "quantity": 0},
            {"sku": "C", "quantity": 1},
            {"sku": "D", "colour": "red", "quantity": "many"},
            "not a line",
        ],
    }
    error = error_of(api.post("/records/sales_order", body), 422, "validation_failed")
    fields = detail_fields(error)
    assert {"lines[1].quantity", "lines[3].colour", "lines[3].quantity", "lines[4]"} <= fields
    assert not any(f.startswith(("lines[0]", "lines[2]")) for f in fields)
    assert raw_rows(database, "obj_sales_order") == []
    assert raw_rows(database, "obj_order_line") == []

    missing = api.post("/records/sales_order", {"dealer": dealer["id"], "lines": [{"sku": "A"}]})
    assert "lines[0].quantity" in detail_fields(error_of(missing, 422))
    error_of(api.post("/records/sales_order", {"dealer": dealer["id"], "lines": {"sku": "A"}}), 422)
    bad_parent = api.post("/records/sales_order", {"dealer": 999, "lines": [{"quantity": 1}]})
    assert detail_fields(error_of(bad_parent, 422)) == {"dealer"}
    assert (
        raw_rows(database, "obj_sales_order") == [] and raw_rows(database, "obj_order_line") == []
    )

    good = create(api, "sales_order", {"dealer": dealer["id"], "lines": [{"quantity": 1}]})
    assert good["number"].startswith(f"SO-{YEAR}-")


def test_children_cannot_be_changed_through_the_parent(orders: Api) -> None:
    api = orders
    dealer = create(api, "dealer", {"name": "Acme"})
    sale = create(api, "sales_order", {"dealer": dealer["id"], "lines": [{"quantity": 1}]})
    response = api.patch(f"/records/sales_order/{sale['id']}", {"version": 1, "lines": []})
    assert "lines" in detail_fields(error_of(response, 422))
    assert len(fetch(api, "sales_order", sale["id"])["lines"]) == 1


def test_deleting_the_parent_deletes_and_restores_the_children(orders: Api) -> None:
    api = orders
    dealer = create(api, "dealer", {"name": "Acme"})
    sale = create(
        api,
        "sales_order",
        {"dealer": dealer["id"], "lines": [{"quantity": 1}, {"quantity": 2}, {"quantity": 3}]},
    )
    first, second, third = (line["id"] for line in sale["lines"])
    # a line deleted on its own before stays deleted when the parent comes back
    assert api.delete(f"/records/order_line/{third}").status_code == 204
    other = create(api, "sales_order", {"dealer": dealer["id"], "lines": [{"quantity": 9}]})

    assert api.delete(f"/records/sales_order/{sale['id']}").status_code == 204
    for path in (
        f"/records/sales_order/{sale['id']}",
        f"/records/order_line/{first}",
        f"/records/order_line/{second}",
    ):
        error_of(api.get(path), 404, "not_found")
    assert [r["id"] for r in all_rows(api, "order_line")] == [other["lines"][0]["id"]]
    error_of(api.delete(f"/records/dealer/{dealer['id']}"), 409, "referenced")  # `other` is live

    restored = api.post(f"/records/sales_order/{sale['id']}/restore")
    assert restored.status_code == 200, restored.get_json()
    body = restored.get_json()
    assert [line["id"] for line in body["lines"]] == [first, second]
    assert body["version"] == 3
    assert fetch(api, "order_line", first)["quantity"] == 1
    error_of(api.get(f"/records/order_line/{third}"), 404)
    history = api.get(f"/records/order_line/{first}/history").get_json()["items"]
    assert [h["action"] for h in history] == ["create", "delete", "restore"]


def test_child_of_a_deleted_parent_cannot_be_restored_alone(orders: Api) -> None:
    api = orders
    dealer = create(api, "dealer", {"name": "Acme"})
    sale = create(api, "sales_order", {"dealer": dealer["id"], "lines": [{"quantity": 1}]})
    line_id = sale["lines"][0]["id"]
    api.delete(f"/records/sales_order/{sale['id']}")
    error_of(api.post(f"/records/order_line/{line_id}/restore"), 409)
    error_of(api.get(f"/records/order_line/{line_id}"), 404)


# --- autonumber ----------------------------------------------------------------------


def test_autonumber_counts_up_and_is_read_only(orders: Api) -> None:
    api = orders
    dealer = create(api, "dealer", {"name": "Acme"})
    numbers = [create(api, "sales_order", {"dealer": dealer["id"]})["number"] for _ in range(3)]
    assert numbers == [f"SO-{YEAR}-0001", f"SO-{YEAR}-0002", f"SO-{YEAR}-0003"]

    sent = api.post("/records/sales_order", {"dealer": dealer["id"], "number": "SO-1999-0001"})
    assert detail_message(error_of(sent, 422, "validation_failed"), "number")
    first = all_rows(api, "sales_order")[0]
    patched = api.patch(f"/records/sales_order/{first['id']}", {"version": 1, "number": "X"})
    assert "number" in detail_fields(error_of(patched, 422))
    assert fetch(api, "sales_order", first["id"])["number"] == numbers[0]
    # a failed insert does not skip a number
    assert create(api, "sales_order", {"dealer": dealer["id"]})["number"] == f"SO-{YEAR}-0004"
    error_of(api.post("/records/sales_order", {"dealer": 424242}), 422)
    assert create(api, "sales_order", {"dealer": dealer["id"]})["number"] == f"SO-{YEAR}-0005"


def test_autonumber_without_date_parts(api: Api) -> None:
    define(
        api,
        definition(
            "ticket",
            {"ref": field("autonumber", **{"x-format": "T{000000}"}), "title": field("text")},
        ),
    )
    assert [create(api, "ticket", {"title": str(i)})["ref"] for i in range(2)] == [
        "T000001",
        "T000002",
    ]
