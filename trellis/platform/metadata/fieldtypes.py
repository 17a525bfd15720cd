"""The field-type registry: one small class per ``x-type``.

A field type knows everything the platform needs about a kind of field: the JSON
Schema keywords a definition may use with it, its SQL column type, how a JSON value
becomes a stored value and back, which filter operators apply and which form widget
shows it. The registry is the one place to look a type up (flask-admin's converter
registry is the model); a new type is one new class and one ``@register``.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, ClassVar

import sqlalchemy as sa

from trellis.platform.messages import N_, Message

if TYPE_CHECKING:
    from sqlalchemy.types import TypeEngine

EQUALITY_OPS = frozenset({"=", "!=", "in", "not_in", "is_null"})
ORDER_OPS = frozenset({"<", "<=", ">", ">=", "between"})
TEXT_OPS = frozenset({"contains", "startswith"})
ALL_OPS = EQUALITY_OPS | ORDER_OPS | TEXT_OPS

LABEL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "minProperties": 1,
    "propertyNames": {"pattern": "^[a-z]{2}(-[A-Za-z]{2,4})?$"},
    "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 200},
}

# Keywords every field may carry, whatever its type.
COMMON_KEYWORDS: dict[str, Any] = {
    "x-type": {"type": "string"},
    "x-label": LABEL_SCHEMA,
    "x-help": LABEL_SCHEMA,
    "title": {"type": "string"},
    "description": {"type": "string", "maxLength": 2000},
    "default": {},
    "readOnly": {"type": "boolean"},
    "x-unique": {"type": "boolean"},
    "x-indexed": {"type": "boolean"},
    "x-searchable": {"type": "boolean"},  # quick and global search look in it
    # Conditions (expressions of the record): required, read-only or shown only when true.
    "x-required-if": {"type": "string", "minLength": 1, "maxLength": 4000},
    "x-readonly-if": {"type": "string", "minLength": 1, "maxLength": 4000},
    "x-visible-if": {"type": "string", "minLength": 1, "maxLength": 4000},
}
CONDITION_KEYWORDS = ("x-required-if", "x-readonly-if", "x-visible-if")

_NUMBER_BOUNDS = {"minimum": {"type": "number"}, "maximum": {"type": "number"}}
_ENUM_LABELS = {
    "type": "object",
    "additionalProperties": LABEL_SCHEMA,
}


class FieldConversionError(ValueError):
    """A JSON value that cannot become this field's stored value."""

    @property
    def message(self) -> Message | str:
        """What is wrong, as a message a page can tell in the user's language."""
        first = self.args[0] if self.args else ""
        return first if isinstance(first, Message) else str(self)


@dataclass(frozen=True)
class FieldSpec:
    """One field of an object definition, parsed: what the runtime asks about a field."""

    name: str
    type: FieldType
    schema: dict[str, Any]
    required: bool = False

    @property
    def label(self) -> dict[str, str]:
        """``x-label`` by language, else ``{"en": name}``; a copy the caller may change."""
        return dict(self.schema.get("x-label") or {"en": self.name})

    @property
    def unique(self) -> bool:
        """Whether values must differ across records (``x-unique``; an autonumber always)."""
        return bool(self.schema.get("x-unique")) or self.type.name == "autonumber"

    @property
    def target(self) -> str | None:
        """The object a lookup or master_detail field points to (``x-target``), else ``None``."""
        return self.schema.get("x-target")

    @property
    def indexed(self) -> bool:
        """Whether the column gets an index: unique fields, references and ``x-indexed``."""
        return self.unique or self.target is not None or bool(self.schema.get("x-indexed"))

    @property
    def on_delete(self) -> str:
        """What deleting the target does: ``restrict`` unless told; master_detail cascades."""
        if self.type.name == "master_detail":
            return "cascade"
        return str(self.schema.get("x-on-delete", "restrict"))

    @property
    def related_name(self) -> str | None:
        """The name the parent lists these children under (``x-related-name``), if any."""
        return self.schema.get("x-related-name")

    @property
    def writable(self) -> bool:
        """Whether a write may set the field: the type allows it and ``readOnly`` is not set."""
        return self.type.writable and not self.schema.get("readOnly", False)

    @property
    def has_default(self) -> bool:
        """Whether the schema gives a ``default`` (which may itself be ``null``)."""
        return "default" in self.schema

    @property
    def default(self) -> Any:
        """The schema's ``default``, or ``None`` when it gives none (see ``has_default``)."""
        return self.schema.get("default")

    def column_type(self) -> TypeEngine[Any]:
        """The SQLAlchemy type of the field's column, as its field type decides."""
        return self.type.column_type(self)

    def to_python(self, value: Any) -> Any:
        """A JSON value as it is stored; ``None`` stays ``None``.

        Raises ``FieldConversionError`` for a value the column cannot hold.
        """
        if value is None:
            return None
        return self.type.to_python(value, self)

    def to_json(self, value: Any) -> Any:
        """A stored value as JSON sends it (e.g. a Decimal as a number); ``None`` stays ``None``."""
        if value is None:
            return None
        return self.type.to_json(value, self)

    @property
    def value_type(self) -> FieldType:
        """The type of the values it holds (a formula's or roll-up's result type)."""
        return self.type.value_type(self)

    def value_schema(self) -> dict[str, Any]:
        """The JSON Schema a record's value must satisfy (nullable unless required)."""
        return self.type.value_schema(self)


