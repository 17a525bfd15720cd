"""The object and field designer (administrators): objects, their settings, their fields.

Every save builds the full new definition from the current one plus the form and hands
it to ``ObjectService`` — what ``POST``/``PUT /api/v1/objects`` do — so the designer has
no rules of its own: a refusal's JSON pointers are placed under the inputs that produced
them (``designer.py``), with what was typed kept, and nothing changes (422).
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import TYPE_CHECKING, Any

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from trellis.admin_ui import bp
from trellis.admin_ui.context import REFUSALS, commit, objects, registry, rollback
from trellis.admin_ui.designer import (
    FORMULA_RESULT_LABELS,
    FieldForm,
    ObjectForm,
    check_expressions,
    checkable_field,
    field_expressions,
    field_form_of,
    field_schema,
    new_object_form,
    object_document,
    object_form_of,
    place_field_problems,
    place_object_problems,
    read_field_form,
    read_object_form,
    rollup_child,
    rollup_fields,
    rollup_functions,
    rollup_kind,
    rollup_sources,
    type_choices,
    type_label,
)
from trellis.admin_ui.forms import FormField
from trellis.admin_ui.i18n import pick, told
from trellis.admin_ui.pages import DESIGNERS, OBJECT_TABS, admin_only, installed_packs
from trellis.exceptions import NotFound, ReferencedDocument, TrellisError
from trellis.platform.metadata.fieldtypes import FieldSpec, get_type
from trellis.platform.runtime.records.pipeline import format_number

if TYPE_CHECKING:
    from trellis.platform.runtime.registry import ObjectMeta

DESIGNERS.append(("ui.object_list", lambda: str(_l("Objects"))))
OBJECT_TABS.append(("ui.object_settings", lambda: str(_l("Settings"))))
OBJECT_TABS.append(("ui.object_fields", lambda: str(_l("Fields"))))

# What a refused save answers: the form again, with the problems (never a 500).


def _refused(exc: TrellisError) -> None:
    if exc.status not in REFUSALS:
        raise exc
    rollback()


def _document(meta: ObjectMeta) -> dict[str, Any]:
    return copy.deepcopy(meta.definition.document)


# --- objects ----------------------------------------------------------------------------


@bp.get("/setup/objects")
@admin_only
def object_list() -> Any:
    """``/setup/objects``: every object with its label, version, field count and the pack
    that brought it (administrators only; others get the 403 page).
    """
    packs: dict[str, str] = {}
    for label, names in installed_packs():
        for name in names:
            packs.setdefault(name, label)
    rows = [
        {
            "name": meta.name,
            "label": pick(meta.definition.label, meta.name),
            "version": meta.version,
            "fields": len(meta.fields),
            "pack": packs.get(meta.name, ""),
        }
        for meta in sorted(registry().all(), key=lambda m: m.name)
    ]
    return render_template("ui/setup/objects.html", rows=rows)


@bp.route("/setup/objects/new-object", methods=["GET", "POST"])
@admin_only
def object_new() -> Any:
    """``/setup/objects/new``: the new-object form; POST creates the object with a first
    text field and goes on to its fields. A refusal shows the form with each problem (422).
    """
    if request.method == "GET":
        return _settings_page(None, new_object_form())
    form = read_object_form(request.form)
    try:
        saved = objects().create(object_document(form, None))
    except TrellisError as exc:
        _refused(exc)
        place_object_problems(form, exc.details, creating=True, message=told(exc.message))
        return _settings_page(None, form, status=422)
    commit()
    flash(_("Object created."), "info")
    return redirect(url_for("ui.object_fields", name=saved.name))


@bp.route("/setup/objects/<name>", methods=["GET", "POST"])
@admin_only
def object_settings(name: str) -> Any:
    """``/setup/objects/<name>``: an object's settings form; POST saves them as a new
    version (``No changes.`` when identical). A refusal shows the form with each problem (422).
    """
    meta = registry().get(name)
    if request.method == "GET":
        return _settings_page(meta, object_form_of(meta.definition.document))
    form = read_object_form(request.form)
    form.inputs["name"] = name
    try:
        saved = objects().update(name, object_document(form, _document(meta)))
    except TrellisError as exc:
        _refused(exc)
        place_object_problems(form, exc.details, creating=False, message=told(exc.message))
        return _settings_page(registry().get(name), form, status=422)
    commit()
    flash(
        _("Saved as version %(version)d.", version=saved.version)
        if saved.created
        else _("No changes."),
        "info",
    )
    return redirect(url_for("ui.object_settings", name=name))


def _settings_page(meta: ObjectMeta | None, form: ObjectForm, status: int = 200) -> Any:
    fields = [(n, pick(s.label, n)) for n, s in meta.fields.items()] if meta else []
    own_lookups = [
        (n, pick(s.label, n))
        for n, s in (meta.fields.items() if meta else [])
        if s.type.name == "lookup" and s.target == meta.name  # type: ignore[union-attr]
    ]
    scope_lookups = [
        (n, pick(s.label, n)) for n, s in (meta.fields.items() if meta else []) if s.target
    ]
    page = render_template(
        "ui/setup/object.html",
        meta=meta,
        form=form,
        fields=fields,
        own_lookups=own_lookups,
        scope_lookups=scope_lookups,
    )
    return page, status


@bp.route("/setup/objects/<name>/delete", methods=["GET", "POST"])
@admin_only
def object_delete(name: str) -> Any:
    """``/setup/objects/<name>/delete``: what still depends on the object, and a form that
    deletes it once its name is typed; 422 for a wrong name, 409 while something depends on it.
    """
    meta = registry().get(name)
    blockers = objects().check_deletable(name, meta.definition.document)
    error = None
    if request.method == "POST":
        if request.form.get("confirm", "").strip() != name:
            error = _("type the object's name, %(name)s, to confirm", name=name)
        else:
            try:
                objects().delete(name)
            except ReferencedDocument as exc:
                rollback()
                blockers = exc.details
            else:
                commit()
                flash(_("Object %(name)s deleted.", name=name), "info")
                return redirect(url_for("ui.object_list"))
    status = 200 if request.method == "GET" else (409 if blockers else 422)
    page = render_template("ui/setup/delete.html", meta=meta, blockers=blockers, error=error)
    return page, status


# --- fields -----------------------------------------------------------------------------


@bp.get("/setup/objects/<name>/fields")
@admin_only
def object_fields(name: str) -> Any:
    """``/setup/objects/<name>/fields``: the object's fields, to add, edit or remove one."""
    return _fields_page(registry().get(name))


