#!/usr/bin/env python
"""Bulk create: Trellis's ``POST /records/<object>/bulk`` vs a raw ``executemany``.

The same 1,000-dealer batches are written two ways, in one process, on one database:

* raw — one ``INSERT`` executed with 1,000 parameter sets (SQLAlchemy Core over the
  driver's ``executemany``) into a plain table with the same columns, system columns
  included, in one transaction: no validation, no history, no HTTP;
* Trellis — the bulk endpoint through Flask's test client: JSON parsing, the token,
  the schema, reference and uniqueness checks, one multi-row INSERT, field history.

Batches alternate between the two. The ratio is Trellis rows/s over raw rows/s
(1.00 = as fast as raw SQL; the issue aims at ≥ 0.3).

    python bench/bulk.py [--quick] [--db postgresql|sqlite] [--batch 1000] [--rounds 6]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
from typing import Any

import sqlalchemy as sa
from _common import database, definition, expect, field, log, trellis_app

DEALER = definition(
    "dealer",
    {
        "name": field("text", "Name", type="string", maxLength=120, **{"x-unique": True}),
        "level": field("picklist", "Level", type="string", enum=["national", "regional", "sub"]),
        "credit_limit": field("currency", "Credit limit", type="number", minimum=0),
        "region": field("text", "Region", type="string", maxLength=40),
        "parent": field("lookup", "Parent", type=["integer", "null"], **{"x-target": "dealer"}),
    },
    required=["name"],
)


def rows_for(round_no: int, kind: str, count: int, parent: int) -> list[dict[str, Any]]:
    return [
        {
            "name": f"{kind} dealer {round_no}-{i}",
            "level": ("national", "regional", "sub")[i % 3],
            "credit_limit": 1000 + i,
            "region": ("East", "North", "South", "West")[i % 4],
            "parent": parent,
        }
        for i in range(count)
    ]


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
        sa.Column("level", sa.String(40)),
        sa.Column("credit_limit", sa.Numeric(18, 2)),
        sa.Column("region", sa.String(40)),
        sa.Column("parent", sa.BigInteger, sa.ForeignKey("raw_dealer.id")),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--quick", action="store_true", help="3 rounds")
    args = parser.parse_args()
    rounds = 3 if args.quick else args.rounds
    with database(args.db) as url:
        app, token = trellis_app(url)
        client = app.test_client()
        headers = {"Authorization": f"Bearer {token}"}
        expect(client.post("/api/v1/objects", json=DEALER, headers=headers), 201, "define")
        root = expect(
            client.post("/api/v1/records/dealer", json={"name": "Root"}, headers=headers),
            201,
            "root dealer",
        )["id"]
        engine = sa.create_engine(url)
        table = raw_table(sa.MetaData())
        table.metadata.create_all(engine)
        with engine.begin() as connection:
            now = dt.datetime.now(dt.UTC)
            raw_root = connection.execute(
                sa.insert(table)
                .values(name="Root", version=1, created_at=now, updated_at=now)
                .returning(table.c.id)
            ).scalar_one()

        def raw(round_no: int) -> float:
            now = dt.datetime.now(dt.UTC)
            system = {"version": 1, "created_at": now, "updated_at": now, "created_by": 1}
            rows = [
                {**row, **system, "updated_by": 1, "owner_id": 1}
                for row in rows_for(round_no, "raw", args.batch, raw_root)
            ]
            start = time.perf_counter()
            with engine.begin() as connection:
                connection.execute(sa.insert(table), rows)
            return time.perf_counter() - start

        def trellis(round_no: int) -> float:
            rows = rows_for(round_no, "trellis", args.batch, root)
            start = time.perf_counter()
            response = client.post("/api/v1/records/dealer/bulk", json=rows, headers=headers)
            elapsed = time.perf_counter() - start
            body = expect(response, 201, "bulk create")
            assert body["created"] == args.batch, body
            return elapsed

        raw(-1), trellis(-1)  # warm up: caches, compiled schema, statements
        raw_times, trellis_times = [], []
        for round_no in range(rounds):
            raw_times.append(raw(round_no))
            trellis_times.append(trellis(round_no))
        engine.dispose()
    raw_s, trellis_s = statistics.median(raw_times), statistics.median(trellis_times)
    log(f"raw executemany: {args.batch / raw_s:,.0f} rows/s (median {raw_s * 1000:.1f} ms)")
    log(f"trellis bulk:    {args.batch / trellis_s:,.0f} rows/s (median {trellis_s * 1000:.1f} ms)")
    log(
        f"RESULT bulk ratio={raw_s / trellis_s:.2f} batch={args.batch} db={args.db} "
        f"trellis_rows_s={args.batch / trellis_s:.0f} raw_rows_s={args.batch / raw_s:.0f}"
    )


if __name__ == "__main__":
    main()
