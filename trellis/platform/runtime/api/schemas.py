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

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from marshmallow import RAISE, Schema, ValidationError, fields
from marshmallow.validate import Length, OneOf, Range

from trellis.exceptions import BadRequest, TrellisError, ValidationFailed
from trellis.platform.metadata.fieldtypes import INT64_MAX
from trellis.platform.metadata.permissions import SCOPES, Operation
from trellis.platform.runtime.identity.passwords import MIN_PASSWORD_LENGTH
from trellis.platform.runtime.identity.tokens import MAX_TOKEN_DAYS
from trellis.platform.runtime.models import iso

LANGUAGES = ("en", "zh-CN")
GRANTED_SCOPES = tuple(scope for scope in SCOPES if scope != "none")
ID_RANGE = Range(min=1, max=INT64_MAX)


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
    language = fields.String(validate=OneOf(LANGUAGES))
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
    {op.value: fields.List(fields.String(validate=OneOf(GRANTED_SCOPES))) for op in Operation},
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

    password = fields.String(validate=Length(min=MIN_PASSWORD_LENGTH))
    name = fields.String(validate=Length(max=120))
    roles = fields.List(fields.String(), metadata={"description": "role names, replacing all"})
    partner = StrictInteger(allow_none=True, validate=ID_RANGE)
    manager = StrictInteger(allow_none=True, validate=ID_RANGE)
    language = fields.String(validate=OneOf(LANGUAGES))
    is_admin = StrictBoolean()


class UserCreateSchema(_UserChangeSchema):
    """The body of ``POST /users``: e-mail and password required, the rest optional."""

    error_messages = {"unknown": "is not a user field"}  # noqa: RUF012 - marshmallow's API

    email = fields.String(required=True, validate=Length(max=254), metadata={"format": "email"})
    password = fields.String(required=True, validate=Length(min=MIN_PASSWORD_LENGTH))


class UserUpdateSchema(_UserChangeSchema):
    """The body of ``PATCH /users/<id>``: the keys to change; e-mail is not one of them."""

    error_messages = {"unknown": "cannot be changed"}  # noqa: RUF012 - marshmallow's API

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

    name = fields.String(validate=Length(max=120))
    expires_in_days = StrictInteger(allow_none=True, validate=Range(min=1, max=MAX_TOKEN_DAYS))


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
    limit = fields.Integer(validate=Range(min=1, max=500), load_default=100)


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

    object = fields.String(required=True, validate=Length(min=1, max=40))
    label = fields.String(required=True, validate=Length(min=1, max=120))
    shared_with_role = fields.String(
        allow_none=True, metadata={"description": "administrators only: share with this role"}
    )
    definition = fields.Nested(ViewDefinitionInputSchema, required=True)


class ViewUpdateSchema(Body):
    """The body of ``PUT /views/<id>``: the ``version`` read, and what changes."""

    error_messages = {"unknown": "cannot be changed"}  # noqa: RUF012 - marshmallow's API

    version = StrictInteger(
        required=True, validate=Range(min=1), metadata={"description": "the version read"}
    )
    label = fields.String(validate=Length(min=1, max=120))
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
        validate=Range(min=1), metadata={"description": "delete only if still this version"}
    )


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
    AuditEventSchema,
    AuditPageSchema,
    ViewDefinitionSchema,
    ViewSchema,
    ViewPageSchema,
    ViewDefinitionInputSchema,
    ViewCreateSchema,
    ViewUpdateSchema,
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
    if not isinstance(data, Mapping):
        raise BadRequest(f"the {what} must be a JSON object")
    try:
        loaded: dict[str, Any] = schema.load(data)
    except ValidationError as exc:
        details = problem_details(exc.messages)
        names = ", ".join(detail["field"] for detail in details)
        raise refusal(f"the {what} was refused: {names}", details) from None
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
    if isinstance(problem, dict):  # the items of a list or dict: {index or key: problems}
        return "; ".join(f"item {key}: {_text(value)}" for key, value in problem.items())
    if isinstance(problem, list):
        return " ".join(_text(part) for part in problem)
    return str(problem)
