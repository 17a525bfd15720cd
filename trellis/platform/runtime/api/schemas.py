"""The platform's own request and response shapes, as marshmallow schemas.

Request schemas (``Body``) *load* what a caller sends: unknown keys and wrong types are
refused with a 422 naming each field before a service sees the body; the services keep
their own rules, because the CLI calls them directly. Response schemas (``Shape``) *dump*
what a view answers, so only declared keys ever leave (a user's password hash cannot).
The OpenAPI document's ``components.schemas`` for these shapes are generated from these
same classes (``trellis.platform.runtime.openapi``), so the document cannot drift from
the server.

Role documents are metadata with a meta-schema of their own (``RoleDocument``); only
their envelope is described here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from marshmallow import RAISE, Schema, ValidationError, fields
from marshmallow.validate import Length, OneOf, Range

from trellis.exceptions import BadRequest, TrellisError, ValidationFailed
from trellis.platform.messages import N_, Message
from trellis.platform.metadata.fieldtypes import INT64_MAX
from trellis.platform.metadata.permissions import SCOPES, Operation
from trellis.platform.runtime.identity.passwords import MIN_PASSWORD_LENGTH
from trellis.platform.runtime.identity.tokens import MAX_TOKEN_DAYS
from trellis.platform.runtime.models import iso

LANGUAGES = ("en", "zh-CN")
GRANTED_SCOPES = tuple(scope for scope in SCOPES if scope != "none")


# --- messages ----------------------------------------------------------------------------------


class _Template(str):
    """An ``N_`` message as marshmallow's error template: marshmallow fills a template with
    ``.format(min=…, max=…, input=…)``, which here gives the message with those parameters,
    so the refusal keeps its id and the pages tell it in the user's language."""

    message: Message

    def __new__(cls, message: Message) -> _Template:
        template = super().__new__(cls, message.msgid)
        template.message = message
        return template

    def format(self, *args: Any, **kwargs: Any) -> str:
        msgid = self.message.msgid
        names = re.findall(r"%\((\w+)\)", msgid)
        return N_(msgid, **{name: kwargs[name] for name in names if name in kwargs})


# marshmallow's own messages of the fields a body uses, by (field class, error key).
_FIELD_MESSAGES: dict[tuple[type[fields.Field], str], Message] = {
    (fields.Field, "required"): N_("Missing data for required field."),
    (fields.Field, "null"): N_("Field may not be null."),
    (fields.Field, "validator_failed"): N_("Invalid value."),
    (fields.String, "invalid"): N_("Not a valid string."),
    (fields.String, "invalid_utf8"): N_("Not a valid utf-8 string."),
    (fields.Integer, "invalid"): N_("Not a valid integer."),
    (fields.Number, "invalid"): N_("Not a valid number."),
    (fields.Number, "too_large"): N_("Number too large."),
    (fields.Boolean, "invalid"): N_("Not a valid boolean."),
    (fields.List, "invalid"): N_("Not a valid list."),
    (fields.Mapping, "invalid"): N_("Not a valid mapping type."),
    (fields.Nested, "type"): N_("Invalid type."),
}


def _tell_errors(field: fields.Field) -> None:
    """Give ``field`` (and the fields inside it) the ``N_`` forms of marshmallow's messages."""
    for key in list(field.error_messages):
        for cls in type(field).__mro__:
            if (cls, key) in _FIELD_MESSAGES:
                field.error_messages[key] = _Template(_FIELD_MESSAGES[cls, key])
                break
            if key in cls.__dict__.get("default_error_messages", {}):
                break  # a message of the field's own: it is not one of marshmallow's
    for inner in (
        getattr(field, "inner", None),
        getattr(field, "key_field", None),
        getattr(field, "value_field", None),
    ):
        if isinstance(inner, fields.Field):
            _tell_errors(inner)


def length(min: int | None = None, max: int | None = None) -> Length:
    """marshmallow's ``Length`` with its messages as ``N_`` messages."""
    if min is not None and max is not None:
        message = N_("Length must be between %(min)s and %(max)s.", min=min, max=max)
    elif min is not None:
        message = N_("Shorter than minimum length %(min)s.", min=min)
    else:
        message = N_("Longer than maximum length %(max)s.", max=max)
    return Length(min=min, max=max, error=_Template(message))


def value_range(min: int | None = None, max: int | None = None) -> Range:
    """marshmallow's ``Range`` (bounds included) with its messages as ``N_`` messages."""
    if min is not None and max is not None:
        message = N_(
            "Must be greater than or equal to %(min)s and less than or equal to %(max)s.",
            min=min,
            max=max,
        )
    elif min is not None:
        message = N_("Must be greater than or equal to %(min)s.", min=min)
    else:
        message = N_("Must be less than or equal to %(max)s.", max=max)
    return Range(min=min, max=max, error=_Template(message))


def one_of(choices: Any) -> OneOf:
    """marshmallow's ``OneOf`` with its message as an ``N_`` message."""
    return OneOf(choices, error=_Template(N_("Must be one of: %(choices)s.", choices="")))


ID_RANGE = value_range(min=1, max=INT64_MAX)


# --- fields ------------------------------------------------------------------------------------


