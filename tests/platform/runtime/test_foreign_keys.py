"""Lookups and master-detail links are real foreign keys, seen in the database catalog.

Every test runs on SQLite and PostgreSQL (the ``db_url`` fixture). The catalog is read
the database's own way: ``pg_constraint`` and ``information_schema.columns`` on
PostgreSQL, ``PRAGMA foreign_key_list`` and ``PRAGMA table_info`` on SQLite.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.conftest import Api
from tests.factories import dealer_definition, definition, field, order_definitions
from tests.platform.runtime.helpers import (
    create,
    define,
    detail_message,
    error_of,
    index_names,
    raw_rows,
    redefine,
)
from trellis.exceptions import IncompatibleChange
from trellis.extensions import Database
from trellis.platform.runtime.bootstrap import upgrade_object_constraints
from trellis.platform.runtime.packs import BUILTIN_PACKS, install_pack
from trellis.platform.runtime.registry import MetaRegistry

PG_RULES = {"r": "RESTRICT", "n": "SET NULL", "c": "CASCADE", "a": "NO ACTION"}
LINE_FK = {"sales_order": ("obj_sales_order", "CASCADE")}
ORDER_FK = {"dealer": ("obj_dealer", "RESTRICT")}
DEALER_FK = {"parent": ("obj_dealer", "RESTRICT")}


# --- reading the catalog ---------------------------------------------------------------


def foreign_keys(database: Database, table: str) -> dict[str, tuple[str, str]]:
    """``{column: (target table, ON DELETE rule)}`` as the database itself reports it."""
    with database.engine.connect() as connection:
        if database.dialect == "sqlite":
            rows = connection.exec_driver_sql(f"PRAGMA foreign_key_list({table})").all()
            return {row[3]: (row[2], row[6]) for row in rows}
        rows = connection.execute(
            sa.text(
                "SELECT a.attname, t.relname, c.confdeltype FROM pg_constraint c "
                "JOIN pg_class s ON s.oid = c.conrelid JOIN pg_class t ON t.oid = c.confrelid "
                "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
                "WHERE c.contype = 'f' AND s.relname = :table"
            ),
            {"table": table},
        ).all()
        return {row[0]: (row[1], PG_RULES[row[2]]) for row in rows}


def constraint_names(database: Database, table: str) -> set[str]:
    """The names of the table's foreign keys (PostgreSQL; SQLite keeps them in its DDL text)."""
    with database.engine.connect() as connection:
        if database.dialect == "sqlite":
            sql = connection.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = ?", (table,)
            ).scalar()
            return set(re.findall(r'CONSTRAINT "?(fk_\w+)"? ', str(sql)))
        rows = connection.execute(
            sa.text(
                "SELECT c.conname FROM pg_constraint c JOIN pg_class s ON s.oid = c.conrelid "
                "WHERE c.contype = 'f' AND s.relname = :table"
            ),
            {"table": table},
        )
        return {row[0] for row in rows}


def nullable(database: Database, table: str, column: str) -> bool:
    with database.engine.connect() as connection:
        if database.dialect == "sqlite":
            rows = connection.exec_driver_sql(f"PRAGMA table_info({table})").all()
            return not next(row[3] for row in rows if row[1] == column)
        answer = connection.execute(
            sa.text(
                "SELECT is_nullable FROM information_schema.columns "
                "WHERE table_name = :table AND column_name = :column"
            ),
            {"table": table, "column": column},
        ).scalar_one()
        return bool(answer == "YES")


def execute(database: Database, sql: str, **params: Any) -> None:
    with database.engine.begin() as connection:
        connection.execute(sa.text(sql), params)


def refused(database: Database, sql: str, **params: Any) -> bool:
    try:
        execute(database, sql, **params)
    except sa.exc.IntegrityError:
        return True
    return False


# --- objects --------------------------------------------------------------------------


def visit_definition(**extra: dict[str, Any]) -> dict[str, Any]:
    """A visit to a dealer that survives the dealer's deletion (``set_null``)."""
    dealer = field("lookup", "Dealer", **{"x-target": "dealer", "x-on-delete": "set_null"})
    return definition("visit", {"note": field("text"), "dealer": dealer, **extra})


def define_orders(api: Api) -> None:
    order, line = order_definitions()
    define(api, dealer_definition())
    define(api, order)
    define(api, line)


