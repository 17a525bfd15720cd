"""Saved list views: an object list's columns, filters and sort, kept under a label.

A view is private to the user who saved it, or shared with a role: every holder of the
role sees it in their list of views. Sharing is an administrator's act — a shared view
appears for many people, as configuration does — so only administrators create, change
or delete shared views; a user changes and deletes their own private views, and an
administrator anyone's. Administrators see every shared view (to manage them), other
users their own and those shared with a role they hold.

A view's ``definition`` speaks the list page's own query parameters, so a view is
exactly a bookmark of the page: ``columns`` (field names, in order), ``filters``
(``f.<field>``, ``f.<field>.min`` / ``.max`` for ranges, ``q`` for the quick search) and
``sort`` (``-order_date,number``). It is checked against the object's current fields as
the caller sees them when saved; when applied, whatever no longer exists or is hidden
from the user is left out, so an old view never breaks the page.

Pure runtime: no Flask. The API (``api/views.py``) and the list page call this service.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from trellis.exceptions import (
    DuplicateValue,
    Forbidden,
    InvalidQuery,
    NotFound,
    StaleRecord,
    ValidationFailed,
)
from trellis.platform.messages import N_
from trellis.platform.metadata.permissions import Operation
from trellis.platform.runtime import audit
from trellis.platform.runtime.access import Access
from trellis.platform.runtime.models import ListView, utcnow
from trellis.platform.runtime.query import parse_filter, parse_sort

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from trellis.platform.metadata.fieldtypes import FieldSpec
    from trellis.platform.runtime.identity import Caller
    from trellis.platform.runtime.registry import MetaRegistry, ObjectMeta

# Columns a list may show besides the object's fields.
SYSTEM_COLUMNS = ("id", "created_at", "updated_at")
RANGE_WIDGETS = frozenset({"number", "currency", "percent", "date", "datetime"})
MAX_LABEL = 120
MAX_COLUMNS = 50
MAX_SORT = 200
MAX_SEARCH = 200
MAX_FILTERS = 50
DEFINITION_KEYS = ("columns", "filters", "sort")

Params = Mapping[str, list[str]]


# --- the list page's filter parameters ---------------------------------------------------------


def filter_kind(spec: FieldSpec) -> str | None:
    """How the list page filters a field: ``range``, ``choice``, ``checkbox``, ``lookup``,
    ``text``, or None when it cannot."""
    widget = spec.value_type.widget
    if widget in RANGE_WIDGETS:
        return "range"
    if widget in ("select", "multiselect"):
        return "choice"
    if widget in ("checkbox", "lookup"):
        return widget
    if spec.type.operators & {"contains"}:
        return "text"
    return None


def filter_clauses(meta: ObjectMeta, params: Params, hidden: frozenset[str]) -> list[list[Any]]:
    """The list page's filter parameters as API filter clauses (``[field, op, value]``)."""
    clauses: list[list[Any]] = []
    for name, spec in meta.fields.items():
        if name not in hidden:
            clauses.extend(_field_clauses(spec, params))
    return clauses


def _field_clauses(spec: FieldSpec, params: Params) -> list[list[Any]]:
    key, name, kind = f"f.{spec.name}", spec.name, filter_kind(spec)

    def first(suffix: str = "") -> str:
        return (params.get(key + suffix) or [""])[0].strip()

    if kind == "range":
        return [
            [name, op, _typed(spec.value_type.name, first(suffix))]
            for suffix, op in ((".min", ">="), (".max", "<="))
            if first(suffix)
        ]
    if kind == "choice":
        chosen = [v for v in params.get(key) or [] if v]
        if not chosen:
            return []
        return (
            [[name, "in", chosen]]
            if spec.type.widget == "select"
            else [[name, "contains", chosen[0]]]
        )
    text = first()
    if kind == "checkbox":
        return [[name, "=", text == "true"]] if text in ("true", "false") else []
    if kind == "lookup":
        return [[name, "=", int(text) if text.isdigit() else text]] if text else []
    if kind == "text":
        return [[name, "contains", text]] if text else []
    return []


def _typed(kind: str, text: str) -> Any:
    if kind in ("integer", "number", "currency", "percent"):
        try:
            number = float(text.replace(",", ""))
        except ValueError:
            return text  # the query parser explains
        return int(number) if number.is_integer() else number
    return text