class FieldType:
    """Base class. Subclasses set the class attributes and override what differs."""

    name: ClassVar[str]
    json_type: ClassVar[str | None] = None
    keywords: ClassVar[dict[str, Any]] = {}
    required_keywords: ClassVar[tuple[str, ...]] = ()
    operators: ClassVar[frozenset[str]] = EQUALITY_OPS
    widget: ClassVar[str] = "input"
    writable: ClassVar[bool] = True
    sortable: ClassVar[bool] = True

    def column_type(self, spec: FieldSpec) -> TypeEngine[Any]:
        """The SQLAlchemy column type for a field of this type; every subclass gives one."""
        raise NotImplementedError

    def value_type(self, spec: FieldSpec) -> FieldType:
        """The type whose values this field holds (itself; a computed field's result type):
        how lists filter it and pages show it."""
        return self

    def to_python(self, value: Any, spec: FieldSpec) -> Any:
        """A JSON value (never ``None``) as it is stored; the base keeps it as it is.

        Subclasses raise ``FieldConversionError`` for what the column cannot hold.
        """
        return value

    def to_json(self, value: Any, spec: FieldSpec) -> Any:
        """A stored value (never ``None``) as JSON sends it; the base keeps it as it is."""
        return value

    def coerce(self, value: Any, spec: FieldSpec) -> Any:
        """Best-effort conversion of a value stored under another type (type changes)."""
        return value

    def effective_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        """A field's schema with the defaults the platform applies written in (normalised)."""
        return schema

    def definition_schema(self) -> dict[str, Any]:
        """Meta-schema fragment a property of this type must satisfy."""
        props = dict(COMMON_KEYWORDS)
        props.update(self.keywords)
        if self.json_type is not None:
            props["type"] = {
                "anyOf": [
                    {"const": self.json_type},
                    {
                        "type": "array",
                        "items": {"enum": [self.json_type, "null"]},
                        "contains": {"const": self.json_type},
                        "uniqueItems": True,
                    },
                ]
            }
        return {
            "type": "object",
            "properties": props,
            "required": ["x-type", *(["type"] if self.json_type else []), *self.required_keywords],
            "additionalProperties": False,
        }

    def value_schema(self, spec: FieldSpec) -> dict[str, Any]:
        """The field's schema without ``x-`` keywords and annotations, with ``null`` allowed
        unless the field is required (an enum then lists ``None`` too).
        """
        schema = {k: v for k, v in spec.schema.items() if not k.startswith("x-")}
        schema.pop("default", None)
        schema.pop("title", None)
        schema.pop("description", None)
        schema.pop("readOnly", None)
        if self.json_type is not None:
            schema["type"] = self.json_type if spec.required else [self.json_type, "null"]
            if "enum" in schema and not spec.required:
                schema["enum"] = [*schema["enum"], None]
        return schema