def _fields_page(meta: ObjectMeta, problems: list[str] | None = None, status: int = 200) -> Any:
    rows = [
        {
            "name": n,
            "label": pick(spec.label, n),
            "type": type_label(spec.type.name),
            "required": spec.required,
            "unique": spec.unique,
            "searchable": bool(spec.schema.get("x-searchable")),
            "title": n == meta.definition.title_field,
        }
        for n, spec in meta.fields.items()
    ]
    page = render_template("ui/setup/fields.html", meta=meta, rows=rows, problems=problems or [])
    return page, status


@bp.route("/setup/objects/<name>/new-field", methods=["GET", "POST"])
@admin_only
def field_new(name: str) -> Any:
    """``/setup/objects/<name>/fields/new``: the field form (``?type=`` chooses the type,
    text if unknown); POST adds the field. A taken name or a refused field: the form, 422.
    """
    meta = registry().get(name)
    if request.method == "GET":
        blank = FieldForm("", request.args.get("type", "text"), {}, set(), False, [])
        if blank.type not in dict(type_choices()):
            blank.type = "text"
        return _field_page(meta, blank, creating=True)
    form = read_field_form(request.form)
    if form.name in meta.fields:
        form.add_error("name", _("a field named %(name)s already exists", name=form.name))
        return _field_page(meta, form, creating=True, status=422)
    return _save_field(meta, form, None, creating=True)