def search_text(params: Params) -> str:
    """The quick search's text (``q``), cut to what the page searches for."""
    return (params.get("q") or [""])[0].strip()[:MAX_SEARCH]


# --- checking a definition ---------------------------------------------------------------------


def check_definition(meta: ObjectMeta, definition: Any, hidden: frozenset[str]) -> dict[str, Any]:
    """``definition`` checked against the object's fields the caller sees, normalised:
    ``{"columns": [...], "filters": {key: text or [texts]}, "sort": text or None}``.

    Raises ``ValidationFailed`` naming every problem (``definition.columns[1]``, …).
    """
    if not isinstance(definition, Mapping):
        raise ValidationFailed(
            N_("the view's definition must be an object"),
            [{"field": "definition", "message": N_("must be an object")}],
        )
    problems: list[dict[str, str]] = [
        {"field": f"definition.{key}", "message": N_("is not part of a view's definition")}
        for key in definition
        if key not in DEFINITION_KEYS
    ]
    columns = _checked_columns(meta, definition.get("columns"), hidden, problems)
    filters = _checked_filters(meta, definition.get("filters"), hidden, problems)
    sort = _checked_sort(meta, definition.get("sort"), hidden, problems)
    if problems:
        names = ", ".join(p["field"] for p in problems)
        raise ValidationFailed(
            N_("the view's definition was refused: %(fields)s", fields=names), problems
        )
    return {"columns": columns, "filters": filters, "sort": sort}


