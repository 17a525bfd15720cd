"""Generated record pages: the list, the form, the detail page, for every object.

Views parse the request, call ``RecordService`` as the signed-in user, and render;
they never build SQL of their own. A refusal from the service (422, 409) is shown on
the form it came from, next to its fields, with what the user typed kept.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from flask import current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from markupsafe import Markup
from werkzeug.datastructures import MultiDict

from trellis.admin_ui import bp
from trellis.admin_ui.context import commit, list_views, page_session, records, registry, rollback
from trellis.admin_ui.forms import (
    FormField,
    display,
    editable_fields,
    list_href,
    parse_record,
    system_label,
)
from trellis.admin_ui.i18n import current_language, pick, told
from trellis.admin_ui.pages import cached_fragment, signed_in
from trellis.admin_ui.views.approvals import approval_panel, edit_blocked
from trellis.admin_ui.views.workflows import workflow_panel
from trellis.exceptions import (
    DuplicateValue,
    InvalidQuery,
    NotFound,
    StaleRecord,
    TrellisError,
    ValidationFailed,
)
from trellis.platform.metadata.permissions import Operation
from trellis.platform.runtime import computed, files
from trellis.platform.runtime.api.records import export_format, export_response
from trellis.platform.runtime.query import parse_list_query
from trellis.platform.runtime.records import attachments, lookup
from trellis.platform.runtime.views import (
    SYSTEM_COLUMNS,
    filter_clauses,
    search_text,
    view_params,
)

if TYPE_CHECKING:
    from trellis.platform.runtime.models import ListView
    from trellis.platform.runtime.records import RecordService
    from trellis.platform.runtime.registry import ObjectMeta
    from trellis.platform.runtime.views import ListViewService

LIST_PAGE_SIZE = 25


def _meta(object_name: str) -> ObjectMeta:
    return registry().get(object_name)  # NotFound → the app's 404 page


# --- list ------------------------------------------------------------------------------


def _list_query(service: RecordService, meta: ObjectMeta, args: MultiDict[str, str]) -> Any:
    hidden = service.access.hidden(meta)
    params = args.to_dict(flat=False)
    clauses = filter_clauses(meta, params, hidden)
    query = parse_list_query(
        meta,
        filter_text=json.dumps(clauses) if clauses else None,
        sort_text=args.get("sort") or "-id",
        limit_text=args.get("limit") or str(LIST_PAGE_SIZE),
        cursor=args.get("cursor"),
        fields_text=None,
        default_limit=LIST_PAGE_SIZE,
        max_limit=current_app.config["PAGE_SIZE_MAX"],
        hidden=hidden,
    )
    text = search_text(params)
    if text:
        columns = lookup.search_columns(meta, service.access)
        matches = [c.icontains(text, autoescape=True) for c in columns]
        if text.isdigit():
            matches.append(meta.table.c.id == int(text[:18]))
        condition = sa.or_(*matches) if matches else sa.false()
        query = replace(query, conditions=[*query.conditions, condition])
    if args.get("bin") == "1":
        query = replace(query, deleted=True)
    return query


def fixed_query(
    service: RecordService, meta: ObjectMeta, clauses: list[Any], sort: str, limit: int
) -> Any:
    """A list query the page itself composes (related lists, start-page panels)."""
    return parse_list_query(
        meta,
        filter_text=json.dumps(clauses) if clauses else None,
        sort_text=sort,
        limit_text=str(limit),
        cursor=None,
        fields_text=None,
        default_limit=limit,
        max_limit=limit,
        hidden=service.access.hidden(meta),
    )


def lookup_titles(
    service: RecordService,
    meta: ObjectMeta,
    items: list[dict[str, Any]],
    shown: list[str] | None = None,
) -> dict[str, dict[int, str]]:
    """For each lookup field shown (every one, or those in ``shown``), the names of the
    ids in ``items``."""
    found: dict[str, dict[int, str]] = {}
    for name, spec in meta.fields.items():
        if shown is not None and name not in shown:
            continue
        ids = {item[name] for item in items if isinstance(item.get(name), int)}
        if not ids:
            continue
        if spec.target is not None:
            found[name] = service.titles(spec.target, ids)
        elif spec.type.name == "user":
            found[name] = _names_of_users(service, ids)
        elif spec.type.name in attachments.FILE_TYPES:
            stored = attachments.stored_files(page_session(), ids)
            found[name] = {i: row.original_name for i, row in stored.items()}
    return found


def titled_page(
    service: RecordService, meta: ObjectMeta, query: Any, columns: list[str]
) -> tuple[dict[str, Any], dict[str, dict[int, str]]]:
    """A list page and the titles of its lookup ``columns``, read with it where it can."""
    page = service.list_page(meta.name, query, titles=columns)
    found = page.get("titles", {})
    rest = [c for c in columns if c not in found]
    return page, {**lookup_titles(service, meta, page["items"], rest), **found}


def columns_for(meta: ObjectMeta, args: MultiDict[str, str], hidden: frozenset[str]) -> list[str]:
    """The columns asked for (``columns=a,b`` or one ``columns`` per name), else the
    object's list columns; a name that is not a column for this user is left out."""
    wanted = [c for value in args.getlist("columns") for c in value.split(",") if c]
    names = list(dict.fromkeys(wanted)) or meta.definition.list_columns()
    return [n for n in names if (n in meta.fields or n in SYSTEM_COLUMNS) and n not in hidden]


