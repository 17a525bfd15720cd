"""Text that is not Unicode — lone surrogates, bytes that are not UTF-8 — is a 400 naming
where it sits, and nothing is written; on PostgreSQL it used to be a 500 from psycopg."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import Api
from tests.factories import dealer_definition, order_definitions
from tests.platform.runtime.helpers import create, define, error_of
from trellis.exceptions import BadRequest
from trellis.extensions import Database
from trellis.platform.runtime.unicode_text import (
    LONE_SURROGATE,
    NOT_UTF8,
    lone_surrogate_path,
    may_hold_lone_surrogate,
    refuse_undecodable_query,
)

ROLE = '{"x-name": "viewer", "x-label": {"en": LABEL}, "objects": {"dealer": {"read": "all"}}}'
OBJECT = (
    '{"$schema": "https://json-schema.org/draft/2020-12/schema", "x-name": "widget",'
    ' "x-label": {"en": LABEL}, "type": "object",'
    ' "properties": {KEY: {"x-type": "text", "type": "string", "maxLength": 20,'
    ' "x-label": {"en": "Name"}}}}'
)


def _object(label: str = '"Widget"', key: str = '"name"') -> str:
    return OBJECT.replace("LABEL", label).replace("KEY", key)


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# (method, path, JSON text sent as the body, the field the 400 must name)
BODIES: dict[str, tuple[str, str, str | bytes, str]] = {
    "record create": ("POST", "/records/dealer", '{"name": "A\\ud800"}', "name"),
    "record create, raw surrogate bytes": (
        "POST",
        "/records/dealer",
        b'{"name": "A\xed\xa0\x80"}',
        "name",
    ),
    "record create, UTF-16": (
        "POST",
        "/records/dealer",
        '{"name": "A\\ud800"}'.encode("utf-16-le"),
        "name",
    ),
    "record create, UTF-16 raw": (
        "POST",
        "/records/dealer",
        b'{\x00"\x00n\x00"\x00:\x00"\x00\x00\xd8"\x00}\x00',
        "n",
    ),
    "record create, a key": ("POST", "/records/dealer", '{"na\\udc00me": "A"}', "na\\udc00me"),
    "record create, child line": (
        "POST",
        "/records/sales_order",
        '{"dealer": DEALER, "lines": [{"quantity": 1}, {"quantity": 2, "sku": "\\udfff"}]}',
        "lines[1].sku",
    ),
    "record update": (
        "PATCH",
        "/records/dealer/DEALER",
        '{"version": 1, "name": "\\ud8ff"}',
        "name",
    ),
    "token name": ("POST", "/tokens", '{"name": "laptop \\ud800"}', "name"),
    "user create": (
        "POST",
        "/users",
        '{"email": "new@example.com", "password": "long enough pw", "name": "\\ud800"}',
        "name",
    ),
    "user update": ("PATCH", "/users/1", '{"name": "\\ud800"}', "name"),
    "role label, create": ("POST", "/roles", ROLE.replace("LABEL", '"\\ud800"'), "x-label.en"),
    "role label, update": (
        "PUT",
        "/roles/auditor",
        ROLE.replace("viewer", "auditor").replace("LABEL", '"\\ud800"'),
        "x-label.en",
    ),
    "object label": ("POST", "/objects", _object(label='"\\ud800"'), "x-label.en"),
    "object property name": (
        "POST",
        "/objects",
        _object(key='"na\\ud800me"'),
        "properties.na\\ud800me",
    ),
    "object update": ("PUT", "/objects/dealer", _object(label='"\\ud800"'), "x-label.en"),
}

# (query string, the field the 400 must name, the message)
QUERIES: dict[str, tuple[str, str, str]] = {
    "filter": ('filter=[["name","=","\\ud800"]]', "filter[0][2]", LONE_SURROGATE),
    "filter, percent-encoded": (
        "filter=%5B%5B%22name%22%2C%22%3D%22%2C%22%5Cud800%22%5D%5D",
        "filter[0][2]",
        LONE_SURROGATE,
    ),
    "sort": ("sort=%ED%A0%80", "sort", LONE_SURROGATE),
    "cursor": ("sort=name&cursor=" + _cursor(r'["\ud800", 1]'), "cursor[0]", LONE_SURROGATE),
    "fields": ("fields=name,%FF", "fields", NOT_UTF8),
    "q": ("q=%ED%B0%80", "q", LONE_SURROGATE),
}


@pytest.fixture
def world(api: Api) -> dict[str, Any]:
    """Objects, a dealer, a role; then one read, so the token's first use is recorded."""
    define(api, dealer_definition())
    for document in order_definitions():
        define(api, document)
    dealer = create(api, "dealer", {"name": "Acme"})
    role = '{"x-name": "auditor", "x-label": {"en": "Auditor"}, "objects": {}}'
    assert _send(api, "POST", "/roles", role).status_code == 201
    assert api.get("/me").status_code == 200
    return dealer


