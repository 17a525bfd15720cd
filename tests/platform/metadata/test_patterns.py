"""Patterns run by RE2 (linear time), one format dialect, and the text length default."""

from __future__ import annotations

import re
import time
from typing import Any

import fastjsonschema
import pytest

from tests.factories import definition, field
from trellis.platform.metadata import parse_definition, validate_definition
from trellis.platform.metadata.patterns import (
    fast_validator,
    full_validator,
    pattern_matches,
    pattern_problem,
)

EVIL = "^(a+)+$"
EVIL_INPUT = "a" * 40 + "!"


def problems_of(doc: dict[str, Any]) -> dict[str, str]:
    return {p.pointer: p.message for p in validate_definition(doc)}


def fast_ok(schema: dict[str, Any], value: Any) -> bool:
    check = fast_validator(schema)
    assert check is not None
    try:
        check(value)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def full_ok(schema: dict[str, Any], value: Any) -> bool:
    return not list(full_validator(schema).iter_errors(value))


# --- patterns ------------------------------------------------------------------------------


def test_catastrophic_pattern_is_linear_in_both_validators() -> None:
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": EVIL}}}
    started = time.perf_counter()
    assert not fast_ok(schema, {"code": EVIL_INPUT})
    errors = list(full_validator(schema).iter_errors({"code": EVIL_INPUT}))
    elapsed = time.perf_counter() - started
    assert elapsed < 0.1, elapsed
    assert [list(e.absolute_path) for e in errors] == [["code"]]
    assert "does not match" in errors[0].message
    assert fast_ok(schema, {"code": "aaaa"}) and full_ok(schema, {"code": "aaaa"})


def test_catastrophic_pattern_in_a_default_is_checked_quickly() -> None:
    doc = definition("thing", {"code": field("text", pattern=EVIL, default=EVIL_INPUT)})
    validate_definition(definition("warm", {"f": field("text")}))  # the meta-schema, built once
    started = time.perf_counter()
    problems = problems_of(doc)
    assert time.perf_counter() - started < 0.1
    assert "does not match" in problems["/properties/code/default"]


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        ("b", "abc", True),  # unanchored: a match anywhere will do
        ("^b", "abc", False),
        ("^abc$", "abc", True),
        ("^abc$", "abc\n", False),  # as in ECMA-262 (Python's re would say yes)
        (r"^\d{3}$", "123", True),
        (r"^\p{L}+$", "经销商", True),
    ],
)
def test_search_semantics(pattern: str, text: str, matches: bool) -> None:
    assert pattern_matches(pattern, text) is matches
    schema = {"type": "string", "pattern": pattern}
    assert fast_ok(schema, text) is matches
    assert full_ok(schema, text) is matches


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        (r"(a)\1", "invalid escape sequence"),
        ("(?=a)", "invalid perl operator"),
        ("(?<!a)b", "invalid perl operator"),
        ("[", "missing ]"),
        ("a{2000}", "invalid repetition size"),
    ],
)
def test_patterns_re2_cannot_run_are_refused_with_their_pointer(pattern: str, words: str) -> None:
    assert pattern_problem(pattern) is not None
    problems = problems_of(definition("thing", {"code": field("text", pattern=pattern)}))
    assert list(problems) == ["/properties/code/pattern"]
    assert words in problems["/properties/code/pattern"]
    assert "linear time" in problems["/properties/code/pattern"]


def test_nested_patterns_of_json_fields_are_checked() -> None:
    schema = {
        "type": "object",
        "properties": {"sku": {"type": "string", "pattern": r"(x)\1"}},
        "items": [{"pattern": "ok"}, {"pattern": "(?=a)"}],
        "propertyNames": {"pattern": "^(?!_)"},
        "enum": [{"pattern": "(?=data is not a schema)"}],
    }
    problems = problems_of(definition("thing", {"data": field("json", **schema)}))
    assert set(problems) == {
        "/properties/data/properties/sku/pattern",
        "/properties/data/items/1/pattern",
        "/properties/data/propertyNames/pattern",
    }


@pytest.mark.parametrize(
    ("keywords", "pointer"),
    [
        ({"patternProperties": {"^a": {"type": "integer"}}}, "/properties/data/patternProperties"),
        ({"$ref": "http://169.254.169.254/schema.json"}, "/properties/data/$ref"),
        ({"anyOf": [{"$ref": "file:///etc/passwd"}]}, "/properties/data/anyOf/0/$ref"),
    ],
)
def test_json_fields_refuse_keywords_that_would_use_re_or_fetch(
    keywords: dict[str, Any], pointer: str
) -> None:
    problems = problems_of(definition("thing", {"data": field("json", **keywords)}))
    assert pointer in problems, problems


def test_nested_pattern_in_a_json_field_is_enforced_by_re2() -> None:
    doc = definition(
        "thing",
        {"data": field("json", type="object", properties={"code": {"pattern": EVIL}})},
    )
    schema = parse_definition(doc).record_schema()
    assert not fast_ok(schema, {"data": {"code": EVIL_INPUT}})
    assert not full_ok(schema, {"data": {"code": EVIL_INPUT}})
    assert fast_ok(schema, {"data": {"code": "aa"}})