# Groups of list parameters: a request that sends any parameter of a group (the filter
# form always sends ``q``) replaces that group of the applied view.
PARAM_GROUPS = (
    lambda key: key == "q" or key.startswith("f."),
    lambda key: key == "sort",
    lambda key: key == "columns",
)


def with_view(args: MultiDict[str, str], params: dict[str, list[str]]) -> MultiDict[str, str]:
    """The request's list parameters over a saved view's: the view fills each group of
    parameters (filters, sort, columns) that the request does not send."""
    merged: MultiDict[str, str] = MultiDict()
    for key, values in params.items():
        group = next((g for g in PARAM_GROUPS if g(key)), None)
        if group is not None and not any(group(k) for k in args):
            merged.setlist(key, values)
    for key in args:
        merged.setlist(key, args.getlist(key))
    return merged


def applied_view(
    views: ListViewService, meta: ObjectMeta, args: MultiDict[str, str]
) -> tuple[ListView | None, MultiDict[str, str]]:
    """The view ``?view=<id>`` names (one of the user's views of this object, or one shared
    with them) and the list parameters it makes; an unknown id is the app's 404 page."""
    wanted = args.get("view", "")
    if not wanted:
        return None, args
    view = views.applicable(meta.name, int(wanted)) if wanted.isdigit() else None
    if view is None:
        raise NotFound(
            _("This list view does not exist (any more)."), [{"field": "view", "message": wanted}]
        )
    params = view_params(meta, view.definition, views.access.hidden(meta))
    return view, with_view(args, params)


@bp.get("/o/<object_name>")
@signed_in
def record_list(object_name: str) -> Any:
    """``/o/<object>``: the list page (or ``?bin=1``, its recycle bin) with the saved view,
    filters, sort and page the query names; a bad filter shows on the page with 400, no
    read right is 403, an unknown object the 404 page.
    """
    if "move" in request.args:
        return _moved_column(object_name, request.args)
    return render_list(object_name, request.args)


def _moved_column(object_name: str, args: MultiDict[str, str]) -> Any:
    """The column chooser's ↑ / ↓ (``move=up:<column>``): the same list, the column one
    place up or down, at a URL without ``move``."""
    meta = _meta(object_name)
    service = records()
    service.access.require(meta, Operation.READ)
    columns = columns_for(meta, args, service.access.hidden(meta))
    direction, _sep, name = args.get("move", "").partition(":")
    if name in columns and direction in ("up", "down"):
        index = columns.index(name)
        other = index - 1 if direction == "up" else index + 1
        if 0 <= other < len(columns):
            columns[index], columns[other] = columns[other], columns[index]
    state: dict[str, Any] = {k: args.getlist(k) for k in args if k not in ("move", "cursor")}
    state["columns"] = ",".join(columns)
    return redirect(list_href(object_name, state))


