"""Approvals: submitting a record and recalling it, its flow's state and history, the
caller's inbox, deciding tasks, and the caller's out-of-office delegate."""

from __future__ import annotations

from typing import Any

from flask import g, jsonify, request

from trellis.exceptions import BadRequest
from trellis.platform.messages import N_
from trellis.platform.runtime.api import bp, caller, commit, json_body, registry
from trellis.platform.runtime.api.schemas import (
    ApprovalDecisionSchema,
    ApprovalStateSchema,
    ApprovalSubmitSchema,
    InboxPageSchema,
    OutOfOfficeSchema,
    load,
)
from trellis.platform.runtime.workflow.approvals import (
    ApprovalService,
    clear_out_of_office,
    out_of_office,
    set_out_of_office,
)

SUBMIT_BODY = ApprovalSubmitSchema()
DECISION_BODY = ApprovalDecisionSchema()
STATE = ApprovalStateSchema()
INBOX = InboxPageSchema()
OUT_OF_OFFICE = OutOfOfficeSchema()
MAX_PAGE = 200


def _service() -> ApprovalService:
    return ApprovalService(g.session, registry(), caller())


def _body(schema: Any) -> dict[str, Any]:
    return load(schema, json_body()) if request.get_data(cache=True) else {}


@bp.get("/records/<object_name>/<int:record_id>/approval")
def get_approval(object_name: str, record_id: int) -> Any:
    """``GET /records/<object>/<id>/approval``: the latest request (steps, tasks, history);
    404 for a record the caller may not read."""
    from trellis.platform.runtime.records import RecordService

    RecordService(g.session, registry(), caller()).get(
        object_name, record_id, include_children=False
    )
    return jsonify(STATE.dump(_service().state(object_name, record_id)))


@bp.post("/records/<object_name>/<int:record_id>/approval")
def submit_approval(object_name: str, record_id: int) -> Any:
    """``POST /records/<object>/<id>/approval`` with ``{"comment", "version"}``: submit it
    (the transition that carries the approval fires; its rules apply). 201 with the state;
    409 when nothing submits from the record's state or it is already pending."""
    body = _body(SUBMIT_BODY)
    state = _service().submit(object_name, record_id, body.get("comment"), body.get("version"))
    commit()
    return jsonify(STATE.dump(state)), 201


@bp.post("/records/<object_name>/<int:record_id>/approval/recall")
def recall_approval(object_name: str, record_id: int) -> Any:
    """``POST …/approval/recall``: the submitter takes it back before anyone acted (撤回);
    403 for anyone else, 409 once an approver has acted."""
    body = _body(SUBMIT_BODY)
    state = _service().recall(object_name, record_id, body.get("comment"))
    commit()
    return jsonify(STATE.dump(state))


@bp.get("/approvals/inbox")
def approval_inbox() -> Any:
    """``GET /approvals/inbox?object=&overdue=1&limit=&after=``: the caller's pending
    tasks, oldest first."""
    who = caller()
    try:
        limit = min(int(request.args.get("limit", 50)), MAX_PAGE)
        after = int(request.args["after"]) if request.args.get("after") else None
    except ValueError:
        raise BadRequest(N_("limit and after are whole numbers")) from None
    if limit < 1:
        raise BadRequest(N_("limit is at least 1"))
    service = _service()
    items = service.inbox(
        who.user_id,
        object_name=request.args.get("object") or None,
        overdue=request.args.get("overdue") in ("1", "true"),
        limit=limit,
        after=after,
    )
    page = {
        "items": items,
        "count": service.inbox_count(who.user_id),
        "next_after": items[-1]["id"] if len(items) == limit else None,
    }
    return jsonify(INBOX.dump(page))


@bp.post("/approvals/<int:task_id>/<action>")
def act_on_task(task_id: int, action: str) -> Any:
    """``POST /approvals/<task>/approve|reject|handover|add_signer`` with ``{"comment",
    "to", "user", "position", "attachments"}``: 200 with the record's approval state; 403
    not the caller's task, 404 unknown, 409 not open, 422 a bad body."""
    body = _body(DECISION_BODY)
    service = _service()
    if action in ("approve", "reject"):
        state = service.decide(
            task_id, action, body.get("comment"), body.get("to"), body.get("attachments")
        )
    elif action == "handover":
        state = service.handover(task_id, body.get("user"), body.get("comment"))
    elif action == "add_signer":
        state = service.add_signer(
            task_id, body.get("user"), body.get("position") or "after", body.get("comment")
        )
    else:
        from trellis.exceptions import NotFound

        raise NotFound(N_("unknown approval action %(name)s", name=repr(action)))
    commit()
    return jsonify(STATE.dump(state))


@bp.get("/approvals/out-of-office")
def get_out_of_office() -> Any:
    """``GET /approvals/out-of-office``: the caller's delegate and dates (``null``: none)."""
    return jsonify({"out_of_office": out_of_office(g.session, caller().user_id)})


@bp.put("/approvals/out-of-office")
def put_out_of_office() -> Any:
    """``PUT /approvals/out-of-office`` with ``{"delegate", "starts_on", "ends_on"}``."""
    body = load(OUT_OF_OFFICE, json_body())
    found = set_out_of_office(
        g.session, caller().user_id, body["delegate"], body["starts_on"], body["ends_on"]
    )
    commit()
    return jsonify({"out_of_office": found})


@bp.delete("/approvals/out-of-office")
def delete_out_of_office() -> Any:
    """``DELETE /approvals/out-of-office``: back in the office."""
    clear_out_of_office(g.session, caller().user_id)
    commit()
    return jsonify({"out_of_office": None})