@bp.route("/setup/objects/<name>/fields/<field_name>", methods=["GET", "POST"])
@admin_only
def field_edit(name: str, field_name: str) -> Any:
    """``/setup/objects/<name>/fields/<field>``: a field's form; POST saves it as a new
    version of the object. A refused change shows the form (422); an unknown field is 404.
    """
    meta = registry().get(name)
    spec = meta.fields.get(field_name)
    if spec is None:
        raise NotFound(f"{name!r} has no field named {field_name!r}")
    if request.method == "GET":
        return _field_page(meta, field_form_of(field_name, spec.schema, spec.required), False)
    form = read_field_form(request.form, name=field_name)
    return _save_field(meta, form, spec.schema, creating=False)


def _save_field(
    meta: ObjectMeta, form: FieldForm, old: dict[str, Any] | None, creating: bool
) -> Any:
    schema = field_schema(form, old, _rolls_up(meta, form))
    if form.errors or form.problems:
        return _field_page(meta, form, creating, status=422)
    document = _document(meta)
    document["properties"][form.name] = schema
    required = [n for n in document.get("required", []) if n != form.name]
    if form.required:
        required.append(form.name)
    if required:
        document["required"] = required
    else:
        document.pop("required", None)
    try:
        saved = objects().update(meta.name, document)
    except TrellisError as exc:
        _refused(exc)
        place_field_problems(form, exc.details, creating, told(exc.message))
        return _field_page(registry().get(meta.name), form, creating, status=422)
    commit()
    if saved.created:
        flash(
            _(
                "Field %(field)s saved (version %(version)d).",
                field=form.name,
                version=saved.version,
            ),
            "info",
        )
    else:
        flash(_("No changes."), "info")
    return redirect(url_for("ui.object_fields", name=meta.name))


@bp.post("/setup/objects/<name>/fields/<field_name>/remove")
@admin_only
def field_remove(name: str, field_name: str) -> Any:
    """``POST /setup/objects/<name>/fields/<field>/remove``: drop the field from the
    definition (its data kept in an archived column); a refusal shows the field list (422).
    """
    meta = registry().get(name)
    if field_name not in meta.fields:
        raise NotFound(f"{name!r} has no field named {field_name!r}")
    document = _without_field(_document(meta), field_name)
    try:
        objects().update(name, document)
    except TrellisError as exc:
        _refused(exc)
        problems = [f"{d.get('field')}: {told(d.get('message'))}" for d in exc.details]
        return _fields_page(registry().get(name), [told(exc.message), *problems], status=422)
    commit()
    flash(
        _("Field %(field)s removed; its data is kept in an archived column.", field=field_name),
        "info",
    )
    return redirect(url_for("ui.object_fields", name=name))


def _without_field(document: dict[str, Any], field_name: str) -> dict[str, Any]:
    """The definition without the field, and without it in the layout and list columns
    (arrangements that only name it); rules that depend on it are left for the service."""
    del document["properties"][field_name]
    required = [n for n in document.get("required", []) if n != field_name]
    if required:
        document["required"] = required
    else:
        document.pop("required", None)
    for section in document.get("x-layout", {}).get("sections", []):
        section["fields"] = [n for n in section["fields"] if n != field_name]
    columns = [n for n in document.get("x-list-columns", []) if n != field_name]
    if columns:
        document["x-list-columns"] = columns
    else:
        document.pop("x-list-columns", None)
    return document


def _field_page(meta: ObjectMeta, form: FieldForm, creating: bool, status: int = 200) -> Any:
    page = render_template(
        "ui/setup/field.html",
        meta=meta,
        form=form,
        creating=creating,
        types=type_choices(),
        preview=_preview(meta, form),
        **_settings_choices(meta, form),
    )
    return page, status


