"""A checked expression compiled to nested Python closures (one per node, built once).

Numbers are ``int`` (whole-number type) or ``Decimal`` (never float); NULL is ``None`` and
propagates as in SQL (docs/expressions.md "NULL").
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable, Mapping
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Any

from trellis import defaults
from trellis.platform.expressions.checker import (
    DATE,
    DATETIME,
    DECIMAL,
    INTEGER,
    LIST,
    Checked,
    ResolvedPath,
)
from trellis.platform.expressions.syntax import Binary, Call, Case, In, Literal, Node, Path, Unary

# Exact for every sum and product of NUMERIC(20, x) amounts; division is rounded (below).
CONTEXT = Context(prec=100, rounding=ROUND_HALF_UP)
DIVISION_QUANTUM = Decimal(1).scaleb(-defaults.EXPRESSION_DIVISION_SCALE)

# (record values, resolver, user, old, now)
Env = tuple[Mapping[str, Any], Any, Any, Any, Any]  # now: a datetime, or None if unread
Fn = Callable[[Env], Any]
Resolver = Callable[[str, int, str], Any]


def to_decimal(value: Any) -> Decimal | None:
    """A stored number as a Decimal: floats by their shortest repr, so 0.1 is 0.1."""
    if value is None or isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(value, int):
        return Decimal(value)
    return Decimal(repr(value) if isinstance(value, float) else str(value))


def _to_date(value: Any) -> dt.date | None:
    if value is None or (isinstance(value, dt.date) and not isinstance(value, dt.datetime)):
        return value
    if isinstance(value, dt.datetime):
        return value.date()
    return dt.date.fromisoformat(str(value))


def _to_datetime(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _to_list(value: Any) -> list[Any] | None:
    return None if value is None else list(value)


_CONVERT: dict[str, Callable[[Any], Any]] = {
    DECIMAL: to_decimal,
    DATE: _to_date,
    DATETIME: _to_datetime,
    LIST: _to_list,
}


def _user_value(user: Any, name: str) -> Any:
    if user is None:
        return None
    if isinstance(user, Mapping):
        return user.get(name)
    return getattr(user, name, None)


def _path(node: Path, resolved: ResolvedPath | None) -> Fn:
    if node.root == "user":
        name = node.parts[0]
        convert = _to_list if name == "roles" else (lambda v: v)
        return lambda env: convert(_user_value(env[2], name))
    assert resolved is not None
    convert = _CONVERT.get(resolved.type, lambda v: v)
    field = resolved.field
    if node.root == "old":
        return lambda env: None if env[3] is None else convert(env[3].get(field))
    if not resolved.hops:
        return lambda env: convert(env[0].get(field))
    dotted = resolved.dotted
    first = resolved.hops[0][1]
    further = resolved.hops[1:]  # (object, lookup field) after the first
    target = resolved.target

    def read(env: Env) -> Any:
        values = env[0]
        if dotted in values:  # the caller read it already (a join, a prefetch)
            return convert(values[dotted])
        record_id = values.get(first)
        for obj, lookup in further:
            if record_id is None:
                return None
            record_id = env[1](obj, record_id, lookup)
        if record_id is None:
            return None
        return convert(env[1](target, record_id, field))

    return read


def _and(left: Fn, right: Fn) -> Fn:
    def run(env: Env) -> Any:
        a = left(env)
        if a is False:
            return False
        b = right(env)
        if b is False:
            return False
        return None if a is None or b is None else True

    return run


def _or(left: Fn, right: Fn) -> Fn:
    def run(env: Env) -> Any:
        a = left(env)
        if a is True:
            return True
        b = right(env)
        if b is True:
            return True
        return None if a is None or b is None else False

    return run


def _divide(a: Any, b: Any) -> Decimal | None:
    if not b:
        return None  # division by zero is NULL (docs/expressions.md)
    return CONTEXT.divide(Decimal(a), Decimal(b)).quantize(DIVISION_QUANTUM, context=CONTEXT)


def _arith(node: Binary) -> Callable[[Any, Any], Any]:
    op = node.op
    if op == "/":
        return _divide
    if node.type == INTEGER:
        return {"+": operator.add, "-": operator.sub, "*": operator.mul}[op]
    method = {"+": CONTEXT.add, "-": CONTEXT.subtract, "*": CONTEXT.multiply}[op]
    if node.left.type == DECIMAL and node.right.type == DECIMAL:
        return method  # both are Decimals already
    return lambda a, b: method(Decimal(a), Decimal(b))


_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _binary(node: Binary, left: Fn, right: Fn) -> Fn:
    if node.op == "AND":
        return _and(left, right)
    if node.op == "OR":
        return _or(left, right)
    compare = _COMPARE.get(node.op) or _arith(node)

    def run(env: Env) -> Any:
        a = left(env)
        if a is None:
            return None
        b = right(env)
        if b is None:
            return None
        return compare(a, b)

    return run


def _strict(function: Callable[..., Any], args: list[Fn]) -> Fn:
    """A function that is NULL when any argument is NULL."""
    if len(args) == 1:
        (only,) = args

        def one(env: Env) -> Any:
            value = only(env)
            return None if value is None else function(value)

        return one

    def run(env: Env) -> Any:
        values = [arg(env) for arg in args]
        return None if any(v is None for v in values) else function(*values)

    return run


def _round(digits: int) -> Callable[[Any], Any]:
    quantum = Decimal(1).scaleb(-digits)

    def run(value: Any) -> Any:
        if isinstance(value, int):
            return value
        return value.quantize(quantum, rounding=ROUND_HALF_UP, context=CONTEXT)

    return run


def _date_add(value: Any, days: int) -> Any:
    try:
        return value + dt.timedelta(days=days)
    except OverflowError:
        return None  # past year 9999: no such date


def _days_between(a: Any, b: Any) -> int:
    if isinstance(a, dt.datetime) or isinstance(b, dt.datetime):
        return int((_to_datetime(b) - _to_datetime(a)).total_seconds() // 86400)  # type: ignore[operator]
    return (b - a).days


def _call(node: Call, args: list[Fn]) -> Fn:
    name = node.name
    if name == "IF":
        condition, then, otherwise = args
        return lambda env: then(env) if condition(env) is True else otherwise(env)
    if name == "ISBLANK":
        (arg,) = args
        return lambda env: arg(env) in (None, "", [])
    if name == "COALESCE":
        convert = to_decimal if node.type == DECIMAL else (lambda v: v)

        def coalesce(env: Env) -> Any:
            for arg in args:
                value = arg(env)
                if value is not None:
                    return convert(value)
            return None

        return coalesce
    if name == "LEN":
        return _strict(len, args)
    if name == "UPPER":
        return _strict(str.upper, args)
    if name == "LOWER":
        return _strict(str.lower, args)
    if name == "CONCAT":
        return lambda env: "".join(str(v) for v in (arg(env) for arg in args) if v is not None)
    if name == "CONTAINS":
        return _strict(lambda haystack, needle: needle in haystack, args)
    if name == "ROUND":
        digits = node.args[1].value if len(node.args) == 2 else 0  # type: ignore[attr-defined]
        return _strict(_round(digits), args[:1])
    if name == "ABS":
        return _strict(abs, args)
    if name in ("MIN", "MAX"):
        pick = min if name == "MIN" else max
        convert = to_decimal if node.type == DECIMAL else (lambda v: v)

        def extreme(env: Env) -> Any:
            values = [v for v in (arg(env) for arg in args) if v is not None]
            return convert(pick(values)) if values else None  # NULLs are left out

        return extreme
    if name == "TODAY":
        return lambda env: env[4].date()
    if name == "NOW":
        return lambda env: env[4]
    if name == "DATE_ADD":
        return _strict(_date_add, args)
    if name == "DAYS_BETWEEN":
        return _strict(_days_between, args)
    if name == "YEAR":
        return _strict(lambda d: d.year, args)
    return _strict(lambda d: d.month, args)  # MONTH


def _in(node: In, operand: Fn, items: list[Fn]) -> Fn:
    negated = node.negated

    def run(env: Env) -> Any:
        value = operand(env)
        if value is None:
            return None
        unknown = False
        for item in items:
            candidate = item(env)
            if candidate is None:
                unknown = True
            elif candidate == value:
                return not negated
        return None if unknown else negated

    return run


def _case(whens: list[tuple[Fn, Fn]], default: Fn | None) -> Fn:
    def run(env: Env) -> Any:
        for condition, value in whens:
            if condition(env) is True:
                return value(env)
        return default(env) if default is not None else None

    return run


def build(node: Node, checked: Checked) -> Fn:
    """The closure computing ``node`` from an ``Env``."""
    if isinstance(node, Literal):
        value = node.value
        return lambda env: value
    if isinstance(node, Path):
        return _path(node, checked.resolved.get(node.dotted))
    if isinstance(node, Unary):
        operand = build(node.operand, checked)
        if node.op == "NOT":
            return lambda env: None if (v := operand(env)) is None else not v
        return lambda env: None if (v := operand(env)) is None else -v
    if isinstance(node, Binary):
        return _binary(node, build(node.left, checked), build(node.right, checked))
    if isinstance(node, In):
        return _in(node, build(node.operand, checked), [build(i, checked) for i in node.items])
    if isinstance(node, Case):
        whens = [(build(c, checked), build(v, checked)) for c, v in node.whens]
        default = build(node.default, checked) if node.default is not None else None
        return _case(whens, default)
    if isinstance(node, Call):
        return _call(node, [build(arg, checked) for arg in node.args])
    raise AssertionError(node)  # pragma: no cover


def python_function(checked: Checked) -> Callable[..., Any]:
    """``fn(record_values, resolver=None, user=None, old=None, now=None)`` for ``checked``.

    ``record_values``: the record's stored values by field name (a lookup's id under its
    name; a prefetched path under its dotted name). ``resolver(object, id, field)``: a
    field of another record, for paths through lookups. ``user``: a mapping (or object)
    with ``id``, ``roles``, ``partner``. ``old``: the stored values before an update.
    ``now``: the moment TODAY() and NOW() read (an aware datetime; default: now, UTC).
    """
    root = build(checked.tree, checked)
    result_decimal = checked.type == DECIMAL
    uses_now = checked.uses_now

    def evaluate(
        record_values: Mapping[str, Any],
        resolver: Resolver | None = None,
        user: Any = None,
        old: Mapping[str, Any] | None = None,
        now: dt.datetime | None = None,
    ) -> Any:
        moment = now if now is not None or not uses_now else dt.datetime.now(dt.UTC)
        try:
            value = root((record_values, resolver, user, old, moment))
        except InvalidOperation:
            return None  # a result beyond 100 digits
        if result_decimal and isinstance(value, int):
            return Decimal(value)
        return value

    return evaluate


__all__ = ["CONTEXT", "python_function", "to_decimal"]