class StrictInteger(fields.Integer):
    """A JSON integer: not ``true``, ``"3"`` or ``1.5`` (marshmallow would take ``true``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class StrictBoolean(fields.Boolean):
    """``true`` or ``false`` only: ``"no"`` or ``0`` must not quietly mean something."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class Moment(fields.DateTime):
    """A stored moment in the API's one format (RFC 3339, UTC, ``Z``)."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return iso(value)


class RoleDocument(fields.Raw):
    """A role document, as stored; the role meta-schema describes it, not marshmallow."""


# --- the two kinds of schema -------------------------------------------------------------------


class Body(Schema):
    """A request body: a JSON object of the declared keys only."""

    class Meta:
        """marshmallow options: an unknown key is refused (``RAISE``), never dropped."""

        unknown = RAISE

    error_messages = {  # noqa: RUF012 - marshmallow's API
        "unknown": N_("Unknown field."),
        "type": N_("Invalid input type."),
    }

    def on_bind_field(self, field_name: str, field_obj: fields.Field) -> None:
        """marshmallow's hook: give each field the N_ versions of its error messages."""
        _tell_errors(field_obj)


class Shape(Schema):
    """A response body. Every declared key is always sent, so each is documented required."""

    def on_bind_field(self, field_name: str, field_obj: fields.Field) -> None:
        """Mark each declared field required, so the OpenAPI document lists it as always sent."""
        field_obj.required = True


# --- errors ------------------------------------------------------------------------------------


class ErrorDetailSchema(Shape):
    """One entry of an error's ``details``: the field concerned and what is wrong with it."""

    field = fields.String(metadata={"description": "the field, key or JSON pointer concerned"})
    message = fields.String()


class ErrorInfoSchema(Shape):
    """The ``error`` object of every refusal: a stable ``code``, a message, its details."""

    code = fields.String(metadata={"description": "stable, machine-readable"})
    message = fields.String()
    details = fields.List(fields.Nested(ErrorDetailSchema))


class ErrorSchema(Shape):
    """The body of every error response: ``{"error": {code, message, details}}``."""

    error = fields.Nested(ErrorInfoSchema)


# --- users -------------------------------------------------------------------------------------


class UserSchema(Shape):
    """A user as ``/users`` answers it: no password hash, roles by name, stamps in UTC."""

    id = fields.Integer()
    email = fields.String(metadata={"format": "email"})
    name = fields.String()
    is_active = fields.Boolean()
    is_admin = fields.Boolean(metadata={"description": "platform administrator: bypasses roles"})
    language = fields.String(validate=one_of(LANGUAGES))
    partner = fields.Integer(
        attribute="partner_id",
        allow_none=True,
        metadata={"description": "the record of the hierarchy object the user works for"},
    )
    manager = fields.Integer(attribute="manager_id", allow_none=True)
    roles = fields.List(fields.String())
    created_at = Moment()
    locked_until = Moment(allow_none=True)


# Per operation, the record scopes the caller holds (empty: none).
ScopesSchema = Shape.from_dict(
    {op.value: fields.List(fields.String(validate=one_of(GRANTED_SCOPES))) for op in Operation},
    name="ScopesSchema",
)


class ObjectRightsSchema(Shape):
    """What the caller may do with one object: scopes per operation, fields hidden."""

    scopes = fields.Nested(ScopesSchema)
    hidden_fields = fields.List(fields.String())


class MeSchema(UserSchema):
    """The answer of ``GET /me``: the caller as a user, with their rights per readable object."""

    permissions = fields.Dict(
        keys=fields.String(),
        values=fields.Nested(ObjectRightsSchema),
        metadata={"description": "per object the caller may read, what they may do with it"},
    )


class UserPageSchema(Shape):
    """The answer of ``GET /users``: ``{"items": [user, …]}``."""

    items = fields.List(fields.Nested(UserSchema))


class _UserChangeSchema(Body):
    """What both creating and changing a user may send."""

    password = fields.String(validate=length(min=MIN_PASSWORD_LENGTH))
    name = fields.String(validate=length(max=120))
    roles = fields.List(fields.String(), metadata={"description": "role names, replacing all"})
    partner = StrictInteger(allow_none=True, validate=ID_RANGE)
    manager = StrictInteger(allow_none=True, validate=ID_RANGE)
    language = fields.String(validate=one_of(LANGUAGES))
    is_admin = StrictBoolean()


class UserCreateSchema(_UserChangeSchema):
    """The body of ``POST /users``: e-mail and password required, the rest optional."""

    error_messages = {"unknown": N_("is not a user field")}  # noqa: RUF012 - marshmallow's API

    email = fields.String(required=True, validate=length(max=254), metadata={"format": "email"})
    password = fields.String(required=True, validate=length(min=MIN_PASSWORD_LENGTH))


class UserUpdateSchema(_UserChangeSchema):
    """The body of ``PATCH /users/<id>``: the keys to change; e-mail is not one of them."""

    error_messages = {"unknown": N_("cannot be changed")}  # noqa: RUF012 - marshmallow's API

    is_active = StrictBoolean(
        metadata={"description": "false revokes every token of the user, for good"}
    )


def row_source(row: Any, **extra: Any) -> dict[str, Any]:
    """A mapped row's column values and ``extra``: what a ``Shape`` dumps (it picks the keys)."""
    columns = sa.inspect(row).mapper.column_attrs
    return {column.key: getattr(row, column.key) for column in columns} | extra


