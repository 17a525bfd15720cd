"""The OpenAPI 3.1 document: valid, complete for every object, and current after changes."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from tests.conftest import Api
from tests.factories import dealer_definition, field, order_definitions
from tests.platform.runtime.helpers import create, define, error_of, redefine
from trellis.platform.metadata.definition import load_definition
from trellis.platform.metadata.permissions import Permissions
from trellis.platform.runtime.openapi import openapi_document
from trellis.platform.runtime.registry import MetaRegistry, build_objects

RECORD_PATHS = [
    "/records/{o}",
    "/records/{o}/{{id}}",
    "/records/{o}/{{id}}/restore",
    "/records/{o}/{{id}}/history",
]


def document(api: Api) -> dict[str, Any]:
    response = api.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.get_json()
    return body


def test_document_without_objects_is_valid(api: Api) -> None:
    doc = document(api)
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    assert {"/objects", "/objects/{name}", "/objects/{name}/versions"} <= set(doc["paths"])
    assert not any(p.startswith("/records/") for p in doc["paths"])


def test_document_describes_every_object(api: Api) -> None:
    define(api, dealer_definition())
    order, line = order_definitions()
    define(api, order)
    define(api, line)
    doc = document(api)
    validate(doc)
    schemas = doc["components"]["schemas"]
    for name, base in (
        ("dealer", "Dealer"),
        ("sales_order", "SalesOrder"),
        ("order_line", "OrderLine"),
    ):
        for template in RECORD_PATHS:
            assert template.format(o=name) in doc["paths"], (name, template)
        assert {base, f"{base}Input", f"{base}Patch", f"{base}Page"} <= set(schemas)

    dealer = schemas["Dealer"]["properties"]
    assert {"id", "version", "name", "level", "credit_limit", "parent"} <= set(dealer)
    assert dealer["name"]["maxLength"] == 120
    assert schemas["DealerInput"]["required"] == ["name"]
    assert "id" not in schemas["DealerInput"]["properties"]
    assert "version" in schemas["DealerPatch"]["required"]
    # read-only autonumber is not an input; children go inline under the related name
    assert "number" not in schemas["SalesOrderInput"]["properties"]
    assert schemas["SalesOrderInput"]["properties"]["lines"]["items"] == {
        "$ref": "#/components/schemas/OrderLineInput"
    }
    assert schemas["SalesOrder"]["properties"]["number"]["readOnly"] is True

    post = doc["paths"]["/records/dealer"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/DealerInput"
    }
    assert {"201", "401", "422"} <= set(post["responses"])


def test_input_schemas_agree_with_the_api(api: Api) -> None:
    """The published input schema accepts what the API accepts and refuses what it refuses."""
    define(api, dealer_definition())
    schemas = document(api)["components"]["schemas"]
    validator = Draft202012Validator(
        {"$ref": "#/components/schemas/DealerInput", "components": {"schemas": schemas}}
    )
    good = {"name": "Acme", "level": "gold", "credit_limit": 10, "parent": None}
    bad = [
        {"level": "gold"},
        {"name": "A", "level": "platinum"},
        {"name": "A", "credit_limit": -1},
        {"name": "A", "colour": 1},
    ]
    assert validator.is_valid(good)
    create(api, "dealer", good)
    for body in bad:
        assert not validator.is_valid(body), body
        error_of(api.post("/records/dealer", body), 422)


def test_document_follows_definition_changes(api: Api) -> None:
    define(api, dealer_definition())
    before = document(api)
    assert "email" not in before["components"]["schemas"]["Dealer"]["properties"]

    redefine(api, dealer_definition(email=field("email", "E-mail")))
    after = document(api)
    validate(after)
    assert after["components"]["schemas"]["Dealer"]["properties"]["email"]["title"] == "E-mail"
    assert "email" in after["components"]["schemas"]["DealerInput"]["properties"]
    assert after["info"]["version"] != before["info"]["version"]

    api.post("/objects/dealer/versions/1/restore")
    restored = document(api)
    assert "email" not in restored["components"]["schemas"]["Dealer"]["properties"]

    order, _ = order_definitions()
    define(api, order)
    assert "/records/sales_order" in document(api)["paths"]


def test_each_registry_gets_its_own_document() -> None:
    """Documents are cached per registry; a new registry (a new app) never sees an old one's.

    Registries are built here directly, one after another at the same revision, the
    way consecutive apps in one process (tests, reloads) see them.
    """
    for index in range(20):
        registry = MetaRegistry()
        name = f"object_{index}"
        doc = dealer_definition() | {"x-name": name}
        doc["properties"]["parent"]["x-target"] = name
        registry._objects = build_objects([(load_definition(doc), 1)])
        registry._revision = 1
        paths = openapi_document(registry, Permissions(is_admin=True))["paths"]
        assert f"/records/{name}" in paths, (index, sorted(paths))
        del registry
