"""The layout designer: an object's form sections and list columns (``x-layout`` and
``x-list-columns`` of its definition), administrators only.

The page carries the layout being edited as a draft in its own form. Every button is a
submit button with a value (``op``), so the designer works without JavaScript: the server
applies the operation to the posted draft and shows the result again, unsaved. Drag and
drop (``static/trellis.js``) only rewrites the same hidden inputs. *Save* sends the whole
current definition with the new layout through ``ObjectService.update``; a refusal is
shown next to the section, field or column its JSON pointer names (422), and nothing is
stored.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from trellis.admin_ui import bp
from trellis.admin_ui.context import REFUSALS, commit, objects, registry, rollback
from trellis.admin_ui.designer import type_label
from trellis.admin_ui.forms import FormField, system_label
from trellis.admin_ui.i18n import LANGUAGES, pick, told
from trellis.admin_ui.pages import OBJECT_TABS, admin_only
from trellis.exceptions import BadRequest, TrellisError
from trellis.platform.metadata.definition import LIST_SYSTEM_COLUMNS

if TYPE_CHECKING:
    from werkzeug.datastructures import MultiDict

    from trellis.platform.runtime.registry import ObjectMeta

OBJECT_TABS.append(("ui.object_layout", lambda: _("Layout")))

MAX_SECTIONS = 100  # the meta-schema allows 30; more than this is not a form of ours
SECTION_KEY = re.compile(r"^[0-9]{1,3}$")
DEFAULT_COLUMNS = 2


@dataclass
class Section:
    """One section of the draft; ``key`` names its inputs and stays put while it moves."""

    key: str
    label: dict[str, str]
    columns: Any  # an int, or what was typed (the meta-schema says what is wrong with it)
    fields: list[str]

    def as_document(self) -> dict[str, Any]:
        """The section as ``x-layout`` stores it: label (only the languages typed), columns,
        fields.
        """
        out: dict[str, Any] = {}
        label = {lang: text for lang, text in self.label.items() if text}
        if label:
            out["label"] = label
        out["columns"] = self.columns
        out["fields"] = list(self.fields)
        return out


@dataclass
class Draft:
    """The layout being edited: its sections, and every list column candidate in order."""

    sections: list[Section]
    columns: list[str]
    chosen: set[str] = field(default_factory=set)

    def list_columns(self) -> list[str]:
        """The chosen list columns, in the draft's column order."""
        return [name for name in self.columns if name in self.chosen]

    def section(self, key: str) -> Section:
        """The section whose inputs are named ``key``; ``BadRequest`` when no section is (the
        page was stale).
        """
        for section in self.sections:
            if section.key == key:
                return section
        raise BadRequest(_("That section is not on the page any more; reload the page."))

    def holder(self, field_name: str) -> tuple[int, Section]:
        """The position and section of the one holding ``field_name``; ``BadRequest`` when no
        section does (the page is stale).
        """
        for index, section in enumerate(self.sections):
            if field_name in section.fields:
                return index, section
        raise BadRequest(_("That field is not on the page any more; reload the page."))

    def next_key(self) -> str:
        """A key no section uses yet: one more than the largest (keys are never reused)."""
        return str(max((int(s.key) for s in self.sections), default=-1) + 1)


# --- the draft: from the definition, from the form ------------------------------------


def draft_of(meta: ObjectMeta) -> Draft:
    """The definition's current layout (with the fields it leaves out in a last section)."""
    sections = [
        Section(str(i), dict(s.get("label") or {}), s.get("columns", DEFAULT_COLUMNS), s["fields"])
        for i, s in enumerate(meta.definition.layout())
    ]
    chosen = meta.definition.list_columns()
    candidates = [*meta.fields, *LIST_SYSTEM_COLUMNS]
    columns = [*chosen, *(c for c in candidates if c not in chosen)]
    return Draft(sections, columns, set(chosen))


def draft_from_form(meta: ObjectMeta, form: MultiDict[str, str]) -> Draft:
    """The draft the page posted, as it was arranged there (even when it is not valid)."""
    keys = form.getlist("section")
    if len(keys) > MAX_SECTIONS or len(set(keys)) != len(keys):
        raise BadRequest(_("The layout form is damaged; reload the page."))
    sections = []
    for key in keys:
        if not SECTION_KEY.match(key):
            raise BadRequest(_("The layout form is damaged; reload the page."))
        label = {lang: form.get(f"label.{key}.{lang}", "").strip() for lang in LANGUAGES}
        columns_text = form.get(f"columns.{key}", str(DEFAULT_COLUMNS)).strip()
        columns: Any = int(columns_text) if columns_text.isdigit() else columns_text
        sections.append(Section(key, label, columns, form.getlist(f"field.{key}")))
    order = list(dict.fromkeys(form.getlist("list_order")))
    candidates = [*meta.fields, *LIST_SYSTEM_COLUMNS]
    order.extend(c for c in candidates if c not in order)
    draft = Draft(sections, order, set(form.getlist("list_column")))
    # A field the draft leaves out (added since the page was drawn) goes where forms show it.
    layout = {"sections": [s.as_document() for s in sections]}
    arranged = replace(meta.definition, document={"x-layout": layout}).layout()
    if len(arranged) > len(sections):
        rest = arranged[-1]
        sections.append(
            Section(draft.next_key(), dict(rest["label"]), rest["columns"], rest["fields"])
        )
    return draft


