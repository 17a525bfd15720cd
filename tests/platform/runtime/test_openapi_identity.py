"""The identity endpoints in the OpenAPI document, and the server keeping to it.

Schemathesis-style: every documented identity operation is called for real (as an
administrator and as a plain user, succeeding and failing) and each answer is checked with
``jsonschema`` against the schema the document gives for that operation and status.
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from tests.conftest import Api
from tests.factories import dealer_definition
from tests.platform.runtime.helpers import define, detail_fields, error_of
from trellis.extensions import Database
from trellis.platform.runtime.identity.tokens import issue_token

EVERYONE = {"/me", "/tokens", "/tokens/{id}"}
ADMINS_ONLY = {"/users", "/users/{id}", "/roles", "/roles/{name}", "/roles/{name}/versions"}
ADMINS_ONLY |= {"/roles/{name}/versions/{version}/restore", "/audit"}
VIEWER = {
    "x-name": "viewer",
    "x-label": {"en": "Viewer"},
    "objects": {"dealer": {"read": "all", "fields": {"credit_limit": "hidden"}}},
}


class Checked:
    """Calls the API and checks every answer against the caller's own document."""

    def __init__(self, api: Api) -> None:
        self.api = api
        response = api.get("/openapi.json")
        assert response.status_code == 200
        self.document: dict[str, Any] = response.get_json()
        validate(self.document)
        self.called: set[tuple[str, str]] = set()

    def call(self, method: str, template: str, path: str, body: Any = None) -> Any:
        response = self.api._call(method, path, body)
        self.conforms(method.lower(), template, response)
        self.called.add((template, method.lower()))
        return response

    def conforms(self, method: str, template: str, response: Any) -> None:
        operation = self.document["paths"][template][method]
        status = str(response.status_code)
        assert status in operation["responses"], (method, template, status, response.data)
        documented = operation["responses"][status]
        if "$ref" in documented:
            documented = self.document["components"]["responses"][documented["$ref"].split("/")[-1]]
        if "content" not in documented:
            assert response.data == b"", (method, template)
            return
        schema = documented["content"]["application/json"]["schema"]
        validator = Draft202012Validator(
            {**schema, "components": self.document["components"]},
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )
        problems = [
            f"{list(e.absolute_path)}: {e.message}"
            for e in validator.iter_errors(response.get_json())
        ]
        assert not problems, (method, template, status, problems)

    def operations(self, templates: set[str]) -> set[tuple[str, str]]:
        return {
            (template, method)
            for template in templates
            for method in self.document["paths"][template]
            if method != "parameters"
        }


def plain_user(database: Database, api: Api) -> Api:
    assert api.post("/roles", VIEWER).status_code == 201
    body = {"email": "viewer@example.com", "password": "long enough", "roles": ["viewer"]}
    assert api.post("/users", body).status_code == 201
    with database.session() as session:
        token = issue_token(session, "viewer@example.com")
        session.commit()
    return Api(api.client, token)


def test_identity_paths_are_documented_for_whom_they_serve(api: Api, database: Database) -> None:
    define(api, dealer_definition())
    admin = Checked(api)
    assert set(admin.document["paths"]) >= EVERYONE | ADMINS_ONLY
    viewer = Checked(plain_user(database, api))
    paths = set(viewer.document["paths"])
    assert paths >= EVERYONE and not paths & ADMINS_ONLY
    schemas = admin.document["components"]["schemas"]
    assert "password" in schemas["trellis.UserCreate"]["required"]
    assert "password_hash" not in schemas["trellis.User"]["properties"]
    assert schemas["trellis.TokenCreate"]["additionalProperties"] is False
    post = admin.document["paths"]["/users"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/trellis.UserCreate"
    }


def test_objects_named_like_platform_shapes_do_not_replace_them(api: Api) -> None:
    for name in ("error", "token", "user_page"):
        body = dealer_definition() | {"x-name": name}
        body["properties"]["parent"]["x-target"] = name
        define(api, body)
    document = Checked(api).document
    schemas = document["components"]["schemas"]
    assert {"Error", "Token", "UserPage", "trellis.Error", "trellis.UserPage"} <= set(schemas)
    assert set(schemas["trellis.Error"]["properties"]) == {"error"}
    assert schemas["trellis.UserPage"]["properties"]["items"]["items"] == {
        "$ref": "#/components/schemas/trellis.User"
    }


