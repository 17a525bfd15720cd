"""Object definitions: checking them, parsing them, and comparing two of them.

An object definition is a JSON Schema (draft 2020-12) document whose ``x-`` keywords
carry the platform's meaning (DESIGN §2). ``validate_definition`` returns every
problem with the JSON pointer where it is; ``parse_definition`` turns a valid
document into an ``ObjectDefinition`` the runtime can ask questions of.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from trellis.exceptions import InvalidDefinition
from trellis.platform.messages import N_, schema_message
from trellis.platform.metadata.fieldtypes import LABEL_SCHEMA, FieldSpec, get_type, registered_types
from trellis.platform.metadata.names import NAME_PATTERN, RESERVED_NAMES, name_problem
from trellis.platform.metadata.patterns import (
    FORMAT_CHECKER,
    Validator,
    full_validator,
    pattern_problem,
    walk_schemas,
)

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
MAX_FIELDS = 400


# The form's arrangement: sections (a bilingual heading, 1–3 columns, fields in order).
LAYOUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "sections": {
            "type": "array",
            "minItems": 1,
            "maxItems": 30,
            "items": {
                "type": "object",
                "properties": {
                    "label": LABEL_SCHEMA,
                    "columns": {"type": "integer", "minimum": 1, "maximum": 3},
                    "fields": {
                        "type": "array",
                        "items": {"type": "string"},
                        "uniqueItems": True,
                        "maxItems": 200,
                    },
                },
                "required": ["fields"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["sections"],
    "additionalProperties": False,
}


# Validation rules: each names itself, may apply only ``when`` an expression holds, asserts
# an expression, and says what is wrong in both languages (``{expression}`` parts are
# filled in); ``field`` is where a form shows it.
RULES_SCHEMA: dict[str, Any] = {
    "type": "array",
    "maxItems": 50,
    "items": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "pattern": NAME_PATTERN},
            "when": {"type": "string", "minLength": 1, "maxLength": 4000},
            "assert": {"type": "string", "minLength": 1, "maxLength": 4000},
            "message": {
                **LABEL_SCHEMA,
                "required": ["en"],
                "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 500},
            },
            "field": {"type": "string"},
        },
        "required": ["name", "assert", "message"],
        "additionalProperties": False,
    },
}


@cache
def meta_schema() -> dict[str, Any]:
    """The meta-schema every object definition must satisfy, built from the registry."""
    name = {"type": "string", "pattern": NAME_PATTERN, "not": {"enum": sorted(RESERVED_NAMES)}}
    per_type = [
        {
            "if": {"properties": {"x-type": {"const": type_name}}, "required": ["x-type"]},
            "then": field_type.definition_schema(),
        }
        for type_name, field_type in sorted(registered_types().items())
    ]
    field_schema = {
        "type": "object",
        "properties": {"x-type": {"enum": sorted(registered_types())}},
        "required": ["x-type"],
        "allOf": per_type,
    }
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": "https://trellis.dev/schemas/object-definition.json",
        "title": "Trellis object definition",
        "type": "object",
        "properties": {
            "$schema": {"const": SCHEMA_DIALECT},
            "$id": {"type": "string"},
            "x-name": name,
            "x-label": LABEL_SCHEMA,
            "x-label-plural": LABEL_SCHEMA,
            "x-description": LABEL_SCHEMA,
            "x-title-field": {"type": "string"},
            "x-hierarchy-field": {"type": "string"},
            "x-indexes": {
                "type": "array",
                "maxItems": 20,
                "items": {
                    "type": "array",
                    "items": {"type": "string"},
                    "minItems": 2,
                    "maxItems": 5,
                    "uniqueItems": True,
                },
            },
            "x-scope-field": {"type": "string"},
            "x-rules": RULES_SCHEMA,
            "x-layout": LAYOUT_SCHEMA,
            "x-list-columns": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": 1,
                "maxItems": 20,
                "uniqueItems": True,
            },
            "title": {"type": "string"},
            "description": {"type": "string"},
            "type": {"const": "object"},
            "properties": {
                "type": "object",
                "minProperties": 1,
                "maxProperties": MAX_FIELDS,
                "propertyNames": name,
                "additionalProperties": field_schema,
            },
            "required": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
            "additionalProperties": {"const": False},
        },
        "required": ["x-name", "x-label", "type", "properties"],
        "additionalProperties": False,
    }


@cache
def _meta_validator() -> Any:
    schema = meta_schema()
    Draft202012Validator.check_schema(schema)
    # RE2 runs the meta-schema's own patterns too: no input reaches Python's ``re``.
    return Validator(schema, format_checker=FORMAT_CHECKER)


def _pointer(path: Any) -> str:
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in path]
    return "/" + "/".join(parts) if parts else ""


def _locate(error: ValidationError) -> list[Problem]:
    pointer = _pointer(error.absolute_path)
    if "propertyNames" in error.absolute_schema_path:
        # jsonschema reports a bad property name at its parent object; point at the name.
        pointer = f"{pointer}/{_pointer([error.instance])[1:]}"
    if error.validator == "pattern" and error.validator_value == NAME_PATTERN:
        named = name_problem(error.instance)  # says what a name may be, not the regex
        if named is not None:
            return [Problem(pointer, named)]
    if error.validator == "not":
        return [Problem(pointer, N_("%(name)s is a reserved word", name=repr(error.instance)))]
    if error.validator == "anyOf" and list(error.absolute_schema_path)[-3:-1] == [
        "properties",
        "type",
    ]:
        expected = error.schema["anyOf"][0]["const"]
        return [
            Problem(pointer, N_("type must be %(type)s or [%(type)s, 'null']", type=repr(expected)))
        ]
    if error.validator == "additionalProperties" and error.validator_value is False:
        # Likewise, point at each unknown keyword rather than at the object holding it.
        known = error.schema.get("properties", {})
        return [
            Problem(
                f"{pointer}/{_pointer([key])[1:]}", N_("unknown keyword %(name)s", name=repr(key))
            )
            for key in error.instance
            if key not in known
        ]
    return [Problem(pointer, schema_message(error))]


def _leaf_errors(error: ValidationError) -> list[ValidationError]:
    if error.context and error.validator != "anyOf":
        leaves: list[ValidationError] = []
        for sub in error.context:
            leaves.extend(_leaf_errors(sub))
        return leaves
    return [error]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a document: where (a JSON pointer) and what, in plain words."""

    pointer: str
    message: str
    # Where in an expression (offset, line, column), for a refused expression.
    position: tuple[int, int, int] | None = None

    def as_detail(self) -> dict[str, Any]:
        """The problem as an error response lists it: ``{field: pointer, message}``, and
        for an expression the character's ``offset``, ``line`` and ``column``."""
        detail: dict[str, Any] = {"field": self.pointer, "message": self.message}
        if self.position is not None:
            detail.update(zip(("offset", "line", "column"), self.position, strict=True))
        return detail


