"""Role versions through the REST API: each carries its diff and summary, and an old one
can be restored (as a new version), as object definitions can."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.conftest import Api
from tests.factories import dealer_definition
from tests.platform.runtime.helpers import create, define, detail_fields, error_of, raw_rows
from trellis.extensions import db
from trellis.platform.runtime.identity.tokens import issue_token


@pytest.fixture(autouse=True)
def _in_app_context(request: pytest.FixtureRequest) -> Any:
    """Tests that use the ``app`` fixture run inside its context (``db`` is the app's)."""
    if "app" not in request.fixturenames:
        yield
        return
    with request.getfixturevalue("app").app_context():
        yield


HIDDEN_LIMIT = {
    "x-name": "clerk",
    "x-label": {"en": "Clerk"},
    "objects": {"dealer": {"read": "all", "fields": {"credit_limit": "hidden"}}},
}
OPEN_LIMIT = {
    "x-name": "clerk",
    "x-label": {"en": "Clerk"},
    "objects": {"dealer": {"read": "all", "update": "all"}},
}


def holder(api: Api, role: str) -> Api:
    """A user (not an administrator) holding ``role``, with a token."""
    body = {"email": f"{role}@example.com", "password": "long enough password", "roles": [role]}
    assert api.post("/users", body).status_code == 201
    with db.session() as session:
        token = issue_token(session, body["email"])
        session.commit()
    return Api(api.client, token)


def versions(api: Api, name: str) -> list[dict[str, Any]]:
    response = api.get(f"/roles/{name}/versions")
    assert response.status_code == 200, response.get_json()
    items: list[dict[str, Any]] = response.get_json()["items"]
    return items


def two_versions(api: Api) -> None:
    define(api, dealer_definition())
    assert api.post("/roles", HIDDEN_LIMIT).status_code == 201
    assert api.put("/roles/clerk", OPEN_LIMIT).get_json()["version"] == 2


def test_role_versions_carry_their_diff_and_summary(api: Api) -> None:
    two_versions(api)
    second, first = versions(api, "clerk")
    assert first["summary"] == "added /x-name, /x-label, /objects"
    assert first["diff"]["changes"][2] == {
        "pointer": "/objects",
        "change": "added",
        "to": HIDDEN_LIMIT["objects"],
    }
    assert second["diff"] == {
        "changes": [
            {
                "pointer": "/objects/dealer/fields",
                "change": "removed",
                "from": {"credit_limit": "hidden"},
            },
            {"pointer": "/objects/dealer/update", "change": "added", "to": "all"},
        ],
        "summary": "added /objects/dealer/update; removed /objects/dealer/fields",
    }
    assert second["summary"] == second["diff"]["summary"]
    assert first["restored_from"] is None and second["restored_from"] is None
    # an identical PUT still writes nothing
    assert api.put("/roles/clerk", copy.deepcopy(OPEN_LIMIT)).get_json()["changed"] is False
    assert len(versions(api, "clerk")) == 2


def test_restore_makes_an_old_role_version_current_again(api: Api) -> None:
    two_versions(api)
    dealer = create(api, "dealer", {"name": "Acme", "credit_limit": 500})
    clerk = holder(api, "clerk")
    assert clerk.get(f"/records/dealer/{dealer['id']}").get_json()["credit_limit"] == 500

    response = api.post("/roles/clerk/versions/1/restore")
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"name": "clerk", "version": 3, "role": HIDDEN_LIMIT}
    assert api.get("/roles/clerk").get_json() == {
        "name": "clerk",
        "version": 3,
        "role": HIDDEN_LIMIT,
    }
    newest = versions(api, "clerk")[0]
    assert (newest["version"], newest["restored_from"], newest["role"]) == (3, 1, HIDDEN_LIMIT)
    assert newest["summary"] == (
        "restored version 1: added /objects/dealer/fields; removed /objects/dealer/update"
    )
    # the holder's next request already has the restored rights
    assert "credit_limit" not in clerk.get(f"/records/dealer/{dealer['id']}").get_json()
    restored = [e for e in raw_rows(db, "audit_events") if e["action"] == "role.restored"]
    assert [(e["target"], e["detail"]) for e in restored] == [
        ("role/clerk", {"version": 3, "from": 1})
    ]

    error_of(api.post("/roles/clerk/versions/7/restore"), 404, "not_found")
    error_of(api.post("/roles/nobody/versions/1/restore"), 404, "not_found")
    error_of(clerk.post("/roles/clerk/versions/2/restore"), 403, "forbidden")
    assert api.get("/roles/clerk").get_json()["version"] == 3


def test_a_version_that_is_no_longer_valid_is_not_restored(api: Api) -> None:
    two_versions(api)
    without_limit = dealer_definition()
    del without_limit["properties"]["credit_limit"]
    assert api.put("/objects/dealer", without_limit).status_code == 200
    # version 1 hides a field the object no longer has
    error = error_of(api.post("/roles/clerk/versions/1/restore"), 422, "invalid_definition")
    assert detail_fields(error) == {"/objects/dealer/fields/credit_limit"}
    assert api.get("/roles/clerk").get_json() == {"name": "clerk", "version": 2, "role": OPEN_LIMIT}
    assert len(versions(api, "clerk")) == 2


def test_a_create_under_a_taken_name_is_checked_then_a_conflict(api: Api) -> None:
    define(api, dealer_definition())
    assert api.post("/roles", HIDDEN_LIMIT).status_code == 201
    error_of(api.post("/roles", OPEN_LIMIT), 409, "conflict")
    invalid = HIDDEN_LIMIT | {"objects": {"nowhere": {"read": "all"}}}
    error_of(api.post("/roles", invalid), 422, "invalid_definition")
    error_of(api.put("/roles/clerk", OPEN_LIMIT | {"x-name": "cashier"}), 422, "validation_failed")
    assert len(versions(api, "clerk")) == 1
