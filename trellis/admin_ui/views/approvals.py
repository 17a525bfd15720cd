"""Approval pages: the approval panel of a record's page (steps, tasks, history and the
signed-in user's actions), the approval inbox with bulk approve, the approvals badge of the
shell, and the out-of-office settings.

Every action is a CSRF-checked POST that calls ``ApprovalService`` — what
``/api/v1/approvals`` and ``/api/v1/records/<o>/<id>/approval`` do — so the rules are the
service's: a task that is not the user's is refused (403), one no longer open 409, a bad
value 422; a refusal is flashed on the page it came from, nothing written.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from flask import flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext

from trellis.admin_ui import bp
from trellis.admin_ui.context import (
    REFUSALS,
    caller,
    commit,
    page_session,
    registry,
    rollback,
    user_choices,
)
from trellis.admin_ui.i18n import pick, told
from trellis.admin_ui.pages import signed_in
from trellis.exceptions import TrellisError
from trellis.platform.runtime.models import as_utc, utcnow
from trellis.platform.runtime.workflow.approvals import (
    ApprovalService,
    clear_out_of_office,
    out_of_office,
    set_out_of_office,
)
from trellis.platform.workflow.approval import Mode

if TYPE_CHECKING:
    from trellis.platform.runtime.records.serialise import Record
    from trellis.platform.runtime.registry import ObjectMeta
    from trellis.platform.workflow.approval import ApprovalFlow, Step

PAGE_SIZE = 25
MAX_BULK = 200  # tasks one bulk approval may decide
# Refusals bulk approve reports per task (one not the user's is 403, an unknown one 404).
SHOWN = frozenset({*REFUSALS, 403, 404})


def _service() -> ApprovalService:
    return ApprovalService(page_session(), registry(), caller())


def pending_approvals() -> int:
    """The signed-in user's pending tasks, for the shell's badge (read with the user)."""
    if g.get("caller") is None or g.get("ui_session") is None:
        return 0
    count = g.get("pending_approvals")
    if count is None:
        count = g.pending_approvals = _service().inbox_count(caller().user_id)
    return int(count)


# --- how things read -----------------------------------------------------------------------


def mode_label(step: Step | None, mode: str, lanes: int) -> str:
    """A step's mode as people read it: 或签 / 会签 / M of N / 依次."""
    if mode == Mode.ANY:
        return _("Any one approves")
    if mode == Mode.ALL:
        return _("All approve")
    if mode == Mode.SEQUENTIAL:
        return _("One after another")
    if step is not None and step.quorum_count is not None:
        if lanes:
            return _("%(count)s of %(total)s approve", count=step.needed(lanes), total=lanes)
        return _("%(count)s of the approvers approve", count=step.quorum_count)
    if step is not None and step.quorum_ratio is not None:
        return _("%(percent)s%% of the approvers approve", percent=round(step.quorum_ratio * 100))
    return _("A quorum approves")


def status_label(status: str) -> str:
    """A request's or a task's status."""
    labels = {
        "pending": _("Pending"),
        "waiting": _("Waiting"),
        "approved": _("Approved"),
        "rejected": _("Rejected"),
        "returned": _("Returned"),
        "recalled": _("Recalled"),
        "cancelled": _("Cancelled"),
    }
    return labels.get(status, status)


def action_label(action: str) -> str:
    """What a history entry records."""
    labels = {
        "submitted": _("Submitted"),
        "cc": _("Copied to"),
        "approved": _("Approved"),
        "rejected": _("Rejected"),
        "handed_over": _("Handed over"),
        "signer_added": _("Added a signer"),
        "recalled": _("Recalled"),
        "returned": _("Returned to the submitter"),
        "returned_to_step": _("Returned to the step"),
        "step_approved": _("Step approved"),
        "step_rejected": _("Step rejected"),
        "step_skipped": _("Step skipped"),
        "step_started": _("Step started"),
        "auto_approved": _("Approved automatically (deadline)"),
        "auto_rejected": _("Rejected automatically (deadline)"),
        "reminded": _("Reminded (deadline)"),
        "escalated": _("Escalated (deadline)"),
        "escalation_failed": _("Escalation found nobody (deadline)"),
        "completed": _("Completed"),
    }
    return labels.get(action, action.replace("_", " "))


def moment(value: str | None) -> str:
    """An ISO moment of the state JSON as the pages show it (UTC, to the minute)."""
    if not value:
        return "—"
    return value.replace("T", " ")[:16] + " UTC"


