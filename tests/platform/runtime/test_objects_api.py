"""Metadata through the REST API: create, validate, change, version and restore objects."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.conftest import ADMIN_EMAIL, Api
from tests.factories import dealer_definition, definition, field
from tests.platform.runtime.helpers import (
    columns,
    define,
    detail_fields,
    detail_message,
    error_of,
    has_table,
    object_names,
    redefine,
)
from trellis.extensions import Database
from trellis.platform.runtime.identity import UserService
from trellis.platform.runtime.identity.tokens import issue_token
from trellis.platform.runtime.models import User
from trellis.platform.runtime.registry import MetaRegistry

SYSTEM = {
    "id",
    "version",
    "created_at",
    "created_by",
    "updated_at",
    "updated_by",
    "owner_id",
    "deleted_at",
}


def admin_id(database: Database) -> int:
    with database.session() as session:
        user = session.query(User).filter_by(email=ADMIN_EMAIL).one()
        return user.id


def test_create_object(api: Api, database: Database) -> None:
    document = dealer_definition()
    response = api.post("/objects", document)
    assert response.status_code == 201
    body = response.get_json()
    assert body == {"name": "dealer", "version": 1, "definition": document}

    listed = api.get("/objects").get_json()["items"]
    assert listed == [{"name": "dealer", "label": document["x-label"], "version": 1, "fields": 4}]
    got = api.get("/objects/dealer")
    assert got.status_code == 200
    assert got.get_json() == {"name": "dealer", "version": 1, "definition": document}

    physical = columns(database, "obj_dealer")
    assert set(physical) == SYSTEM | {"name", "level", "credit_limit", "parent"}


def _bad(mutate: Any) -> dict[str, Any]:
    document = dealer_definition()
    mutate(document)
    return document


def _set(path: list[str], value: Any) -> Any:
    def mutate(document: dict[str, Any]) -> None:
        target = document
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _delete(path: list[str]) -> Any:
    def mutate(document: dict[str, Any]) -> None:
        target = document
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


def text_without_length(**keywords: Any) -> dict[str, Any]:
    """A text field that leaves its length to the platform's default."""
    prop = field("text", **keywords)
    del prop["maxLength"]
    return prop


def _add_field(name: str, prop: dict[str, Any]) -> Any:
    return _set(["properties", name], prop)


INVALID_DEFINITIONS: list[tuple[str, Any, set[str]]] = [
    ("name with capitals", _set(["x-name"], "Dealer"), {"/x-name"}),
    ("name with a dash", _set(["x-name"], "big-dealer"), {"/x-name"}),
    ("reserved object name", _set(["x-name"], "select"), {"/x-name"}),
    ("name too long", _set(["x-name"], "d" * 41), {"/x-name"}),
    ("reserved field name", _add_field("select", field("text")), {"/properties/select"}),
    ("system column as field", _add_field("created_at", field("text")), {"/properties/created_at"}),
    ("field name with a space", _add_field("my field", field("text")), {"/properties/my field"}),
    ("field name starting with _", _add_field("_x", field("text")), {"/properties/_x"}),
    (
        "unknown x-type",
        _set(["properties", "name", "x-type"], "colour"),
        {"/properties/name/x-type"},
    ),
    ("wrong JSON type", _set(["properties", "name", "type"], "integer"), {"/properties/name/type"}),
    (
        "backreference pattern",
        _set(["properties", "name", "pattern"], r"(a)\1"),
        {"/properties/name/pattern"},
    ),
    (
        "lookahead pattern",
        _set(["properties", "name", "pattern"], "(?=a)"),
        {"/properties/name/pattern"},
    ),
    (
        "minLength above the default maxLength",
        _add_field("code", text_without_length(minLength=300)),
        {"/properties/code/minLength"},
    ),
    (
        "maxLength not a number",
        _set(["properties", "name", "maxLength"], "12"),
        {"/properties/name/maxLength"},
    ),
    (
        "unknown x-target",
        _set(["properties", "parent", "x-target"], "nowhere"),
        {"/properties/parent/x-target"},
    ),
    (
        "lookup without x-target",
        _delete(["properties", "parent", "x-target"]),
        {"/properties/parent"},
    ),
    ("empty enum", _set(["properties", "level", "enum"], []), {"/properties/level/enum"}),
    ("required names no field", _set(["required"], ["nope"]), {"/required/0"}),
    (
        "default of the wrong type",
        _set(["properties", "credit_limit", "default"], "lots"),
        {"/properties/credit_limit/default"},
    ),
    (
        "unknown field keyword",
        _set(["properties", "name", "colour"], "red"),
        {"/properties/name/colour"},
    ),
    ("missing label", _delete(["x-label"]), {""}),
    ("no fields", _set(["properties"], {}), {"/properties"}),
    (
        "bad regular expression",
        _set(["properties", "name", "pattern"], "(unclosed"),
        {"/properties/name/pattern"},
    ),
]


