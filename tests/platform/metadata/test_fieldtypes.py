"""The field-type registry: definitions, JSON <-> Python round trips, type-change coercion."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from jsonschema import Draft202012Validator

from tests.factories import definition, field
from trellis.platform.metadata.definition import validate_definition
from trellis.platform.metadata.fieldtypes import (
    ALL_OPS,
    FieldConversionError,
    FieldSpec,
    FieldType,
    get_type,
    register,
    registered_types,
    type_names,
)

REGISTERED = [
    "autonumber",
    "boolean",
    "currency",
    "date",
    "datetime",
    "email",
    "file",
    "formula",
    "image",
    "integer",
    "json",
    "lookup",
    "master_detail",
    "multipicklist",
    "number",
    "percent",
    "phone",
    "picklist",
    "richtext",
    "rollup",
    "text",
    "textarea",
    "url",
    "user",
]

EXTRA: dict[str, dict[str, Any]] = {
    "lookup": {"x-target": "parent_object"},
    "master_detail": {"x-target": "parent_object", "x-related-name": "children"},
}
PARENT = definition("parent_object", {"title": field("text")})


def minimal(type_name: str, **keywords: Any) -> dict[str, Any]:
    """The smallest definition holding one field ``f`` of the type."""
    prop = field(type_name, **{**EXTRA.get(type_name, {}), **keywords})
    required = ["f"] if type_name == "master_detail" else None
    return definition("thing", {"f": prop}, required=required)


def spec(type_name: str, required: bool = False, **keywords: Any) -> FieldSpec:
    prop = minimal(type_name, **keywords)["properties"]["f"]
    return FieldSpec("f", get_type(type_name), prop, required)


def test_registry_lists_every_type() -> None:
    assert type_names() == REGISTERED
    assert set(registered_types()) == set(REGISTERED)
    for name in REGISTERED:
        assert get_type(name).name == name
    with pytest.raises(KeyError):
        get_type("nope")


@pytest.mark.parametrize("type_name", [t for t in REGISTERED if t != "rollup"])
def test_minimal_definition_of_each_type_is_valid(type_name: str) -> None:
    assert validate_definition(minimal(type_name), {"parent_object": PARENT}) == []


@pytest.mark.parametrize("type_name", REGISTERED)
def test_each_type_describes_itself(type_name: str) -> None:
    field_type = get_type(type_name)
    Draft202012Validator.check_schema(field_type.definition_schema())
    the_spec = spec(type_name, required=type_name == "master_detail")
    assert isinstance(the_spec.column_type(), sa.types.TypeEngine)
    assert field_type.operators and field_type.operators <= ALL_OPS
    assert isinstance(field_type.widget, str) and field_type.widget
    Draft202012Validator.check_schema(the_spec.value_schema())


@pytest.mark.parametrize("type_name", [t for t in REGISTERED if t not in ("json", "rollup")])
def test_each_type_refuses_unknown_keywords(type_name: str) -> None:
    problems = validate_definition(minimal(type_name, bogus=1), {"parent_object": PARENT})
    assert [p.pointer for p in problems] == ["/properties/f/bogus"]


def test_json_fields_may_carry_any_json_schema() -> None:
    doc = minimal("json", type="object", properties={"a": {"type": "integer"}})
    assert validate_definition(doc) == []


@pytest.mark.parametrize(
    ("type_name", "column"),
    [
        ("text", sa.String),
        ("textarea", sa.Text),
        ("integer", sa.BigInteger),
        ("number", sa.Double),
        ("percent", sa.Double),
        ("currency", sa.Numeric),
        ("boolean", sa.Boolean),
        ("date", sa.Date),
        ("datetime", sa.DateTime),
        ("picklist", sa.String),
        ("multipicklist", sa.JSON),
        ("json", sa.JSON),
        ("lookup", sa.BigInteger),
        ("autonumber", sa.String),
    ],
)
def test_column_types(type_name: str, column: type[Any]) -> None:
    assert isinstance(spec(type_name).column_type(), column)


def test_column_details() -> None:
    assert spec("text", maxLength=77).column_type().length == 77  # type: ignore[attr-defined]
    assert spec("email").column_type().length == 254  # type: ignore[attr-defined]
    money = spec("currency", **{"x-scale": 4}).column_type()
    assert (money.precision, money.scale) == (20, 4)  # type: ignore[attr-defined]
    assert spec("currency").column_type().scale == 2  # type: ignore[attr-defined]
    assert spec("datetime").column_type().timezone is True  # type: ignore[attr-defined]


def test_field_spec_properties() -> None:
    lookup = spec("lookup")
    assert (lookup.target, lookup.indexed, lookup.unique, lookup.on_delete) == (
        "parent_object",
        True,
        False,
        "restrict",
    )
    assert spec("lookup", **{"x-on-delete": "set_null"}).on_delete == "set_null"
    master = spec("master_detail", required=True)
    assert (master.on_delete, master.related_name, master.required) == (
        "cascade",
        "children",
        True,
    )
    number = spec("autonumber")
    assert number.unique and number.indexed and not number.writable
    assert not spec("text", readOnly=True).writable
    assert spec("text", **{"x-unique": True}).indexed
    assert spec("text", **{"x-indexed": True}).indexed and not spec("text").indexed
    plain = FieldSpec("plain", get_type("text"), {"x-type": "text"})
    assert plain.label == {"en": "plain"}
    with_default = spec("integer", default=3)
    assert with_default.has_default and with_default.default == 3
    assert not spec("integer").has_default


# --- round trips ---------------------------------------------------------------------


def test_date_round_trip() -> None:
    date = spec("date")
    assert date.to_python("2024-02-29") == dt.date(2024, 2, 29)
    assert date.to_json(dt.date(2024, 2, 29)) == "2024-02-29"
    assert date.to_json(date.to_python("2024-12-31")) == "2024-12-31"
    assert date.to_python(dt.date(2024, 1, 2)) == dt.date(2024, 1, 2)
    from_datetime = date.to_python(dt.datetime(2024, 1, 2, 23, 30))
    assert type(from_datetime) is dt.date and from_datetime == dt.date(2024, 1, 2)
    assert date.to_python(None) is None and date.to_json(None) is None


@pytest.mark.parametrize("bad", ["2024-02-30", "2024-13-01", "yesterday", "", 20240101, True])
def test_date_refuses_what_is_not_a_date(bad: Any) -> None:
    with pytest.raises(FieldConversionError, match="is not a date"):
        spec("date").to_python(bad)


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2024-01-01T10:00:00+08:00", "2024-01-01T02:00:00Z"),
        ("2024-01-01T02:00:00-05:30", "2024-01-01T07:30:00Z"),
        ("2024-01-01T10:00:00", "2024-01-01T10:00:00Z"),  # no offset: taken as UTC
        ("2024-01-01T10:00:00Z", "2024-01-01T10:00:00Z"),
        ("2024-01-01T10:00:00.250+00:00", "2024-01-01T10:00:00.250000Z"),
        ("2023-12-31T23:30:00-01:00", "2024-01-01T00:30:00Z"),
    ],
)
def test_datetime_round_trip_is_utc(text: str, utc: str) -> None:
    moment = spec("datetime")
    value = moment.to_python(text)
    assert value.tzinfo is not None and value.utcoffset() == dt.timedelta(0)
    assert moment.to_json(value) == utc
    assert moment.to_python(moment.to_json(value)) == value


def test_datetime_from_python_values() -> None:
    moment = spec("datetime")
    beijing = dt.timezone(dt.timedelta(hours=8))
    assert moment.to_json(dt.datetime(2024, 5, 1, 8, 0, tzinfo=beijing)) == "2024-05-01T00:00:00Z"
    # A naive value read back from a database without time zones is UTC.
    assert moment.to_json(dt.datetime(2024, 5, 1, 8, 0)) == "2024-05-01T08:00:00Z"
    assert moment.to_python(dt.datetime(2024, 5, 1, 8, 0, tzinfo=beijing)) == dt.datetime(
        2024, 5, 1, 0, 0, tzinfo=dt.UTC
    )


@pytest.mark.parametrize("bad", ["noon", "2024-01-01T25:00:00", "", 1700000000, ["2024-01-01"]])
def test_datetime_refuses_what_is_not_a_datetime(bad: Any) -> None:
    with pytest.raises(FieldConversionError, match="ISO 8601"):
        spec("datetime").to_python(bad)


@pytest.mark.parametrize(
    ("scale", "given", "stored", "back"),
    [
        (2, 10, Decimal("10.00"), 10),
        (2, 10.5, Decimal("10.50"), 10.5),
        (2, 1.005, Decimal("1.01"), 1.01),  # half up on the decimal text, not the binary float
        (2, 2.675, Decimal("2.68"), 2.68),
        (2, "19.994", Decimal("19.99"), 19.99),
        (2, -0.125, Decimal("-0.13"), -0.13),
        (0, 2.5, Decimal("3"), 3),
        (0, 3.4, Decimal("3"), 3),
        (3, 1.23456, Decimal("1.235"), 1.235),
        (6, 0.1, Decimal("0.100000"), 0.1),
    ],
)
def test_currency_rounds_to_its_scale(scale: int, given: Any, stored: Decimal, back: Any) -> None:
    money = spec("currency", **{"x-scale": scale})
    value = money.to_python(given)
    assert isinstance(value, Decimal)
    assert value == stored and value.as_tuple().exponent == -scale
    out = money.to_json(value)
    assert out == back and type(out) is type(back)


def test_currency_default_scale_is_two() -> None:
    assert spec("currency").to_python(0.125) == Decimal("0.13")


@pytest.mark.parametrize("bad", ["abc", "", True, float("nan"), float("inf"), "NaN", "-Infinity"])
def test_currency_refuses_what_is_not_an_amount(bad: Any) -> None:
    with pytest.raises(FieldConversionError, match="is not an amount"):
        spec("currency").to_python(bad)


def test_storage_ranges() -> None:
    """Values a column cannot hold are refused while converting, not by the database."""
    whole = spec("integer")
    assert whole.to_python(2**63 - 1) == 2**63 - 1 and whole.to_python(-(2**63)) == -(2**63)
    for too_big in (2**63, -(2**63) - 1):
        with pytest.raises(FieldConversionError, match="out of range"):
            whole.to_python(too_big)
    money = spec("currency")  # NUMERIC(20, 2): 18 digits before the point
    assert money.to_python(10**17) == Decimal(10**17)
    with pytest.raises(FieldConversionError, match="too large"):
        money.to_python(10**18)
    assert spec("currency", **{"x-scale": 6}).to_python(10**13) == Decimal(10**13)
    with pytest.raises(FieldConversionError, match="too large"):
        spec("currency", **{"x-scale": 6}).to_python(10**14)
    for not_finite in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(FieldConversionError, match="finite"):
            spec("number").to_python(not_finite)


def test_multipicklist_round_trip() -> None:
    tags = spec("multipicklist")
    assert tags.to_python(["a", "b"]) == ["a", "b"]
    assert tags.to_python(("b",)) == ["b"]
    assert tags.to_python([]) == []
    assert tags.to_json(["b", "a"]) == ["b", "a"]
    with pytest.raises(FieldConversionError):
        tags.to_python("ab")  # a string is not a list of its characters


def test_boolean_round_trip() -> None:
    flag = spec("boolean")
    assert flag.to_python(True) is True and flag.to_python(False) is False
    # Some drivers hand booleans back as 0/1.
    assert flag.to_json(1) is True and flag.to_json(0) is False
    assert flag.to_json(False) is False and flag.to_json(None) is None


def test_numbers_and_text_round_trip() -> None:
    assert spec("number").to_python(3) == 3.0
    assert isinstance(spec("number").to_python(3), float)
    assert spec("percent").to_python(12.5) == 12.5
    assert spec("integer").to_python(7) == 7
    assert spec("text").to_python("héllo 你好") == "héllo 你好"
    assert spec("lookup").to_python(12) == 12
    assert spec("json").to_python({"a": [1, None]}) == {"a": [1, None]}


# --- coerce: converting stored values when a field changes type ------------------------


@pytest.mark.parametrize(
    ("target", "value", "expected"),
    [
        ("text", 12, "12"),
        ("text", 2.5, "2.5"),
        ("text", Decimal("1.50"), "1.50"),
        ("text", True, "true"),
        ("text", "x", "x"),
        ("textarea", 3, "3"),
        ("integer", "42", 42),
        ("integer", " 42 ", 42),
        ("integer", "42.0", 42),
        ("integer", 42.0, 42),
        ("integer", Decimal("7"), 7),
        ("integer", "1e3", 1000),
        ("number", "2.5", 2.5),
        ("number", 7, 7),
        ("number", Decimal("2.25"), 2.25),
        ("currency", "19.99", 19.99),
        ("percent", "15", 15),
        ("boolean", "yes", True),
        ("boolean", "NO", False),
        ("boolean", " 1 ", True),
        ("boolean", 0, False),
        ("boolean", "t", True),
        ("boolean", False, False),
        ("date", "2024-01-05T10:00:00", "2024-01-05"),
        ("date", "2024-01-05", "2024-01-05"),
        ("date", dt.datetime(2024, 1, 5, 23, 0), "2024-01-05"),
        ("datetime", "2024-01-05", "2024-01-05T00:00:00Z"),
        ("datetime", "2024-01-05T10:00:00+02:00", "2024-01-05T08:00:00Z"),
        ("multipicklist", "a", ["a"]),
        ("multipicklist", ["a", "b"], ["a", "b"]),
        ("picklist", "a", "a"),
    ],
)
def test_coerce(target: str, value: Any, expected: Any) -> None:
    the_spec = spec(target)
    result = the_spec.type.coerce(value, the_spec)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(
    ("target", "value", "message"),
    [
        ("text", ["a"], "structured value"),
        ("text", {"a": 1}, "structured value"),
        ("integer", "12.5", "not a whole number"),
        ("integer", 3.5, "not a whole number"),
        ("integer", Decimal("4.5"), "not a whole number"),
        ("integer", True, "boolean is not a number"),
        ("integer", "abc", "is not a number"),
        ("integer", "nan", "not a finite number"),
        ("number", "inf", "not a finite number"),
        ("number", float("nan"), "not a finite number"),
        ("number", Decimal("NaN"), "not a finite number"),
        ("number", False, "boolean is not a number"),
        ("currency", "ten", "is not a number"),
        ("boolean", "maybe", "yes/no"),
        ("boolean", 2, "yes/no"),
        ("date", "someday", "is not a date"),
        ("datetime", "later", "ISO 8601"),
        ("multipicklist", 3, "list of values"),
    ],
)
def test_coerce_errors(target: str, value: Any, message: str) -> None:
    the_spec = spec(target)
    with pytest.raises(FieldConversionError, match=message):
        the_spec.type.coerce(value, the_spec)


# --- value schemas ---------------------------------------------------------------------


def _errors(schema: dict[str, Any], value: Any) -> list[str]:
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    return [e.message for e in validator.iter_errors(value)]


@pytest.mark.parametrize(
    ("type_name", "keywords", "good", "bad"),
    [
        ("text", {"maxLength": 3}, "abc", "abcd"),
        ("text", {"pattern": "^D-"}, "D-1", "E-1"),
        ("integer", {"minimum": 1}, 1, 0),
        ("integer", {}, 5, 5.5),
        ("integer", {}, 5, True),
        ("number", {"maximum": 100}, 99.5, 100.5),
        ("currency", {"minimum": 0}, 0.01, -0.01),
        ("boolean", {}, False, "false"),
        ("date", {}, "2024-01-01", "01/01/2024"),
        ("datetime", {}, "2024-01-01T00:00:00Z", "2024-01-01"),
        ("picklist", {}, "a", "c"),
        ("multipicklist", {}, ["a", "b"], ["c"]),
        ("multipicklist", {}, [], "a"),
        ("email", {}, "a@example.com", "not an address"),
        ("lookup", {}, 1, 0),
        ("lookup", {}, 1, "1"),
        ("json", {"type": "object"}, {"k": 1}, [1]),
    ],
)
def test_value_schema(type_name: str, keywords: dict[str, Any], good: Any, bad: Any) -> None:
    for required in (False, True):
        the_spec = spec(type_name, required=required, **keywords)
        schema = the_spec.value_schema()
        assert _errors(schema, good) == []
        assert _errors(schema, bad) != []
        # Optional fields may be empty; required ones may not.
        assert (_errors(schema, None) == []) is (not required)


def test_optional_json_fields_accept_null_whatever_their_schema() -> None:
    for keywords in ({}, {"type": ["object", "array"]}, {"enum": [1, 2]}, {"const": {"a": 1}}):
        optional = spec("json", **keywords).value_schema()
        assert _errors(optional, None) == [], keywords
        if keywords:  # the constraint still holds, and a required field may not be empty
            assert _errors(optional, "text") != [], keywords
            assert _errors(spec("json", required=True, **keywords).value_schema(), None) != []


def test_value_schema_drops_platform_keywords() -> None:
    the_spec = spec("picklist", default="a", title="T", description="D", readOnly=True)
    schema = the_spec.value_schema()
    assert not [k for k in schema if k.startswith("x-")]
    assert not {"default", "title", "description", "readOnly"} & set(schema)
    assert schema["enum"] == ["a", "b", None]


def test_register_adds_a_type() -> None:
    class Slug(FieldType):
        name = "test_slug"
        json_type = "string"

        def column_type(self, spec: FieldSpec) -> sa.types.TypeEngine[Any]:
            return sa.String(60)

    from trellis.platform.metadata import fieldtypes

    try:
        assert register(Slug) is Slug
        assert isinstance(get_type("test_slug"), Slug)
        assert "test_slug" in type_names()
    finally:
        fieldtypes._REGISTRY.pop("test_slug", None)
    assert "test_slug" not in type_names()


def test_richtext_is_sanitised_and_its_text_read() -> None:
    from trellis.platform.metadata.fieldtypes import html_text

    the_spec = spec("richtext")
    clean = the_spec.to_python(
        '<p>a &amp; <i>b</i><script>x()</script><b onmouseover="y">c</b></p>'
    )
    assert clean == "<p>a &amp; <i>b</i><b>c</b></p>"
    assert html_text(clean) == "a & bc"
    assert get_type("richtext").effective_schema({})["maxLength"] == 100_000


def test_image_fields_take_raster_images_only() -> None:
    assert validate_definition(minimal("image", **{"x-accept": ["image/svg+xml"]}), {}) != []
    assert validate_definition(minimal("file", **{"x-accept": ["not a type"]}), {}) != []
    image = spec("image", **{"x-max-bytes": 10_000_000})
    assert image.type.accepted(image) == ("image/png", "image/jpeg", "image/gif", "image/webp")
    assert image.type.max_bytes(image, 1000) == 1000
    assert spec("file").type.accepted(spec("file")) == ()
