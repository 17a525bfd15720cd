"""Version history of object definitions and roles, administrators only: the versions
(who, when, summary, which version a restore brought back), each version's stored diff
told as sentences in the reader's language, a version's whole document, and restoring a
version through ``ObjectService.restore`` / ``RoleService.restore`` (a new version equal
to the old one; a refusal is shown on the history page with the service's problems).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from trellis.admin_ui import bp
from trellis.admin_ui.context import (
    REFUSALS,
    caller,
    commit,
    objects,
    page_session,
    registry,
    roles,
    rollback,
)
from trellis.admin_ui.designer import type_label
from trellis.admin_ui.i18n import pick
from trellis.admin_ui.pages import OBJECT_TABS, ROLE_TABS, admin_only
from trellis.admin_ui.views import designer_layout
from trellis.exceptions import NotFound, TrellisError
from trellis.platform.runtime.identity import UserService

if TYPE_CHECKING:
    from trellis.platform.runtime.models import DocumentVersion
    from trellis.platform.runtime.registry import ObjectMeta
    from trellis.platform.runtime.versioning import DocumentStore

del designer_layout  # imported first so that its Layout tab comes before History
OBJECT_TABS.append(("ui.object_history", lambda: _("History")))
ROLE_TABS.append(("ui.role_history", lambda: _("History")))

VALUE_CHARS = 300  # a changed value longer than this is cut (the version page has it whole)

FIELD_KEYWORDS = {
    "x-label": _l("label"),
    "x-help": _l("help text"),
    "x-type": _l("type"),
    "type": _l("JSON type"),
    "title": _l("title"),
    "description": _l("description"),
    "default": _l("default value"),
    "readOnly": _l("read-only"),
    "x-unique": _l("unique"),
    "x-indexed": _l("indexed"),
    "x-searchable": _l("searchable"),
    "maxLength": _l("maximum length"),
    "minLength": _l("minimum length"),
    "pattern": _l("pattern"),
    "format": _l("format"),
    "enum": _l("values"),
    "x-enum-labels": _l("value labels"),
    "items": _l("items"),
    "minItems": _l("minimum number of values"),
    "maxItems": _l("maximum number of values"),
    "uniqueItems": _l("values are unique"),
    "minimum": _l("minimum"),
    "maximum": _l("maximum"),
    "x-scale": _l("decimal places"),
    "x-target": _l("target object"),
    "x-on-delete": _l("when the target is deleted"),
    "x-related-name": _l("name of the lines"),
    "x-format": _l("number format"),
    "x-max-bytes": _l("largest file"),
    "x-accept": _l("accepted file types"),
}
OBJECT_KEYWORDS = {
    "x-label": _l("Object label"),
    "x-label-plural": _l("Plural label"),
    "x-description": _l("Description"),
    "x-title-field": _l("Title field"),
    "x-hierarchy-field": _l("Hierarchy field"),
    "x-scope-field": _l("Partner field"),
    "x-indexes": _l("Composite indexes"),
    "x-layout": _l("Form layout"),
    "x-list-columns": _l("List columns"),
    "title": _l("Title"),
    "description": _l("Description"),
}
LABEL_KEYWORDS = frozenset({"x-label", "x-label-plural", "x-description", "x-help"})
OPERATIONS = {
    "read": _l("read"),
    "create": _l("create"),
    "update": _l("update"),
    "delete": _l("delete"),
    "export": _l("export"),
}
SCOPES = {
    "none": _l("none"),
    "own": _l("own records"),
    "hierarchy": _l("own partner and below"),
    "all": _l("all records"),
}
FIELD_ACCESS = {"hidden": _l("hidden"), "read": _l("read only"), "write": _l("read and write")}


@dataclass(frozen=True)
class Sentence:
    """One line of a readable diff: ``text``, then ``before`` → ``after`` when ``pair``,
    else ``after`` alone (if any), then ``items`` as a list."""

    text: str
    before: str | None = None
    after: str | None = None
    pair: bool = False
    items: tuple[str, ...] = ()  # a list under the sentence (what a new document holds)


# --- telling values ------------------------------------------------------------------------


def _colon(name: Any, value: Any) -> str:
    """``name: value``, punctuated as the reader's language does."""
    return _("%(name)s: %(value)s", name=name, value=value)


def _short(text: str) -> str:
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"


def _json(value: Any) -> str:
    return _short(json.dumps(value, ensure_ascii=False, sort_keys=True))