# --- operations on the draft (each button is one) -------------------------------------


def apply(draft: Draft, op: str, form: MultiDict[str, str]) -> None:
    """Change ``draft`` as button ``op`` asks (``"apply"``: take the inputs as they are)."""
    action, _sep, target = op.partition(":")
    if action == "apply":
        return
    if action == "add-section":
        label = {lang: form.get(f"new.{lang}", "").strip() for lang in LANGUAGES}
        columns_text = form.get("new.columns", str(DEFAULT_COLUMNS))
        columns = int(columns_text) if columns_text.isdigit() else DEFAULT_COLUMNS
        draft.sections.append(Section(draft.next_key(), label, columns, []))
    elif action == "remove-section":
        _remove_section(draft, draft.section(target))
    elif action in ("section-up", "section-down"):
        section = draft.section(target)
        index = draft.sections.index(section)
        _swap(draft.sections, index, -1 if action == "section-up" else 1)
    elif action in ("field-up", "field-down"):
        _move_field(draft, target, -1 if action == "field-up" else 1)
    elif action == "move-field":
        section = draft.holder(target)[1]
        destination = draft.section(form.get(f"to.{target}", ""))
        if destination is not section:
            section.fields.remove(target)
            destination.fields.append(target)
    elif action in ("column-up", "column-down"):
        if target not in draft.columns:
            raise BadRequest(_("That column is not on the page any more; reload the page."))
        _swap(draft.columns, draft.columns.index(target), -1 if action == "column-up" else 1)
    else:
        raise BadRequest(_("Unknown action %(action)s.", action=op[:40]))


def _swap(items: list[Any], index: int, step: int) -> None:
    other = index + step
    if 0 <= other < len(items):
        items[index], items[other] = items[other], items[index]


def _remove_section(draft: Draft, section: Section) -> None:
    """Its fields go to the section before it (the next one when it was the first)."""
    if len(draft.sections) == 1:
        raise BadRequest(_("A form keeps at least one section."))
    index = draft.sections.index(section)
    draft.sections.remove(section)
    if index > 0:
        draft.sections[index - 1].fields.extend(section.fields)
    else:
        draft.sections[0].fields[:0] = section.fields


def _move_field(draft: Draft, name: str, step: int) -> None:
    """Up or down within its section; past either end, into the neighbouring section."""
    index, section = draft.holder(name)
    position = section.fields.index(name)
    if 0 <= position + step < len(section.fields):
        _swap(section.fields, position, step)
        return
    neighbour = index + step
    if 0 <= neighbour < len(draft.sections):
        section.fields.remove(name)
        if step < 0:
            draft.sections[neighbour].fields.append(name)
        else:
            draft.sections[neighbour].fields.insert(0, name)


# --- saving -------------------------------------------------------------------------------


def document_with(meta: ObjectMeta, draft: Draft) -> dict[str, Any]:
    """The current definition with the draft's layout and list columns.

    What the definition derives by itself (no ``x-layout``, no ``x-list-columns``) stays
    derived while the draft is the same, so saving an untouched draft changes nothing.
    """
    current = meta.definition
    document = copy.deepcopy(current.document)
    sections = [s.as_document() for s in draft.sections]
    derived = [
        Section("", dict(s.get("label") or {}), s["columns"], s["fields"]) for s in current.layout()
    ]
    if "x-layout" in document or sections != [s.as_document() for s in derived]:
        document["x-layout"] = {"sections": sections}
    columns = draft.list_columns()
    if not columns:  # none chosen: the list's default columns
        document.pop("x-list-columns", None)
    elif "x-list-columns" in document or columns != current.list_columns():
        document["x-list-columns"] = columns
    return document


@dataclass
class PlacedErrors:
    """The service's problems, by where the page shows them."""

    by_section: dict[str, list[str]] = field(default_factory=dict)
    by_field: dict[tuple[str, int], list[str]] = field(default_factory=dict)  # (section, index)
    by_column: dict[str, list[str]] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)  # the list columns as a whole
    other: list[str] = field(default_factory=list)