def render_list(
    object_name: str,
    request_args: MultiDict[str, str],
    *,
    view_error: TrellisError | None = None,
    view_message: str = "",
    view_action: str = "",
    typed: dict[str, str] | None = None,
) -> Any:
    """The list page for ``request_args`` (with the view it names applied).

    ``view_error`` is a refused change of a view (``view_action``: create, rename,
    definition, delete), shown in the view bar as ``view_message`` with what the user
    ``typed``; the page is then answered with the refusal's status.
    """
    meta = _meta(object_name)
    service = records()
    service.access.require(meta, Operation.READ)
    hidden = service.access.hidden(meta)
    views = list_views()
    view, args = applied_view(views, meta, request_args)
    error = None
    columns = columns_for(meta, args, hidden)
    try:
        page, titles = titled_page(service, meta, _list_query(service, meta, args), columns)
    except InvalidQuery as exc:
        error, page, titles = exc, {"items": [], "next_cursor": None}, {}
    items = page["items"]
    context = {
        "meta": meta,
        "items": items,
        "next_cursor": page["next_cursor"],
        "columns": columns,
        "titles": titles,
        "display": display,
        "error": error,
        "filter_grid": _filter_grid(service, meta, hidden, args),
        "args": args,
        "sort": args.get("sort") or "-id",
        "can_create": service.access.allowed(meta, Operation.CREATE),
        "can_delete": service.access.allowed(meta, Operation.DELETE),
        "can_export": service.access.allowed(meta, Operation.EXPORT),
        "in_bin": args.get("bin") == "1",
        "filtered": any(v for k, v in args.items(multi=True) if k.startswith("f.") or k == "q"),
        "views": _view_bar(views, view),
        "column_choices": _column_choices(meta, columns, hidden),
        "state": {key: args.getlist(key) for key in args if key != "cursor"},
        "view_error": view_error,
        "view_message": view_message,
        "view_action": view_action,
        "typed": typed or {},
    }
    status = view_error.status if view_error is not None else 400 if error is not None else 200
    return render_template("ui/records/list.html", **context), status


def _view_bar(views: ListViewService, view: ListView | None) -> dict[str, Any]:
    """The view bar's actions for the view applied (the picker's list comes with
    :func:`view_menu` when it is opened: the list page sends no query for it)."""
    roles = registry().role_documents()
    return {
        "current": view,
        "can_change": view is not None and views.may_change(view),
        "can_share": views.caller.is_admin,
        "roles": [(name, doc.get("x-label")) for name, doc in sorted(roles.items())],
    }


@bp.get("/o/<object_name>/views-menu")
@signed_in
def view_menu(object_name: str) -> Any:
    """The view picker's choices (htmx, when the picker opens): the user's views, then the
    views shared with their roles, ``?view=`` marked as the one applied."""
    meta = _meta(object_name)
    records().access.require(meta, Operation.READ)
    roles = registry().role_documents()
    listed = list_views().visible(object_name)
    current = request.args.get("view", "")
    return render_template(
        "ui/records/_view_menu.html",
        meta=meta,
        current=current,
        mine=[v for v in listed if v.shared_with_role is None],
        shared=[
            (v, roles.get(str(v.shared_with_role), {}).get("x-label"))
            for v in listed
            if v.shared_with_role is not None
        ],
    )


def _column_choices(
    meta: ObjectMeta, columns: list[str], hidden: frozenset[str]
) -> list[dict[str, Any]]:
    """Every column the user may show, those shown first in their order (with whether they
    can move up or down)."""
    others = [n for n in [*meta.fields, *SYSTEM_COLUMNS] if n not in hidden and n not in columns]
    last = len(columns) - 1
    choices = []
    for index, name in enumerate([*columns, *others]):
        spec = meta.fields.get(name)
        choices.append(
            {
                "name": name,
                "label": pick(spec.label, name) if spec else system_label(name),
                "shown": index <= last,
                "up": 0 < index <= last,
                "down": index < last,
            }
        )
    return choices


def _filter_grid(
    service: RecordService, meta: ObjectMeta, hidden: frozenset[str], args: MultiDict[str, str]
) -> Markup:
    """The filter inputs with the list's filters filled in; without any filter they are
    the same for everyone who sees the same fields, so rendered once and kept."""

    def render(values: MultiDict[str, str], titles: dict[str, str]) -> str:
        return render_template(
            "ui/records/_filter_grid.html",
            filters=_filter_fields(meta, hidden),
            args=values,
            filter_titles=titles,
        )

    if not any(key.startswith("f.") for key in args):
        key = ("filters", meta.name, current_language(), hidden)
        return Markup(cached_fragment(key, lambda: render(MultiDict(), {})))
    return Markup(render(args, _filter_titles(service, meta, args)))


