"""Regular expressions and formats in schemas: RE2 only, one format dialect everywhere.

Python's ``re`` backtracks, so a pattern such as ``^(a+)+$`` takes exponential time on
``"a" * 40 + "!"``. Every ``pattern`` a definition carries is therefore compiled and
matched with RE2, which runs in time linear in the input and refuses what it cannot
do that way (backreferences, lookaround). Neither jsonschema nor fastjsonschema lets
a pattern reach ``re``:

- ``Validator`` is Draft 2020-12 with ``pattern`` (and ``patternProperties``) run by RE2;
- ``fast_validator`` hands fastjsonschema a copy of the schema in which every
  ``pattern`` became a custom ``format`` backed by the same compiled RE2 object.

Both use ``FORMAT_CHECKER``, so ``email``, ``date-time``, ``uri``… are decided by the
same functions whichever validator runs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from typing import Any

import fastjsonschema
import re2
from jsonschema import Draft202012Validator, FormatChecker, validators
from jsonschema.exceptions import ValidationError

from trellis.platform.messages import N_

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is a user's mistake, not a log line

# Keywords whose value is one subschema, a list of them, or a map of name → subschema.
_ONE = (
    "additionalItems",
    "additionalProperties",
    "contains",
    "else",
    "if",
    "items",
    "not",
    "propertyNames",
    "then",
    "unevaluatedItems",
    "unevaluatedProperties",
)
_LIST = ("allOf", "anyOf", "items", "oneOf", "prefixItems")
_MAP = (
    "$defs",
    "definitions",
    "dependencies",
    "dependentSchemas",
    "patternProperties",
    "properties",
)

DRAFT7 = "http://json-schema.org/draft-07/schema#"
_FORMAT_PREFIX = "trellis-pattern-"


class PatternError(ValueError):
    """A regular expression RE2 cannot compile (or cannot run in linear time)."""


@functools.lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> Any:
    """The compiled RE2 object for ``pattern``; ``PatternError`` says why it is refused."""
    try:
        return re2.compile(pattern, options=_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "not a regular expression"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise PatternError(str(reason)) from None


def pattern_problem(pattern: Any) -> str | None:
    """Why ``pattern`` cannot be used (None when it can)."""
    if not isinstance(pattern, str):
        return N_("a pattern must be a string")
    try:
        compile_pattern(pattern)
    except PatternError as exc:
        return N_(
            "invalid regular expression: %(reason)s (patterns run in linear time; "
            "backreferences and lookaround are not supported)",
            reason=str(exc),
        )
    return None


def pattern_matches(pattern: str, text: str) -> bool:
    """JSON Schema semantics: the pattern matches anywhere in ``text`` (unanchored)."""
    return compile_pattern(pattern).search(text) is not None


def _pointer_part(key: Any) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def _subschemas(schema: dict[str, Any], pointer: str) -> Iterator[tuple[str, Any]]:
    """The direct subschemas of ``schema`` with their pointers (data keywords skipped)."""
    for keyword in _ONE:
        if isinstance(schema.get(keyword), dict):
            yield f"{pointer}/{keyword}", schema[keyword]
    for keyword in _LIST:
        if isinstance(schema.get(keyword), list):
            for index, sub in enumerate(schema[keyword]):
                yield f"{pointer}/{keyword}/{index}", sub
    for keyword in _MAP:
        if isinstance(schema.get(keyword), dict):
            for name, sub in schema[keyword].items():
                yield f"{pointer}/{keyword}/{_pointer_part(name)}", sub


def walk_schemas(schema: Any, pointer: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """``schema`` and every schema nested in it, each with its JSON pointer."""
    if not isinstance(schema, dict):
        return
    yield pointer, schema
    for sub_pointer, sub in _subschemas(schema, pointer):
        yield from walk_schemas(sub, sub_pointer)


# --- formats ---------------------------------------------------------------------------


_SPACE = re.compile(r"\s")  # a fixed, linear pattern: the platform's own, never a user's


def _is_email(value: object) -> bool:
    # One "@", a local part without leading, trailing or doubled dots, a dotted domain,
    # no whitespace: what fastjsonschema's own check accepted, without its lookaround
    # (quadratic on long input).
    if not isinstance(value, str):
        return True
    if value.count("@") != 1 or _SPACE.search(value):
        return False
    local, domain = value.split("@")
    if not local or local.startswith(".") or local.endswith(".") or ".." in local:
        return False
    return "." in domain[1:-1]


def _is_regex(value: object) -> bool:
    if isinstance(value, str):
        compile_pattern(value)
    return True


def _format_checker() -> FormatChecker:
    checker = FormatChecker(formats=())
    checker.checkers = dict(Draft202012Validator.FORMAT_CHECKER.checkers)
    checker.checks("email")(_is_email)
    checker.checks("regex", raises=PatternError)(_is_regex)
    return checker


FORMAT_CHECKER = _format_checker()


def _conforms(check: Callable[[Any], Any], raises: Any, value: Any) -> bool:
    # FormatChecker.conforms, minus its per-call lookups (this runs on the hot path).
    try:
        return bool(check(value))
    except raises:
        return False


def _fast_formats() -> dict[str, Callable[[Any], bool]]:
    return {
        name: functools.partial(_conforms, check, raises or ())
        for name, (check, raises) in FORMAT_CHECKER.checkers.items()
    }


# --- validators ------------------------------------------------------------------------


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "string"):
        return
    try:
        matched = pattern_matches(pattern, instance)
    except PatternError as exc:  # only a definition stored before patterns were checked
        yield ValidationError(f"the pattern {pattern!r} cannot be checked: {exc}")
        return
    if not matched:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: dict[str, Any], instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if pattern_matches(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


Validator = validators.extend(
    Draft202012Validator, {"pattern": _pattern, "patternProperties": _pattern_properties}
)
"""Draft 2020-12 whose regular expressions are RE2's."""