_REGISTRY: dict[str, FieldType] = {}


def register(cls: type[FieldType]) -> type[FieldType]:
    """Class decorator: make a field type available under its ``name``."""
    _REGISTRY[cls.name] = cls()
    return cls


def get_type(name: str) -> FieldType:
    """The registered field type named ``name``; a ``KeyError`` for an unknown one."""
    return _REGISTRY[name]


def type_names() -> list[str]:
    """The names of every registered field type, sorted."""
    return sorted(_REGISTRY)


def registered_types() -> dict[str, FieldType]:
    """A copy of the registry, ``{name: field type}``."""
    return dict(_REGISTRY)


# --- text-like ---------------------------------------------------------------------


class _StringType(FieldType):
    json_type = "string"
    operators = EQUALITY_OPS | ORDER_OPS | TEXT_OPS
    default_length: ClassVar[int | None] = None

    def column_type(self, spec: FieldSpec) -> TypeEngine[Any]:
        length = spec.schema.get("maxLength", self.default_length)
        return sa.String(length) if length else sa.Text()

    def effective_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        # A VARCHAR column has a length; the document says it, so the value schema,
        # the OpenAPI document and forms all refuse what the column could not hold.
        if self.default_length is not None and "maxLength" not in schema:
            return {**schema, "maxLength": self.default_length}
        return schema

    def to_python(self, value: Any, spec: FieldSpec) -> Any:
        if isinstance(value, str) and "\x00" in value:
            # PostgreSQL cannot store NUL in text; refuse it everywhere alike.
            raise FieldConversionError(N_("text cannot contain NUL (\\u0000) characters"))
        return value

    def coerce(self, value: Any, spec: FieldSpec) -> Any:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float | Decimal):
            return format(value, "f") if isinstance(value, Decimal) else str(value)
        if isinstance(value, list | dict):
            raise FieldConversionError(N_("a structured value cannot become text"))
        return str(value)


@register
class TextType(_StringType):
    name = "text"
    default_length = 255  # as Directus, NocoBase and Salesforce: VARCHAR(255) unless told
    keywords: ClassVar[dict[str, Any]] = {
        "maxLength": {"type": "integer", "minimum": 1, "maximum": 10000},
        "minLength": {"type": "integer", "minimum": 0},
        # RE2 syntax; compiled when the definition is checked (patterns.py).
        "pattern": {"type": "string", "maxLength": 500},
    }


@register
class TextareaType(_StringType):
    name = "textarea"
    widget = "textarea"
    keywords: ClassVar[dict[str, Any]] = {
        "maxLength": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
        "minLength": {"type": "integer", "minimum": 0},
    }

    def column_type(self, spec: FieldSpec) -> TypeEngine[Any]:
        return sa.Text()


@register
class EmailType(_StringType):
    name = "email"
    widget = "email"
    default_length = 254
    keywords: ClassVar[dict[str, Any]] = {
        "format": {"const": "email"},
        "maxLength": {"type": "integer", "minimum": 3, "maximum": 254},
    }


@register
class PhoneType(_StringType):
    name = "phone"
    widget = "tel"
    default_length = 40
    keywords: ClassVar[dict[str, Any]] = {
        "maxLength": {"type": "integer", "minimum": 3, "maximum": 40},
        "pattern": {"type": "string", "maxLength": 200},
    }


@register
class UrlType(_StringType):
    name = "url"
    widget = "url"
    default_length = 2000
    keywords: ClassVar[dict[str, Any]] = {
        "format": {"const": "uri"},
        "maxLength": {"type": "integer", "minimum": 8, "maximum": 2000},
    }


@register
class PicklistType(_StringType):
    name = "picklist"
    widget = "select"
    operators = EQUALITY_OPS
    keywords: ClassVar[dict[str, Any]] = {
        "enum": {
            "type": "array",
            "items": {"type": "string", "minLength": 1, "maxLength": 100},
            "minItems": 1,
            "uniqueItems": True,
        },
        "x-enum-labels": _ENUM_LABELS,
    }
    required_keywords = ("enum",)

    def column_type(self, spec: FieldSpec) -> TypeEngine[Any]:
        return sa.String(100)


