"""Bad input never gets a 500: every refusal is a JSON error with code, message and details."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask

from tests.conftest import ADMIN_EMAIL, Api
from tests.factories import dealer_definition
from tests.platform.runtime.helpers import all_rows, create, define, error_of, object_names
from trellis.extensions import Database
from trellis.platform.runtime.identity.tokens import issue_token
from trellis.platform.runtime.models import ApiToken


def raw(api: Api, method: str, path: str, data: bytes | str, **headers: str) -> Any:
    return api.client.open(
        f"/api/v1{path}",
        method=method,
        data=data,
        headers={**api.headers, "Content-Type": "application/json", **headers},
    )


@pytest.fixture
def dealer(api: Api) -> dict[str, Any]:
    define(api, dealer_definition())
    return create(api, "dealer", {"name": "Acme"})


WRITES = [
    ("POST", "/objects"),
    ("PUT", "/objects/dealer"),
    ("POST", "/records/dealer"),
    ("PATCH", "/records/dealer/{id}"),
]


def test_invalid_json_bodies_are_400(api: Api, dealer: dict[str, Any]) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    for method, template in WRITES:
        path = template.format(id=dealer["id"])
        for body in ("{", "{'name': 'x'}", "name=x", '{"name": "x",}', "\xff\xfe", deep, ""):
            response = raw(api, method, path, body)
            error_of(response, 400, "bad_request")
        for body in ('{"credit_limit": NaN}', '{"credit_limit": Infinity}'):
            error_of(raw(api, method, path, body), 400, "bad_request")
    assert object_names(api) == ["dealer"]
    assert [r["name"] for r in all_rows(api, "dealer")] == ["Acme"]
    assert api.get("/objects/dealer").get_json()["version"] == 1


def test_bodies_that_are_not_objects(api: Api, dealer: dict[str, Any]) -> None:
    for body in ("[]", '[{"name": "x"}]', '"x"', "5", "true", "null"):
        for method, template in WRITES:
            path = template.format(id=dealer["id"])
            response = raw(api, method, path, body)
            assert response.status_code in (400, 422), (method, path, body, response.status_code)
            error = error_of(response, response.status_code)
            assert error["details"], error
    assert [r["name"] for r in all_rows(api, "dealer")] == ["Acme"]


def test_deeply_nested_values(api: Api, dealer: dict[str, Any]) -> None:
    nested: Any = "x"
    for _ in range(500):
        nested = {"a": nested}
    for path in ("/objects", "/records/dealer"):
        response = api.post(
            path, {"x-name": "deep", "name": "deep", "x-label": nested, "colour": nested}
        )
        assert response.status_code == 422, response.get_json()
        error_of(response, 422)
    assert object_names(api) == ["dealer"]


def test_unknown_objects_records_and_routes_are_404(api: Api, dealer: dict[str, Any]) -> None:
    missing = [
        ("GET", "/records/nowhere"),
        ("POST", "/records/nowhere"),
        ("GET", "/records/nowhere/1"),
        ("PATCH", "/records/nowhere/1"),
        ("DELETE", "/records/nowhere/1"),
        ("POST", "/records/nowhere/1/restore"),
        ("GET", "/records/nowhere/1/history"),
        ("GET", "/records/dealer/abc"),
        ("PATCH", "/records/dealer/abc"),
        ("DELETE", "/records/dealer/1.5"),
        ("GET", "/records/dealer/%20"),
        ("GET", "/records/dealer/99999"),
        ("GET", "/records/dealer/99999/history"),
        ("GET", "/records/Dealer"),
        ("GET", "/records/obj_dealer"),
        ("GET", "/records/dealer%3B%20drop%20table%20obj_dealer"),
        ("GET", "/objects/nowhere"),
        ("GET", "/objects/dealer/versions/abc"),
        ("GET", "/nowhere"),
        ("GET", "/records"),
    ]
    for method, path in missing:
        body = {"version": 1, "name": "x"} if method in ("POST", "PATCH") else None
        response = api.client.open(f"/api/v1{path}", method=method, json=body, headers=api.headers)
        error_of(response, 404, "not_found")
    error_of(api.client.patch("/api/v1/objects/dealer", json={}, headers=api.headers), 405)
    error_of(api.client.put("/api/v1/records/dealer", json={}, headers=api.headers), 405)
    assert [r["name"] for r in all_rows(api, "dealer")] == ["Acme"]


def test_body_too_large(app: Flask, api: Api, dealer: dict[str, Any]) -> None:
    app.config["MAX_CONTENT_LENGTH"] = 1000
    error_of(api.post("/records/dealer", {"name": "x" * 2000}), 413)
    assert [r["name"] for r in all_rows(api, "dealer")] == ["Acme"]


def _revoked_and_expired(database: Database) -> tuple[str, str]:
    with database.session() as session:
        revoked = issue_token(session, ADMIN_EMAIL, name="revoked")
        expired = issue_token(
            session,
            ADMIN_EMAIL,
            name="expired",
            expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1),
        )
        row = session.query(ApiToken).filter_by(name="revoked").one()
        row.revoked_at = dt.datetime.now(dt.UTC)
        session.commit()
    return revoked, expired


def test_every_endpoint_needs_a_valid_token(
    app: Flask, api: Api, dealer: dict[str, Any], database: Database
) -> None:
    revoked, expired = _revoked_and_expired(database)
    authorizations: list[str | None] = [
        None,
        "",
        "Bearer",
        "Bearer ",
        f"bearer {api.headers['Authorization'].split()[1]}",
        f"Basic {api.headers['Authorization'].split()[1]}",
        "Bearer not-a-token",
        "Bearer trl_" + "x" * 43,
        "Bearer trl_" + "x" * 500,
        f"Bearer {revoked}",
        f"Bearer {expired}",
    ]
    rules = [r for r in app.url_map.iter_rules() if r.rule.startswith("/api/v1/")]
    assert any(r.rule == "/api/v1/openapi.json" for r in rules)
    values = {
        "name": "dealer",
        "object_name": "dealer",
        "record_id": dealer["id"],
        "version": 1,
        "user_id": 1,
        "token_id": 1,
        "view_id": 1,
        "webhook_id": 1,
        "notification_id": 1,
        "job_id": 1,
        "field_name": "website",
        "import_id": 1,
        "task_id": 1,
        "action": "approve",
        "event_id": 1,
    }
    checked = 0
    for rule in rules:
        path = rule.rule
        for key, value in values.items():
            path = path.replace(f"<{key}>", str(value)).replace(f"<int:{key}>", str(value))
        assert "<" not in path, path
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            for authorization in authorizations:
                headers = {} if authorization is None else {"Authorization": authorization}
                response = api.client.open(
                    path, method=method, json={"name": "Zed", "version": 1}, headers=headers
                )
                error_of(response, 401, "unauthenticated")
                checked += 1
    assert checked >= 15 * len(authorizations)
    assert object_names(api) == ["dealer"]
    assert [(r["name"], r["version"]) for r in all_rows(api, "dealer")] == [("Acme", 1)]
