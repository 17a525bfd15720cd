"""The object designer's forms: a definition as inputs, inputs back to a definition, and
the service's problems (JSON pointers) placed under the inputs that produced them.

The designer never checks a definition itself: it builds the full new document from the
current one plus the form, and ``ObjectService`` (the same one ``PUT /objects`` uses)
says what is wrong, pointer by pointer. Only what cannot become JSON at all (a length
that is not a number, a JSON box that does not parse) is refused here, at its input.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.datastructures import MultiDict

from trellis.admin_ui.forms import input_text, parse_value
from trellis.admin_ui.i18n import pick, told
from trellis.platform.messages import Message
from trellis.platform.metadata.computed import (
    POSITIONED,
    computed_problems,
    rollup_accepts,
    rollup_source,
    rollup_value_kind,
)
from trellis.platform.metadata.definition import SCHEMA_DIALECT
from trellis.platform.metadata.fieldtypes import (
    COMMON_KEYWORDS,
    CONDITION_KEYWORDS,
    ROLLUP_FUNCTIONS,
    FieldSpec,
    get_type,
    type_names,
)

Documents = dict[str, dict[str, Any]]

# The two languages of labels, as (input suffix, label key).
LANGUAGES = (("en", "en"), ("zh", "zh-CN"))

# Each type's own settings, in the order the form shows them (every registered type).
TYPE_SETTINGS: dict[str, tuple[str, ...]] = {
    "text": ("maxLength", "minLength", "pattern"),
    "textarea": ("maxLength", "minLength"),
    "email": ("maxLength",),
    "phone": ("maxLength", "pattern"),
    "url": ("maxLength",),
    "picklist": ("values",),
    "multipicklist": ("values", "minItems", "maxItems"),
    "integer": ("minimum", "maximum"),
    "number": ("minimum", "maximum"),
    "percent": ("minimum", "maximum"),
    "currency": ("x-scale", "minimum", "maximum"),
    "boolean": (),
    "date": (),
    "datetime": (),
    "lookup": ("x-target", "x-on-delete"),
    "master_detail": ("x-target", "x-related-name"),
    "autonumber": ("x-format",),
    "json": ("schema",),
    "formula": ("result", "x-formula", "x-scale"),
    "rollup": ("rollup", "x-scale"),
    "richtext": ("maxLength", "minLength"),
    "user": ("x-on-delete",),
    "file": ("x-max-bytes", "x-accept"),
    "image": ("x-max-bytes", "x-accept"),
}
WHOLE_NUMBERS = frozenset(
    {"maxLength", "minLength", "x-scale", "minItems", "maxItems", "x-max-bytes"}
)
# Settings that hold a list, typed as values separated by commas.
LIST_SETTINGS = frozenset({"x-accept"})
NUMBERS = frozenset({"minimum", "maximum"})
# Keywords a type always has, whatever the form says.
FIXED_FORMATS = {"email": "email", "url": "uri", "date": "date", "datetime": "date-time"}
# Flags every field may carry (input name → keyword); not where the type forbids them.
FLAGS = {
    "unique": "x-unique",
    "searchable": "x-searchable",
    "indexed": "x-indexed",
    "readonly": "readOnly",
}
NOT_UNIQUE = frozenset(
    {"multipicklist", "json", "textarea", "boolean", "autonumber", "richtext", "file", "image"}
)
# Types whose form offers a default value (a lookup's id, an autonumber or a JSON document
# is no value an admin types as a default).
DEFAULT_TYPES = frozenset(
    {
        "text",
        "textarea",
        "email",
        "phone",
        "url",
        "picklist",
        "multipicklist",
        "integer",
        "number",
        "percent",
        "currency",
        "boolean",
        "date",
        "datetime",
    }
)
# Kept from the current field when its type stays (the form does not show them).
KEPT_KEYWORDS = ("title", "description")
# A roll-up's inputs: the parts of ``x-rollup`` (the ``rollup`` setting), by input name.
ROLLUP_INPUTS = {
    "rollup-of": "of",
    "rollup-function": "function",
    "rollup-field": "field",
    "rollup-filter": "filter",
}
# A roll-up's JSON ``type`` by what it gives (a COUNT: whole numbers).
ROLLUP_RESULTS: dict[str, list[str]] = {
    "count": ["integer", "null"],
    "number": ["number", "null"],
    "date": ["string", "null"],
}
CONDITION_LABELS = {
    "x-required-if": _l("Required when…"),
    "x-readonly-if": _l("Read-only when…"),
    "x-visible-if": _l("Visible when…"),
}

TYPE_LABELS = {
    "text": _l("Text"),
    "textarea": _l("Long text"),
    "email": _l("E-mail"),
    "phone": _l("Phone"),
    "url": _l("Web address"),
    "picklist": _l("Picklist"),
    "multipicklist": _l("Multi-select picklist"),
    "integer": _l("Whole number"),
    "number": _l("Number"),
    "percent": _l("Percent"),
    "currency": _l("Currency"),
    "boolean": _l("Yes / no"),
    "date": _l("Date"),
    "datetime": _l("Date and time"),
    "lookup": _l("Lookup"),
    "master_detail": _l("Master-detail"),
    "autonumber": _l("Autonumber"),
    "json": _l("JSON"),
    "formula": _l("Formula"),
    "rollup": _l("Roll-up summary"),
    "richtext": _l("Rich text"),
    "user": _l("User"),
    "file": _l("File"),
    "image": _l("Image"),
}


# A formula's result type (the choice in the designer) → its JSON ``type`` and ``format``.
FORMULA_RESULTS: dict[str, dict[str, Any]] = {
    "number": {"type": ["number", "null"]},
    "integer": {"type": ["integer", "null"]},
    "string": {"type": ["string", "null"]},
    "boolean": {"type": ["boolean", "null"]},
    "date": {"type": ["string", "null"], "format": "date"},
}
FORMULA_RESULT_LABELS = {
    "number": _l("Number"),
    "integer": _l("Whole number"),
    "string": _l("Text"),
    "boolean": _l("Yes / no"),
    "date": _l("Date"),
}


def formula_result_of(schema: dict[str, Any]) -> str:
    """The result choice a stored formula's ``type`` and ``format`` make."""
    declared = schema.get("type")
    kinds = set(declared) if isinstance(declared, list) else {declared}
    if schema.get("format") == "date":
        return "date"
    for kind in ("integer", "number", "boolean", "string"):
        if kind in kinds:
            return kind
    return "number"