@register
class AutonumberType(_StringType):
    """A read-only number the platform assigns on insert, e.g. ``SO-{YYYY}-{0000}``."""

    name = "autonumber"
    widget = "readonly"
    writable = False
    keywords: ClassVar[dict[str, Any]] = {
        "x-format": {
            "type": "string",
            "pattern": r"^[^{}]*(\{(YYYY|YY|MM|DD|0+)\}[^{}]*)+$",
            "maxLength": 60,
        },
    }
    required_keywords = ("x-format",)

    def column_type(self, spec: FieldSpec) -> TypeEngine[Any]:
        return sa.String(100)


# --- numbers -----------------------------------------------------------------------


def _to_number(value: Any) -> float | int:
    if isinstance(value, bool):
        raise FieldConversionError(N_("a boolean is not a number"))
    if isinstance(value, int):
        return value
    if isinstance(value, float | Decimal):
        number = float(value)
    else:
        try:
            number = float(str(value).strip())
        except ValueError as exc:
            raise FieldConversionError(N_("%(value)s is not a number", value=repr(value))) from exc
    if math.isnan(number) or math.isinf(number):
        raise FieldConversionError(N_("%(value)s is not a finite number", value=repr(value)))
    if isinstance(value, float | Decimal):
        return number
    return int(number) if number.is_integer() and "." not in str(value) else number


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
CURRENCY_PRECISION = 20  # digits of a currency column, NUMERIC(20, x-scale)


def _int64(value: Any) -> Any:
    """Whole numbers are stored as 64-bit integers; refuse what would not fit."""
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        raise FieldConversionError(N_("%(value)s is out of range (a 64-bit integer)", value=value))
    return value


@register
class IntegerType(FieldType):
    name = "integer"
    json_type = "integer"
    widget = "number"
    operators = EQUALITY_OPS | ORDER_OPS
    keywords = _NUMBER_BOUNDS

    def column_type(self, spec: FieldSpec) -> TypeEngine[Any]:
        return sa.BigInteger()

    def to_python(self, value: Any, spec: FieldSpec) -> Any:
        return _int64(value)

    def coerce(self, value: Any, spec: FieldSpec) -> Any:
        number = _to_number(value)
        if isinstance(number, float):
            if not number.is_integer():
                raise FieldConversionError(N_("%(value)s is not a whole number", value=repr(value)))
            return int(number)
        return number


@register
class NumberType(FieldType):
    name = "number"
    json_type = "number"
    widget = "number"
    operators = EQUALITY_OPS | ORDER_OPS
    keywords = _NUMBER_BOUNDS

    def column_type(self, spec: FieldSpec) -> TypeEngine[Any]:
        return sa.Double()

    def to_python(self, value: Any, spec: FieldSpec) -> Any:
        number = float(value)
        if not math.isfinite(number):
            raise FieldConversionError(N_("%(value)s is not a finite number", value=repr(value)))
        return number

    def coerce(self, value: Any, spec: FieldSpec) -> Any:
        return _to_number(value)


@register
class PercentType(NumberType):
    name = "percent"
    widget = "percent"