def test_every_identity_answer_matches_the_document(api: Api, database: Database) -> None:
    define(api, dealer_definition())
    admin = Checked(api)
    viewer = Checked(plain_user(database, api))
    for who in (admin, viewer):
        who.call("GET", "/me", "/me")
        made = who.call("POST", "/tokens", "/tokens", {"name": "ci", "expires_in_days": 5})
        assert made.status_code == 201
        who.call("POST", "/tokens", "/tokens", {"name": "no expiry"})
        error_of(who.call("POST", "/tokens", "/tokens", {"expires_in_days": "5"}), 422)
        error_of(who.call("POST", "/tokens", "/tokens", ["not", "an", "object"]), 400)
        token_id = made.get_json()["id"]
        assert who.call("DELETE", "/tokens/{id}", f"/tokens/{token_id}").status_code == 204
        error_of(who.call("DELETE", "/tokens/{id}", "/tokens/987654"), 404)
        listed = who.call("GET", "/tokens", "/tokens").get_json()["items"]
        assert any(t["revoked_at"] for t in listed) and any(t["expires_at"] is None for t in listed)
        assert who.operations(EVERYONE) == who.called

    user = {"email": "new@example.com", "password": "long enough", "roles": ["viewer"]}
    created = admin.call("POST", "/users", "/users", user).get_json()
    error_of(admin.call("POST", "/users", "/users", user), 409)
    error_of(admin.call("POST", "/users", "/users", {**user, "colour": 1}), 422)
    admin.call("GET", "/users", "/users")
    admin.call("GET", "/users/{id}", f"/users/{created['id']}")
    error_of(admin.call("GET", "/users/{id}", "/users/987654"), 404)
    admin.call("PATCH", "/users/{id}", f"/users/{created['id']}", {"name": "New", "manager": 1})
    error_of(admin.call("PATCH", "/users/{id}", f"/users/{created['id']}", {"email": "x"}), 422)

    role = VIEWER | {"x-name": "second"}
    assert admin.call("POST", "/roles", "/roles", role).status_code == 201
    error_of(admin.call("POST", "/roles", "/roles", role), 409)
    error_of(admin.call("POST", "/roles", "/roles", {**role, "x-name": "Bad"}), 422)
    admin.call("GET", "/roles", "/roles")
    admin.call("GET", "/roles/{name}", "/roles/second")
    error_of(admin.call("GET", "/roles/{name}", "/roles/nope"), 404)
    changed = {**role, "objects": {"dealer": {"read": "own"}}}
    assert admin.call("PUT", "/roles/{name}", "/roles/second", changed).get_json()["changed"]
    assert not admin.call("PUT", "/roles/{name}", "/roles/second", changed).get_json()["changed"]
    versions = admin.call("GET", "/roles/{name}/versions", "/roles/second/versions")
    assert [v["version"] for v in versions.get_json()["items"]] == [2, 1]
    restore = "/roles/{name}/versions/{version}/restore"
    restored = admin.call("POST", restore, "/roles/second/versions/1/restore")
    assert restored.get_json()["version"] == 3
    error_of(admin.call("POST", restore, "/roles/second/versions/9/restore"), 404)
    error_of(admin.call("POST", restore, "/roles/nope/versions/1/restore"), 404)
    versions = admin.call("GET", "/roles/{name}/versions", "/roles/second/versions")
    assert versions.get_json()["items"][0]["restored_from"] == 1

    events = admin.call("GET", "/audit", "/audit?limit=5").get_json()["items"]
    assert len(events) == 5
    admin.call("GET", "/audit", f"/audit?action=user.&before={events[-1]['id']}")
    error_of(admin.call("GET", "/audit", "/audit?limit=0"), 400)
    assert admin.operations(EVERYONE | ADMINS_ONLY) == admin.called
    for path in ("/users", "/roles", "/audit"):
        error_of(viewer.api.get(path), 403)


def test_request_bodies_are_refused_by_field(api: Api) -> None:
    """Unknown keys and wrong types are named; nothing is written."""
    users_before = len(api.get("/users").get_json()["items"])
    cases = [
        ("/users", {"email": "a@example.com", "password": "long enough", "colour": 1}, {"colour"}),
        (
            "/users",
            {"email": "a@example.com", "password": "long enough", "is_admin": 1},
            {"is_admin"},
        ),
        (
            "/users",
            {"email": "a@example.com", "password": 12345678, "partner": True},
            {"password", "partner"},
        ),
        (
            "/users",
            {"email": "a@example.com", "password": "long enough", "roles": ["a", 2]},
            {"roles"},
        ),
        ("/tokens", {"name": 5, "expires": 3}, {"name", "expires"}),
        ("/tokens", {"expires_in_days": 1.5}, {"expires_in_days"}),
    ]
    for path, body, fields in cases:
        error = error_of(api.post(path, body), 422, "validation_failed")
        assert detail_fields(error) == fields, (body, error)
    error = error_of(api.patch("/users/1", {"email": "b@example.com"}), 422)
    assert error["details"] == [{"field": "email", "message": "cannot be changed"}]
    error = error_of(api.get("/audit", query_string={"limit": "x", "actor_id": 1}), 400)
    assert detail_fields(error) == {"limit", "actor_id"}
    assert len(api.get("/users").get_json()["items"]) == users_before
