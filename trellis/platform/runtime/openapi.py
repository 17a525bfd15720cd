"""The OpenAPI 3.1 document, generated from the current metadata.

OpenAPI 3.1 speaks JSON Schema 2020-12, so each object's record schema goes in
as it is. The document is rebuilt only when the metadata revision moves.
"""

from __future__ import annotations

import copy
import weakref
from typing import TYPE_CHECKING, Any

from trellis.platform.metadata.fieldtypes import ALL_OPS

if TYPE_CHECKING:
    from trellis.platform.metadata.permissions import Permissions
    from trellis.platform.runtime.registry import MetaRegistry, ObjectMeta

# Per registry (weakly: an app's registry going away takes its document with it; keying on
# ``id(registry)`` served a dead registry's document to a new one at the same address).
_cache: weakref.WeakKeyDictionary[
    MetaRegistry, tuple[int | None, dict[tuple[str, str], dict[str, Any]]]
] = weakref.WeakKeyDictionary()

ERROR = {"$ref": "#/components/responses/Error"}
STANDARD_ERRORS = {"400": ERROR, "401": ERROR, "403": ERROR, "404": ERROR}


def openapi_document(
    registry: MetaRegistry, server_url: str, permissions: Permissions
) -> dict[str, Any]:
    """The document as the caller may see it: objects they can read, fields not hidden."""
    documents = _cache.get(registry)
    if documents is None or documents[0] != registry.revision:
        documents = (registry.revision, {})
        _cache[registry] = documents
    key = (server_url, permissions.signature)
    if key not in documents[1]:
        documents[1][key] = _build(registry, server_url, permissions)
    return documents[1][key]


def _build(registry: MetaRegistry, server_url: str, permissions: Permissions) -> dict[str, Any]:
    paths: dict[str, Any] = _metadata_paths() if permissions.is_admin else {}
    schemas: dict[str, Any] = {
        "ObjectDefinition": {
            "type": "object",
            "description": "A JSON Schema 2020-12 document with x- keywords (see docs/metadata.md)",
            "additionalProperties": True,
        },
        "DefinitionResponse": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "integer"},
                "definition": {"$ref": "#/components/schemas/ObjectDefinition"},
            },
        },
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message", "details"],
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "details": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "field": {"type": "string"},
                                    "message": {"type": "string"},
                                },
                            },
                        },
                    },
                }
            },
        },
    }
    readable = {m.name for m in registry.all() if permissions.scopes(m.name, "read")}
    for meta in sorted(registry.all(), key=lambda m: m.name):
        if meta.name not in readable:
            continue
        schemas.update(_record_schemas(meta, permissions, readable))
        paths.update(_allowed_paths(meta, _record_paths(meta), permissions))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Trellis API",
            "version": f"1.{registry.revision or 0}",
            "description": "Generated from the current metadata; regenerated when it changes.",
        },
        "servers": [{"url": f"{server_url}/api/v1"}],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
            "responses": {
                "Error": {
                    "description": "An error",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                }
            },
        },
    }


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, **_json(schema)}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _name_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def _int_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "integer"}}


