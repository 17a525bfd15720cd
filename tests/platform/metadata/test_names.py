"""Identifier rules: the pattern, the length limit and the reserved words (DESIGN §2)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import definition, field
from trellis.platform.metadata.definition import validate_definition
from trellis.platform.metadata.names import (
    MAX_NAME_LENGTH,
    RESERVED_NAMES,
    SYSTEM_COLUMNS,
    is_valid_name,
    name_problem,
    table_name,
)

VALID = ["a", "dealer", "order_line", "x1", "a_1_b", "a" * MAX_NAME_LENGTH, "a" + "_" * 39]
MALFORMED: list[Any] = [
    "",
    "Dealer",
    "dealerX",
    "1dealer",
    "_dealer",
    "dealer-code",
    "dealer code",
    "dealer.code",
    "dealer;drop",
    'a"b',
    "händler",
    "经销商",
    "a" * (MAX_NAME_LENGTH + 1),
    "dealer\n",
    "\ndealer",
    " dealer",
]
SQL_WORDS = ["select", "order", "table", "user", "group", "from", "where", "index", "values"]


@pytest.mark.parametrize("name", VALID)
def test_valid_names(name: str) -> None:
    assert name_problem(name) is None
    assert is_valid_name(name)


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_names_are_refused_with_the_rule(name: str) -> None:
    problem = name_problem(name)
    assert problem is not None and "lowercase" in problem
    assert not is_valid_name(name)


@pytest.mark.parametrize("name", [None, 5, ["dealer"], b"dealer"])
def test_a_name_must_be_a_string(name: Any) -> None:
    assert name_problem(name) == "must be a string"


def test_length_limit_is_forty() -> None:
    assert MAX_NAME_LENGTH == 40
    assert is_valid_name("n" * 40)
    assert not is_valid_name("n" * 41)
    # Prefixed as a table, the longest name still fits PostgreSQL's 63-byte identifiers.
    assert len(table_name("n" * 40)) <= 63


@pytest.mark.parametrize("name", [*SYSTEM_COLUMNS, *SQL_WORDS, "meta", "self", "object"])
def test_reserved_words_are_refused(name: str) -> None:
    assert name in RESERVED_NAMES
    assert name_problem(name) == f"{name!r} is a reserved word"


def test_system_columns_are_all_reserved() -> None:
    expected = {"id", "version", "created_at", "created_by", "updated_at", "updated_by"}
    assert expected | {"owner_id", "deleted_at"} == set(SYSTEM_COLUMNS)
    assert set(SYSTEM_COLUMNS) <= RESERVED_NAMES


def test_words_that_merely_contain_a_reserved_word_are_fine() -> None:
    for name in ("order_date", "selected", "user_name", "ids", "versions", "table_top"):
        assert is_valid_name(name), name


def test_table_name() -> None:
    assert table_name("dealer") == "obj_dealer"
    for bad in ("Dealer", "select", "dealer\n", "a" * 41):
        with pytest.raises(ValueError, match="invalid object name"):
            table_name(bad)


@pytest.mark.parametrize("name", [*MALFORMED, "select", "id", "deleted_at"])
def test_definitions_apply_the_same_rules(name: str) -> None:
    """The meta-schema and validate_definition refuse exactly what name_problem refuses."""
    as_object = validate_definition(definition("x", {"a": field("text")}) | {"x-name": name})
    assert [p.pointer for p in as_object] == ["/x-name"], as_object
    as_field = validate_definition(definition("x", {name: field("text")}))
    escaped = name.replace("~", "~0").replace("/", "~1")
    assert [p.pointer for p in as_field] == [f"/properties/{escaped}"], as_field


@pytest.mark.parametrize("name", VALID)
def test_definitions_accept_valid_names(name: str) -> None:
    assert validate_definition(definition(name, {name: field("text")})) == []