def place_errors(draft: Draft, details: list[dict[str, Any]]) -> PlacedErrors:
    """Each problem next to what its pointer names: a section, a field in it, a column."""
    placed = PlacedErrors()
    columns = draft.list_columns()
    for detail in details:
        pointer = str(detail.get("field", ""))
        message = told(detail.get("message"))
        parts = pointer.split("/")[1:]
        where = parts[0] if parts else ""
        index = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else None
        if where == "x-layout" and index is not None and index < len(draft.sections):
            section = draft.sections[index]
            if len(parts) > 4 and parts[3] == "fields" and parts[4].isdigit():
                placed.by_field.setdefault((section.key, int(parts[4])), []).append(message)
            else:
                placed.by_section.setdefault(section.key, []).append(message)
        elif where == "x-list-columns":
            column = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
            if column is not None and column < len(columns):
                placed.by_column.setdefault(columns[column], []).append(message)
            else:
                placed.columns.append(message)
        else:
            placed.other.append(f"{pointer}: {message}" if pointer else message)
    return placed


# --- the page -------------------------------------------------------------------------------


@bp.route("/setup/objects/<name>/layout", methods=["GET", "POST"])
@admin_only
def object_layout(name: str) -> Any:
    """``/setup/objects/<name>/layout``: the layout designer. POST with a button's ``op``
    edits the draft on the page (400 for a stale one); ``save`` stores it, if the definition
    is still at the page's version (409 otherwise), each refusal shown in place (422).
    """
    meta = registry().get(name)  # NotFound: the app's 404 page
    if request.method == "GET":
        return _render(meta, draft_of(meta))
    try:
        draft = draft_from_form(meta, request.form)
    except BadRequest as exc:
        return _render(meta, draft_of(meta), message=told(exc.message), status=400)
    op = request.form.get("op", "apply")
    if op != "save":
        try:
            apply(draft, op, request.form)
        except BadRequest as exc:
            return _render(meta, draft, message=told(exc.message), status=400, changed=True)
        return _render(meta, draft, changed=True)
    if request.form.get("version") != str(meta.version):
        message = _(
            "The definition changed (now version %(version)d) since this page was opened;"
            " nothing was saved. Reload the page to start from the current layout.",
            version=meta.version,
        )
        return _render(meta, draft, message=message, status=409, changed=True)
    try:
        # Checked again under the definition's lock: a change landing meanwhile is refused.
        saved = objects().update(name, document_with(meta, draft), expected_version=meta.version)
    except TrellisError as exc:
        if exc.status not in REFUSALS:
            raise
        rollback()
        errors = place_errors(draft, exc.details)
        status = 409 if exc.status == 409 else 422
        return _render(
            meta, draft, message=told(exc.message), errors=errors, status=status, changed=True
        )
    commit()
    if saved.created:
        flash(_("Layout saved as version %(version)d.", version=saved.version), "info")
    else:
        flash(_("Nothing changed."), "info")
    return redirect(url_for("ui.object_layout", name=name))


def _render(
    meta: ObjectMeta,
    draft: Draft,
    *,
    message: str | None = None,
    errors: PlacedErrors | None = None,
    status: int = 200,
    changed: bool = False,
) -> Any:
    errors = errors or PlacedErrors()
    page = render_template(
        "ui/setup/layout.html",
        meta=meta,
        sections=_sections_shown(meta, draft, errors),
        columns=_columns_shown(meta, draft, errors),
        preview=_preview(meta, draft),
        errors=errors,
        message=message,
        changed=changed,
        languages=LANGUAGES,
    )
    return page, status


def _field_label(meta: ObjectMeta, name: str) -> str:
    spec = meta.fields.get(name)
    return pick(spec.label, name) if spec else name


def _sections_shown(meta: ObjectMeta, draft: Draft, errors: PlacedErrors) -> list[dict[str, Any]]:
    shown = []
    for section in draft.sections:
        fields = []
        for index, name in enumerate(section.fields):
            spec = meta.fields.get(name)
            fields.append(
                {
                    "name": name,
                    "label": _field_label(meta, name),
                    "type": type_label(spec.type.name) if spec else None,
                    "errors": errors.by_field.get((section.key, index), []),
                }
            )
        shown.append(
            {
                "key": section.key,
                "label": section.label,
                "title": pick(section.label) or _("Untitled section"),
                "columns": section.columns,
                "fields": fields,
                "errors": errors.by_section.get(section.key, []),
            }
        )
    return shown


def _columns_shown(meta: ObjectMeta, draft: Draft, errors: PlacedErrors) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "label": system_label(name)
            if name in LIST_SYSTEM_COLUMNS
            else _field_label(meta, name),
            "chosen": name in draft.chosen,
            "errors": errors.by_column.get(name, []),
        }
        for name in draft.columns
    ]


def _preview(meta: ObjectMeta, draft: Draft) -> list[dict[str, Any]]:
    """The form the layout gives, drawn with the form's own widgets (not submitted)."""
    sections = []
    for section in draft.sections:
        shown = [
            FormField(
                meta.fields[n],
                meta.fields[n].default if meta.fields[n].has_default else None,
                readonly=not meta.fields[n].writable,
            )
            for n in section.fields
            if n in meta.fields
        ]
        if shown:
            sections.append({"label": section.label, "columns": section.columns, "fields": shown})
    return sections