def order_with_lines(api: Api, lines: int = 2) -> tuple[int, int, list[int]]:
    """A dealer, one order of it and ``lines`` lines; their ids."""
    dealer = create(api, "dealer", {"name": f"D{os.urandom(3).hex()}"})["id"]
    order = create(api, "sales_order", {"dealer": dealer})["id"]
    made = [
        create(api, "order_line", {"sales_order": order, "quantity": n + 1})["id"]
        for n in range(lines)
    ]
    return dealer, order, made


def line_without(name: str) -> dict[str, Any]:
    """The order line definition without the field ``name`` (and not requiring it)."""
    _, line = order_definitions()
    del line["properties"][name]
    line["required"] = [r for r in line["required"] if r != name]
    return line


# --- creating -------------------------------------------------------------------------


def test_creating_objects_creates_their_foreign_keys(api: Api, database: Database) -> None:
    define_orders(api)
    define(api, visit_definition())
    assert foreign_keys(database, "obj_dealer") == DEALER_FK  # a self-lookup
    assert foreign_keys(database, "obj_sales_order") == ORDER_FK
    assert foreign_keys(database, "obj_order_line") == LINE_FK
    assert foreign_keys(database, "obj_visit") == {"dealer": ("obj_dealer", "SET NULL")}
    assert constraint_names(database, "obj_order_line") == {"fk_obj_order_line_sales_order"}
    assert constraint_names(database, "obj_dealer") == {"fk_obj_dealer_parent"}
    assert not nullable(database, "obj_order_line", "sales_order")
    assert nullable(database, "obj_sales_order", "dealer") and nullable(
        database, "obj_dealer", "parent"
    )


def test_the_database_refuses_orphans_and_applies_on_delete(api: Api, database: Database) -> None:
    define_orders(api)
    define(api, visit_definition())
    dealer, order, lines = order_with_lines(api)
    visit = create(api, "visit", {"note": "hello", "dealer": dealer})["id"]
    now = "2024-01-01 00:00:00"
    insert_line = (
        "INSERT INTO obj_order_line (version, created_at, updated_at, sales_order, quantity) "
        "VALUES (1, :now, :now, :order, 1)"
    )
    assert refused(database, insert_line, now=now, order=order + 1000)  # no such order
    assert refused(database, insert_line, now=now, order=None)  # a line needs its order
    assert refused(
        database, "UPDATE obj_dealer SET parent = :p WHERE id = :d", p=dealer + 1000, d=dealer
    )
    # Hard deletes (the platform itself only soft-deletes): RESTRICT, CASCADE, SET NULL.
    # an order points at it
    assert refused(database, "DELETE FROM obj_dealer WHERE id = :d", d=dealer)
    execute(database, "DELETE FROM obj_sales_order WHERE id = :o", o=order)
    assert [r for r in raw_rows(database, "obj_order_line") if r["id"] in lines] == []
    execute(database, "DELETE FROM obj_dealer WHERE id = :d", d=dealer)
    assert next(r for r in raw_rows(database, "obj_visit") if r["id"] == visit)["dealer"] is None


def test_soft_delete_does_not_touch_the_foreign_keys(api: Api, database: Database) -> None:
    define_orders(api)
    _, order, lines = order_with_lines(api)
    assert api.delete(f"/records/sales_order/{order}").status_code == 204
    rows = {r["id"]: r for r in raw_rows(database, "obj_order_line")}
    assert all(rows[i]["sales_order"] == order and rows[i]["deleted_at"] for i in lines)


# --- evolving -------------------------------------------------------------------------


def test_added_fields_get_their_foreign_keys(api: Api, database: Database) -> None:
    define_orders(api)
    order_with_lines(api)
    order, _ = order_definitions()
    order["properties"]["referrer"] = field(
        "lookup", "Referrer", **{"x-target": "dealer", "x-on-delete": "set_null"}
    )
    redefine(api, order)
    assert foreign_keys(database, "obj_sales_order") == {
        **ORDER_FK,
        "referrer": ("obj_dealer", "SET NULL"),
    }
    # A master-detail link on an object without records: NOT NULL and CASCADE.
    define(api, definition("note", {"text": field("text")}))
    link = field("master_detail", **{"x-target": "sales_order", "x-related-name": "notes"})
    redefine(api, definition("note", {"text": field("text"), "master": link}, required=["master"]))
    assert foreign_keys(database, "obj_note") == {"master": ("obj_sales_order", "CASCADE")}
    assert not nullable(database, "obj_note", "master")
    assert "ix_obj_note_master" in index_names(database, "obj_note")


