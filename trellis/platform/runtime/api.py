"""The REST API under ``/api/v1``: metadata, records and the OpenAPI document.

Views parse input and shape output; the services do the work. Each request is one
unit of work: the session opened in ``before_request`` is committed by the view
that changes something and rolled back by ``teardown`` otherwise, so a failure at
any step leaves nothing half-applied.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Flask, current_app, g, jsonify, request

from trellis.exceptions import BadRequest, Forbidden
from trellis.extensions import db
from trellis.platform.runtime.auth import Caller, authenticate_token
from trellis.platform.runtime.objects import ObjectService
from trellis.platform.runtime.openapi import openapi_document
from trellis.platform.runtime.query import parse_list_query
from trellis.platform.runtime.records import RecordService
from trellis.platform.runtime.registry import MetaRegistry

bp = Blueprint("api", __name__, url_prefix="/api/v1")

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def registry() -> MetaRegistry:
    registry: MetaRegistry = current_app.extensions["trellis.registry"]
    return registry


@bp.before_request
def open_unit_of_work() -> None:
    session = db.session()
    g.session = session
    if request.method in WRITE_METHODS:
        # SQLite: take the write lock up front (BEGIN IMMEDIATE) so writers queue.
        session.connection(execution_options={"trellis_write": True})
    g.caller = authenticate_token(session, request.headers.get("Authorization"))
    registry().ensure_current(session)


@bp.teardown_request
def close_unit_of_work(_exc: BaseException | None) -> None:
    session = g.pop("session", None)
    if session is None:
        return
    if session.info.pop("metadata_changed", False):
        registry().invalidate()  # built from a transaction that did not commit
    session.close()  # rolls back anything not committed


def caller() -> Caller:
    who: Caller = g.caller
    return who


def require_admin() -> None:
    if not caller().is_admin:
        raise Forbidden("only administrators may change metadata")


def json_body() -> Any:
    raw = request.get_data(cache=True)
    if not raw:
        raise BadRequest("the request needs a JSON body")
    try:
        return json.loads(raw, parse_constant=_not_json)
    except ValueError as exc:
        raise BadRequest(
            "the request body is not valid JSON", [{"field": "", "message": str(exc)}]
        ) from None
    except RecursionError:
        raise BadRequest(
            "the request body is nested too deeply", [{"field": "", "message": "too deep"}]
        ) from None


def _not_json(constant: str) -> Any:
    """Python's json accepts NaN and Infinity; JSON does not."""
    raise ValueError(f"{constant} is not a JSON value")


def objects() -> ObjectService:
    return ObjectService(g.session, registry(), caller().user_id)


def records() -> RecordService:
    return RecordService(g.session, registry(), caller().user_id)


def commit() -> None:
    g.session.commit()
    g.session.info.pop("metadata_changed", None)


# --- metadata ------------------------------------------------------------------------


def _definition_out(name: str, version: int, document: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "version": version, "definition": document}


@bp.get("/objects")
def list_objects() -> Any:
    items = [
        {
            "name": meta.name,
            "label": meta.definition.label,
            "version": meta.version,
            "fields": len(meta.fields),
        }
        for meta in sorted(registry().all(), key=lambda m: m.name)
    ]
    return jsonify({"items": items})


@bp.post("/objects")
def create_object() -> Any:
    require_admin()
    result = objects().create(json_body())
    commit()
    return jsonify(_definition_out(result.name, result.version, result.document)), 201


@bp.get("/objects/<name>")
def get_object(name: str) -> Any:
    meta = registry().get(name)
    return jsonify(_definition_out(meta.name, meta.version, meta.definition.document))


@bp.put("/objects/<name>")
def update_object(name: str) -> Any:
    require_admin()
    result = objects().update(name, json_body())
    commit()
    body = _definition_out(result.name, result.version, result.document)
    body["changed"] = result.created
    return jsonify(body)


@bp.get("/objects/<name>/versions")
def list_versions(name: str) -> Any:
    items = [
        {
            "version": row.version,
            "author_id": row.author_id,
            "created_at": row.created_at.isoformat(),
            "summary": row.summary,
            "diff": row.diff,
            "restored_from": row.restored_from,
        }
        for row in objects().versions(name)
    ]
    return jsonify({"items": items})


@bp.get("/objects/<name>/versions/<int:version>")
def get_version(name: str, version: int) -> Any:
    return jsonify(_definition_out(name, version, objects().version_document(name, version)))


@bp.post("/objects/<name>/versions/<int:version>/restore")
def restore_version(name: str, version: int) -> Any:
    require_admin()
    result = objects().restore(name, version)
    commit()
    return jsonify(_definition_out(result.name, result.version, result.document))


# --- records -------------------------------------------------------------------------


@bp.get("/records/<object_name>")
def list_records(object_name: str) -> Any:
    meta = registry().get(object_name)
    args = request.args
    query = parse_list_query(
        meta,
        filter_text=args.get("filter"),
        sort_text=args.get("sort"),
        limit_text=args.get("limit"),
        cursor=args.get("cursor"),
        fields_text=args.get("fields"),
        default_limit=current_app.config["PAGE_SIZE_DEFAULT"],
        max_limit=current_app.config["PAGE_SIZE_MAX"],
    )
    return jsonify(records().list_page(object_name, query))


@bp.post("/records/<object_name>")
def create_record(object_name: str) -> Any:
    record = records().create(object_name, json_body())
    commit()
    return jsonify(record), 201


@bp.get("/records/<object_name>/<int:record_id>")
def get_record(object_name: str, record_id: int) -> Any:
    return jsonify(records().get(object_name, record_id))


@bp.patch("/records/<object_name>/<int:record_id>")
def update_record(object_name: str, record_id: int) -> Any:
    record = records().update(object_name, record_id, json_body())
    commit()
    return jsonify(record)


@bp.delete("/records/<object_name>/<int:record_id>")
def delete_record(object_name: str, record_id: int) -> Any:
    records().delete(object_name, record_id)
    commit()
    return "", 204


@bp.post("/records/<object_name>/<int:record_id>/restore")
def restore_record(object_name: str, record_id: int) -> Any:
    record = records().restore(object_name, record_id)
    commit()
    return jsonify(record)


@bp.get("/records/<object_name>/<int:record_id>/history")
def record_history(object_name: str, record_id: int) -> Any:
    return jsonify({"items": records().history(object_name, record_id)})


@bp.get("/openapi.json")
def openapi() -> Any:
    return jsonify(openapi_document(registry(), request.host_url.rstrip("/")))


def init_app(app: Flask) -> None:
    app.extensions["trellis.registry"] = MetaRegistry()
    app.register_blueprint(bp)
