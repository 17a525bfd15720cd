"""Saved list views (``runtime/views.py``): every signed-in caller has their own, and
sees those shared with a role they hold; administrators share them. Bodies are loaded
and answers dumped through ``api.schemas``; the service keeps its own checks."""

from __future__ import annotations

from typing import Any

from flask import g, jsonify, request

from trellis.exceptions import BadRequest
from trellis.platform.runtime.api import audit_context, bp, caller, commit, json_body, registry
from trellis.platform.runtime.api.schemas import (
    ViewCreateSchema,
    ViewDeleteQuerySchema,
    ViewPageSchema,
    ViewQuerySchema,
    ViewSchema,
    ViewUpdateSchema,
    load,
    row_source,
)
from trellis.platform.runtime.views import ListViewService

VIEW, VIEWS = ViewSchema(), ViewPageSchema()
VIEW_CREATE, VIEW_UPDATE = ViewCreateSchema(), ViewUpdateSchema()
VIEW_QUERY, VIEW_DELETE_QUERY = ViewQuerySchema(), ViewDeleteQuerySchema()


def _views() -> ListViewService:
    return ListViewService(g.session, registry(), caller(), audit_context())


@bp.get("/views")
def list_views() -> Any:
    """``GET /views``: the caller's own saved list views, then those shared with a role they
    hold (``?object=`` narrows them); 400 for an unknown query parameter.
    """
    query = load(VIEW_QUERY, request.args, what="query", refusal=BadRequest)
    items = _views().visible(query.get("object"))
    return jsonify(VIEWS.dump({"items": [row_source(view) for view in items]}))


@bp.post("/views")
def create_view() -> Any:
    """``POST /views``: save a list view (201); 422 for a refused definition, 403 when a
    non-administrator shares it, 409 when the caller has a view of that label.
    """
    data = load(VIEW_CREATE, json_body(), what="view")
    view = _views().create(data)
    body = VIEW.dump(row_source(view))
    commit()
    return jsonify(body), 201


@bp.get("/views/<int:view_id>")
def get_view(view_id: int) -> Any:
    """``GET /views/<id>``: one view the caller may see; 404 otherwise."""
    return jsonify(VIEW.dump(row_source(_views().get(view_id))))


@bp.put("/views/<int:view_id>")
def update_view(view_id: int) -> Any:
    """``PUT /views/<id>``: change a view from the ``version`` read (409 when stale); 403
    unless it is the caller's own unshared view (administrators change any), 404, 422.
    """
    data = load(VIEW_UPDATE, json_body(), what="change")
    view = _views().update(view_id, data)
    body = VIEW.dump(row_source(view))
    commit()
    return jsonify(body)


@bp.delete("/views/<int:view_id>")
def delete_view(view_id: int) -> Any:
    """``DELETE /views/<id>``: delete a view (204), only while ``?version=`` is current when
    given (409 otherwise); 403 as for a change, 404.
    """
    query = load(VIEW_DELETE_QUERY, request.args, what="query", refusal=BadRequest)
    _views().delete(view_id, query.get("version"))
    commit()
    return "", 204