def test_invalid_definitions_are_refused_with_pointers_and_create_nothing(
    api: Api, database: Database
) -> None:
    define(api, definition("existing", {"title": field("text")}))
    for label, mutate, pointers in INVALID_DEFINITIONS:
        response = api.post("/objects", _bad(mutate))
        error = error_of(response, 422, "invalid_definition")
        assert pointers <= detail_fields(error), (label, error)
    assert object_names(api) == ["existing"]
    assert not has_table(database, "obj_dealer")
    assert api.get("/objects/dealer").status_code == 404


def test_every_problem_is_reported_at_once(api: Api) -> None:
    document = dealer_definition()
    document["properties"]["select"] = field("text")
    document["properties"]["name"]["x-type"] = "colour"
    document["properties"]["level"]["type"] = "integer"
    del document["properties"]["credit_limit"]["type"]
    error = error_of(api.post("/objects", document), 422, "invalid_definition")
    assert {
        "/properties/select",
        "/properties/name/x-type",
        "/properties/level/type",
        "/properties/credit_limit",
    } <= detail_fields(error)
    assert "reserved" in detail_message(error, "/properties/select")
    assert object_names(api) == []


def test_definition_that_is_not_an_object(api: Api) -> None:
    for body in ([1, 2], "dealer", 7, None):
        response = api.post("/objects", body) if body is not None else api.post("/objects")
        assert response.status_code in (400, 422), response.get_json()
        error_of(response, response.status_code)
    assert object_names(api) == []


def test_duplicate_create_is_a_conflict(api: Api, database: Database) -> None:
    define(api, dealer_definition())
    changed = dealer_definition(email=field("email"))
    error_of(api.post("/objects", changed), 409, "conflict")
    current = api.get("/objects/dealer").get_json()
    assert current["version"] == 1
    assert "email" not in current["definition"]["properties"]
    assert "email" not in columns(database, "obj_dealer")


def test_put_writes_new_versions(api: Api, database: Database) -> None:
    v1 = dealer_definition()
    define(api, v1)
    v2 = dealer_definition(email=field("email", "E-mail"))
    body = redefine(api, v2)
    # The stored version says the length the column has (an e-mail address: 254).
    v2["properties"]["email"]["maxLength"] = 254
    assert body == {"name": "dealer", "version": 2, "definition": v2, "changed": True}
    assert api.get("/objects/dealer").get_json()["version"] == 2
    assert "email" in columns(database, "obj_dealer")

    again = redefine(api, copy.deepcopy(v2))
    assert again["changed"] is False and again["version"] == 2

    v3 = copy.deepcopy(v2)
    v3["x-label"]["en"] = "Reseller"
    assert redefine(api, v3)["version"] == 3

    versions = api.get("/objects/dealer/versions")
    assert versions.status_code == 200
    items = versions.get_json()["items"]
    assert [v["version"] for v in items] == [3, 2, 1]
    author = admin_id(database)
    assert all(v["author_id"] == author for v in items)
    assert all(v["created_at"] and v["restored_from"] is None for v in items)
    assert "email" in items[1]["summary"] and "added" in items[1]["summary"]
    assert {"field": "email", "change": "added"} in items[1]["diff"]["fields"]
    assert items[0]["diff"]["object"]["x-label"]["to"]["en"] == "Reseller"
    assert "x-label" in items[0]["summary"]
    assert {f["field"] for f in items[2]["diff"]["fields"]} == set(v1["properties"])

    assert api.get("/objects/dealer/versions/1").get_json()["definition"] == v1
    assert api.get("/objects/dealer/versions/2").get_json()["definition"] == v2
    error_of(api.get("/objects/dealer/versions/9"), 404, "not_found")


