"""Designers of who may do what: roles with their permission matrix, and users.

Administrators only. A role page edits the whole role document (labels, a record scope
per object and operation, field rights) and saves it through ``RoleService`` as
``PUT /api/v1/roles/<name>`` does; user pages go through ``UserService`` with the same
body checks as ``/api/v1/users``. A refusal comes back next to the cell or field it
names (the service's JSON pointers and field names), with what was typed kept.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from trellis.admin_ui import bp
from trellis.admin_ui.context import (
    REFUSALS,
    audit_context,
    caller,
    commit,
    page_session,
    records,
    registry,
    rollback,
)
from trellis.admin_ui.i18n import LANGUAGES, pick, told
from trellis.admin_ui.pages import DESIGNERS, ROLE_TABS, admin_only
from trellis.exceptions import NotFound, StaleRecord, TrellisError, ValidationFailed
from trellis.platform.metadata.names import NAME_PATTERN
from trellis.platform.metadata.permissions import FIELD_ACCESS, SCOPES, Operation
from trellis.platform.runtime import audit
from trellis.platform.runtime.api.schemas import UserCreateSchema, UserUpdateSchema, load
from trellis.platform.runtime.identity import RoleService, UserService
from trellis.platform.runtime.versioning import ROLES, current_documents

if TYPE_CHECKING:
    from werkzeug.datastructures import MultiDict

    from trellis.platform.runtime.models import User
    from trellis.platform.runtime.registry import ObjectMeta

DESIGNERS.append(("ui.role_list", lambda: _("Roles")))
DESIGNERS.append(("ui.user_list", lambda: _("Users")))
ROLE_TABS.append(("ui.role_edit", lambda: _("Settings")))

USER_PAGE_SIZE = 50
# Form refusals come back on the page that sent them: 422 whatever the service's status.
USER_CREATE, USER_UPDATE = UserCreateSchema(), UserUpdateSchema()
# The inputs of the user form: a refusal naming another key is shown above it.
USER_FORM_FIELDS = frozenset(
    {"email", "name", "password", "language", "roles", "partner", "is_admin"}
)


def is_name(text: str) -> bool:
    """Whether ``text`` can name a role (anything else names none; PostgreSQL could not
    even look up some of it)."""
    return re.fullmatch(NAME_PATTERN, text) is not None


def _roles() -> RoleService:
    return RoleService(page_session(), registry(), caller().user_id, audit_context())


def _users() -> UserService:
    return UserService(page_session(), registry(), caller().user_id)


def scope_options() -> list[tuple[str, str]]:
    """The record scopes a role may grant (``SCOPES``), labelled."""
    labels = {
        "none": _("None"),
        "own": _("Own records"),
        "hierarchy": _("Partner tree"),
        "all": _("All records"),
    }
    return [(scope, labels.get(scope, scope)) for scope in SCOPES]


def field_options() -> list[tuple[str, str]]:
    """The access levels of a field (``FIELD_ACCESS``), after "as the operations give"."""
    labels = {"hidden": _("Hidden"), "read": _("Read only"), "write": _("Edit")}
    return [("", _("Default")), *((level, labels.get(level, level)) for level in FIELD_ACCESS)]


def operation_labels() -> dict[str, str]:
    """The five record operations' names as the role designer shows them, translated,
    keyed by ``Operation`` value in ``Operation`` order.
    """
    labels = {
        Operation.READ: _("Read"),
        Operation.CREATE: _("Create"),
        Operation.UPDATE: _("Update"),
        Operation.DELETE: _("Delete"),
        Operation.EXPORT: _("Export"),
    }
    return {op.value: labels[op] for op in Operation}


# --- roles -------------------------------------------------------------------------------


@bp.get("/setup/roles")
@admin_only
def role_list() -> Any:
    """``/setup/roles``: every role with its label, description, version and how many users
    hold it (administrators only; others get the 403 page).
    """
    counts = _users().role_counts()
    roles = [
        {
            "name": name,
            "version": version,
            "label": pick(document.get("x-label"), name),
            "description": pick(document.get("x-description"), ""),
            "users": counts.get(name, 0),
        }
        for name, version, document in current_documents(page_session(), ROLES)
    ]
    return render_template("ui/setup/roles.html", roles=roles)


@bp.route("/setup/roles/new", methods=["GET", "POST"])
@admin_only
def role_new() -> Any:
    """``/setup/roles/new``: the role form; POST creates the role and goes to its page. A
    refusal shows the form as typed with each problem (422).
    """
    blank: dict[str, Any] = {"x-name": "", "x-label": {}, "objects": {}}
    if request.method == "GET":
        return _role_page(blank, None, {}, [])
    document = role_from_form(request.form, None)
    try:
        saved = _roles().create(document)
    except TrellisError as exc:
        if exc.status not in REFUSALS:
            raise
        rollback()
        errors, general = role_errors(exc)
        return _role_page(document, None, errors, general, status=422)
    commit()
    flash(_("Role %(name)s created.", name=saved.name), "info")
    return redirect(url_for("ui.role_edit", name=saved.name))


@bp.route("/setup/roles/<name>", methods=["GET", "POST"])
@admin_only
def role_edit(name: str) -> Any:
    """``/setup/roles/<name>``: a role's rights per object; POST saves them from the form's
    ``version`` (409 with the newer version when stale, also when none is sent). Refused: 422.
    """
    service = _roles()
    found = current_documents(page_session(), ROLES, [name]) if is_name(name) else []
    if not found:
        raise NotFound(f"no role named {name!r}")
    version, current = found[0][1], found[0][2]
    if request.method == "GET":
        return _role_page(current, version, {}, [])
    document = role_from_form(request.form, current)
    sent = request.form.get("version", "")
    try:
        saved = service.update(name, document, expected_version=int(sent) if sent.isdigit() else 0)
    except StaleRecord:
        rollback()
        latest = current_documents(page_session(), ROLES, [name])[0][1]
        return _role_page(document, version, {}, [], status=409, stale=latest)
    except TrellisError as exc:
        if exc.status not in REFUSALS:
            raise
        rollback()
        errors, general = role_errors(exc)
        return _role_page(document, version, errors, general, status=422)
    commit()
    if saved.created:
        flash(_("Saved as version %(version)d.", version=saved.version), "info")
    else:
        flash(_("Nothing changed."), "info")
    return redirect(url_for("ui.role_edit", name=name))


def _role_page(
    document: dict[str, Any],
    version: int | None,
    errors: dict[str, str],
    general: list[str],
    status: int = 200,
    stale: int | None = None,
) -> Any:
    grants = document.get("objects", {}) if isinstance(document.get("objects"), dict) else {}
    rows = [_matrix_row(meta, grants.get(meta.name, {}), errors) for meta in _objects()]
    page = render_template(
        "ui/setup/role_form.html",
        document=document,
        name=document.get("x-name", "") if version is not None else None,
        version=version,
        labels=_label_values(document.get("x-label")),
        descriptions=_label_values(document.get("x-description")),
        rows=rows,
        operations=operation_labels(),
        scopes=scope_options(),
        field_levels=field_options(),
        errors=errors,
        general=general,
        stale=stale,
    )
    return page, status


def _objects() -> list[ObjectMeta]:
    return sorted(registry().all(), key=lambda meta: pick(meta.definition.label, meta.name))


def _matrix_row(meta: ObjectMeta, grant: Any, errors: dict[str, str]) -> dict[str, Any]:
    grant = grant if isinstance(grant, dict) else {}
    fields = grant.get("fields") if isinstance(grant.get("fields"), dict) else {}
    prefix = f"field.{meta.name}."
    return {
        "name": meta.name,
        "label": pick(meta.definition.label, meta.name),
        "scopes": {op.value: grant.get(op.value, "none") for op in Operation},
        "fields": [
            {"name": field, "label": pick(spec.label, field), "access": fields.get(field, "")}
            for field, spec in meta.fields.items()
        ],
        "fields_set": sum(1 for field in meta.fields if fields.get(field)),
        "field_errors": any(key.startswith(prefix) for key in errors),
        "error": errors.get(f"object.{meta.name}"),
    }


def _label_values(labels: Any) -> dict[str, str]:
    labels = labels if isinstance(labels, dict) else {}
    return {language: str(labels.get(language, "")) for language in LANGUAGES}


def _labels_from_form(form: MultiDict[str, str], prefix: str, current: Any) -> dict[str, str]:
    """The labels the form sent; those of languages it does not show are kept."""
    current = current if isinstance(current, dict) else {}
    found = {k: v for k, v in current.items() if k not in LANGUAGES}
    for language in LANGUAGES:
        text = form.get(f"{prefix}.{language}", "").strip()
        if text:
            found[language] = text
    return found


def role_from_form(form: MultiDict[str, str], current: dict[str, Any] | None) -> dict[str, Any]:
    """The role document a matrix form sent, built on ``current`` (None: a new role).

    A scope left at "none" and a field left at its default are written only where the
    current document already says so, so saving an untouched form writes no version.
    Values are passed on as sent: the role service says what is wrong with them.
    """
    document = dict(current or {})
    document["x-name"] = current["x-name"] if current else form.get("name", "").strip()[:100]
    document["x-label"] = _labels_from_form(form, "label", document.get("x-label"))
    description = _labels_from_form(form, "description", document.get("x-description"))
    if description:
        document["x-description"] = description
    else:
        document.pop("x-description", None)
    old_grants = dict((current or {}).get("objects") or {})
    grants: dict[str, Any] = dict(old_grants)  # objects the matrix does not show stay as they are
    for meta in registry().all():
        old = old_grants.get(meta.name)
        old = old if isinstance(old, dict) else {}
        grant: dict[str, Any] = {}
        for op in Operation:
            scope = form.get(f"scope.{meta.name}.{op.value}", "none")[:50]
            if scope != "none" or op.value in old:
                grant[op.value] = scope
        fields = {}
        for field in meta.fields:
            access = form.get(f"field.{meta.name}.{field}", "")[:50]
            if access:
                fields[field] = access
        if fields or "fields" in old:
            grant["fields"] = fields
        if grant or meta.name in old_grants:
            grants[meta.name] = grant
    document["objects"] = grants
    return document


def role_errors(exc: TrellisError) -> tuple[dict[str, str], list[str]]:
    """The service's problems by form input (its JSON pointers mapped), and the rest."""
    errors: dict[str, str] = {}
    general: list[str] = []
    for detail in exc.details:
        pointer = str(detail.get("field", ""))
        message = told(detail.get("message"))
        parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
        key = _input_of(parts)
        if key is None:
            general.append(f"{pointer}: {message}" if pointer else message)
            continue
        errors.setdefault(key, message)
    if not exc.details:
        if exc.status == 409:
            errors["name"] = _("a role with this name exists")
        else:
            general.append(told(exc.message))
    return errors, general


