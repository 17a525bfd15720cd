"""The expression language: syntax, types, every function, NULLs, Decimal, hostile input."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, localcontext
from typing import Any

import pytest

from trellis.platform.expressions import (
    ExpressionCache,
    ExpressionError,
    check,
    compile_expression,
)
from trellis.platform.messages import tell

DEALER = {
    "x-name": "dealer",
    "properties": {
        "name": {"x-type": "text"},
        "credit_limit": {"x-type": "currency"},
        "parent": {"x-type": "lookup", "x-target": "dealer"},
        "tags": {"x-type": "multipicklist"},
        "extra": {"x-type": "json"},
    },
}
ORDER = {
    "x-name": "sales_order",
    "properties": {
        "dealer": {"x-type": "lookup", "x-target": "dealer"},
        "status": {"x-type": "picklist"},
        "order_date": {"x-type": "date"},
        "submitted_at": {"x-type": "datetime"},
        "total_amount": {"x-type": "currency"},
        "rush": {"x-type": "boolean"},
        "notes": {"x-type": "textarea"},
        "count": {"x-type": "integer"},
        "weight": {"x-type": "number"},
    },
}
LINE = {
    "x-name": "order_line",
    "properties": {
        "order": {"x-type": "master_detail", "x-target": "sales_order"},
        "quantity": {"x-type": "integer"},
        "unit_price": {"x-type": "currency"},
        "discount_percent": {"x-type": "percent"},
    },
}
OBJECTS = {"dealer": DEALER, "sales_order": ORDER, "order_line": LINE}
NOW = dt.datetime(2026, 12, 2, 21, 30, tzinfo=dt.UTC)


def run(text: str, values: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    compiled = compile_expression(text, ORDER, OBJECTS, allow_old=True)
    return compiled(values or {}, now=NOW, **kwargs)


def error(text: str, definition: dict[str, Any] = ORDER, **kwargs: Any) -> ExpressionError:
    with pytest.raises(ExpressionError) as caught:
        compile_expression(text, definition, OBJECTS, **kwargs)
    return caught.value


# --- literals, operators, precedence --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 - 4 - 3", 3),
        ("2 * 3 - 4 / 2", Decimal(4)),
        ("-2 * 3", -6),
        ("- (2 + 3)", -5),
        ("7 / 2", Decimal("3.5")),
        ("1 / 3", Decimal("0.3333333333")),
        ("2 / 3", Decimal("0.6666666667")),
        ("0.1 + 0.2", Decimal("0.3")),
        ("0.1 + 0.2 = 0.3", True),
        ("1 = 1.0", True),
        ("1 < 2 AND 2 < 3", True),
        ("TRUE OR FALSE AND FALSE", True),
        ("(TRUE OR FALSE) AND FALSE", False),
        ("NOT TRUE OR TRUE", True),
        ("NOT (TRUE OR TRUE)", False),
        ("1 + 1 = 2 AND NOT 3 < 2", True),
        ("'a' < 'b'", True),
        ("'it''s'", "it's"),
        ("1 != 2", True),
        ("1 <> 1", False),
        ("2 >= 2 AND 2 <= 2 AND 3 > 2", True),
        ("2 IN (1, 2, 3)", True),
        ("4 IN (1, 2, 3)", False),
        ("4 NOT IN (1, 2, 3)", True),
        ("'x' IN ('x')", True),
        ("true", True),
        ("null", None),
    ],
)
def test_operators_and_precedence(text: str, expected: Any) -> None:
    result = run(text)
    assert result == expected
    assert type(result) is type(expected)


def test_decimal_is_exact_and_never_float() -> None:
    total = run("0.1 + 0.2 + 0.3 - 0.6")
    assert total == Decimal(0) and isinstance(total, Decimal)
    # A float stored in a number field becomes its shortest decimal: 0.1, not 0.1000000000000000055…
    assert run("weight * 3", {"weight": 0.1}) == Decimal("0.3")
    assert run("total_amount * 3", {"total_amount": Decimal("33.33")}) == Decimal("99.99")
    big = "99999999999999999999.99"
    with localcontext(prec=100):
        assert run(f"{big} * {big}") == Decimal(big) * Decimal(big)  # 44 digits, exact


def test_integer_arithmetic_stays_whole() -> None:
    assert run("count * 2 + 1", {"count": 4}) == 9
    assert compile_expression("count * 2", ORDER, OBJECTS).type == "integer"
    assert compile_expression("count / 2", ORDER, OBJECTS).type == "decimal"


# --- NULL -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("NULL + 1", None),
        ("count * 2", None),
        ("count = 1", None),
        ("count != 1", None),
        ("NOT (count = 1)", None),
        ("count = 1 AND FALSE", False),
        ("count = 1 AND TRUE", None),
        ("count = 1 OR TRUE", True),
        ("count = 1 OR FALSE", None),
        ("count IN (1, 2)", None),
        ("1 IN (2, NULL)", None),
        ("1 IN (1, NULL)", True),
        ("IF(count = 1, 'yes', 'no')", "no"),
        ("CASE WHEN count = 1 THEN 'a' END", None),
        ("COALESCE(count, 7)", 7),
        ("ISBLANK(count)", True),
        ("ISBLANK(notes)", True),
        ("LEN(notes)", None),
        ("CONCAT('a', notes, 'b')", "ab"),
        ("MAX(count, 3)", 3),
        ("MIN(count, NULL)", None),
        ("1 / 0", None),
        ("total_amount / 0", None),
        ("ROUND(total_amount, 2)", None),
        ("DATE_ADD(order_date, 1)", None),
    ],
)
def test_null_rules(text: str, expected: Any) -> None:
    assert run(text, {}) == expected


# --- every function -------------------------------------------------------------------------

VALUES = {
    "status": "submitted",
    "notes": "Rush order",
    "count": 3,
    "total_amount": Decimal("1234.565"),
    "order_date": dt.date(2026, 2, 27),
    "submitted_at": dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC),
    "rush": True,
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("IF(rush, 'fast', 'slow')", "fast"),
        ("IF(count > 5, 1, 2.5)", Decimal("2.5")),
        ("CASE WHEN count > 5 THEN 'many' WHEN count > 1 THEN 'some' ELSE 'few' END", "some"),
        ("CASE WHEN count > 5 THEN 'many' END", None),
        ("ISBLANK(notes)", False),
        ("ISBLANK('')", True),
        ("COALESCE(NULL, NULL, count)", 3),
        ("COALESCE(NULL, 1.5, count)", Decimal("1.5")),
        ("LEN(notes)", 10),
        ("LEN('价格')", 2),
        ("UPPER(notes)", "RUSH ORDER"),
        ("LOWER(notes)", "rush order"),
        ("CONCAT(status, '-', count)", "submitted-3"),
        ("CONTAINS(notes, 'order')", True),
        ("CONTAINS(notes, 'Order')", False),
        ("ROUND(total_amount, 2)", Decimal("1234.57")),
        ("ROUND(total_amount)", Decimal("1235")),
        ("ROUND(-2.5)", Decimal("-3")),
        ("ROUND(count, 2)", 3),
        ("ABS(-total_amount)", Decimal("1234.565")),
        ("ABS(-3)", 3),
        ("MIN(count, 2, 7)", 2),
        ("MAX(count, 2.5)", Decimal("3")),
        ("MAX('a', status)", "submitted"),
        ("MIN(order_date, TODAY())", dt.date(2026, 2, 27)),
        ("TODAY()", dt.date(2026, 12, 2)),
        ("NOW()", NOW),
        ("DATE_ADD(order_date, 2)", dt.date(2026, 3, 1)),
        ("DATE_ADD(order_date, -27)", dt.date(2026, 1, 31)),
        ("DATE_ADD(submitted_at, 1)", dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)),
        ("DAYS_BETWEEN(order_date, TODAY())", 278),
        ("DAYS_BETWEEN(TODAY(), order_date)", -278),
        ("DAYS_BETWEEN(submitted_at, NOW())", 276),
        ("YEAR(order_date)", 2026),
        ("MONTH(order_date)", 2),
        ("MONTH(submitted_at)", 3),
        ("order_date < TODAY()", True),
        ("submitted_at < NOW()", True),
        ("status IN ('draft', 'submitted')", True),
    ],
)
def test_functions(text: str, expected: Any) -> None:
    assert run(text, VALUES) == expected


def test_values_as_json_strings_are_read() -> None:
    # A date and a date-time may come as their ISO text (JSON), an amount as a string.
    values = {"order_date": "2026-02-27", "submitted_at": "2026-03-01T08:00:00Z"}
    assert run("YEAR(order_date) + MONTH(submitted_at)", values) == 2029
    assert run("total_amount + 1", {"total_amount": "0.10"}) == Decimal("1.10")


# --- paths, $user, $old ---------------------------------------------------------------------


def resolver_of(rows: dict[tuple[str, int], dict[str, Any]]) -> Any:
    calls: list[tuple[str, int, str]] = []

    def resolve(obj: str, record_id: int, field: str) -> Any:
        calls.append((obj, record_id, field))
        return rows.get((obj, record_id), {}).get(field)

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


def test_paths_through_lookups() -> None:
    rows = {
        ("sales_order", 10): {"dealer": 2},
        ("dealer", 2): {"credit_limit": Decimal("5000.00"), "parent": 1, "name": "East"},
        ("dealer", 1): {"name": "HQ"},
    }
    resolve = resolver_of(rows)
    compiled = compile_expression(
        "quantity * unit_price <= order.dealer.credit_limit", LINE, OBJECTS
    )
    assert compiled.paths == {"quantity", "unit_price", "order.dealer.credit_limit"}
    values = {"order": 10, "quantity": 2, "unit_price": Decimal("2500.00")}
    assert compiled(values, resolve) is True
    assert resolve.calls == [("sales_order", 10, "dealer"), ("dealer", 2, "credit_limit")]
    assert compiled({**values, "quantity": 3}, resolve) is False
    assert compiled({**values, "order": None}, resolve) is None  # no order: NULL
    # A value the caller read already (a join) is used as it is.
    assert compiled({**values, "order.dealer.credit_limit": Decimal(1)}, resolve) is False
    two = compile_expression("CONCAT(dealer.name, '/', dealer.parent.name)", ORDER, OBJECTS)
    assert two({"dealer": 2}, resolve) == "East/HQ"
    assert two.paths == {"dealer.name", "dealer.parent.name"}


def test_user_and_old() -> None:
    user = {"id": 7, "roles": ["finance", "hq_admin"], "partner": None}
    assert run("$user.id = 7 AND CONTAINS($user.roles, 'finance')", user=user) is True
    assert run("ISBLANK($user.partner)", user=user) is True
    assert run("CONTAINS($user.roles, 'dealer_admin')", user=user) is False
    assert run("$user.id", user=None) is None
    old = {"status": "draft", "total_amount": Decimal(10)}
    expression = "$old.status = 'draft' AND status != $old.status"
    assert run(expression, {"status": "submitted"}, old=old) is True
    assert run("total_amount - $old.total_amount", {"total_amount": 12}, old=old) == 2
    assert run("$old.status = 'draft'", old=None) is None  # a create has no old values
    checked = check("$old.status = status", ORDER, OBJECTS, allow_old=True)
    assert checked.old_paths == {"status"} and checked.paths == {"status"}


def test_system_fields_are_read() -> None:
    created = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    values = {"id": 4, "created_at": created, "owner_id": 7}
    assert run("DAYS_BETWEEN(created_at, NOW()) > 30 AND id = 4", values) is True
    assert run("owner_id = $user.id", values, user={"id": 7}) is True
    assert "not a lookup" in str(error("created_by.name").message)


def test_multipicklist_reads_as_a_list() -> None:
    expression = compile_expression("CONTAINS(tags, 'vip') OR ISBLANK(tags)", DEALER, OBJECTS)
    assert expression({"tags": ["vip", "east"]}) is True
    assert expression({"tags": ["east"]}) is False
    assert expression({"tags": []}) is True


# --- errors, with their positions -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "offset", "says"),
    [
        ("statuss = 'x'", 0, "'statuss' is not a field of sales_order"),
        ("dealer.nmae", 0, "'nmae' is not a field of dealer"),
        ("status.name", 0, "'status' is not a lookup"),
        ("dealer.parent.parent.name", 21, "at most 2 lookups"),
        ("dealer.extra", 0, "json field"),
        ("count + 'x'", 8, "+ needs a number, not text"),
        ("status = 1", 7, "cannot compare text with a whole number"),
        ("order_date = NOW()", 11, "cannot compare a date with a date-time"),
        ("rush < TRUE", 5, "only be compared with = or !="),
        ("1 +", 3, "expected a value"),
        ("(1 + 2", 6, "expected ')'"),
        ("1 2", 2, "expected an operator or the end"),
        ("1 < 2 < 3", 6, "use parentheses"),
        ("FOO(1)", 0, "unknown function FOO"),
        ("LEN()", 0, "LEN takes 1 arguments, not 0"),
        ("IF(TRUE, 1)", 0, "IF takes 3 arguments, not 2"),
        ("ROUND(1, 2, 3)", 0, "ROUND takes 1 to 2 arguments, not 3"),
        ("COALESCE()", 0, "COALESCE takes at least 1 arguments"),
        ("ROUND(1.5, count)", 11, "ROUND's digits"),
        ("ROUND(1.5, 11)", 11, "ROUND's digits"),
        ("IF(count, 1, 2)", 3, "IF needs true or false"),
        ("IF(TRUE, 1, 'a')", 12, "do not mix"),
        ("CASE WHEN TRUE THEN 1 ELSE 'a' END", 27, "do not mix"),
        ("CASE WHEN TRUE 1 END", 15, "expected THEN"),
        ("CASE TRUE THEN 1 END", 5, "WHEN after CASE"),
        ("CONTAINS(count, 'a')", 9, "CONTAINS needs"),
        ("DATE_ADD(order_date, 1.5)", 21, "DATE_ADD needs a whole number"),
        ("YEAR(status)", 5, "YEAR needs"),
        ("NOT count", 4, "NOT needs true or false"),
        ("'abc", 0, "unterminated text"),
        ("status = 'abc", 9, "unterminated text"),
        ("1 # 2", 2, "unexpected character '#'"),
        ("$me.id", 0, "unknown variable '$me'"),
        ("$user.email", 0, "$user has id, roles and partner"),
        ("$old.status", 0, "$old can only be used in update rules"),
        ("", 0, "the expression is empty"),
        ("dealer.", 7, "a field name after '.'"),
        ("2 IN 3", 5, "'(' after IN"),
    ],
)
def test_errors_have_positions(text: str, offset: int, says: str) -> None:
    problem = error(text)
    assert says in str(problem.message)
    assert problem.offset == offset
    assert problem.as_detail()["offset"] == offset


def test_old_reads_own_fields_only() -> None:
    assert "own fields only" in str(error("$old.dealer.name", allow_old=True).message)


def test_line_and_column() -> None:
    problem = error("count > 1\n  AND statuz = 'x'")
    assert (problem.offset, problem.line, problem.column) == (16, 2, 7)
    assert str(problem).endswith("(line 2, column 7)")


def test_errors_told_in_chinese() -> None:
    from trellis import create_app

    app = create_app({"TESTING": True, "SECRET_KEY": "x", "DATABASE_URL": "sqlite://"})
    from flask_babel import force_locale, gettext

    problem = error("count + 'x'")
    with app.test_request_context(), force_locale("zh_Hans_CN"):
        told = tell(problem.message, gettext)
    assert told != str(problem.message)
    assert "+" in told


# --- hostile input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("(" * 10_000 + "1" + ")" * 10_000, "longer than 4000"),
        ("(" * 40 + "1" + ")" * 40, "nested too deeply"),
        ("-" * 40 + "1", "nested too deeply"),
        ("NOT " * 40 + "TRUE", "nested too deeply"),
        ("ABS(" * 40 + "1" + ")" * 40, "nested too deeply"),
        ("'" + "x" * 1_000_000 + "'", "longer than 4000"),
        ("'" + "x" * 1_001 + "'", "text value is longer than 1000"),
        ("1" * 39, "at most 38 digits"),
        ("+".join(["1"] * 300), "too large"),
        ("'" * 3001, "unterminated"),
        ("\x00", "unexpected character"),
    ],
)
def test_hostile_input_is_refused_quickly(text: str, says: str) -> None:
    """Refused by the bounds (length, depth, digits, nodes) before any work grows with the
    input; how fast is bench/expressions.py's business, not a timed test's."""
    problem = error(text)
    assert says in str(problem.message)
    assert 0 <= problem.offset <= 4000


def test_not_text_is_refused() -> None:
    with pytest.raises(ExpressionError):
        check(123, ORDER, OBJECTS)  # type: ignore[arg-type]


def test_longest_allowed_sum_compiles_and_runs() -> None:
    text = " + ".join(["count"] * 128)
    assert run(text, {"count": 1}) == 128


# --- the cache ------------------------------------------------------------------------------


def test_cache_per_definition_version() -> None:
    cache = ExpressionCache(maxsize=2)
    first = cache.get("count + 1", ("sales_order", 1), ORDER, OBJECTS)
    assert cache.get("count + 1", ("sales_order", 1), ORDER, OBJECTS) is first
    renamed = {**ORDER, "properties": {**ORDER["properties"], "qty": {"x-type": "integer"}}}
    second = cache.get("count + 1", ("sales_order", 2), renamed, OBJECTS)
    assert second is not first
    cache.get("qty", ("sales_order", 2), renamed, OBJECTS)
    assert len(cache) == 2
    assert cache.get("count + 1", ("sales_order", 1), ORDER, OBJECTS) is not first  # aged out
    with pytest.raises(ExpressionError):
        cache.get("qty", ("sales_order", 1), ORDER, OBJECTS)


def test_the_package_is_pure() -> None:
    # No Flask, no session, no runtime: only metadata, messages, defaults and SQLAlchemy Core.
    from pathlib import Path

    import trellis.platform.expressions as package

    for source in Path(package.__file__).parent.glob("*.py"):
        imports = [
            line.split()[1]
            for line in source.read_text().splitlines()
            if line.startswith(("import ", "from "))
        ]
        for name in imports:
            assert not name.startswith(("flask", "werkzeug", "trellis.platform.runtime")), source
            assert not name.startswith(("sqlalchemy.orm", "trellis.extensions")), source


def test_the_channel_pack_formulas_check_against_its_definitions() -> None:
    import json
    from pathlib import Path

    from trellis.platform.metadata import load_definition

    folder = Path(__file__).resolve().parents[3] / "trellis/apps/channel_pack/objects"
    documents = {}
    for path in folder.glob("*.json"):
        document = json.loads(path.read_text())
        documents[document["x-name"]] = document
    line = load_definition(documents["order_line"])  # an ObjectDefinition works too
    amount = compile_expression(
        "quantity * unit_price * (1 - COALESCE(discount_percent, 0) / 100)", line, documents
    )
    assert amount.type == "decimal"
    values = {"quantity": 5, "unit_price": Decimal("3999.00"), "discount_percent": 10}
    assert amount(values) == Decimal("17995.5")
    credit = compile_expression("sales_order.dealer.credit_limit > 0", line, documents)
    assert credit.paths == {"sales_order.dealer.credit_limit"}
