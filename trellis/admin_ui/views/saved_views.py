"""Saved list views from the list page: save the current columns, filters and sort under
a name, change or rename a view, delete it. The list service (``runtime/views.py``) checks
who may do what; a refused save is shown on the list page with its status (422, 409).
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, request, url_for
from flask_babel import gettext as _
from werkzeug.datastructures import MultiDict

from trellis.admin_ui import bp
from trellis.admin_ui.context import REFUSALS, commit, list_views, rollback
from trellis.admin_ui.pages import signed_in
from trellis.admin_ui.views.records import render_list
from trellis.exceptions import DuplicateValue, NotFound, StaleRecord, TrellisError
from trellis.platform.runtime.models import ListView
from trellis.platform.runtime.views import MAX_LABEL, definition_from_params

# Refusals shown on the list page; anything else (403, 404) is the app's error page.


def _list_params(form: MultiDict[str, str]) -> dict[str, list[str]]:
    """The list parameters the page's view bar sent along (filters, sort, columns)."""
    return {
        key: form.getlist(key)
        for key in form
        if key in ("q", "sort", "columns") or key.startswith("f.")
    }


def _version(form: MultiDict[str, str]) -> int | str:
    text = form.get("version", "")
    return int(text) if text.isdigit() else text


def _refused(object_name: str, exc: TrellisError, view_id: int | None, action: str) -> Any:
    """The list page again, as it was, with the refusal in the view bar."""
    rollback()
    if exc.status not in REFUSALS:
        raise exc
    args: MultiDict[str, str] = MultiDict(_list_params(request.form))
    if view_id is not None:
        args.add("view", str(view_id))
    typed = {k: request.form.get(k, "") for k in ("label", "shared_with_role")}
    return render_list(
        object_name,
        args,
        view_error=exc,
        view_message=_message(exc),
        view_action=action,
        typed=typed,
    )


def _message(exc: TrellisError) -> str:
    """The refusal in the user's language (its details stay as the service gave them)."""
    fields = {str(d.get("field", "")) for d in exc.details}
    if isinstance(exc, DuplicateValue):
        return _("You already have a view of this list with that name.")
    if isinstance(exc, StaleRecord):
        return _("Someone changed this view in the meantime: reload the page and try again.")
    if "label" in fields:
        return _("Give the view a name (at most %(count)d characters).", count=MAX_LABEL)
    if "shared_with_role" in fields:
        return _("The view cannot be shared with that role.")
    return _("The view was not saved: some of its settings are not valid.")


def _of_object(view: ListView, object_name: str) -> ListView:
    if view.object_name != object_name:
        raise NotFound(_("This list view does not exist (any more)."))
    return view


@bp.post("/o/<object_name>/views")
@signed_in
def view_create(object_name: str) -> Any:
    """Save the list's current columns, filters and sort as a new view."""
    data = {
        "object": object_name,
        "label": request.form.get("label", ""),
        "shared_with_role": request.form.get("shared_with_role") or None,
        "definition": definition_from_params(_list_params(request.form)),
    }
    try:
        view = list_views().create(data)
    except TrellisError as exc:
        return _refused(object_name, exc, None, "create")
    commit()
    flash(_("View “%(label)s” saved.", label=view.label), "info")
    return redirect(url_for("ui.record_list", object_name=object_name, view=view.id))


@bp.post("/o/<object_name>/views/<int:view_id>")
@signed_in
def view_update(object_name: str, view_id: int) -> Any:
    """Rename (and, for administrators, share) a view, or save the list's current state
    into it (``what=definition``)."""
    data: dict[str, Any] = {"version": _version(request.form)}
    if request.form.get("what") == "definition":
        data["definition"] = definition_from_params(_list_params(request.form))
    else:
        data["label"] = request.form.get("label", "")
        if "shared_with_role" in request.form:
            data["shared_with_role"] = request.form.get("shared_with_role") or None
    views = list_views()
    try:
        _of_object(views.get(view_id), object_name)
        view = views.update(view_id, data)
    except TrellisError as exc:
        return _refused(object_name, exc, view_id, str(request.form.get("what") or "rename"))
    commit()
    flash(_("View “%(label)s” saved.", label=view.label), "info")
    return redirect(url_for("ui.record_list", object_name=object_name, view=view.id))


@bp.post("/o/<object_name>/views/<int:view_id>/delete")
@signed_in
def view_delete(object_name: str, view_id: int) -> Any:
    """``POST /o/<object>/views/<id>/delete``: delete a saved list view (only at the form's
    ``version``) and go back to the list; a refusal shows the list page with it in the view
    bar, with its status; a view of another object is the 404 page.
    """
    version = _version(request.form)
    views = list_views()
    try:
        label = _of_object(views.get(view_id), object_name).label
        views.delete(view_id, version if isinstance(version, int) else None)
    except TrellisError as exc:
        return _refused(object_name, exc, view_id, "delete")
    commit()
    flash(_("View “%(label)s” deleted.", label=label), "info")
    return redirect(url_for("ui.record_list", object_name=object_name))
