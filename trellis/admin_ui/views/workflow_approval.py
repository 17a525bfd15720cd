"""The workflow designer's approval form: give a transition an approval (the transition
then submits for it) and edit its steps — name, bilingual label, approvers (type and
value), mode and quorum, entry condition, editable fields, deadline — and the outcome
transitions (approved, rejected, returned, recalled).

The page builds the whole new workflow document from the current one plus the form and
saves it through ``WorkflowService`` (a new version), as ``PUT /api/v1/workflows/<name>``
does; the service's refusals come back by JSON pointer and are shown at the input that
produced them (``/transitions/0/approval/steps/1/approvers/0`` → that approver's value).
A step's branches (``next``), the approval's ``cc`` and ``calendar`` are kept as they
were (edited through the API).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from trellis.admin_ui import bp
from trellis.admin_ui.context import REFUSALS, commit, rollback
from trellis.admin_ui.i18n import pick, told
from trellis.admin_ui.pages import admin_only
from trellis.admin_ui.views.workflows import _workflows
from trellis.exceptions import NotFound, TrellisError
from trellis.platform.messages import N_
from trellis.platform.workflow.approval import DeadlineAction, Mode

APPROVER_TYPES = ("user", "role", "manager", "field", "partner_admins")
OUTCOMES = ("approved", "rejected", "returned", "recalled")
BLANK_STEPS = 1
BLANK_APPROVERS = 1


def approver_label(kind: str) -> str:
    """An approver type as people read it."""
    labels = {
        "user": _("User (e-mail)"),
        "role": _("Role"),
        "manager": _("Submitter's manager (levels up)"),
        "field": _("User field of the record"),
        "partner_admins": _("Partner's users with the role"),
    }
    return labels.get(kind, kind)


def mode_choice(mode: str) -> str:
    """A step mode as the designer offers it."""
    labels = {
        "any": _("Any one approves (或签)"),
        "all": _("All approve (会签)"),
        "quorum": _("M of N approve"),
        "sequential": _("One after another (依次)"),
    }
    return labels.get(mode, mode)


def deadline_choice(action: str) -> str:
    """What a deadline does, as the designer offers it."""
    labels = {
        "": _("No deadline"),
        "remind": _("Remind"),
        "escalate": _("Escalate"),
        "approve": _("Approve automatically"),
        "reject": _("Reject automatically"),
    }
    return labels.get(action, action)


def outcome_label(outcome: str) -> str:
    """An outcome of the approval (the transition it fires)."""
    labels = {
        "approved": _("When approved, fire"),
        "rejected": _("When rejected, fire"),
        "returned": _("When returned to the submitter, fire"),
        "recalled": _("When recalled, fire"),
    }
    return labels.get(outcome, outcome)


@bp.route("/setup/workflows/<name>/transitions/<transition>/approval", methods=["GET", "POST"])
@admin_only
def workflow_approval(name: str, transition: str) -> Any:
    """``/setup/workflows/<name>/transitions/<t>/approval``: the transition's approval;
    POST saves a new version of the workflow (refusals at their inputs, 422)."""
    service = _workflows()
    latest = service.versions(name)[0]
    document = copy.deepcopy(dict(latest.document))
    index = next(
        (i for i, t in enumerate(document.get("transitions", [])) if t.get("name") == transition),
        None,
    )
    if index is None:
        raise NotFound(N_("%(name)s is not a transition", name=repr(transition)))
    current = document["transitions"][index]
    errors: dict[str, str] = {}
    top: list[str] = []
    status = 200
    rows: list[tuple[int, list[int]]] = []
    approval = current.get("approval")
    if request.method == "POST":
        approval, rows = approval_from_form(request.form, current.get("approval") or {})
        if approval is None:
            current.pop("approval", None)
        else:
            current["approval"] = approval
        try:
            expected = request.form.get("version", "")
            service.update(
                name, document, expected_version=int(expected) if expected.isdigit() else None
            )
            commit()
            flash(_("Saved."), "info")
            return redirect(url_for("ui.workflow_approval", name=name, transition=transition))
        except TrellisError as exc:
            if exc.status not in REFUSALS:
                raise
            rollback()
            details = exc.details or [{"field": "", "message": exc.message}]
            for detail in details:
                key = input_of(str(detail.get("field", "")), index, rows)
                text = told(detail["message"])
                if key is None:
                    pointer = detail.get("field")
                    top.append(f"{pointer}: {text}" if pointer else text)
                else:
                    errors.setdefault(key, text)
            status = 422
    steps = list((approval or {}).get("steps", []))
    return (
        render_template(
            "ui/setup/workflow_approval.html",
            name=name,
            version=latest.version,
            workflow_label=pick(document.get("x-label"), name),
            transition=current,
            transition_label=pick(current.get("label"), transition),
            enabled=approval is not None,
            approval=approval or {},
            steps=steps,
            step_rows=len(steps) + BLANK_STEPS,
            blank_approvers=BLANK_APPROVERS,
            transitions=[t.get("name", "") for t in document.get("transitions", [])],
            errors=errors,
            top=top,
            approver_types=APPROVER_TYPES,
            modes=[m.value for m in Mode],
            deadline_actions=["", *(a.value for a in DeadlineAction)],
            outcomes=OUTCOMES,
            approver_label=approver_label,
            mode_choice=mode_choice,
            deadline_choice=deadline_choice,
            outcome_label=outcome_label,
        ),
        status,
    )


def _number(text: str, kind: type[int] | type[float]) -> Any:
    """A number typed, or the text itself (the meta-schema then refuses it, at its pointer)."""
    try:
        return kind(text)
    except ValueError:
        return text


def _names(text: str) -> list[str]:
    return [part for part in re.split(r"[\s,]+", text) if part]


def approval_from_form(
    form: Any, previous: dict[str, Any]
) -> tuple[dict[str, Any] | None, list[tuple[int, list[int]]]]:
    """The approval the form describes (``None``: the transition has none), and for each of
    its steps the form row it came from with its approvers' rows (empty rows are dropped)."""
    if form.get("enabled") != "1":
        return None, []
    approval: dict[str, Any] = {}
    for outcome in OUTCOMES:
        value = form.get(outcome, "").strip()
        if value:
            approval[outcome] = value
    kept = {s.get("name"): s for s in previous.get("steps", []) if isinstance(s, dict)}
    steps: list[dict[str, Any]] = []
    rows: list[tuple[int, list[int]]] = []
    for row in range(min(int(_number(form.get("step_rows", "0"), int) or 0), 40)):
        key = f"step-{row}-"
        step_name = form.get(key + "name", "").strip()
        if not step_name:
            continue
        step: dict[str, Any] = {
            "name": step_name,
            "label": {
                "en": form.get(key + "en", "").strip(),
                "zh-CN": form.get(key + "zh", "").strip(),
            },
            "approvers": [],
        }
        approver_rows: list[int] = []
        for j in range(min(int(_number(form.get(key + "approver_rows", "0"), int) or 0), 40)):
            kind = form.get(f"{key}approver-{j}-type", "")
            value = form.get(f"{key}approver-{j}-value", "").strip()
            if not value or kind not in APPROVER_TYPES:
                continue
            step["approvers"].append({kind: _number(value, int) if kind == "manager" else value})
            approver_rows.append(j)
        mode = form.get(key + "mode", "any")
        if mode != Mode.ANY:
            step["mode"] = mode
        if mode == Mode.QUORUM:
            count = form.get(key + "quorum_count", "").strip()
            ratio = form.get(key + "quorum_ratio", "").strip()
            if count:
                step["quorum"] = {"count": _number(count, int)}
            elif ratio:
                step["quorum"] = {"ratio": _number(ratio, float)}
        when = form.get(key + "when", "").strip()
        if when:
            step["when"] = when
        editable = _names(form.get(key + "editable", ""))
        if editable:
            step["editable"] = editable
        action = form.get(key + "deadline_action", "")
        if action:
            amount = form.get(key + "deadline_amount", "").strip()
            unit = "hours" if form.get(key + "deadline_unit") == "hours" else "days"
            deadline: dict[str, Any] = {unit: _number(amount, int), "action": action}
            to_type = form.get(key + "deadline_to_type", "")
            to_value = form.get(key + "deadline_to_value", "").strip()
            if to_value and to_type in APPROVER_TYPES:
                deadline["to"] = {
                    to_type: _number(to_value, int) if to_type == "manager" else to_value
                }
            step["deadline"] = deadline
        branches = (kept.get(step_name) or {}).get("next")
        if branches:
            step["next"] = branches
        steps.append(step)
        rows.append((row, approver_rows))
    approval["steps"] = steps
    for kept_key in ("cc", "calendar"):
        if kept_key in previous:
            approval[kept_key] = previous[kept_key]
    return approval, rows


