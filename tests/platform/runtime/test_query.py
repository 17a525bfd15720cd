"""Listing records: filters (every operator), sorts, field selection and keyset paging."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.conftest import Api
from tests.factories import dealer_definition, field
from tests.platform.runtime.helpers import (
    create,
    define,
    detail_fields,
    error_of,
    has_table,
    ids,
    listing,
)
from trellis.extensions import Database

TAGS = {"type": "string", "enum": ["a", "b", "c"]}

COLUMNS = ("name", "level", "credit_limit", "since", "tags", "active", "rank")
TABLE: list[tuple[Any, ...]] = [
    ("Acme Corp", "gold", 1000, "2020-01-01", ["a"], True, 1),
    ("Bolt", "silver", 500, "2021-06-01", ["a", "b"], False, 2),
    ("Cog", None, None, None, None, None, None),
    ("Dyn", "bronze", 500, "2019-03-03", ["b"], True, 3),
    ("Eon", "gold", 1000, "2020-01-01", [], False, 3),
    ("Fox 100% Pure", "silver", None, "2022-02-02", ["c"], True, -4),
    ("Gale_x", "bronze", 250, "2018-12-31", ["a", "c"], None, 0),
    ("Hex", "gold", 500, None, None, True, 10),
    ("Ion", None, 0, "2020-01-02", ["b", "c"], False, None),
    ("Jet", "silver", 750.5, "2023-07-07", ["a"], True, 5),
    ("Kite", "gold", None, "2020-01-01", None, None, 1),
    ("Lux", "bronze", 1000, "2017-05-05", ["c"], False, 2),
]
ROWS: list[dict[str, Any]] = [dict(zip(COLUMNS, row, strict=True)) for row in TABLE]


@pytest.fixture
def dealers(api: Api) -> list[dict[str, Any]]:
    define(
        api,
        dealer_definition(
            since=field("date", "Since"),
            tags=field("multipicklist", "Tags", items=TAGS),
            active=field("boolean", "Active"),
            rank=field("integer", "Rank"),
        ),
    )
    made = [create(api, "dealer", dict(row)) for row in ROWS]
    # one record points at another, and a deleted one never shows
    api.patch(f"/records/dealer/{made[1]['id']}", {"version": 1, "parent": made[0]["id"]})
    made[1] = api.get(f"/records/dealer/{made[1]['id']}").get_json()
    gone = create(api, "dealer", {"name": "Gone", "credit_limit": 500, "level": "gold"})
    assert api.delete(f"/records/dealer/{gone['id']}").status_code == 204
    return made


def _lt(a: Any, b: Any) -> bool:
    return a is not None and a < b


FILTER_CASES: list[tuple[list[Any], Any]] = [
    (["level", "=", "gold"], lambda r: r["level"] == "gold"),
    (["level", "!=", "gold"], lambda r: r["level"] != "gold"),
    (["credit_limit", "=", 500], lambda r: r["credit_limit"] == 500),
    (["credit_limit", "!=", 500], lambda r: r["credit_limit"] != 500),
    (["credit_limit", "<", 500], lambda r: _lt(r["credit_limit"], 500)),
    (
        ["credit_limit", "<=", 500],
        lambda r: r["credit_limit"] is not None and r["credit_limit"] <= 500,
    ),
    (
        ["credit_limit", ">", 500],
        lambda r: r["credit_limit"] is not None and r["credit_limit"] > 500,
    ),
    (
        ["credit_limit", ">=", 750.5],
        lambda r: r["credit_limit"] is not None and r["credit_limit"] >= 750.5,
    ),
    (["credit_limit", "in", [0, 1000]], lambda r: r["credit_limit"] in (0, 1000)),
    (["credit_limit", "not_in", [0, 1000]], lambda r: r["credit_limit"] not in (0, 1000)),
    (
        ["credit_limit", "between", [250, 750.5]],
        lambda r: r["credit_limit"] is not None and 250 <= r["credit_limit"] <= 750.5,
    ),
    (["credit_limit", "is_null", True], lambda r: r["credit_limit"] is None),
    (["credit_limit", "is_null", False], lambda r: r["credit_limit"] is not None),
    (["level", "in", ["silver", "bronze"]], lambda r: r["level"] in ("silver", "bronze")),
    (["level", "not_in", ["silver"]], lambda r: r["level"] != "silver"),
    (["level", "is_null", True], lambda r: r["level"] is None),
    (["name", "contains", "o"], lambda r: "o" in r["name"].lower()),
    (["name", "contains", "CORP"], lambda r: "corp" in r["name"].lower()),
    (["name", "contains", "100%"], lambda r: "100%" in r["name"]),
    (["name", "contains", "%"], lambda r: "%" in r["name"]),
    (["name", "contains", "_"], lambda r: "_" in r["name"]),
    (["name", "startswith", "Ge"], lambda r: r["name"].startswith("Ge")),
    (["name", "startswith", "g"], lambda r: r["name"].lower().startswith("g")),
    (["name", "startswith", "_"], lambda r: r["name"].startswith("_")),
    (["name", "<", "Dyn"], lambda r: r["name"] < "Dyn"),
    (["name", "between", ["Bolt", "Eon"]], lambda r: "Bolt" <= r["name"] <= "Eon"),
    (["name", "=", "Hex"], lambda r: r["name"] == "Hex"),
    (["since", "=", "2020-01-01"], lambda r: r["since"] == "2020-01-01"),
    (["since", ">", "2020-01-01"], lambda r: r["since"] is not None and r["since"] > "2020-01-01"),
    (
        ["since", "between", ["2019-01-01", "2020-12-31"]],
        lambda r: r["since"] is not None and "2019-01-01" <= r["since"] <= "2020-12-31",
    ),
    (["since", "is_null", True], lambda r: r["since"] is None),
    (["tags", "contains", "a"], lambda r: r["tags"] is not None and "a" in r["tags"]),
    (["tags", "contains", "c"], lambda r: r["tags"] is not None and "c" in r["tags"]),
    (["tags", "is_null", True], lambda r: r["tags"] is None),
    (["active", "=", True], lambda r: r["active"] is True),
    (["active", "!=", True], lambda r: r["active"] is not True),
    (["active", "is_null", True], lambda r: r["active"] is None),
    (["rank", "<", 0], lambda r: _lt(r["rank"], 0)),
    (["rank", ">=", 3], lambda r: r["rank"] is not None and r["rank"] >= 3),
    (["rank", "not_in", [1, 2, 3]], lambda r: r["rank"] not in (1, 2, 3)),
    (["rank", "between", [-4, 0]], lambda r: r["rank"] is not None and -4 <= r["rank"] <= 0),
]


def test_every_filter_operator(api: Api, dealers: list[dict[str, Any]]) -> None:
    by_id = {d["id"]: d for d in dealers}
    for clause, predicate in FILTER_CASES:
        page = listing(api, "dealer", filter=[clause], limit=500)
        expected = [d["id"] for d in dealers if predicate(d)]
        assert ids(page) == expected, (clause, [by_id[i]["name"] for i in ids(page)])
        assert page["next_cursor"] is None
    used = {c[1] for c, _ in FILTER_CASES}
    assert used == {
        "=",
        "!=",
        "<",
        "<=",
        ">",
        ">=",
        "in",
        "not_in",
        "contains",
        "startswith",
        "is_null",
        "between",
    }


def test_filters_combine_and_reach_system_fields(api: Api, dealers: list[dict[str, Any]]) -> None:
    both = listing(api, "dealer", filter=[["level", "=", "gold"], ["credit_limit", ">=", 1000]])
    assert [d["name"] for d in both["items"]] == ["Acme Corp", "Eon"]
    single = listing(api, "dealer", filter=["level", "=", "gold"])  # one clause, unwrapped
    assert [d["name"] for d in single["items"]] == ["Acme Corp", "Eon", "Hex", "Kite"]
    child = listing(api, "dealer", filter=[["parent", "=", dealers[0]["id"]]])
    assert [d["name"] for d in child["items"]] == ["Bolt"]
    assert ids(listing(api, "dealer", filter=[["parent", "is_null", False]])) == [dealers[1]["id"]]

    some = [dealers[2]["id"], dealers[5]["id"]]
    assert ids(listing(api, "dealer", filter=[["id", "in", some]])) == some
    assert ids(listing(api, "dealer", filter=[["id", ">", dealers[-2]["id"]]])) == [
        dealers[-1]["id"]
    ]
    assert ids(listing(api, "dealer", filter=[["version", "=", 2]])) == [dealers[1]["id"]]
    stamp = dealers[5]["created_at"]
    later = listing(api, "dealer", filter=[["created_at", ">", stamp]], limit=500)
    assert ids(later) == [d["id"] for d in dealers[6:]]
    assert ids(listing(api, "dealer", filter=[["created_at", "<=", stamp]], limit=500)) == [
        d["id"] for d in dealers[:6]
    ]
    assert ids(
        listing(api, "dealer", filter=[["created_by", "=", dealers[0]["created_by"]]], limit=500)
    ) == [d["id"] for d in dealers]
    assert listing(api, "dealer", filter=[])["items"][0]["name"] == "Acme Corp"


def expected_order(database: Database, rows: list[dict[str, Any]], sort: str) -> list[int]:
    """The order the database gives: NULLs where it puts them (largest on PostgreSQL)."""
    nulls_largest = database.engine.dialect.name == "postgresql"
    keys = [(part.lstrip("-"), part.startswith("-")) for part in sort.split(",") if part]
    if not any(name == "id" for name, _ in keys):
        keys.append(("id", keys[-1][1] if keys else False))
    ordered = list(rows)
    for name, descending in reversed(keys):  # stable sorts, least significant key first
        nulls_after = descending != nulls_largest
        if descending:
            null_key = (0,) if nulls_after else (2,)
            ordered.sort(
                key=lambda r, n=name, k=null_key: (1, r[n]) if r[n] is not None else k,
                reverse=True,
            )
        else:
            null_key = (1,) if nulls_after else (-1,)
            ordered.sort(key=lambda r, n=name, k=null_key: (0, r[n]) if r[n] is not None else k)
    return [r["id"] for r in ordered]


def walk(api: Api, limit: int, **params: Any) -> list[int]:
    seen: list[int] = []
    cursor = None
    for _ in range(50):
        page = listing(
            api, "dealer", limit=limit, **params, **({"cursor": cursor} if cursor else {})
        )
        assert len(page["items"]) <= limit
        seen.extend(ids(page))
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
        assert len(page["items"]) == limit
    raise AssertionError("paging did not end")


SORTS = [
    "-credit_limit,name",
    "credit_limit",
    "-credit_limit",
    "level,-credit_limit",
    "-level,rank",
    "since",
    "-since,-rank",
    "active,name",
    "-rank",
    "name",
    "-id",
    "-updated_at",
    "level,id,name",
]


def test_keyset_paging_visits_every_record_once(
    api: Api, dealers: list[dict[str, Any]], database: Database
) -> None:
    for sort in SORTS:
        expected = expected_order(database, dealers, sort.replace(",id,name", ",id"))
        full = listing(api, "dealer", sort=sort, limit=500)
        assert ids(full) == expected, sort
        for limit in (2, 5):
            assert walk(api, limit, sort=sort) == expected, (sort, limit)
    default = walk(api, 4)
    assert default == sorted(d["id"] for d in dealers)


def test_paging_with_a_filter_and_fields(
    api: Api, dealers: list[dict[str, Any]], database: Database
) -> None:
    clause = json.dumps([["credit_limit", "not_in", [1000]]])
    matching = [d for d in dealers if d["credit_limit"] != 1000]
    expected = expected_order(database, matching, "-credit_limit,name")
    assert walk(api, 2, sort="-credit_limit,name", filter=clause, fields="name") == expected
    page = listing(api, "dealer", sort="-credit_limit,name", fields="name,created_at", limit=2)
    assert [set(item) for item in page["items"]] == [{"id", "name", "created_at"}] * 2
    assert page["items"][0]["created_at"].endswith("Z")


def test_paging_is_stable_under_inserts(api: Api, dealers: list[dict[str, Any]]) -> None:
    first = listing(api, "dealer", sort="name", limit=4)
    assert [d["name"] for d in first["items"]] == ["Acme Corp", "Bolt", "Cog", "Dyn"]
    create(api, "dealer", {"name": "Aaron"})  # sorts before the cursor: not seen
    create(api, "dealer", {"name": "Zed"})  # sorts after it: seen
    rest = walk_from(api, first["next_cursor"], sort="name")
    assert rest == [d["name"] for d in dealers[4:]] + ["Zed"]


def walk_from(api: Api, cursor: str, **params: Any) -> list[str]:
    names: list[str] = []
    while cursor:
        page = listing(api, "dealer", limit=3, cursor=cursor, **params)
        names.extend(item["name"] for item in page["items"])
        cursor = page["next_cursor"]
    return names


def test_fields_selection(api: Api, dealers: list[dict[str, Any]], database: Database) -> None:
    page = listing(api, "dealer", fields="name,credit_limit", limit=2)
    assert page["items"] == [
        {"id": dealers[0]["id"], "name": "Acme Corp", "credit_limit": 1000},
        {"id": dealers[1]["id"], "name": "Bolt", "credit_limit": 500},
    ]
    page = listing(api, "dealer", fields=" since , tags ", limit=1, sort="-rank")
    first = next(d for d in dealers if d["id"] == expected_order(database, dealers, "-rank")[0])
    assert page["items"] == [{"id": first["id"], "since": first["since"], "tags": first["tags"]}]
    full = listing(api, "dealer", limit=1)["items"][0]
    assert full == dealers[0]


def _cursor(values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


BAD_QUERIES: list[tuple[dict[str, Any], str]] = [
    ({"filter": json.dumps([["colour", "=", "red"]])}, "colour"),
    ({"filter": json.dumps([["name", "like", "A%"]])}, "like"),
    ({"filter": json.dumps([["credit_limit", "contains", "5"]])}, "contains"),
    ({"filter": json.dumps([["level", ">", "gold"]])}, ">"),
    ({"filter": json.dumps([["tags", "=", "a"]])}, "="),
    ({"filter": '[["name", "="'}, "JSON"),
    ({"filter": "name=Acme"}, "JSON"),
    ({"filter": json.dumps({"name": "Acme"})}, "list"),
    ({"filter": json.dumps("name")}, "list"),
    ({"filter": json.dumps([["name"]])}, "[field, op, value]"),
    ({"filter": json.dumps([["name", "=", "x", "y"]])}, "[field, op, value]"),
    ({"filter": json.dumps([[1, "=", "x"]])}, "string"),
    ({"filter": json.dumps([["credit_limit", ">", "lots"]])}, "number"),
    ({"filter": json.dumps([["rank", "=", 1.5]])}, "whole"),
    ({"filter": json.dumps([["active", "=", "yes"]])}, "true"),
    ({"filter": json.dumps([["since", ">", "last year"]])}, "date"),
    ({"filter": json.dumps([["credit_limit", "=", None]])}, "is_null"),
    ({"filter": json.dumps([["credit_limit", "is_null", "yes"]])}, "is_null"),
    ({"filter": json.dumps([["level", "in", []]])}, "in"),
    ({"filter": json.dumps([["level", "in", "gold"]])}, "in"),
    ({"filter": json.dumps([["rank", "between", [1]]])}, "between"),
    ({"filter": json.dumps([["name", "contains", ""]])}, "contains"),
    ({"filter": json.dumps([["name", "contains", 5]])}, "contains"),
    ({"filter": json.dumps([["id", "=", "1"]])}, "whole"),
    ({"filter": json.dumps([["id", "=", 2**70]])}, "id"),
    ({"filter": json.dumps([["rank", "in", [1, 2**64]]])}, "rank"),
    ({"filter": json.dumps([["name", "=", "a\u0000"]])}, "name"),
    ({"filter": json.dumps([["name", "contains", "\u0000"]])}, "name"),
    ({"filter": json.dumps([["created_at", ">", "soon"]])}, "date-time"),
    ({"filter": json.dumps([["deleted_at", "is_null", False]])}, "deleted_at"),
    ({"filter": json.dumps([["level", "=", "x"]] * 51)}, "50"),
    ({"sort": "colour"}, "colour"),
    ({"sort": "tags"}, "tags"),
    ({"sort": "deleted_at"}, "deleted_at"),
    ({"sort": "-credit_limit,nope"}, "nope"),
    ({"limit": "0"}, "limit"),
    ({"limit": "100000"}, "limit"),
    ({"limit": "-1"}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"limit": "1.5"}, "limit"),
    ({"cursor": "!!!"}, "cursor"),
    ({"cursor": "bm90IGpzb24"}, "cursor"),
    ({"cursor": _cursor({"id": 1})}, "cursor"),
    ({"cursor": _cursor([1, 2])}, "cursor"),
    ({"cursor": _cursor(["x"])}, "cursor"),
    ({"cursor": _cursor([2**70])}, "cursor"),
    ({"cursor": _cursor([1]), "sort": "-credit_limit"}, "cursor"),
    ({"cursor": _cursor(["lots", 1]), "sort": "-credit_limit"}, "cursor"),
    ({"cursor": _cursor([[1], 1]), "sort": "name"}, "cursor"),
    ({"fields": "name,colour"}, "colour"),
    ({"fields": "deleted_at"}, "deleted_at"),
]


def test_bad_queries_are_400_naming_the_problem(api: Api, dealers: list[dict[str, Any]]) -> None:
    for params, mention in BAD_QUERIES:
        response = api.get("/records/dealer", query_string=params)
        error = error_of(response, 400, "invalid_query")
        text = json.dumps(error)
        assert mention in text, (params, error)
        if "filter" in params and mention not in ("JSON", "list", "50"):
            assert detail_fields(error) == {"filter[0]"} or "filter[1]" in detail_fields(error), (
                error
            )


def test_cursor_from_another_sort_is_refused(api: Api, dealers: list[dict[str, Any]]) -> None:
    by_name = listing(api, "dealer", sort="name", limit=2)["next_cursor"]
    by_id = listing(api, "dealer", limit=2)["next_cursor"]
    error_of(
        api.get("/records/dealer", query_string={"sort": "-credit_limit,name", "cursor": by_id}),
        400,
    )
    error_of(api.get("/records/dealer", query_string={"sort": "rank", "cursor": by_name}), 400)


INJECTIONS = [
    "'; DROP TABLE obj_dealer; --",
    '" OR 1=1 --',
    "Robert'); DELETE FROM obj_dealer; --",
    "%' OR '1'='1",
]


def test_sql_injection_is_refused_or_plain_data(
    api: Api, dealers: list[dict[str, Any]], database: Database
) -> None:
    for text in INJECTIONS:
        for op in ("=", "contains", "startswith", "!=", "in"):
            value = [text] if op == "in" else text
            page = listing(api, "dealer", filter=[["name", op, value]], limit=500)
            expected = [d["id"] for d in dealers] if op == "!=" else []
            assert ids(page) == expected, (op, text)
    for text in INJECTIONS:
        for params in (
            {"filter": json.dumps([[text, "=", "x"]])},
            {"filter": json.dumps([["name", text, "x"]])},
            {"sort": text},
            {"sort": f"name,{text}"},
            {"fields": f"name,{text}"},
        ):
            error_of(api.get("/records/dealer", query_string=params), 400, "invalid_query")
        error_of(api.get(f"/records/{text}"), 404)
        record = create(api, "dealer", {"name": text[:100]})
        assert api.get(f"/records/dealer/{record['id']}").get_json()["name"] == text[:100]
        found = listing(api, "dealer", filter=[["name", "=", text[:100]]])
        assert ids(found) == [record["id"]]
    assert has_table(database, "obj_dealer")
    assert len(listing(api, "dealer", limit=500)["items"]) == len(dealers) + len(INJECTIONS)