def _filter_fields(meta: ObjectMeta, hidden: frozenset[str]) -> list[FormField]:
    return [
        FormField(spec, None, readonly=False)
        for name, spec in meta.fields.items()
        if name not in hidden and spec.type.widget != "json" and spec.type.name != "textarea"
    ]


def _filter_titles(service: RecordService, meta: ObjectMeta, args: Any) -> dict[str, str]:
    chosen: dict[str, str] = {}
    for name, spec in meta.fields.items():
        text = args.get(f"f.{name}", "")
        if spec.target is not None and text.isdigit():
            chosen[name] = service.titles(spec.target, {int(text)}).get(int(text)) or _(
                "(not visible to you)"
            )
    return chosen


@bp.get("/o/<object_name>/export")
@signed_in
def record_export(object_name: str) -> Any:
    """The list's current filter as CSV (``?format=xlsx``: XLSX), through the export right
    and its scope."""
    meta = _meta(object_name)
    service = records()
    service.access.require(meta, Operation.EXPORT)
    kind = export_format(request.args.get("format"))
    args: MultiDict[str, str] = request.args
    _view, args = applied_view(list_views(), meta, args)
    names, rows = service.export_rows(object_name, _list_query(service, meta, args))
    commit()  # the audit of an admin's bypass, if any
    return export_response(object_name, names, rows, kind)


@bp.post("/o/<object_name>/bulk-delete")
@signed_in
def record_bulk_delete(object_name: str) -> Any:
    """``POST /o/<object>/bulk-delete``: soft-delete the checked ``ids`` (at most 500, others
    ignored) in one transaction; one refusal undoes them all and shows the error page.
    """
    meta = _meta(object_name)
    service = records()
    service.access.require(meta, Operation.DELETE)
    ids = [int(i) for i in request.form.getlist("ids") if i.isdigit()][:500]
    for record_id in ids:
        service.delete(object_name, record_id)
    commit()
    flash(_("%(count)d records deleted.", count=len(ids)), "info")
    return redirect(url_for("ui.record_list", object_name=object_name))


# --- typeahead ---------------------------------------------------------------------------


@bp.get("/lookup/<object_name>")
@signed_in
def lookup_options(object_name: str) -> Any:
    """Typeahead options for a lookup input: the records of ``object_name`` the user may see."""
    _meta(object_name)
    text = request.args.get("q", "")[:100]
    options = records().search(object_name, text, limit=10)
    return render_template(
        "ui/records/_options.html", options=options, target=request.args.get("for", "")
    )


# --- detail ------------------------------------------------------------------------------


@bp.get("/o/<object_name>/<int:record_id>")
@signed_in
def record_detail(object_name: str, record_id: int) -> Any:
    """``/o/<object>/<id>``: a record with its lines, related lists and history;
    ``?deleted=1`` shows a soft-deleted one (to restore it). No read right is 403; an
    unknown record, or one outside the caller's scope, the 404 page.
    """
    meta = _meta(object_name)
    service = records()
    if request.args.get("deleted") == "1":
        record = service.deleted(object_name, record_id)
    else:
        record = service.get(object_name, record_id)
    hidden = service.access.hidden(meta)
    return render_template(
        "ui/records/detail.html",
        meta=meta,
        record=record,
        sections=_sections(meta, hidden),
        titles=lookup_titles(service, meta, [record]),
        display=display,
        history=_history(service, meta, record_id),
        children=_children(service, meta, record),
        related=_related(service, meta, record_id),
        can_update=service.access.allowed(meta, Operation.UPDATE),
        can_delete=service.access.allowed(meta, Operation.DELETE),
        users=_user_names(service, [record]),
        workflow=workflow_panel(meta, record),
        approval=approval_panel(meta, record),
    )


