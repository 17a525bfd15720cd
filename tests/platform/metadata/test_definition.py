"""The meta-schema, validate_definition's problems and pointers, parsing, record schemas."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tests.factories import SCHEMA, dealer_definition, definition, field, order_definitions
from trellis.exceptions import InvalidDefinition
from trellis.platform.metadata import (
    ObjectDefinition,
    Problem,
    load_definition,
    meta_schema,
    parse_definition,
    validate_definition,
)

PARENT = definition("parent_object", {"title": field("text")})
KNOWN = {"parent_object": PARENT}


def one(name: str, prop: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return definition("thing", {name: prop}, **extra)


def problems_at(doc: Any, known: dict[str, Any] | None = None) -> dict[str, str]:
    problems = validate_definition(doc, known)
    assert all(isinstance(p, Problem) for p in problems)
    return {p.pointer: p.message for p in problems}


# --- the meta-schema ---------------------------------------------------------------------


def test_meta_schema_is_a_valid_2020_12_schema() -> None:
    schema = meta_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == SCHEMA
    assert meta_schema() is schema  # built once


def test_meta_schema_accepts_definitions_as_standard_json_schema_tools_see_them() -> None:
    validator = Draft202012Validator(meta_schema())
    assert validator.is_valid(dealer_definition())
    assert not validator.is_valid(one("f", {"x-type": "text"}))
    # And a definition is itself a valid JSON Schema document for its records.
    Draft202012Validator.check_schema(dealer_definition())


@pytest.mark.parametrize(
    "doc",
    [
        dealer_definition(),
        *order_definitions(),
        definition("minimal", {"a": field("json")}),
        one("f", field("text", type=["string", "null"], default=None)),
        one("f", field("integer", minimum=0, maximum=10, default=5)),
        one("f", field("picklist", default="a", **{"x-enum-labels": {"a": {"en": "A"}}})),
        one("f", field("multipicklist", default=["a"], uniqueItems=True, maxItems=2)),
        one("f", field("date", default="2024-02-29")),
        one("f", field("text", pattern="^[A-Z]+$", minLength=1)),
        one("f", field("lookup", **{"x-target": "thing", "x-on-delete": "set_null"})),
        one("f", field("text"), **{"x-title-field": "f", "x-label-plural": {"en": "Things"}}),
        one("f", field("text"), additionalProperties=False, description="d", title="t"),
    ],
    ids=lambda doc: doc["x-name"] + ":" + ",".join(doc["properties"]),
)
def test_valid_definitions_have_no_problems(doc: dict[str, Any]) -> None:
    known = {"dealer": dealer_definition(), "sales_order": order_definitions()[0]}
    assert validate_definition(doc, known) == []


def test_not_an_object() -> None:
    for doc in ([], "dealer", None, 3):
        assert problems_at(doc) == {"": "an object definition must be a JSON object"}


def test_missing_top_level_keywords() -> None:
    problems = validate_definition({"x-name": "thing"})
    assert {p.pointer for p in problems} == {""}
    text = " ".join(p.message for p in problems)
    for keyword in ("x-label", "type", "properties"):
        assert repr(keyword) in text


# --- each kind of problem, at its pointer ------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "pointer", "words"),
    [
        (definition("Thing", {"f": field("text")}), "/x-name", "must start with a lowercase"),
        (definition("select", {"f": field("text")}), "/x-name", "reserved word"),
        (one("Bad", field("text")), "/properties/Bad", "must start with a lowercase"),
        (one("name-x", field("text")), "/properties/name-x", "must start with a lowercase"),
        (one("created_at", field("text")), "/properties/created_at", "reserved word"),
        (one("order", field("text")), "/properties/order", "reserved word"),
        (one("f", {"x-type": "rich", "type": "string"}), "/properties/f/x-type", "'rich'"),
        (one("f", {"type": "string"}), "/properties/f", "'x-type' is required"),
        (one("f", field("text", type="integer")), "/properties/f/type", "type must be 'string'"),
        (one("f", field("currency", type="string")), "/properties/f/type", "'number'"),
        (one("f", field("date", type=["integer", "null"])), "/properties/f/type", "'string'"),
        (one("f", field("integer", type=["integer", "integer"])), "/properties/f/type", "type"),
        (one("f", {"x-type": "text"}), "/properties/f", "'type'"),
        (one("f", {"x-type": "picklist", "type": "string"}), "/properties/f", "'enum'"),
        (one("f", {"x-type": "autonumber", "type": "string"}), "/properties/f", "'x-format'"),
        (one("f", {"x-type": "date", "type": "string"}), "/properties/f", "'format'"),
        (one("f", {"x-type": "lookup", "type": "integer"}), "/properties/f", "'x-target'"),
        (one("f", field("text", foo=1)), "/properties/f/foo", "unknown keyword 'foo'"),
        (one("f", field("text"), foo=1), "/foo", "unknown keyword 'foo'"),
        (one("f", field("integer", maxLength=3)), "/properties/f/maxLength", "unknown keyword"),
        (one("f", field("text", maxLength=0)), "/properties/f/maxLength", "at least 1"),
        (one("f", field("picklist", enum=[])), "/properties/f/enum", "at least one item"),
        (one("f", field("picklist", enum=["a", "a"])), "/properties/f/enum", "twice"),
        (one("f", field("date", format="date-time")), "/properties/f/format", "'date'"),
        (one("f", field("currency", **{"x-scale": 9})), "/properties/f/x-scale", "at most"),
        (one("f", field("autonumber", **{"x-format": "{FOO}"})), "/properties/f/x-format", ""),
        (
            one("f", field("autonumber", **{"x-format": "A-{YYYY}"})),
            "/properties/f/x-format",
            "counter",
        ),
        (one("f", field("text", **{"x-label": {}})), "/properties/f/x-label", "must not be empty"),
        (
            one("f", field("text", **{"x-label": {"english": "F"}})),
            "/properties/f/x-label/english",
            "",
        ),
        (
            one("f", field("text", **{"x-label": {"en": ""}})),
            "/properties/f/x-label/en",
            "must not be empty",
        ),
        (one("f", 5), "/properties/f", "must be an object"),
        (definition("thing", {}), "/properties", "must not be empty"),
        (one("f", field("text"), type="array"), "/type", "'object'"),
        (one("f", field("text"), additionalProperties=True), "/additionalProperties", "False"),
        (
            one("f", field("text"), **{"$schema": "http://json-schema.org/draft-07/schema#"}),
            "/$schema",
            "",
        ),
        (one("f", field("text"), required=["f", "f"]), "/required", "twice"),
        (
            one("f", field("lookup", **{"x-target": "ghost"})),
            "/properties/f/x-target",
            "unknown object 'ghost'",
        ),
        (
            one("f", field("lookup", **{"x-target": "thing", "x-on-delete": "cascade"})),
            "/properties/f/x-on-delete",
            "",
        ),
        (
            one(
                "f",
                field("master_detail", **{"x-target": "parent_object", "x-related-name": "things"}),
            ),
            "/properties/f",
            "must be required",
        ),
        (
            one("f", field("picklist", **{"x-enum-labels": {"c": {"en": "C"}}})),
            "/properties/f/x-enum-labels/c",
            "'c' is not one of the values",
        ),
        (
            one("f", field("picklist", **{"x-enum-labels": {"c/d": {"en": "C"}}})),
            "/properties/f/x-enum-labels/c~1d",
            "not one of",
        ),
        (
            one("f", field("multipicklist", **{"x-enum-labels": {"c": {"en": "C"}}})),
            "/properties/f/x-enum-labels/c",
            "not one of",
        ),
        (one("f", field("integer", minimum=0, default=-1)), "/properties/f/default", "at least 0"),
        (
            one("f", field("text", maxLength=3, default="toolong")),
            "/properties/f/default",
            "at most 3 characters",
        ),
        (one("f", field("picklist", default="z")), "/properties/f/default", "'z' is not one of"),
        (one("f", field("multipicklist", default=["z"])), "/properties/f/default", "'z'"),
        (one("f", field("boolean", default="yes")), "/properties/f/default", "true or false"),
        (one("f", field("date", default="2024-13-45")), "/properties/f/default", "valid date"),
        (one("f", field("email", default="nobody")), "/properties/f/default", "valid email"),
        (
            one("f", field("autonumber", default="N-1")),
            "/properties/f/default",
            "cannot have a default",
        ),
        (one("f", field("text", pattern="[")), "/properties/f/pattern", "regular expression"),
        (one("f", field("phone", pattern="(")), "/properties/f/pattern", "regular expression"),
        (one("f", field("text"), required=["g"]), "/required/0", "'g' is not a field"),
        (one("f", field("text"), **{"x-title-field": "g"}), "/x-title-field", "'g' is not a field"),
        (
            one("f", field("boolean", **{"x-unique": True})),
            "/properties/f/x-unique",
            "cannot be unique",
        ),
        (
            one("f", field("multipicklist", **{"x-unique": True})),
            "/properties/f/x-unique",
            "cannot be unique",
        ),
    ],
)
def test_problem_pointers(doc: dict[str, Any], pointer: str, words: str) -> None:
    problems = problems_at(doc, KNOWN)
    assert pointer in problems, problems
    assert words.lower() in problems[pointer].lower(), problems
    # A refused definition is refused by parse_definition with the same details.
    with pytest.raises(InvalidDefinition) as caught:
        parse_definition(doc, KNOWN)
    assert {"field": pointer, "message": problems[pointer]} in caught.value.details
    assert caught.value.status == 422


def test_a_name_with_a_trailing_newline_is_refused() -> None:
    """Python's ``$`` matches before a final newline; names must not sneak one in."""
    assert "/x-name" in problems_at(definition("thing\n", {"f": field("text")}))
    assert "/properties/f\n" in problems_at(one("f\n", field("text")))