def _input_of(parts: list[str]) -> str | None:
    if parts[:1] == ["x-name"]:
        return "name"
    if parts[:1] == ["x-label"]:
        return "label"
    if parts[:1] == ["x-description"]:
        return "description"
    if len(parts) >= 2 and parts[0] == "objects":
        if len(parts) == 3 and parts[2] in {op.value for op in Operation}:
            return f"scope.{parts[1]}.{parts[2]}"
        if len(parts) == 4 and parts[2] == "fields":
            return f"field.{parts[1]}.{parts[3]}"
        return f"object.{parts[1]}"
    return None


# --- users -------------------------------------------------------------------------------


@bp.get("/setup/users")
@admin_only
def user_list() -> Any:
    """``/setup/users``: users matching ``q`` (name or e-mail) and ``role``, a page at a time
    after the ``after`` id.
    """
    # No name or address holds a NUL, and PostgreSQL could not even compare one.
    text = request.args.get("q", "").replace("\x00", "").strip()[:100]
    role = request.args.get("role", "").replace("\x00", "")[:100] or None
    after = request.args.get("after", "")
    service = _users()
    start = int(after[:18]) if after.isdigit() else 0
    found = service.search(text, role, start, USER_PAGE_SIZE + 1)
    page = found[:USER_PAGE_SIZE]
    documents = registry().role_documents()
    return render_template(
        "ui/setup/users.html",
        users=[_user_row(service, user) for user in page],
        partners=_partner_titles(page),
        q=text,
        role=role,
        role_label=pick(documents.get(role or "", {}).get("x-label"), role or ""),
        next_after=page[-1].id if len(found) > USER_PAGE_SIZE else None,
    )