def _sections(meta: ObjectMeta, hidden: frozenset[str]) -> list[dict[str, Any]]:
    sections = []
    for section in meta.definition.layout():
        names = [n for n in section["fields"] if n not in hidden]
        if names:
            sections.append({**section, "fields": names})
    return sections


def _history(service: RecordService, meta: ObjectMeta, record_id: int) -> list[dict[str, Any]]:
    entries = service.history(meta.name, record_id)
    names = _names_of_users(service, {e["changed_by"] for e in entries if e["changed_by"]})
    actions = {
        "create": _("created"),
        "update": _("changed"),
        "delete": _("deleted"),
        "restore": _("restored"),
        "transition": _("moved by a transition"),
        "state_mapped": _("moved to a new workflow version"),
    }
    for entry in entries:
        entry["who"] = names.get(entry["changed_by"], _("system"))
        entry["action_label"] = actions.get(entry["action"], entry["action"])
        entry["changes_shown"] = [
            (
                pick(meta.fields[f].label, f) if f in meta.fields else f,
                display(meta.fields.get(f), c["from"]),
                display(meta.fields.get(f), c["to"]),
            )
            for f, c in entry["changes"].items()
        ]
    return list(reversed(entries))


def _names_of_users(service: RecordService, ids: set[int]) -> dict[int, str]:
    from trellis.platform.runtime.models import User

    known: dict[int, str] = g.setdefault("user_names", {})  # a page asks twice
    missing = ids - known.keys()
    if missing:
        rows = page_session().execute(
            sa.select(User.id, User.name, User.email).where(User.id.in_(missing))
        )
        known.update({row.id: row.name or row.email for row in rows})
    return {i: known[i] for i in ids if i in known}


def _user_names(service: RecordService, items: list[dict[str, Any]]) -> dict[int, str]:
    ids = {item.get(k) for item in items for k in ("created_by", "updated_by", "owner_id")}
    return _names_of_users(service, {i for i in ids if isinstance(i, int)})


def _children(
    service: RecordService, meta: ObjectMeta, record: dict[str, Any]
) -> list[dict[str, Any]]:
    """The master-detail lines of the record, as tables."""
    found = []
    for child_name, spec in meta.children:
        child = registry().get(child_name)
        items = record.get(str(spec.related_name))
        if items is None:
            continue  # the user may not read them
        hidden = service.access.hidden(child)
        columns = [n for n in child.definition.list_columns() if n != spec.name and n not in hidden]
        found.append(
            {
                "meta": child,
                "label": pick(child.definition.document.get("x-label-plural"))
                or pick(child.definition.label, child_name),
                "items": items,
                "columns": columns,
                "titles": lookup_titles(service, child, items, columns),
            }
        )
    return found


def _related(service: RecordService, meta: ObjectMeta, record_id: int) -> list[dict[str, Any]]:
    """Records of other objects that look this one up (not its master-detail lines)."""
    found = []
    for other_name, spec in meta.referrers:
        other = registry().get(other_name)
        if spec.type.name == "master_detail" or not service.access.allowed(other, Operation.READ):
            continue
        if spec.name in service.access.hidden(other):
            continue
        query = fixed_query(service, other, [[spec.name, "=", record_id]], "-id", 10)
        columns = [n for n in other.definition.list_columns() if n != spec.name]
        columns = [n for n in columns if n not in service.access.hidden(other)]
        page, titles = titled_page(service, other, query, columns)
        found.append(
            {
                "meta": other,
                "field": spec,
                "label": f"{pick(other.definition.document.get('x-label-plural')) or pick(other.definition.label, other_name)} ({pick(spec.label, spec.name)})",  # noqa: E501
                "items": page["items"],
                "more": page["next_cursor"] is not None,
                "columns": columns,
                "titles": titles,
            }
        )
    return found


# --- form --------------------------------------------------------------------------------


def _writable(service: RecordService, meta: ObjectMeta) -> set[str]:
    """The fields a form lets the user type into: not a workflow's status (only its
    transitions, the record page's buttons, move it)."""
    status = meta.workflow.status_field if meta.workflow else None
    return {name for name in service.access.writable(meta) if name != status}