def test_put_refusals_change_nothing(api: Api) -> None:
    define(api, dealer_definition())
    bad = dealer_definition(select=field("text"))
    error = error_of(api.put("/objects/dealer", bad), 422, "invalid_definition")
    assert "/properties/select" in detail_fields(error)

    renamed = dealer_definition()
    renamed["x-name"] = "reseller"
    error_of(api.put("/objects/dealer", renamed), 400)

    error_of(api.put("/objects/nowhere", definition("nowhere", {"a": field("text")})), 404)
    error_of(api.put("/objects/dealer", [1]), 422)

    current = api.get("/objects/dealer").get_json()
    assert current["version"] == 1 and current["definition"] == dealer_definition()
    assert len(api.get("/objects/dealer/versions").get_json()["items"]) == 1
    assert object_names(api) == ["dealer"]


def test_restore_makes_a_new_version_equal_to_the_old_one(api: Api, database: Database) -> None:
    v1 = dealer_definition()
    define(api, v1)
    redefine(api, dealer_definition(email=field("email")))
    response = api.post("/objects/dealer/versions/1/restore")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["version"] == 3 and body["definition"] == v1
    current = api.get("/objects/dealer").get_json()
    assert current["version"] == 3 and current["definition"] == v1
    newest = api.get("/objects/dealer/versions").get_json()["items"][0]
    assert newest["version"] == 3 and newest["restored_from"] == 1
    assert newest["summary"].startswith("restored version 1")
    assert "email" in newest["summary"]
    assert "email" not in columns(database, "obj_dealer")

    error_of(api.post("/objects/dealer/versions/7/restore"), 404)
    error_of(api.post("/objects/nowhere/versions/1/restore"), 404)
    assert api.get("/objects/dealer").get_json()["version"] == 3


def test_unknown_object(api: Api) -> None:
    for path in ("/objects/nowhere", "/objects/nowhere/versions", "/objects/nowhere/versions/1"):
        error_of(api.get(path), 404, "not_found")


@pytest.fixture
def clerk(app: Any, client: Any, database: Database) -> Api:
    """A signed-in user who is not an administrator."""
    with database.session() as session:
        UserService(session, MetaRegistry(), None).create(
            {"email": "clerk@example.com", "password": "long enough password"}
        )
        token = issue_token(session, "clerk@example.com")
        session.commit()
    return Api(client, token)


def test_only_admins_change_metadata(api: Api, clerk: Api) -> None:
    error_of(clerk.post("/objects", dealer_definition()), 403, "forbidden")
    assert object_names(api) == []
    define(api, dealer_definition())
    error_of(clerk.put("/objects/dealer", dealer_definition(email=field("email"))), 403)
    error_of(clerk.post("/objects/dealer/versions/1/restore"), 403)
    assert api.get("/objects/dealer").get_json()["version"] == 1
    # Reading metadata is for administrators too.
    error_of(clerk.get("/objects/dealer"), 403, "forbidden")
    error_of(clerk.get("/objects"), 403, "forbidden")
