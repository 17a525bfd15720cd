"""The expression language of formulas, roll-up filters, rules and conditions (DESIGN §5).

Pure: no Flask, no session. ``compile_expression`` parses and type-checks an expression
against an object definition and compiles it once, to a Python callable and (where the
expression allows it) to a SQLAlchemy expression. docs/expressions.md is the reference.

    compiled = compile_expression("quantity * unit_price", order_line_doc, objects)
    compiled.type                       # "decimal"
    compiled.paths                      # frozenset({"quantity", "unit_price"})
    compiled({"quantity": 3, "unit_price": Decimal("9.90")})   # Decimal("29.70")
    compiled.to_sql({"quantity": t.c.quantity, "unit_price": t.c.unit_price})
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from threading import Lock
from typing import Any

from trellis import defaults
from trellis.platform.expressions.checker import (
    BOOLEAN,
    DATE,
    DATETIME,
    DECIMAL,
    FUNCTIONS,
    INTEGER,
    LIST,
    NULL,
    TEXT,
    Checked,
    check,
)
from trellis.platform.expressions.python import python_function, to_decimal
from trellis.platform.expressions.sql import sql_problem, to_sql
from trellis.platform.expressions.syntax import ExpressionError, parse


@dataclass(frozen=True)
class CompiledExpression:
    """An expression checked and compiled: call it for a value, ``to_sql`` for a column."""

    checked: Checked
    function: Callable[..., Any] = field(repr=False)
    sql_error: ExpressionError | None = field(repr=False)

    @property
    def text(self) -> str:
        """The expression as written."""
        return self.checked.text

    @property
    def type(self) -> str:
        """The result type: decimal, integer, text, boolean, date, datetime, list or null."""
        return self.checked.type

    @property
    def paths(self) -> frozenset[str]:
        """The field paths it reads (``dealer.credit_limit`` reads ``dealer`` too)."""
        return self.checked.paths

    @property
    def old_paths(self) -> frozenset[str]:
        """The fields it reads under ``$old``."""
        return self.checked.old_paths

    @property
    def uses_user(self) -> bool:
        """Whether it reads ``$user``."""
        return self.checked.uses_user

    @property
    def uses_now(self) -> bool:
        """Whether it reads TODAY() or NOW() (its value changes with time)."""
        return self.checked.uses_now

    @property
    def has_sql(self) -> bool:
        """Whether ``to_sql`` can build it."""
        return self.sql_error is None

    def __call__(
        self,
        record_values: Mapping[str, Any],
        resolver: Callable[[str, int, str], Any] | None = None,
        user: Any = None,
        old: Mapping[str, Any] | None = None,
        now: dt.datetime | None = None,
    ) -> Any:
        """The value for one record (see ``python.python_function`` for the arguments)."""
        return self.function(record_values, resolver, user, old, now)

    def to_sql(
        self, columns: Mapping[str, Any], *, user: Any = None, now: dt.datetime | None = None
    ) -> Any:
        """A SQLAlchemy column expression over ``columns`` (path → column element).

        Raises the ``ExpressionError`` of ``sql_error`` when it has no SQL form.
        """
        if self.sql_error is not None:
            raise self.sql_error
        return to_sql(self.checked, columns, user=user, now=now)


def compile_expression(
    text: str,
    definition: Any,
    objects: Mapping[str, Any] | None = None,
    *,
    allow_old: bool = False,
) -> CompiledExpression:
    """``text`` checked against ``definition`` (and the ``objects`` it looks up), compiled.

    Raises ``ExpressionError`` (message, offset, line, column) for a syntax or type error.
    """
    checked = check(text, definition, objects, allow_old=allow_old)
    return CompiledExpression(checked, python_function(checked), sql_problem(checked))


class ExpressionCache:
    """Compiled expressions by (text, definition key, allow_old), least recently used out.

    The key names a definition version (e.g. ``(object name, version, metadata revision)``),
    so a new version compiles afresh and the old one ages out. Thread-safe.
    """

    def __init__(self, maxsize: int = defaults.EXPRESSION_CACHE_SIZE) -> None:
        """An empty cache holding at most ``maxsize`` compiled expressions."""
        self.maxsize = maxsize
        self._items: OrderedDict[Hashable, CompiledExpression] = OrderedDict()
        self._lock = Lock()

    def get(
        self,
        text: str,
        key: Hashable,
        definition: Any,
        objects: Mapping[str, Any] | None = None,
        *,
        allow_old: bool = False,
    ) -> CompiledExpression:
        """The compiled ``text`` for the definition version ``key``, compiled on first use."""
        cache_key = (text, key, allow_old)
        with self._lock:
            found = self._items.get(cache_key)
            if found is not None:
                self._items.move_to_end(cache_key)
                return found
        compiled = compile_expression(text, definition, objects, allow_old=allow_old)
        with self._lock:
            self._items[cache_key] = compiled
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
        return compiled

    def __len__(self) -> int:
        """How many compiled expressions it holds."""
        return len(self._items)


CACHE = ExpressionCache()


def compiled(
    text: str,
    key: Hashable,
    definition: Any,
    objects: Mapping[str, Any] | None = None,
    *,
    allow_old: bool = False,
) -> CompiledExpression:
    """``compile_expression`` through the process's cache, keyed by definition version."""
    return CACHE.get(text, key, definition, objects, allow_old=allow_old)


__all__ = [
    "BOOLEAN",
    "CACHE",
    "DATE",
    "DATETIME",
    "DECIMAL",
    "FUNCTIONS",
    "INTEGER",
    "LIST",
    "NULL",
    "TEXT",
    "Checked",
    "CompiledExpression",
    "ExpressionCache",
    "ExpressionError",
    "check",
    "compile_expression",
    "compiled",
    "parse",
    "to_decimal",
]
