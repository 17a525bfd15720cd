"""Roles as metadata: what each role may do with each object and field. Pure.

A role document names, per object, a record scope for each operation and an access
level per field. A user may hold several roles; ``combine`` adds their rights up
into one ``Permissions`` value that the runtime turns into SQL filters and field
masks. Roles are versioned like object definitions and shipped in packs.

```json
{"x-name": "dealer_admin", "x-label": {"en": "Dealer admin", "zh-CN": "经销商管理员"},
 "objects": {"sales_order": {"read": "hierarchy", "create": "hierarchy",
                             "update": "hierarchy", "delete": "none", "export": "hierarchy",
                             "fields": {"internal_notes": "hidden", "total_amount": "read"}}}}
```
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator

from trellis.platform.messages import N_, schema_message
from trellis.platform.metadata.definition import Problem, _pointer
from trellis.platform.metadata.fieldtypes import LABEL_SCHEMA
from trellis.platform.metadata.names import NAME_PATTERN


class Operation(StrEnum):
    """What a role may do with an object's records, each with its own record scope."""

    READ = "read"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    EXPORT = "export"


SCOPES = ("none", "own", "hierarchy", "all")
FIELD_ACCESS = ("hidden", "read", "write")  # ordered: later grants more

ALL = frozenset({"all"})
NOTHING: frozenset[str] = frozenset()


@cache
def role_meta_schema() -> dict[str, Any]:
    """The JSON Schema every role document must satisfy (built once, cached)."""
    scope = {"enum": list(SCOPES)}
    grant = {
        "type": "object",
        "properties": {
            **{op.value: scope for op in Operation},
            "fields": {
                "type": "object",
                "propertyNames": {"pattern": NAME_PATTERN},
                "additionalProperties": {"enum": list(FIELD_ACCESS)},
            },
        },
        "additionalProperties": False,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Trellis role",
        "type": "object",
        "properties": {
            "x-name": {"type": "string", "pattern": NAME_PATTERN},
            "x-label": LABEL_SCHEMA,
            "x-description": LABEL_SCHEMA,
            "objects": {
                "type": "object",
                "propertyNames": {"pattern": NAME_PATTERN},
                "additionalProperties": grant,
            },
        },
        "required": ["x-name", "x-label", "objects"],
        "additionalProperties": False,
    }


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(role_meta_schema())


def validate_role(document: Any, objects: dict[str, dict[str, Any]]) -> list[Problem]:
    """Every problem with a role document; ``objects`` maps object names to definitions."""
    if not isinstance(document, dict):
        return [Problem("", N_("a role must be a JSON object"))]
    problems = [
        Problem(_pointer(error.absolute_path), schema_message(error))
        for error in _validator().iter_errors(document)
    ]
    if problems:
        return problems
    for object_name, grant in document["objects"].items():
        at = f"/objects/{object_name}"
        if object_name not in objects:
            problems.append(Problem(at, N_("unknown object %(name)s", name=repr(object_name))))
            continue
        properties = objects[object_name].get("properties", {})
        for field_name in grant.get("fields", {}):
            if field_name not in properties:
                problems.append(
                    Problem(
                        f"{at}/fields/{field_name}",
                        N_("%(name)s is not a field", name=repr(field_name)),
                    )
                )
    return problems


@dataclass(frozen=True)
class ObjectGrant:
    """The combined rights of a user's roles on one object."""

    scopes: dict[Operation, frozenset[str]]
    fields: dict[str, str]
    default_field_access: str

    def field_access(self, field_name: str) -> str:
        """``hidden``, ``read`` or ``write`` for a field, the grant's default when unnamed."""
        return self.fields.get(field_name, self.default_field_access)