def validate_definition(
    document: Any, known_objects: dict[str, dict[str, Any]] | None = None
) -> list[Problem]:
    """Every problem with ``document``, each at its JSON pointer; empty when valid.

    ``known_objects`` maps the names of the other current objects to their
    documents, so references (``x-target``) can be checked.
    """
    if not isinstance(document, dict):
        return [Problem("", N_("an object definition must be a JSON object"))]
    problems: list[Problem] = []
    for error in sorted(_meta_validator().iter_errors(document), key=lambda e: list(e.path)):
        for leaf in _leaf_errors(error):
            problems.extend(_locate(leaf))
    if problems:
        return _unique(problems)
    return _semantic_problems(normalise_definition(document), known_objects or {})


def normalise_definition(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with the defaults the platform applies written in (e.g. ``maxLength``).

    The stored version is the normalised one, so what a version says is what it does.
    Idempotent; a field of an unknown type is left for the meta-schema to refuse.
    """
    document = copy.deepcopy(document)
    properties = document.get("properties")
    if not isinstance(properties, dict):
        return document
    for name, prop in properties.items():
        type_name = prop.get("x-type") if isinstance(prop, dict) else None
        if isinstance(type_name, str) and type_name in registered_types():
            properties[name] = get_type(type_name).effective_schema(prop)
    return document


def _unique(problems: list[Problem]) -> list[Problem]:
    seen: set[Problem] = set()
    result = []
    for problem in problems:
        if problem not in seen:
            seen.add(problem)
            result.append(problem)
    return result


def _semantic_problems(doc: dict[str, Any], known: dict[str, dict[str, Any]]) -> list[Problem]:
    """Rules a JSON Schema cannot express: references, defaults, cross-field facts."""
    problems: list[Problem] = []
    name = doc["x-name"]
    properties: dict[str, Any] = doc["properties"]
    required = doc.get("required", [])
    # The meta-schema's name pattern, run by Python's ``re``, lets a trailing newline by.
    names = [("/x-name", name), *((_pointer(["properties", f]), f) for f in properties)]
    for pointer, candidate in names:
        problem = name_problem(candidate)
        if problem is not None:
            problems.append(Problem(pointer, problem))
    for index, field_name in enumerate(required):
        if field_name not in properties:
            problems.append(
                Problem(f"/required/{index}", N_("%(name)s is not a field", name=repr(field_name)))
            )
    title = doc.get("x-title-field")
    if title is not None and title not in properties:
        problems.append(Problem("/x-title-field", N_("%(name)s is not a field", name=repr(title))))
    problems.extend(_layout_problems(doc))
    objects = {**known, name: doc}
    for field_name, prop in properties.items():
        problems.extend(_field_problems(name, field_name, prop, field_name in required, objects))
    problems.extend(_scope_problems(doc, objects))
    problems.extend(_index_problems(doc))
    if not problems:  # expressions are checked against fields known to be sound
        from trellis.platform.metadata.computed import computed_problems

        for pointer, message, where in computed_problems(doc, objects):
            position = (where["offset"], where["line"], where["column"]) if where else None
            problems.append(Problem(pointer, message, position))
    return problems


def _layout_problems(doc: dict[str, Any]) -> list[Problem]:
    """Layout sections and list columns may only name fields, each at most once."""
    properties = doc["properties"]
    problems = []
    seen: set[str] = set()
    for s_index, section in enumerate(doc.get("x-layout", {}).get("sections", [])):
        for f_index, field_name in enumerate(section["fields"]):
            at = f"/x-layout/sections/{s_index}/fields/{f_index}"
            if field_name not in properties:
                problems.append(Problem(at, N_("%(name)s is not a field", name=repr(field_name))))
            elif field_name in seen:
                problems.append(
                    Problem(at, N_("%(name)s is already in the layout", name=repr(field_name)))
                )
            seen.add(field_name)
    for index, field_name in enumerate(doc.get("x-list-columns", [])):
        if field_name not in properties and field_name not in LIST_SYSTEM_COLUMNS:
            problems.append(
                Problem(
                    f"/x-list-columns/{index}", N_("%(name)s is not a field", name=repr(field_name))
                )
            )
    return problems


LIST_SYSTEM_COLUMNS = ("id", "created_at", "updated_at")
INDEXABLE_SYSTEM_COLUMNS = ("id", "created_at", "updated_at", "owner_id")


def _index_problems(doc: dict[str, Any]) -> list[Problem]:
    """Composite indexes name existing, sortable fields (or a few system columns)."""
    problems = []
    properties = doc["properties"]
    for i, columns in enumerate(doc.get("x-indexes", [])):
        for j, column in enumerate(columns):
            if column in INDEXABLE_SYSTEM_COLUMNS:
                continue
            prop = properties.get(column)
            if prop is None:
                problems.append(
                    Problem(f"/x-indexes/{i}/{j}", N_("%(name)s is not a field", name=repr(column)))
                )
            elif not get_type(prop["x-type"]).sortable:
                problems.append(
                    Problem(
                        f"/x-indexes/{i}/{j}",
                        N_("a %(type)s field cannot be indexed", type=prop["x-type"]),
                    )
                )
    return problems


def hierarchy_field_of(doc: dict[str, Any]) -> str | None:
    """The self-lookup that makes an object a hierarchy (``x-hierarchy-field``, or the only one)."""
    named = doc.get("x-hierarchy-field")
    if named is not None:
        return str(named)
    own = [
        field_name
        for field_name, prop in doc.get("properties", {}).items()
        if prop.get("x-type") == "lookup" and prop.get("x-target") == doc.get("x-name")
    ]
    return own[0] if len(own) == 1 else None


def _scope_problems(doc: dict[str, Any], objects: dict[str, dict[str, Any]]) -> list[Problem]:
    problems = []
    properties = doc["properties"]
    named = doc.get("x-hierarchy-field")
    if named is not None:
        prop = properties.get(named, {})
        if prop.get("x-type") != "lookup" or prop.get("x-target") != doc["x-name"]:
            problems.append(
                Problem(
                    "/x-hierarchy-field",
                    N_("%(name)s must be a lookup to this object itself", name=repr(named)),
                )
            )
    scope = doc.get("x-scope-field")
    if scope is not None:
        prop = properties.get(scope)
        target = objects.get(str(prop.get("x-target"))) if prop else None
        if prop is None or prop.get("x-type") not in ("lookup", "master_detail"):
            problems.append(
                Problem("/x-scope-field", N_("%(name)s must be a lookup field", name=repr(scope)))
            )
        elif target is None or hierarchy_field_of(target) is None:
            problems.append(
                Problem(
                    "/x-scope-field",
                    N_(
                        "%(name)s must point at a hierarchy object (one with a self-lookup parent)",
                        name=repr(scope),
                    ),
                )
            )
    return problems


def _field_problems(
    object_name: str,
    field_name: str,
    prop: dict[str, Any],
    required: bool,
    objects: dict[str, dict[str, Any]],
) -> list[Problem]:
    at = f"/properties/{field_name}"
    problems: list[Problem] = []
    type_name = prop["x-type"]
    target = prop.get("x-target")
    if target is not None and target not in objects:
        problems.append(Problem(f"{at}/x-target", N_("unknown object %(name)s", name=repr(target))))
    if type_name == "master_detail":
        if not required:
            problems.append(Problem(at, N_("a master_detail field must be required")))
        if target == object_name:
            problems.append(Problem(f"{at}/x-target", N_("an object cannot be its own master")))
        related = prop["x-related-name"]
        # The parent's records carry their children under this key, next to its own fields.
        related_problem = name_problem(related)
        if related_problem is not None:
            problems.append(Problem(f"{at}/x-related-name", related_problem))
        elif target in objects and related in objects[target].get("properties", {}):
            problems.append(
                Problem(
                    f"{at}/x-related-name",
                    N_(
                        "%(name)s is already a field of %(object)s",
                        name=repr(related),
                        object=repr(target),
                    ),
                )
            )
        elif target in objects:
            problems.extend(
                Problem(
                    f"{at}/x-related-name",
                    N_(
                        "%(name)s already names %(object)s's records",
                        name=repr(related),
                        object=other,
                    ),
                )
                for other in _children_named(objects, target, related)
                if other != object_name
            )
    if type_name == "autonumber" and "{0" not in prop["x-format"]:
        problems.append(Problem(f"{at}/x-format", N_("the format needs a counter such as {0000}")))
    if type_name in {"picklist", "multipicklist"}:
        values = prop["enum"] if type_name == "picklist" else prop["items"]["enum"]
        for value in prop.get("x-enum-labels", {}):
            if value not in values:
                pointer = _pointer(["properties", field_name, "x-enum-labels", value])
                problems.append(
                    Problem(pointer, N_("%(value)s is not one of the values", value=repr(value)))
                )
    if prop.get("x-unique") and type_name in {"multipicklist", "json", "textarea", "boolean"}:
        problems.append(
            Problem(f"{at}/x-unique", N_("a %(type)s field cannot be unique", type=type_name))
        )
    if "default" in prop:
        spec = FieldSpec(field_name, get_type(type_name), prop, required)
        if not spec.type.writable:
            problems.append(Problem(f"{at}/default", N_("this field cannot have a default")))
        problems.extend(_default_problems(at, spec, prop["default"]))
    problems.extend(_length_problems(at, prop))
    problems.extend(_schema_keyword_problems(at, prop))
    return problems


def _length_problems(at: str, prop: dict[str, Any]) -> list[Problem]:
    # With maxLength defaulted, a larger minLength would make a field no value can fill.
    low, high = prop.get("minLength"), prop.get("maxLength")
    if type(low) is int and type(high) is int and low > high:
        return [
            Problem(
                f"{at}/minLength",
                N_("minLength %(low)s is greater than maxLength %(high)s", low=low, high=high),
            )
        ]
    return []


def _default_problems(at: str, spec: FieldSpec, default: Any) -> list[Problem]:
    # RE2 checks a default's pattern too: saving a definition never backtracks.
    validator = full_validator(spec.value_schema())
    return [Problem(f"{at}/default", schema_message(e)) for e in validator.iter_errors(default)]


# Keywords a json field's schema may not use: fastjsonschema would match
# patternProperties with Python's ``re``, and resolve a ``$ref`` by fetching its URL.
_REFUSED_KEYWORDS = {
    "patternProperties": N_("patternProperties is not supported; use propertyNames with a pattern"),
    "$ref": N_("references are not supported in a field's schema"),
    "$dynamicRef": N_("references are not supported in a field's schema"),
    "$recursiveRef": N_("references are not supported in a field's schema"),
}


def _schema_keyword_problems(at: str, prop: dict[str, Any]) -> list[Problem]:
    """Every ``pattern`` in a field's schema compiles with RE2; refused keywords are absent."""
    problems = []
    for pointer, schema in walk_schemas(prop, at):
        if "pattern" in schema:
            problem = pattern_problem(schema["pattern"])
            if problem is not None:
                problems.append(Problem(f"{pointer}/pattern", problem))
        problems.extend(
            Problem(f"{pointer}/{keyword}", message)
            for keyword, message in _REFUSED_KEYWORDS.items()
            if keyword in schema
        )
    return problems


def _children_named(objects: dict[str, dict[str, Any]], target: str, related: str) -> list[str]:
    """The objects whose master_detail field files them under ``related`` in ``target``."""
    return [
        name
        for name, doc in objects.items()
        for prop in doc.get("properties", {}).values()
        if isinstance(prop, dict)
        and prop.get("x-type") == "master_detail"
        and prop.get("x-target") == target
        and prop.get("x-related-name") == related
    ]


@dataclass(frozen=True)
class ObjectDefinition:
    """A valid definition, parsed: fields in order, each a ``FieldSpec``."""

    name: str
    document: dict[str, Any]
    fields: dict[str, FieldSpec]

    @property
    def label(self) -> dict[str, str]:
        """The object's ``x-label`` by language (a copy)."""
        return dict(self.document["x-label"])

    @property
    def title_field(self) -> str | None:
        """The field that names a record in lists and lookups (``x-title-field``), if any."""
        return self.document.get("x-title-field")

    def layout(self) -> list[dict[str, Any]]:
        """The form's sections: ``x-layout``'s, else one derived from the field order.

        A field the layout leaves out still appears, in a last section, so that adding a
        field never hides it from forms.
        """
        sections = [dict(s) for s in self.document.get("x-layout", {}).get("sections", [])]
        placed = {name for section in sections for name in section["fields"]}
        rest = [name for name in self.fields if name not in placed]
        if rest:
            sections.append({"label": {"en": "Details", "zh-CN": "详细信息"}, "fields": rest})
        for section in sections:
            section.setdefault("columns", 2)
        return sections

    def list_columns(self) -> list[str]:
        """A list view's default columns: ``x-list-columns``, else the title and 5 more."""
        given = self.document.get("x-list-columns")
        if given:
            return list(given)
        title = self.title_field
        shown = [title] if title else []
        for name, spec in self.fields.items():
            if len(shown) >= 6:
                break
            if name != title and spec.type.sortable and spec.type.name not in ("json", "textarea"):
                shown.append(name)
        return shown

    def lookups(self) -> list[FieldSpec]:
        """The fields that reference another object (lookup and master_detail), in order."""
        return [f for f in self.fields.values() if f.target is not None]

    @property
    def hierarchy_field(self) -> str | None:
        """The parent field when this object is a partner hierarchy (e.g. dealers)."""
        return hierarchy_field_of(self.document)

    @property
    def composite_indexes(self) -> list[list[str]]:
        """Multi-column indexes the definition asks for (``x-indexes``)."""
        return [list(columns) for columns in self.document.get("x-indexes", [])]

    @property
    def scope_field(self) -> str | None:
        """The field naming the partner a record belongs to (``x-scope-field``)."""
        return self.document.get("x-scope-field")

    def master_field(self) -> FieldSpec | None:
        """The master_detail field that files this object under a parent, if it has one."""
        return next((f for f in self.fields.values() if f.type.name == "master_detail"), None)

    def record_schema(self) -> dict[str, Any]:
        """A standard JSON Schema for a record's field values (writes and reads)."""
        required = [f.name for f in self.fields.values() if f.required and f.writable]
        return {
            "type": "object",
            "properties": {name: spec.value_schema() for name, spec in self.fields.items()},
            "required": required,
            "additionalProperties": False,
        }


def parse_definition(
    document: dict[str, Any], known_objects: dict[str, dict[str, Any]] | None = None
) -> ObjectDefinition:
    """Check ``document`` and parse it; ``InvalidDefinition`` lists every problem."""
    problems = validate_definition(document, known_objects)
    if problems:
        raise InvalidDefinition(
            f"the definition has {len(problems)} problem(s)", [p.as_detail() for p in problems]
        )
    return load_definition(document)


def load_definition(document: dict[str, Any]) -> ObjectDefinition:
    """Parse a definition already known to be valid (a stored version), normalised."""
    document = normalise_definition(document)
    required = set(document.get("required", []))
    fields = {
        name: FieldSpec(name, get_type(prop["x-type"]), prop, name in required)
        for name, prop in document["properties"].items()
    }
    return ObjectDefinition(document["x-name"], document, fields)