def _overdue(due: str | None, now: dt.datetime) -> bool:
    if not due:
        return False
    return as_utc(dt.datetime.fromisoformat(due.replace("Z", "+00:00"))) <= now


def _flow_of(meta: ObjectMeta, transition: str | None) -> ApprovalFlow | None:
    workflow = meta.workflow
    if workflow is None or transition is None:
        return None
    found = workflow.transition(transition)
    return found.approval if found is not None else None


# --- the record page's panel ---------------------------------------------------------------


def approval_panel(meta: ObjectMeta, record: Record) -> dict[str, Any] | None:
    """What a record's page shows of its approval (``None``: its workflow has none)."""
    workflow = meta.workflow
    if workflow is None or not workflow.has_approvals or record.get("deleted_at"):
        return None
    state = _service().state(meta.name, int(record["id"]))
    request_state = state["request"]
    status = record.get(workflow.status_field)
    submits = [t.name for t in workflow.transitions_from(status) if t.approval]
    if request_state is None and not submits:
        return None
    flow = None
    if request_state is not None:
        flow = _flow_of(meta, request_state.get("transition"))
    labels = {s["name"]: pick(s["label"], s["name"]) for s in state["steps"]}
    lanes: dict[str, set[tuple[int, int]]] = {}
    for task in state["tasks"]:
        lanes.setdefault(task["step"], set()).add((task["round"], task["lane"]))
    steps = []
    for item in state["steps"]:
        step = flow.step(item["name"]) if flow is not None else None
        rounds = [r for r, _lane in lanes.get(item["name"], set())]
        count = len([1 for r, _lane in lanes.get(item["name"], set()) if r == max(rounds)])
        steps.append(
            {
                **item,
                "label": labels[item["name"]],
                "mode_label": mode_label(step, item["mode"], count if rounds else 0),
            }
        )
    now = utcnow()
    pending = request_state is not None and request_state["status"] == "pending"
    mine = [t for t in state["tasks"] if t["mine"] and t["status"] in ("pending", "waiting")]
    current = next((i for i, s in enumerate(steps) if s["state"] == "current"), None)
    earlier = [s for i, s in enumerate(steps) if current is not None and i < current]
    tasks = [
        {
            **t,
            "step_label": labels.get(t["step"], t["step"]),
            "status_label": status_label(t["status"]),
            "due": moment(t["due_at"]),
            "overdue": t["status"] == "pending" and _overdue(t["due_at"], now),
            "decided": moment(t["decided_at"]),
        }
        for t in state["tasks"]
    ]
    history = [
        {
            **e,
            "when": moment(e["at"]),
            "action_label": action_label(e["action"]),
            "step_label": labels.get(e["step"], e["step"]) if e["step"] else "",
            "detail_text": _detail_text(e),
        }
        for e in state["history"]
    ]
    return {
        "request": request_state,
        "status_label": status_label(request_state["status"]) if request_state else "",
        "submitted": moment(request_state["submitted_at"]) if request_state else "",
        "pending": pending,
        "steps": steps,
        "tasks": tasks,
        "history": history,
        "my_tasks": [t for t in tasks if t["id"] in {m["id"] for m in mine}],
        "return_to": earlier,
        "submits": submits,
    }


def _detail_text(event: dict[str, Any]) -> str:
    detail = event.get("detail") or {}
    to = detail.get("to")
    if event["action"] == "rejected" and isinstance(to, str):
        if to == "end":
            return _("to the end")
        if to == "submitter":
            return _("back to the submitter")
        return _("back to the step %(step)s", step=to)
    if event["action"] in ("handed_over",) and isinstance(to, int):
        return _("to %(user)s", user=_user_name(to))
    if event["action"] == "signer_added" and isinstance(detail.get("user"), int):
        if detail.get("position") == "before":
            return _("%(user)s, before", user=_user_name(detail["user"]))
        return _("%(user)s, after", user=_user_name(detail["user"]))
    if event["action"] == "cc" and isinstance(detail.get("users"), list):
        return ", ".join(_user_name(u) for u in detail["users"] if isinstance(u, int))
    return ""


def _user_name(user_id: int) -> str:
    return dict(user_choices()).get(user_id, f"#{user_id}")


