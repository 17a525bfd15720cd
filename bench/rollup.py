#!/usr/bin/env python
"""Order-line writes with a maintained roll-up and formula vs the same writes without.

    python bench/rollup.py [--quick] [--db postgresql|sqlite] [--n 200] [--m 20] [--rounds 5]

Two pairs of objects are defined through ``ObjectService`` on a fresh database:

* computed — ``bench_order`` with ``total``, a SUM roll-up of ``lines.amount``, and
  ``bench_line`` (master-detail to it) whose ``amount`` is the formula
  ``quantity * unit_price``;
* plain — ``plain_order`` with a plain currency ``total`` and ``plain_line`` whose
  ``amount`` is a plain currency field the caller sets (``quantity * unit_price``, worked
  out by the benchmark). Nothing maintains the plain order's total.

Every write goes through ``RecordService`` (the record pipeline, as the system caller),
one write per session and transaction, committed, as one API request would be. Each
round creates ``--n`` lines spread over ``--m`` orders on each side (the same quantities
and prices), then changes the quantity of each of them; the sides take turns every 10
writes (the first alternating), so a busy spell of the machine slows both alike.
``ratio`` is the median of (computed time ÷ plain time) over the rounds, creates and
updates together; ``creates_ratio`` and ``updates_ratio`` the same per operation (1.00 =
the roll-up and formula cost nothing; the issue aims at ≤ 1.3). At the end every order's
roll-up is checked against ``SUM(amount)`` of its lines in SQL, and every line's amount
against its quantity times its price.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from _common import BenchError, database, definition, field, log, trellis_app

MONEY = {"x-scale": 2}
CHUNK = 10  # the sides take turns every CHUNK writes


def turns(round_no: int, chunk: int) -> tuple[str, str]:
    """The order of the two sides for one chunk: alternating, the first rotating by round."""
    first = (round_no + chunk) % 2 == 0
    return ("bench", "plain") if first else ("plain", "bench")


def documents(kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(order, line) definitions of one side: ``computed`` or ``plain``."""
    order, line = f"{kind}_order", f"{kind}_line"
    if kind == "bench":
        total = field(
            "rollup",
            "Total",
            type=["number", "null"],
            **MONEY,
            **{"x-rollup": {"of": "lines", "function": "SUM", "field": "amount"}},
        )
        amount = field(
            "formula",
            "Amount",
            type=["number", "null"],
            **MONEY,
            **{"x-formula": "quantity * unit_price"},
        )
    else:
        total = field("currency", "Total", type=["number", "null"], minimum=0, **MONEY)
        amount = field("currency", "Amount", type=["number", "null"], minimum=0, **MONEY)
    order_doc = definition(
        order,
        {"number": field("text", "Number", type="string", maxLength=40), "total": total},
        required=["number"],
    )
    line_doc = definition(
        line,
        {
            "header": field(
                "master_detail",
                "Order",
                type="integer",
                **{"x-target": order, "x-related-name": "lines"},
            ),
            "quantity": field("integer", "Quantity", type="integer", minimum=0),
            "unit_price": field("currency", "Unit price", type="number", minimum=0, **MONEY),
            "amount": amount,
        },
        required=["header", "quantity", "unit_price"],
    )
    return order_doc, line_doc


