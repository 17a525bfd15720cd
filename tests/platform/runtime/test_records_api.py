"""Records through the REST API: create, validate, read, update, delete, restore, history."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.conftest import Api
from tests.factories import dealer_definition, definition, field
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

SYSTEM_OUT = {"id", "version", "created_at", "created_by", "updated_at", "updated_by", "owner_id"}


def everything_definition() -> dict[str, Any]:
    """An object with one field of most stored types."""
    return definition(
        "thing",
        {
            "title": field("text", maxLength=20, **{"x-unique": True}),
            "notes": field("textarea"),
            "count": field("integer", minimum=0, maximum=1000),
            "rank": field("integer"),
            "ratio": field("number"),
            "price": field("currency", minimum=0),
            "share": field("percent"),
            "active": field("boolean"),
            "born": field("date"),
            "seen_at": field("datetime"),
            "size": field("picklist", enum=["s", "m", "l"]),
            "tags": field("multipicklist", items={"type": "string", "enum": ["x", "y", "z"]}),
            "mail": field("email"),
            "phone": field("phone"),
            "site": field("url"),
            "extra": field("json"),
        },
        required=["title"],
    )


FULL = {
    "title": "Widget",
    "notes": "long text " * 50,
    "count": 12,
    "rank": -(2**63),
    "ratio": 0.25,
    "price": 19.99,
    "share": 12.5,
    "active": True,
    "born": "2020-02-29",
    "seen_at": "2024-05-06T07:08:09Z",
    "size": "m",
    "tags": ["x", "z"],
    "mail": "a@example.com",
    "phone": "+44 20 7946 0000",
    "site": "https://example.com/a?b=c",
    "extra": {"nested": [1, "two", None]},
}


@pytest.fixture
def things(api: Api) -> Api:
    define(api, everything_definition())
    return api


def test_create_returns_the_record(things: Api, admin_id: int) -> None:
    api = things
    response = api.post("/records/thing", FULL)
    assert response.status_code == 201
    record = response.get_json()
    assert isinstance(record["id"], int) and record["version"] == 1
    assert {k: record[k] for k in FULL} == FULL
    assert set(record) == SYSTEM_OUT | set(FULL)
    assert record["created_by"] == record["updated_by"] == record["owner_id"] == admin_id
    created = dt.datetime.fromisoformat(record["created_at"])
    assert abs(created - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)
    assert fetch(api, "thing", record["id"]) == record

    # the datetime is normalised to UTC
    other = create(api, "thing", {"title": "Other", "seen_at": "2024-05-06T09:08:09+02:00"})
    assert other["seen_at"] == "2024-05-06T07:08:09Z"
    minimal = create(api, "thing", {"title": "Min"})
    assert all(minimal[k] is None for k in FULL if k != "title")
    assert fetch(api, "thing", minimal["id"]) == minimal


@pytest.fixture
def admin_id(database: Database) -> int:
    from tests.conftest import ADMIN_EMAIL
    from trellis.platform.runtime.models import User

    with database.session() as session:
        return session.query(User).filter_by(email=ADMIN_EMAIL).one().id


INVALID_VALUES: list[tuple[str, Any]] = [
    ("count", "12"),
    ("count", 1.5),
    ("count", -1),
    ("count", 1001),
    ("count", True),
    ("ratio", "0.5"),
    ("price", -0.01),
    ("price", "cheap"),
    ("active", "yes"),
    ("born", "2020-02-30"),
    ("born", "yesterday"),
    ("seen_at", "not a time"),
    ("size", "xl"),
    ("tags", ["x", "w"]),
    ("tags", "x"),
    ("mail", "not-an-email"),
    ("title", "t" * 21),
    ("title", 5),
    ("notes", ["a"]),
]


def test_invalid_values_are_refused_per_field(things: Api) -> None:
    api = things
    for name, value in INVALID_VALUES:
        error = error_of(
            api.post("/records/thing", {"title": "T", name: value}), 422, "validation_failed"
        )
        assert any(f.split(".")[0] == name for f in detail_fields(error)), (name, value, error)
    # all at once: every problem is listed
    bad = {"title": "T", "count": "x", "size": "xl", "active": 3, "colour": "red"}
    error = error_of(api.post("/records/thing", bad), 422, "validation_failed")
    assert {"count", "size", "active", "colour"} <= detail_fields(error)
    assert "not a field" in detail_message(error, "colour")
    assert all_rows(api, "thing") == []


def test_required_and_platform_fields(things: Api) -> None:
    api = things
    error = error_of(api.post("/records/thing", {"count": 1}), 422)
    assert detail_fields(error) == {"title"}
    error_of(api.post("/records/thing", {"title": None}), 422)
    system = {
        "id": 5,
        "version": 3,
        "created_at": "2020-01-01T00:00:00Z",
        "owner_id": 1,
        "deleted_at": None,
    }
    for key, value in system.items():
        error = error_of(api.post("/records/thing", {"title": "T", key: value}), 422)
        assert key in detail_fields(error), key
    assert all_rows(api, "thing") == []


def test_patch_with_version(things: Api) -> None:
    api = things
    record = create(api, "thing", {"title": "Widget", "count": 1, "size": "s"})
    path = f"/records/thing/{record['id']}"

    response = api.patch(path, {"version": 1, "count": 2, "size": None})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["version"] == 2 and body["count"] == 2 and body["size"] is None
    assert body["title"] == "Widget"
    assert fetch(api, "thing", record["id"]) == body

    stale = api.patch(path, {"version": 1, "count": 99})
    assert "version" in detail_fields(error_of(stale, 409, "stale_version"))
    assert fetch(api, "thing", record["id"]) == body

    for payload in (
        {"count": 3},
        {"version": "2", "count": 3},
        {"version": None},
        {"version": True},
    ):
        error = error_of(api.patch(path, payload), 422, "validation_failed")
        assert "version" in detail_fields(error)
    bad = api.patch(path, {"version": 2, "count": -5, "colour": "red"})
    assert {"count", "colour"} <= detail_fields(error_of(bad, 422))
    error_of(api.patch(path, {"version": 2, "title": None}), 422)  # required
    error_of(api.patch(path, {"version": 2, "id": 7}), 422)
    error_of(api.patch(path, {"version": 2, "updated_at": "2020-01-01T00:00:00Z"}), 422)
    assert fetch(api, "thing", record["id"]) == body

    same = api.patch(path, {"version": 2, "count": 2})  # nothing changes: no new version
    assert same.status_code == 200 and same.get_json()["version"] == 2
    error_of(api.patch("/records/thing/9999", {"version": 1, "count": 1}), 404)


def test_delete_restore_and_history(things: Api, admin_id: int, database: Database) -> None:
    api = things
    record = create(api, "thing", {"title": "Widget", "count": 1})
    path = f"/records/thing/{record['id']}"
    api.patch(path, {"version": 1, "count": 5, "size": "l"})

    deleted = api.delete(path)
    assert deleted.status_code == 204 and deleted.data == b""
    error_of(api.get(path), 404, "not_found")
    while_deleted = api.get(f"{path}/history").get_json()["items"]
    assert [h["action"] for h in while_deleted] == ["create", "update", "delete"]
    error_of(api.delete(path), 404)
    error_of(api.patch(path, {"version": 3, "count": 1}), 404)
    assert all_rows(api, "thing") == []
    assert [r["deleted_at"] is not None for r in raw_rows(database, "obj_thing")] == [True]

    restored = api.post(f"{path}/restore")
    assert restored.status_code == 200
    body = restored.get_json()
    assert body["version"] == 4 and body["count"] == 5 and body["size"] == "l"
    assert fetch(api, "thing", record["id"]) == body
    error_of(api.post(f"{path}/restore"), 409, "conflict")  # not deleted
    error_of(api.post("/records/thing/9999/restore"), 404)

    history = api.get(f"{path}/history")
    assert history.status_code == 200
    items = history.get_json()["items"]
    assert [(h["action"], h["version"]) for h in items] == [
        ("create", 1),
        ("update", 2),
        ("delete", 3),
        ("restore", 4),
    ]
    assert items[0]["changes"] == {
        "title": {"from": None, "to": "Widget"},
        "count": {"from": None, "to": 1},
    }
    assert items[1]["changes"] == {
        "count": {"from": 1, "to": 5},
        "size": {"from": None, "to": "l"},
    }
    assert all(h["changed_by"] == admin_id and h["changed_at"] for h in items)
    error_of(api.get("/records/thing/9999/history"), 404)


def test_unique_values(things: Api) -> None:
    api = things
    first = create(api, "thing", {"title": "Widget"})
    error = error_of(api.post("/records/thing", {"title": "Widget"}), 409, "duplicate")
    assert detail_fields(error) == {"title"}
    second = create(api, "thing", {"title": "Gadget"})
    taken = api.patch(f"/records/thing/{second['id']}", {"version": 1, "title": "Widget"})
    error_of(taken, 409, "duplicate")
    assert fetch(api, "thing", second["id"])["title"] == "Gadget"
    # a record may keep its own value
    assert (
        api.patch(
            f"/records/thing/{first['id']}", {"version": 1, "title": "Widget", "count": 1}
        ).status_code
        == 200
    )

    # a deleted record's value may be reused, and then the deleted one cannot come back
    api.delete(f"/records/thing/{first['id']}")
    reuse = create(api, "thing", {"title": "Widget"})
    assert reuse["id"] != first["id"]
    error_of(api.post(f"/records/thing/{first['id']}/restore"), 409, "duplicate")
    error_of(api.get(f"/records/thing/{first['id']}"), 404)
    assert {r["title"] for r in all_rows(api, "thing")} == {"Widget", "Gadget"}


def test_defaults_are_applied(api: Api) -> None:
    doc = definition(
        "task",
        {
            "title": field("text"),
            "state": field("picklist", enum=["open", "done"], default="open"),
            "points": field("integer", default=3),
        },
    )
    define(api, doc)
    made = create(api, "task", {"title": "t"})
    assert made["state"] == "open" and made["points"] == 3
    explicit = create(api, "task", {"title": "u", "state": "done", "points": None})
    assert explicit["state"] == "done" and explicit["points"] is None


def test_values_out_of_storage_range_are_refused(things: Api) -> None:
    """What a column cannot hold is a 422, on every database — never a 500."""
    api = things
    for name, value in [
        ("rank", 2**63),
        ("rank", -(2**63) - 1),
        ("price", 10**18),
        ("price", -(10**19)),
        ("price", 1e300),
        ("title", "nul\u0000byte"),
        ("notes", "\u0000"),
        ("phone", "1\u00002"),
    ]:
        response = api.post("/records/thing", {"title": "T", name: value})
        assert response.status_code == 422, (name, value, response.status_code, response.get_json())
        assert name in detail_fields(error_of(response, 422))
    record = create(api, "thing", {"title": "T"})
    patch = api.patch(f"/records/thing/{record['id']}", {"version": 1, "rank": 2**64})
    assert detail_fields(error_of(patch, 422)) == {"rank"}
    # a number too large for a double is not a number; NaN and Infinity are not JSON
    raw = {"Content-Type": "application/json", **api.headers}
    huge = api.client.post(
        "/api/v1/records/thing", data='{"title": "U", "ratio": 1e400}', headers=raw
    )
    assert detail_fields(error_of(huge, 422)) == {"ratio"}
    for constant in ("NaN", "Infinity", "-Infinity"):
        body = '{"title": "U", "ratio": ' + constant + "}"
        error_of(
            api.client.post("/api/v1/records/thing", data=body, headers=raw), 400, "bad_request"
        )
    assert [r["id"] for r in all_rows(api, "thing")] == [record["id"]]
    # the extremes that fit are kept
    big = create(api, "thing", {"title": "Big", "price": 99_999_999_999.99, "rank": 2**63 - 1})
    again = fetch(api, "thing", big["id"])
    assert again["price"] == 99_999_999_999.99 and again["rank"] == 2**63 - 1


def test_ids_out_of_range(api: Api) -> None:
    define(api, dealer_definition())
    for value in (2**63, 10**30, -1, 0, 1.5, "1"):
        response = api.post("/records/dealer", {"name": "x", "parent": value})
        assert detail_fields(error_of(response, 422)) == {"parent"}, value
    for record_id in ("9223372036854775808", "99999999999999999999999", "0", "-1", "abc", "1.0"):
        for path in ("", "/history"):
            error_of(api.get(f"/records/dealer/{record_id}{path}"), 404)
        error_of(api.patch(f"/records/dealer/{record_id}", {"version": 1, "name": "y"}), 404)
        error_of(api.delete(f"/records/dealer/{record_id}"), 404)
        error_of(api.post(f"/records/dealer/{record_id}/restore"), 404)


def test_unicode_round_trips(things: Api) -> None:
    api = things
    text = "经销商 — ünïcödé 🚀"
    record = create(api, "thing", {"title": text[:20], "notes": text * 3})
    again = fetch(api, "thing", record["id"])
    assert again["title"] == text[:20] and again["notes"] == text * 3