def _form_sections(
    service: RecordService,
    meta: ObjectMeta,
    values: dict[str, Any],
    errors: dict[str, str],
    skip: str | None = None,
) -> list[dict[str, Any]]:
    hidden = service.access.hidden(meta)
    writable = _writable(service, meta)
    sections = []
    for section in meta.definition.layout():
        shown = [
            FormField(
                meta.fields[n],
                values.get(n),
                readonly=n not in writable,
                error=errors.get(n),
            )
            for n in section["fields"]
            if n not in hidden and n != skip
        ]
        if shown:
            sections.append({**section, "fields": shown})
    return sections


def _grids(
    service: RecordService, meta: ObjectMeta, record: dict[str, Any], errors: dict[str, str]
) -> list[dict[str, Any]]:
    """The master-detail line grids of a form, with the lines (and their errors)."""
    grids = []
    for child_name, spec in meta.children:
        child = registry().get(child_name)
        if not service.access.allowed(child, Operation.READ):
            continue
        related = str(spec.related_name)
        hidden = service.access.hidden(child)
        names = editable_fields(child, hidden, skip=spec.name)
        writable = _writable(service, child)
        lines = record.get(related) or []
        rows = []
        for index, line in enumerate(lines):
            rows.append(
                {
                    "id": line.get("id"),
                    "version": line.get("version"),
                    "fields": [
                        FormField(
                            child.fields[n],
                            line.get(n),
                            readonly=n not in writable,
                            error=errors.get(f"{related}[{index}].{n}")
                            or errors.get(f"{related}.{index}.{n}"),
                        )
                        for n in names
                    ],
                }
            )
        grids.append(
            {
                "meta": child,
                "related": related,
                "label": pick(child.definition.document.get("x-label-plural"))
                or pick(child.definition.label, child_name),
                "blank": [  # a new line starts from the defaults, as a new record does
                    FormField(child.fields[n], _default(child, n), readonly=n not in writable)
                    for n in names
                ],
                "rows": rows,
                "titles": lookup_titles(service, child, lines, names),
                "can_create": service.access.allowed(child, Operation.CREATE),
                "error": errors.get(related),
            }
        )
    return grids


def _default(meta: ObjectMeta, name: str) -> Any:
    spec = meta.fields[name]
    return spec.default if spec.has_default else None


def _lines_from_form(
    service: RecordService, meta: ObjectMeta, form: MultiDict[str, str]
) -> dict[str, list[dict[str, Any]]]:
    """The line grids' rows: ``<related>-<n>-<field>`` inputs, with ``-id``/``-version``."""
    result: dict[str, list[dict[str, Any]]] = {}
    for child_name, spec in meta.children:
        child = registry().get(child_name)
        related = str(spec.related_name)
        names = editable_fields(child, service.access.hidden(child), skip=spec.name)
        writable = _writable(service, child)
        indexes = sorted(
            {
                int(k.split("-")[1])
                for k in form
                if k.startswith(f"{related}-") and k.split("-")[1].isdigit()
            }
        )
        lines = []
        for index in indexes:
            prefix = f"{related}-{index}-"
            if form.get(prefix + "removed") == "1" and not form.get(prefix + "id"):
                continue
            line = parse_record(child, form, names, writable, prefix=prefix)
            if form.get(prefix + "id", "").isdigit():
                line["id"] = int(form[prefix + "id"])
                version = form.get(prefix + "version", "")
                line["version"] = int(version) if version.isdigit() else version
                line["_removed"] = form.get(prefix + "removed") == "1"
            elif all(v in (None, False) or v == _default(child, k) for k, v in line.items()):
                continue  # a new row left as it was added
            line["_index"] = index  # its inputs' number, for the live preview
            lines.append(line)
        result[related] = lines
    return result


def _form_message(exc: TrellisError) -> str:
    """The message above a refused form: a record's problems are told next to its fields."""
    if isinstance(exc, ValidationFailed | DuplicateValue) and exc.details:
        return _("Some values need correcting: see the marked fields.")
    return told(exc.message)


def _error_map(exc: TrellisError) -> dict[str, str]:
    """The service's problems by field, in the user's language where the message is known."""
    errors: dict[str, str] = {}
    for detail in exc.details:
        field = str(detail.get("field", ""))
        errors.setdefault(field, told(detail.get("message")))
    return errors


