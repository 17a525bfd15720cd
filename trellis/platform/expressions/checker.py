"""Type checking: an expression against an object definition and the objects it looks up.

``check`` resolves every field path (through lookups' ``x-target``, two hops at most),
gives every node of the tree its type and returns the result type with the paths the
expression reads. Anything it cannot type is refused with the position of the culprit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trellis import defaults
from trellis.platform.expressions.syntax import (
    Binary,
    Call,
    Case,
    ExpressionError,
    In,
    Literal,
    Node,
    Path,
    Unary,
    parse,
)
from trellis.platform.messages import N_, Message

DECIMAL, INTEGER, TEXT, BOOLEAN = "decimal", "integer", "text", "boolean"
DATE, DATETIME, LIST, NULL = "date", "datetime", "list", "null"
NUMERIC = frozenset({DECIMAL, INTEGER})

TYPE_NAMES: dict[str, Message] = {
    DECIMAL: N_("a number"),
    INTEGER: N_("a whole number"),
    TEXT: N_("text"),
    BOOLEAN: N_("true or false"),
    DATE: N_("a date"),
    DATETIME: N_("a date-time"),
    LIST: N_("a list of values"),
    NULL: N_("NULL"),
}

# x-type → the type an expression reads; types not listed (json) cannot be read.
FIELD_TYPES = {
    "text": TEXT,
    "textarea": TEXT,
    "email": TEXT,
    "phone": TEXT,
    "url": TEXT,
    "picklist": TEXT,
    "autonumber": TEXT,
    "integer": INTEGER,
    "number": DECIMAL,
    "percent": DECIMAL,
    "currency": DECIMAL,
    "boolean": BOOLEAN,
    "date": DATE,
    "datetime": DATETIME,
    "multipicklist": LIST,
    "lookup": INTEGER,
    "master_detail": INTEGER,
    "richtext": TEXT,  # the stored (sanitised) HTML
    "user": INTEGER,  # a user's id: compares with $user.id
}
# Computed fields (formula, rollup) read as the type of their result (their JSON "type").
COMPUTED_TYPES = ("formula", "rollup")


def computed_type(prop: dict[str, Any]) -> str | None:
    """The expression type of a formula or roll-up field's value (its JSON ``type``, and a
    string's ``format``); ``None`` for any other field."""
    if prop.get("x-type") not in COMPUTED_TYPES:
        return None
    declared = prop.get("type")
    kinds = set(declared) if isinstance(declared, list) else {declared}
    if "integer" in kinds:
        return INTEGER
    if "number" in kinds:
        return DECIMAL
    if "boolean" in kinds:
        return BOOLEAN
    if "string" in kinds:
        return {"date": DATE, "date-time": DATETIME}.get(str(prop.get("format")), TEXT)
    return NULL


# The system columns every record has (metadata/names.py), as an expression reads them.
SYSTEM_FIELDS = {
    "id": "integer",
    "created_at": "datetime",
    "updated_at": "datetime",
    "created_by": "integer",
    "updated_by": "integer",
    "owner_id": "integer",
}
USER_FIELDS = {"id": INTEGER, "roles": LIST, "partner": INTEGER}
FUNCTIONS = frozenset(
    {
        "IF",
        "ISBLANK",
        "COALESCE",
        "LEN",
        "UPPER",
        "LOWER",
        "CONCAT",
        "CONTAINS",
        "ROUND",
        "ABS",
        "MIN",
        "MAX",
        "TODAY",
        "NOW",
        "DATE_ADD",
        "DAYS_BETWEEN",
        "YEAR",
        "MONTH",
    }
)
# name → (fewest, most) arguments; most None: no limit.
ARITY: dict[str, tuple[int, int | None]] = {
    "IF": (3, 3),
    "ISBLANK": (1, 1),
    "COALESCE": (1, None),
    "LEN": (1, 1),
    "UPPER": (1, 1),
    "LOWER": (1, 1),
    "CONCAT": (1, None),
    "CONTAINS": (2, 2),
    "ROUND": (1, 2),
    "ABS": (1, 1),
    "MIN": (1, None),
    "MAX": (1, None),
    "TODAY": (0, 0),
    "NOW": (0, 0),
    "DATE_ADD": (2, 2),
    "DAYS_BETWEEN": (2, 2),
    "YEAR": (1, 1),
    "MONTH": (1, 1),
}