def workload(n: int, seed: int) -> list[tuple[int, Decimal, int]]:
    """(quantity, unit price, new quantity) of ``n`` lines; the same for both sides."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        quantity, price = rng.randint(1, 50), Decimal(rng.randint(100, 99_999)) / 100
        rows.append((quantity, price, quantity % 50 + 1))  # a new quantity: always a change
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--n", type=int, default=None, help="line creates (and updates) a round")
    parser.add_argument("--m", type=int, default=None, help="orders the lines are spread over")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="n=60, m=10, 3 rounds")
    args = parser.parse_args()
    n = args.n or (60 if args.quick else 200)
    m = args.m or (10 if args.quick else 20)
    rounds = args.rounds or (3 if args.quick else 5)
    if n < 1 or m < 1 or rounds < 1:
        raise BenchError("--n, --m and --rounds must be at least 1")
    from trellis.exceptions import TrellisError
    from trellis.extensions import database_of
    from trellis.platform.runtime.objects import ObjectService
    from trellis.platform.runtime.records.service import RecordService

    with database(args.db) as url:
        app, _token = trellis_app(url)
        db = database_of(app)
        registry = app.extensions["trellis.registry"]
        with db.session() as session:
            service = ObjectService(session, registry, None)
            for kind in ("bench", "plain"):
                order_doc, line_doc = documents(kind)
                # The roll-up reads lines that do not exist yet: the order first without
                # it, then the lines, then the order as it is (a pack installs in stages).
                service.create(
                    {**order_doc, "properties": {"number": order_doc["properties"]["number"]}}
                )
                service.create(line_doc)
                registry.ensure_current(session)
                service.update(order_doc["x-name"], order_doc)
            session.commit()

        def write(action: Any) -> Any:
            """One write in its own transaction, as one request."""
            with db.session() as session:
                registry.ensure_current(session)
                try:
                    result = action(RecordService(session, registry))
                except TrellisError as exc:
                    raise BenchError(f"write refused: {exc}: {exc.details}") from None
                session.commit()
                return result

        orders: dict[str, list[int]] = {}
        for kind in ("bench", "plain"):
            orders[kind] = [
                write(lambda s, k=kind, i=i: s.create(f"{k}_order", {"number": f"{k}-{i}"}))["id"]
                for i in range(m)
            ]

        def create_lines(
            kind: str, lines: list[tuple[int, Decimal, int]], first: int
        ) -> tuple[float, list[tuple[int, int]]]:
            """Create ``lines`` (the ``first``-th of the round onwards) over the orders:
            (seconds, [(id, version)])."""
            computed = kind == "bench"
            created: list[tuple[int, int]] = []
            start = time.perf_counter()
            for i, (quantity, price, _new) in enumerate(lines, start=first):
                payload: dict[str, Any] = {
                    "header": orders[kind][i % m],
                    "quantity": quantity,
                    "unit_price": float(price),
                }
                if not computed:
                    payload["amount"] = float(quantity * price)
                record = write(lambda s, p=payload: s.create(f"{kind}_line", p))
                created.append((record["id"], record["version"]))
            return time.perf_counter() - start, created

        def update_lines(
            kind: str, lines: list[tuple[int, Decimal, int]], created: list[tuple[int, int]]
        ) -> float:
            """Change each created line's quantity (and, on the plain side, its amount)."""
            computed = kind == "bench"
            start = time.perf_counter()
            for (record_id, version), (_q, price, new) in zip(created, lines, strict=True):
                payload: dict[str, Any] = {"version": version, "quantity": new}
                if not computed:
                    payload["amount"] = float(new * price)
                write(lambda s, r=record_id, p=payload: s.update(f"{kind}_line", r, p))
            return time.perf_counter() - start

        def side(
            kind: str, lines: list[tuple[int, Decimal, int]], mark: Any = lambda: None
        ) -> tuple[float, float]:
            """Create the lines, then change each one's quantity (``mark`` is called
            before, between and after)."""
            mark()
            creates, created = create_lines(kind, lines, 0)
            mark()
            updates = update_lines(kind, lines, created)
            mark()
            return creates, updates

        warm = workload(max(5, n // 10), seed=-1)
        side("bench", warm), side("plain", warm)  # caches, compiled plans, statements
        times: dict[str, list[tuple[float, float]]] = {"bench": [], "plain": []}
        for round_no in range(rounds):
            lines = workload(n, seed=round_no)
            chunks = [(at, lines[at : at + CHUNK]) for at in range(0, n, CHUNK)]
            spent = {kind: [0.0, 0.0] for kind in ("bench", "plain")}
            made: dict[str, list[list[tuple[int, int]]]] = {"bench": [], "plain": []}
            for number, (at, chunk) in enumerate(chunks):  # sides take turns every chunk
                for kind in turns(round_no, number):
                    elapsed, created = create_lines(kind, chunk, at)
                    spent[kind][0] += elapsed
                    made[kind].append(created)
            for number, (_at, chunk) in enumerate(chunks):
                for kind in turns(round_no, number):
                    spent[kind][1] += update_lines(kind, chunk, made[kind][number])
            for kind in ("bench", "plain"):
                times[kind].append((spent[kind][0], spent[kind][1]))
            (bc, bu), (pc, pu) = times["bench"][-1], times["plain"][-1]
            log(
                f"round {round_no + 1}/{rounds}: creates {bc * 1000 / n:.2f} vs "
                f"{pc * 1000 / n:.2f} ms, updates {bu * 1000 / n:.2f} vs {pu * 1000 / n:.2f} ms "
                f"(roll-up vs plain, per write); ratio {(bc + bu) / (pc + pu):.2f}"
            )

        counts = statements(db, side)
        check(db, n_orders=m)
        pairs = list(zip(times["bench"], times["plain"], strict=True))
        ratio = statistics.median((bc + bu) / (pc + pu) for (bc, bu), (pc, pu) in pairs)
        creates_ratio = statistics.median(bc / pc for (bc, _), (pc, _) in pairs)
        updates_ratio = statistics.median(bu / pu for (_, bu), (_, pu) in pairs)

        def ms(kind: str, index: int) -> float:
            return statistics.median(t[index] for t in times[kind]) * 1000 / n

        log(
            f"with roll-up and formula: create {ms('bench', 0):.2f} ms, "
            f"update {ms('bench', 1):.2f} ms per line (median of {rounds} rounds of {n})"
        )
        log(
            f"plain:                    create {ms('plain', 0):.2f} ms, "
            f"update {ms('plain', 1):.2f} ms per line"
        )
        log(
            "statements per write (create / update): with roll-up and formula "
            f"{counts['bench'][0]} / {counts['bench'][1]}, plain "
            f"{counts['plain'][0]} / {counts['plain'][1]} (BEGIN and COMMIT not counted)"
        )
        db.engine.dispose()
    log(
        f"RESULT rollup ratio={ratio:.2f} creates_ratio={creates_ratio:.2f} "
        f"updates_ratio={updates_ratio:.2f} n={n} m={m} rounds={rounds} db={args.db} "
        f"rollup_create_ms={ms('bench', 0):.2f} rollup_update_ms={ms('bench', 1):.2f} "
        f"plain_create_ms={ms('plain', 0):.2f} plain_update_ms={ms('plain', 1):.2f}"
    )


def statements(db: Any, side: Any) -> dict[str, tuple[float, float]]:
    """Statements sent per line create and per update on each side (10 lines, untimed)."""
    sent: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        sent.append(statement)

    found: dict[str, tuple[float, float]] = {}
    sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        for kind in ("bench", "plain"):
            marks: list[int] = []
            side(kind, workload(10, seed=-2), lambda marks=marks: marks.append(len(sent)))
            found[kind] = ((marks[1] - marks[0]) / 10, (marks[2] - marks[1]) / 10)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count)
    return found


def check(db: Any, n_orders: int) -> None:
    """Every order's roll-up is the SQL sum of its lines' amounts; every amount is its
    line's quantity times its price. Fails loudly otherwise.

    Compared at the fields' scale: exact on PostgreSQL (NUMERIC); SQLite stores NUMERIC
    as REAL, so its sums (the roll-up's deltas and SQL's SUM alike) drift below a cent."""
    with db.engine.connect() as connection:
        wrong_totals = connection.execute(
            sa.text(
                "SELECT o.id, o.total, COALESCE(SUM(l.amount), 0) AS sum "
                "FROM obj_bench_order o LEFT JOIN obj_bench_line l "
                "ON l.header = o.id AND l.deleted_at IS NULL "
                "GROUP BY o.id, o.total "
                "HAVING o.total IS NULL "
                "OR ROUND(o.total, 2) <> ROUND(COALESCE(SUM(l.amount), 0), 2)"
            )
        ).all()
        wrong_amounts = connection.execute(
            sa.text(
                "SELECT id, quantity, unit_price, amount FROM obj_bench_line "
                "WHERE amount IS NULL OR amount <> ROUND(quantity * unit_price, 2)"
            )
        ).all()
        counted = connection.execute(
            sa.text("SELECT COUNT(*), COALESCE(SUM(total), 0) FROM obj_bench_order")
        ).one()
        lines = connection.execute(
            sa.text("SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM obj_bench_line")
        ).one()
    if wrong_totals or wrong_amounts or counted[0] != n_orders:
        raise BenchError(
            f"roll-up check failed: {len(wrong_totals)} orders whose total is not the sum of "
            f"their lines (first: {wrong_totals[:3]}), {len(wrong_amounts)} lines whose "
            f"amount is not quantity × price (first: {wrong_amounts[:3]})"
        )
    log(
        f"check: {counted[0]} orders, each total = SUM(amount) of its lines "
        f"({lines[0]} lines, {Decimal(counted[1]):,.2f} in all); every amount = quantity × price"
    )


if __name__ == "__main__":
    main()
