"""A checked expression as a SQLAlchemy Core expression (PostgreSQL and SQLite).

The caller maps each field path to a column element (it makes the joins); ``$user`` and
TODAY()/NOW() become bound values of the moment the statement is built. Not every
expression has a SQL form: ``$old``, list values (a multipicklist, except ``$user.roles``
inside CONTAINS/ISBLANK) and date functions on date-times are Python-only
(``sql_problem`` says which and where).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement
from sqlalchemy.types import NullType

from trellis import defaults
from trellis.platform.expressions.checker import (
    BOOLEAN,
    DATE,
    DATETIME,
    DECIMAL,
    INTEGER,
    LIST,
    NULL,
    TEXT,
    Checked,
)
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
    children,
)
from trellis.platform.messages import N_, Message

SQL_TYPES: dict[str, Any] = {
    DECIMAL: sa.Numeric(asdecimal=True),
    INTEGER: sa.BigInteger(),
    TEXT: sa.Text(),
    BOOLEAN: sa.Boolean(),
    DATE: sa.Date(),
    DATETIME: sa.DateTime(timezone=True),
    NULL: NullType(),
}


# --- dialect-specific pieces -------------------------------------------------------------------


class _AsDecimal(FunctionElement[Any]):
    """A number as an exact decimal: NUMERIC on PostgreSQL, REAL on SQLite (it has no decimal)."""

    inherit_cache = True
    type = sa.Numeric(asdecimal=True)


@compiles(_AsDecimal)
def _as_decimal(element: Any, compiler: Any, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS NUMERIC)"


@compiles(_AsDecimal, "sqlite")
def _as_decimal_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS REAL)"


class _Comparable(FunctionElement[Any]):
    """A decimal as compared: itself; on SQLite (REAL) rounded to the division scale,
    so that 0.1 + 0.2 = 0.3 holds there too.
    """

    inherit_cache = True
    type = sa.Numeric(asdecimal=True)


@compiles(_Comparable)
def _comparable(element: Any, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(_Comparable, "sqlite")
def _comparable_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    scale = defaults.EXPRESSION_DIVISION_SCALE
    return f"ROUND({compiler.process(element.clauses, **kw)}, {scale})"


class _Divide(FunctionElement[Any]):
    """a / b rounded to the division scale; NULL when b is 0."""

    inherit_cache = True
    type = sa.Numeric(asdecimal=True)


@compiles(_Divide)
def _divide(element: Any, compiler: Any, **kw: Any) -> str:
    a, b = (compiler.process(c, **kw) for c in element.clauses)
    # The zeros give the dividend 20 decimal places, so PostgreSQL divides to at least 20.
    zeros = "0." + "0" * 20
    scale = defaults.EXPRESSION_DIVISION_SCALE
    return f"ROUND((CAST({a} AS NUMERIC) + {zeros}) / NULLIF(CAST({b} AS NUMERIC), 0), {scale})"


@compiles(_Divide, "sqlite")
def _divide_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    a, b = (compiler.process(c, **kw) for c in element.clauses)
    scale = defaults.EXPRESSION_DIVISION_SCALE
    return f"ROUND(CAST({a} AS REAL) / NULLIF({b}, 0), {scale})"


class _Contains(FunctionElement[Any]):
    """Whether text b occurs in text a (case-sensitive)."""

    inherit_cache = True
    type = sa.Boolean()


@compiles(_Contains)
def _contains(element: Any, compiler: Any, **kw: Any) -> str:
    a, b = (compiler.process(c, **kw) for c in element.clauses)
    return f"(strpos({a}, {b}) > 0)"


@compiles(_Contains, "sqlite")
def _contains_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    a, b = (compiler.process(c, **kw) for c in element.clauses)
    return f"(instr({a}, {b}) > 0)"


class _DateAdd(FunctionElement[Any]):
    inherit_cache = True
    type = sa.Date()


@compiles(_DateAdd)
def _date_add(element: Any, compiler: Any, **kw: Any) -> str:
    a, b = (compiler.process(c, **kw) for c in element.clauses)
    return f"(CAST({a} AS DATE) + CAST({b} AS INTEGER))"


@compiles(_DateAdd, "sqlite")
def _date_add_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    a, b = (compiler.process(c, **kw) for c in element.clauses)
    return f"date({a}, printf('%+d days', {b}))"


class _DaysBetween(FunctionElement[Any]):
    inherit_cache = True
    type = sa.BigInteger()


@compiles(_DaysBetween)
def _days_between(element: Any, compiler: Any, **kw: Any) -> str:
    a, b = (compiler.process(c, **kw) for c in element.clauses)
    return f"(CAST({b} AS DATE) - CAST({a} AS DATE))"


@compiles(_DaysBetween, "sqlite")
def _days_between_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    a, b = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST(julianday({b}) - julianday({a}) AS INTEGER)"


class _Greatest(FunctionElement[Any]):
    """MAX of several values, NULLs left out (GREATEST; SQLite's max, NULLs filled)."""

    inherit_cache = True
    function = "max"


class _Least(FunctionElement[Any]):
    """MIN of several values, NULLs left out (LEAST; SQLite's min, NULLs filled)."""

    inherit_cache = True
    function = "min"


@compiles(_Greatest)
@compiles(_Least)
def _extreme(element: Any, compiler: Any, **kw: Any) -> str:
    function = "GREATEST" if element.function == "max" else "LEAST"
    return f"{function}({compiler.process(element.clauses, **kw)})"


@compiles(_Greatest, "sqlite")
@compiles(_Least, "sqlite")
def _extreme_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    args = [compiler.process(c, **kw) for c in element.clauses]
    if len(args) == 1:
        return args[0]
    # SQLite's max(a, b) is NULL when any is: give each NULL the value of another argument.
    filled = [
        f"coalesce({', '.join([arg, *(o for j, o in enumerate(args) if j != i)])})"
        for i, arg in enumerate(args)
    ]
    return f"{element.function}({', '.join(filled)})"


# --- building ----------------------------------------------------------------------------------


def _null_boolean() -> Any:
    return sa.type_coerce(sa.null(), sa.Boolean())


def sql_problem(checked: Checked) -> ExpressionError | None:
    """Why ``checked`` has no SQL form (the first node that has none), or None."""
    for node in _walk(checked.tree):
        message = _node_problem(node, checked)
        if message is not None:
            return ExpressionError(message, node.offset, checked.text)
    return None


def _walk(node: Node) -> list[Node]:
    found, stack = [], [node]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(reversed(children(current)))
    return found


def _node_problem(node: Node, checked: Checked) -> Message | None:
    if isinstance(node, Path) and node.root == "old":
        return N_("$old has no SQL form")
    if isinstance(node, Path) and node.root == "" and node.type == LIST:
        return N_("a list of values has no SQL form")
    if isinstance(node, Call):
        if node.name in ("CONTAINS", "ISBLANK") and node.args[0].type == LIST:
            arg = node.args[0]
            if not (isinstance(arg, Path) and arg.root == "user"):
                return N_("a list of values has no SQL form")
        if node.name in ("DATE_ADD", "DAYS_BETWEEN", "YEAR", "MONTH") and any(
            a.type == DATETIME for a in node.args
        ):
            return N_("%(name)s of a date-time has no SQL form", name=node.name)
    return None


class _Builder:
    def __init__(
        self,
        checked: Checked,
        columns: Mapping[str, Any],
        user: Any,
        now: dt.datetime,
    ) -> None:
        self.checked = checked
        self.columns = columns
        self.user = user
        self.now = now

    def user_value(self, name: str) -> Any:
        if self.user is None:
            return None
        if isinstance(self.user, Mapping):
            return self.user.get(name)
        return getattr(self.user, name, None)

    def decimal(self, node: Node) -> Any:
        element = self.build(node)
        return _AsDecimal(element) if node.type == INTEGER else element

    def build(self, node: Node) -> Any:
        if isinstance(node, Literal):
            if node.value is None:
                return sa.null()
            return sa.literal(node.value, SQL_TYPES[node.type])
        if isinstance(node, Path):
            if node.root == "user":
                return sa.literal(self.user_value(node.parts[0]), SQL_TYPES[node.type])
            try:
                column = self.columns[node.dotted]
            except KeyError:
                raise KeyError(f"no column given for the path {node.dotted!r}") from None
            if node.type == DECIMAL:
                return _AsDecimal(column)
            return column
        if isinstance(node, Unary):
            if node.op == "NOT":
                return sa.not_(self.build(node.operand))
            return sa.type_coerce(-self.build(node.operand), SQL_TYPES[node.type])
        if isinstance(node, Binary):
            return self.binary(node)
        if isinstance(node, In):
            operand = self.build(node.operand)
            # x = NULL is NULL (SQLAlchemy would write IS NULL for == None)
            test = sa.or_(
                *(
                    _null_boolean() if item.type == NULL else operand == self.build(item)
                    for item in node.items
                )
            )
            return sa.not_(test) if node.negated else test
        if isinstance(node, Case):
            whens = [(self.build(c), self.typed(v, node.type)) for c, v in node.whens]
            default = self.typed(node.default, node.type) if node.default is not None else sa.null()
            return sa.type_coerce(sa.case(*whens, else_=default), SQL_TYPES[node.type])
        if isinstance(node, Call):
            return self.call(node)
        raise AssertionError(node)  # pragma: no cover

    def typed(self, node: Node, kind: str) -> Any:
        return self.decimal(node) if kind == DECIMAL else self.build(node)

    def binary(self, node: Binary) -> Any:
        op = node.op
        if op == "AND":
            return sa.and_(self.build(node.left), self.build(node.right))
        if op == "OR":
            return sa.or_(self.build(node.left), self.build(node.right))
        if op == "/":
            return _Divide(self.build(node.left), self.build(node.right))
        if op in ("+", "-", "*"):
            if node.type == INTEGER:
                left, right = self.build(node.left), self.build(node.right)
            else:
                left, right = self.decimal(node.left), self.decimal(node.right)
            result = {"+": left + right, "-": left - right, "*": left * right}[op]
            return sa.type_coerce(result, SQL_TYPES[node.type])
        if NULL in (node.left.type, node.right.type):
            return _null_boolean()  # a comparison with NULL is NULL
        numeric = {node.left.type, node.right.type} <= {INTEGER, DECIMAL}
        if numeric and DECIMAL in (node.left.type, node.right.type):
            left, right = (
                _Comparable(self.decimal(node.left)),
                _Comparable(self.decimal(node.right)),
            )
        else:
            left, right = self.build(node.left), self.build(node.right)
        compare = {
            "=": left == right,
            "!=": left != right,
            "<": left < right,
            "<=": left <= right,
            ">": left > right,
            ">=": left >= right,
        }[op]
        return compare

    def call(self, node: Call) -> Any:
        name, args = node.name, node.args
        kind = SQL_TYPES[node.type] if node.type != LIST else NullType()
        if name == "IF":
            return sa.type_coerce(
                sa.case(
                    (self.build(args[0]), self.typed(args[1], node.type)),
                    else_=self.typed(args[2], node.type),
                ),
                kind,
            )
        if name == "ISBLANK":
            arg = args[0]
            if arg.type == LIST:  # $user.roles
                return sa.literal(not self.user_value("roles"), sa.Boolean())
            element = self.build(arg)
            if arg.type == TEXT:
                return sa.or_(element.is_(None), element == "")
            return element.is_(None)
        if name == "COALESCE":
            return sa.type_coerce(sa.func.coalesce(*(self.typed(a, node.type) for a in args)), kind)
        if name == "LEN":
            return sa.type_coerce(sa.func.length(self.build(args[0])), kind)
        if name in ("UPPER", "LOWER"):
            return sa.type_coerce(getattr(sa.func, name.lower())(self.build(args[0])), kind)
        if name == "CONCAT":
            parts = [
                sa.func.coalesce(sa.cast(self.build(a), sa.Text()), "")
                if a.type != NULL
                else sa.literal("")
                for a in args
            ]
            result: Any = parts[0]
            for part in parts[1:]:
                result = result.op("||")(part)
            return sa.type_coerce(result, kind)
        if name == "CONTAINS":
            if args[0].type == LIST:  # $user.roles: the roles are known now
                roles = [str(r) for r in (self.user_value("roles") or [])]
                needle = self.build(args[1])
                if not roles:
                    return sa.case((needle.is_(None), sa.null()), else_=sa.false())
                return needle.in_(roles)
            return _Contains(self.build(args[0]), self.build(args[1]))
        if name == "ROUND":
            if node.type == INTEGER:
                return self.build(args[0])
            digits = args[1].value if len(args) == 2 else 0  # type: ignore[attr-defined]
            return sa.type_coerce(sa.func.round(self.decimal(args[0]), digits), kind)
        if name == "ABS":
            return sa.type_coerce(sa.func.abs(self.build(args[0])), kind)
        if name in ("MIN", "MAX"):
            values = [self.typed(a, node.type) for a in args if a.type != NULL]
            if not values:
                return sa.null()
            extreme = _Greatest if name == "MAX" else _Least
            return sa.type_coerce(extreme(*values), kind)
        if name == "TODAY":
            return sa.literal(self.now.date(), sa.Date())
        if name == "NOW":
            return sa.literal(self.now, sa.DateTime(timezone=True))
        if name == "DATE_ADD":
            return _DateAdd(self.build(args[0]), self.build(args[1]))
        if name == "DAYS_BETWEEN":
            return _DaysBetween(self.build(args[0]), self.build(args[1]))
        field = "year" if name == "YEAR" else "month"
        return sa.cast(sa.extract(field, self.build(args[0])), sa.BigInteger())


def to_sql(
    checked: Checked,
    columns: Mapping[str, Any],
    *,
    user: Any = None,
    now: dt.datetime | None = None,
) -> ColumnElement[Any]:
    """``checked`` as a SQLAlchemy column expression over ``columns`` (path → column element).

    ``user`` and ``now`` are bound as they are now. Raises ``ExpressionError`` when the
    expression has no SQL form (``sql_problem``), ``KeyError`` for a path without a column.
    """
    problem = sql_problem(checked)
    if problem is not None:
        raise problem
    moment = now if now is not None else dt.datetime.now(dt.UTC)
    element = _Builder(checked, columns, user, moment).build(checked.tree)
    if checked.type == NULL:
        return sa.null()
    return sa.type_coerce(element, SQL_TYPES[checked.type])


__all__ = ["sql_problem", "to_sql"]