def full_validator(schema: dict[str, Any]) -> Any:
    """A validator that lists every problem, with RE2 patterns and the shared formats."""
    return Validator(schema, format_checker=FORMAT_CHECKER)


def _without_patterns(schema: Any, formats: dict[str, Callable[[Any], bool]]) -> Any:
    if not isinstance(schema, dict):
        return schema
    copy = dict(schema)
    for keyword in _ONE:
        if isinstance(copy.get(keyword), dict):
            copy[keyword] = _without_patterns(copy[keyword], formats)
    for keyword in _LIST:
        if isinstance(copy.get(keyword), list):
            copy[keyword] = [_without_patterns(sub, formats) for sub in copy[keyword]]
    for keyword in _MAP:
        if isinstance(copy.get(keyword), dict):
            copy[keyword] = {k: _without_patterns(v, formats) for k, v in copy[keyword].items()}
    if str(copy.get("format", "")).startswith(_FORMAT_PREFIX):
        del copy["format"]  # a user's format must not borrow another field's pattern
    pattern = copy.pop("pattern", None)
    if isinstance(pattern, str):
        # The name is ours (never the pattern's text), so nothing user-written reaches
        # the code fastjsonschema generates.
        name = f"{_FORMAT_PREFIX}{len(formats)}"
        formats[name] = _matcher(pattern)
        copy["allOf"] = [*copy.get("allOf", []), {"format": name}]
    return copy


def _matcher(pattern: str) -> Callable[[Any], bool]:
    try:
        search = compile_pattern(pattern).search
    except PatternError:
        return lambda text: False  # the full validator then says why
    return lambda text: search(text) is not None


def fast_validator(schema: dict[str, Any]) -> Callable[[Any], Any] | None:
    """fastjsonschema's compiled validator for ``schema``, patterns checked by RE2.

    None when the schema holds ``patternProperties`` (which fastjsonschema would match
    with ``re``): the full validator must then do the work.
    """
    if any("patternProperties" in sub for _, sub in walk_schemas(schema)):
        return None
    formats = _fast_formats()
    rewritten = _without_patterns(schema, formats)
    return fastjsonschema.compile({"$schema": DRAFT7, **rewritten}, formats=formats)
