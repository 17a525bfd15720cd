"""Small builders of definitions and records for tests (no copied JSON blobs)."""

from __future__ import annotations

import copy
from typing import Any

SCHEMA = "https://json-schema.org/draft/2020-12/schema"


def field(x_type: str, label: str | None = None, **keywords: Any) -> dict[str, Any]:
    """A property of a definition; JSON ``type`` and required keywords filled per type."""
    defaults: dict[str, dict[str, Any]] = {
        "text": {"type": "string", "maxLength": 120},
        "textarea": {"type": "string"},
        "integer": {"type": "integer"},
        "number": {"type": "number"},
        "currency": {"type": "number"},
        "percent": {"type": "number"},
        "boolean": {"type": "boolean"},
        "date": {"type": "string", "format": "date"},
        "datetime": {"type": "string", "format": "date-time"},
        "picklist": {"type": "string", "enum": ["a", "b"]},
        "multipicklist": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
        "email": {"type": "string", "format": "email"},
        "phone": {"type": "string"},
        "url": {"type": "string", "format": "uri"},
        "lookup": {"type": "integer"},
        "master_detail": {"type": "integer"},
        "autonumber": {"type": "string", "x-format": "N-{0000}"},
        "json": {},
        "formula": {"type": ["number", "null"], "x-formula": "1 + 1"},
        # Roll-ups need records pointing at theirs: tests/platform/runtime/test_computed.py.
        "rollup": {"type": ["integer", "null"], "x-rollup": {"of": "lines", "function": "COUNT"}},
        "richtext": {"type": "string"},
        "user": {"type": "integer"},
        "file": {"type": "integer"},
        "image": {"type": "integer"},
    }
    prop: dict[str, Any] = {"x-type": x_type, **copy.deepcopy(defaults[x_type])}
    prop["x-label"] = {"en": label or x_type.title(), "zh-CN": label or x_type}
    prop.update(keywords)
    return prop


def definition(
    name: str, fields: dict[str, dict[str, Any]], required: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "$schema": SCHEMA,
        "x-name": name,
        "x-label": {"en": name.replace("_", " ").title(), "zh-CN": name},
        "type": "object",
        "properties": fields,
    }
    if required:
        doc["required"] = required
    doc.update(extra)
    return doc


def dealer_definition(**more_fields: dict[str, Any]) -> dict[str, Any]:
    return definition(
        "dealer",
        {
            "name": field("text", "Name", **{"x-unique": True}),
            "level": field("picklist", "Level", enum=["gold", "silver", "bronze"]),
            "credit_limit": field("currency", "Credit limit", minimum=0),
            "parent": field("lookup", "Parent", **{"x-target": "dealer"}),
            **more_fields,
        },
        required=["name"],
    )


def order_definitions() -> tuple[dict[str, Any], dict[str, Any]]:
    """A sales order with autonumber and a master-detail ``lines`` child."""
    order = definition(
        "sales_order",
        {
            "number": field("autonumber", "Number", **{"x-format": "SO-{YYYY}-{0000}"}),
            "dealer": field("lookup", "Dealer", **{"x-target": "dealer"}),
            "status": field("picklist", "Status", enum=["draft", "submitted"], default="draft"),
            "order_date": field("date", "Order date"),
        },
        required=["dealer"],
    )
    line = definition(
        "order_line",
        {
            "sales_order": field(
                "master_detail",
                "Order",
                **{"x-target": "sales_order", "x-related-name": "lines"},
            ),
            "sku": field("text", "SKU", maxLength=40),
            "quantity": field("integer", "Quantity", minimum=1),
        },
        required=["sales_order", "quantity"],
    )
    return order, line