# --- tokens ------------------------------------------------------------------------------------


class TokenSchema(Shape):
    """An API token as listed: its name, first characters and dates, never the token."""

    id = fields.Integer()
    name = fields.String()
    prefix = fields.String(metadata={"description": "the token's first characters"})
    created_at = Moment()
    expires_at = Moment(allow_none=True)
    revoked_at = Moment(allow_none=True)
    last_used_at = Moment(allow_none=True, metadata={"description": "to the minute"})


class NewTokenSchema(TokenSchema):
    """The answer of ``POST /tokens``: the new token's row with the token text itself."""

    token = fields.String(metadata={"description": "the token itself: shown this once only"})


class TokenPageSchema(Shape):
    """The answer of ``GET /tokens``: ``{"items": [token, …]}``."""

    items = fields.List(fields.Nested(TokenSchema))


class TokenCreateSchema(Body):
    """The body of ``POST /tokens``: an optional name and lifetime (null: no expiry)."""

    name = fields.String(validate=length(max=120))
    expires_in_days = StrictInteger(
        allow_none=True, validate=value_range(min=1, max=MAX_TOKEN_DAYS)
    )


# --- roles -------------------------------------------------------------------------------------


class RoleSchema(Shape):
    """A role as ``/roles/<name>`` answers it: name, current version and the document."""

    name = fields.String()
    version = fields.Integer()
    role = RoleDocument()


class RoleChangeSchema(RoleSchema):
    """The answer of ``PUT /roles/<name>``: the role, and whether a version was written."""

    changed = fields.Boolean(metadata={"description": "false: identical, no version written"})


class RolePageSchema(Shape):
    """The answer of ``GET /roles``: ``{"items": [role document, …]}``."""

    items = fields.List(RoleDocument())


class RoleVersionSchema(Shape):
    """One stored version of a role: who and when, what changed, and the document."""

    version = fields.Integer()
    author_id = fields.Integer(allow_none=True)
    created_at = Moment()
    summary = fields.String(metadata={"description": "what changed, in one line"})
    diff = fields.Dict(
        allow_none=True,
        metadata={
            "description": "each value added, removed or changed, by JSON pointer"
            " (null for versions written before roles kept diffs)"
        },
    )
    restored_from = fields.Integer(
        allow_none=True, metadata={"description": "the version this one restored, if any"}
    )
    role = RoleDocument(attribute="document")


class RoleVersionPageSchema(Shape):
    """The answer of ``GET /roles/<name>/versions``."""

    items = fields.List(fields.Nested(RoleVersionSchema), metadata={"description": "newest first"})


# --- automations ------------------------------------------------------------------------------


class AutomationDocument(fields.Raw):
    """An automation document, as stored; the automation meta-schema describes it."""


class AutomationSchema(Shape):
    """An automation as ``/automations/<name>`` answers it: name, version and document."""

    name = fields.String()
    version = fields.Integer()
    automation = AutomationDocument()


class AutomationChangeSchema(AutomationSchema):
    """The answer of ``PUT /automations/<name>``: whether a version was written."""

    changed = fields.Boolean(metadata={"description": "false: identical, no version written"})


class AutomationPageSchema(Shape):
    """The answer of ``GET /automations``: ``{"items": [automation document, …]}``."""

    items = fields.List(AutomationDocument())


class AutomationVersionSchema(Shape):
    """One stored version of an automation: who and when, what changed, the document."""

    version = fields.Integer()
    author_id = fields.Integer(allow_none=True)
    created_at = Moment()
    summary = fields.String(metadata={"description": "what changed, in one line"})
    diff = fields.Dict(allow_none=True)
    restored_from = fields.Integer(allow_none=True)
    automation = AutomationDocument(attribute="document")


class AutomationVersionPageSchema(Shape):
    """The answer of ``GET /automations/<name>/versions``."""

    items = fields.List(
        fields.Nested(AutomationVersionSchema), metadata={"description": "newest first"}
    )


class AutomationRunSchema(Shape):
    """One run of an automation: when, on which record, the outcome and the error."""

    id = fields.Integer()
    at = fields.String()
    version = fields.Integer()
    object = fields.String()
    record_id = fields.Integer(allow_none=True)
    trigger = fields.String()
    outcome = fields.String(metadata={"description": "done, failed or stopped (loop guard)"})
    error = fields.String(allow_none=True)


class AutomationRunPageSchema(Shape):
    """The answer of ``GET /automations/<name>/runs``: the latest runs, newest first."""

    items = fields.List(fields.Nested(AutomationRunSchema))


# --- workflows ---------------------------------------------------------------------------------


class WorkflowDocument(fields.Raw):
    """A workflow document, as stored; the workflow meta-schema describes it."""


class WorkflowSchema(Shape):
    """A workflow as ``/workflows/<name>`` answers it: name, current version and document."""

    name = fields.String()
    version = fields.Integer()
    workflow = WorkflowDocument()


class WorkflowChangeSchema(WorkflowSchema):
    """The answer of ``PUT /workflows/<name>``: the workflow, and whether it changed."""

    changed = fields.Boolean(metadata={"description": "false: identical, no version written"})


class WorkflowPageSchema(Shape):
    """The answer of ``GET /workflows``: ``{"items": [{name, version, workflow}, …]}``."""

    items = fields.List(fields.Nested(WorkflowSchema))