def test_a_users_format_cannot_borrow_another_fields_pattern() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "string", "pattern": "^x$"},
            "b": {"type": "string", "format": "trellis-pattern-0"},
        },
    }
    assert fast_ok(schema, {"a": "x", "b": "anything"})


def test_pattern_properties_fall_back_to_the_re2_validator() -> None:
    # Only a definition stored before patternProperties was refused can carry one.
    schema = {"type": "object", "patternProperties": {EVIL: {"type": "integer"}}}
    assert fast_validator(schema) is None
    started = time.perf_counter()
    assert full_ok(schema, {EVIL_INPUT: "not checked: the key does not match"})
    assert not full_ok(schema, {"aaa": "x"})
    assert time.perf_counter() - started < 0.1


def test_a_stored_pattern_re2_refuses_is_a_validation_error_not_a_crash() -> None:
    schema = {"type": "string", "pattern": "(?=a)"}
    assert not fast_ok(schema, "a")
    messages = [e.message for e in full_validator(schema).iter_errors("a")]
    assert messages and "cannot be checked" in messages[0]


# --- formats: one verdict whichever validator runs --------------------------------------


@pytest.mark.parametrize(
    ("format_name", "value", "valid"),
    [
        ("email", "ana@example.com", True),
        ("email", "nobody", False),
        ("email", "a@b", False),
        ("email", "a..b@example.com", False),
        ("email", "a b@example.com", False),
        ("email", "a@b@example.com", False),
        ("date-time", "2024-02-29T10:00:00Z", True),
        ("date-time", "2024-02-29T10:00:00+01:00", True),
        ("date-time", "2024-02-29", False),
        ("date-time", "2024-02-29 10:00:00Z", False),
        ("date-time", "2023-02-29T10:00:00Z", False),
        ("date", "2024-02-29", True),
        ("date", "2023-02-29", False),
        ("date", "29/02/2024", False),
        ("uri", "https://example.com/a?b=c", True),
        ("uri", "example.com", False),
        ("uri", "http://exa mple.com", False),
        ("regex", "^a+$", True),
        ("regex", "(?=a)", False),
    ],
)
def test_formats_are_checked_and_agree(format_name: str, value: str, valid: bool) -> None:
    schema = {"type": "string", "format": format_name}
    assert full_ok(schema, value) is valid
    assert fast_ok(schema, value) is valid


def test_formats_are_checked_without_optional_extras() -> None:
    # jsonschema skips a format silently when its checker's library is missing; the
    # dependencies (jsonschema[format-nongpl]) must bring them all.
    from jsonschema import FormatChecker

    assert {"date-time", "uri", "uri-reference", "iri", "duration"} <= set(FormatChecker().checkers)
    assert not full_ok({"format": "uri"}, "not a uri")


# --- text lengths -------------------------------------------------------------------------


def _without_length(x_type: str, **keywords: Any) -> dict[str, Any]:
    prop = field(x_type, **keywords)
    prop.pop("maxLength", None)
    return prop


@pytest.mark.parametrize(
    ("x_type", "length"), [("text", 255), ("email", 254), ("phone", 40), ("url", 2000)]
)
def test_varchar_fields_get_their_length_written_in(x_type: str, length: int) -> None:
    doc = definition("thing", {"f": _without_length(x_type)})
    assert validate_definition(doc) == []
    parsed = parse_definition(doc)
    assert parsed.document["properties"]["f"]["maxLength"] == length
    assert parsed.fields["f"].column_type().length == length  # type: ignore[attr-defined]
    assert parsed.record_schema()["properties"]["f"]["maxLength"] == length
    assert "maxLength" not in doc["properties"]["f"]  # the caller's document is untouched
    assert parse_definition(parsed.document).document == parsed.document  # idempotent


def test_an_explicit_length_is_kept_and_textarea_stays_unbounded() -> None:
    doc = definition("thing", {"a": field("text", maxLength=12), "b": field("textarea")})
    parsed = parse_definition(doc)
    assert parsed.document["properties"]["a"]["maxLength"] == 12
    assert "maxLength" not in parsed.document["properties"]["b"]


def test_the_default_length_is_checked_against_defaults_and_min_length() -> None:
    too_long = definition("thing", {"f": _without_length("text", default="x" * 256)})
    assert "at most 255 characters" in problems_of(too_long)["/properties/f/default"]
    impossible = definition("thing", {"f": _without_length("text", minLength=256)})
    assert "greater than maxLength 255" in problems_of(impossible)["/properties/f/minLength"]


def test_python_re_is_not_what_runs() -> None:
    # Guard for the test above: Python's re does say yes where RE2 and ECMA-262 say no.
    assert re.search("^abc$", "abc\n") is not None