@dataclass(frozen=True)
class Permissions:
    """What one user may do: the union of their roles, or everything for an admin."""

    is_admin: bool
    objects: dict[str, ObjectGrant] = field(default_factory=dict)
    roles: tuple[str, ...] = ()

    def scopes(self, object_name: str, operation: Operation) -> frozenset[str]:
        """The record scopes granted for ``operation``: a subset of own/hierarchy/all."""
        if self.is_admin:
            return ALL
        grant = self.objects.get(object_name)
        if grant is None:
            return NOTHING
        return grant.scopes.get(operation, NOTHING)

    def field_access(self, object_name: str, field_name: str) -> str:
        """``hidden``, ``read`` or ``write``; an admin writes every field, an ungranted
        object hides them all.
        """
        if self.is_admin:
            return "write"
        grant = self.objects.get(object_name)
        if grant is None:
            return "hidden"
        return grant.field_access(field_name)

    def hidden_fields(self, object_name: str, field_names: list[str]) -> frozenset[str]:
        """Those of ``field_names`` the user may not even read on ``object_name``."""
        return frozenset(
            name for name in field_names if self.field_access(object_name, name) == "hidden"
        )

    @property
    def signature(self) -> str:
        """A short key that is equal for users with equal rights (for caches)."""
        if self.is_admin:
            return "admin"
        raw = json.dumps(
            {
                name: [
                    {op: sorted(s) for op, s in grant.scopes.items()},
                    grant.fields,
                    grant.default_field_access,
                ]
                for name, grant in sorted(self.objects.items())
            },
            sort_keys=True,
        )
        return hashlib.sha1(raw.encode()).hexdigest()[:16]


def _scope_set(scope: str) -> frozenset[str]:
    if scope == "all":
        return ALL
    return NOTHING if scope == "none" else frozenset({scope})


def _union(a: frozenset[str], b: frozenset[str]) -> frozenset[str]:
    return ALL if "all" in a or "all" in b else a | b


def _stronger(a: str, b: str) -> str:
    return a if FIELD_ACCESS.index(a) >= FIELD_ACCESS.index(b) else b


def _default_access(grant: dict[str, Any]) -> str | None:
    """A role's access to the fields it does not mention; None when it grants no operation.

    A grant of nothing (every operation ``none``) must not lift the fields other roles hide.
    """
    if all(grant.get(op, "none") == "none" for op in Operation):
        return None
    writes = any(grant.get(op, "none") != "none" for op in (Operation.CREATE, Operation.UPDATE))
    return "write" if writes else "read"


def combine(roles: list[dict[str, Any]], *, is_admin: bool = False) -> Permissions:
    """Add the rights of several role documents up."""
    scopes: dict[str, dict[Operation, frozenset[str]]] = {}
    fields: dict[str, dict[str, str]] = {}
    defaults: dict[str, str] = {}
    for role in roles:
        for object_name, grant in role.get("objects", {}).items():
            object_scopes = scopes.setdefault(object_name, {})
            for op in Operation:
                granted = _scope_set(grant.get(op, "none"))
                object_scopes[op] = _union(object_scopes.get(op, NOTHING), granted)
            default = _default_access(grant)
            if default is None:
                continue
            defaults[object_name] = _stronger(defaults.get(object_name, "hidden"), default)
            object_fields = fields.setdefault(object_name, {})
            for field_name, access in grant.get("fields", {}).items():
                # A field a role does not mention gets that role's default access.
                current = object_fields.get(field_name)
                object_fields[field_name] = (
                    access if current is None else _stronger(current, access)
                )
    # Unmentioned fields of a role count at that role's default: fold that in.
    for role in roles:
        for object_name, grant in role.get("objects", {}).items():
            default = _default_access(grant)
            if default is None:
                continue
            mentioned = set(grant.get("fields", {}))
            for field_name in list(fields[object_name]):
                if field_name not in mentioned:
                    fields[object_name][field_name] = _stronger(
                        fields[object_name][field_name], default
                    )
    objects = {
        name: ObjectGrant(scopes[name], fields.get(name, {}), defaults.get(name, "hidden"))
        for name in scopes
    }
    names = tuple(sorted(str(role.get("x-name", "")) for role in roles))
    return Permissions(is_admin=is_admin, objects=objects, roles=names)
