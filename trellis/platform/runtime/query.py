"""List queries: filters, sorts, field selection and keyset pagination.

Everything a caller sends is checked against the object's metadata before any SQL
is built: fields must exist, operators must suit the field's type, values are
converted by the field type. Columns are taken from the ``Table`` object, never
from the caller's strings, so nothing the caller typed reaches SQL except as a
bound parameter.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

from trellis.exceptions import InvalidQuery
from trellis.platform.metadata.fieldtypes import (
    ALL_OPS,
    EQUALITY_OPS,
    INT64_MAX,
    INT64_MIN,
    ORDER_OPS,
    FieldConversionError,
)
from trellis.platform.runtime.unicode_text import refuse_lone_surrogates

if TYPE_CHECKING:
    from collections.abc import Collection

    from trellis.platform.metadata.fieldtypes import FieldSpec
    from trellis.platform.runtime.registry import ObjectMeta

SYSTEM_FIELDS: dict[str, frozenset[str]] = {
    "id": EQUALITY_OPS | ORDER_OPS,
    "version": EQUALITY_OPS | ORDER_OPS,
    "created_at": EQUALITY_OPS | ORDER_OPS,
    "updated_at": EQUALITY_OPS | ORDER_OPS,
    "created_by": EQUALITY_OPS,
    "updated_by": EQUALITY_OPS,
    "owner_id": EQUALITY_OPS,
}
MAX_FILTERS = 50
MAX_IN_VALUES = 1000


@dataclass(frozen=True)
class ListQuery:
    """A parsed, checked list request."""

    conditions: list[sa.ColumnElement[bool]]
    sort: list[tuple[str, bool]]  # (field, descending); always ends with ("id", ...)
    limit: int
    after: list[Any] | None
    fields: list[str] | None
    deleted: bool = False  # the recycle bin: soft-deleted records instead of live ones

    def after_cursor(self, meta: ObjectMeta, cursor: str) -> ListQuery:
        """The same query, continued after ``cursor``."""
        return replace(self, after=_cursor_values(meta, self.sort, cursor))


def parse_list_query(
    meta: ObjectMeta,
    *,
    filter_text: str | None,
    sort_text: str | None,
    limit_text: str | None,
    cursor: str | None,
    fields_text: str | None,
    default_limit: int,
    max_limit: int,
    hidden: frozenset[str] = frozenset(),
) -> ListQuery:
    """Parse a list request; ``hidden`` fields are treated as if they did not exist."""
    sort = parse_sort(meta, sort_text, hidden)
    return ListQuery(
        conditions=parse_filter(meta, filter_text, hidden),
        sort=sort,
        limit=_parse_limit(limit_text, default_limit, max_limit),
        after=_cursor_values(meta, sort, cursor) if cursor else None,
        fields=parse_fields(meta, fields_text, hidden),
    )


def _cursor_values(meta: ObjectMeta, sort: list[tuple[str, bool]], cursor: str) -> list[Any]:
    raw = decode_cursor(cursor, len(sort))
    try:
        return [_convert(meta.fields.get(n), n, v) for (n, _), v in zip(sort, raw, strict=True)]
    except InvalidQuery:
        raise InvalidQuery("the cursor does not belong to this sort order") from None


def _parse_limit(text: str | None, default: int, maximum: int) -> int:
    if text is None or text == "":
        return default
    try:
        limit = int(text)
    except ValueError:
        raise InvalidQuery(
            "limit must be a whole number", [{"field": "limit", "message": f"got {text!r}"}]
        ) from None
    if not 1 <= limit <= maximum:
        raise InvalidQuery(
            f"limit must be between 1 and {maximum}", [{"field": "limit", "message": str(limit)}]
        )
    return limit


def _operators(meta: ObjectMeta, name: str, hidden: frozenset[str]) -> frozenset[str] | None:
    if name in hidden:
        return None
    if name in SYSTEM_FIELDS:
        return SYSTEM_FIELDS[name]
    spec = meta.fields.get(name)
    return spec.type.operators if spec is not None else None


def parse_filter(
    meta: ObjectMeta, text: str | None, hidden: frozenset[str] = frozenset()
) -> list[sa.ColumnElement[bool]]:
    """SQL conditions from a ``filter`` parameter: a JSON list of ``[field, op, value]``
    clauses (one bare clause is accepted), ANDed by the caller; empty text, no condition.

    Raises ``InvalidQuery`` naming each clause it cannot apply (hidden fields are unknown).
    """
    if not text:
        return []
    try:
        clauses = json.loads(text)
    except ValueError as exc:
        raise InvalidQuery(
            "filter is not valid JSON", [{"field": "filter", "message": str(exc)}]
        ) from None
    refuse_lone_surrogates(clauses, "filter")
    if isinstance(clauses, list) and clauses and not isinstance(clauses[0], list):
        clauses = [clauses]  # a single [field, op, value] is accepted as a one-clause filter
    if not isinstance(clauses, list) or len(clauses) > MAX_FILTERS:
        raise InvalidQuery(
            f"filter must be a JSON list of at most {MAX_FILTERS} [field, op, value] clauses"
        )
    conditions, details = [], []
    for index, clause in enumerate(clauses):
        try:
            conditions.append(_condition(meta, clause, hidden))
        except InvalidQuery as exc:
            details.append({"field": f"filter[{index}]", "message": exc.message})
    if details:
        raise InvalidQuery("the filter cannot be applied", details)
    return conditions


def _condition(meta: ObjectMeta, clause: Any, hidden: frozenset[str]) -> sa.ColumnElement[bool]:
    if not isinstance(clause, list) or len(clause) not in (2, 3):
        raise InvalidQuery("each clause must be [field, op, value]")
    name, op = clause[0], clause[1]
    value = clause[2] if len(clause) == 3 else None
    if not isinstance(name, str) or not isinstance(op, str):
        raise InvalidQuery("field and op must be strings")
    allowed = _operators(meta, name, hidden)
    if allowed is None:
        raise InvalidQuery(f"unknown field {name!r}")
    if op not in ALL_OPS:
        raise InvalidQuery(f"unknown operator {op!r}; use one of {', '.join(sorted(ALL_OPS))}")
    if op not in allowed:
        raise InvalidQuery(f"operator {op!r} does not apply to field {name!r}")
    column = meta.table.c[name]
    spec = meta.fields.get(name)
    if op == "is_null":
        if not isinstance(value, bool):
            raise InvalidQuery("is_null takes true or false")
        return column.is_(None) if value else column.is_not(None)
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value or len(value) > MAX_IN_VALUES:
            raise InvalidQuery(f"{op} takes a list of 1 to {MAX_IN_VALUES} values")
        values = [_convert(spec, name, v) for v in value]
        return column.in_(values) if op == "in" else sa.or_(column.not_in(values), column.is_(None))
    if op == "between":
        if not isinstance(value, list) or len(value) != 2:
            raise InvalidQuery("between takes [low, high]")
        return column.between(_convert(spec, name, value[0]), _convert(spec, name, value[1]))
    if op == "contains" and spec is not None and spec.type.name == "multipicklist":
        if not isinstance(value, str):
            raise InvalidQuery("contains on a multipicklist takes one value")
        return sa.cast(column, sa.Text).contains(json.dumps(value), autoescape=True)
    # Case-insensitive on every database (SQLite's LIKE is, PostgreSQL's is not).
    if op == "contains":
        return column.icontains(_text(spec, name, value), autoescape=True)
    if op == "startswith":
        return column.istartswith(_text(spec, name, value), autoescape=True)
    converted = _convert(spec, name, value)
    if converted is None:
        raise InvalidQuery(f"{op} needs a value; use is_null to match empty fields")
    comparisons = {
        "=": column.__eq__,
        "!=": lambda v: sa.or_(column != v, column.is_(None)),
        "<": column.__lt__,
        "<=": column.__le__,
        ">": column.__gt__,
        ">=": column.__ge__,
    }
    return comparisons[op](converted)


def _text(spec: FieldSpec | None, name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidQuery("contains and startswith take a non-empty string")
    text: str = _convert(spec, name, value)
    return text


def _convert(spec: FieldSpec | None, name: str, value: Any) -> Any:
    if value is None:
        return None
    if spec is None:  # a system field
        if name in ("created_at", "updated_at"):
            from trellis.platform.metadata.fieldtypes import get_type

            try:
                return get_type("datetime").to_python(value, None)  # type: ignore[arg-type]
            except FieldConversionError as exc:
                raise InvalidQuery(str(exc)) from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidQuery(f"{name} takes whole numbers")
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidQuery(f"{name}: {value} is out of range")
        return value
    try:
        if spec.type.json_type == "integer" and (
            isinstance(value, bool) or not isinstance(value, int)
        ):
            raise FieldConversionError(f"{value!r} is not a whole number")
        if spec.type.json_type == "number" and (
            isinstance(value, bool) or not isinstance(value, int | float)
        ):
            raise FieldConversionError(f"{value!r} is not a number")
        if spec.type.json_type in ("string",) and not isinstance(value, str):
            raise FieldConversionError(f"{value!r} is not a string")
        if spec.type.json_type == "boolean" and not isinstance(value, bool):
            raise FieldConversionError(f"{value!r} is not true or false")
        return spec.to_python(value)
    except FieldConversionError as exc:
        raise InvalidQuery(f"{name}: {exc}") from None


def parse_sort(
    meta: ObjectMeta, text: str | None, hidden: frozenset[str] = frozenset()
) -> list[tuple[str, bool]]:
    """``(field, descending)`` keys from ``name,-other``, always ending at ``id`` (appended in
    the last key's direction when absent, keys after it dropped), so pages never overlap.

    Raises ``InvalidQuery`` for an unknown, hidden or unsortable field.
    """
    sort: list[tuple[str, bool]] = []
    unknown = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        descending = part.startswith("-")
        name = part.lstrip("-+")
        spec = meta.fields.get(name) if name not in hidden else None
        if name not in SYSTEM_FIELDS and (spec is None or not spec.type.sortable):
            unknown.append({"field": name, "message": "unknown or unsortable field"})
            continue
        if name != "id":
            sort.append((name, descending))
        else:
            sort.append(("id", descending))
    if unknown:
        raise InvalidQuery("the sort cannot be applied", unknown)
    if not any(name == "id" for name, _ in sort):
        sort.append(("id", sort[-1][1] if sort else False))
    return sort[: sort.index(next(s for s in sort if s[0] == "id")) + 1]


def parse_fields(
    meta: ObjectMeta, text: str | None, hidden: frozenset[str] = frozenset()
) -> list[str] | None:
    """The field names of a ``fields`` parameter (``None``: every field); ``InvalidQuery``
    for an unknown or hidden one. System fields are always allowed.
    """
    if not text:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if (n not in meta.fields or n in hidden) and n not in SYSTEM_FIELDS]
    if unknown:
        raise InvalidQuery(
            "unknown fields", [{"field": n, "message": "is not a field"} for n in unknown]
        )
    return names


def order_by(meta: ObjectMeta, sort: list[tuple[str, bool]]) -> list[sa.UnaryExpression[Any]]:
    """Plain ASC/DESC: NULLs go where the database puts them, so its indexes serve the sort.

    (PostgreSQL treats NULL as larger than any value, SQLite as smaller; an explicit
    NULLS LAST on a DESC key would stop PostgreSQL from walking the index backwards.)
    """
    return [
        meta.table.c[name].desc() if descending else meta.table.c[name].asc()
        for name, descending in sort
    ]


def keyset_condition(
    meta: ObjectMeta, sort: list[tuple[str, bool]], after: list[Any], nulls_largest: bool
) -> sa.ColumnElement[bool]:
    """Rows strictly after ``after`` in ``sort`` order, NULLs placed as the database places them.

    ``nulls_largest`` is True on PostgreSQL (NULLs after values ascending, before them
    descending) and False on SQLite (the other way round).
    """
    alternatives = []
    for i, (name, descending) in enumerate(sort):
        equal_before = [_equals(meta.table.c[n], after[j]) for j, (n, _) in enumerate(sort[:i])]
        column, value = meta.table.c[name], after[i]
        nulls_after_values = descending != nulls_largest
        if value is None:
            if nulls_after_values:
                continue  # nothing sorts after NULL on this key; ties go to later keys
            alternatives.append(sa.and_(*equal_before, column.is_not(None)))
            continue
        # A bound literal: SQLAlchemy refuses ``column > False`` with a bare bool.
        bound = sa.literal(value, column.type)
        beyond = column < bound if descending else column > bound
        if nulls_after_values:
            beyond = sa.or_(beyond, column.is_(None))
        alternatives.append(sa.and_(*equal_before, beyond))
    return sa.or_(*alternatives) if alternatives else sa.false()


def among(
    column: sa.ColumnElement[Any], values: Collection[Any], dialect: str
) -> sa.ColumnElement[bool]:
    """``column IN (values)``; on PostgreSQL ``column = ANY(:values)``, one array parameter.

    A thousand values are then one bound value, cheap to send and to plan, and the
    statement's text stays the same whatever their number (so the driver's cache of
    prepared statements serves it).
    """
    if dialect == "postgresql":
        return column == sa.any_(sa.literal(list(values), ARRAY(column.type)))
    return column.in_(list(values))


def among_param(column: sa.ColumnElement[Any], name: str, dialect: str) -> sa.ColumnElement[bool]:
    """``among`` with the values left to a named parameter, for a statement built once.

    The statement can then be kept (per object and dialect) and run with
    ``{name: [values]}``: no construction, no cache key to compute on each call.
    """
    if dialect == "postgresql":
        return column == sa.any_(sa.bindparam(name, type_=ARRAY(column.type)))
    return column.in_(sa.bindparam(name, expanding=True))


def _equals(column: sa.ColumnElement[Any], value: Any) -> sa.ColumnElement[bool]:
    return column.is_(None) if value is None else column == sa.literal(value, column.type)


def encode_cursor(values: list[Any]) -> str:
    """The sort values of a page's last row as an opaque URL-safe token (unpadded base64 JSON)."""
    raw = json.dumps(values, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, length: int) -> list[Any]:
    """The sort values an ``encode_cursor`` token holds; ``InvalidQuery`` when it is not
    one, or was made for a sort order of another length.
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error):
        raise InvalidQuery(
            "the cursor is not valid", [{"field": "cursor", "message": cursor[:40]}]
        ) from None
    refuse_lone_surrogates(values, "cursor")
    if not isinstance(values, list) or len(values) != length:
        raise InvalidQuery("the cursor does not belong to this sort order")
    return values