@dataclass(frozen=True)
class ResolvedPath:
    """A field path, resolved: the objects it passes through and its last field's x-type."""

    dotted: str
    hops: tuple[tuple[str, str], ...]  # (object, lookup field) for each lookup followed
    target: str  # the object holding the last field
    field: str
    x_type: str
    type: str


@dataclass(frozen=True)
class Checked:
    """A type-checked expression: its tree, result type and what it reads."""

    text: str
    tree: Node
    type: str
    paths: frozenset[str]  # this record's paths: "quantity", "dealer.credit_limit"
    old_paths: frozenset[str]  # $old.<field>
    resolved: Mapping[str, ResolvedPath]
    uses_user: bool
    uses_now: bool


def unify(a: str, b: str) -> str | None:
    """The type a value of type ``a`` or ``b`` has (IF's branches, COALESCE), or None."""
    if a == b or b == NULL:
        return a
    if a == NULL:
        return b
    if a in NUMERIC and b in NUMERIC:
        return DECIMAL
    return None


def _properties(document: Any) -> dict[str, Any]:
    if hasattr(document, "document"):  # an ObjectDefinition
        document = document.document
    properties = document.get("properties") if isinstance(document, Mapping) else None
    return properties if isinstance(properties, dict) else {}


def _name(document: Any) -> str:
    if hasattr(document, "name"):
        return str(document.name)
    return str(document.get("x-name", ""))