def test_every_problem_is_reported_not_just_the_first() -> None:
    doc = definition(
        "thing",
        {
            "Bad": field("text"),
            "f": field("text", foo=1, bar=2),
            "g": {"x-type": "picklist", "type": "string"},
        },
    )
    assert set(problems_at(doc)) == {
        "/properties/Bad",
        "/properties/f/foo",
        "/properties/f/bar",
        "/properties/g",
    }


def test_semantic_problems_are_all_reported() -> None:
    doc = definition(
        "thing",
        {
            "f": field("lookup", **{"x-target": "ghost"}),
            "g": field("integer", minimum=5, default=1),
        },
        required=["f", "nope"],
        **{"x-title-field": "missing"},
    )
    assert set(problems_at(doc)) == {
        "/properties/f/x-target",
        "/properties/g/default",
        "/required/1",
        "/x-title-field",
    }


def test_references_resolve_against_known_objects_and_itself() -> None:
    to_parent = one("p", field("lookup", **{"x-target": "parent_object"}))
    assert "/properties/p/x-target" in problems_at(to_parent)
    assert problems_at(to_parent, KNOWN) == {}
    to_itself = one("p", field("lookup", **{"x-target": "thing"}))
    assert problems_at(to_itself) == {}


def test_master_detail_rules() -> None:
    def child(related: str, target: str = "parent_object", name: str = "thing") -> dict[str, Any]:
        prop = field("master_detail", **{"x-target": target, "x-related-name": related})
        return definition(name, {"m": prop}, required=["m"])

    assert problems_at(child("things"), KNOWN) == {}
    assert problems_at(child("things", target="thing")) == {
        "/properties/m/x-target": "an object cannot be its own master"
    }
    # The related name sits next to the parent's own fields and system keys.
    assert "already a field" in problems_at(child("title"), KNOWN)["/properties/m/x-related-name"]
    assert "reserved" in problems_at(child("version"), KNOWN)["/properties/m/x-related-name"]
    assert "lowercase" in problems_at(child("Things!"), KNOWN)["/properties/m/x-related-name"]
    # Two child objects cannot file their records under the same name in one parent.
    known = {**KNOWN, "other_child": child("things", name="other_child")}
    message = problems_at(child("things"), known)["/properties/m/x-related-name"]
    assert "other_child" in message
    assert problems_at(child("others"), known) == {}
    # Re-validating the existing child against its siblings is not a clash with itself.
    assert problems_at(child("things", name="other_child"), known) == {}