@register
class CurrencyType(FieldType):
    """Money: exact decimals in storage, plain JSON numbers on the wire."""

    name = "currency"
    json_type = "number"
    widget = "currency"
    operators = EQUALITY_OPS | ORDER_OPS
    keywords: ClassVar[dict[str, Any]] = {
        **_NUMBER_BOUNDS,
        "x-scale": {"type": "integer", "minimum": 0, "maximum": 6},
    }

    def column_type(self, spec: FieldSpec) -> TypeEngine[Any]:
        return sa.Numeric(CURRENCY_PRECISION, int(spec.schema.get("x-scale", 2)))

    def to_python(self, value: Any, spec: FieldSpec) -> Any:
        scale = int(spec.schema.get("x-scale", 2))
        try:
            amount = Decimal(str(value))
            if not amount.is_finite():
                raise InvalidOperation
            amount = amount.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
        except InvalidOperation as exc:
            raise FieldConversionError(N_("%(value)s is not an amount", value=repr(value))) from exc
        if amount and amount.adjusted() >= CURRENCY_PRECISION - scale:
            raise FieldConversionError(
                N_(
                    "%(value)s is too large (at most %(digits)s digits before the decimal point)",
                    value=repr(value),
                    digits=CURRENCY_PRECISION - scale,
                )
            )
        return amount

    def to_json(self, value: Any, spec: FieldSpec) -> Any:
        number = float(value)
        return int(number) if number.is_integer() else number

    def coerce(self, value: Any, spec: FieldSpec) -> Any:
        return _to_number(value)


@register
class BooleanType(FieldType):
    name = "boolean"
    json_type = "boolean"
    widget = "checkbox"
    operators = frozenset({"=", "!=", "is_null"})

    def column_type(self, spec: FieldSpec) -> TypeEngine[Any]:
        return sa.Boolean()

    def to_json(self, value: Any, spec: FieldSpec) -> Any:
        return bool(value)

    def coerce(self, value: Any, spec: FieldSpec) -> Any:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in {"true", "1", "yes", "y", "t"}:
            return True
        if text in {"false", "0", "no", "n", "f"}:
            return False
        raise FieldConversionError(N_("%(value)s is not a yes/no value", value=repr(value)))


# --- dates -------------------------------------------------------------------------


@register
class DateType(FieldType):
    name = "date"
    json_type = "string"
    widget = "date"
    operators = EQUALITY_OPS | ORDER_OPS
    keywords: ClassVar[dict[str, Any]] = {"format": {"const": "date"}}
    required_keywords = ("format",)

    def column_type(self, spec: FieldSpec) -> TypeEngine[Any]:
        return sa.Date()

    def to_python(self, value: Any, spec: FieldSpec) -> Any:
        if isinstance(value, dt.datetime):  # a datetime is a date too: keep only its day
            return value.date()
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(value)
        except (TypeError, ValueError) as exc:
            raise FieldConversionError(
                N_("%(value)s is not a date (YYYY-MM-DD)", value=repr(value))
            ) from exc

    def to_json(self, value: Any, spec: FieldSpec) -> Any:
        return value.isoformat()

    def coerce(self, value: Any, spec: FieldSpec) -> Any:
        if isinstance(value, dt.datetime):
            return value.date().isoformat()
        text = str(value).strip()
        try:
            return dt.date.fromisoformat(text).isoformat()
        except ValueError:
            pass
        try:  # a date-time keeps its date; anything else is refused, never cut to fit
            return dt.datetime.fromisoformat(text).date().isoformat()
        except ValueError as exc:
            raise FieldConversionError(
                N_("%(value)s is not a date (YYYY-MM-DD)", value=repr(value))
            ) from exc


@register
class DateTimeType(FieldType):
    """Instants, stored in UTC; a value without an offset is taken to be UTC."""

    name = "datetime"
    json_type = "string"
    widget = "datetime"
    operators = EQUALITY_OPS | ORDER_OPS
    keywords: ClassVar[dict[str, Any]] = {"format": {"const": "date-time"}}
    required_keywords = ("format",)

    def column_type(self, spec: FieldSpec) -> TypeEngine[Any]:
        return sa.DateTime(timezone=True)

    def to_python(self, value: Any, spec: FieldSpec) -> Any:
        if isinstance(value, dt.datetime):
            moment = value
        else:
            try:
                moment = dt.datetime.fromisoformat(value)
            except (TypeError, ValueError) as exc:
                raise FieldConversionError(
                    N_("%(value)s is not an ISO 8601 date-time", value=repr(value))
                ) from exc
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        return moment.astimezone(dt.UTC)

    def to_json(self, value: Any, spec: FieldSpec) -> Any:
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")

    def coerce(self, value: Any, spec: FieldSpec) -> Any:
        return self.to_json(self.to_python(str(value), spec), spec)


