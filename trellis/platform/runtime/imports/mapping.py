"""Which column fills which field, and how a cell becomes a field's value.

A column maps to a field by the field's name or by its label in either language
(zh-CN, en), compared without case or surrounding blanks. A lookup column holds either
the target's id or, with a *key field* chosen for it, a value of one of the target's
unique fields (a dealer's ``code``); the importer resolves those per batch.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trellis.exceptions import BadRequest
from trellis.platform.messages import N_
from trellis.platform.metadata.fieldtypes import FieldConversionError, FileType

if TYPE_CHECKING:
    from trellis.platform.metadata.fieldtypes import FieldSpec
    from trellis.platform.runtime.access import Access
    from trellis.platform.runtime.registry import MetaRegistry, ObjectMeta

LABEL_LANGUAGES = ("en", "zh-CN")
LIST_SEPARATORS = (";", ",", "|")  # how a multi-picklist cell may separate its values


@dataclass(frozen=True)
class ColumnMap:
    """One mapped column: where it is in a row, the field it fills, and for a lookup
    matched by value, the target's unique field that ``key`` names."""

    column: str
    index: int
    field: str
    key: str | None = None


def importable_fields(access: Access, meta: ObjectMeta) -> list[str]:
    """The fields an import by the caller may fill, in definition order (not files:
    those are uploaded to a record)."""
    writable = access.writable(meta)
    return [
        name
        for name, spec in meta.fields.items()
        if name in writable and not isinstance(spec.type, FileType)
    ]


def suggest_mapping(meta: ObjectMeta, columns: list[str], fields: list[str]) -> dict[str, str]:
    """``{column: field}`` for each column whose header is a field's name or label."""
    names: dict[str, str] = {}
    for name in fields:
        spec = meta.fields[name]
        labels = spec.label
        for text in (name, *(labels.get(language, "") for language in LABEL_LANGUAGES)):
            if text:
                names.setdefault(_folded(text), name)
    mapping: dict[str, str] = {}
    taken: set[str] = set()
    for column in columns:
        found = names.get(_folded(column))
        if found is not None and found not in taken:
            mapping[column] = found
            taken.add(found)
    return mapping


def key_fields(registry: MetaRegistry, spec: FieldSpec) -> list[str]:
    """The unique fields of a lookup's target a column may match records by."""
    if spec.target is None:
        return []
    target = registry.get(spec.target)
    return [s.name for s in target.unique_fields if s.type.name != "json"]


def check_mapping(
    registry: MetaRegistry,
    meta: ObjectMeta,
    columns: list[str],
    fields: list[str],
    mapping: Any,
    lookup_keys: Any,
) -> list[ColumnMap]:
    """The mapping as ``ColumnMap``s, or 400 naming every problem: a column the file does
    not have, a field the caller may not import, a field filled twice, a key field that
    is not a unique field of the lookup's target."""
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise _bad_mapping([{"field": "mapping", "message": N_("must map columns to fields")}])
    if not isinstance(lookup_keys, dict):
        raise _bad_mapping([{"field": "lookups", "message": N_("must map fields to key fields")}])
    problems: list[dict[str, Any]] = []
    maps: list[ColumnMap] = []
    filled: set[str] = set()
    for column, name in mapping.items():
        if not name:
            continue  # a column left out
        if column not in columns:
            problems.append({"field": column, "message": N_("the file has no such column")})
        elif name not in fields:
            problems.append(
                {
                    "field": column,
                    "message": N_("%(field)s is not a field you may import", field=name),
                }
            )
        elif name in filled:
            problems.append(
                {
                    "field": column,
                    "message": N_("%(field)s is filled by another column", field=name),
                }
            )
        else:
            filled.add(name)
            key = lookup_keys.get(name) or None
            spec = meta.fields[name]
            if key is not None and key not in key_fields(registry, spec):
                problems.append(
                    {
                        "field": column,
                        "message": N_(
                            "%(key)s is not a unique field of %(object)s",
                            key=str(key),
                            object=str(spec.target or name),
                        ),
                    }
                )
            maps.append(ColumnMap(column, columns.index(column), name, key))
    if problems:
        raise _bad_mapping(problems)
    if not maps:
        raise _bad_mapping([{"field": "mapping", "message": N_("map at least one column")}])
    return maps


def _bad_mapping(details: list[dict[str, Any]]) -> BadRequest:
    return BadRequest(N_("the column mapping cannot be used"), details)


def cell_value(spec: FieldSpec, cell: Any) -> Any:
    """The JSON value of a non-empty cell for ``spec`` (``FieldConversionError`` if none):
    the field type's own conversion, plus the shapes a spreadsheet gives lists and JSON."""
    return cell_converter(spec)(cell)


def cell_converter(spec: FieldSpec) -> Callable[[Any], Any]:
    """``cell_value`` for one field, chosen once (an import converts a column's every
    cell with it)."""
    kind = spec.type.name
    if kind in ("lookup", "master_detail", "user"):
        return _record_id
    if kind == "multipicklist":
        return _list_of_values
    if kind == "json":
        return _json_value
    if kind in ("text", "textarea", "richtext", "email", "phone", "url", "picklist"):
        return str
    return functools.partial(_coerced, spec)


def _record_id(cell: Any) -> int:
    if isinstance(cell, int) and not isinstance(cell, bool):
        return cell
    text = str(cell).strip()
    if not text.isdigit():
        raise FieldConversionError(N_("%(value)s is not a record id", value=repr(cell)))
    return int(text)


def _list_of_values(cell: Any) -> list[str]:
    text = str(cell)
    separator = next((s for s in LIST_SEPARATORS if s in text), None)
    parts = text.split(separator) if separator else [text]
    return [part.strip() for part in parts if part.strip()]


def _json_value(cell: Any) -> Any:
    try:
        return json.loads(str(cell))
    except ValueError:
        raise FieldConversionError(N_("%(value)s is not JSON", value=repr(cell))) from None


def _coerced(spec: FieldSpec, cell: Any) -> Any:
    return spec.type.coerce(cell, spec)


def key_value(spec: FieldSpec, cell: Any) -> Any:
    """A key cell as the stored value of the target's key field ``spec``."""
    return spec.to_python(cell_value(spec, cell))


def _folded(text: str) -> str:
    return " ".join(str(text).split()).casefold()


__all__ = [
    "ColumnMap",
    "cell_converter",
    "cell_value",
    "check_mapping",
    "importable_fields",
    "key_fields",
    "key_value",
    "suggest_mapping",
]