class _Checker:
    def __init__(
        self, text: str, definition: Any, objects: Mapping[str, Any], allow_old: bool
    ) -> None:
        self.text = text
        self.object = _name(definition)
        self.objects = {**{k: v for k, v in objects.items()}, self.object: definition}
        self.allow_old = allow_old
        self.paths: set[str] = set()
        self.old_paths: set[str] = set()
        self.resolved: dict[str, ResolvedPath] = {}
        self.uses_user = False
        self.uses_now = False

    def error(self, message: Message, node: Node) -> ExpressionError:
        return ExpressionError(message, node.offset, self.text)

    def needs(self, what: str, expected: Message, node: Node) -> ExpressionError:
        return self.error(
            N_(
                "%(what)s needs %(expected)s, not %(found)s",
                what=what,
                expected=expected,
                found=TYPE_NAMES[node.type],
            ),
            node,
        )

    def want(self, node: Node, allowed: frozenset[str] | set[str], what: str) -> None:
        if node.type != NULL and node.type not in allowed:
            kinds = set(allowed)
            if kinds >= NUMERIC:  # "a number" covers whole numbers too
                kinds -= {INTEGER}
            names = [TYPE_NAMES[t] for t in sorted(kinds)]
            expected = names[0] if len(names) == 1 else N_("%(a)s or %(b)s", a=names[0], b=names[1])
            if len(names) > 2:
                expected = N_("a number")
            raise self.needs(what, expected, node)

    def check(self, node: Node) -> str:
        node.type = self.infer(node)
        return node.type

    def infer(self, node: Node) -> str:
        if isinstance(node, Literal):
            value = node.value
            if value is None:
                return NULL
            if isinstance(value, bool):
                return BOOLEAN
            if isinstance(value, int):
                return INTEGER
            if isinstance(value, str):
                return TEXT
            return DECIMAL
        if isinstance(node, Path):
            return self.path(node)
        if isinstance(node, Unary):
            operand = self.check(node.operand)
            if node.op == "NOT":
                self.want(node.operand, {BOOLEAN}, "NOT")
                return BOOLEAN
            self.want(node.operand, NUMERIC, "-")
            return operand if operand != NULL else DECIMAL
        if isinstance(node, Binary):
            return self.binary(node)
        if isinstance(node, In):
            return self.in_(node)
        if isinstance(node, Case):
            result = NULL
            for condition, value in node.whens:
                self.check(condition)
                self.want(condition, {BOOLEAN}, "WHEN")
                result = self.merge(result, self.check(value), value)
            if node.default is not None:
                result = self.merge(result, self.check(node.default), node.default)
            return result
        if isinstance(node, Call):
            return self.call(node)
        raise AssertionError(node)  # pragma: no cover - every node kind is above

    def merge(self, result: str, branch: str, node: Node) -> str:
        merged = unify(result, branch)
        if merged is None:
            raise self.error(
                N_(
                    "the branches give %(left)s and %(right)s, which do not mix",
                    left=TYPE_NAMES[result],
                    right=TYPE_NAMES[branch],
                ),
                node,
            )
        return merged

    def path(self, node: Path) -> str:
        if node.root == "user":
            self.uses_user = True
            if len(node.parts) != 1 or node.parts[0] not in USER_FIELDS:
                raise self.error(
                    N_("$user has id, roles and partner, not %(name)s", name=repr(node.dotted)),
                    node,
                )
            return USER_FIELDS[node.parts[0]]
        if node.root == "old":
            if not self.allow_old:
                raise self.error(N_("$old can only be used in update rules"), node)
            if len(node.parts) != 1:
                raise self.error(N_("$old reads this object's own fields only"), node)
        resolved = self.resolve(node)
        (self.old_paths if node.root == "old" else self.paths).add(resolved.dotted)
        self.resolved[resolved.dotted] = resolved
        return resolved.type

    def resolve(self, node: Path) -> ResolvedPath:
        current = self.object
        hops: list[tuple[str, str]] = []
        for index, part in enumerate(node.parts):
            prop = _properties(self.objects.get(current, {})).get(part)
            if prop is None and part in SYSTEM_FIELDS:
                prop = {"x-type": SYSTEM_FIELDS[part]}
            if not isinstance(prop, dict):
                raise self.error(
                    N_("%(name)s is not a field of %(object)s", name=repr(part), object=current),
                    node,
                )
            x_type = str(prop.get("x-type"))
            if index == len(node.parts) - 1:
                computed = computed_type(prop)
                if computed is not None:
                    return ResolvedPath(node.dotted, tuple(hops), current, part, x_type, computed)
                if x_type not in FIELD_TYPES:
                    raise self.error(
                        N_(
                            "%(name)s is a %(type)s field, which expressions cannot read",
                            name=repr(part),
                            type=x_type,
                        ),
                        node,
                    )
                return ResolvedPath(
                    node.dotted, tuple(hops), current, part, x_type, FIELD_TYPES[x_type]
                )
            target = prop.get("x-target")
            if x_type not in ("lookup", "master_detail") or not isinstance(target, str):
                raise self.error(
                    N_("%(name)s is not a lookup, so it has no fields to follow", name=repr(part)),
                    node,
                )
            if target not in self.objects:
                raise self.error(N_("unknown object %(name)s", name=repr(target)), node)
            hops.append((current, part))
            current = target
        raise AssertionError(node)  # pragma: no cover - a path has at least one part

    def binary(self, node: Binary) -> str:
        left, right = self.check(node.left), self.check(node.right)
        op = node.op
        if op in ("AND", "OR"):
            self.want(node.left, {BOOLEAN}, op)
            self.want(node.right, {BOOLEAN}, op)
            return BOOLEAN
        if op in ("+", "-", "*", "/"):
            self.want(node.left, NUMERIC, op)
            self.want(node.right, NUMERIC, op)
            if op != "/" and left == INTEGER and right == INTEGER:
                return INTEGER
            return DECIMAL
        # a comparison
        if left == NULL or right == NULL:
            return BOOLEAN
        if unify(left, right) is None or left == LIST:
            raise self.error(
                N_(
                    "cannot compare %(left)s with %(right)s",
                    left=TYPE_NAMES[left],
                    right=TYPE_NAMES[right],
                ),
                node,
            )
        if left == BOOLEAN and op not in ("=", "!="):
            raise self.error(N_("true or false can only be compared with = or !="), node)
        return BOOLEAN

    def in_(self, node: In) -> str:
        operand = self.check(node.operand)
        if operand == LIST:
            raise self.needs("IN", TYPE_NAMES[TEXT], node.operand)
        for item in node.items:
            kind = self.check(item)
            if unify(operand, kind) is None:
                raise self.error(
                    N_(
                        "cannot compare %(left)s with %(right)s",
                        left=TYPE_NAMES[operand],
                        right=TYPE_NAMES[kind],
                    ),
                    item,
                )
        return BOOLEAN

    def call(self, node: Call) -> str:
        name, args = node.name, node.args
        if name not in FUNCTIONS:
            raise self.error(N_("unknown function %(name)s", name=name), node)
        low, high = ARITY[name]
        count = len(args)
        if count < low or (high is not None and count > high):
            if high is None:
                message = N_(
                    "%(name)s takes at least %(low)s arguments, not %(count)s",
                    name=name,
                    low=low,
                    count=count,
                )
            elif low == high:
                message = N_(
                    "%(name)s takes %(low)s arguments, not %(count)s",
                    name=name,
                    low=low,
                    count=count,
                )
            else:
                message = N_(
                    "%(name)s takes %(low)s to %(high)s arguments, not %(count)s",
                    name=name,
                    low=low,
                    high=high,
                    count=count,
                )
            raise self.error(message, node)
        types = [self.check(arg) for arg in args]
        if name == "IF":
            self.want(args[0], {BOOLEAN}, name)
            result = self.merge(types[1], types[2], args[2])
            return result
        if name == "ISBLANK":
            return BOOLEAN
        if name == "COALESCE":
            result = NULL
            for arg, kind in zip(args, types, strict=True):
                result = self.merge(result, kind, arg)
            return result
        if name in ("LEN", "UPPER", "LOWER"):
            self.want(args[0], {TEXT}, name)
            return INTEGER if name == "LEN" else TEXT
        if name == "CONCAT":
            for arg in args:
                self.want(arg, {TEXT, INTEGER}, name)
            return TEXT
        if name == "CONTAINS":
            self.want(args[0], {TEXT, LIST}, name)
            self.want(args[1], {TEXT}, name)
            return BOOLEAN
        if name == "ROUND":
            self.want(args[0], NUMERIC, name)
            if count == 2:
                digits = args[1]
                if not (
                    isinstance(digits, Literal)
                    and type(digits.value) is int
                    and 0 <= digits.value <= defaults.EXPRESSION_ROUND_MAX_DIGITS
                ):
                    raise self.error(
                        N_(
                            "ROUND's digits must be a whole number from 0 to %(limit)s",
                            limit=defaults.EXPRESSION_ROUND_MAX_DIGITS,
                        ),
                        digits,
                    )
            return INTEGER if types[0] == INTEGER else DECIMAL
        if name == "ABS":
            self.want(args[0], NUMERIC, name)
            return types[0] if types[0] != NULL else DECIMAL
        if name in ("MIN", "MAX"):
            result = NULL
            for arg, kind in zip(args, types, strict=True):
                self.want(arg, NUMERIC | {TEXT, DATE, DATETIME}, name)
                result = self.merge(result, kind, arg)
            return result
        if name in ("TODAY", "NOW"):
            self.uses_now = True
            return DATE if name == "TODAY" else DATETIME
        if name == "DATE_ADD":
            self.want(args[0], {DATE, DATETIME}, name)
            self.want(args[1], {INTEGER}, name)
            return types[0] if types[0] != NULL else DATE
        if name == "DAYS_BETWEEN":
            for arg in args:
                self.want(arg, {DATE, DATETIME}, name)
            return INTEGER
        # YEAR, MONTH
        self.want(args[0], {DATE, DATETIME}, name)
        return INTEGER


def check(
    text: str,
    definition: Any,
    objects: Mapping[str, Any] | None = None,
    *,
    allow_old: bool = False,
) -> Checked:
    """Parse and type-check ``text`` against ``definition`` (a definition document or an
    ``ObjectDefinition``) and ``objects`` (the other objects' documents by name).

    ``allow_old``: the caller compiles an update rule, where ``$old.<field>`` is allowed.
    Raises ``ExpressionError`` with the position of the first problem.
    """
    tree = parse(text)
    checker = _Checker(text, definition, objects or {}, allow_old)
    result = checker.check(tree)
    return Checked(
        text,
        tree,
        result,
        frozenset(checker.paths),
        frozenset(checker.old_paths),
        dict(checker.resolved),
        checker.uses_user,
        checker.uses_now,
    )


__all__ = [
    "BOOLEAN",
    "COMPUTED_TYPES",
    "DATE",
    "DATETIME",
    "DECIMAL",
    "FIELD_TYPES",
    "FUNCTIONS",
    "INTEGER",
    "LIST",
    "NULL",
    "TEXT",
    "Checked",
    "ResolvedPath",
    "check",
    "computed_type",
    "unify",
]
