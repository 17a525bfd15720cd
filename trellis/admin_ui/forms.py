"""Generated forms: a widget per field type, and form input back to record JSON.

The widget comes from the field type's registry entry (``FieldType.widget``), as
flask-admin's converters map a column type to a form field. Parsing is lenient about
presentation only (thousands separators, an empty box meaning "no value"); anything
it cannot read is passed on as typed, so the record service's validation, the one
source of truth, reports it next to the field.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cached_property
from typing import TYPE_CHECKING, Any

from flask_babel import lazy_gettext as _l

from trellis.admin_ui.i18n import pick

if TYPE_CHECKING:
    from werkzeug.datastructures import MultiDict

    from trellis.platform.metadata.fieldtypes import FieldSpec
    from trellis.platform.runtime.registry import ObjectMeta

NUMERIC_WIDGETS = frozenset({"number", "currency", "percent"})
SYSTEM_LABELS = {"id": _l("ID"), "created_at": _l("Created"), "updated_at": _l("Updated")}


def system_label(name: str) -> str:
    """A system column's heading in the current language."""
    return str(SYSTEM_LABELS.get(name, name))


def table_columns(meta: ObjectMeta, columns: list[str]) -> list[tuple[str, FieldSpec | None, str]]:
    """``(column, field or None, heading)`` of each column a record table shows."""
    heads = []
    for column in columns:
        spec = meta.fields.get(column)
        heads.append((column, spec, pick(spec.label, column) if spec else system_label(column)))
    return heads


def table_rows(
    heads: list[tuple[str, FieldSpec | None, str]],
    items: list[dict[str, Any]],
    titles: dict[str, dict[int, str]],
    show: Any = None,
) -> list[tuple[dict[str, Any], list[tuple[str, str]]]]:
    """Each record with ``(heading, text)`` of its cells, the text as ``show`` (``display``)
    writes the value."""
    show = show or display
    return [
        (item, [(heading, show(spec, item.get(c), titles.get(c))) for c, spec, heading in heads])
        for item in items
    ]


@dataclass(frozen=True)
class FormField:
    """One field as a form shows it: its widget, label, value and state for this user."""

    spec: FieldSpec
    value: Any
    readonly: bool
    error: str | None = None

    @property
    def name(self) -> str:
        """The field's name, also its input's name."""
        return self.spec.name

    @property
    def widget(self) -> str:
        """The widget its field type chooses (``input``, ``select``, ``lookup``…)."""
        return self.spec.type.widget

    @cached_property  # a form asks several times (legend, aria-labels); built per request
    def label(self) -> str:
        """The field's label in the request's language, else its name."""
        return pick(self.spec.label, self.spec.name)

    @property
    def help(self) -> str:
        """The field's ``x-help`` in the request's language, or empty."""
        return pick(self.spec.schema.get("x-help"), "")

    @property
    def required(self) -> bool:
        """Whether the definition requires a value."""
        return self.spec.required

    @cached_property
    def options(self) -> list[tuple[str, str]]:
        """Picklist values with their labels in the current language."""
        schema = self.spec.schema
        values = schema.get("enum") or schema.get("items", {}).get("enum") or []
        labels = schema.get("x-enum-labels", {})
        return [(v, pick(labels.get(v), v)) for v in values]

    @property
    def input_value(self) -> str:
        """The value as the widget's ``value`` attribute wants it."""
        return input_text(self.spec, self.value)

    def shown(self, titles: dict[str, dict[int, str]]) -> str:
        """The value as a read-only field shows it: labels, separators, names for ids."""
        return display(self.spec, self.value, titles.get(self.name))

    @property
    def step(self) -> str:
        """The number input's ``step``: 1 for whole numbers, the currency's smallest unit
        (0.01 at scale 2), else ``any``.
        """
        if self.spec.type.name == "integer":
            return "1"
        if self.spec.type.name == "currency":
            return str(Decimal(1).scaleb(-int(self.spec.schema.get("x-scale", 2))))
        return "any"


