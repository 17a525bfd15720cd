"""Saved list views through the service and ``/api/v1/views``, on SQLite and PostgreSQL:
checked against the object's fields, private to their owner or shared with a role, changed
only by who may, with optimistic versions."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.conftest import Api
from tests.factories import dealer_definition, field
from tests.platform.runtime.helpers import define, detail_fields, error_of, redefine
from tests.platform.runtime.test_openapi_identity import Checked
from trellis.extensions import Database
from trellis.platform.runtime.identity.tokens import issue_token
from trellis.platform.runtime.models import AuditEvent, ListView
from trellis.platform.runtime.views import view_params

CLERK = {
    "x-name": "clerk",
    "x-label": {"en": "Clerk", "zh-CN": "文员"},
    "objects": {"dealer": {"read": "all", "fields": {"credit_limit": "hidden"}}},
}
OTHER = {"x-name": "other", "x-label": {"en": "Other"}, "objects": {"dealer": {"read": "all"}}}
GOLD_VIEW = {
    "object": "dealer",
    "label": "Gold dealers",
    "definition": {
        "columns": ["name", "level", "credit_limit", "id"],
        "filters": {"f.level": "gold", "f.credit_limit.min": "1000", "q": " acme "},
        "sort": "-credit_limit,name",
    },
}


def user_with(api: Api, database: Database, role: str) -> Api:
    """A user (not an administrator) holding ``role``, with a token."""
    body = {"email": f"{role}@example.com", "password": "long enough password", "roles": [role]}
    assert api.post("/users", body).status_code == 201, body
    with database.session() as session:
        token = issue_token(session, body["email"])
        session.commit()
    return Api(api.client, token)


def stored(database: Database) -> list[ListView]:
    with database.session() as session:
        return list(session.scalars(sa.select(ListView).order_by(ListView.id)))


def saved(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/views", body)
    assert response.status_code == 201, response.get_json()
    view: dict[str, Any] = response.get_json()
    return view


@pytest.fixture
def dealers(api: Api) -> Api:
    define(api, dealer_definition())
    assert api.post("/roles", CLERK).status_code == 201
    assert api.post("/roles", OTHER).status_code == 201
    return api


def test_a_view_is_checked_stored_normalised_and_listed(dealers: Api, database: Database) -> None:
    view = saved(dealers, GOLD_VIEW)
    assert view["label"] == "Gold dealers" and view["object"] == "dealer"
    assert view["version"] == 1 and view["shared_with_role"] is None
    assert view["definition"] == {
        "columns": ["name", "level", "credit_limit", "id"],
        # A picklist filter is a list of values; text is trimmed.
        "filters": {"f.level": ["gold"], "f.credit_limit.min": "1000", "q": "acme"},
        "sort": "-credit_limit,name",
    }
    (row,) = stored(database)
    assert row.id == view["id"] and row.definition == view["definition"]
    assert row.owner_id == dealers.get("/me").get_json()["id"]
    listed = dealers.get("/views", query_string={"object": "dealer"}).get_json()["items"]
    assert [v["id"] for v in listed] == [view["id"]]
    assert dealers.get(f"/views/{view['id']}").get_json() == view
    with database.session() as session:
        actions = session.scalars(
            sa.select(AuditEvent.action).where(AuditEvent.target.like("view/%"))
        )
        assert list(actions) == ["view.created"]


def test_a_view_that_does_not_fit_the_object_is_refused_and_nothing_is_stored(
    dealers: Api, database: Database
) -> None:
    bad = {
        "columns": ["name", "colour", "name"],
        "filters": {
            "f.nothing": "x",
            "f.credit_limit": "5",  # a range: .min / .max
            "f.level": ["gold", "platinum"],
            "f.name.min": "a",
            "f.credit_limit.max": "lots",
            "f.parent": "abc",
            "cursor": "x",
        },
        "sort": "colour",
    }
    error = error_of(
        dealers.post("/views", {**GOLD_VIEW, "definition": bad}), 422, "validation_failed"
    )
    assert detail_fields(error) == {
        "definition.columns[1]",
        "definition.columns[2]",
        "definition.filters.f.nothing",
        "definition.filters.f.credit_limit",
        "definition.filters.f.level",
        "definition.filters.f.name.min",
        "definition.filters.f.credit_limit.max",
        "definition.filters.f.parent",
        "definition.filters.cursor",
        "definition.sort",
    }
    assert "'platinum'" in next(
        d["message"] for d in error["details"] if d["field"] == "definition.filters.f.level"
    )
    extra = {**GOLD_VIEW, "definition": {"columns": ["name"], "colour": "red"}}
    error = error_of(dealers.post("/views", extra), 422)
    assert "definition" in detail_fields(error)  # the body's schema refuses unknown keys
    error_of(dealers.post("/views", {**GOLD_VIEW, "label": "   "}), 422)
    error_of(dealers.post("/views", {**GOLD_VIEW, "object": "nothing"}), 404)
    error_of(dealers.post("/views", {**GOLD_VIEW, "shared_with_role": "nobody"}), 422)
    error_of(dealers.post("/views", [1, 2]), 400)
    assert stored(database) == []
    saved(dealers, GOLD_VIEW)
    error = error_of(dealers.post("/views", GOLD_VIEW), 409, "duplicate")
    assert detail_fields(error) == {"label"}
    assert len(stored(database)) == 1


def test_private_views_are_their_owners_and_shared_views_their_roles(
    dealers: Api, database: Database
) -> None:
    clerk = user_with(dealers, database, "clerk")
    other = user_with(dealers, database, "other")
    shared = saved(dealers, {**GOLD_VIEW, "shared_with_role": "clerk"})
    admins_own = saved(dealers, {**GOLD_VIEW, "label": "Mine"})
    mine = saved(clerk, {**GOLD_VIEW, "label": "Clerk's", "definition": {"columns": ["name"]}})

    def listed(who: Api) -> list[int]:
        return [v["id"] for v in who.get("/views?object=dealer").get_json()["items"]]

    assert listed(clerk) == [mine["id"], shared["id"]]  # own first, then shared
    assert listed(other) == []
    assert listed(dealers) == [admins_own["id"], shared["id"]]  # admins see every shared view
    assert [v["id"] for v in clerk.get("/views").get_json()["items"]] == listed(clerk)
    for view_id in (mine["id"], shared["id"], admins_own["id"]):
        error_of(other.get(f"/views/{view_id}"), 404)
    error_of(clerk.get(f"/views/{admins_own['id']}"), 404)
    assert clerk.get(f"/views/{shared['id']}").status_code == 200
    assert dealers.get(f"/views/{mine['id']}").status_code == 200  # an admin reads any

    # Sharing and shared views are administrators' business.
    error_of(clerk.post("/views", {**GOLD_VIEW, "label": "x", "shared_with_role": "clerk"}), 403)
    error_of(clerk.put(f"/views/{shared['id']}", {"version": 1, "label": "Renamed"}), 403)
    error_of(clerk.delete(f"/views/{shared['id']}"), 403)
    error_of(clerk.put(f"/views/{mine['id']}", {"version": 1, "shared_with_role": "clerk"}), 403)
    error_of(other.delete(f"/views/{mine['id']}"), 404)
    assert {v.label for v in stored(database)} == {"Gold dealers", "Mine", "Clerk's"}

    # The owner renames their own; an administrator may share it, or delete it.
    renamed = clerk.put(f"/views/{mine['id']}", {"version": 1, "label": "Clerk's list"})
    assert renamed.status_code == 200 and renamed.get_json()["version"] == 2
    answer = dealers.put(f"/views/{mine['id']}", {"version": 2, "shared_with_role": "other"})
    assert answer.status_code == 200 and answer.get_json()["shared_with_role"] == "other"
    assert mine["id"] in listed(other)
    error_of(clerk.delete(f"/views/{mine['id']}"), 403)  # shared now: not the owner's alone
    assert dealers.delete(f"/views/{mine['id']}").status_code == 204
    assert {v.label for v in stored(database)} == {"Gold dealers", "Mine"}


def test_changes_need_the_version_read(dealers: Api, database: Database) -> None:
    view = saved(dealers, GOLD_VIEW)
    path = f"/views/{view['id']}"
    error_of(dealers.put(path, {"label": "No version"}), 422)
    changed = dealers.put(path, {"version": 1, "definition": {"columns": ["level"], "sort": None}})
    assert changed.status_code == 200, changed.get_json()
    body = changed.get_json()
    assert body["version"] == 2 and body["label"] == "Gold dealers"
    assert body["definition"] == {"columns": ["level"], "filters": {}, "sort": None}
    error = error_of(dealers.put(path, {"version": 1, "label": "Late"}), 409, "stale_version")
    assert "version 2" in error["message"]
    error_of(dealers.put(path, {"version": 2, "object": "other"}), 422)  # not changeable
    error_of(dealers.put(path, {"version": 2, "definition": {"columns": ["nope"]}}), 422)
    error_of(dealers.delete(f"{path}?version=1"), 409)
    (row,) = stored(database)
    assert (row.label, row.version, row.definition["columns"]) == ("Gold dealers", 2, ["level"])
    assert dealers.delete(f"{path}?version=2").status_code == 204
    assert stored(database) == []
    error_of(dealers.get(path), 404)
    error_of(dealers.delete(path), 404)


def test_columns_hidden_from_the_caller_are_refused_when_saved(
    dealers: Api, database: Database
) -> None:
    clerk = user_with(dealers, database, "clerk")
    error = error_of(clerk.post("/views", GOLD_VIEW), 422)
    assert {"definition.columns[2]", "definition.filters.f.credit_limit.min"} <= detail_fields(
        error
    )
    assert "definition.sort" in detail_fields(error)  # sorting by a hidden field
    assert stored(database) == []


def test_applying_a_view_leaves_out_what_no_longer_exists_or_is_hidden(
    dealers: Api, app: Flask, database: Database
) -> None:
    definition = saved(dealers, GOLD_VIEW)["definition"]
    registry = app.extensions["trellis.registry"]
    meta = registry.get("dealer")
    assert view_params(meta, definition, frozenset()) == {
        "columns": ["name,level,credit_limit,id"],
        "f.level": ["gold"],
        "f.credit_limit.min": ["1000"],
        "q": ["acme"],
        "sort": ["-credit_limit,name"],
    }
    assert view_params(meta, definition, frozenset({"credit_limit"})) == {
        "columns": ["name,level,id"],
        "f.level": ["gold"],
        "q": ["acme"],
        "sort": ["name"],
    }
    # The field goes from the definition, and a picklist value the view names goes too.
    document = dealer_definition()
    del document["properties"]["credit_limit"]
    document["properties"]["level"] = field("picklist", "Level", enum=["silver", "bronze"])
    redefine(dealers, document)
    with database.session() as session:
        registry.ensure_current(session)
    meta = registry.get("dealer")
    assert view_params(meta, definition, frozenset()) == {
        "columns": ["name,level,id"],
        "q": ["acme"],
        "sort": ["name"],
    }
    # The stored view still reads, and listing it through the API is not an error.
    assert dealers.get("/views?object=dealer").status_code == 200


def test_view_answers_match_the_openapi_document(dealers: Api, database: Database) -> None:
    admin = Checked(dealers)
    clerk = Checked(user_with(dealers, database, "clerk"))
    templates = {"/views", "/views/{id}"}
    assert templates <= set(clerk.document["paths"])
    made = admin.call("POST", "/views", "/views", {**GOLD_VIEW, "shared_with_role": "clerk"})
    assert made.status_code == 201
    view_id = made.get_json()["id"]
    error_of(
        admin.call("POST", "/views", "/views", {**GOLD_VIEW, "shared_with_role": "clerk"}), 409
    )
    error_of(admin.call("POST", "/views", "/views", {**GOLD_VIEW, "label": 5}), 422)
    clerk.call("GET", "/views", "/views?object=dealer")
    clerk.call("GET", "/views/{id}", f"/views/{view_id}")
    error_of(clerk.call("PUT", "/views/{id}", f"/views/{view_id}", {"version": 1}), 403)
    error_of(clerk.call("DELETE", "/views/{id}", f"/views/{view_id}"), 403)
    admin.call("PUT", "/views/{id}", f"/views/{view_id}", {"version": 1, "label": "Top"})
    error_of(admin.call("PUT", "/views/{id}", f"/views/{view_id}", {"version": 1}), 409)
    assert admin.call("DELETE", "/views/{id}", f"/views/{view_id}").status_code == 204
    error_of(admin.call("GET", "/views/{id}", f"/views/{view_id}"), 404)
    assert len(admin.call("GET", "/views", "/views").get_json()["items"]) == 0
    assert admin.operations(templates) == admin.called