def test_validation_never_mutates_the_document() -> None:
    doc = one("f", field("text", foo=1))
    before = copy.deepcopy(doc)
    validate_definition(doc)
    assert doc == before


# --- parsing -----------------------------------------------------------------------------


def test_parse_definition() -> None:
    parsed = parse_definition(dealer_definition())
    assert isinstance(parsed, ObjectDefinition)
    assert parsed.name == "dealer"
    assert list(parsed.fields) == ["name", "level", "credit_limit", "parent"]
    assert parsed.fields["name"].required and not parsed.fields["level"].required
    assert parsed.fields["credit_limit"].type.name == "currency"
    assert parsed.label == {"en": "Dealer", "zh-CN": "dealer"}
    assert parsed.title_field is None
    assert [f.name for f in parsed.lookups()] == ["parent"]
    assert parsed.master_field() is None
    order, line = order_definitions()
    child = parse_definition(line, {"sales_order": order})
    master = child.master_field()
    assert master is not None and master.name == "sales_order"
    assert [f.name for f in child.lookups()] == ["sales_order"]


def test_parse_refuses_with_every_problem() -> None:
    with pytest.raises(InvalidDefinition) as caught:
        parse_definition(
            definition("thing", {"Bad": field("text"), "g": {"x-type": "nope", "type": "string"}})
        )
    assert caught.value.code == "invalid_definition"
    assert len(caught.value.details) == 2
    assert "2 problem" in caught.value.message