def test_a_master_detail_link_cannot_be_added_to_an_object_with_records(
    api: Api, database: Database
) -> None:
    define_orders(api)
    define(api, definition("note", {"text": field("text")}))
    ids = [create(api, "note", {"text": str(n)})["id"] for n in range(12)]
    link = field("master_detail", **{"x-target": "sales_order", "x-related-name": "notes"})
    document = definition("note", {"text": field("text"), "o": link}, required=["o"])
    response = api.put("/objects/note", document)
    message = detail_message(error_of(response, 422, "incompatible_change"), "o")
    shown = ", ".join(str(i) for i in ids[:10])
    assert "12 existing record(s) would have no master" in message
    assert f"ids {shown} and 2 more" in message
    assert "o" not in {c["name"] for c in sa.inspect(database.engine).get_columns("obj_note")}


def test_a_removed_link_keeps_its_foreign_key_and_a_restore_brings_it_back(
    api: Api, database: Database
) -> None:
    define_orders(api)
    _, order, lines = order_with_lines(api)
    redefine(api, line_without("sales_order"))
    archived = "_archived_v2_sales_order"
    assert foreign_keys(database, "obj_order_line") == {archived: ("obj_sales_order", "CASCADE")}
    assert nullable(database, "obj_order_line", archived)  # new lines cannot fill it
    if database.dialect == "postgresql":
        assert constraint_names(database, "obj_order_line") == {f"fk_obj_order_line_{archived}"}
    _, line = order_definitions()
    redefine(api, line)
    assert foreign_keys(database, "obj_order_line") == LINE_FK
    assert not nullable(database, "obj_order_line", "sales_order")
    assert constraint_names(database, "obj_order_line") == {"fk_obj_order_line_sales_order"}
    assert {
        r["id"]: r["sales_order"] for r in raw_rows(database, "obj_order_line")
    } == dict.fromkeys(lines, order)
    assert create(api, "order_line", {"sales_order": order, "quantity": 5})["id"] > max(lines)


def test_restoring_a_version_restores_the_constraints(api: Api, database: Database) -> None:
    define_orders(api)
    dealer, _, _ = order_with_lines(api)
    child = create(api, "dealer", {"name": "Child", "parent": dealer})["id"]
    without_parent = dealer_definition()
    del without_parent["properties"]["parent"]
    redefine(api, without_parent)
    assert foreign_keys(database, "obj_dealer") == {
        "_archived_v2_parent": ("obj_dealer", "RESTRICT")
    }
    restored = api.post("/objects/dealer/versions/1/restore")
    assert restored.status_code == 200, restored.get_json()
    assert foreign_keys(database, "obj_dealer") == DEALER_FK
    assert constraint_names(database, "obj_dealer") == {"fk_obj_dealer_parent"}
    assert next(r for r in raw_rows(database, "obj_dealer") if r["id"] == child)["parent"] == dealer
    redefine(api, line_without("sales_order"))
    assert api.post("/objects/order_line/versions/1/restore").status_code == 200
    assert foreign_keys(database, "obj_order_line") == LINE_FK
    assert not nullable(database, "obj_order_line", "sales_order")


def test_a_restore_is_refused_when_records_have_no_master(api: Api, database: Database) -> None:
    define_orders(api)
    order_with_lines(api)
    redefine(api, line_without("sales_order"))
    orphan = create(api, "order_line", {"quantity": 3})["id"]
    response = api.post("/objects/order_line/versions/1/restore")
    message = detail_message(error_of(response, 422, "incompatible_change"), "sales_order")
    assert "1 record(s) have no master" in message and f"ids {orphan}" in message
    assert foreign_keys(database, "obj_order_line") == {
        "_archived_v2_sales_order": ("obj_sales_order", "CASCADE")
    }