def edit_blocked(meta: ObjectMeta, record_id: int) -> bool:
    """Whether a record's form is read-only for the user: it awaits approval and the user
    holds no pending task of the current step that opens fields to its approvers."""
    workflow = meta.workflow
    if workflow is None or not workflow.has_approvals:
        return False
    state = _service().state(meta.name, record_id)
    request_state = state["request"]
    if request_state is None or request_state["status"] != "pending":
        return False
    current = next((s for s in state["steps"] if s["state"] == "current"), None)
    holds = any(
        t["mine"] and t["status"] == "pending" and t["step"] == request_state["step"]
        for t in state["tasks"]
    )
    return not (current and current["editable"] and holds)


# --- actions -------------------------------------------------------------------------------


def _back(default: str) -> str:
    from trellis.admin_ui import safe_next

    target = request.form.get("next")
    return safe_next(target) if target else default


def _refused(exc: TrellisError) -> None:
    """Flash a refusal (bad input, a conflict); a task not the user's (403) or unknown
    (404) goes to the app's error page, as any page out of the user's reach does."""
    if exc.status not in REFUSALS:
        raise exc
    rollback()
    details = [told(d["message"]) for d in exc.details if d.get("message")]
    text = told(exc.message)
    extra = [d for d in details if d != text]
    flash(text + (" — " + "; ".join(extra) if extra else ""), "error")


@bp.post("/o/<object_name>/<int:record_id>/approval/recall")
@signed_in
def approval_recall(object_name: str, record_id: int) -> Any:
    """Recall the record's pending request (the submitter, before anyone acted)."""
    from trellis.admin_ui.context import records

    records().get(object_name, record_id, include_children=False)  # 404 out of scope
    try:
        _service().recall(object_name, record_id, request.form.get("comment"))
        commit()
        flash(_("Recalled."), "info")
    except TrellisError as exc:
        _refused(exc)
    return redirect(url_for("ui.record_detail", object_name=object_name, record_id=record_id))


ACTIONS = ("approve", "reject", "handover", "add_signer")


@bp.post("/approvals/<int:task_id>")
@signed_in
def approval_act(task_id: int) -> Any:
    """Act on one's own task: ``action`` approve, reject (``to``: end, submitter or an
    earlier step), handover (``user``) or add_signer (``user``, ``position``), with a
    ``comment``; then back to ``next`` (the record's page) or the inbox."""
    action = request.form.get("action", "")
    back = _back(url_for("ui.approval_inbox"))
    if action not in ACTIONS:
        flash(_("Choose what to do with the task."), "error")
        return redirect(back)
    comment = request.form.get("comment")
    user = _user_value(request.form.get("user", ""))
    service = _service()
    try:
        if action in ("approve", "reject"):
            to = request.form.get("to") or None if action == "reject" else None
            service.decide(task_id, action, comment, to)
        elif action == "handover":
            service.handover(task_id, user, comment)
        else:
            service.add_signer(task_id, user, request.form.get("position") or "after", comment)
        commit()
        done = {
            "approve": _("Approved."),
            "reject": _("Rejected."),
            "handover": _("Handed over."),
            "add_signer": _("Signer added."),
        }
        flash(done[action], "info")
    except TrellisError as exc:
        _refused(exc)
    return redirect(back)


def _user_value(text: str) -> int | str | None:
    text = text.strip()
    if not text:
        return None
    return int(text) if text.isdigit() and len(text) < 19 else text


# --- the inbox -----------------------------------------------------------------------------


def approval_objects() -> list[tuple[str, str]]:
    """The objects whose workflows have approvals: the inbox's object filter."""
    return sorted(
        (
            (m.name, pick(m.definition.label, m.name))
            for m in registry().all()
            if m.workflow is not None and m.workflow.has_approvals
        ),
        key=lambda item: item[1],
    )


@bp.get("/approvals")
@signed_in
def approval_inbox() -> Any:
    """``/approvals?object=&overdue=1&after=``: the user's pending tasks, oldest first."""
    objects = approval_objects()
    chosen = request.args.get("object", "")
    if chosen not in {name for name, _label in objects}:
        chosen = ""
    overdue = request.args.get("overdue") == "1"
    after_text = request.args.get("after", "")
    after = int(after_text) if after_text.isdigit() and len(after_text) < 19 else None
    rows = _service().inbox(
        caller().user_id,
        object_name=chosen or None,
        overdue=overdue,
        limit=PAGE_SIZE + 1,
        after=after,
    )
    now = utcnow()
    items = [
        {
            **row,
            "object_text": pick(row["object_label"], row["object"]),
            "step_text": pick(row["step_label"], row["step"]),
            "submitted": moment(row["submitted_at"]),
            "due": moment(row["due_at"]),
            "overdue": _overdue(row["due_at"], now),
        }
        for row in rows[:PAGE_SIZE]
    ]
    return render_template(
        "ui/approvals/inbox.html",
        items=items,
        objects=objects,
        chosen=chosen,
        overdue=overdue,
        after=after,
        next_after=rows[PAGE_SIZE - 1]["id"] if len(rows) > PAGE_SIZE else None,
        count=pending_approvals(),
    )