class WorkflowVersionSchema(Shape):
    """One stored version of a workflow: who and when, what changed, and the document."""

    version = fields.Integer()
    author_id = fields.Integer(allow_none=True)
    created_at = Moment()
    summary = fields.String(metadata={"description": "what changed, in one line"})
    diff = fields.Dict(allow_none=True)
    restored_from = fields.Integer(allow_none=True)
    workflow = WorkflowDocument(attribute="document")


class WorkflowVersionPageSchema(Shape):
    """The answer of ``GET /workflows/<name>/versions``."""

    items = fields.List(
        fields.Nested(WorkflowVersionSchema), metadata={"description": "newest first"}
    )


class TransitionBodySchema(Body):
    """The body of ``POST /records/<object>/<id>/transitions/<name>`` (it may be empty)."""

    comment = fields.String(
        allow_none=True, validate=Length(max=2000), metadata={"description": "why"}
    )
    version = fields.Integer(
        allow_none=True,
        strict=True,
        metadata={"description": "the version read; a record changed since is 409"},
    )


class TransitionOptionSchema(Shape):
    """A transition the caller may fire now."""

    name = fields.String()
    label = fields.Dict(keys=fields.String(), values=fields.String())
    to = fields.String()
    comment = fields.String(metadata={"description": "none, optional or required"})


class TransitionPageSchema(Shape):
    """The answer of ``GET /records/<object>/<id>/transitions``."""

    workflow = fields.String()
    state = fields.String(allow_none=True)
    category = fields.String(allow_none=True)
    items = fields.List(fields.Nested(TransitionOptionSchema))


class TransitionDoneSchema(Shape):
    """What a transition did: its name, states and comment."""

    workflow = fields.String()
    workflow_version = fields.Integer()
    transition = fields.String()
    from_ = fields.String(data_key="from", attribute="from", allow_none=True)
    to = fields.String()
    comment = fields.String(allow_none=True)


class TransitionResultSchema(Shape):
    """The answer of a fired transition: the record as it now is, and the transition."""

    record = fields.Dict()
    transition = fields.Nested(TransitionDoneSchema)


# --- the audit trail ---------------------------------------------------------------------------


class AuditEventSchema(Shape):
    """One audit event: the action, who did it from where, its target and detail."""

    id = fields.Integer()
    at = Moment()
    action = fields.String()
    actor_id = fields.Integer(allow_none=True)
    actor_email = fields.String(allow_none=True)
    target = fields.String(allow_none=True)
    detail = fields.Dict()
    ip = fields.String(allow_none=True)
    user_agent = fields.String(allow_none=True)


class AuditPageSchema(Shape):
    """The answer of ``GET /audit``: ``{"items": [event, …]}``."""

    items = fields.List(fields.Nested(AuditEventSchema), metadata={"description": "newest first"})


class AuditQuerySchema(Body):
    """The query string of ``GET /audit``."""

    action = fields.String(metadata={"description": "events whose action starts with this"})
    actor = fields.Integer(validate=ID_RANGE, metadata={"description": "a user id"})
    before = fields.Integer(validate=ID_RANGE, metadata={"description": "events older than id"})
    limit = fields.Integer(validate=value_range(min=1, max=500), load_default=100)


# --- jobs ------------------------------------------------------------------------------------


class JobProgressSchema(Shape):
    """How far a running job says it is: ``done`` of ``total`` (null: unknown), a message."""

    done = fields.Integer(allow_none=True)
    total = fields.Integer(allow_none=True)
    message = fields.String()


class JobSchema(Shape):
    """A background job: what it runs, its state, attempts, progress and outcome."""

    id = fields.Integer()
    name = fields.String()
    queue = fields.String()
    key = fields.String(allow_none=True)
    status = fields.String(metadata={"enum": ["queued", "running", "done", "failed"]})
    attempts = fields.Integer()
    max_attempts = fields.Integer()
    payload = fields.Dict()
    progress = fields.Nested(JobProgressSchema)
    result = fields.Raw(allow_none=True)
    error = fields.String(allow_none=True, metadata={"description": "the last attempt's error"})
    created_by = fields.Integer(allow_none=True)
    created_at = Moment()
    run_at = Moment(metadata={"description": "not before (a retry waits for its back-off)"})
    started_at = Moment(allow_none=True)
    finished_at = Moment(allow_none=True)


class JobPageSchema(Shape):
    """The answer of ``GET /jobs``: ``{"items": [job, …]}``, newest first."""

    items = fields.List(fields.Nested(JobSchema), metadata={"description": "newest first"})


class JobQuerySchema(Body):
    """The query string of ``GET /jobs``."""

    status = fields.String(validate=OneOf(["queued", "running", "done", "failed"]))
    before = fields.Integer(validate=ID_RANGE, metadata={"description": "jobs older than id"})
    limit = fields.Integer(validate=value_range(min=1, max=500), load_default=50)


def job_source(job: Any) -> dict[str, Any]:
    """A ``jobs`` row as ``JobSchema`` dumps it (progress as one nested object)."""
    progress = {
        "done": job.progress_done,
        "total": job.progress_total,
        "message": job.progress_message or "",
    }
    return row_source(job, progress=progress)


# --- the outbox --------------------------------------------------------------------------------