def type_label(name: str) -> str:
    """A field type's name as the designer shows it, translated; an unknown name as it is."""
    return str(TYPE_LABELS.get(name, name))


def type_choices() -> list[tuple[str, str]]:
    """Every registered type, in the order of ``TYPE_SETTINGS`` (kinds kept together)."""
    registered = type_names()
    names = [n for n in TYPE_SETTINGS if n in registered]
    names += [n for n in registered if n not in TYPE_SETTINGS]
    return [(name, type_label(name)) for name in names]


def _pointer_part(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def _unescape(part: str) -> str:
    return part.replace("~1", "/").replace("~0", "~")


def labels_from(form: MultiDict[str, str], prefix: str) -> dict[str, str]:
    """``<prefix>-en`` and ``<prefix>-zh`` as a bilingual label (empty boxes left out)."""
    labels = {}
    for suffix, language in LANGUAGES:
        text = form.get(f"{prefix}-{suffix}", "").strip()
        if text:
            labels[language] = text
    return labels


def label_inputs(prefix: str, labels: Any) -> dict[str, str]:
    """A bilingual label as the inputs ``<prefix>-en`` / ``<prefix>-zh`` show it."""
    labels = labels if isinstance(labels, dict) else {}
    return {f"{prefix}-{suffix}": str(labels.get(language, "")) for suffix, language in LANGUAGES}


def _set_or_drop(document: dict[str, Any], key: str, value: Any) -> None:
    if value in (None, "", {}, []):
        document.pop(key, None)
    else:
        document[key] = value


# --- fields -----------------------------------------------------------------------------


@dataclass
class FieldForm:
    """A field form as typed: every input's text (kept when the form comes back), the
    picklist rows, and the problems by input name (``""``: those no input explains)."""

    name: str
    type: str
    inputs: dict[str, str]
    flags: set[str]
    required: bool
    options: list[dict[str, str]]
    errors: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def settings(self) -> tuple[str, ...]:
        """The inputs of this type's own settings, in form order (none for an unknown type)."""
        return TYPE_SETTINGS.get(self.type, ())

    @property
    def may_be_unique(self) -> bool:
        """Whether the form offers the unique flag (not for multipicklist, json, long text…)."""
        return self.type not in NOT_UNIQUE

    @property
    def may_be_readonly(self) -> bool:
        """Whether the form offers the read-only flag (not for types no write may set)."""
        return self.type in TYPE_SETTINGS and get_type(self.type).writable

    @property
    def may_have_default(self) -> bool:
        """Whether the form offers a default value for this type."""
        return self.type in DEFAULT_TYPES

    @property
    def conditions(self) -> tuple[str, ...]:
        """The condition keywords the form offers: visible-when for every field, required-
        and read-only-when only where a write may set the field (not formulas, roll-ups)."""
        if self.type in TYPE_SETTINGS and get_type(self.type).writable:
            return CONDITION_KEYWORDS
        return ("x-visible-if",)

    def error(self, key: str) -> str | None:
        """The problem shown under input ``key``, if any."""
        return self.errors.get(key)

    def add_error(self, key: str, message: str) -> None:
        """Place a problem under input ``key`` (the first one stays), or, with ``key`` empty,
        at the top of the form.
        """
        if key:
            self.errors.setdefault(key, message)
        else:
            self.problems.append(message)


def field_form_of(name: str, schema: dict[str, Any], required: bool) -> FieldForm:
    """The form of a stored field."""
    type_name = str(schema.get("x-type", "text"))
    inputs = {
        "name": name,
        **label_inputs("label", schema.get("x-label")),
        **label_inputs("help", schema.get("x-help")),
    }
    for key in TYPE_SETTINGS.get(type_name, ()):
        if key in schema:
            value = schema[key]
            inputs[key] = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    if "default" in schema and type_name in DEFAULT_TYPES:
        inputs["default"] = _default_text(type_name, schema)
    if type_name == "formula":
        inputs["result"] = formula_result_of(schema)
    if type_name == "rollup":
        spec = schema.get("x-rollup", {})
        inputs.update({key: str(spec.get(part, "")) for key, part in ROLLUP_INPUTS.items()})
    for keyword in CONDITION_KEYWORDS:
        if keyword in schema:
            inputs[keyword] = str(schema[keyword])
    if type_name == "json":
        extra = {k: v for k, v in schema.items() if k not in COMMON_KEYWORDS and k != "type"}
        inputs["schema"] = json.dumps(extra, ensure_ascii=False, indent=2) if extra else ""
    values = schema.get("enum") or schema.get("items", {}).get("enum") or []
    labels = schema.get("x-enum-labels", {})
    options = [{"value": str(v), **label_inputs("label", labels.get(v))} for v in values]
    flags = {flag for flag, keyword in FLAGS.items() if schema.get(keyword)}
    return FieldForm(name, type_name, inputs, flags, required, options)


def read_field_form(form: MultiDict[str, str], name: str | None = None) -> FieldForm:
    """The field form a request sent (``name`` fixed when editing)."""
    type_name = form.get("type", "text")
    if type_name not in TYPE_SETTINGS:
        type_name = "text"
    keys = ["label-en", "label-zh", "help-en", "help-zh", *TYPE_SETTINGS[type_name]]
    keys += [*CONDITION_KEYWORDS, *(ROLLUP_INPUTS if type_name == "rollup" else ())]
    if type_name in DEFAULT_TYPES:
        keys.append("default")
    inputs = {key: form.get(key, "") for key in keys if key != "values"}
    options = []
    indexes = sorted(
        {int(k.split("-")[1]) for k in form if k.startswith("enum-") and k.split("-")[1].isdigit()}
    )
    for index in indexes:
        if form.get(f"enum-{index}-removed") == "1":
            continue
        row = {
            "value": form.get(f"enum-{index}-value", "").strip(),
            "label-en": form.get(f"enum-{index}-en", "").strip(),
            "label-zh": form.get(f"enum-{index}-zh", "").strip(),
        }
        if any(row.values()):
            options.append(row)
    flags = {flag for flag in FLAGS if form.get(flag) in ("on", "true", "1")}
    required = form.get("required") in ("on", "true", "1") or type_name == "master_detail"
    chosen = name if name is not None else form.get("name", "").strip()
    inputs["name"] = chosen
    return FieldForm(chosen, type_name, inputs, flags, required, options)


def field_schema(
    form: FieldForm, old: dict[str, Any] | None, rolls_up: str | None = None
) -> dict[str, Any]:
    """The field's new schema: the form's settings, and what the form does not show kept
    from ``old`` while the type stays. Inputs that cannot be read get an error on ``form``.
    ``rolls_up``: what a roll-up's child field gives (``rollup_kind``), for its ``type``."""
    type_name = form.type
    field_type = get_type(type_name)
    same_type = old is not None and old.get("x-type") == type_name
    schema: dict[str, Any] = {"x-type": type_name}
    if field_type.json_type is not None:
        schema["type"] = (
            old["type"] if same_type and old and "type" in old else field_type.json_type
        )
    if type_name in FIXED_FORMATS:
        schema["format"] = FIXED_FORMATS[type_name]
    for prefix, keyword in (("label", "x-label"), ("help", "x-help")):
        labels = {
            language: form.inputs[f"{prefix}-{suffix}"].strip()
            for suffix, language in LANGUAGES
            if form.inputs.get(f"{prefix}-{suffix}", "").strip()
        }
        if labels:
            schema[keyword] = labels
    for flag, keyword in FLAGS.items():
        offered = {"unique": form.may_be_unique, "readonly": form.may_be_readonly}
        if flag in form.flags and offered.get(flag, True):
            schema[keyword] = True
    for key in form.settings:
        if key == "values":
            _options_into(form, schema)
        elif key == "schema":
            _json_schema_into(form, schema)
        elif key == "result":
            result = form.inputs.get("result") or "number"
            schema.update(copy.deepcopy(FORMULA_RESULTS.get(result, FORMULA_RESULTS["number"])))
        elif key == "rollup":
            _rollup_into(form, schema, rolls_up)
        else:
            value = _setting(form, key)
            if value is not None:
                schema[key] = value
    if type_name == "multipicklist":
        schema["uniqueItems"] = True
    if form.may_have_default:
        default = _default_value(form)
        if default is not None:
            schema["default"] = default
    for keyword in form.conditions:
        text = form.inputs.get(keyword, "").strip()
        if text:
            schema[keyword] = text
    if same_type and old is not None:
        # Conditions the form does not offer for this type (set through the API) stay too.
        hidden = [k for k in CONDITION_KEYWORDS if k not in form.conditions]
        for keyword in (*KEPT_KEYWORDS, *hidden):
            if keyword in old:
                schema.setdefault(keyword, copy.deepcopy(old[keyword]))
    return schema


def _rollup_into(form: FieldForm, schema: dict[str, Any], rolls_up: str | None) -> None:
    """``x-rollup`` from its inputs (the empty ones left out, the field too for a COUNT) and
    the ``type`` its function and child field give."""
    spec = {
        part: form.inputs.get(key, "").strip()
        for key, part in ROLLUP_INPUTS.items()
        if form.inputs.get(key, "").strip()
    }
    if spec.get("function") == "COUNT":
        spec.pop("field", None)
    schema["x-rollup"] = spec
    result = "count" if spec.get("function") == "COUNT" else rolls_up or "number"
    schema["type"] = list(ROLLUP_RESULTS[result])


def rollup_kind(form: FieldForm, document: dict[str, Any], documents: Documents) -> str | None:
    """What the child field a roll-up form names gives (``"number"``, ``"date"``), if known."""
    child = rollup_child(document, documents, form.inputs.get("rollup-of", ""))
    prop = documents.get(child or "", {}).get("properties", {}).get(form.inputs.get("rollup-field"))
    return rollup_value_kind(prop) if isinstance(prop, dict) else None


def rollup_child(document: dict[str, Any], documents: Documents, of: str) -> str | None:
    """The object whose records ``of`` names (None: it names none)."""
    if not of:
        return None
    source = rollup_source(document, {**documents, document["x-name"]: document}, of)
    return source[0] if source else None


def rollup_sources(document: dict[str, Any], documents: Documents) -> list[tuple[str, str]]:
    """What a roll-up of ``document`` may aggregate, as (``of``, label): the master-detail
    lines by their related name, then every lookup pointing here as ``object.field``."""
    name = document["x-name"]
    lines: list[tuple[str, str]] = []
    lookups: list[tuple[str, str]] = []
    for child, child_doc in sorted({**documents, name: document}.items()):
        child_label = pick(child_doc.get("x-label"), child)
        for field_name, prop in child_doc.get("properties", {}).items():
            if prop.get("x-target") != name:
                continue
            label = f"{child_label} → {pick(prop.get('x-label'), field_name)}"
            if prop.get("x-type") == "master_detail" and prop.get("x-related-name"):
                lines.append((prop["x-related-name"], f"{label} ({prop['x-related-name']})"))
            elif prop.get("x-type") == "lookup":
                lookups.append((f"{child}.{field_name}", f"{label} ({child}.{field_name})"))
    return lines + lookups


def rollup_functions() -> list[tuple[str, str]]:
    """The roll-up functions, each with what it does."""
    says = {
        "SUM": _l("Sum"),
        "COUNT": _l("Count"),
        "MIN": _l("Smallest"),
        "MAX": _l("Largest"),
        "AVG": _l("Average"),
    }
    return [(function, f"{function} — {says[function]}") for function in ROLLUP_FUNCTIONS]


def rollup_fields(child_doc: dict[str, Any], function: str) -> list[tuple[str, str]]:
    """The child fields ``function`` may aggregate: numbers for SUM and AVG, numbers and
    dates for MIN and MAX, none for COUNT."""
    if function not in ROLLUP_FUNCTIONS or function == "COUNT":
        return []
    return [
        (name, pick(prop.get("x-label"), name))
        for name, prop in child_doc.get("properties", {}).items()
        if rollup_accepts(function, prop)
    ]


def _setting(form: FieldForm, key: str) -> Any:
    text = form.inputs.get(key, "").strip()
    if text == "":
        return None
    if key in LIST_SETTINGS:
        return [part.strip() for part in text.split(",") if part.strip()] or None
    if key in WHOLE_NUMBERS:
        try:
            return int(text)
        except ValueError:
            form.add_error(key, _("must be a whole number"))
            return None
    if key in NUMBERS:
        try:
            number = float(text.replace(",", ""))
        except ValueError:
            form.add_error(key, _("must be a number"))
            return None
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    return text


def _default_text(type_name: str, schema: dict[str, Any]) -> str:
    """A stored default as the default input shows it."""
    value = schema["default"]
    if type_name == "boolean":
        return "true" if value is True else "false" if value is False else str(value)
    if type_name == "multipicklist" and isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return input_text(FieldSpec("default", get_type(type_name), schema, False), value)


def _default_value(form: FieldForm) -> Any:
    """The default the form's input gives, as JSON (``None``: no default). Text that is not
    a value of the type stays text, for the service to refuse under the input."""
    text = form.inputs.get("default", "").strip()
    if text == "":
        return None
    if form.type == "boolean":
        return {"true": True, "false": False}.get(text, text)
    if form.type == "multipicklist":
        return [part.strip() for part in text.split(",") if part.strip()]
    spec = FieldSpec(form.name or "field", get_type(form.type), {}, False)
    return parse_value(spec, MultiDict({"default": text}), "default")


def _options_into(form: FieldForm, schema: dict[str, Any]) -> None:
    values: list[str] = []
    labels: dict[str, dict[str, str]] = {}
    for index, row in enumerate(form.options):
        if not row["value"]:
            form.add_error(f"enum-{index}-value", _("a value is required"))
            continue
        values.append(row["value"])
        label = {
            lang: row[f"label-{suffix}"] for suffix, lang in LANGUAGES if row[f"label-{suffix}"]
        }
        if label:
            labels[row["value"]] = label
    if form.type == "picklist":
        schema["enum"] = values
    else:
        schema["items"] = {"type": "string", "enum": values}
    if labels:
        schema["x-enum-labels"] = labels


def _json_schema_into(form: FieldForm, schema: dict[str, Any]) -> None:
    text = form.inputs.get("schema", "").strip()
    if not text:
        return
    try:
        extra = json.loads(text)
    except ValueError as exc:
        form.add_error("schema", _("not valid JSON: %(reason)s", reason=str(exc)))
        return
    if not isinstance(extra, dict):
        form.add_error("schema", _("must be a JSON object of JSON Schema keywords"))
        return
    for key, value in extra.items():
        if key != "x-type":
            schema.setdefault(key, value)


def _missing(message: Any) -> str | None:
    """The keyword a "'x-name' is required" message names (by its id, not its English)."""
    if isinstance(message, Message) and message.msgid == "%(name)s is required":
        return str(message.params.get("name", "")).strip("'")
    return None


def place_field_problems(
    form: FieldForm, details: list[dict[str, Any]], creating: bool, message: str
) -> None:
    """Each problem under the input that produced it; the rest at the top of the form."""
    at = f"/properties/{_pointer_part(form.name)}"
    for detail in details:
        pointer, raw = str(detail.get("field", "")), detail.get("message")
        text = told(detail.get("message"))
        if pointer.startswith("/required"):
            form.add_error("required", text)
        elif pointer == at or pointer.startswith(at + "/"):
            form.add_error(_field_input(form, pointer[len(at) :], raw, creating), text)
        elif creating and pointer.startswith("/properties/") and pointer.count("/") == 2:
            form.add_error("name", text)  # the name itself (pattern, reserved word)
        else:
            form.add_error("", f"{pointer}: {text}" if pointer else text)
    if not details:
        form.add_error("", told(message))


def _field_input(form: FieldForm, rest: str, text: Any, creating: bool) -> str:
    parts = [_unescape(p) for p in rest.split("/")[1:]]
    if not parts:
        keyword = _missing(text)
        if keyword is not None:
            if keyword in ("enum", "items"):
                return "values"
            return keyword if keyword in form.settings else ""
        return "name" if creating else ""
    key = parts[0]
    if key in form.conditions:
        return key
    if key == "x-rollup":
        part = parts[1] if len(parts) > 1 else _missing(text) or "field"
        return f"rollup-{part}" if part in ROLLUP_INPUTS.values() else "rollup-field"
    if form.type == "rollup" and key == "type":
        return "rollup-function"
    if key in ("x-label", "x-help"):
        prefix = "label" if key == "x-label" else "help"
        return f"{prefix}-zh" if parts[1:2] == ["zh-CN"] else f"{prefix}-en"
    if key == "enum" or (key == "items" and parts[1:2] == ["enum"]):
        index = parts[1] if key == "enum" else (parts[2] if len(parts) > 2 else "")
        return f"enum-{index}-value" if index.isdigit() else "values"
    if key == "x-enum-labels":
        values = [row["value"] for row in form.options]
        if len(parts) > 1 and parts[1] in values:
            return f"enum-{values.index(parts[1])}-value"
        return "values"
    for flag, keyword in FLAGS.items():
        if key == keyword:
            return flag
    if key == "default" and form.may_have_default:
        return "default"
    if key in form.settings:
        return key
    if form.type == "formula" and key in ("type", "format"):
        return "result"
    if form.type == "json":
        return "schema"
    return ""


# --- objects ----------------------------------------------------------------------------

OBJECT_LABELS = (
    ("label", "x-label"),
    ("plural", "x-label-plural"),
    ("description", "x-description"),
)
OBJECT_CHOICES = {
    "title_field": "x-title-field",
    "hierarchy_field": "x-hierarchy-field",
    "scope_field": "x-scope-field",
}
FIRST_FIELD = "first_field"


@dataclass
class InputsForm:
    """A designer form as typed (every input's text), with its problems by input."""

    inputs: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def error(self, key: str) -> str | None:
        """The problem shown under input ``key``, if any."""
        return self.errors.get(key)

    def add_error(self, key: str, message: str) -> None:
        """Place a problem under input ``key`` (the first one stays), or, with ``key`` empty,
        at the top of the form.
        """
        if key:
            self.errors.setdefault(key, message)
        else:
            self.problems.append(message)


class ObjectForm(InputsForm):
    """The object settings form as typed, with its problems by input."""


OBJECT_INPUTS = (
    "name",
    *(f"{p}-{s}" for p, _k in OBJECT_LABELS for s, _l in LANGUAGES),
    *OBJECT_CHOICES,
    "indexes",
    FIRST_FIELD,
    "first_label-en",
    "first_label-zh",
)


def object_form_of(document: dict[str, Any]) -> ObjectForm:
    """The settings form of a stored definition: name, labels, field choices and the
    indexes one per line (``a, b``).
    """
    inputs = {"name": str(document["x-name"])}
    for prefix, keyword in OBJECT_LABELS:
        inputs.update(label_inputs(prefix, document.get(keyword)))
    for key, keyword in OBJECT_CHOICES.items():
        inputs[key] = str(document.get(keyword, ""))
    inputs["indexes"] = "\n".join(", ".join(cols) for cols in document.get("x-indexes", []))
    return ObjectForm(inputs)


def new_object_form() -> ObjectForm:
    """An empty object form whose first field is proposed: ``name``, labelled Name / 名称."""
    return ObjectForm({FIRST_FIELD: "name", "first_label-en": "Name", "first_label-zh": "名称"})


def read_object_form(form: MultiDict[str, str]) -> ObjectForm:
    """The object form a request sent: every known input, stripped; others are ignored."""
    return ObjectForm({key: form.get(key, "").strip() for key in OBJECT_INPUTS})


def object_document(form: ObjectForm, current: dict[str, Any] | None) -> dict[str, Any]:
    """The new full definition: ``current`` with the form's settings (a new object when
    ``current`` is None: the name, its labels and a first text field naming its records)."""
    inputs = form.inputs
    if current is None:
        first = inputs.get(FIRST_FIELD, "")
        document: dict[str, Any] = {"$schema": SCHEMA_DIALECT}
        if inputs.get("name"):
            document["x-name"] = inputs["name"]
        document["type"] = "object"
        prop: dict[str, Any] = {"x-type": "text", "type": "string", "maxLength": 255}
        label = {
            lang: inputs[f"first_label-{s}"]
            for s, lang in LANGUAGES
            if inputs.get(f"first_label-{s}")
        }
        if label:
            prop["x-label"] = label
        document["properties"] = {first: prop}
        document["required"] = [first]
        document["x-title-field"] = first
    else:
        document = copy.deepcopy(current)
        for key, keyword in OBJECT_CHOICES.items():
            _set_or_drop(document, keyword, inputs.get(key, ""))
        indexes = [
            [c.strip() for c in line.split(",") if c.strip()]
            for line in inputs.get("indexes", "").splitlines()
            if line.strip()
        ]
        _set_or_drop(document, "x-indexes", indexes)
    for prefix, keyword in OBJECT_LABELS:
        labels = {
            lang: inputs[f"{prefix}-{s}"] for s, lang in LANGUAGES if inputs.get(f"{prefix}-{s}")
        }
        if keyword == "x-label":
            document[keyword] = labels  # required: an empty one is refused at its input
        else:
            _set_or_drop(document, keyword, labels)
    return document


def place_object_problems(
    form: ObjectForm, details: list[dict[str, Any]], creating: bool, message: str
) -> None:
    """Each refusal detail under the input its pointer names (the first field's inputs only
    when ``creating``); the rest, or ``message`` when there are none, at the top.
    """
    for detail in details:
        pointer, raw = str(detail.get("field", "")), detail.get("message")
        key, text = _object_input(pointer, raw, creating), told(detail.get("message"))
        form.add_error(key, text if key or not pointer else f"{pointer}: {text}")
    if not details:
        form.add_error("", told(message))


def _object_input(pointer: str, text: Any, creating: bool) -> str:
    parts = [_unescape(p) for p in pointer.split("/")[1:]]
    if not parts:
        missing = _missing(text)
        if missing in ("x-name", "x-label"):
            return "name" if missing == "x-name" else "label-en"
        return ""
    key = parts[0]
    if key == "x-name":
        return "name"
    for prefix, keyword in OBJECT_LABELS:
        if key == keyword:
            return f"{prefix}-zh" if parts[1:2] == ["zh-CN"] else f"{prefix}-en"
    for input_name, keyword in OBJECT_CHOICES.items():
        if key == keyword:
            return input_name
    if key == "x-indexes":
        return "indexes"
    if key == "properties" and creating:
        if parts[2:3] == ["x-label"]:
            return "first_label-zh" if parts[3:4] == ["zh-CN"] else "first_label-en"
        return FIRST_FIELD
    if key == "required" and creating:
        return FIRST_FIELD
    return ""


# --- expressions checked as typed -------------------------------------------------------


@dataclass(frozen=True)
class ExpressionInput:
    """An input holding an expression: its name, its label, the JSON pointer saving would
    blame, and the text typed."""

    key: str
    label: str
    pointer: str
    text: str


@dataclass(frozen=True)
class ExpressionCheck:
    """An expression input as saving would judge it: its first problem (None: it reads
    well) and, when the problem has a place, the line it is on and the caret's column."""

    key: str
    label: str
    message: str | None = None
    line: int | None = None
    column: int | None = None
    line_text: str | None = None


def check_expressions(
    document: dict[str, Any], documents: Documents, inputs: list[ExpressionInput]
) -> list[ExpressionCheck]:
    """Each input with text checked by the save-time checks (``computed_problems``) of
    ``document`` — the definition with the form's expressions in it — against ``documents``
    (the other objects), so what is shown while typing is what a save would refuse.
    ``document`` must satisfy the meta-schema's shape for what it computes."""
    typed = [item for item in inputs if item.text.strip()]
    if not typed:
        return []
    found = computed_problems(document, {**documents, document["x-name"]: document})
    checks = []
    for item in typed:
        problem = next(((m, p) for at, m, p in found if at == item.pointer), None)
        if problem is None:
            checks.append(ExpressionCheck(item.key, item.label))
            continue
        message, position = problem
        if position is None:
            checks.append(ExpressionCheck(item.key, item.label, told(message)))
            continue
        line, lines = position["line"], item.text.split("\n")
        # The caret and "Line, column" show where: the problem alone, not its position again.
        if getattr(message, "msgid", "") == POSITIONED:
            message = message.params["problem"]
        checks.append(
            ExpressionCheck(
                item.key,
                item.label,
                told(message),
                line,
                position["column"],
                lines[line - 1] if line <= len(lines) else "",
            )
        )
    return checks


def field_expressions(form: FieldForm, schema: dict[str, Any]) -> list[ExpressionInput]:
    """The expression inputs of a field form: its formula or roll-up filter, its conditions."""
    at = f"/properties/{_pointer_part(form.name or 'field')}"
    inputs = []
    if form.type == "formula":
        text = str(schema.get("x-formula", ""))
        inputs.append(ExpressionInput("x-formula", str(_l("Formula")), f"{at}/x-formula", text))
    if form.type == "rollup":
        text = str(schema.get("x-rollup", {}).get("filter", ""))
        pointer = f"{at}/x-rollup/filter"
        label = str(_l("Only the records where"))
        inputs.append(ExpressionInput("rollup-filter", label, pointer, text))
    for keyword in form.conditions:
        text = str(schema.get(keyword, ""))
        inputs.append(
            ExpressionInput(keyword, str(CONDITION_LABELS[keyword]), f"{at}/{keyword}", text)
        )
    return inputs


def checkable_field(form: FieldForm, schema: dict[str, Any]) -> dict[str, Any]:
    """The field as the checks may read it: a formula without its expression or a roll-up
    without what it rolls up (the meta-schema refuses both) stands in as text with the
    field's conditions, so its conditions are still checked."""
    incomplete = (form.type == "formula" and not schema.get("x-formula")) or (
        form.type == "rollup" and not {"of", "function"} <= set(schema.get("x-rollup", {}))
    )
    if not incomplete:
        return schema
    kept = {k: v for k, v in schema.items() if k in CONDITION_KEYWORDS}
    return {"x-type": "text", "type": ["string", "null"], **kept}


# --- validation rules -------------------------------------------------------------------

RULE_INPUTS = ("name", "when", "assert", "message-en", "message-zh", "field")


class RuleForm(InputsForm):
    """A validation rule's form (``x-rules`` item) as typed, with its problems by input."""


def rule_form_of(rule: dict[str, Any]) -> RuleForm:
    """The form of a stored rule."""
    inputs = {key: str(rule.get(key, "")) for key in ("name", "when", "assert", "field")}
    return RuleForm({**inputs, **label_inputs("message", rule.get("message"))})


def read_rule_form(form: MultiDict[str, str]) -> RuleForm:
    """The rule form a request sent: every known input, stripped; others are ignored."""
    return RuleForm({key: form.get(key, "").strip() for key in RULE_INPUTS})


def rule_of(form: RuleForm) -> dict[str, Any]:
    """The ``x-rules`` item the form gives (empty inputs left out, for the service to say
    which it needs)."""
    rule: dict[str, Any] = {
        key: form.inputs[key] for key in ("name", "when", "assert") if form.inputs.get(key)
    }
    message = labels_from(MultiDict(form.inputs), "message")
    if message:
        rule["message"] = message
    if form.inputs.get("field"):
        rule["field"] = form.inputs["field"]
    return rule


def rule_expressions(form: RuleForm, index: int) -> list[ExpressionInput]:
    """The expression inputs of a rule form: when, assert, and the messages' placeholders."""
    at = f"/x-rules/{index}"
    labels = {
        "when": _l("Applies when"),
        "assert": _l("Must hold"),
        "message-en": _l("Message (English)"),
        "message-zh": _l("Message (中文)"),
    }
    pointers = {"message-en": f"{at}/message/en", "message-zh": f"{at}/message/zh-CN"}
    return [
        ExpressionInput(key, str(label), pointers.get(key, f"{at}/{key}"), form.inputs.get(key, ""))
        for key, label in labels.items()
    ]


def with_rule(document: dict[str, Any], rule: dict[str, Any], index: int | None) -> int:
    """Put ``rule`` in ``document``'s rules, at ``index`` (None: last); its index."""
    rules = document.setdefault("x-rules", [])
    if index is None:
        rules.append(rule)
        return len(rules) - 1
    rules[index] = rule
    return index


def place_rule_problems(
    form: RuleForm, details: list[dict[str, Any]], index: int, message: str
) -> None:
    """Each refusal detail about rule ``index`` under its input; the rest at the top."""
    at = f"/x-rules/{index}"
    for detail in details:
        pointer, raw = str(detail.get("field", "")), detail.get("message")
        text = told(raw)
        key = ""
        if pointer == at:
            missing = _missing(raw)
            key = "message-en" if missing == "message" else missing or ""
        elif pointer.startswith(at + "/"):
            parts = [_unescape(p) for p in pointer[len(at) + 1 :].split("/")]
            if parts[0] == "message":
                key = "message-zh" if parts[1:2] == ["zh-CN"] else "message-en"
            elif parts[0] in RULE_INPUTS:
                key = parts[0]
        key = key if key in RULE_INPUTS else ""
        form.add_error(key, text if key or not pointer else f"{pointer}: {text}")
    if not details:
        form.add_error("", told(message))