@bp.route("/o/<object_name>/new", methods=["GET", "POST"])
@signed_in
def record_new(object_name: str) -> Any:
    """``/o/<object>/new``: the create form (``?v.<field>=`` prefills a value), saved on POST.

    A refusal (400, 409, 422) shows the form again as typed, with 422 when it names fields;
    403 without the create right.
    """
    meta = _meta(object_name)
    service = records()
    service.access.require(meta, Operation.CREATE)
    values: dict[str, Any] = {n: s.default for n, s in meta.fields.items() if s.has_default}
    values.update({k[2:]: v for k, v in request.args.items() if k.startswith("v.")})
    errors: dict[str, str] = {}
    message = None
    status = 200
    if request.method == "POST":
        names = editable_fields(meta, service.access.hidden(meta))
        payload = parse_record(meta, request.form, names, _writable(service, meta))
        lines = _lines_from_form(service, meta, request.form)
        for related, items in lines.items():
            if items:
                payload[related] = [
                    {k: v for k, v in i.items() if not k.startswith("_")} for i in items
                ]
        try:
            created = service.create(object_name, payload)
            _attach_uploads(service, meta, created["id"])
        except TrellisError as exc:
            if exc.status not in (409, 422, 400, 413):
                raise
            rollback()  # nothing of a refused create stays in the page's transaction
            errors, message = _error_map(exc), _form_message(exc)
            status = exc.status
            values = {**values, **payload}
        else:
            commit()
            flash(_("Saved."), "info")
            return redirect(
                url_for("ui.record_detail", object_name=object_name, record_id=created["id"])
            )
    return _render_form(service, meta, None, values, errors, message, status=status)


def _render_form(
    service: RecordService,
    meta: ObjectMeta,
    record_id: int | None,
    values: dict[str, Any],
    errors: dict[str, str],
    message: str | None,
    status: int = 200,
    stale: dict[str, Any] | None = None,
) -> Any:
    titles = lookup_titles(service, meta, [values])
    page = render_template(
        "ui/records/form.html",
        meta=meta,
        record_id=record_id,
        values=values,
        sections=_form_sections(service, meta, values, errors),
        grids=_grids(service, meta, values, errors),
        titles=titles,
        errors=errors,
        message=message,
        stale=stale,
        display=display,
        compute_url=_compute_url(meta, record_id),
        awaiting=record_id is not None and edit_blocked(meta, record_id),
    )
    return page, status


def _compute_url(meta: ObjectMeta, record_id: int | None) -> str | None:
    """Where the form asks for its live values and field states (none: nothing to ask)."""
    if not computed.live(registry(), meta):
        return None
    if record_id is None:
        return url_for("ui.record_compute", object_name=meta.name)
    return url_for("ui.record_compute", object_name=meta.name, record_id=record_id)


@bp.route("/o/<object_name>/<int:record_id>/edit", methods=["GET", "POST"])
@signed_in
def record_edit(object_name: str, record_id: int) -> Any:
    """``/o/<object>/<id>/edit``: the edit form, saved from the ``version`` it was read at.

    A stale save shows what changed meanwhile (409); other refusals show the form again as
    typed (422); 403 without the update right.
    """
    meta = _meta(object_name)
    service = records()
    service.access.require(meta, Operation.UPDATE)
    current = service.get(object_name, record_id)
    if request.method == "GET":
        return _render_form(service, meta, record_id, current, {}, None)
    names = editable_fields(meta, service.access.hidden(meta))
    payload = parse_record(meta, request.form, names, _writable(service, meta))
    lines = _lines_from_form(service, meta, request.form)
    version = request.form.get("version", "")
    payload["version"] = int(version) if version.isdigit() else version
    try:
        _save(service, meta, record_id, payload, lines)
        _attach_uploads(service, meta, record_id)
    except StaleRecord as exc:
        fresh = service.get(object_name, record_id)
        stale = _what_changed(meta, fresh, payload)
        values = {**current, **{k: v for k, v in payload.items() if k != "version"}}
        return _render_form(
            service, meta, record_id, values, {}, told(exc.message), status=409, stale=stale
        )
    except TrellisError as exc:
        if exc.status not in (409, 422, 400, 413):
            raise
        rollback()
        values = {**current, **payload}
        for related, items in lines.items():
            values[related] = items
        return _render_form(
            service, meta, record_id, values, _error_map(exc), _form_message(exc), 422
        )
    commit()
    flash(_("Saved."), "info")
    return redirect(url_for("ui.record_detail", object_name=object_name, record_id=record_id))


