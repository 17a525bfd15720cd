"""Storage evolution on populated objects, seen through the API and the physical table."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

from tests.conftest import Api
from tests.factories import dealer_definition, definition, field, order_definitions
from tests.platform.runtime.helpers import (
    all_rows,
    columns,
    create,
    define,
    detail_fields,
    detail_message,
    error_of,
    fetch,
    index_names,
    listing,
    raw_rows,
    redefine,
)
from trellis.extensions import Database

DEALERS = [
    {"name": "Acme", "level": "gold", "credit_limit": 1000},
    {"name": "Bolt", "level": "silver", "credit_limit": 250.5},
    {"name": "Cog", "level": None, "credit_limit": None},
    {"name": "Dyn", "level": "bronze", "credit_limit": 0},
]


def populate(api: Api) -> list[dict[str, Any]]:
    define(api, dealer_definition())
    made = [create(api, "dealer", dict(values)) for values in DEALERS]
    child = create(api, "dealer", {"name": "Eon", "parent": made[0]["id"]})
    return [*made, child]


def fields_only(rows: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    return [{"id": r["id"], **{n: r.get(n) for n in names}} for r in rows]


def item_definition(code: dict[str, Any]) -> dict[str, Any]:
    return definition("item", {"label": field("text", maxLength=40), "code": code})


def test_adding_a_field_keeps_every_row(api: Api, database: Database) -> None:
    made = populate(api)
    before = all_rows(api, "dealer")
    redefine(api, dealer_definition(email=field("email"), rank=field("integer")))
    after = all_rows(api, "dealer")
    assert len(after) == len(made)
    names = ["name", "level", "credit_limit", "parent"]
    assert fields_only(after, names) == fields_only(before, names)
    assert all(row["email"] is None and row["rank"] is None for row in after)
    assert [r["version"] for r in after] == [r["version"] for r in before]
    assert {"email", "rank"} <= set(columns(database, "obj_dealer"))

    updated = api.patch(f"/records/dealer/{made[1]['id']}", {"version": 1, "rank": 7})
    assert updated.status_code == 200, updated.get_json()
    assert fetch(api, "dealer", made[1]["id"])["rank"] == 7


def test_removing_a_field_archives_it_and_restoring_brings_the_data_back(
    api: Api, database: Database
) -> None:
    populate(api)
    before = all_rows(api, "dealer")
    without_level = dealer_definition()
    del without_level["properties"]["level"]
    assert redefine(api, without_level)["version"] == 2

    physical = columns(database, "obj_dealer")
    assert "level" not in physical and "_archived_v2_level" in physical
    assert all("level" not in row for row in all_rows(api, "dealer"))
    error_of(api.get("/records/dealer", query_string={"sort": "level"}), 400, "invalid_query")
    refused = api.post("/records/dealer", {"name": "Fox", "level": "gold"})
    assert "level" in detail_fields(error_of(refused, 422, "validation_failed"))
    # the archived values are still in the table
    archived = {r["id"]: r["_archived_v2_level"] for r in raw_rows(database, "obj_dealer")}
    assert archived == {r["id"]: r["level"] for r in before}

    restored = api.post("/objects/dealer/versions/1/restore")
    assert restored.status_code == 200, restored.get_json()
    physical = columns(database, "obj_dealer")
    assert "level" in physical and not any(c.startswith("_archived") for c in physical)
    after = all_rows(api, "dealer")
    names = ["name", "level", "credit_limit", "parent"]
    assert fields_only(after, names) == fields_only(before, names)
    gold = listing(api, "dealer", filter=[["level", "=", "gold"]])
    assert [r["name"] for r in gold["items"]] == ["Acme"]


def test_removing_and_restoring_a_unique_field_keeps_it_unique(
    api: Api, database: Database
) -> None:
    made = populate(api)
    without_name = dealer_definition()
    del without_name["properties"]["name"]
    without_name["required"] = []
    redefine(api, without_name)
    assert not any("name" in ix for ix in index_names(database, "obj_dealer"))
    create(api, "dealer", {"level": "gold"})

    assert api.post("/objects/dealer/versions/1/restore").status_code == 200
    assert fetch(api, "dealer", made[0]["id"])["name"] == "Acme"
    assert "ux_obj_dealer_name" in index_names(database, "obj_dealer")
    error_of(api.post("/records/dealer", {"name": "Acme"}), 409, "duplicate")


def test_removing_a_lookup_and_restoring_it(api: Api, database: Database) -> None:
    made = populate(api)
    without_parent = dealer_definition()
    del without_parent["properties"]["parent"]
    redefine(api, without_parent)
    assert "parent" not in columns(database, "obj_dealer")
    # With the field gone the reference no longer blocks a delete of its target.
    assert api.post("/objects/dealer/versions/1/restore").status_code == 200
    assert fetch(api, "dealer", made[4]["id"])["parent"] == made[0]["id"]
    error_of(api.delete(f"/records/dealer/{made[0]['id']}"), 409, "referenced")


def test_incompatible_type_change_is_refused_naming_the_records(
    api: Api, database: Database
) -> None:
    define(api, item_definition(field("text", maxLength=20)))
    good = create(api, "item", {"label": "a", "code": "123"})
    bad = create(api, "item", {"label": "b", "code": "abc"})
    half = create(api, "item", {"label": "c", "code": "1.5"})
    empty = create(api, "item", {"label": "d"})
    before = all_rows(api, "item")
    physical_before = columns(database, "obj_item")

    response = api.put("/objects/item", item_definition(field("integer")))
    error = error_of(response, 422, "incompatible_change")
    assert detail_fields(error) == {"code"}
    message = detail_message(error, "code")
    assert "2 existing record(s)" in message
    named = {int(n) for n in re.findall(r"\d+", message.split("ids", 1)[1])}
    assert named == {bad["id"], half["id"]}
    assert good["id"] not in named and empty["id"] not in named

    current = api.get("/objects/item").get_json()
    assert current["version"] == 1
    assert current["definition"]["properties"]["code"]["x-type"] == "text"
    assert len(api.get("/objects/item/versions").get_json()["items"]) == 1
    assert all_rows(api, "item") == before
    assert set(columns(database, "obj_item")) == set(physical_before)
    assert isinstance(columns(database, "obj_item")["code"]["type"], sa.String)


def test_compatible_type_change_converts_values(api: Api, database: Database) -> None:
    define(api, item_definition(field("text", maxLength=20)))
    made = [
        create(api, "item", {"label": str(i), "code": code})
        for i, code in enumerate(["7", " 42", "1000", None])
    ]
    redefine(api, item_definition(field("integer")))
    assert [fetch(api, "item", r["id"])["code"] for r in made] == [7, 42, 1000, None]
    physical = columns(database, "obj_item")
    assert isinstance(physical["code"]["type"], sa.Integer)
    assert "_archived_v2_code" in physical
    big = listing(api, "item", filter=[["code", ">", 40]], sort="code")
    assert [r["code"] for r in big["items"]] == [42, 1000]
    error_of(api.post("/records/item", {"label": "x", "code": "8"}), 422, "validation_failed")
    assert create(api, "item", {"label": "x", "code": 8})["code"] == 8

    # and back again: integers become text
    redefine(api, item_definition(field("text", maxLength=20)))
    assert [fetch(api, "item", r["id"])["code"] for r in made] == ["7", "42", "1000", None]


def test_type_change_keeps_a_unique_field_unique(api: Api, database: Database) -> None:
    unique = {"x-unique": True}
    define(api, item_definition(field("text", maxLength=20, **unique)))
    made = [create(api, "item", {"label": "a", "code": code}) for code in ("1", "2")]
    redefine(api, item_definition(field("integer", **unique)))
    assert [fetch(api, "item", r["id"])["code"] for r in made] == [1, 2]
    assert "ux_obj_item_code" in index_names(database, "obj_item")
    error_of(api.post("/records/item", {"label": "b", "code": 2}), 409, "duplicate")
    assert create(api, "item", {"label": "c", "code": 3})["code"] == 3


def test_narrowing_a_picklist_below_the_data_is_refused(api: Api) -> None:
    populate(api)
    gold = [r["id"] for r in all_rows(api, "dealer") if r["level"] == "gold"]
    narrower = dealer_definition()
    narrower["properties"]["level"]["enum"] = ["silver", "bronze"]
    error = error_of(api.put("/objects/dealer", narrower), 422, "incompatible_change")
    message = detail_message(error, "level")
    assert {int(n) for n in re.findall(r"\d+", message.split("ids", 1)[1])} == set(gold)
    assert api.get("/objects/dealer").get_json()["version"] == 1
    wider = dealer_definition()
    wider["properties"]["level"]["enum"] = ["gold", "silver", "bronze", "platinum"]
    assert redefine(api, wider)["version"] == 2
    assert create(api, "dealer", {"name": "Plat", "level": "platinum"})["level"] == "platinum"


def test_max_length_can_widen_but_not_shrink_below_the_data(api: Api, database: Database) -> None:
    define(api, item_definition(field("text", maxLength=10)))
    short = create(api, "item", {"label": "a", "code": "abc"})
    error_of(api.post("/records/item", {"label": "b", "code": "x" * 11}), 422)

    redefine(api, item_definition(field("text", maxLength=200)))
    assert columns(database, "obj_item")["code"]["type"].length == 200
    long = create(api, "item", {"label": "b", "code": "x" * 150})
    assert fetch(api, "item", short["id"])["code"] == "abc"

    error = error_of(
        api.put("/objects/item", item_definition(field("text", maxLength=20))),
        422,
        "incompatible_change",
    )
    assert str(long["id"]) in detail_message(error, "code")
    assert api.get("/objects/item").get_json()["version"] == 2
    assert columns(database, "obj_item")["code"]["type"].length == 200
    assert fetch(api, "item", long["id"])["code"] == "x" * 150

    api.delete(f"/records/item/{long['id']}")  # deleted rows count too: they can be restored
    error_of(api.put("/objects/item", item_definition(field("text", maxLength=20))), 422)
    api.patch(f"/records/item/{short['id']}", {"version": 1, "code": "abcdefgh"})
    api.post(f"/records/item/{long['id']}/restore")
    patched = api.patch(f"/records/item/{long['id']}", {"version": 3, "code": "y" * 15})
    assert patched.status_code == 200, patched.get_json()
    redefine(api, item_definition(field("text", maxLength=20)))
    assert columns(database, "obj_item")["code"]["type"].length == 20
    assert fetch(api, "item", short["id"])["code"] == "abcdefgh"


def test_unique_with_duplicates_is_refused(api: Api, database: Database) -> None:
    define(api, item_definition(field("text", maxLength=20)))
    first = create(api, "item", {"label": "a", "code": "same"})
    create(api, "item", {"label": "b", "code": "same"})
    create(api, "item", {"label": "c", "code": "other"})
    unique = item_definition(field("text", maxLength=20, **{"x-unique": True}))

    error = error_of(api.put("/objects/item", unique), 422, "incompatible_change")
    assert "same" in detail_message(error, "code")
    assert api.get("/objects/item").get_json()["version"] == 1
    assert not any(ix.startswith("ux_") for ix in index_names(database, "obj_item"))
    create(api, "item", {"label": "d", "code": "other"})

    api.delete(f"/records/item/{first['id']}")
    error_of(api.put("/objects/item", unique), 422, "incompatible_change")  # "other" twice
    rows = all_rows(api, "item")
    api.delete(f"/records/item/{rows[-1]['id']}")
    assert redefine(api, unique)["version"] == 2
    assert "ux_obj_item_code" in index_names(database, "obj_item")
    error_of(api.post("/records/item", {"label": "e", "code": "same"}), 409, "duplicate")


def test_changing_a_table_other_tables_refer_to(api: Api, database: Database) -> None:
    populate(api)
    order, line = order_definitions()
    define(api, order)
    define(api, line)
    dealer = all_rows(api, "dealer")[0]
    sale = create(
        api, "sales_order", {"dealer": dealer["id"], "lines": [{"sku": "A", "quantity": 1}]}
    )

    wider = dealer_definition(email=field("email"))
    wider["properties"]["name"]["maxLength"] = 300
    redefine(api, wider)
    assert columns(database, "obj_dealer")["name"]["type"].length == 300
    again = fetch(api, "sales_order", sale["id"])
    assert again["dealer"] == dealer["id"] and len(again["lines"]) == 1
    error_of(api.delete(f"/records/dealer/{dealer['id']}"), 409, "referenced")
    error_of(api.post("/records/sales_order", {"dealer": 10_000}), 422, "validation_failed")


def test_reference_cannot_change_target(api: Api) -> None:
    define(api, dealer_definition())
    define(api, definition("region", {"title": field("text")}))
    moved = dealer_definition()
    moved["properties"]["parent"]["x-target"] = "region"
    error = error_of(api.put("/objects/dealer", moved), 422, "incompatible_change")
    assert detail_fields(error) == {"parent"}
    assert api.get("/objects/dealer").get_json()["version"] == 1
