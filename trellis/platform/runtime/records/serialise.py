"""Records as API JSON: stored rows out, and the one timestamp format (RFC 3339, ``Z``)."""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING, Any

from trellis.platform.runtime.models import iso

if TYPE_CHECKING:
    from trellis.platform.runtime.registry import ObjectMeta

Record = dict[str, Any]
TIMESTAMP_FIELDS = ("created_at", "updated_at")


def serialise(
    meta: ObjectMeta,
    row: Any,
    fields: list[str] | None = None,
    hidden: frozenset[str] = frozenset(),
) -> Record:
    """A stored row as API JSON: system fields, then the fields in definition order.

    ``hidden`` fields are left out entirely (not nulled), so their existence is not shown.
    """
    record: Record = {"id": row["id"]}
    if fields is None:
        record["version"] = row["version"]
        record.update(system_json(row))
        values = meta.to_json(row)
        if hidden:
            values = {k: v for k, v in values.items() if k not in hidden}
        record.update(values)
        return record
    for name in fields:
        if name == "id" or name in hidden:
            continue
        spec = meta.fields.get(name)
        if spec is None:
            value = row[name]
            record[name] = iso(value) if name in TIMESTAMP_FIELDS else value
        else:
            record[name] = spec.to_json(row[name])
    return record


def json_value(meta: ObjectMeta, name: str, value: Any) -> Any:
    """One stored value as JSON (a field, or a system column)."""
    spec = meta.fields.get(name)
    if spec is not None:
        return spec.to_json(value)
    return iso(value) if name in TIMESTAMP_FIELDS else value


def system_json(values: Any) -> Record:
    """The system columns of a row as JSON."""
    return {
        "created_at": iso(values["created_at"]),
        "created_by": values["created_by"],
        "updated_at": iso(values["updated_at"]),
        "updated_by": values["updated_by"],
        "owner_id": values["owner_id"],
    }


def mask(record: Record, hidden: frozenset[str]) -> Record:
    """The record without the fields the caller may not see."""
    return {k: v for k, v in record.items() if k not in hidden} if hidden else record


def as_csv(names: list[str], rows: list[Record]) -> str:
    """An export as CSV: a header, then a line per record (API and pages share it)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(names)
    for row in rows:
        writer.writerow([_csv_cell(row.get(name)) for name in names])
    return buffer.getvalue()


def _csv_cell(value: Any) -> Any:
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value  # keep spreadsheets from running a cell as a formula
    return value