def _user_row(service: UserService, user: User) -> dict[str, Any]:
    documents = registry().role_documents()
    return {
        "user": user,
        "roles": [
            pick(documents.get(name, {}).get("x-label"), name) for name in service.roles_of(user.id)
        ],
    }


def _partner_titles(users: list[User]) -> dict[int, str]:
    tree = registry().hierarchy_object()
    ids = {user.partner_id for user in users if user.partner_id is not None}
    if tree is None or not ids:
        return {}
    return records().titles(tree.name, ids)


@bp.route("/setup/users/new", methods=["GET", "POST"])
@admin_only
def user_new() -> Any:
    """``/setup/users/new``: the user form; POST creates the user (audited) and goes to
    their page. A refusal (bad field, taken e-mail) shows the form with each problem (422).
    """
    if request.method == "GET":
        return _user_page(None, {"language": "en", "roles": [], "partner": None}, {})
    data = user_input(request.form, creating=True)
    service = _users()
    try:
        user = service.create(load(USER_CREATE, data, what="user"))
    except TrellisError as exc:
        if exc.status not in REFUSALS:
            raise
        rollback()
        return _user_page(None, data, user_errors(exc), status=422)
    _audit_user(service, user, "user.created", {})
    commit()
    flash(_("User %(email)s created.", email=user.email), "info")
    return redirect(url_for("ui.user_edit", user_id=user.id))


