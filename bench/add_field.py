#!/usr/bin/env python
"""Add field: adding a nullable field through Trellis vs a raw ALTER TABLE, on PostgreSQL.

An object is created through ``POST /api/v1/objects`` on a fresh PostgreSQL
database and its table filled with N rows (1,000,000; ``--quick`` 100,000) by one
``INSERT … SELECT generate_series``. An identical copy of the table (same columns,
keys, defaults and indexes, same rows) is the baseline. Then, alternately, a new
nullable text field is added through ``PUT /api/v1/objects/<name>`` and a column
through a raw ``ALTER TABLE … ADD COLUMN`` on the copy (``--repeat`` times each).

Checks: row counts unchanged and ``pg_relation_filenode`` unchanged (the table was
not rewritten). The same PUT on an empty object shows Trellis's fixed cost: if
adding a field were O(rows), the big table would take far longer than the empty one.

    python bench/add_field.py [--quick] [--rows N] [--repeat K] [--pg-url URL]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from typing import Any

import sqlalchemy as sa
from _common import (
    PG_ADMIN_URL,
    BenchError,
    definition,
    drop_postgres,
    expect,
    field,
    fresh_postgres,
    log,
    trellis_app,
)

# Raw SQL below is the point of the baseline; every identifier in it is one of these
# module constants (or the obj_ table Trellis derived from one), never input.
OBJECT = "bench_item"
EMPTY_OBJECT = "bench_empty"
COPY_TABLE = "bench_item_copy"


def item_definition(name: str) -> dict[str, Any]:
    return definition(
        name,
        {
            "name": field("text", "Name", type="string", maxLength=120),
            "quantity": field("integer", "Quantity", type="integer", minimum=0),
            "amount": field("currency", "Amount", type="number", minimum=0),
            "status": field(
                "picklist",
                "Status",
                type="string",
                enum=["new", "open", "closed"],
                **{"x-indexed": True},
            ),
            "due_date": field("date", "Due date", type="string", format="date"),
        },
        required=["name"],
    )


def fill(engine: sa.Engine, table: str, rows: int) -> None:
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                f"INSERT INTO {table} (version, created_at, updated_at, name, quantity, amount,"  # noqa: S608
                " status, due_date)"
                " SELECT 1, now(), now(), 'item ' || g, g % 1000, (g % 100000) / 100.0,"
                " (ARRAY['new', 'open', 'closed'])[1 + g % 3], DATE '2024-01-01' + (g % 365)"
                " FROM generate_series(1, :rows) AS g"
            ),
            {"rows": rows},
        )


def table_state(engine: sa.Engine, table: str) -> tuple[int, int, int]:
    """(rows, filenode, bytes) of a table."""
    with engine.connect() as connection:
        count = connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()  # noqa: S608
        node, size = connection.execute(
            sa.text("SELECT pg_relation_filenode(:t), pg_relation_size(:t)"), {"t": table}
        ).one()
    return int(count), int(node), int(size)


def columns(engine: sa.Engine, table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(engine).get_columns(table)}


def add_field_put(client: Any, headers: dict[str, str], name: str, new_field: str) -> float:
    current = expect(client.get(f"/api/v1/objects/{name}", headers=headers), 200, "get definition")
    document = copy.deepcopy(current["definition"])
    document["properties"][new_field] = field("text", new_field, type="string", maxLength=200)
    start = time.perf_counter()
    response = client.put(f"/api/v1/objects/{name}", json=document, headers=headers)
    seconds = time.perf_counter() - start
    body = expect(response, 200, f"PUT /api/v1/objects/{name}")
    if not body.get("changed") or new_field not in body["definition"]["properties"]:
        raise BenchError(f"the PUT did not add {new_field}: {body}")
    return seconds


def add_column_raw(engine: sa.Engine, table: str, new_field: str) -> float:
    start = time.perf_counter()
    with engine.begin() as connection:
        connection.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {new_field} VARCHAR(200)"))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 rows instead of 1,000,000")
    parser.add_argument("--rows", type=int)
    parser.add_argument("--repeat", type=int, default=5, help="fields added on each side")
    parser.add_argument(
        "--keep", action="store_true", help="keep database trellis_bench afterwards"
    )
    parser.add_argument(
        "--pg-url",
        default=PG_ADMIN_URL,
        help="admin URL; the benchmark (re)creates database trellis_bench there",
    )
    args = parser.parse_args()
    rows = args.rows or (100_000 if args.quick else 1_000_000)

    url = fresh_postgres(args.pg_url)  # exits non-zero with a clear message when unreachable
    log(
        f"add_field on {sa.make_url(url).render_as_string(hide_password=True)}: "
        f"{rows:,} rows, {args.repeat} field(s) added per side"
    )
    app, token = trellis_app(url)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    engine = sa.create_engine(url)
    table = f"obj_{OBJECT}"
    try:
        with app.app_context():
            for name in (OBJECT, EMPTY_OBJECT):
                expect(
                    client.post("/api/v1/objects", json=item_definition(name), headers=headers),
                    201,
                    f"define {name}",
                )
            seconds = time.perf_counter()
            fill(engine, table, rows)
            log(f"  filled {table} with {rows:,} rows in {time.perf_counter() - seconds:.1f} s")
            seconds = time.perf_counter()
            with engine.begin() as connection:
                connection.execute(
                    sa.text(f"CREATE TABLE {COPY_TABLE} (LIKE {table} INCLUDING ALL)")
                )
                connection.execute(sa.text(f"INSERT INTO {COPY_TABLE} SELECT * FROM {table}"))  # noqa: S608
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(sa.text(f"VACUUM ANALYZE {table}"))
                connection.execute(sa.text(f"VACUUM ANALYZE {COPY_TABLE}"))
            log(
                f"  copied it to {COPY_TABLE} (LIKE … INCLUDING ALL) and vacuumed both in "
                f"{time.perf_counter() - seconds:.1f} s"
            )

            # Warm-up, untimed: first-use imports and caches on both sides.
            add_field_put(client, headers, EMPTY_OBJECT, "warm_up")
            with engine.begin() as connection:
                connection.execute(sa.text("CREATE TABLE bench_scratch (id integer)"))
            add_column_raw(engine, "bench_scratch", "warm_up")

            before = {t: table_state(engine, t) for t in (table, COPY_TABLE)}
            for t, (count, node, size) in before.items():
                log(f"  before: {t}: {count:,} rows, filenode {node}, {size / 2**20:,.1f} MiB")

            trellis_times, raw_times, empty_times = [], [], []
            for i in range(1, args.repeat + 1):
                new_field = f"remark_{i}"
                if i % 2:  # alternate which side goes first
                    trellis_times.append(add_field_put(client, headers, OBJECT, new_field))
                    raw_times.append(add_column_raw(engine, COPY_TABLE, new_field))
                else:
                    raw_times.append(add_column_raw(engine, COPY_TABLE, new_field))
                    trellis_times.append(add_field_put(client, headers, OBJECT, new_field))
                empty_times.append(add_field_put(client, headers, EMPTY_OBJECT, new_field))
                log(
                    f"  {new_field}: Trellis PUT {trellis_times[-1] * 1000:,.1f} ms, raw ALTER "
                    f"{raw_times[-1] * 1000:,.1f} ms, Trellis PUT on an empty object "
                    f"{empty_times[-1] * 1000:,.1f} ms"
                )

            after = {t: table_state(engine, t) for t in (table, COPY_TABLE)}
            problems = []
            for t in (table, COPY_TABLE):
                count, node, size = after[t]
                log(f"  after:  {t}: {count:,} rows, filenode {node}, {size / 2**20:,.1f} MiB")
                if count != before[t][0] or count != rows:
                    problems.append(f"{t}: {before[t][0]:,} rows before, {count:,} after")
                if node != before[t][1]:
                    problems.append(f"{t} was rewritten (filenode {before[t][1]} -> {node})")
                missing = {f"remark_{i}" for i in range(1, args.repeat + 1)} - columns(engine, t)
                if missing:
                    problems.append(f"{t} lacks the new column(s) {sorted(missing)}")
            rewritten = any(after[t][1] != before[t][1] for t in after)
    finally:
        engine.dispose()
        from trellis.extensions import database_of

        database_of(app).engine.dispose()
        if not args.keep:
            drop_postgres(args.pg_url)

    trellis_s, raw_s = statistics.median(trellis_times), statistics.median(raw_times)
    empty_s = statistics.median(empty_times)
    log("")
    log(f"{'':<46}{'median s':>10}   all runs (ms)")
    for label, values in (
        (f"Trellis PUT /objects ({rows:,} rows)", trellis_times),
        (f"raw ALTER TABLE ADD COLUMN ({rows:,} rows)", raw_times),
        ("Trellis PUT /objects (0 rows)", empty_times),
    ):
        log(
            f"{label:<46}{statistics.median(values):>10.4f}   "
            + " ".join(f"{v * 1000:.1f}" for v in values)
        )
    log(
        "ratio = Trellis seconds ÷ raw seconds (both O(1) when nothing is rewritten; the "
        "difference is Trellis's fixed cost: validation, versioning, introspection, HTTP)"
    )
    for problem in problems:
        log(f"  PROBLEM: {problem}")
    log(
        f"RESULT add_field rows={rows} trellis_seconds={trellis_s:.4f} raw_seconds={raw_s:.4f} "
        f"ratio={trellis_s / raw_s:.2f} rewritten={'yes' if rewritten else 'no'} "
        f"trellis_empty_seconds={empty_s:.4f}"
    )
    if problems:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