_STEP_INPUTS = [
    ("name", "name"),
    ("label/zh-CN", "zh"),
    ("label", "en"),
    ("mode", "mode"),
    ("quorum/ratio", "quorum_ratio"),
    ("quorum", "quorum_count"),
    ("when", "when"),
    ("editable", "editable"),
    ("deadline/to", "deadline_to_value"),
    ("deadline/action", "deadline_action"),
    ("deadline", "deadline_amount"),
]


def input_of(pointer: str, index: int, rows: list[tuple[int, list[int]]]) -> str | None:
    """The form input a refusal's JSON pointer names (``None``: shown at the top)."""
    prefix = f"/transitions/{index}/approval"
    if pointer != prefix and not pointer.startswith(prefix + "/"):
        return None
    rest = pointer[len(prefix) :].strip("/").split("/")
    if rest[0] in OUTCOMES:
        return rest[0]
    if rest[0] != "steps" or len(rest) < 2 or not rest[1].isdigit():
        return None
    position = int(rest[1])
    if position >= len(rows):
        return None
    row, approver_rows = rows[position]
    key = f"step-{row}-"
    tail = "/".join(rest[2:])
    if tail.startswith("approvers"):
        parts = tail.split("/")
        which = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        return f"{key}approver-{approver_rows[which] if which < len(approver_rows) else 0}-value"
    for start, name in _STEP_INPUTS:
        if tail == start or tail.startswith(start + "/"):
            return key + name
    return key + "name"