@bp.route("/setup/users/<int:user_id>", methods=["GET", "POST"])
@admin_only
def user_edit(user_id: int) -> Any:
    """``/setup/users/<id>``: a user's form; POST saves it (audited). A refusal, such as an
    empty name or taking one's own admin rights, shows the form (422); unknown id: 404.
    """
    service = _users()
    user = service.get(user_id)  # NotFound → the app's 404 page
    if request.method == "GET":
        return _user_page(user, service.as_dict(user), {})
    data = user_input(request.form, creating=False)
    try:
        if not data["name"]:
            raise ValidationFailed("a name is required", [{"field": "name", "message": ""}])
        service.update(user_id, load(USER_UPDATE, data, what="change"))
    except TrellisError as exc:
        if exc.status not in REFUSALS:
            raise
        rollback()
        values = {**service.as_dict(service.get(user_id)), **data}
        return _user_page(service.get(user_id), values, user_errors(exc), status=422)
    _audit_user(service, user, "user.updated", {"changed": sorted(data)})
    commit()
    flash(_("Saved."), "info")
    return redirect(url_for("ui.user_edit", user_id=user_id))


@bp.post("/setup/users/<int:user_id>/<any(deactivate, reactivate):action>")
@admin_only
def user_activation(user_id: int, action: str) -> Any:
    """``POST /setup/users/<id>/deactivate`` or ``/reactivate``: deactivating ends the
    user's sessions and revokes their tokens; one's own account is refused with a message.
    """
    service = _users()
    active = action == "reactivate"
    service.get(user_id)  # NotFound → the app's 404 page
    if not active and user_id == caller().user_id:
        # The service refuses it too (for the API); said here in the user's language.
        flash(_("You cannot deactivate yourself."), "error")
        return redirect(url_for("ui.user_edit", user_id=user_id))
    user = service.update(user_id, {"is_active": active})
    _audit_user(service, user, "user.updated", {"changed": ["is_active"]})
    commit()
    if active:
        flash(_("%(email)s can sign in again.", email=user.email), "info")
    else:
        flash(
            _("%(email)s is deactivated: their sessions and tokens ended.", email=user.email),
            "info",
        )
    return redirect(url_for("ui.user_edit", user_id=user_id))


def user_input(form: MultiDict[str, str], *, creating: bool) -> dict[str, Any]:
    """A user form as the API's body: only what the form shows; values passed on as sent."""
    partner = form.get("partner", "").strip()
    data: dict[str, Any] = {
        "language": form.get("language", ""),
        "roles": [role for role in form.getlist("roles") if role],
        "partner": int(partner[:18]) if partner.isdigit() else (partner or None),
        "is_admin": form.get("is_admin") == "true",
    }
    name = form.get("name", "").strip()
    if name or not creating:
        data["name"] = name
    password = form.get("password", "")
    if creating:
        data["email"] = form.get("email", "").strip()
        data["password"] = password
    elif password:
        data["password"] = password
    return data


def user_errors(exc: TrellisError) -> dict[str, str]:
    """The service's problems by form field; ``""``: the refusal's own message."""
    errors: dict[str, str] = {}
    for detail in exc.details:
        message = detail.get("message")
        errors.setdefault(
            str(detail.get("field", "")), told(message) if message else _("is required")
        )
    if getattr(exc.message, "msgid", None) == "you cannot take away your own administrator rights":
        errors["is_admin"] = _("You cannot take away your own administrator rights.")
    elif not exc.details:
        errors[""] = told(exc.message)
    return errors


def _user_page(
    user: User | None, values: dict[str, Any], errors: dict[str, str], status: int = 200
) -> Any:
    tree = registry().hierarchy_object()
    partner = values.get("partner")
    partner_title = ""
    if tree is not None and isinstance(partner, int):
        partner_title = records().titles(tree.name, {partner}).get(partner, f"#{partner}")
    documents = registry().role_documents()
    roles = [(name, pick(documents[name].get("x-label"), name)) for name in sorted(documents)]
    page = render_template(
        "ui/setup/user_form.html",
        user=user,
        values=values,
        errors=errors,
        roles=sorted(roles, key=lambda role: role[1]),
        partner_spec={"label": _("Partner"), "target": tree.name} if tree else None,
        partner_title=partner_title,
        languages=[("en", "English"), ("zh-CN", "中文")],
        is_self=user is not None and user.id == caller().user_id,
        others=[(key, text) for key, text in errors.items() if key not in USER_FORM_FIELDS],
    )
    return page, status


def _audit_user(service: UserService, user: User, action: str, extra: dict[str, Any]) -> None:
    """The event the API records for the same change."""
    shown = service.as_dict(user)
    keys = ("email", "roles", "partner", "is_admin", "is_active")
    audit.record(
        page_session(),
        action,
        actor_id=caller().user_id,
        target=f"user/{user.id}",
        detail={**extra, **{key: shown[key] for key in keys}},
        **audit_context(),
    )