def test_load_definition_copies_the_document() -> None:
    doc = dealer_definition()
    parsed = load_definition(doc)
    doc["properties"]["name"]["maxLength"] = 1
    assert parsed.document["properties"]["name"]["maxLength"] == 120


# --- record schemas ----------------------------------------------------------------------


def _record_errors(parsed: ObjectDefinition, record: Any) -> list[str]:
    validator = Draft202012Validator(
        parsed.record_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    return [e.message for e in validator.iter_errors(record)]


def _everything() -> ObjectDefinition:
    return parse_definition(
        definition(
            "everything",
            {
                "name": field("text", maxLength=10),
                "notes": field("textarea"),
                "count": field("integer", minimum=0),
                "ratio": field("percent", maximum=100),
                "amount": field("currency", minimum=0),
                "active": field("boolean"),
                "day": field("date"),
                "moment": field("datetime"),
                "level": field("picklist", enum=["gold", "silver"]),
                "tags": field("multipicklist", uniqueItems=True),
                "mail": field("email"),
                "phone": field("phone", pattern="^[0-9 +]+$"),
                "site": field("url"),
                "parent": field("lookup", **{"x-target": "everything"}),
                "number": field("autonumber"),
                "extra": field("json", type="object"),
            },
            required=["name", "number"],
        )
    )


def test_record_schema_is_a_standard_schema() -> None:
    schema = _everything().record_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["required"] == ["name"]  # the autonumber is the platform's to fill
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize(
    "record",
    [
        {"name": "Acme"},
        {
            "name": "Acme",
            "notes": "long " * 100,
            "count": 3,
            "ratio": 12.5,
            "amount": 10.25,
            "active": True,
            "day": "2024-02-29",
            "moment": "2024-02-29T10:00:00Z",
            "level": "gold",
            "tags": ["a", "b"],
            "mail": "a@example.com",
            "phone": "+86 21 5555 0101",
            "site": "https://example.com/x",
            "parent": 1,
            "number": "N-0001",
            "extra": {"any": ["thing"]},
        },
        {"name": "Acme", "count": None, "level": None, "tags": None, "extra": None, "day": None},
    ],
)
def test_record_schema_accepts_good_records(record: dict[str, Any]) -> None:
    assert _record_errors(_everything(), record) == []


@pytest.mark.parametrize(
    ("record", "words"),
    [
        ({}, "'name' is a required property"),
        ({"name": None}, "not of type 'string'"),
        ({"name": "x" * 11}, "too long"),
        ({"name": "A", "unknown": 1}, "'unknown' was unexpected"),
        ({"name": "A", "id": 1}, "'id' was unexpected"),
        ({"name": "A", "count": -1}, "minimum"),
        ({"name": "A", "count": 1.5}, "not of type 'integer'"),
        ({"name": "A", "count": "1"}, "not of type 'integer'"),
        ({"name": "A", "ratio": 101}, "maximum"),
        ({"name": "A", "amount": -0.01}, "minimum"),
        ({"name": "A", "amount": "1"}, "not of type 'number'"),
        ({"name": "A", "active": "true"}, "not of type 'boolean'"),
        ({"name": "A", "day": "29/02/2024"}, "'date'"),
        ({"name": "A", "moment": "2024-02-29"}, "'date-time'"),
        ({"name": "A", "level": "bronze"}, "is not one of"),
        ({"name": "A", "tags": ["a", "a"]}, "non-unique"),
        ({"name": "A", "tags": ["z"]}, "is not one of"),
        ({"name": "A", "tags": "a"}, "not of type 'array'"),
        ({"name": "A", "mail": "nobody"}, "'email'"),
        ({"name": "A", "phone": "call me"}, "does not match"),
        ({"name": "A", "parent": 0}, "minimum"),
        ({"name": "A", "parent": True}, "not of type 'integer'"),
        ({"name": "A", "extra": [1]}, "not of type 'object', 'null'"),
    ],
)
def test_record_schema_rejects_bad_records(record: dict[str, Any], words: str) -> None:
    errors = _record_errors(_everything(), record)
    assert errors and any(words in e for e in errors), errors


def test_required_fields_are_not_nullable() -> None:
    parsed = parse_definition(
        definition("thing", {"f": field("picklist"), "g": field("picklist")}, required=["f"])
    )
    assert _record_errors(parsed, {"f": "a", "g": None}) == []
    assert _record_errors(parsed, {"f": None}) != []