class OutboxEventSchema(Shape):
    """An outbox event as the failed-events list shows it (``GET /outbox``)."""

    id = fields.Integer()
    event_id = fields.String(metadata={"description": "the stable id receivers de-duplicate on"})
    kind = fields.String(metadata={"description": "webhook, email, …: its deliverer"})
    type = fields.String(
        allow_none=True, metadata={"description": "the event's type (record.created…), if any"}
    )
    target = fields.String(
        allow_none=True, metadata={"description": "a webhook's id, an e-mail address"}
    )
    status = fields.String(metadata={"enum": ["pending", "delivered", "failed"]})
    attempts = fields.Integer()
    last_error = fields.String(allow_none=True, metadata={"description": "the last attempt's"})
    created_at = Moment()
    next_attempt_at = Moment(
        allow_none=True, metadata={"description": "pending: when it is tried again"}
    )
    failed_at = Moment(allow_none=True, metadata={"description": "failed: when it was given up"})


class OutboxEventDetailSchema(OutboxEventSchema):
    """One outbox event (``GET /outbox/<event id>``), with what its deliverer is given."""

    payload = fields.Dict()


class OutboxPageSchema(Shape):
    """The answer of ``GET /outbox``: ``{"items": [event, …]}``, newest first."""

    items = fields.List(fields.Nested(OutboxEventSchema), metadata={"description": "newest first"})


class OutboxQuerySchema(Body):
    """The query string of ``GET /outbox``."""

    status = fields.String(
        validate=OneOf(["failed", "retrying"]),
        load_default="failed",
        metadata={"description": "failed (given up) or retrying (pending after a failure)"},
    )
    before = fields.Integer(validate=ID_RANGE, metadata={"description": "events older than id"})
    limit = fields.Integer(validate=value_range(min=1, max=500), load_default=50)


def outbox_source(entry: Any) -> dict[str, Any]:
    """An ``outbox_events`` row as ``OutboxEventSchema`` dumps it."""
    failed = entry.status == "failed"
    payload = entry.payload or {}
    return row_source(
        entry,
        type=payload.get("type") if isinstance(payload.get("type"), str) else None,
        next_attempt_at=None if failed or entry.status == "delivered" else entry.next_attempt_at,
        failed_at=entry.next_attempt_at if failed else None,
    )


# --- saved list views --------------------------------------------------------------------------

_VIEW_COLUMNS = "field names in the order shown (id, created_at and updated_at too); empty: the"
_VIEW_COLUMNS += " object's list columns"
_VIEW_FILTERS = "the list page's filter parameters: f.<field> (text, record id, true/false, or a"
_VIEW_FILTERS += (
    " list of picklist values), f.<field>.min / f.<field>.max for ranges, q for the quick"
)
_VIEW_FILTERS += " search"
_VIEW_SORT = "comma-separated fields, '-' for descending; null: newest first"


class ViewDefinitionSchema(Shape):
    """What a saved list view shows, as answered: columns, filters and sort."""

    columns = fields.List(fields.String(), metadata={"description": _VIEW_COLUMNS})
    filters = fields.Dict(
        keys=fields.String(),
        values=fields.Raw(metadata={"type": ["string", "array"], "items": {"type": "string"}}),
        metadata={"description": _VIEW_FILTERS},
    )
    sort = fields.String(allow_none=True, metadata={"description": _VIEW_SORT})


class ViewSchema(Shape):
    """A saved list view as ``/views`` answers it, with the version to send back."""

    id = fields.Integer()
    object = fields.String(attribute="object_name")
    label = fields.String()
    owner_id = fields.Integer(metadata={"description": "the user who saved it"})
    shared_with_role = fields.String(
        allow_none=True, metadata={"description": "every holder of this role sees the view"}
    )
    definition = fields.Nested(ViewDefinitionSchema)
    version = fields.Integer(metadata={"description": "send it back to change or delete"})
    created_at = Moment()
    updated_at = Moment()


class ViewPageSchema(Shape):
    """The answer of ``GET /views``."""

    items = fields.List(
        fields.Nested(ViewSchema),
        metadata={"description": "the caller's own views, then shared ones, each by label"},
    )


class ViewDefinitionInputSchema(Body):
    """A list view's definition as sent (the service checks it against the object)."""

    columns = fields.List(fields.String(), metadata={"description": _VIEW_COLUMNS})
    filters = fields.Dict(
        keys=fields.String(),
        values=fields.Raw(metadata={"type": ["string", "array"], "items": {"type": "string"}}),
        metadata={"description": _VIEW_FILTERS},
    )
    sort = fields.String(allow_none=True, metadata={"description": _VIEW_SORT})


class ViewCreateSchema(Body):
    """The body of ``POST /views``: object, label and definition required."""

    object = fields.String(required=True, validate=length(min=1, max=40))
    label = fields.String(required=True, validate=length(min=1, max=120))
    shared_with_role = fields.String(
        allow_none=True, metadata={"description": "administrators only: share with this role"}
    )
    definition = fields.Nested(ViewDefinitionInputSchema, required=True)