def _metadata_paths() -> dict[str, Any]:
    definition = _ref("DefinitionResponse")
    listing = {
        "type": "object",
        "properties": {"items": {"type": "array", "items": {"type": "object"}}},
    }
    name = _name_param("name", "object name")
    return {
        "/objects": {
            "get": {
                "operationId": "listObjects",
                "tags": ["metadata"],
                "responses": {"200": _ok("Objects", listing), **STANDARD_ERRORS},
            },
            "post": {
                "operationId": "createObject",
                "tags": ["metadata"],
                "requestBody": {"required": True, **_json(_ref("ObjectDefinition"))},
                "responses": {
                    "201": _ok("Created", definition),
                    "409": ERROR,
                    "422": ERROR,
                    **STANDARD_ERRORS,
                },
            },
        },
        "/objects/{name}": {
            "parameters": [name],
            "get": {
                "operationId": "getObject",
                "tags": ["metadata"],
                "responses": {"200": _ok("Definition", definition), **STANDARD_ERRORS},
            },
            "put": {
                "operationId": "updateObject",
                "tags": ["metadata"],
                "requestBody": {"required": True, **_json(_ref("ObjectDefinition"))},
                "responses": {
                    "200": _ok("New version", definition),
                    "422": ERROR,
                    **STANDARD_ERRORS,
                },
            },
        },
        "/objects/{name}/versions": {
            "parameters": [name],
            "get": {
                "operationId": "listObjectVersions",
                "tags": ["metadata"],
                "responses": {"200": _ok("Versions, newest first", listing), **STANDARD_ERRORS},
            },
        },
        "/objects/{name}/versions/{version}": {
            "parameters": [name, _int_param("version")],
            "get": {
                "operationId": "getObjectVersion",
                "tags": ["metadata"],
                "responses": {"200": _ok("That version", definition), **STANDARD_ERRORS},
            },
        },
        "/objects/{name}/versions/{version}/restore": {
            "parameters": [name, _int_param("version")],
            "post": {
                "operationId": "restoreObjectVersion",
                "tags": ["metadata"],
                "responses": {
                    "200": _ok("Restored as a new version", definition),
                    "422": ERROR,
                    **STANDARD_ERRORS,
                },
            },
        },
    }


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _system_properties() -> dict[str, Any]:
    stamp = {"type": "string", "format": "date-time"}
    user = {"type": ["integer", "null"]}
    return {
        "id": {"type": "integer", "readOnly": True},
        "version": {"type": "integer", "readOnly": True},
        "created_at": {**stamp, "readOnly": True},
        "created_by": {**user, "readOnly": True},
        "updated_at": {**stamp, "readOnly": True},
        "updated_by": {**user, "readOnly": True},
        "owner_id": {**user, "readOnly": True},
    }


def _record_schemas(
    meta: ObjectMeta, permissions: Permissions, readable: set[str]
) -> dict[str, Any]:
    base = _pascal(meta.name)
    access = {name: permissions.field_access(meta.name, name) for name in meta.fields}
    fields = {
        name: copy.deepcopy(schema)
        for name, schema in meta.record_schema["properties"].items()
        if access[name] != "hidden"
    }
    for name, spec in meta.fields.items():
        if name not in fields:
            continue
        fields[name]["title"] = spec.label.get("en", name)
        labels = spec.label
        if len(labels) > 1:
            fields[name]["description"] = " / ".join(labels.values())
        if not spec.writable or access[name] != "write":
            fields[name]["readOnly"] = True
    writable = {n: s for n, s in fields.items() if meta.fields[n].writable and access[n] == "write"}
    children = {
        str(spec.related_name): {"type": "array", "items": _ref(f"{_pascal(child)}Input")}
        for child, spec in meta.children
        if child in readable
    }
    output_children = {
        str(spec.related_name): {"type": "array", "items": _ref(_pascal(child))}
        for child, spec in meta.children
        if child in readable
    }
    required = [n for n in meta.record_schema["required"] if n in writable]
    return {
        base: {
            "type": "object",
            "title": meta.definition.label.get("en", meta.name),
            "properties": {**_system_properties(), **fields, **output_children},
        },
        f"{base}Input": {
            "type": "object",
            "properties": {**writable, **children},
            "required": required,
            "additionalProperties": False,
        },
        f"{base}Patch": {
            "type": "object",
            "properties": {"version": {"type": "integer"}, **writable},
            "required": ["version"],
            "additionalProperties": False,
        },
        f"{base}Page": {
            "type": "object",
            "properties": {
                "items": {"type": "array", "items": _ref(base)},
                "next_cursor": {"type": ["string", "null"]},
            },
        },
    }


