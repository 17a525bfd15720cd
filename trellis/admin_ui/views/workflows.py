"""Workflow pages: the transition buttons of a record's page, and the workflow designer
(Setup → Workflows: the list, a form for states and transitions, the diagram drawn as SVG
on the server, versions with restore).

Buttons show only what ``TransitionService.available`` answers for the signed-in user;
firing one posts a CSRF-checked form (with a comment box when the transition takes one)
and goes through the same service as the API. The designer saves through
``WorkflowService``, as ``PUT /api/v1/workflows/<name>`` does.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from flask import Response, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from trellis.admin_ui import bp
from trellis.admin_ui.context import (
    REFUSALS,
    audit_context,
    caller,
    commit,
    page_session,
    registry,
    rollback,
)
from trellis.admin_ui.diagram import render_svg
from trellis.admin_ui.i18n import current_language, pick, told
from trellis.admin_ui.pages import DESIGNERS, admin_only, signed_in
from trellis.exceptions import TrellisError
from trellis.platform.runtime.workflow.documents import WorkflowService
from trellis.platform.runtime.workflow.transitions import TransitionService
from trellis.platform.workflow import Category, CommentRule, parse_workflow

if TYPE_CHECKING:
    from trellis.platform.runtime.records.serialise import Record
    from trellis.platform.runtime.registry import ObjectMeta

DESIGNERS.append(("ui.workflow_list", lambda: _("Workflows")))
BLANK_ROWS = 2  # empty rows the form offers for a new state or transition


def _transitions() -> TransitionService:
    return TransitionService(page_session(), registry(), caller())


def _workflows() -> WorkflowService:
    return WorkflowService(page_session(), registry(), caller().user_id, audit_context())


def workflow_panel(meta: ObjectMeta, record: Record) -> dict[str, Any] | None:
    """What a record's page shows of its workflow: the state's badge and the buttons of the
    transitions the user may fire now (``None`` for an object without a workflow)."""
    workflow = meta.workflow
    if workflow is None or record.get("deleted_at"):
        return None
    state = workflow.state(record.get(workflow.status_field))
    return {
        "state": pick(state.label, state.name) if state else record.get(workflow.status_field),
        "category": str(state.category) if state else "draft",
        "transitions": [
            {
                "name": t.name,
                "label": pick(t.label, t.name),
                "comment": str(t.comment),
                "required": t.comment is CommentRule.REQUIRED,
            }
            for t in _transitions().available(meta.name, int(record["id"]))
        ],
    }


@bp.post("/o/<object_name>/<int:record_id>/transitions/<name>")
@signed_in
def record_transition(object_name: str, record_id: int, name: str) -> Any:
    """``POST /o/<object>/<id>/transitions/<name>`` (``version``, ``comment``): fire it and
    go back to the record; a refusal is flashed there, nothing written."""
    version = request.form.get("version", "")
    try:
        _transitions().fire(
            object_name,
            record_id,
            name,
            request.form.get("comment"),
            int(version) if version.isdigit() else None,
        )
        commit()
        flash(_("Done."), "info")
    except TrellisError as exc:
        if exc.status not in {*REFUSALS, 403}:
            raise
        rollback()
        flash(told(exc.message), "error")
    return redirect(url_for("ui.record_detail", object_name=object_name, record_id=record_id))


# --- the designer ------------------------------------------------------------------------


@bp.get("/setup/workflows")
@admin_only
def workflow_list() -> Any:
    """``/setup/workflows``: every workflow with its object, version and states."""
    items = [
        {
            "name": name,
            "label": pick(document["x-label"], name),
            "object": document.get("object"),
            "version": version,
            "states": len(document.get("states", [])),
            "transitions": len(document.get("transitions", [])),
        }
        for name, (version, document) in sorted(registry().workflow_documents().items())
    ]
    return render_template("ui/setup/workflows.html", workflows=items)


@bp.route("/setup/workflows/new", methods=["GET", "POST"])
@admin_only
def workflow_new() -> Any:
    """``/setup/workflows/new``: the form; POST creates the workflow and shows it."""
    return _edit(None)


@bp.route("/setup/workflows/<name>", methods=["GET", "POST"])
@admin_only
def workflow_edit(name: str) -> Any:
    """``/setup/workflows/<name>``: its states, transitions and diagram; POST saves a new
    version (refusals shown on the page, with what was typed kept)."""
    return _edit(name)


def _edit(name: str | None) -> Any:
    service = _workflows()
    version = None
    if name is None:
        document: dict[str, Any] = {"x-label": {}, "states": [], "transitions": []}
    else:
        latest = service.versions(name)[0]
        document, version = dict(latest.document), latest.version
    problems: list[dict[str, Any]] = []
    status = 200
    if request.method == "POST":
        document = document_from_form(request.form, document)
        try:
            if name is None:
                saved = service.create(document)
            else:
                expected = request.form.get("version", "")
                saved = service.update(
                    name, document, expected_version=int(expected) if expected.isdigit() else None
                )
            commit()
            flash(_("Saved."), "info")
            return redirect(url_for("ui.workflow_edit", name=saved.name))
        except TrellisError as exc:
            if exc.status not in REFUSALS:
                raise
            rollback()
            problems = [
                {"field": d.get("field", ""), "message": told(d["message"])} for d in exc.details
            ] or [{"field": "", "message": told(exc.message)}]
            status = 422
    diagram = None
    try:
        diagram = render_svg(parse_workflow(document), current_language(), _("approval"))
    except (KeyError, TypeError, ValueError, StopIteration, IndexError):
        diagram = None  # an unsaved, incomplete document has no drawing yet
    return (
        render_template(
            "ui/setup/workflow_form.html",
            name=name,
            version=version,
            document=document,
            problems=problems,
            diagram=diagram,
            objects=sorted(m.name for m in registry().all()),
            categories=[c.value for c in Category],
            comment_rules=[c.value for c in CommentRule],
            blank=BLANK_ROWS,
            category_label=category_label,
            comment_label=comment_label,
            current_language=current_language,
        ),
        status,
    )


def category_label(category: str) -> str:
    """A state category as people read it."""
    labels = {
        "draft": _("Draft"),
        "in_progress": _("In progress"),
        "done": _("Done"),
        "cancelled": _("Cancelled"),
    }
    return labels.get(category, category)


def comment_label(rule: str) -> str:
    """Whether a transition takes a comment, as people read it."""
    labels = {"none": _("No comment"), "optional": _("Optional"), "required": _("Required")}
    return labels.get(rule, rule)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.replace(",", " ").split() if part.strip()]


def document_from_form(form: Any, previous: dict[str, Any]) -> dict[str, Any]:
    """The workflow document the designer's form describes. Rows without a name are
    dropped; a transition keeps its approval (edited on its own page,
    ``views/workflow_approval.py``) by its name."""
    document: dict[str, Any] = {
        "x-name": form.get("x_name", previous.get("x-name", "")).strip(),
        "x-label": {
            "en": form.get("label_en", "").strip(),
            "zh-CN": form.get("label_zh", "").strip(),
        },
        "object": form.get("object", "").strip(),
        "status_field": form.get("status_field", "").strip(),
        "states": [],
        "transitions": [],
    }
    approvals = {
        t.get("name"): t["approval"]
        for t in previous.get("transitions", [])
        if isinstance(t, dict) and "approval" in t
    }
    initial = form.get("initial")
    for index in range(int(form.get("state_rows", "0") or 0)):
        key = f"state-{index}-"
        state_name = form.get(key + "name", "").strip()
        if not state_name:
            continue
        state: dict[str, Any] = {
            "name": state_name,
            "label": {
                "en": form.get(key + "en", "").strip(),
                "zh-CN": form.get(key + "zh", "").strip(),
            },
            "category": form.get(key + "category", "in_progress"),
        }
        locked = _split(form.get(key + "locked", ""))
        if locked:
            state["locked"] = locked
        if initial == state_name:
            state["initial"] = True
        document["states"].append(state)
    for index in range(int(form.get("transition_rows", "0") or 0)):
        key = f"transition-{index}-"
        transition_name = form.get(key + "name", "").strip()
        if not transition_name:
            continue
        sources = _split(form.get(key + "from", ""))
        transition: dict[str, Any] = {
            "name": transition_name,
            "label": {
                "en": form.get(key + "en", "").strip(),
                "zh-CN": form.get(key + "zh", "").strip(),
            },
            "from": sources,
            "to": form.get(key + "to", "").strip(),
            "comment": form.get(key + "comment", "none"),
        }
        roles = _split(form.get(key + "roles", ""))
        if roles:
            transition["roles"] = roles
        guard = form.get(key + "guard", "").strip()
        if guard:
            transition["guard"] = guard
        actions = form.get(key + "actions", "").strip()
        if actions:
            try:
                transition["actions"] = json.loads(actions)
            except ValueError:
                transition["actions"] = actions  # the meta-schema refuses it, at its pointer
        if transition_name in approvals:
            transition["approval"] = approvals[transition_name]
        document["transitions"].append(transition)
    mapping = form.get("state_map", "").strip()
    if mapping:
        pairs = [pair.split("=", 1) for pair in _split(mapping) if "=" in pair]
        document["x-state-map"] = {old.strip(): new.strip() for old, new in pairs}
    return document


@bp.get("/setup/workflows/<name>/diagram.svg")
@admin_only
def workflow_diagram(name: str) -> Any:
    """The workflow's current diagram as an SVG image."""
    latest = _workflows().versions(name)[0]
    svg = render_svg(
        parse_workflow(latest.document, latest.version), current_language(), _("approval")
    )
    return Response(str(svg), mimetype="image/svg+xml")


@bp.get("/setup/workflows/<name>/history")
@admin_only
def workflow_history(name: str) -> Any:
    """``/setup/workflows/<name>/history``: its versions, newest first, each restorable."""
    versions = _workflows().versions(name)
    return render_template("ui/setup/workflow_history.html", name=name, versions=versions)


@bp.post("/setup/workflows/<name>/versions/<int:version>/restore")
@admin_only
def workflow_restore(name: str, version: int) -> Any:
    """Make version ``version`` current again (as a new version); refusals flashed."""
    try:
        _workflows().restore(name, version)
        commit()
        flash(_("Restored."), "info")
    except TrellisError as exc:
        if exc.status not in REFUSALS:
            raise
        rollback()
        flash(told(exc.message), "error")
    return redirect(url_for("ui.workflow_history", name=name))