class ViewUpdateSchema(Body):
    """The body of ``PUT /views/<id>``: the ``version`` read, and what changes."""

    error_messages = {"unknown": N_("cannot be changed")}  # noqa: RUF012 - marshmallow's API

    version = StrictInteger(
        required=True, validate=value_range(min=1), metadata={"description": "the version read"}
    )
    label = fields.String(validate=length(min=1, max=120))
    shared_with_role = fields.String(
        allow_none=True, metadata={"description": "administrators only; null: private"}
    )
    definition = fields.Nested(ViewDefinitionInputSchema)


class ViewQuerySchema(Body):
    """The query string of ``GET /views``."""

    object = fields.String(metadata={"description": "only the views of this object"})


class ViewDeleteQuerySchema(Body):
    """The query string of ``DELETE /views/<id>``."""

    version = fields.Integer(
        validate=value_range(min=1), metadata={"description": "delete only if still this version"}
    )


# --- webhooks ----------------------------------------------------------------------------------

_EVENTS = "event types it is told about (record.created, record.updated, record.deleted…)"
_OBJECTS = "object names it is told about; empty: every object"


class WebhookSchema(Shape):
    """A webhook as ``/webhooks`` answers it: never its secret, only the secret's hint."""

    id = fields.Integer()
    name = fields.String()
    url = fields.String()
    events = fields.List(fields.String(), metadata={"description": _EVENTS})
    objects = fields.List(fields.String(), metadata={"description": _OBJECTS})
    active = fields.Boolean()
    secret_hint = fields.String(metadata={"description": "the secret's prefix and last 4"})
    version = fields.Integer()
    created_at = Moment()
    updated_at = Moment()


class NewWebhookSecretSchema(WebhookSchema):
    """The answer of ``POST /webhooks`` and ``POST /webhooks/<id>/rotate``: with the secret."""

    secret = fields.String(metadata={"description": "the signing secret: shown this once only"})


class WebhookPageSchema(Shape):
    """The answer of ``GET /webhooks``."""

    items = fields.List(fields.Nested(WebhookSchema), metadata={"description": "by name"})


class WebhookCreateSchema(Body):
    """The body of ``POST /webhooks``."""

    name = fields.String(required=True, validate=length(min=1, max=120))
    url = fields.String(required=True, validate=length(min=1, max=2000))
    events = fields.List(fields.String(), required=True, metadata={"description": _EVENTS})
    objects = fields.List(fields.String(), metadata={"description": _OBJECTS})
    active = StrictBoolean()


class WebhookUpdateSchema(Body):
    """The body of ``PATCH /webhooks/<id>``: the keys to change (the secret: ``rotate``)."""

    error_messages = {"unknown": N_("cannot be changed")}  # noqa: RUF012 - marshmallow's API

    name = fields.String(validate=length(min=1, max=120))
    url = fields.String(validate=length(min=1, max=2000))
    events = fields.List(fields.String(), metadata={"description": _EVENTS})
    objects = fields.List(fields.String(), metadata={"description": _OBJECTS})
    active = StrictBoolean()


class WebhookDeliverySchema(Shape):
    """One delivery attempt: the event, what came back, how long it took."""

    id = fields.Integer()
    event_id = fields.String(metadata={"description": "the Trellis-Event-Id sent"})
    event_type = fields.String()
    attempt = fields.Integer()
    ok = fields.Boolean(metadata={"description": "a 2xx answer"})
    status_code = fields.Integer(allow_none=True, metadata={"description": "null: no answer"})
    duration_ms = fields.Integer()
    error = fields.String(allow_none=True, metadata={"description": "timeout, refused target…"})
    response_excerpt = fields.String(metadata={"description": "the answer's first bytes"})
    delivered_at = Moment()


class WebhookDeliveryPageSchema(Shape):
    """The answer of ``GET /webhooks/<id>/deliveries``."""

    items = fields.List(
        fields.Nested(WebhookDeliverySchema), metadata={"description": "newest first"}
    )


class PageQuerySchema(Body):
    """The query string of a list read newest first, a page at a time before an id."""

    before = fields.Integer(validate=ID_RANGE, metadata={"description": "entries older than id"})
    limit = fields.Integer(validate=value_range(min=1, max=200), load_default=50)


class TestEventSchema(Shape):
    """The answer of ``POST /webhooks/<id>/test``: the id of the event put in the outbox."""

    event_id = fields.String()


# --- notifications -----------------------------------------------------------------------------


class NotificationLinkSchema(Shape):
    """The record a notification is about."""

    object = fields.String()
    record_id = fields.Integer()


class NotificationSchema(Shape):
    """One notification, its texts per language (``en``, ``zh-CN``)."""

    id = fields.Integer()
    title = fields.Dict(keys=fields.String(), values=fields.String())
    body = fields.Dict(keys=fields.String(), values=fields.String())
    link = fields.Nested(NotificationLinkSchema, allow_none=True)
    created_at = Moment()
    read_at = Moment(allow_none=True, metadata={"description": "null: unread"})


class NotificationPageSchema(Shape):
    """The answer of ``GET /notifications``: newest first, and the unread count."""

    items = fields.List(fields.Nested(NotificationSchema))
    unread = fields.Integer(metadata={"description": "the caller's unread notifications"})


class NotificationQuerySchema(PageQuerySchema):
    """The query string of ``GET /notifications``."""

    unread = fields.Boolean(
        truthy={"true"}, falsy={"false"}, metadata={"description": "true: only the unread ones"}
    )