def _plain(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return _("Yes") if value else _("No")
    if isinstance(value, str):
        return _short(value)
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return _short(", ".join(str(v) for v in value))
    return _json(value)


def _label_pair(before: Any, after: Any) -> tuple[str, str]:
    """Two labels in the reader's language; where that is unchanged, the languages that did."""
    old, new = pick(before, "—"), pick(after, "—")
    if old != new or not isinstance(before, dict) or not isinstance(after, dict):
        return old, new
    changed = [lang for lang in {**before, **after} if before.get(lang) != after.get(lang)]
    return (
        "; ".join(_colon(lang, before.get(lang, "—")) for lang in changed),
        "; ".join(_colon(lang, after.get(lang, "—")) for lang in changed),
    )


def _field_label(document: dict[str, Any] | None, name: str) -> str:
    prop = ((document or {}).get("properties") or {}).get(name)
    return pick(prop.get("x-label"), name) if isinstance(prop, dict) else name


def _field_labels(document: dict[str, Any] | None, names: Any) -> str:
    if not isinstance(names, list):
        return _plain(names)
    return _short(", ".join(_field_label(document, str(n)) for n in names))


def _object_label(name: str) -> str:
    meta = registry().find(name)
    return pick(meta.definition.label, name) if meta else name


def _described_field(document: dict[str, Any] | None, name: str) -> str:
    """``Amount (amount, Currency)``: label, name and type."""
    prop = ((document or {}).get("properties") or {}).get(name) or {}
    label = _field_label(document, name)
    kind = type_label(str(prop["x-type"])) if prop.get("x-type") else None
    inside = ", ".join(p for p in (name if label != name else None, kind) if p)
    return f"{label} ({inside})" if inside else label


# --- object definitions --------------------------------------------------------------------


def object_sentences(
    diff: dict[str, Any] | None, document: dict[str, Any], previous: dict[str, Any] | None
) -> list[Sentence]:
    """An object definition's stored diff (``diff_definitions``), as sentences."""
    if not diff:
        return []
    if previous is None:
        names = list(document.get("properties", {}))
        described = tuple(_described_field(document, n) for n in names)
        return [Sentence(_("Created with these fields"), items=described)]
    sentences = []
    for change in diff.get("fields", []):
        name = str(change.get("field"))
        kind = change.get("change")
        if kind == "added":
            sentences.append(Sentence(_("Field added"), after=_described_field(document, name)))
        elif kind == "removed":
            sentences.append(Sentence(_("Field removed"), after=_described_field(previous, name)))
        else:
            sentences.extend(_field_changes(name, change.get("keywords", {}), document, previous))
    for keyword, values in diff.get("object", {}).items():
        before, after = _object_values(keyword, values, document, previous)
        label = OBJECT_KEYWORDS.get(keyword)
        sentences.append(Sentence(str(label) if label else keyword, before, after, pair=True))
    return sentences


def _field_changes(
    name: str,
    keywords: dict[str, Any],
    document: dict[str, Any],
    previous: dict[str, Any],
) -> list[Sentence]:
    label = _field_label(document, name)
    sentences = []
    for keyword, values in keywords.items():
        before, after = values.get("from"), values.get("to")
        if keyword == "required":
            text = (
                _("%(field)s is now required", field=label)
                if after
                else _("%(field)s is no longer required", field=label)
            )
            sentences.append(Sentence(text))
            continue
        if keyword in LABEL_KEYWORDS:
            shown = _label_pair(before, after)
        elif keyword == "x-type":
            shown = (type_label(str(before)), type_label(str(after)))
        elif keyword == "x-target":
            shown = (_object_label(str(before)), _object_label(str(after)))
        else:
            shown = (_plain(before), _plain(after))
        what = FIELD_KEYWORDS.get(keyword)
        text = _("%(field)s — %(what)s", field=label, what=str(what) if what else keyword)
        sentences.append(Sentence(text, shown[0], shown[1], pair=True))
    return sentences


def _object_values(
    keyword: str, values: dict[str, Any], document: dict[str, Any], previous: dict[str, Any]
) -> tuple[str, str]:
    before, after = values.get("from"), values.get("to")
    if keyword in LABEL_KEYWORDS:
        return _label_pair(before, after)
    if keyword in ("x-title-field", "x-hierarchy-field", "x-scope-field"):
        old = _field_label(previous, before) if before else "—"
        return old, _field_label(document, after) if after else "—"
    if keyword == "x-list-columns":
        return _field_labels(previous, before), _field_labels(document, after)
    if keyword == "x-layout":
        return _layout_text(previous, before), _layout_text(document, after)
    if keyword == "x-indexes" and isinstance(before or after, list):
        return _indexes_text(previous, before), _indexes_text(document, after)
    return _plain(before), _plain(after)


def _layout_text(document: dict[str, Any] | None, layout: Any) -> str:
    if not isinstance(layout, dict):
        return _plain(layout)
    parts = []
    for section in layout.get("sections", []):
        title = pick(section.get("label")) or _("Untitled section")
        parts.append(_colon(title, _field_labels(document, section.get("fields", []))))
    return _short(" · ".join(parts))


def _indexes_text(document: dict[str, Any] | None, indexes: Any) -> str:
    if not isinstance(indexes, list):
        return "—"
    return _short("; ".join(_field_labels(document, columns) for columns in indexes))


# --- roles -----------------------------------------------------------------------------------


def role_sentences(
    diff: dict[str, Any] | None, document: dict[str, Any], previous: dict[str, Any] | None
) -> list[Sentence]:
    """A role's stored diff (``diff_documents``, by JSON pointer), as sentences."""
    if previous is None:
        rights = document.get("objects") or {}
        items = tuple(_colon(_object_label(n), _grant(g, n)) for n, g in rights.items())
        return [Sentence(_("Created with these rights"), items=items)]
    if not diff:
        return []
    return [_role_change(change) for change in diff.get("changes", [])]


def _unescape(part: str) -> str:
    return part.replace("~1", "/").replace("~0", "~")


def _role_change(change: dict[str, Any]) -> Sentence:
    parts = [_unescape(p) for p in str(change.get("pointer", "")).split("/")[1:]]
    before, after = change.get("from"), change.get("to")
    kind = change.get("change")
    if parts and parts[0] in ("x-label", "x-description"):
        text = str(_("Label") if parts[0] == "x-label" else _("Description"))
        if len(parts) > 1:
            return Sentence(f"{text} ({parts[1]})", _plain(before), _plain(after), pair=True)
        return Sentence(text, *_label_pair(before, after), pair=True)
    if len(parts) >= 2 and parts[0] == "objects":
        label = _object_label(parts[1])
        meta = registry().find(parts[1])
        if len(parts) == 2:
            if kind == "added":
                return Sentence(
                    _("Rights on %(object)s added", object=label), after=_grant(after, parts[1])
                )
            if kind == "removed":
                text = _("Rights on %(object)s removed", object=label)
                return Sentence(text, after=_grant(before, parts[1]))
        elif len(parts) == 3 and parts[2] in OPERATIONS:
            text = _("%(object)s — %(operation)s", object=label, operation=OPERATIONS[parts[2]])
            return Sentence(text, _scope(before), _scope(after), pair=True)
        elif len(parts) == 3 and parts[2] == "fields":
            text = _("%(object)s — field access", object=label)
            return Sentence(text, _field_access(meta, before), _field_access(meta, after), True)
        elif len(parts) == 4 and parts[2] == "fields":
            field = _spec_label(meta, parts[3])
            text = _("%(object)s · %(field)s — field access", object=label, field=field)
            return Sentence(text, _access(before), _access(after), pair=True)
    return Sentence(str(change.get("pointer")), _plain(before), _plain(after), pair=True)


def _scope(value: Any) -> str:
    found = SCOPES.get(str(value)) if value is not None else None
    return str(found) if found else _plain(value)


def _access(value: Any) -> str:
    found = FIELD_ACCESS.get(str(value)) if value is not None else None
    return str(found) if found else _plain(value)


def _spec_label(meta: ObjectMeta | None, name: str) -> str:
    return pick(meta.fields[name].label, name) if meta is not None and name in meta.fields else name


def _field_access(meta: ObjectMeta | None, fields: Any) -> str:
    if not isinstance(fields, dict):
        return _plain(fields)
    shown = []
    for name, access in fields.items():
        shown.append(f"{_spec_label(meta, name)} {_access(access)}")
    return _short(", ".join(shown)) or "—"


def _grant(grant: Any, object_name: str) -> str:
    """One object's rights: ``read all records, update own records, fields: …``."""
    if not isinstance(grant, dict):
        return _plain(grant)
    parts = [_colon(OPERATIONS[op], _scope(grant[op])) for op in OPERATIONS if op in grant]
    if grant.get("fields"):
        meta = registry().find(object_name)
        parts.append(_("fields: %(fields)s", fields=_field_access(meta, grant["fields"])))
    return _short(", ".join(parts)) or "—"


# --- the pages -------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryKind:
    """What differs between the history pages of objects and of roles."""

    kind: str  # "object" | "role": the tabs, the endpoints' names
    service: Callable[[], DocumentStore[Any]]
    sentences: Callable[[dict[str, Any] | None, dict[str, Any], dict[str, Any] | None], list]
    heading: Callable[[str, dict[str, Any]], str]
    back: Callable[[str], tuple[str, str] | None]  # (text, url) of the page it belongs to


def _object_heading(name: str, document: dict[str, Any]) -> str:
    return _("History of %(object)s", object=pick(document.get("x-label"), name))


def _role_heading(name: str, document: dict[str, Any]) -> str:
    return _("History of the role %(role)s", role=pick(document.get("x-label"), name))


OBJECT_HISTORY = HistoryKind(
    "object",
    objects,
    object_sentences,
    _object_heading,
    lambda name: (_("Back to the list"), url_for("ui.record_list", object_name=name)),
)
ROLE_HISTORY = HistoryKind("role", roles, role_sentences, _role_heading, lambda name: None)


def _utc(moment: dt.datetime) -> dt.datetime:
    """Stored times are UTC (SQLite hands them back without a zone)."""
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _entries(history: HistoryKind, rows: list[DocumentVersion]) -> list[dict[str, Any]]:
    """The versions, newest first, each with its author's name and its diff told."""
    users = UserService(page_session(), registry(), caller().user_id)
    names: dict[int, str] = {}
    entries = []
    for index, row in enumerate(rows):
        previous = rows[index + 1].document if index + 1 < len(rows) else None
        if row.author_id is not None and row.author_id not in names:
            try:
                user = users.get(row.author_id)
                names[row.author_id] = user.name or user.email
            except NotFound:
                names[row.author_id] = f"#{row.author_id}"
        entries.append(
            {
                "version": row.version,
                "author": names.get(row.author_id, _("system")) if row.author_id else _("system"),
                "when": _utc(row.created_at).strftime("%Y-%m-%d %H:%M UTC"),
                "iso": _utc(row.created_at).isoformat(),
                "summary": row.summary,
                "restored_from": row.restored_from,
                "current": index == 0,
                "sentences": history.sentences(row.diff, dict(row.document), previous),
                "document": row.document,
            }
        )
    return entries


def _history_page(
    history: HistoryKind, name: str, error: TrellisError | None = None, status: int = 200
) -> Any:
    rows = history.service().versions(name)  # NotFound: the app's 404 page
    page = render_template(
        "ui/setup/history.html",
        history=history,
        name=name,
        heading=history.heading(name, rows[0].document),
        back=history.back(name),
        entries=_entries(history, rows),
        error=error,
    )
    return page, status


def _version_page(history: HistoryKind, name: str, version: int) -> Any:
    rows = history.service().versions(name)
    entries = _entries(history, rows)
    entry = next((e for e in entries if e["version"] == version), None)
    if entry is None:
        raise NotFound(_("There is no version %(version)d.", version=version))
    return render_template(
        "ui/setup/version.html",
        history=history,
        name=name,
        heading=history.heading(name, rows[0].document),
        back=history.back(name),
        entry=entry,
        text=json.dumps(entry["document"], ensure_ascii=False, indent=2),
    )


def _restore(history: HistoryKind, name: str, version: int) -> Any:
    try:
        saved = history.service().restore(name, version)
    except TrellisError as exc:
        if exc.status not in REFUSALS:
            raise
        rollback()
        return _history_page(history, name, error=exc, status=exc.status)
    commit()
    flash(_("Version %(old)d restored as version %(new)d.", old=version, new=saved.version), "info")
    return redirect(url_for(f"ui.{history.kind}_history", name=name))


@bp.get("/setup/objects/<name>/history")
@admin_only
def object_history(name: str) -> Any:
    """``/setup/objects/<name>/history``: every version of the definition, newest first,
    with what changed (administrators only; 404 for an unknown object).
    """
    return _history_page(OBJECT_HISTORY, name)


@bp.get("/setup/objects/<name>/history/<int:version>")
@admin_only
def object_history_version(name: str, version: int) -> Any:
    """``/setup/objects/<name>/history/<n>``: one version's definition as JSON and its
    changes; 404 for an unknown object or version.
    """
    return _version_page(OBJECT_HISTORY, name, version)


@bp.post("/setup/objects/<name>/history/<int:version>/restore")
@admin_only
def object_history_restore(name: str, version: int) -> Any:
    """``POST /setup/objects/<name>/history/<n>/restore``: make version ``n`` current again,
    as a new version; a refusal (e.g. data that cannot take it) shows the history with it.
    """
    return _restore(OBJECT_HISTORY, name, version)


@bp.get("/setup/roles/<name>/history")
@admin_only
def role_history(name: str) -> Any:
    """``/setup/roles/<name>/history``: every version of the role, newest first, with what
    changed (administrators only; 404 for an unknown role).
    """
    return _history_page(ROLE_HISTORY, name)


@bp.get("/setup/roles/<name>/history/<int:version>")
@admin_only
def role_history_version(name: str, version: int) -> Any:
    """``/setup/roles/<name>/history/<n>``: one version's role document as JSON and its
    changes; 404 for an unknown role or version.
    """
    return _version_page(ROLE_HISTORY, name, version)


@bp.post("/setup/roles/<name>/history/<int:version>/restore")
@admin_only
def role_history_restore(name: str, version: int) -> Any:
    """``POST /setup/roles/<name>/history/<n>/restore``: make version ``n`` current again, as
    a new version; a refusal shows the history with it, with its status.
    """
    return _restore(ROLE_HISTORY, name, version)
