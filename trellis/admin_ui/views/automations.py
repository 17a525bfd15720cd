"""Setup → Automations: the list, an editor for one document, and its run history.

Administrators only. The editor is the document as JSON (what the API takes) beside a
plain-words summary of it; as it is typed the page asks ``/setup/automations/check``,
which answers the summary and every problem at its JSON pointer, the same checks a save
makes (``AutomationService.validate``). Saving goes through ``AutomationService`` as
``POST`` / ``PUT /api/v1/automations`` do; a refusal keeps what was typed.
"""

from __future__ import annotations

import json
from typing import Any

from flask import flash, redirect, render_template, request, url_for
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
from trellis.admin_ui.i18n import pick, told
from trellis.admin_ui.pages import DESIGNERS, admin_only
from trellis.exceptions import NotFound, StaleRecord, TrellisError
from trellis.platform.metadata.automations import ActionKind, TriggerKind
from trellis.platform.runtime.automations import AutomationService, runs

DESIGNERS.append(("ui.automation_list", lambda: _("Automations")))

STARTER: dict[str, Any] = {
    "x-name": "",
    "x-label": {"en": "", "zh-CN": ""},
    "object": "",
    "trigger": {"on": "create"},
    "actions": [{"type": "set_fields", "values": {}}],
}


def _service() -> AutomationService:
    return AutomationService(page_session(), registry(), caller().user_id, audit_context())


@bp.get("/setup/automations")
@admin_only
def automation_list() -> Any:
    """``/setup/automations``: every automation with its object, trigger, state and last run."""
    items: list[dict[str, Any]] = []
    for automation in registry().automations():  # by name
        latest = runs.recent(page_session(), automation.name, limit=1)
        items.append(
            {
                "name": automation.name,
                "label": pick(automation.document.get("x-label"), automation.name),
                "object": automation.object_name,
                "trigger": trigger_text(automation.trigger),
                "active": automation.active,
                "version": automation.version,
                "last": latest[0] if latest else None,
            }
        )
    return render_template("ui/setup/automations.html", automations=items)


@bp.route("/setup/automations/new", methods=["GET", "POST"])
@admin_only
def automation_new() -> Any:
    """``/setup/automations/new``: the editor; POST creates the automation (422 when refused)."""
    if request.method == "GET":
        return _editor(json.dumps(STARTER, indent=2, ensure_ascii=False), None)
    text = request.form.get("document", "")
    document, problems = _parse(text)
    if document is not None:
        try:
            saved = _service().create(document)
        except TrellisError as exc:
            if exc.status not in REFUSALS:
                raise
            rollback()
            problems = _problems(exc)
        else:
            commit()
            flash(_("Automation %(name)s created.", name=saved.name), "info")
            return redirect(url_for("ui.automation_edit", name=saved.name))
    return _editor(text, None, problems, status=422)


@bp.route("/setup/automations/<name>", methods=["GET", "POST"])
@admin_only
def automation_edit(name: str) -> Any:
    """``/setup/automations/<name>``: the editor, versions and run history; POST saves a
    new version from the form's ``version`` (409 when someone saved meanwhile)."""
    service = _service()
    versions = service.versions(name)  # NotFound for an unknown name
    current = versions[0]
    if request.method == "GET":
        text = json.dumps(current.document, indent=2, ensure_ascii=False)
        return _editor(text, name, version=current.version)
    text = request.form.get("document", "")
    document, problems = _parse(text)
    sent = request.form.get("version", "")
    if document is not None:
        try:
            saved = service.update(
                name, document, expected_version=int(sent) if sent.isdigit() else 0
            )
        except StaleRecord:
            rollback()
            return _editor(text, name, version=current.version, stale=True, status=409)
        except TrellisError as exc:
            if exc.status not in REFUSALS:
                raise
            rollback()
            problems = _problems(exc)
        else:
            commit()
            if saved.created:
                flash(_("Saved as version %(version)d.", version=saved.version), "info")
            else:
                flash(_("Nothing changed."), "info")
            return redirect(url_for("ui.automation_edit", name=name))
    return _editor(text, name, problems, version=current.version, status=422)


@bp.post("/setup/automations/<name>/versions/<int:version>/restore")
@admin_only
def automation_restore(name: str, version: int) -> Any:
    """Make an old version current again, as a new version."""
    try:
        saved = _service().restore(name, version)
    except TrellisError as exc:
        if exc.status not in REFUSALS:
            raise
        rollback()
        flash(_("Version %(version)d cannot be restored: %(reason)s", version=version,
                reason=told(exc.message)), "error")  # fmt: skip
        return redirect(url_for("ui.automation_edit", name=name))
    commit()
    flash(_("Version %(version)d restored as version %(new)d.", version=version,
            new=saved.version), "info")  # fmt: skip
    return redirect(url_for("ui.automation_edit", name=name))


@bp.post("/setup/automations/<name>/delete")
@admin_only
def automation_delete(name: str) -> Any:
    """Delete the automation and its versions (its run history stays)."""
    _service().delete(name)
    commit()
    flash(_("Automation %(name)s deleted.", name=name), "info")
    return redirect(url_for("ui.automation_list"))


