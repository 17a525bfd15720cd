"""Files of records' ``file`` and ``image`` fields (upload, download) and a record's purge."""

from __future__ import annotations

from typing import Any

from flask import jsonify, request

from trellis.exceptions import BadRequest
from trellis.platform.messages import N_
from trellis.platform.runtime import files
from trellis.platform.runtime.api import bp, commit, record_service
from trellis.platform.runtime.api.records import _expected_version


@bp.post("/records/<object_name>/<int:record_id>/files/<field_name>")
def upload_file(object_name: str, record_id: int, field_name: str) -> Any:
    """``POST …/files/<field>`` (multipart, the file in part ``file``): store it in the
    field; ``?version=N`` makes it conditional. 403 without the update right or the
    field's write right, 404, 413 when too large, 422 for a type the field does not take.
    """
    upload = request.files.get("file")
    if upload is None:
        raise BadRequest(
            N_("send the file as multipart/form-data, in a part named file"),
            [{"field": "file", "message": N_("is required")}],
        )
    record = record_service().attach_file(
        object_name,
        record_id,
        field_name,
        upload.read(),
        upload.filename,
        store=files.current_store(),
        cap=files.upload_cap(),
        expected_version=_expected_version(),
    )
    commit()
    return jsonify(record)


@bp.get("/records/<object_name>/<int:record_id>/files/<field_name>")
def download_file(object_name: str, record_id: int, field_name: str) -> Any:
    """``GET …/files/<field>``: the file, to a caller who may read the record and the
    field (else 403 / 404), with its sniffed type and ``nosniff``.
    """
    stored = record_service().file_of(object_name, record_id, field_name)
    return files.send_stored(stored, files.current_store())


@bp.post("/records/<object_name>/<int:record_id>/purge")
def purge_record(object_name: str, record_id: int) -> Any:
    """``POST …/<id>/purge``: remove a soft-deleted record, its lines, history and files
    for good (administrators; 403 otherwise, 409 when it is not deleted or still referred to).
    """
    record_service().purge(object_name, record_id, store=files.current_store())
    commit()
    return "", 204
