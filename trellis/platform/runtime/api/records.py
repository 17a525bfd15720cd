"""Records: list, export, create, read, update, delete, restore, history; and OpenAPI."""

from __future__ import annotations

from typing import Any

from flask import current_app, jsonify, request

from trellis.exceptions import BadRequest
from trellis.platform.messages import N_
from trellis.platform.metadata.permissions import Operation
from trellis.platform.runtime.api import (
    bp,
    caller,
    commit,
    json_body,
    record_service,
    registry,
)
from trellis.platform.runtime.imports.sheets import XLSX_MIME, ImportFormat, write_xlsx
from trellis.platform.runtime.openapi import openapi_document
from trellis.platform.runtime.query import parse_list_query
from trellis.platform.runtime.records import RecordService
from trellis.platform.runtime.records.serialise import as_csv


def _list_query(service: RecordService, object_name: str, operation: Operation) -> Any:
    """The request's list parameters, checked — after the right to ``operation`` is: without
    it the answer is 403 whatever the query says."""
    meta = registry().get(object_name)
    service.access.require(meta, operation)
    args = request.args
    return parse_list_query(
        meta,
        filter_text=args.get("filter"),
        sort_text=args.get("sort"),
        limit_text=args.get("limit"),
        cursor=args.get("cursor"),
        fields_text=args.get("fields"),
        default_limit=current_app.config["PAGE_SIZE_DEFAULT"],
        max_limit=current_app.config["PAGE_SIZE_MAX"],
        hidden=service.access.hidden(meta),
    )


@bp.get("/records/<object_name>")
def list_records(object_name: str) -> Any:
    """``GET /records/<object>``: one page of the records the caller may read, filtered,
    sorted and paged by cursor; 403 without the read right, 400 for a bad query, 404.
    """
    service = record_service()
    query = _list_query(service, object_name, Operation.READ)
    return jsonify(service.list_page(object_name, query))


@bp.get("/records/<object_name>/export")
def export_records(object_name: str) -> Any:
    """CSV (or with ``?format=xlsx``, XLSX) of every record the filter matches, within the
    caller's export scope."""
    kind = export_format(request.args.get("format"))
    service = record_service()
    query = _list_query(service, object_name, Operation.EXPORT)
    names, rows = service.export_rows(object_name, query)
    service.session.commit()  # the audit of an admin's bypass, if any
    return export_response(object_name, names, rows, kind)


def export_format(text: str | None) -> ImportFormat:
    """The export's format from ``?format=`` (``csv``, the default, or ``xlsx``; else 400)."""
    try:
        return ImportFormat(text or ImportFormat.CSV)
    except ValueError:
        raise BadRequest(
            N_("format is csv or xlsx"), [{"field": "format", "message": str(text)}]
        ) from None


def export_response(object_name: str, names: list[str], rows: list[Any], kind: ImportFormat) -> Any:
    """An export's download as CSV or XLSX (the API's and the list page's)."""
    if kind is ImportFormat.XLSX:
        body: str | bytes = write_xlsx(names, rows)
        mimetype = XLSX_MIME
    else:
        body, mimetype = as_csv(names, rows), "text/csv"
    response = current_app.response_class(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{object_name}.{kind}"'
    return response


def _expected_version() -> int | None:
    """The version the caller read: ``?version=N``, or ``If-Match`` (``N``, ``"N"``, ``W/"N"``)."""
    text = request.args.get("version")
    source = "version"
    if text is None and request.headers.get("If-Match"):
        text, source = request.headers["If-Match"].strip(), "If-Match"
        text = text.removeprefix("W/").strip('"')
    if text is None:
        return None
    if not text.isdigit() or not 1 <= int(text) <= 2**31 - 1:
        raise BadRequest(
            "the version must be a positive whole number",
            [{"field": source, "message": f"{text!r} is not a version"}],
        )
    return int(text)


@bp.post("/records/<object_name>")
def create_record(object_name: str) -> Any:
    """``POST /records/<object>``: create a record with its lines (201); 403, 404, 422
    naming each refused field, 409 for a taken unique value.
    """
    record = record_service().create(object_name, json_body())
    commit()
    return jsonify(record), 201


@bp.get("/records/<object_name>/<int:record_id>")
def get_record(object_name: str, record_id: int) -> Any:
    """``GET /records/<object>/<id>``: one live record the caller may read, with its lines;
    403, or 404 (also for a record outside the caller's scope).
    """
    return jsonify(record_service().get(object_name, record_id))


@bp.patch("/records/<object_name>/<int:record_id>")
def update_record(object_name: str, record_id: int) -> Any:
    """``PATCH /records/<object>/<id>``: change the fields sent; the body's ``version`` is
    required, and a stale one is 409. 403, 404 or 422 otherwise.
    """
    record = record_service().update(object_name, record_id, json_body())
    commit()
    return jsonify(record)


@bp.post("/records/<object_name>/bulk")
def bulk_create_records(object_name: str) -> Any:
    """Up to 1,000 records in one transaction; ``?mode=skip_invalid`` keeps the valid ones."""
    mode = request.args.get("mode", "all_or_nothing")
    if mode not in ("all_or_nothing", "skip_invalid"):
        raise BadRequest(
            "mode is all_or_nothing or skip_invalid", [{"field": "mode", "message": mode}]
        )
    body = json_body()
    if isinstance(body, dict) and set(body) == {"records"}:
        body = body["records"]
    result = record_service().create_many(object_name, body, skip_invalid=mode == "skip_invalid")
    commit()
    return jsonify(result), 201 if result["created"] else 200


@bp.delete("/records/<object_name>/<int:record_id>")
def delete_record(object_name: str, record_id: int) -> Any:
    """Soft delete; ``?version=N`` or ``If-Match: "N"`` makes it conditional on that version."""
    record_service().delete(object_name, record_id, _expected_version())
    commit()
    return "", 204


@bp.post("/records/<object_name>/<int:record_id>/restore")
def restore_record(object_name: str, record_id: int) -> Any:
    """``POST /records/<object>/<id>/restore``: bring back a soft-deleted record and the
    lines deleted with it; 403 without the delete right, 404, 409 when it is not deleted
    or refers to deleted records.
    """
    record = record_service().restore(object_name, record_id)
    commit()
    return jsonify(record)


@bp.get("/records/<object_name>/<int:record_id>/history")
def record_history(object_name: str, record_id: int) -> Any:
    """``GET /records/<object>/<id>/history``: every write of the record, fields the caller
    may not read left out; 403, or 404.
    """
    return jsonify({"items": record_service().history(object_name, record_id)})


@bp.get("/openapi.json")
def openapi() -> Any:
    """The OpenAPI document as the caller may see it; the request's Host plays no part."""
    document = openapi_document(registry(), caller().permissions, current_app.config["BASE_URL"])
    return jsonify(document)