def input_text(spec: FieldSpec, value: Any) -> str:
    """A JSON value as the text a form input holds."""
    if value is None:
        return ""
    kind = spec.type.name
    if kind == "datetime" and isinstance(value, str):
        return value.replace("Z", "")[:16]  # datetime-local: YYYY-MM-DDTHH:MM (UTC)
    if kind == "json":
        return json.dumps(value, ensure_ascii=False, indent=2)
    if kind == "currency":
        scale = int(spec.schema.get("x-scale", 2))
        return f"{Decimal(str(value)):,.{scale}f}"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 5, not 5.0
    return str(value)


def parse_value(spec: FieldSpec, form: MultiDict[str, str], key: str) -> Any:
    """The JSON value a form sent for ``spec`` under ``key`` (``None``: no value)."""
    kind = spec.type.name
    if kind == "boolean":
        values = form.getlist(key)
        return bool(values) and values[-1] in ("true", "on", "1")
    if kind == "multipicklist":
        chosen = [v for v in form.getlist(key) if v]
        return chosen or None
    text = form.get(key, "")
    if text.strip() == "":
        return None
    if kind in NUMERIC_WIDGETS or kind == "integer":
        return _number(text, whole=kind == "integer")
    if kind in ("lookup", "master_detail"):
        return int(text) if text.strip().isdigit() else text
    if kind == "datetime":
        return _datetime(text)
    if kind == "json":
        try:
            return json.loads(text)
        except ValueError:
            return text  # the service says what is wrong with it
    return text


def _number(text: str, whole: bool) -> Any:
    cleaned = text.strip().replace(",", "").replace(" ", "").replace("\u00a0", "")
    try:
        number = Decimal(cleaned)
    except InvalidOperation:
        return text
    if not number.is_finite():
        return text
    if whole and number == number.to_integral_value():
        return int(number)
    return int(number) if number == number.to_integral_value() else float(cleaned)


def _datetime(text: str) -> str:
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return text
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)  # the form's times are UTC, as labelled
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def editable_fields(meta: ObjectMeta, hidden: frozenset[str], skip: str | None = None) -> list[str]:
    """The fields a form shows, in layout order, without hidden ones (and ``skip``)."""
    names = [n for section in meta.definition.layout() for n in section["fields"]]
    return [n for n in names if n not in hidden and n != skip]


def parse_record(
    meta: ObjectMeta,
    form: MultiDict[str, str],
    names: list[str],
    writable: set[str],
    prefix: str = "",
) -> dict[str, Any]:
    """The payload a form sent: each writable field it shows, parsed."""
    payload: dict[str, Any] = {}
    for name in names:
        spec = meta.fields[name]
        if name not in writable or not spec.writable:
            continue
        key = f"{prefix}{name}"
        if spec.type.name not in ("boolean", "multipicklist") and key not in form:
            continue
        payload[name] = parse_value(spec, form, key)
    return payload


def _not_visible() -> str:
    from flask_babel import gettext

    return gettext("(not visible to you)")


def display(spec: FieldSpec | None, value: Any, titles: dict[int, str] | None = None) -> str:
    """A value as lists and detail pages show it (labels, separators, names for ids)."""
    if value is None or value == "":
        return "—"
    if spec is None:
        return str(value)
    kind = spec.type.name
    if kind in ("picklist",):
        return pick(spec.schema.get("x-enum-labels", {}).get(value), str(value))
    if kind == "multipicklist":
        labels = spec.schema.get("x-enum-labels", {})
        return ", ".join(pick(labels.get(v), str(v)) for v in value)
    if kind == "currency":
        scale = int(spec.schema.get("x-scale", 2))
        return f"{Decimal(str(value)):,.{scale}f}"
    if kind == "percent":
        return f"{value:g} %"
    if kind in ("integer", "number"):
        return f"{value:,}" if isinstance(value, int) else f"{value:,.10g}"
    if kind == "boolean":
        from flask_babel import gettext

        return gettext("Yes") if value else gettext("No")
    if kind in ("lookup", "master_detail"):
        # No title: the record is outside what the user may read. Neither its id nor
        # its name is shown.
        return (titles or {}).get(value) or _not_visible()
    if kind == "datetime" and isinstance(value, str):
        return value.replace("T", " ").replace("Z", " UTC")
    if kind == "json":
        return json.dumps(value, ensure_ascii=False)
    return str(value)
