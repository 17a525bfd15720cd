"""Workflows (administrators change them) and the transitions of records (any caller, as
their roles and the workflow allow)."""

from __future__ import annotations

from typing import Any

from flask import g, jsonify, request

from trellis.platform.runtime.api import (
    audit_context,
    bp,
    caller,
    commit,
    json_body,
    registry,
    require_admin,
)
from trellis.platform.runtime.api.schemas import (
    TransitionBodySchema,
    TransitionPageSchema,
    TransitionResultSchema,
    WorkflowChangeSchema,
    WorkflowPageSchema,
    WorkflowSchema,
    WorkflowVersionPageSchema,
    load,
)
from trellis.platform.runtime.versioning import Saved
from trellis.platform.runtime.workflow.documents import WorkflowService
from trellis.platform.runtime.workflow.transitions import TransitionService

WORKFLOW, WORKFLOW_CHANGE, WORKFLOWS, WORKFLOW_VERSIONS = (
    WorkflowSchema(),
    WorkflowChangeSchema(),
    WorkflowPageSchema(),
    WorkflowVersionPageSchema(),
)
TRANSITION_BODY, TRANSITIONS, TRANSITION_RESULT = (
    TransitionBodySchema(),
    TransitionPageSchema(),
    TransitionResultSchema(),
)


def _workflows() -> WorkflowService:
    return WorkflowService(g.session, registry(), caller().user_id, audit_context())


def _out(saved: Saved) -> dict[str, Any]:
    return {"name": saved.name, "version": saved.version, "workflow": saved.document}


@bp.get("/workflows")
def list_workflows() -> Any:
    """``GET /workflows``: every current workflow, by name (administrators only, else 403)."""
    require_admin()
    documents = registry().workflow_documents()
    items = [
        {"name": name, "version": version, "workflow": document}
        for name, (version, document) in sorted(documents.items())
    ]
    return jsonify(WORKFLOWS.dump({"items": items}))


@bp.post("/workflows")
def create_workflow() -> Any:
    """``POST /workflows``: create a workflow as version 1 (201); 403, 422 naming every
    problem (or the records in states it lacks), 409 when the name exists."""
    require_admin()
    saved = _workflows().create(json_body())
    commit()
    return jsonify(WORKFLOW.dump(_out(saved))), 201


@bp.get("/workflows/<name>")
def get_workflow(name: str) -> Any:
    """``GET /workflows/<name>``: the current document and its version; 403, or 404."""
    require_admin()
    latest = _workflows().versions(name)[0]
    return jsonify(
        WORKFLOW.dump({"name": name, "version": latest.version, "workflow": latest.document})
    )


@bp.put("/workflows/<name>")
def update_workflow(name: str) -> Any:
    """``PUT /workflows/<name>``: a new version (``changed`` false when identical); records in
    removed states are moved by its ``x-state-map`` in the same transaction, or the change
    is refused naming them (422); 403, 404."""
    require_admin()
    saved = _workflows().update(name, json_body())
    commit()
    return jsonify(WORKFLOW_CHANGE.dump({**_out(saved), "changed": saved.created}))


@bp.delete("/workflows/<name>")
def delete_workflow(name: str) -> Any:
    """``DELETE /workflows/<name>``: remove it (its object's status is then a plain field);
    204, 403, 404."""
    require_admin()
    _workflows().delete(name)
    commit()
    return "", 204


@bp.get("/workflows/<name>/versions")
def list_workflow_versions(name: str) -> Any:
    """``GET /workflows/<name>/versions``: every version with its diff, newest first."""
    require_admin()
    return jsonify(WORKFLOW_VERSIONS.dump({"items": _workflows().versions(name)}))


@bp.post("/workflows/<name>/versions/<int:version>/restore")
def restore_workflow_version(name: str, version: int) -> Any:
    """``POST /workflows/<name>/versions/<n>/restore``: version ``n`` current again, as a new
    version (the records in flight are checked as for any change); 403, 404, 422."""
    require_admin()
    saved = _workflows().restore(name, version)
    commit()
    return jsonify(WORKFLOW.dump(_out(saved)))


def _transitions() -> TransitionService:
    return TransitionService(g.session, registry(), caller())


@bp.get("/records/<object_name>/<int:record_id>/transitions")
def list_transitions(object_name: str, record_id: int) -> Any:
    """``GET /records/<object>/<id>/transitions``: those the caller may fire now; 404 for
    an object without a workflow or a record the caller may not read."""
    service = _transitions()
    _meta, workflow = service.workflow_of(object_name)
    items = service.available(object_name, record_id)
    record = service.records.get(object_name, record_id, include_children=False)
    state = workflow.state(record.get(workflow.status_field))
    return jsonify(
        TRANSITIONS.dump(
            {
                "workflow": workflow.name,
                "state": state.name if state else None,
                "category": str(state.category) if state else None,
                "items": [
                    {"name": t.name, "label": t.label, "to": t.target, "comment": str(t.comment)}
                    for t in items
                ],
            }
        )
    )


@bp.post("/records/<object_name>/<int:record_id>/transitions/<name>")
def fire_transition(object_name: str, record_id: int, name: str) -> Any:
    """``POST /records/<object>/<id>/transitions/<name>`` with ``{"comment", "version"}``
    (both optional): 200 with the record; 403 without the right, 404, 409 when not allowed
    from the current state or ``version`` is stale, 422 when the guard is false or the
    required comment is missing. Nothing is written on a refusal."""
    body = load(TRANSITION_BODY, json_body()) if request.get_data(cache=True) else {}
    result = _transitions().fire(
        object_name, record_id, name, body.get("comment"), body.get("version")
    )
    commit()
    return jsonify(TRANSITION_RESULT.dump(result))