# --- structured --------------------------------------------------------------------


@register
class MultipicklistType(FieldType):
    name = "multipicklist"
    json_type = "array"
    widget = "multiselect"
    operators = frozenset({"contains", "is_null"})
    sortable = False
    keywords: ClassVar[dict[str, Any]] = {
        "items": {
            "type": "object",
            "properties": {
                "type": {"const": "string"},
                "enum": PicklistType.keywords["enum"],
            },
            "required": ["type", "enum"],
            "additionalProperties": False,
        },
        "uniqueItems": {"type": "boolean"},
        "minItems": {"type": "integer", "minimum": 0},
        "maxItems": {"type": "integer", "minimum": 1},
        "x-enum-labels": _ENUM_LABELS,
    }
    required_keywords = ("items",)

    def column_type(self, spec: FieldSpec) -> TypeEngine[Any]:
        return sa.JSON(none_as_null=True)  # an empty field is SQL NULL, not JSON 'null'

    def to_python(self, value: Any, spec: FieldSpec) -> Any:
        if not isinstance(value, list | tuple):  # list("ab") would be ["a", "b"]
            raise FieldConversionError(N_("%(value)s is not a list of values", value=repr(value)))
        return list(value)

    def coerce(self, value: Any, spec: FieldSpec) -> Any:
        if isinstance(value, str):  # a picklist value becomes a one-value selection
            return [value]
        if isinstance(value, list):
            return value
        raise FieldConversionError(
            N_("%(value)s cannot become a list of values", value=repr(value))
        )


@register
class JsonType(FieldType):
    name = "json"
    widget = "json"
    operators = frozenset({"is_null"})
    sortable = False

    def column_type(self, spec: FieldSpec) -> TypeEngine[Any]:
        return sa.JSON(none_as_null=True)  # an empty field is SQL NULL, not JSON 'null'

    def definition_schema(self) -> dict[str, Any]:
        schema = super().definition_schema()
        # A json field may carry any JSON Schema to constrain its value.
        schema["additionalProperties"] = True
        return schema

    def value_schema(self, spec: FieldSpec) -> dict[str, Any]:
        schema = super().value_schema(spec)
        if spec.required or not schema:
            return schema
        # An optional field may be empty, whatever schema constrains its value.
        if isinstance(schema.get("type"), str | list) and not _NULL_SENSITIVE & set(schema):
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            return {**schema, "type": [*types, "null"] if "null" not in types else types}
        return {"anyOf": [{"type": "null"}, schema]}


# Keywords that could refuse null even once "null" is among the allowed types.
_NULL_SENSITIVE = frozenset({"enum", "const", "not", "allOf", "anyOf", "oneOf", "if", "$ref"})


# --- references --------------------------------------------------------------------


@register
class LookupType(FieldType):
    """A reference to a record of ``x-target``: a real foreign key."""

    name = "lookup"
    json_type = "integer"
    widget = "lookup"
    operators = EQUALITY_OPS
    keywords: ClassVar[dict[str, Any]] = {
        "x-target": {"type": "string"},
        "x-on-delete": {"enum": ["restrict", "set_null"]},
    }
    required_keywords: ClassVar[tuple[str, ...]] = ("x-target",)

    def column_type(self, spec: FieldSpec) -> TypeEngine[Any]:
        return sa.BigInteger()

    def to_python(self, value: Any, spec: FieldSpec) -> Any:
        return _int64(value)

    def value_schema(self, spec: FieldSpec) -> dict[str, Any]:
        schema = super().value_schema(spec)
        schema["minimum"] = 1
        return schema


@register
class MasterDetailType(LookupType):  # a lookup with a parent's powers
    """A child's link to its parent: written, deleted and restored with the parent."""

    name = "master_detail"
    keywords: ClassVar[dict[str, Any]] = {
        "x-target": {"type": "string"},
        "x-related-name": {"type": "string"},
    }
    required_keywords = ("x-target", "x-related-name")


# --- computed ------------------------------------------------------------------------