@bp.post("/approvals/bulk-approve")
@signed_in
def approval_bulk() -> Any:
    """Approve the ticked tasks with one comment: each in its own savepoint, so one refusal
    does not undo the others; then how many were approved and which were refused, why."""
    ids = [int(v) for v in request.form.getlist("task") if v.isdigit() and len(v) < 19]
    ids = list(dict.fromkeys(ids))[:MAX_BULK]
    back = _back(url_for("ui.approval_inbox"))
    if not ids:
        flash(_("Tick the tasks to approve."), "error")
        return redirect(back)
    service = _service()
    session = page_session()
    known = {row["id"]: row for row in service.inbox(caller().user_id, limit=MAX_BULK)}
    comment = request.form.get("comment")
    approved = 0
    refused: list[str] = []
    for task_id in ids:
        savepoint = session.begin_nested()
        try:
            service.decide(task_id, "approve", comment)
            savepoint.commit()
            approved += 1
        except TrellisError as exc:
            if exc.status not in SHOWN:
                raise
            savepoint.rollback()
            row = known.get(task_id)
            name = (
                f"{pick(row['object_label'], row['object'])} {row['title']}"
                if row
                else _("Task %(id)s", id=task_id)
            )
            refused.append(_("%(name)s: %(reason)s", name=name, reason=told(exc.message)))
    commit()
    if approved:
        flash(ngettext("%(num)d task approved.", "%(num)d tasks approved.", approved), "info")
    if refused:
        flash(
            ngettext("%(num)d task refused:", "%(num)d tasks refused:", len(refused))
            + " "
            + "; ".join(refused),
            "error",
        )
    return redirect(back)


# --- out of office -------------------------------------------------------------------------


@bp.route("/approvals/out-of-office", methods=["GET", "POST"])
@signed_in
def approval_out_of_office() -> Any:
    """``/approvals/out-of-office``: who takes the user's approval tasks, from the first to
    the last day; POST saves it (refusals shown at their field, what was typed kept)."""
    session = page_session()
    user_id = caller().user_id
    current = out_of_office(session, user_id)
    errors: dict[str, str] = {}
    values = {
        "delegate": str(current["delegate"]["id"]) if current and current["delegate"] else "",
        "starts_on": current["starts_on"] if current else "",
        "ends_on": current["ends_on"] if current else "",
    }
    status = 200
    if request.method == "POST":
        values = {key: request.form.get(key, "").strip() for key in values}
        dates: dict[str, dt.date] = {}
        for key in ("starts_on", "ends_on"):
            try:
                dates[key] = dt.date.fromisoformat(values[key])
            except ValueError:
                errors[key] = _("Enter a date such as 2027-03-01.")
        delegate = _user_value(values["delegate"])
        if delegate is None:
            errors["delegate"] = _("Choose who stands in for you.")
        if not errors:
            try:
                set_out_of_office(session, user_id, delegate, dates["starts_on"], dates["ends_on"])
                commit()
                flash(_("Saved."), "info")
                return redirect(url_for("ui.approval_out_of_office"))
            except TrellisError as exc:
                if exc.status not in REFUSALS:
                    raise
                rollback()
                for detail in exc.details:
                    field = detail.get("field", "")
                    key = "delegate" if field == "user" else field
                    errors[key if key in values else ""] = told(detail["message"])
                if not exc.details:
                    errors[""] = told(exc.message)
        status = 422
    return (
        render_template(
            "ui/approvals/out_of_office.html",
            current=current,
            values=values,
            errors=errors,
            people=[(i, name) for i, name in user_choices() if i != user_id],
        ),
        status,
    )


@bp.post("/approvals/out-of-office/clear")
@signed_in
def approval_out_of_office_clear() -> Any:
    """Back in the office: tasks reach the user again."""
    clear_out_of_office(page_session(), caller().user_id)
    commit()
    flash(_("You are back in the office: approval tasks reach you again."), "info")
    return redirect(url_for("ui.approval_out_of_office"))