def _save(
    service: RecordService,
    meta: ObjectMeta,
    record_id: int,
    payload: dict[str, Any],
    lines: dict[str, list[dict[str, Any]]],
) -> None:
    """The parent and its lines in one transaction: any refusal undoes all of it."""
    service.update(meta.name, record_id, payload)
    for child_name, spec in meta.children:
        related = str(spec.related_name)
        for index, line in enumerate(lines.get(related, [])):
            body = {k: v for k, v in line.items() if not k.startswith("_") and k != "id"}
            try:
                if "id" not in line:
                    service.create(child_name, {**body, spec.name: record_id})
                elif line.get("_removed"):
                    if not isinstance(line["version"], int):
                        raise ValidationFailed(
                            "the line's version is missing",
                            [{"field": "version", "message": "is required (a whole number)"}],
                        )
                    service.delete(child_name, line["id"], expected_version=line["version"])
                else:
                    service.update(child_name, line["id"], body)
            except TrellisError as exc:
                exc.details = [
                    {**d, "field": f"{related}[{index}].{d.get('field', '')}"} for d in exc.details
                ] or [{"field": related, "message": exc.message}]
                raise


def _attach_uploads(service: RecordService, meta: ObjectMeta, record_id: int) -> None:
    """The files the form sent for its file and image fields, each through the service's
    checks (rights, size, type by content); an empty file input changes nothing."""
    for name, spec in meta.fields.items():
        upload = request.files.get(name) if spec.type.name in attachments.FILE_TYPES else None
        if upload is None or not upload.filename:
            continue
        service.attach_file(
            meta.name,
            record_id,
            name,
            upload.read(),
            upload.filename,
            store=files.current_store(),
            cap=files.upload_cap(),
        )


@bp.get("/files/<int:file_id>")
@signed_in
def record_file(file_id: int) -> Any:
    """``/files/<id>``: a file a record's field holds now, to a user who may read the
    record and the field (else the 404 / 403 page); images inline, the rest as downloads."""
    stored = attachments.stored_files(page_session(), {file_id}).get(file_id)
    if stored is None:
        raise NotFound(_("This file does not exist (any more)."))
    current = records().file_of(stored.object_name, stored.record_id, stored.field_name)
    if current.id != file_id:
        raise NotFound(_("This file does not exist (any more)."))
    return files.send_stored(current, files.current_store())


def _what_changed(meta: ObjectMeta, fresh: dict[str, Any], mine: dict[str, Any]) -> dict[str, Any]:
    """For a 409: the stored values that differ from what the user sent."""
    changed = []
    for name, value in mine.items():
        if name in meta.fields and fresh.get(name) != value:
            spec = meta.fields[name]
            changed.append(
                (pick(spec.label, name), display(spec, fresh.get(name)), display(spec, value))
            )
    return {"version": fresh.get("version"), "changes": changed}


@bp.post("/o/<object_name>/<int:record_id>/delete")
@signed_in
def record_delete(object_name: str, record_id: int) -> Any:
    """``POST /o/<object>/<id>/delete``: soft-delete the record, refused as stale (409) when
    it changed since the form's ``version``; back to the list, from where it can be restored.
    """
    _meta(object_name)
    version = request.form.get("version", "")
    records().delete(object_name, record_id, int(version) if version.isdigit() else None)
    commit()
    flash(_("Deleted. It can be restored from the recycle bin."), "info")
    return redirect(url_for("ui.record_list", object_name=object_name))


@bp.post("/o/<object_name>/<int:record_id>/restore")
@signed_in
def record_restore(object_name: str, record_id: int) -> Any:
    """``POST /o/<object>/<id>/restore``: bring a soft-deleted record back and show it;
    the service's refusal (403, 404, 409) goes to the error page.
    """
    _meta(object_name)
    records().restore(object_name, record_id)
    commit()
    flash(_("Restored."), "info")
    return redirect(url_for("ui.record_detail", object_name=object_name, record_id=record_id))