class UnreadCountSchema(Shape):
    """The answer of ``GET /notifications/unread-count`` and of marking read."""

    unread = fields.Integer()


class NotificationPreferencesSchema(Shape):
    """The caller's notification preferences."""

    email = fields.Boolean(metadata={"description": "also send notifications by e-mail"})
    email_available = fields.Boolean(metadata={"description": "an SMTP server is configured"})


class NotificationPreferencesInputSchema(Body):
    """The body of ``PUT /notifications/preferences``."""

    email = StrictBoolean(required=True)


# Every shape the OpenAPI document describes. Nested shapes come before the shapes holding
# them: registering one that apispec has already met inside another would be a duplicate.
DOCUMENTED: tuple[type[Schema], ...] = (
    ErrorDetailSchema,
    ErrorInfoSchema,
    ErrorSchema,
    UserSchema,
    ScopesSchema,
    ObjectRightsSchema,
    MeSchema,
    UserPageSchema,
    UserCreateSchema,
    UserUpdateSchema,
    TokenSchema,
    NewTokenSchema,
    TokenPageSchema,
    TokenCreateSchema,
    RoleSchema,
    RoleChangeSchema,
    RolePageSchema,
    RoleVersionSchema,
    RoleVersionPageSchema,
    AutomationSchema,
    AutomationChangeSchema,
    AutomationPageSchema,
    AutomationVersionSchema,
    AutomationVersionPageSchema,
    AutomationRunSchema,
    AutomationRunPageSchema,
    WorkflowSchema,
    WorkflowChangeSchema,
    WorkflowPageSchema,
    WorkflowVersionSchema,
    WorkflowVersionPageSchema,
    TransitionBodySchema,
    TransitionOptionSchema,
    TransitionPageSchema,
    TransitionDoneSchema,
    TransitionResultSchema,
    AuditEventSchema,
    AuditPageSchema,
    JobProgressSchema,
    JobSchema,
    JobPageSchema,
    OutboxEventSchema,
    OutboxEventDetailSchema,
    OutboxPageSchema,
    ViewDefinitionSchema,
    ViewSchema,
    ViewPageSchema,
    ViewDefinitionInputSchema,
    ViewCreateSchema,
    ViewUpdateSchema,
    WebhookSchema,
    NewWebhookSecretSchema,
    WebhookPageSchema,
    WebhookCreateSchema,
    WebhookUpdateSchema,
    WebhookDeliverySchema,
    WebhookDeliveryPageSchema,
    TestEventSchema,
    NotificationLinkSchema,
    NotificationSchema,
    NotificationPageSchema,
    UnreadCountSchema,
    NotificationPreferencesSchema,
    NotificationPreferencesInputSchema,
)


# --- loading -----------------------------------------------------------------------------------


def load(
    schema: Schema,
    data: Any,
    *,
    what: str = "request body",
    refusal: type[TrellisError] = ValidationFailed,
) -> dict[str, Any]:
    """``data`` as ``schema`` loads it; otherwise ``refusal`` naming every field refused.

    Something that is not a JSON object at all is a 400 whatever the refusal.
    """
    named = _WHAT.get(what, what)
    if not isinstance(data, Mapping):
        raise BadRequest(N_("the %(what)s must be a JSON object", what=named))
    try:
        loaded: dict[str, Any] = schema.load(data)
    except ValidationError as exc:
        details = problem_details(exc.messages)
        names = ", ".join(detail["field"] for detail in details)
        raise refusal(
            N_("the %(what)s was refused: %(fields)s", what=named, fields=names), details
        ) from None
    return loaded


def problem_details(messages: dict[str, Any] | list[Any]) -> list[dict[str, str]]:
    """marshmallow's ``{field: [messages]}`` as the API's ``[{"field", "message"}]``."""
    if not isinstance(messages, dict):
        return [{"field": "", "message": _text(messages)}]
    return [
        {"field": "" if name == "_schema" else str(name), "message": _text(problem)}
        for name, problem in messages.items()
    ]


def _text(problem: Any) -> str:
    """One field's problems as one message (``N_`` messages stay messages)."""
    if isinstance(problem, dict):  # the items of a list or dict: {index or key: problems}
        parts = [
            N_("item %(key)s: %(problem)s", key=key, problem=_text(v)) for key, v in problem.items()
        ]
        return _joined(parts, N_("%(first)s; %(then)s", first="", then=""))
    if isinstance(problem, list):
        return _joined(
            [_text(part) for part in problem], N_("%(first)s %(then)s", first="", then="")
        )
    return problem if isinstance(problem, str) else str(problem)


def _joined(parts: Sequence[str], joint: Message) -> str:
    """``parts`` joined as ``joint`` says (``"%(first)s; %(then)s"``), each kept a message."""
    if not parts:
        return ""
    joined = parts[0]
    for part in parts[1:]:
        joined = N_(joint.msgid, first=joined, then=part)
    return joined


# What ``load`` names in its refusals ("the user was refused: …").
_WHAT = {
    "request body": N_("request body"),
    "user": N_("user"),
    "change": N_("change"),
    "token": N_("token"),
    "query": N_("query"),
    "webhook": N_("webhook"),
    "preferences": N_("preferences"),
}


# --- approvals ---------------------------------------------------------------------------------