def _result_type(spec: FieldSpec) -> FieldType:
    """The stored type of a computed field's value, from its JSON ``type`` (and format):
    number → currency-like decimal at ``x-scale`` (default 2), integer, boolean, date,
    date-time or text."""
    declared = spec.schema.get("type")
    kinds = set(declared) if isinstance(declared, list) else {declared}
    if "integer" in kinds:
        return _REGISTRY["integer"]
    if "number" in kinds:
        return _REGISTRY["currency"]
    if "boolean" in kinds:
        return _REGISTRY["boolean"]
    fmt = spec.schema.get("format")
    if fmt == "date":
        return _REGISTRY["date"]
    if fmt == "date-time":
        return _REGISTRY["datetime"]
    return _REGISTRY["text"]


_COMPUTED_TYPE = {
    "anyOf": [
        {"enum": ["number", "integer", "string", "boolean"]},
        {
            "type": "array",
            "items": {"enum": ["number", "integer", "string", "boolean", "null"]},
            "minItems": 1,
            "maxItems": 2,
            "uniqueItems": True,
        },
    ]
}


class _ComputedType(FieldType):
    """A value the platform computes and stores (formulas, roll-ups): never written by a
    caller, filtered and sorted like the type of its result."""

    writable = False
    widget = "readonly"
    operators = EQUALITY_OPS | ORDER_OPS

    def column_type(self, spec: FieldSpec) -> TypeEngine[Any]:
        return _result_type(spec).column_type(spec)

    def value_type(self, spec: FieldSpec) -> FieldType:
        return _result_type(spec)

    def to_python(self, value: Any, spec: FieldSpec) -> Any:
        return _result_type(spec).to_python(value, spec)

    def to_json(self, value: Any, spec: FieldSpec) -> Any:
        return _result_type(spec).to_json(value, spec)

    def coerce(self, value: Any, spec: FieldSpec) -> Any:
        return _result_type(spec).coerce(value, spec)

    def effective_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        # A text result is a VARCHAR as text fields are.
        declared = schema.get("type")
        kinds = set(declared) if isinstance(declared, list) else {declared}
        if kinds <= {"string", "null"} and "format" not in schema and "maxLength" not in schema:
            return {**schema, "maxLength": 255}
        return schema

    def definition_schema(self) -> dict[str, Any]:
        schema = super().definition_schema()
        schema["properties"]["type"] = _COMPUTED_TYPE
        schema["required"] = [*schema["required"], "type"]
        return schema

    def value_schema(self, spec: FieldSpec) -> dict[str, Any]:
        return {}  # computed here, never sent: nothing of a caller's to check


@register
class FormulaType(_ComputedType):
    """``x-formula``: an expression of the record's fields (and its lookups' fields),
    recomputed on every write that changes an input."""

    name = "formula"
    keywords: ClassVar[dict[str, Any]] = {
        "x-formula": {"type": "string", "minLength": 1, "maxLength": 4000},
        "x-scale": {"type": "integer", "minimum": 0, "maximum": 6},
        "format": {"enum": ["date", "date-time"]},
        "maxLength": {"type": "integer", "minimum": 1, "maximum": 10000},
    }
    required_keywords = ("x-formula",)


ROLLUP_FUNCTIONS = ("SUM", "COUNT", "MIN", "MAX", "AVG")


@register
class RollupType(_ComputedType):
    """``x-rollup``: SUM, COUNT, MIN, MAX or AVG of a field over the records that point at
    this one (master-detail lines by their related name, or ``object.lookup``), kept exact
    in the transaction of every change to them."""

    name = "rollup"
    keywords: ClassVar[dict[str, Any]] = {
        "x-rollup": {
            "type": "object",
            "properties": {
                "of": {"type": "string", "minLength": 1, "maxLength": 130},
                "function": {"enum": list(ROLLUP_FUNCTIONS)},
                "field": {"type": "string", "minLength": 1, "maxLength": 63},
                "filter": {"type": "string", "minLength": 1, "maxLength": 4000},
            },
            "required": ["of", "function"],
            "additionalProperties": False,
        },
        "x-scale": {"type": "integer", "minimum": 0, "maximum": 6},
    }
    required_keywords = ("x-rollup",)