def _send(api: Api, method: str, path: str, body: str | bytes) -> Any:
    return api.client.open(
        f"/api/v1{path}",
        method=method,
        data=body,
        headers={**api.headers, "Content-Type": "application/json"},
    )


def database_state(database: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table: what "nothing was written" is checked against."""
    metadata = sa.MetaData()
    metadata.reflect(database.engine)
    with database.engine.connect() as connection:
        return {
            name: sorted(map(tuple, connection.execute(sa.select(table))), key=repr)
            for name, table in metadata.tables.items()
        }


@pytest.mark.parametrize("case", BODIES, ids=list(BODIES))
def test_a_lone_surrogate_in_a_body_is_a_400_naming_its_path(
    api: Api, world: dict[str, Any], case: str, database: Database
) -> None:
    method, path, body, field = BODIES[case]
    dealer_id = str(world["id"])
    if isinstance(body, str):
        body = body.replace("DEALER", dealer_id)
    before = database_state(database)
    error = error_of(_send(api, method, path.replace("DEALER", dealer_id), body), 400)
    assert error["code"] == "bad_request"
    assert error["details"] == [{"field": field, "message": LONE_SURROGATE}]
    assert database_state(database) == before


@pytest.mark.parametrize("case", QUERIES, ids=list(QUERIES))
def test_query_parameters_that_are_not_unicode_are_a_400(
    api: Api, world: dict[str, Any], case: str, database: Database
) -> None:
    query, field, message = QUERIES[case]
    before = database_state(database)
    for path in ("/records/dealer", "/records/dealer/export"):
        response = api.client.get(
            f"/api/v1{path}", headers=api.headers, environ_overrides={"QUERY_STRING": query}
        )
        error = error_of(response, 400, "bad_request")
        assert error["details"] == [{"field": field, "message": message}]
    assert database_state(database) == before


def test_raw_bytes_that_are_not_utf8_in_a_query_string(api: Api, world: dict[str, Any]) -> None:
    # Sent unescaped, as a raw HTTP client may: werkzeug itself fails decoding them.
    raw = b"limit=5&sort=\xed\xa0\x80".decode("latin-1")
    response = api.client.get(
        "/api/v1/records/dealer", headers=api.headers, environ_overrides={"QUERY_STRING": raw}
    )
    error = error_of(response, 400, "bad_request")
    assert error["details"] == [{"field": "sort", "message": LONE_SURROGATE}]


def test_surrogate_pairs_are_characters_and_are_stored(api: Api, world: dict[str, Any]) -> None:
    response = _send(api, "POST", "/records/dealer", '{"name": "Smile \\ud83d\\ude00"}')
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["name"] == "Smile \N{GRINNING FACE}"
    page = api.client.get(
        "/api/v1/records/dealer",
        headers=api.headers,
        query_string={"filter": '[["name", "=", "Smile \\ud83d\\ude00"]]'},
    )
    assert [item["name"] for item in page.get_json()["items"]] == ["Smile \N{GRINNING FACE}"]


def test_a_page_with_an_undecodable_query_is_a_400_page(api: Api) -> None:
    response = api.client.get("/login", environ_overrides={"QUERY_STRING": "next=%ED%A0%80"})
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert "next" in response.text and "lone surrogate" in response.text


def test_only_plain_utf8_without_surrogate_escapes_skips_the_check() -> None:
    assert not may_hold_lone_surrogate('{"name": "Café 经销商 \N{GRINNING FACE}"}'.encode())
    assert not may_hold_lone_surrogate(rb'{"name": "\u00e9 \\ud"}')
    for raw in (
        rb'{"name": "\ud800"}',
        rb'{"name": "\uDFFF"}',
        rb'{"name": "\ud83d\ude00"}',  # a pair: walked, and let through
        b'{"name": "\xed\xa0\x80"}',
        '{"name": "x"}'.encode("utf-16-le"),
        '{"name": "x"}'.encode("utf-32"),
    ):
        assert may_hold_lone_surrogate(raw), raw


def test_the_path_is_the_first_offence_in_document_order() -> None:
    value = {"a": ["ok", {"b": "\ud800"}], "c": "\udfff"}
    assert lone_surrogate_path(value) == "a[1].b"
    assert lone_surrogate_path(value, "filter") == "filter.a[1].b"
    assert lone_surrogate_path(["x", ["y", "\ud800"]]) == "[1][1]"
    assert lone_surrogate_path({"a": "\N{GRINNING FACE}", "b": ["é"]}) is None


def test_any_nesting_depth_is_walked_without_recursion() -> None:
    value: Any = "\ud800"
    for _ in range(100_000):
        value = [value]
    assert lone_surrogate_path(value) == "[0]" * 100_000


def test_query_strings_without_escapes_pass_untouched() -> None:
    refuse_undecodable_query(b"filter=%5B%5D&q=caf%C3%A9&sort=-name&empty=&flag")
    with pytest.raises(BadRequest) as caught:
        refuse_undecodable_query(b"q=caf%C3%A9&%FFname=x")
    assert caught.value.details == [{"field": "\ufffdname", "message": NOT_UTF8}]
