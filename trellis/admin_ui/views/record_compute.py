"""The live preview of a record form: ``POST /o/<object>/compute`` (and
``/o/<object>/<id>/compute`` for an edit form) takes the form as typed, lines included, and
answers what the server would compute and how each field behaves now, as JSON that
``static/trellis.js`` applies to the form. It writes nothing: values are computed in Python
by ``runtime.computed.preview`` from the posted values, with the same compiled expressions
the record pipeline runs on save, and the page's transaction is rolled back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import jsonify, request

from trellis.admin_ui import bp
from trellis.admin_ui.context import records, registry, rollback
from trellis.admin_ui.forms import display, editable_fields, parse_record
from trellis.admin_ui.i18n import told
from trellis.admin_ui.pages import signed_in
from trellis.admin_ui.views.records import _lines_from_form, _meta, _writable
from trellis.exceptions import TrellisError
from trellis.platform.metadata.permissions import Operation
from trellis.platform.runtime.computed import Line, Preview, preview

if TYPE_CHECKING:
    from trellis.platform.runtime.records import RecordService
    from trellis.platform.runtime.registry import ObjectMeta


@bp.post("/o/<object_name>/compute")
@bp.post("/o/<object_name>/<int:record_id>/compute")
@signed_in
def record_compute(object_name: str, record_id: int | None = None) -> Any:
    """The form's computed values and field states, keyed by input name:
    ``{"values": {name: text shown}, "fields": {name: {"visible", "required", "readonly"}},
    "problems": {name: the rules it breaks now, in the user's language}}``.

    The same rights as the form it serves (create, or update of a record the user may
    read: else 403 / 404); CSRF-checked like every POST.
    """
    meta = _meta(object_name)
    service = records()
    stored: dict[str, Any] | None = None
    if record_id is None:
        service.access.require(meta, Operation.CREATE)
    else:
        service.access.require(meta, Operation.UPDATE)
        stored = dict(service.get(object_name, record_id))
    try:
        answer = _answer(service, meta, stored)
    finally:
        rollback()  # a preview leaves nothing behind, whatever it read
    return jsonify(answer)


def _answer(
    service: RecordService, meta: ObjectMeta, stored: dict[str, Any] | None
) -> dict[str, Any]:
    hidden = service.access.hidden(meta)
    names = editable_fields(meta, hidden)
    payload = _readable_lookups(
        service, meta, parse_record(meta, request.form, names, _writable(service, meta)), stored
    )
    lines: dict[tuple[str, str], tuple[ObjectMeta, list[Line]]] = {}
    indexes: dict[tuple[str, str], tuple[str, list[int]]] = {}
    posted = _lines_from_form(service, meta, request.form)
    for child_name, spec in meta.children:
        child = registry().get(child_name)
        related = str(spec.related_name)
        if not service.access.allowed(child, Operation.READ) or related not in posted:
            continue
        before = {line.get("id"): line for line in (stored or {}).get(related) or []}
        items: list[Line] = []
        numbers: list[int] = []
        for line in posted[related]:
            if line.get("_removed"):
                continue
            typed = {
                k: v
                for k, v in line.items()
                if not k.startswith("_") and k not in ("id", "version")
            }
            stored_line = before.get(line.get("id"))
            items.append((_readable_lookups(service, child, typed, stored_line), stored_line))
            numbers.append(line["_index"])
        lines[(child_name, spec.name)] = (child, items)
        indexes[(child_name, spec.name)] = (related, numbers)
    result = preview(service.unit, meta, payload, stored, lines)
    answer: dict[str, dict[str, Any]] = {"values": {}, "fields": {}, "problems": {}}
    _collect(meta, hidden, result, "", answer)
    for key, (related, numbers) in indexes.items():
        child = lines[key][0]
        child_hidden = service.access.hidden(child)
        for number, computed in zip(numbers, result.lines[key], strict=True):
            _collect(child, child_hidden, computed, f"{related}-{number}-", answer)
    return answer


def _collect(
    meta: ObjectMeta,
    hidden: frozenset[str],
    result: Preview,
    prefix: str,
    answer: dict[str, dict[str, Any]],
) -> None:
    """One record's part of the answer: only the fields the user may see. A broken rule
    is shown on its field, or on the form (key ``""``) when it names none or a hidden one."""
    for name, value in result.values.items():
        if name not in hidden:
            answer["values"][prefix + name] = display(meta.fields[name], value)
    for name, state in result.states.items():
        if name not in hidden:
            answer["fields"][prefix + name] = {
                "visible": state.visible,
                "required": state.required,
                "readonly": state.readonly,
            }
    for problem in result.problems:
        name = problem["field"] if problem["field"] not in hidden else ""
        key = prefix + name if name else ""
        text = told(problem["message"])
        shown = answer["problems"].get(key)
        answer["problems"][key] = f"{shown} {text}" if shown else text


def _readable_lookups(
    service: RecordService,
    meta: ObjectMeta,
    payload: dict[str, Any],
    stored: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A lookup to a record the user may not read reads as empty: expressions then cannot
    tell the user anything about it (one stored in the record stays as it is)."""
    for name, value in list(payload.items()):
        spec = meta.fields.get(name)
        if spec is None or not spec.target or value is None:
            continue
        if stored is not None and stored.get(name) == value:
            continue
        try:
            service.get(spec.target, int(value), include_children=False)
        except (ValueError, TypeError):
            payload[name] = None
        except TrellisError as exc:  # not readable: 403, 404
            if exc.status not in (403, 404):
                raise
            payload[name] = None
    return payload
