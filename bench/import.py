#!/usr/bin/env python
"""Import: a spreadsheet of dealers through Trellis's importer vs a raw ``executemany``.

The same rows (name, code, level, credit limit, region, and the parent matched by its
dealer ``code``) are written two ways, on one database:

* raw — the CSV parsed with ``csv.DictReader``, the parent's code looked up in a dict,
  and one ``INSERT`` executed with every parameter set (SQLAlchemy Core over the
  driver's ``executemany``) into a plain table with the same columns, in one
  transaction: no validation, no history, no HTTP;
* Trellis — ``POST /api/v1/records/dealer/import`` (multipart, all or nothing) through
  Flask's test client: the upload kept in the file store, the CSV read, columns mapped
  by label, the parent resolved by code per batch, every row through the record
  service (types, schema, uniqueness, references, history) 1,000 at a time.

The ratio is Trellis rows/s over raw rows/s (1.00 = as fast as raw SQL; the issue aims
at ≥ 0.3): the median of ``--rounds`` rounds (3), each on a fresh database, the two sides
taking turns to go first (the raw side's own speed moves by half from run to run here).
The reading of the same rows as XLSX is also timed with python-calamine and with
openpyxl's read-only mode (the figures behind docs/import-export.md's choice).

    python bench/import.py [--quick] [--db postgresql|sqlite] [--rows 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import statistics
import time
from typing import Any

import sqlalchemy as sa
from _common import database, definition, expect, field, log, trellis_app

DEALER = definition(
    "dealer",
    {
        "name": field("text", "Name", type="string", maxLength=120, **{"x-unique": True}),
        "code": field("text", "Dealer code", type="string", maxLength=20, **{"x-unique": True}),
        "level": field("picklist", "Level", type="string", enum=["national", "regional", "sub"]),
        "credit_limit": field("currency", "Credit limit", type="number", minimum=0),
        "region": field("text", "Region", type="string", maxLength=40),
        "parent": field("lookup", "Parent", type=["integer", "null"], **{"x-target": "dealer"}),
    },
    required=["name", "code"],
)
HEADER = ["Name", "Dealer code", "Level", "Credit limit", "Region", "Parent"]
PARENTS = ["ROOT-1", "ROOT-2", "ROOT-3"]


def rows_for(kind: str, count: int) -> list[list[Any]]:
    return [
        [
            f"{kind} dealer {i}",
            f"{kind[0].upper()}-{i:06d}",
            ("national", "regional", "sub")[i % 3],
            1000 + i,
            ("East", "North", "South", "West")[i % 4],
            PARENTS[i % 3],
        ]
        for i in range(count)
    ]


def as_csv(rows: list[list[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(HEADER)
    writer.writerows(rows)
    return buffer.getvalue().encode()


def raw_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "raw_dealer",
        metadata,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.BigInteger),
        sa.Column("updated_by", sa.BigInteger),
        sa.Column("owner_id", sa.BigInteger),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
        sa.Column("name", sa.String(120), unique=True),
        sa.Column("code", sa.String(20), unique=True),
        sa.Column("level", sa.String(40)),
        sa.Column("credit_limit", sa.Numeric(18, 2)),
        sa.Column("region", sa.String(40)),
        sa.Column("parent", sa.BigInteger, sa.ForeignKey("raw_dealer.id")),
    )


def time_xlsx_readers(rows: list[list[Any]]) -> tuple[float, float]:
    """Seconds to read ``rows`` as XLSX with python-calamine and with openpyxl."""
    from openpyxl import Workbook, load_workbook
    from python_calamine import CalamineWorkbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet()
    sheet.append(HEADER)
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    data = buffer.getvalue()
    start = time.perf_counter()
    read = CalamineWorkbook.from_filelike(io.BytesIO(data)).get_sheet_by_index(0).to_python()
    calamine_s = time.perf_counter() - start
    assert len(read) == len(rows) + 1
    start = time.perf_counter()
    book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    count = sum(1 for _ in book.worksheets[0].iter_rows(values_only=True))
    openpyxl_s = time.perf_counter() - start
    assert count == len(rows) + 1
    return calamine_s, openpyxl_s


def one_round(db: str, count: int, raw_first: bool) -> tuple[float, float]:
    """One round on a fresh database: (raw seconds, Trellis seconds) for ``count`` rows,
    the raw side first or second as ``raw_first`` says."""
    with database(db) as url:
        app, token = trellis_app(url, {"IMPORT_MAX_ROWS": count})
        client = app.test_client()
        headers = {"Authorization": f"Bearer {token}"}
        expect(client.post("/api/v1/objects", json=DEALER, headers=headers), 201, "define")
        for code in PARENTS:
            body = {"name": f"Root {code}", "code": code}
            expect(client.post("/api/v1/records/dealer", json=body, headers=headers), 201, code)
        engine = sa.create_engine(url)
        table = raw_table(sa.MetaData())
        table.metadata.create_all(engine)
        now = dt.datetime.now(dt.UTC)
        with engine.begin() as connection:
            raw_parents = {
                code: connection.execute(
                    sa.insert(table)
                    .values(
                        name=f"Root {code}", code=code, version=1, created_at=now, updated_at=now
                    )
                    .returning(table.c.id)
                ).scalar_one()
                for code in PARENTS
            }
        raw_data, trellis_data = as_csv(rows_for("raw", count)), as_csv(rows_for("trellis", count))

        def raw() -> float:
            start = time.perf_counter()
            now = dt.datetime.now(dt.UTC)
            system = {"version": 1, "created_at": now, "updated_at": now, "created_by": 1}
            parameters = [
                {
                    "name": row["Name"],
                    "code": row["Dealer code"],
                    "level": row["Level"],
                    "credit_limit": row["Credit limit"],
                    "region": row["Region"],
                    "parent": raw_parents[row["Parent"]],
                    **system,
                    "updated_by": 1,
                    "owner_id": 1,
                }
                for row in csv.DictReader(io.StringIO(raw_data.decode()))
            ]
            with engine.begin() as connection:
                connection.execute(sa.insert(table), parameters)
            return time.perf_counter() - start

        def trellis() -> float:
            start = time.perf_counter()
            response = client.post(
                "/api/v1/records/dealer/import",
                data={
                    "file": (io.BytesIO(trellis_data), "dealers.csv"),
                    "lookups": '{"parent": "code"}',
                },
                headers=headers,
                content_type="multipart/form-data",
            )
            seconds = time.perf_counter() - start
            run = expect(response, 202, "import")
            if run["status"] != "succeeded" or run["created"] != count:
                raise SystemExit(f"bench: error: the import did not write every row: {run}")
            return seconds

        if raw_first:
            raw_s = raw()
            trellis_s = trellis()
        else:
            trellis_s = trellis()
            raw_s = raw()
        engine.dispose()
    return raw_s, trellis_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="10,000 rows")
    args = parser.parse_args()
    count = 10_000 if args.quick else args.rows
    ratios, raws, trellises = [], [], []
    for number in range(1, args.rounds + 1):
        raw_s, trellis_s = one_round(args.db, count, raw_first=number % 2 == 1)
        ratios.append(raw_s / trellis_s)
        raws.append(raw_s)
        trellises.append(trellis_s)
        log(
            f"round {number}: raw executemany {count / raw_s:,.0f} rows/s ({raw_s:.2f} s), "
            f"trellis import {count / trellis_s:,.0f} rows/s ({trellis_s:.2f} s), "
            f"ratio {raw_s / trellis_s:.2f}"
        )
    raw_s, trellis_s = statistics.median(raws), statistics.median(trellises)

    calamine_s, openpyxl_s = time_xlsx_readers(rows_for("xlsx", count))
    log(f"read as XLSX: python-calamine {calamine_s:.2f} s, openpyxl read-only {openpyxl_s:.2f} s")
    log(
        f"RESULT import ratio={statistics.median(ratios):.2f} rows={count} db={args.db} "
        f"rounds={args.rounds} trellis_rows_s={count / trellis_s:.0f} "
        f"raw_rows_s={count / raw_s:.0f} "
        f"xlsx_calamine_s={calamine_s:.2f} xlsx_openpyxl_s={openpyxl_s:.2f}"
    )


if __name__ == "__main__":
    main()