def test_changing_on_delete_rewrites_the_foreign_key(api: Api, database: Database) -> None:
    define_orders(api)
    dealer = create(api, "dealer", {"name": "Acme"})["id"]
    order_id = create(api, "sales_order", {"dealer": dealer})["id"]
    order, _ = order_definitions()
    order["properties"]["dealer"]["x-on-delete"] = "set_null"
    redefine(api, order)
    assert foreign_keys(database, "obj_sales_order") == {"dealer": ("obj_dealer", "SET NULL")}
    assert constraint_names(database, "obj_sales_order") == {"fk_obj_sales_order_dealer"}
    assert (
        next(r for r in raw_rows(database, "obj_sales_order") if r["id"] == order_id)["dealer"]
        == dealer
    )
    assert {"ix_obj_sales_order_dealer", "ux_obj_sales_order_number"} <= index_names(
        database, "obj_sales_order"
    )


def test_sqlite_refuses_a_rebuild_that_would_fire_on_delete_rules(
    api: Api, database: Database
) -> None:
    """SQLite rebuilds a table to change a foreign key; rows pointing at it would be hit."""
    define_orders(api)
    _, _, lines = order_with_lines(api)
    order, _ = order_definitions()
    order["properties"]["dealer"]["x-on-delete"] = "set_null"
    response = api.put("/objects/sales_order", order)
    if database.dialect == "postgresql":
        assert response.status_code == 200, response.get_json()
        assert foreign_keys(database, "obj_sales_order") == {"dealer": ("obj_dealer", "SET NULL")}
    else:
        message = detail_message(error_of(response, 422, "incompatible_change"), "dealer")
        assert "2 in obj_order_line.sales_order" in message
        assert foreign_keys(database, "obj_sales_order") == ORDER_FK
    assert [r["id"] for r in raw_rows(database, "obj_order_line")] == lines


def test_widening_a_text_of_a_master_keeps_its_children(api: Api, database: Database) -> None:
    define_orders(api)
    order, _ = order_definitions()
    order["properties"]["memo"] = field("text", maxLength=20)
    redefine(api, order)
    _, order_id, lines = order_with_lines(api)
    order["properties"]["memo"] = field("text", maxLength=200)
    redefine(api, order)
    assert {
        r["id"]: r["sales_order"] for r in raw_rows(database, "obj_order_line")
    } == dict.fromkeys(lines, order_id)
    assert foreign_keys(database, "obj_order_line") == LINE_FK
    long_memo = api.patch(f"/records/sales_order/{order_id}", {"version": 1, "memo": "m" * 150})
    assert long_memo.status_code == 200, long_memo.get_json()


def test_the_channel_pack_installs_with_foreign_keys(app: Flask, database: Database) -> None:
    registry: MetaRegistry = app.extensions["trellis.registry"]
    with database.session() as session:
        install_pack(session, registry, BUILTIN_PACKS / "channel_pack", author_id=None)
        session.commit()
    assert foreign_keys(database, "obj_dealer") == DEALER_FK
    assert foreign_keys(database, "obj_sales_order") == ORDER_FK
    assert foreign_keys(database, "obj_order_line") == {
        **LINE_FK,
        "product": ("obj_product", "RESTRICT"),
    }
    assert not nullable(database, "obj_order_line", "sales_order")


# --- instances made before foreign keys ---------------------------------------------------


def strip_constraints(database: Database, tables: list[str]) -> None:
    """Make the tables look like an instance made before foreign keys: raw DDL."""
    with database.engine.connect() as connection:
        if database.dialect == "postgresql":
            with connection.begin():
                for table in tables:
                    for name in constraint_names(database, table):
                        connection.exec_driver_sql(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
                connection.exec_driver_sql(
                    "ALTER TABLE obj_order_line ALTER COLUMN sales_order DROP NOT NULL"
                )
            return
        raw = connection.connection.driver_connection
        assert raw is not None
        raw.execute("PRAGMA foreign_keys=OFF")
        try:
            for table in tables:
                _strip_sqlite(raw, table)
        finally:
            raw.execute("PRAGMA foreign_keys=ON")


def _strip_sqlite(raw: Any, table: str) -> None:
    sql = raw.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    indexes = [
        row[0]
        for row in raw.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND type = 'index' "
            "AND sql IS NOT NULL",
            (table,),
        )
    ]
    bare = re.sub(r",\s*CONSTRAINT \w+ FOREIGN KEY\(\w+\) REFERENCES \w+ \(id\)[A-Z ]*", "", sql)
    bare = bare.replace("sales_order BIGINT NOT NULL", "sales_order BIGINT")
    assert "REFERENCES" not in bare, bare
    # SQLite's own recipe (foreign keys off): new table, copy, drop the old, rename the new.
    raw.execute("BEGIN")
    raw.execute(bare.replace(f"CREATE TABLE {table} ", f"CREATE TABLE new_{table} ", 1))
    raw.execute(f"INSERT INTO new_{table} SELECT * FROM {table}")  # noqa: S608
    raw.execute(f"DROP TABLE {table}")
    raw.execute(f"ALTER TABLE new_{table} RENAME TO {table}")
    for index in indexes:
        raw.execute(index)
    raw.execute("COMMIT")


