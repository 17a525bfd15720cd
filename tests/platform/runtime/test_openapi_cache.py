"""The OpenAPI document cache: keyed by metadata revision and rights only, and bounded.

The request's Host must play no part: 1,500 requests with made-up Host headers once grew
a worker by 123 MiB, one cached document per Host. The cache's entries are counted here
(``cached_documents``), not the process's memory.
"""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import Api
from tests.factories import dealer_definition, definition, field
from tests.platform.runtime.helpers import define
from trellis import config
from trellis.extensions import Database
from trellis.platform.metadata.definition import load_definition
from trellis.platform.metadata.permissions import Permissions, combine
from trellis.platform.runtime.identity.tokens import issue_token
from trellis.platform.runtime.openapi import MAX_DOCUMENTS, cached_documents, openapi_document
from trellis.platform.runtime.registry import MetaRegistry, build_objects

HOSTS = 300


def registry_of(app: Flask) -> MetaRegistry:
    registry: MetaRegistry = app.extensions["trellis.registry"]
    return registry


def viewer_token(database: Database, api: Api) -> str:
    """A token of a user holding one role that reads dealers."""
    role = {"x-name": "viewer", "x-label": {"en": "Viewer"}, "objects": {"dealer": {"read": "all"}}}
    assert api.post("/roles", role).status_code == 201
    body = {"email": "viewer@example.com", "password": "long enough", "roles": ["viewer"]}
    assert api.post("/users", body).status_code == 201
    with database.session() as session:
        token = issue_token(session, "viewer@example.com")
        session.commit()
    return token


def get_document(client: FlaskClient, token: str, host: str) -> bytes:
    response = client.get(
        "/api/v1/openapi.json", headers={"Authorization": f"Bearer {token}", "Host": host}
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["servers"] == [{"url": "/api/v1"}]
    data: bytes = response.data
    return data


def test_made_up_hosts_leave_one_document_per_revision_and_rights(
    app: Flask, client: FlaskClient, api: Api, admin_token: str, database: Database
) -> None:
    define(api, dealer_definition())
    viewer = viewer_token(database, api)
    registry = registry_of(app)
    for index in range(HOSTS):
        host = f"h{index}.attacker.example"
        for token in (admin_token, viewer):
            assert b"attacker" not in get_document(client, token, host)
    entries = cached_documents(registry)
    assert len(entries) == 2, entries
    assert {revision for revision, _ in entries} == {registry.revision}
    # a metadata change drops every document of the old revision
    define(api, definition("region", {"name": field("text")}))
    get_document(client, admin_token, "another.attacker.example")
    assert cached_documents(registry) == [(registry.revision, "admin")]


def test_servers_come_from_the_base_url_setting(app: Flask, client: FlaskClient, api: Api) -> None:
    app.config["BASE_URL"] = "https://trellis.example.com"
    response = api.client.get(
        "/api/v1/openapi.json", headers={**api.headers, "Host": "evil.example"}
    )
    assert response.get_json()["servers"] == [{"url": "https://trellis.example.com/api/v1"}]
    assert b"evil.example" not in response.data


def test_the_base_url_setting_is_checked() -> None:
    read = config.from_environment
    assert read({"TRELLIS_BASE_URL": "https://trellis.example.com/"})["BASE_URL"] == (
        "https://trellis.example.com"
    )
    assert read({"TRELLIS_BASE_URL": "http://host:8080/trellis/"})["BASE_URL"] == (
        "http://host:8080/trellis"
    )
    assert "BASE_URL" not in read({})
    for bad in ("trellis.example.com", "ftp://x.example", "https://", "https://x.example/?a=1"):
        with pytest.raises(ValueError, match="TRELLIS_BASE_URL"):
            read({"TRELLIS_BASE_URL": bad})


def test_the_cache_keeps_at_most_the_latest_documents() -> None:
    """One document per set of rights, the least recently used dropped past the bound."""
    registry = MetaRegistry()
    registry._objects = build_objects([(load_definition(dealer_definition()), 1)])
    registry._revision = 7
    rights = [
        combine([{"objects": {"dealer": {"read": "all", "fields": {f"f{i}": "hidden"}}}}])
        for i in range(MAX_DOCUMENTS + 36)
    ]
    first = openapi_document(registry, rights[0])
    for permissions in rights[1:]:
        openapi_document(registry, permissions)
        openapi_document(registry, rights[0])  # in use all along: never the one dropped
    entries = cached_documents(registry)
    assert len(entries) == MAX_DOCUMENTS
    signatures = [signature for _, signature in entries]
    assert rights[0].signature in signatures
    assert signatures[-2:] == [rights[-1].signature, rights[0].signature]
    assert rights[1].signature not in signatures
    assert openapi_document(registry, rights[0]) == first
    admin = openapi_document(registry, Permissions(is_admin=True), "https://a.example")
    assert admin["servers"] == [{"url": "https://a.example/api/v1"}]
    assert len(cached_documents(registry)) == MAX_DOCUMENTS