def _shown(value: Any) -> str:
    """A value as a refusal quotes it: its repr, never more than 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def _column_shown(meta: ObjectMeta, name: str, hidden: frozenset[str]) -> bool:
    return (name in meta.fields or name in SYSTEM_COLUMNS) and name not in hidden


def _checked_columns(
    meta: ObjectMeta, columns: Any, hidden: frozenset[str], problems: list[dict[str, str]]
) -> list[str]:
    if columns is None:
        return []
    if not isinstance(columns, list) or len(columns) > MAX_COLUMNS:
        problems.append(
            {
                "field": "definition.columns",
                "message": N_("must be a list of at most %(limit)s field names", limit=MAX_COLUMNS),
            }
        )
        return []
    seen: list[str] = []
    for index, name in enumerate(columns):
        where = f"definition.columns[{index}]"
        if not isinstance(name, str) or not _column_shown(meta, name, hidden):
            problems.append(
                {
                    "field": where,
                    "message": N_(
                        "%(name)s is not a field of %(object)s", name=_shown(name), object=meta.name
                    ),
                }
            )
        elif name in seen:
            problems.append(
                {"field": where, "message": N_("%(name)s is listed twice", name=_shown(name))}
            )
        else:
            seen.append(name)
    return seen


def _checked_sort(
    meta: ObjectMeta, sort: Any, hidden: frozenset[str], problems: list[dict[str, str]]
) -> str | None:
    if sort is None or sort == "":
        return None
    if not isinstance(sort, str) or len(sort) > MAX_SORT:
        problems.append(
            {
                "field": "definition.sort",
                "message": N_("must be text of at most %(limit)s characters", limit=MAX_SORT),
            }
        )
        return None
    try:
        parse_sort(meta, sort, hidden)
    except InvalidQuery as exc:
        fields = ", ".join(str(d["field"]) for d in exc.details)
        problems.append(
            {
                "field": "definition.sort",
                "message": N_("unknown or unsortable field(s): %(fields)s", fields=fields),
            }
        )
        return None
    return sort


def _checked_filters(
    meta: ObjectMeta, filters: Any, hidden: frozenset[str], problems: list[dict[str, str]]
) -> dict[str, Any]:
    if filters is None:
        return {}
    if not isinstance(filters, Mapping) or len(filters) > MAX_FILTERS:
        problems.append(
            {
                "field": "definition.filters",
                "message": N_(
                    "must be an object of at most %(limit)s list-page parameters",
                    limit=MAX_FILTERS,
                ),
            }
        )
        return {}
    checked: dict[str, Any] = {}
    for key, value in filters.items():
        try:
            normalised = filter_value(meta, str(key), value, hidden)
        except ValueError as exc:
            problems.append({"field": f"definition.filters.{key}", "message": exc.args[0]})
            continue
        if normalised not in ("", []):
            checked[str(key)] = normalised
    return checked


def filter_value(meta: ObjectMeta, key: str, value: Any, hidden: frozenset[str]) -> Any:
    """One filter parameter of a view, checked (``ValueError`` says what is wrong) and
    normalised: a list of texts for a picklist, one text otherwise ("" when empty)."""
    texts = _texts(value)
    if key == "q":
        text = _single(texts).strip()
        if "\x00" in text:
            raise ValueError(N_("text cannot contain NUL characters"))
        return text[:MAX_SEARCH]
    name, _, suffix = key.removeprefix("f.").partition(".")
    spec = meta.fields.get(name) if key.startswith("f.") and name not in hidden else None
    kind = filter_kind(spec) if spec is not None else None
    if spec is None or kind is None:
        raise ValueError(N_("is not a filter of this list (f.<field>, f.<field>.min/.max or q)"))
    if kind == "range" and suffix not in ("min", "max"):
        raise ValueError(
            N_(
                "the filter of %(name)s is a range: f.%(field)s.min or f.%(field)s.max",
                name=repr(name),
                field=name,
            )
        )
    if kind != "range" and suffix:
        raise ValueError(
            N_(
                "the filter of %(name)s takes no .%(suffix)s",
                name=repr(name),
                suffix=suffix[:40],
            )
        )
    if kind == "choice":
        allowed = spec.schema.get("enum") or spec.schema.get("items", {}).get("enum") or []
        unknown = [t for t in texts if t and t not in allowed]
        if unknown:
            raise ValueError(
                N_(
                    "%(values)s is not a value of %(name)s",
                    values=", ".join(map(_shown, unknown[:5]))
                    + (", …" if len(unknown) > 5 else ""),
                    name=repr(name),
                )
            )
        return [t for t in texts if t]
    text = _single(texts).strip()
    if kind == "checkbox" and text not in ("", "true", "false"):
        raise ValueError(N_("takes true or false"))
    if kind == "lookup" and text and not text.isdigit():
        raise ValueError(N_("takes a record id"))
    if text:
        clauses = _field_clauses(spec, {key: [text]})
        try:
            parse_filter(meta, json.dumps(clauses), hidden)
        except InvalidQuery as exc:
            told = [d["message"] for d in exc.details]
            raise ValueError(
                told[0] if len(told) == 1 else "; ".join(map(str, told)) or exc.message
            ) from None
    return text


def _texts(value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) for v in values):
        raise ValueError(N_("takes text or a list of texts"))
    return values


def _single(texts: list[str]) -> str:
    if len(texts) > 1:
        raise ValueError(N_("takes one value"))
    return texts[0] if texts else ""


# --- a view and the list page's parameters ------------------------------------------------------


def definition_from_params(params: Params) -> dict[str, Any]:
    """The list page's current parameters as a view's definition (to be checked)."""
    columns = [c for value in params.get("columns") or [] for c in value.split(",") if c]
    filters: dict[str, Any] = {}
    for key, values in params.items():
        if key == "q" or key.startswith("f."):
            shown = [v for v in values if v.strip()]
            if shown:
                filters[key] = shown[0] if len(shown) == 1 else shown
    sort = (params.get("sort") or [""])[0]
    return {"columns": columns, "filters": filters, "sort": sort or None}


def view_params(
    meta: ObjectMeta, definition: dict[str, Any], hidden: frozenset[str]
) -> dict[str, list[str]]:
    """A stored view as list-page query parameters, leaving out what the object or the
    user's rights no longer allow (a removed field, a column now hidden, a sort that no
    longer applies): an old view narrows or loses a part, it never breaks the page."""
    params: dict[str, list[str]] = {}
    columns = [c for c in definition.get("columns") or [] if _column_shown(meta, c, hidden)]
    if columns:
        params["columns"] = [",".join(columns)]
    for key, value in (definition.get("filters") or {}).items():
        try:
            normalised = filter_value(meta, key, value, hidden)
        except ValueError:
            continue
        if normalised not in ("", []):
            params[key] = normalised if isinstance(normalised, list) else [normalised]
    sort = [
        part for part in str(definition.get("sort") or "").split(",") if _sorts(meta, part, hidden)
    ]
    if sort:
        params["sort"] = [",".join(sort)]
    return params


def _sorts(meta: ObjectMeta, part: str, hidden: frozenset[str]) -> bool:
    try:
        parse_sort(meta, part, hidden)
    except InvalidQuery:
        return False
    return bool(part.strip())


def _stale(view: ListView) -> StaleRecord:
    return StaleRecord(
        N_(
            "list view %(id)s was changed by someone else (it is at version %(version)s)",
            id=view.id,
            version=view.version,
        ),
        [
            {
                "field": "version",
                "message": N_("the current version is %(version)s", version=view.version),
            }
        ],
    )


# --- the service -------------------------------------------------------------------------------


class ListViewService:
    """Saved list views, as ``caller`` may see and change them."""

    def __init__(
        self,
        session: Session,
        registry: MetaRegistry,
        caller: Caller,
        audit_context: dict[str, Any] | None = None,
    ) -> None:
        self.session = session
        self.registry = registry
        self.caller = caller
        self.access = Access(registry, caller, session)
        self.audit_context = audit_context or {}

    def _readable(self, object_name: str) -> ObjectMeta:
        meta = self.registry.get(object_name)  # unknown object: 404
        self.access.require(meta, Operation.READ)
        return meta

    def _visible(self) -> sa.ColumnElement[bool]:
        mine = ListView.owner_id == self.caller.user_id
        if self.caller.is_admin:
            return sa.or_(mine, ListView.shared_with_role.is_not(None))
        if not self.caller.roles:
            return mine
        return sa.or_(mine, ListView.shared_with_role.in_(self.caller.roles))

    def visible(self, object_name: str | None = None) -> list[ListView]:
        """The caller's views and those shared with them, for one object or every object
        they may read: theirs first, then shared ones, each by label. One query."""
        statement = sa.select(ListView).where(self._visible())
        if object_name is not None:
            self._readable(object_name)
            statement = statement.where(ListView.object_name == object_name)
        else:
            readable = [
                m.name for m in self.registry.all() if self.access.allowed(m, Operation.READ)
            ]
            statement = statement.where(ListView.object_name.in_(readable))
        statement = statement.order_by(
            ListView.object_name,
            ListView.shared_with_role.is_not(None),
            ListView.label,
            ListView.id,
        )
        return list(self.session.scalars(statement))

    def applicable(self, object_name: str, view_id: int) -> ListView | None:
        """The view ``view_id`` of ``object_name`` if it is among :meth:`visible`'s (the
        caller's own or shared with them), else None. One query by primary key."""
        self._readable(object_name)
        statement = sa.select(ListView).where(
            ListView.id == view_id, ListView.object_name == object_name, self._visible()
        )
        return self.session.scalars(statement).first()

    def get(self, view_id: int) -> ListView:
        """A view the caller may see (others' private views: administrators only), else 404."""
        view = self.session.get(ListView, view_id)
        if view is None or not self._sees(view):
            raise NotFound(
                N_("no list view %(id)s", id=view_id), [{"field": "id", "message": str(view_id)}]
            )
        self._readable(view.object_name)
        return view

    def _sees(self, view: ListView) -> bool:
        return (
            self.caller.is_admin
            or view.owner_id == self.caller.user_id
            or (view.shared_with_role is not None and view.shared_with_role in self.caller.roles)
        )

    def may_change(self, view: ListView) -> bool:
        """Administrators change any view; a user their own, as long as it is not shared."""
        if self.caller.is_admin:
            return True
        return view.owner_id == self.caller.user_id and view.shared_with_role is None

    def _require_change(self, view: ListView) -> None:
        if not self.may_change(view):
            message = (
                N_("only administrators may change or delete a shared view")
                if view.shared_with_role is not None
                else N_("only the owner of a view may change or delete it")
            )
            raise Forbidden(message, [{"field": "id", "message": str(view.id)}])

    def create(self, data: Mapping[str, Any]) -> ListView:
        """Save a view of ``data["object"]`` for the caller (shared with a role: admins)."""
        meta = self._readable(str(data.get("object", "")))
        label = self._label(data.get("label"))
        role = self._role(data.get("shared_with_role"))
        definition = check_definition(meta, data.get("definition"), self.access.hidden(meta))
        self._unique(self.caller.user_id, meta.name, label, None)
        view = ListView(
            object_name=meta.name,
            label=label,
            owner_id=self.caller.user_id,
            shared_with_role=role,
            definition=definition,
            version=1,
        )
        self.session.add(view)
        self.session.flush()
        self._audit("view.created", view)
        return view

    def update(self, view_id: int, data: Mapping[str, Any]) -> ListView:
        """Change a view's label, sharing or definition, given the ``version`` read (else 409)."""
        view = self.get(view_id)
        self._require_change(view)
        version = data.get("version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise ValidationFailed(
                N_("the view's version is required"),
                [{"field": "version", "message": N_("is required (the version you read)")}],
            )
        values: dict[str, Any] = {}
        if "label" in data:
            values["label"] = self._label(data["label"])
            self._unique(view.owner_id, view.object_name, values["label"], view.id)
        if "shared_with_role" in data:
            values["shared_with_role"] = self._role(data["shared_with_role"])
        if "definition" in data:
            meta = self.registry.get(view.object_name)
            values["definition"] = check_definition(
                meta, data["definition"], self.access.hidden(meta)
            )
        changed = self.session.scalar(
            sa.update(ListView)
            .where(ListView.id == view.id, ListView.version == version)
            .values(**values, version=ListView.version + 1, updated_at=utcnow())
            .returning(ListView.id)
            .execution_options(synchronize_session=False)
        )
        if changed is None:
            raise _stale(view)
        self.session.refresh(view)
        self._audit("view.updated", view, changed=sorted(values))
        return view

    def delete(self, view_id: int, expected_version: int | None = None) -> None:
        """Delete a view (given ``expected_version``, only if it is still that version)."""
        view = self.get(view_id)
        self._require_change(view)
        statement = sa.delete(ListView).where(ListView.id == view.id)
        if expected_version is not None:
            statement = statement.where(ListView.version == expected_version)
        gone = self.session.scalar(
            statement.returning(ListView.id).execution_options(synchronize_session=False)
        )
        if gone is None:
            raise _stale(view)
        self._audit("view.deleted", view)
        self.session.expunge(view)

    # --- checks ---

    def _label(self, label: Any) -> str:
        text = label.strip() if isinstance(label, str) else ""
        if not text or len(text) > MAX_LABEL or "\x00" in text:
            raise ValidationFailed(
                N_("the view needs a name"),
                [
                    {
                        "field": "label",
                        "message": N_("is required (1 to %(limit)s characters)", limit=MAX_LABEL),
                    }
                ],
            )
        return text

    def _role(self, role: Any) -> str | None:
        if role is None or role == "":
            return None
        if not self.caller.is_admin:
            raise Forbidden(
                N_("only administrators may share a view with a role"),
                [{"field": "shared_with_role", "message": N_("administrators only")}],
            )
        if not isinstance(role, str) or role not in self.registry.role_documents():
            raise ValidationFailed(
                N_("the view cannot be shared with that role"),
                [
                    {
                        "field": "shared_with_role",
                        "message": N_("%(role)s is not a role", role=_shown(role)),
                    }
                ],
            )
        return role

    def _unique(self, owner_id: int, object_name: str, label: str, view_id: int | None) -> None:
        statement = sa.select(ListView.id).where(
            ListView.owner_id == owner_id,
            ListView.object_name == object_name,
            ListView.label == label,
        )
        if view_id is not None:
            statement = statement.where(ListView.id != view_id)
        if self.session.scalar(statement) is not None:
            raise DuplicateValue(
                N_(
                    "a view of %(object)s named %(label)s already exists",
                    object=object_name,
                    label=_shown(label),
                ),
                [{"field": "label", "message": N_("is already the name of another view")}],
            )

    def _audit(self, action: str, view: ListView, **detail: Any) -> None:
        audit.record(
            self.session,
            action,
            actor_id=self.caller.user_id,
            target=f"view/{view.id}",
            detail={
                "object": view.object_name,
                "label": view.label,
                "shared_with_role": view.shared_with_role,
                **detail,
            },
            **self.audit_context,
        )