def test_init_adds_missing_constraints_or_names_the_orphans(
    api: Api, db_url: str, database: Database
) -> None:
    define_orders(api)
    dealer, order, lines = order_with_lines(api)
    tables = ["obj_dealer", "obj_sales_order", "obj_order_line"]
    strip_constraints(database, tables)
    assert all(foreign_keys(database, t) == {} for t in tables)
    assert nullable(database, "obj_order_line", "sales_order")
    execute(
        database,
        "UPDATE obj_order_line SET sales_order = :o WHERE id = :i",
        o=order + 500,
        i=lines[0],
    )
    execute(database, "UPDATE obj_order_line SET sales_order = NULL WHERE id = :i", i=lines[1])
    execute(database, "UPDATE obj_dealer SET parent = :p WHERE id = :d", p=dealer + 700, d=dealer)

    with pytest.raises(IncompatibleChange) as refusal:
        upgrade_object_constraints(database.engine)
    details = {(d["field"], d["message"]) for d in refusal.value.details}
    assert details == {
        (
            "obj_order_line.sales_order",
            f"1 record(s) point at obj_sales_order rows that do not exist: ids {lines[0]}",
        ),
        ("obj_order_line.sales_order", f"1 record(s) have no master: ids {lines[1]}"),
        (
            "obj_dealer.parent",
            f"1 record(s) point at obj_dealer rows that do not exist: ids {dealer}",
        ),
    }
    assert all(foreign_keys(database, t) == {} for t in tables)  # nothing changed
    assert nullable(database, "obj_order_line", "sales_order")

    result = run_init(database, db_url)
    assert result.returncode != 0
    problems = [line for line in result.stderr.splitlines() if line.startswith("  ")]
    assert len(problems) == 3, result.stderr
    assert "  obj_dealer.parent: 1 record(s) point at obj_dealer rows" in result.stderr

    execute(database, "DELETE FROM obj_order_line WHERE id IN (:a, :b)", a=lines[0], b=lines[1])
    execute(database, "UPDATE obj_dealer SET parent = NULL WHERE id = :d", d=dealer)
    result = run_init(database, db_url)
    assert result.returncode == 0, result.stderr
    assert "added obj_order_line.sales_order: foreign key to obj_sales_order" in result.stdout
    assert foreign_keys(database, "obj_dealer") == DEALER_FK
    assert foreign_keys(database, "obj_sales_order") == ORDER_FK
    assert foreign_keys(database, "obj_order_line") == LINE_FK
    assert not nullable(database, "obj_order_line", "sales_order")
    assert "ux_obj_dealer_name" in index_names(database, "obj_dealer")
    assert "ix_obj_order_line_sales_order" in index_names(database, "obj_order_line")
    assert run_init(database, db_url).stdout.count("added") == 0  # idempotent
    # The rebuilt tables still number their rows and fill their defaults.
    made = create(api, "order_line", {"sales_order": order, "quantity": 9})
    assert made["version"] == 1 and raw_rows(database, "obj_order_line")[-1]["id"] == made["id"]


def run_init(database: Database, db_url: str) -> subprocess.CompletedProcess[str]:
    database.engine.dispose()  # let the command have the SQLite file to itself
    env = {**os.environ, "TRELLIS_DATABASE_URL": db_url, "TRELLIS_SECRET_KEY": "test"}
    env.pop("TRELLIS_ADMIN_EMAIL", None)
    env.pop("TRELLIS_ADMIN_PASSWORD", None)
    return subprocess.run(
        [sys.executable, "-m", "trellis", "init"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parents[3],
    )
