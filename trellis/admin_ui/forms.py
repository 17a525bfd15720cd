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
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from flask_babel import lazy_gettext as _l
from markupsafe import Markup, escape

from trellis.admin_ui.i18n import pick
from trellis.platform.metadata.fieldtypes import html_text

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


NUMERIC_CELLS = frozenset({"integer", "number", "currency", "percent"})


def record_href(object_name: str, in_bin: bool = False) -> Callable[[int], str]:
    """The detail page URL of a record of ``object_name`` by id: ``url_for`` once, not once
    per row (a list page links 25 rows)."""
    from flask import url_for

    path = url_for("ui.record_detail", object_name=object_name, record_id=0)
    head = path.removesuffix("/0")
    tail = "?deleted=1" if in_bin else ""
    return lambda record_id: f"{head}/{int(record_id)}{tail}"


def list_href(object_name: str, state: dict[str, Any], **changes: Any) -> str:
    """The list page of ``object_name`` with the list's ``state`` (query key → value or
    values) and ``changes``, empty values left out: sort headers, column moves and pager
    links, a dozen a page, for the price of one ``url_for`` a request."""
    from flask import g, url_for

    # Object names are identifiers (letters, digits, _): the URL of one names them all.
    template = g.get("list_path")
    if template is None:
        template = g.list_path = url_for("ui.record_list", object_name="_")
    path = template.removesuffix("_") + object_name
    pairs = [
        (key, value)
        for key, values in {**state, **changes}.items()
        for value in (values if isinstance(values, list | tuple) else [values])
        if value not in (None, "")
    ]
    return f"{path}?{urlencode(pairs)}" if pairs else path


def table_body(
    heads: list[tuple[str, FieldSpec | None, str]],
    items: list[dict[str, Any]],
    titles: dict[str, dict[int, str]],
    href: Callable[[int], str],
    selectable: bool = False,
    show: Any = None,
) -> Markup:
    """The ``<tr>`` rows of a record table, every text escaped; the first cell links to the
    record. Built here in one pass because it is a list page's hot path (25 rows of 10
    cells): the same HTML by template calls costs three calls a cell."""
    columns = [
        (escape(heading), ' class="num"' if spec and spec.value_type.name in NUMERIC_CELLS else "")
        for _column, spec, heading in heads
    ]
    out: list[str] = []
    for item, cells in table_rows(heads, items, titles, show):
        record_id = int(item["id"])
        out.append("<tr>")
        if selectable:
            out.append(
                f'<td class="pick"><input type="checkbox" name="ids" value="{record_id}" '
                f'form="bulk-form" aria-label="#{record_id}"></td>'
            )
        for index, ((label, css), (_heading, text)) in enumerate(zip(columns, cells, strict=True)):
            body = escape(text)
            if index == 0:
                body = Markup(f'<a href="{escape(href(record_id))}">{body}</a>')
            out.append(f'<td data-label="{label}"{css}>{body}</td>')
        out.append("</tr>")
    return Markup("\n".join(out))


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

    @property
    def filter_widget(self) -> str:
        """The widget of the values it holds: how a list filters it (a roll-up of amounts
        by a range, as an amount)."""
        return self.spec.value_type.widget

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
    if kind in ("lookup", "master_detail", "user"):
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
    """A value as lists and detail pages show it (labels, separators, names for ids); a
    value its type cannot format (a default being typed in the designer) as it is."""
    if value is None or value == "":
        return "—"
    if spec is None:
        return str(value)
    try:
        return _display(spec, value, titles)
    except (ValueError, TypeError, InvalidOperation):
        return str(value)


def _display(spec: FieldSpec, value: Any, titles: dict[int, str] | None) -> str:
    kind = spec.value_type.name
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
    if kind == "richtext":
        return html_text(str(value)) or "—"
    if kind == "user":
        return (titles or {}).get(value) or f"#{value}"
    if kind in ("file", "image"):
        from flask_babel import gettext

        return (titles or {}).get(value) or gettext("(a file)")
    return str(value)


RICH_TYPES = frozenset({"richtext", "file", "image"})


def file_href(file_id: int) -> str:
    """The page route that serves a stored file (read and field rights checked there)."""
    from flask import url_for

    return url_for("ui.record_file", file_id=int(file_id))


def rich_value(spec: FieldSpec, value: Any, titles: dict[int, str] | None = None) -> Markup:
    """A detail page's richtext, file or image value: the stored HTML (sanitised on
    write), a download link, or an image preview linking to the image."""
    if value is None or value == "":
        return Markup("—")
    kind = spec.type.name
    if kind == "richtext":
        return Markup(f'<div class="richtext">{value}</div>')  # sanitised on write
    name = escape(display(spec, value, titles))
    href = escape(file_href(value))
    if kind == "image":
        return Markup(
            f'<a href="{href}"><img class="preview" src="{href}" alt="{name}" loading="lazy"></a>'
        )
    return Markup(f'<a href="{href}" download>{name}</a>')
