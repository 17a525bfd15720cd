"""Through the API: patterns answer in linear time, text lengths default to 255, formats bite."""

from __future__ import annotations

import time
from typing import Any

from tests.conftest import Api
from tests.factories import definition, field
from tests.platform.runtime.helpers import (
    columns,
    create,
    define,
    detail_fields,
    detail_message,
    error_of,
    raw_rows,
)
from trellis.extensions import Database

EVIL = "^(a+)+$"


def without_length(x_type: str, **keywords: Any) -> dict[str, Any]:
    prop = field(x_type, **keywords)
    prop.pop("maxLength", None)
    return prop


def test_a_catastrophic_pattern_answers_within_100_ms(api: Api, database: Database) -> None:
    define(api, definition("gadget", {"code": field("text", pattern=EVIL)}))
    created = create(api, "gadget", {"code": "aaaa"})  # warms the registry and the compiled schema
    payloads = [
        ("POST", "/records/gadget", {"code": "a" * 40 + "!"}),
        ("PATCH", f"/records/gadget/{created['id']}", {"version": 1, "code": "a" * 60 + "!"}),
    ]
    for method, path, body in payloads:
        started = time.perf_counter()
        response = api.post(path, body) if method == "POST" else api.patch(path, body)
        elapsed = time.perf_counter() - started
        assert elapsed < 0.1, (method, elapsed)
        error = error_of(response, 422, "validation_failed")
        assert detail_fields(error) == {"code"}
        assert "does not match" in detail_message(error, "code")
    assert [row["code"] for row in raw_rows(database, "obj_gadget")] == ["aaaa"]


def test_patterns_re2_refuses_are_refused_at_their_pointer(api: Api) -> None:
    for pattern in (r"(a)\1", "(?=a)"):
        document = definition("gadget", {"code": field("text", pattern=pattern)})
        error = error_of(api.post("/objects", document), 422, "invalid_definition")
        assert detail_fields(error) == {"/properties/code/pattern"}
        assert "invalid regular expression" in detail_message(error, "/properties/code/pattern")
    assert api.get("/objects/gadget").status_code == 404


def test_text_without_max_length_is_varchar_255(api: Api, database: Database) -> None:
    body = define(
        api,
        definition("gadget", {"code": without_length("text"), "mail": without_length("email")}),
    )
    assert body["definition"]["properties"]["code"]["maxLength"] == 255
    assert body["definition"]["properties"]["mail"]["maxLength"] == 254
    stored = api.get("/objects/gadget/versions/1").get_json()["definition"]
    assert stored["properties"]["code"]["maxLength"] == 255
    physical = columns(database, "obj_gadget")
    assert physical["code"]["type"].length == 255
    assert physical["mail"]["type"].length == 254

    create(api, "gadget", {"code": "x" * 255})
    error = error_of(api.post("/records/gadget", {"code": "x" * 256}), 422, "validation_failed")
    assert detail_fields(error) == {"code"}
    assert "must be at most 255 characters" in detail_message(error, "code")
    long_mail = "a" * 250 + "@example.com"
    error = error_of(api.post("/records/gadget", {"mail": long_mail}), 422, "validation_failed")
    assert detail_fields(error) == {"mail"}
    assert len(raw_rows(database, "obj_gadget")) == 1

    openapi = api.get("/openapi.json").get_json()
    schemas = openapi["components"]["schemas"]
    assert any(
        s.get("properties", {}).get("code", {}).get("maxLength") == 255 for s in schemas.values()
    )


def test_formats_are_checked_with_the_same_verdict_as_the_definition(api: Api) -> None:
    define(
        api,
        definition(
            "gadget",
            {"mail": field("email"), "site": field("url"), "seen_at": field("datetime")},
        ),
    )
    refused = [
        ("mail", "a@b"),
        ("mail", "two@at@example.com"),
        ("site", "example.com"),
        ("seen_at", "2024-02-29 10:00"),
        ("seen_at", "2023-02-29T10:00:00Z"),
    ]
    for name, value in refused:
        error = error_of(api.post("/records/gadget", {name: value}), 422, "validation_failed")
        assert detail_fields(error) == {name}, (name, value, error)
    record = create(
        api,
        "gadget",
        {
            "mail": "ana@example.com",
            "site": "https://example.com/",
            "seen_at": "2024-02-29T10:00:00Z",
        },
    )
    assert record["seen_at"] == "2024-02-29T10:00:00Z"