def _allowed_paths(
    meta: ObjectMeta, paths: dict[str, Any], permissions: Permissions
) -> dict[str, Any]:
    """Leave out the operations the caller's roles do not grant."""
    allowed = {
        op: bool(permissions.scopes(meta.name, op))
        for op in ("create", "update", "delete", "export")
    }
    base = f"/records/{meta.name}"
    if not allowed["create"]:
        paths[base].pop("post")
    if not allowed["update"]:
        paths[f"{base}/{{id}}"].pop("patch")
    if not allowed["delete"]:
        paths[f"{base}/{{id}}"].pop("delete")
        paths.pop(f"{base}/{{id}}/restore")
    if not allowed["export"]:
        paths.pop(f"{base}/export")
    return paths


def _record_paths(meta: ObjectMeta) -> dict[str, Any]:
    base = _pascal(meta.name)
    label = meta.definition.label.get("en", meta.name)
    tag = [meta.name]
    record_id = _int_param("id")
    list_params = [
        {
            "name": "filter",
            "in": "query",
            "schema": {"type": "string"},
            "description": "JSON list of [field, op, value]; ops: " + ", ".join(sorted(ALL_OPS)),
        },
        {
            "name": "sort",
            "in": "query",
            "schema": {"type": "string"},
            "description": "comma-separated fields, '-' for descending",
        },
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}},
        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
        {"name": "fields", "in": "query", "schema": {"type": "string"}},
    ]
    record = _ref(base)
    return {
        f"/records/{meta.name}": {
            "get": {
                "operationId": f"list{base}",
                "tags": tag,
                "summary": f"List {label}",
                "parameters": list_params,
                "responses": {"200": _ok("A page", _ref(f"{base}Page")), **STANDARD_ERRORS},
            },
            "post": {
                "operationId": f"create{base}",
                "tags": tag,
                "summary": f"Create {label}",
                "requestBody": {"required": True, **_json(_ref(f"{base}Input"))},
                "responses": {
                    "201": _ok("Created", record),
                    "409": ERROR,
                    "422": ERROR,
                    **STANDARD_ERRORS,
                },
            },
        },
        f"/records/{meta.name}/export": {
            "get": {
                "operationId": f"export{base}",
                "tags": tag,
                "summary": f"Export {label} as CSV",
                "parameters": [p for p in list_params if p["name"] in ("filter", "sort", "fields")],
                "responses": {
                    "200": {
                        "description": "Every matching record within the export scope",
                        "content": {"text/csv": {"schema": {"type": "string"}}},
                    },
                    **STANDARD_ERRORS,
                },
            },
        },
        f"/records/{meta.name}/{{id}}": {
            "parameters": [record_id],
            "get": {
                "operationId": f"get{base}",
                "tags": tag,
                "responses": {"200": _ok("The record", record), **STANDARD_ERRORS},
            },
            "patch": {
                "operationId": f"update{base}",
                "tags": tag,
                "requestBody": {"required": True, **_json(_ref(f"{base}Patch"))},
                "responses": {
                    "200": _ok("Updated", record),
                    "409": ERROR,
                    "422": ERROR,
                    **STANDARD_ERRORS,
                },
            },
            "delete": {
                "operationId": f"delete{base}",
                "tags": tag,
                "responses": {
                    "204": {"description": "Deleted (restorable)"},
                    "409": ERROR,
                    **STANDARD_ERRORS,
                },
            },
        },
        f"/records/{meta.name}/{{id}}/restore": {
            "parameters": [record_id],
            "post": {
                "operationId": f"restore{base}",
                "tags": tag,
                "responses": {"200": _ok("Restored", record), "409": ERROR, **STANDARD_ERRORS},
            },
        },
        f"/records/{meta.name}/{{id}}/history": {
            "parameters": [record_id],
            "get": {
                "operationId": f"history{base}",
                "tags": tag,
                "responses": {"200": _ok("Field history", {"type": "object"}), **STANDARD_ERRORS},
            },
        },
    }