def _settings_choices(meta: ObjectMeta, form: FieldForm) -> dict[str, Any]:
    """What the type's settings offer to choose from: targets, formula results, and for a
    roll-up what it may aggregate, the functions and the child fields that fit."""
    choices: dict[str, Any] = {"targets": _targets(), "formula_results": _formula_results()}
    if form.type == "rollup":
        document, documents = meta.definition.document, registry().documents()
        child = rollup_child(document, documents, form.inputs.get("rollup-of", ""))
        function = form.inputs.get("rollup-function", "")
        choices["rollup_sources"] = rollup_sources(document, documents)
        choices["rollup_functions"] = rollup_functions()
        choices["rollup_fields"] = rollup_fields(documents[child], function) if child else []
    return choices


def _rolls_up(meta: ObjectMeta, form: FieldForm) -> str | None:
    if form.type != "rollup":
        return None
    return rollup_kind(form, meta.definition.document, registry().documents())


def _formula_results() -> list[tuple[str, str]]:
    return [(key, str(label)) for key, label in FORMULA_RESULT_LABELS.items()]


def _targets() -> list[tuple[str, str]]:
    return [
        (m.name, pick(m.definition.label, m.name))
        for m in sorted(registry().all(), key=lambda m: m.name)
    ]


@bp.get("/setup/objects/<name>/field-settings")
@admin_only
def field_settings(name: str) -> Any:
    """The chosen type's settings (the type select swaps them in with htmx)."""
    meta = registry().get(name)
    form = read_field_form(request.args)
    return render_template(
        "ui/setup/_field_settings.html", meta=meta, form=form, **_settings_choices(meta, form)
    )


@bp.get("/setup/objects/<name>/field-preview")
@admin_only
def field_preview(name: str) -> Any:
    """The field's widget as record forms will show it, from the settings as typed."""
    meta = registry().get(name)
    form = read_field_form(request.args)
    return render_template("ui/setup/_field_preview.html", preview=_preview(meta, form))


def _preview(meta: ObjectMeta, form: FieldForm) -> dict[str, Any]:
    """The ``FormField`` the record form would render (or why it cannot be shown yet), and
    the field's expressions checked as saving would check them."""
    scratch = FieldForm(
        form.name, form.type, dict(form.inputs), set(form.flags), form.required, list(form.options)
    )
    schema = field_schema(
        scratch,
        meta.fields[form.name].schema if form.name in meta.fields else None,
        _rolls_up(meta, form),
    )
    checks = _expression_checks(meta, form, schema)
    spec = FieldSpec(form.name or "field", get_type(form.type), schema, form.required)
    if spec.target is not None and registry().find(spec.target) is None:
        return {"field": None, "note": _("Choose the object it points at."), "checks": checks}
    if spec.target is None and form.type in ("lookup", "master_detail"):
        return {"field": None, "note": _("Choose the object it points at."), "checks": checks}
    if form.type == "rollup" and not {"of", "function"} <= set(schema["x-rollup"]):
        note = _("Choose what it rolls up and the function.")
        return {"field": None, "note": note, "checks": checks}
    value = schema.get("default")
    if form.type == "autonumber" and "{0" in str(schema.get("x-format", "")):
        value = format_number(str(schema["x-format"]), 1, dt.datetime.now(dt.UTC))
    readonly = form.type == "autonumber" or "readonly" in form.flags
    return {"field": FormField(spec, value, readonly=readonly), "note": None, "checks": checks}


def _expression_checks(meta: ObjectMeta, form: FieldForm, schema: dict[str, Any]) -> list[Any]:
    """The field's formula, roll-up filter and conditions checked in the object with the
    field as typed (``check_expressions``)."""
    document = copy.deepcopy(meta.definition.document)
    document["properties"][form.name or "field"] = checkable_field(form, schema)
    return check_expressions(document, registry().documents(), field_expressions(form, schema))
