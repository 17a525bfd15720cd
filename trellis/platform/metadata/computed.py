"""Checks of what a definition computes and enforces, made when it is saved: formulas,
roll-ups, validation rules (``x-rules``) and conditional field rules (``x-required-if``,
``x-readonly-if``, ``x-visible-if``).

Every expression is parsed and type-checked against the object and the objects it looks up
(``trellis.platform.expressions``); a problem names the expression's JSON pointer and the
character where it went wrong. Pure: documents in, problems out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from trellis.platform.expressions import (
    BOOLEAN,
    DATE,
    DATETIME,
    DECIMAL,
    INTEGER,
    NULL,
    TEXT,
    CompiledExpression,
    ExpressionError,
    compile_expression,
)
from trellis.platform.expressions.checker import computed_type
from trellis.platform.messages import N_, Message
from trellis.platform.metadata.fieldtypes import CONDITION_KEYWORDS

# A rule message's ``{expression}`` parts (no braces inside).
PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
CONDITIONS = CONDITION_KEYWORDS
_NUMERIC = {"integer", "number", "percent", "currency"}
# What each declared JSON type of a formula may hold.
_ACCEPTS = {
    "integer": {INTEGER, NULL},
    "number": {INTEGER, DECIMAL, NULL},
    "boolean": {BOOLEAN, NULL},
    "string": {TEXT, NULL},
    "date": {DATE, NULL},
    "date-time": {DATETIME, NULL},
}


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def _declared(prop: dict[str, Any]) -> str:
    declared = prop.get("type")
    kinds = set(declared) if isinstance(declared, list) else {declared}
    for kind in ("integer", "number", "boolean"):
        if kind in kinds:
            return kind
    return {"date": "date", "date-time": "date-time"}.get(str(prop.get("format")), "string")


def compile_at(
    text: str, doc: dict[str, Any], objects: dict[str, dict[str, Any]], *, allow_old: bool = False
) -> CompiledExpression:
    """``text`` compiled against ``doc`` (raises ``ExpressionError``)."""
    return compile_expression(text, doc, objects, allow_old=allow_old)


# A refused expression's message: the problem, then where it is (a page showing the place
# with a caret shows ``problem`` alone).
POSITIONED = N_("%(problem)s (character %(offset)s: line %(line)s, column %(column)s)")


def expression_problem(pointer: str, error: ExpressionError) -> tuple[str, Message, dict[str, int]]:
    """A refused expression as (pointer, message, position)."""
    message = N_(
        POSITIONED,
        problem=error.message,
        offset=error.offset,
        line=error.line,
        column=error.column,
    )
    return pointer, message, {"offset": error.offset, "line": error.line, "column": error.column}


Found = tuple[str, Message, dict[str, int] | None]


def computed_problems(doc: dict[str, Any], objects: dict[str, dict[str, Any]]) -> list[Found]:
    """Every problem with the formulas, roll-ups, rules and conditions of ``doc``
    (``objects``: every object's document by name, ``doc`` included)."""
    problems: list[Found] = []
    properties: dict[str, Any] = doc["properties"]
    for name, prop in properties.items():
        at = f"/properties/{_escape(name)}"
        if prop.get("x-type") == "formula":
            problems.extend(_formula_problems(at, prop, doc, objects))
        elif prop.get("x-type") == "rollup":
            problems.extend(_rollup_problems(at, prop, doc, objects))
        for keyword in CONDITIONS:
            if keyword in prop:
                problems.extend(_boolean_problems(f"{at}/{keyword}", prop[keyword], doc, objects))
    problems.extend(_cycle_problems(doc, objects))
    for index, rule in enumerate(doc.get("x-rules", [])):
        problems.extend(_rule_problems(f"/x-rules/{index}", rule, doc, objects))
    names = [rule.get("name") for rule in doc.get("x-rules", [])]
    for index, name in enumerate(names):
        if name in names[:index]:
            problems.append(
                (f"/x-rules/{index}/name", N_("another rule is named %(name)s", name=name), None)
            )
    return problems


def _formula_problems(
    at: str, prop: dict[str, Any], doc: dict[str, Any], objects: dict[str, dict[str, Any]]
) -> Iterator[Found]:
    pointer = f"{at}/x-formula"
    try:
        compiled = compile_at(prop["x-formula"], doc, objects)
    except ExpressionError as exc:
        yield expression_problem(pointer, exc)
        return
    declared = _declared(prop)
    if compiled.type not in _ACCEPTS[declared]:
        yield (
            pointer,
            N_(
                "the formula gives %(found)s, but the field holds %(declared)s",
                found=compiled.type,
                declared=declared,
            ),
            None,
        )
    if compiled.uses_user:
        yield pointer, N_("a stored formula cannot read $user (it would depend on who saves)"), None
    if compiled.uses_now:
        yield pointer, N_("a stored formula cannot use TODAY() or NOW(); use a rule instead"), None


def rollup_source(
    doc: dict[str, Any], objects: dict[str, dict[str, Any]], of: str
) -> tuple[str, str] | None:
    """The (object, field) whose records a roll-up of ``doc`` aggregates: ``of`` is a
    master-detail related name, or ``object.field`` for a lookup pointing at ``doc``."""
    name = doc["x-name"]
    if "." in of:
        child, _sep, field = of.partition(".")
        prop = objects.get(child, {}).get("properties", {}).get(field)
        if (
            isinstance(prop, dict)
            and prop.get("x-type") in ("lookup", "master_detail")
            and prop.get("x-target") == name
        ):
            return child, field
        return None
    for child, child_doc in objects.items():
        for field, prop in child_doc.get("properties", {}).items():
            if (
                isinstance(prop, dict)
                and prop.get("x-type") == "master_detail"
                and prop.get("x-target") == name
                and prop.get("x-related-name") == of
            ):
                return child, field
    return None


def rollup_value_kind(child_prop: dict[str, Any]) -> str | None:
    """What a child field gives a roll-up: ``"number"``, ``"date"`` (dates and date-times,
    or formulas giving them) or ``None`` (nothing a roll-up aggregates but by COUNT)."""
    kind = str(child_prop.get("x-type"))
    computed = computed_type(child_prop)
    if kind in _NUMERIC or computed in (INTEGER, DECIMAL):
        return "number"
    if kind in ("date", "datetime") or computed in (DATE, DATETIME):
        return "date"
    return None


def rollup_accepts(function: str, child_prop: dict[str, Any]) -> bool:
    """Whether ``function`` may aggregate the child field: numbers for all, dates for MIN/MAX
    (COUNT takes no field)."""
    kind = rollup_value_kind(child_prop)
    return kind == "number" or (kind == "date" and function in ("MIN", "MAX"))


def _rollup_problems(
    at: str, prop: dict[str, Any], doc: dict[str, Any], objects: dict[str, dict[str, Any]]
) -> Iterator[Found]:
    spec = prop["x-rollup"]
    source = rollup_source(doc, objects, spec["of"])
    if source is None:
        yield (
            f"{at}/x-rollup/of",
            N_(
                "%(of)s names neither the lines of %(object)s nor a lookup to it (object.field)",
                of=repr(spec["of"]),
                object=doc["x-name"],
            ),
            None,
        )
        return
    child, _link = source
    child_doc = objects[child]
    function, declared = spec["function"], _declared(prop)
    field = spec.get("field")
    if function == "COUNT":
        if declared not in ("integer", "number"):
            yield f"{at}/type", N_("a COUNT holds a whole number"), None
    elif field is None:
        yield f"{at}/x-rollup", N_("%(function)s needs a field", function=function), None
    else:
        child_prop = child_doc.get("properties", {}).get(field)
        if not isinstance(child_prop, dict):
            yield (
                f"{at}/x-rollup/field",
                N_("%(name)s is not a field of %(object)s", name=repr(field), object=child),
                None,
            )
        else:
            kind = str(child_prop.get("x-type"))
            computed = computed_type(child_prop)
            numeric = rollup_value_kind(child_prop) == "number"
            if not rollup_accepts(function, child_prop):
                yield (
                    f"{at}/x-rollup/field",
                    N_("%(function)s needs a number field", function=function),
                    None,
                )
            elif numeric and declared not in ("number", "integer"):
                yield f"{at}/type", N_("a roll-up of numbers holds a number"), None
            elif (
                numeric
                and declared == "integer"
                and (function == "AVG" or (kind != "integer" and computed != INTEGER))
            ):
                yield f"{at}/type", N_("this roll-up can give decimals: declare a number"), None
    if "filter" in spec:
        yield from _boolean_problems(f"{at}/x-rollup/filter", spec["filter"], child_doc, objects)


def _boolean_problems(
    pointer: str,
    text: str,
    doc: dict[str, Any],
    objects: dict[str, dict[str, Any]],
    *,
    allow_old: bool = False,
) -> Iterator[Found]:
    try:
        compiled = compile_at(text, doc, objects, allow_old=allow_old)
    except ExpressionError as exc:
        yield expression_problem(pointer, exc)
        return
    if compiled.type not in (BOOLEAN, NULL):
        yield (
            pointer,
            N_("must be a condition (true or false), not %(found)s", found=compiled.type),
            None,
        )


def _rule_problems(
    at: str, rule: dict[str, Any], doc: dict[str, Any], objects: dict[str, dict[str, Any]]
) -> Iterator[Found]:
    for key in ("when", "assert"):
        if key in rule:
            yield from _boolean_problems(f"{at}/{key}", rule[key], doc, objects, allow_old=True)
    field = rule.get("field")
    if field is not None and field not in doc["properties"]:
        yield f"{at}/field", N_("%(name)s is not a field", name=repr(field)), None
    for language, text in rule.get("message", {}).items():
        for match in PLACEHOLDER.finditer(text):
            try:
                compile_at(match.group(1), doc, objects, allow_old=True)
            except ExpressionError as exc:
                # Placed in the message, so the character counts from its start.
                within = ExpressionError(exc.message, match.start(1) + exc.offset, text)
                yield expression_problem(f"{at}/message/{_escape(language)}", within)


def _cycle_problems(doc: dict[str, Any], objects: dict[str, dict[str, Any]]) -> Iterator[Found]:
    """A formula may read other formulas of its record, never itself through them."""
    order = formula_order(doc, objects)
    if order is None:
        yield "/properties", N_("the formulas depend on each other in a circle"), None


def formula_order(doc: dict[str, Any], objects: dict[str, dict[str, Any]]) -> list[str] | None:
    """The record's formula fields in an order where each comes after the formulas it
    reads; ``None`` when they read each other in a circle. Formulas that do not compile
    are left out (their own problem says why)."""
    properties = doc["properties"]
    reads: dict[str, set[str]] = {}
    for name, prop in properties.items():
        if prop.get("x-type") != "formula":
            continue
        try:
            compiled = compile_at(prop["x-formula"], doc, objects)
        except ExpressionError:
            continue
        own = {path.split(".")[0] for path in compiled.paths}
        reads[name] = {n for n in own if properties.get(n, {}).get("x-type") == "formula"}
    waits = {name: {n for n in names if n in reads} for name, names in reads.items()}
    order: list[str] = []
    done: set[str] = set()
    while len(order) < len(waits):
        ready = [n for n in waits if n not in done and waits[n] <= done]
        if not ready:
            return None
        for name in sorted(ready):
            order.append(name)
            done.add(name)
    return order