@bp.get("/setup/automations/check")
@admin_only
def automation_check() -> Any:
    """The editor's live check: the summary and the problems of the typed document."""
    text = request.args.get("document", "")
    document, problems = _parse(text)
    if document is not None:
        try:
            _service().validate(document, document.get("x-name"))
        except TrellisError as exc:
            if exc.status not in REFUSALS:
                raise
            problems = _problems(exc)
        finally:
            rollback()
    return render_template(
        "ui/setup/_automation_check.html",
        summary=summary(document) if document is not None and not problems else None,
        problems=problems,
    )


def _editor(
    text: str,
    name: str | None,
    problems: list[dict[str, Any]] | None = None,
    *,
    version: int | None = None,
    stale: bool = False,
    status: int = 200,
) -> Any:
    document, _parse_problems = _parse(text)
    versions = _service().versions(name) if name else []
    page = render_template(
        "ui/setup/automation_form.html",
        name=name,
        text=text,
        version=version,
        versions=versions,
        problems=problems or [],
        summary=summary(document) if document is not None and not problems else None,
        runs=runs.recent(page_session(), name) if name else [],
        stale=stale,
    )
    return page, status


def _parse(text: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The typed JSON, or a problem saying where it stopped being JSON."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        line, column = getattr(exc, "lineno", 1), getattr(exc, "colno", 1)
        where = _("line %(line)d, column %(column)d", line=line, column=column)
        return None, [{"field": "", "message": _("not valid JSON (%(where)s)", where=where)}]
    if not isinstance(document, dict):
        return None, [{"field": "", "message": _("an automation must be a JSON object")}]
    return document, []


def _problems(exc: TrellisError) -> list[dict[str, Any]]:
    details = [d for d in exc.details if isinstance(d, dict)]
    if not details:
        return [{"field": "", "message": told(exc.message)}]
    return [{**d, "message": told(d.get("message"))} for d in details]


def trigger_text(trigger: dict[str, Any]) -> str:
    """A trigger in plain words."""
    kind = trigger.get("on")
    if kind == TriggerKind.CREATE:
        return _("when a record is created")
    if kind == TriggerKind.UPDATE:
        return _("when a record is changed")
    if kind == TriggerKind.DELETE:
        return _("when a record is deleted")
    if kind == TriggerKind.FIELD_CHANGED:
        return _("when %(fields)s changes", fields=", ".join(trigger.get("fields", [])))
    if kind == TriggerKind.CONDITION_TRUE:
        return _("when %(condition)s becomes true", condition=trigger.get("condition", ""))
    if kind == TriggerKind.SCHEDULE:
        return _("on the schedule %(cron)s (UTC)", cron=trigger.get("cron", ""))
    if kind == TriggerKind.DATE:
        days = int(trigger.get("offset_days", 0))
        field = trigger.get("field", "")
        if days < 0:
            return _("%(days)d day(s) before %(field)s", days=-days, field=field)
        if days > 0:
            return _("%(days)d day(s) after %(field)s", days=days, field=field)
        return _("on the day of %(field)s", field=field)
    if kind == TriggerKind.WORKFLOW:
        events = ", ".join(trigger.get("events", []))
        states = trigger.get("states")
        if states:
            return _("on workflow events %(events)s (states %(states)s)", events=events,
                     states=", ".join(states))  # fmt: skip
        return _("on workflow events %(events)s", events=events)
    return str(kind)


def action_text(action: dict[str, Any]) -> str:
    """An action in plain words."""
    kind = action.get("type")
    if kind == ActionKind.SET_FIELDS:
        return _("set %(fields)s", fields=", ".join(action.get("values", {})))
    if kind == ActionKind.CREATE_RECORD:
        return _("create a %(object)s record", object=action.get("object", ""))
    if kind == ActionKind.NOTIFY:
        users = action.get("users", {})
        whom = [*map(str, users.get("ids", [])), *users.get("roles", []), *users.get("fields", [])]
        text = _("notify %(users)s", users=", ".join(whom))
        return text + (" " + _("(also by e-mail)") if action.get("email") else "")
    if kind == ActionKind.WEBHOOK:
        return _("call the webhooks subscribed to %(event)s", event=action.get("event", "…"))
    if kind == ActionKind.HOOK:
        return _("run the pack hook %(name)s", name=action.get("name", ""))
    if kind == ActionKind.START_APPROVAL:
        return _("submit for approval by %(flow)s", flow=action.get("flow", ""))
    return str(kind)


def summary(document: dict[str, Any]) -> dict[str, Any]:
    """A valid document in plain words: object, trigger, condition and actions."""
    try:
        meta = registry().get(str(document.get("object")))
        object_label = pick(meta.definition.document.get("x-label"), meta.name)
    except NotFound:
        object_label = str(document.get("object"))
    return {
        "label": pick(document.get("x-label"), str(document.get("x-name", ""))),
        "object": object_label,
        "active": document.get("active", True),
        "trigger": trigger_text(document.get("trigger", {})),
        "condition": document.get("condition"),
        "actions": [action_text(a) for a in document.get("actions", [])],
    }