class ApprovalSubmitSchema(Body):
    """The body of ``POST /records/<object>/<id>/approval`` and ``…/approval/recall``."""

    comment = fields.String(allow_none=True, validate=Length(max=2000))
    version = fields.Integer(
        allow_none=True,
        strict=True,
        metadata={"description": "the version read; a record changed since is 409"},
    )


class ApprovalDecisionSchema(Body):
    """The body of ``POST /approvals/<task>/approve|reject|handover|add_signer``."""

    comment = fields.String(allow_none=True, validate=Length(max=2000))
    to = fields.String(
        allow_none=True,
        validate=Length(max=40),
        metadata={"description": 'reject: "end" (default), "submitter" or an earlier step'},
    )
    user = fields.Raw(
        allow_none=True,
        metadata={"description": "handover, add_signer: the user's id or e-mail"},
    )
    position = fields.String(
        allow_none=True,
        validate=one_of(["before", "after"]),
        metadata={"description": "add_signer: before or after oneself (default after)"},
    )
    attachments = fields.List(
        fields.Integer(strict=True),
        allow_none=True,
        metadata={"description": "ids of files stored on the record"},
    )


class ApprovalPersonSchema(Shape):
    """A user as approvals show them."""

    id = fields.Integer()
    name = fields.String()
    email = fields.String(allow_none=True)


class ApprovalRequestSchema(Shape):
    """A request's head: where it stands and who submitted it."""

    id = fields.Integer()
    status = fields.String(
        metadata={"description": "pending, approved, rejected, returned or recalled"}
    )
    step = fields.String(allow_none=True)
    round = fields.Integer()
    submitter = fields.Nested(ApprovalPersonSchema, allow_none=True)
    submitted_at = fields.String()
    decided_at = fields.String(allow_none=True)
    recallable = fields.Boolean()


class ApprovalStepSchema(Shape):
    """A step of the flow and where the request is in it."""

    name = fields.String()
    label = fields.Dict(keys=fields.String(), values=fields.String())
    mode = fields.String()
    state = fields.String(metadata={"description": "done, current or ahead"})
    editable = fields.List(fields.String())


class ApprovalTaskSchema(Shape):
    """One approver's task."""

    id = fields.Integer()
    step = fields.String()
    round = fields.Integer()
    lane = fields.Integer()
    seq = fields.Integer()
    approver = fields.Nested(ApprovalPersonSchema)
    on_behalf_of = fields.Nested(ApprovalPersonSchema, allow_none=True)
    status = fields.String(
        metadata={"description": "pending, waiting, approved, rejected or cancelled"}
    )
    due_at = fields.String(allow_none=True)
    decided_at = fields.String(allow_none=True)
    comment = fields.String(allow_none=True)
    mine = fields.Boolean()


class ApprovalEventSchema(Shape):
    """One entry of a request's history."""

    at = fields.String()
    action = fields.String()
    step = fields.String(allow_none=True)
    task = fields.Integer(allow_none=True)
    by = fields.Nested(ApprovalPersonSchema, allow_none=True)
    on_behalf_of = fields.Nested(ApprovalPersonSchema, allow_none=True)
    comment = fields.String(allow_none=True)
    detail = fields.Dict()


class ApprovalStateSchema(Shape):
    """``GET /records/<object>/<id>/approval``: the latest request, its steps, tasks and
    history."""

    object = fields.String()
    id = fields.Integer()
    approvable = fields.Boolean()
    request = fields.Nested(ApprovalRequestSchema, allow_none=True)
    steps = fields.List(fields.Nested(ApprovalStepSchema))
    tasks = fields.List(fields.Nested(ApprovalTaskSchema))
    history = fields.List(fields.Nested(ApprovalEventSchema))


class InboxItemSchema(Shape):
    """One pending task of the caller."""

    id = fields.Integer()
    object = fields.String()
    object_label = fields.Dict(keys=fields.String(), values=fields.String())
    record_id = fields.Integer()
    title = fields.String()
    step = fields.String()
    step_label = fields.Dict(keys=fields.String(), values=fields.String())
    due_at = fields.String(allow_none=True)
    assigned_at = fields.String()
    submitted_at = fields.String()
    submitter = fields.Nested(ApprovalPersonSchema, allow_none=True)
    on_behalf_of = fields.Nested(ApprovalPersonSchema, allow_none=True)


class InboxPageSchema(Shape):
    """``GET /approvals/inbox``: a page of the caller's pending tasks."""

    items = fields.List(fields.Nested(InboxItemSchema))
    count = fields.Integer(metadata={"description": "all the caller's pending tasks"})
    next_after = fields.Integer(allow_none=True, metadata={"description": "the next page's after"})


class OutOfOfficeSchema(Body):
    """``PUT /approvals/out-of-office``: who takes one's tasks, from and until when."""

    delegate = fields.Raw(required=True, metadata={"description": "user id or e-mail"})
    starts_on = fields.Date(required=True)
    ends_on = fields.Date(required=True)


DOCUMENTED = (
    *DOCUMENTED,
    ApprovalSubmitSchema,
    ApprovalDecisionSchema,
    ApprovalPersonSchema,
    ApprovalRequestSchema,
    ApprovalStepSchema,
    ApprovalTaskSchema,
    ApprovalEventSchema,
    ApprovalStateSchema,
    InboxItemSchema,
    InboxPageSchema,
    OutOfOfficeSchema,
)
