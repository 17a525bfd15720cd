"""The SQLAlchemy form gives what the Python form gives, on real SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from trellis.platform.expressions import ExpressionError, compile_expression
from trellis.platform.expressions.python import to_decimal

from .test_expressions import OBJECTS, ORDER

NOW = dt.datetime(2026, 12, 2, 21, 30, tzinfo=dt.UTC)
USER = {"id": 7, "roles": ["submitted", "finance"], "partner": None}

metadata = sa.MetaData()
dealers = sa.Table(
    "expr_dealers",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("name", sa.String(100)),
    sa.Column("credit_limit", sa.Numeric(20, 2)),
)
orders = sa.Table(
    "expr_orders",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("dealer", sa.BigInteger),
    sa.Column("status", sa.String(100)),
    sa.Column("notes", sa.Text),
    sa.Column("count", sa.BigInteger),
    sa.Column("total_amount", sa.Numeric(20, 3)),
    sa.Column("weight", sa.Double),
    sa.Column("order_date", sa.Date),
    sa.Column("rush", sa.Boolean),
)
DEALERS = [{"id": 1, "name": "East", "credit_limit": Decimal("1000.00")}]
ROWS = [
    {
        "id": 1,
        "dealer": 1,
        "status": "submitted",
        "notes": "Rush order",
        "count": 3,
        "total_amount": Decimal("1234.565"),
        "weight": 12.5,
        "order_date": dt.date(2026, 2, 27),
        "rush": True,
    },
    {"id": 2},  # every field NULL
    {
        "id": 3,
        "dealer": 1,
        "status": "draft",
        "notes": "",
        "count": 0,
        "total_amount": Decimal("-0.100"),
        "weight": 0.1,
        "order_date": dt.date(2024, 12, 31),
        "rush": False,
    },
]
CASES = [
    "count * 2 + 1",
    "total_amount * count",
    "total_amount / count",
    "count / 4",
    "1 / 0",
    "0.1 + 0.2",
    "0.1 + 0.2 = 0.3",
    "weight * 3",
    "-total_amount",
    "total_amount >= 100 AND rush",
    "NOT rush",
    "rush OR count > 2",
    "count = 1 AND FALSE",
    "status IN ('draft', 'submitted')",
    "status NOT IN ('draft')",
    "count IN (3, NULL)",
    "count = NULL",
    "count != 2.5",
    "total_amount = 1234.565",
    "IF(count > 2, 'many', 'few')",
    "CASE WHEN count > 5 THEN 1 WHEN count > 1 THEN 2.5 ELSE 3 END",
    "CASE WHEN count > 5 THEN 1 END",
    "COALESCE(count, 0) + 1",
    "COALESCE(total_amount, count, 0)",
    "ISBLANK(notes)",
    "ISBLANK(count)",
    "LEN(notes)",
    "UPPER(status)",
    "LOWER(notes)",
    "CONCAT(status, '-', count)",
    "CONTAINS(notes, 'ush')",
    "ROUND(total_amount, 1)",
    "ROUND(total_amount / 3, 2)",
    "ROUND(count)",
    "ABS(total_amount - 500)",
    "ABS(count - 5)",
    "MAX(count, 2)",
    "MIN(total_amount, dealer.credit_limit)",
    "MAX(order_date, DATE_ADD(TODAY(), -400))",
    "DATE_ADD(order_date, 3)",
    "DATE_ADD(order_date, -60)",
    "DAYS_BETWEEN(order_date, TODAY())",
    "YEAR(order_date) * 100 + MONTH(order_date)",
    "order_date < TODAY()",
    "dealer.credit_limit - total_amount > 0",
    "CONCAT(dealer.name, ':', status)",
    "$user.id = 7",
    "CONTAINS($user.roles, status)",
    "ISBLANK($user.partner)",
    "ISBLANK($user.roles)",
    "total_amount * (1 - COALESCE(weight, 0) / 100)",
    "NULL",
]


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'expr.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    engine = sa.create_engine(url)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(dealers.insert(), DEALERS)
        for row in ROWS:
            connection.execute(orders.insert(), row)
    yield engine
    metadata.drop_all(engine)
    engine.dispose()


COLUMNS = {
    **{name: orders.c[name] for name in ORDER["properties"] if name in orders.c},
    "dealer.credit_limit": dealers.c.credit_limit,
    "dealer.name": dealers.c.name,
}


def resolve(obj: str, record_id: int, field: str) -> Any:
    return next(d[field] for d in DEALERS if d["id"] == record_id)


def same(python: Any, sql: Any, exact: bool) -> bool:
    if python is None or sql is None:
        return python is None and sql is None
    if isinstance(python, Decimal | int) and not isinstance(python, bool):
        if exact:
            return Decimal(python) == to_decimal(sql)
        return abs(Decimal(python) - to_decimal(sql)) < Decimal("0.000001")  # type: ignore[operator]
    return bool(type(python) is type(sql) and python == sql)


@pytest.mark.parametrize("text", CASES)
def test_sql_form_gives_the_python_value(engine: sa.Engine, text: str) -> None:
    compiled = compile_expression(text, ORDER, OBJECTS)
    assert compiled.has_sql
    element = compiled.to_sql(COLUMNS, user=USER, now=NOW)
    statement = (
        sa.select(orders.c.id, element.label("value"))
        .select_from(orders.outerjoin(dealers, dealers.c.id == orders.c.dealer))
        .order_by(orders.c.id)
    )
    with engine.connect() as connection:
        results = connection.execute(statement).all()
    exact = engine.dialect.name == "postgresql"  # SQLite has no decimal type: REAL
    assert len(results) == len(ROWS)
    for row, (row_id, value) in zip(ROWS, results, strict=True):
        values = {k: v for k, v in row.items() if k != "id"}
        expected = compiled(values, resolve, USER, None, NOW)
        assert same(expected, value, exact), (row_id, expected, value)


def test_postgresql_decimal_is_exact(engine: sa.Engine) -> None:
    compiled = compile_expression("total_amount * 3 + 0.1 + 0.2", ORDER, OBJECTS)
    with engine.connect() as connection:
        value = connection.execute(
            sa.select(compiled.to_sql(COLUMNS)).where(orders.c.id == 1)
        ).scalar()
    assert isinstance(value, Decimal)
    if engine.dialect.name == "postgresql":
        assert value == Decimal("3703.995")


def test_sql_form_filters(engine: sa.Engine) -> None:
    compiled = compile_expression("total_amount > 0 AND CONTAINS($user.roles, status)", ORDER)
    where = compiled.to_sql(COLUMNS, user=USER)
    with engine.connect() as connection:
        ids = connection.execute(sa.select(orders.c.id).where(where)).scalars().all()
    assert ids == [1]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("$old.status = status", "$old has no SQL form"),
        ("CONTAINS(tags, 'vip')", "a list of values has no SQL form"),
        ("YEAR(submitted_at)", "YEAR of a date-time has no SQL form"),
    ],
)
def test_without_sql_form(text: str, says: str) -> None:
    definition = {
        **ORDER,
        "properties": {**ORDER["properties"], "tags": {"x-type": "multipicklist"}},
    }
    compiled = compile_expression(text, definition, OBJECTS, allow_old=True)
    assert not compiled.has_sql
    with pytest.raises(ExpressionError) as caught:
        compiled.to_sql(COLUMNS)
    assert says in str(caught.value.message)
    assert compiled.sql_error is not None and compiled.sql_error.offset >= 0


def test_a_missing_column_is_named() -> None:
    compiled = compile_expression("count + 1", ORDER, OBJECTS)
    with pytest.raises(KeyError, match="count"):
        compiled.to_sql({})