# --- users, rich text, files ---------------------------------------------------------


@register
class UserType(LookupType):
    """A reference to a platform user (``users.id``): a real foreign key, refused when the
    user is unknown or inactive. Expressions compare it with ``$user.id``.
    """

    name = "user"
    widget = "user"
    keywords: ClassVar[dict[str, Any]] = {
        "x-on-delete": {"enum": ["restrict", "set_null"]},
    }
    required_keywords: ClassVar[tuple[str, ...]] = ()


RICHTEXT_MAX_LENGTH = 100_000


@register
class RichtextType(_StringType):
    """HTML, sanitised with nh3 (the Ammonia sanitiser) on every write: what is stored is
    already clean, so pages show it as it is and lists show its text.
    """

    name = "richtext"
    widget = "richtext"
    operators = EQUALITY_OPS | TEXT_OPS
    sortable = False
    default_length = RICHTEXT_MAX_LENGTH
    keywords: ClassVar[dict[str, Any]] = {
        "maxLength": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
        "minLength": {"type": "integer", "minimum": 0},
    }

    def column_type(self, spec: FieldSpec) -> TypeEngine[Any]:
        return sa.Text()

    def to_python(self, value: Any, spec: FieldSpec) -> Any:
        return sanitise_html(super().to_python(value, spec))


def sanitise_html(value: Any) -> Any:
    """HTML with scripts, event handlers and unsafe URLs removed (nh3's defaults)."""
    import nh3

    return nh3.clean(value) if isinstance(value, str) else value


def html_text(value: str) -> str:
    """The text of (sanitised) HTML, tags removed and entities decoded, for lists."""
    import html

    import nh3

    return " ".join(html.unescape(nh3.clean(value, tags=set())).split())


MIME_PATTERN = r"^[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*$"
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
IMAGE_MIME_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")


@register
class FileType(LookupType):  # a reference, to a stored file
    """An uploaded file: the column holds the id of its ``stored_files`` row (a real
    foreign key); the content lives in the file store. Written only by an upload to the
    record (``x-max-bytes``, ``x-accept`` checked against the sniffed content type).
    """

    name = "file"
    widget = "file"
    operators = frozenset({"is_null"})
    sortable = False
    default_accept: ClassVar[tuple[str, ...]] = ()  # any type
    keywords: ClassVar[dict[str, Any]] = {
        "x-max-bytes": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
        "x-accept": {
            "type": "array",
            "items": {"type": "string", "pattern": MIME_PATTERN, "maxLength": 100},
            "minItems": 1,
            "uniqueItems": True,
        },
    }
    required_keywords: ClassVar[tuple[str, ...]] = ()

    def accepted(self, spec: FieldSpec) -> tuple[str, ...]:
        """The MIME types a field accepts (empty: any)."""
        return tuple(spec.schema.get("x-accept") or self.default_accept)

    def max_bytes(self, spec: FieldSpec, cap: int) -> int:
        """The largest upload a field takes: ``x-max-bytes`` (default 5 MB), at most ``cap``."""
        return min(int(spec.schema.get("x-max-bytes", DEFAULT_MAX_BYTES)), cap)


@register
class ImageType(FileType):
    """A file whose content is a raster image; pages show it inline as a preview."""

    name = "image"
    widget = "image"
    default_accept = IMAGE_MIME_TYPES
    keywords: ClassVar[dict[str, Any]] = {
        **FileType.keywords,
        # SVG can carry scripts: an image field holds raster images only.
        "x-accept": {
            "type": "array",
            "items": {"enum": [*IMAGE_MIME_TYPES, "image/bmp", "image/tiff", "image/avif"]},
            "minItems": 1,
            "uniqueItems": True,
        },
    }


__all__ = [
    "ALL_OPS",
    "ROLLUP_FUNCTIONS",
    "FieldConversionError",
    "FieldSpec",
    "FieldType",
    "FileType",
    "get_type",
    "register",
    "registered_types",
    "type_names",
]
