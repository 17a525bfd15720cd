#!/usr/bin/env python
"""API overhead: Trellis's generic record API vs a hand-written Flask + SQLAlchemy 2 API.

The same "sales order" is served two ways, in one process, on one database:

* hand-written — ``HandOrder``, a typed SQLAlchemy 2 model, with three Flask views
  (create, get, list) that authenticate a bearer token (SHA-256 looked up in a
  tokens table joined to users), validate the body by hand, check that the dealer
  exists, assign an order number, and answer JSON errors;
* Trellis — ``dealer`` and ``sales_order`` defined through ``POST /api/v1/objects``
  and served by ``/api/v1/records/sales_order``.

Both are driven through Flask's test client (no network), with the same seed data
and the same request payloads, in alternating rounds. Each ratio is Trellis
throughput / hand-written throughput (1.00 = no overhead; 0.50 = half as fast).

    python bench/api_overhead.py [--quick] [--db sqlite|postgresql] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import gc
import io
import json
import pstats
import random
import statistics
import time
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from _common import (
    PG_ADMIN_URL,
    ApiError,
    BenchError,
    HandBase,
    add_hand_user,
    amount,
    database,
    definition,
    expect,
    field,
    hand_app,
    hand_engine,
    iso,
    log,
    trellis_app,
    utcnow,
)
from flask import Flask, g, jsonify, request
from sqlalchemy.orm import Mapped, Session, mapped_column

STATUSES = ("draft", "submitted", "approved", "cancelled")
DEALERS = 50
LIST_STATUS = "submitted"
LIST_LIMIT = 50

# =====================================================================================
# The hand-written baseline: a typed model and three views, written the way a
# competent Flask developer would for one object.
# =====================================================================================


class HandDealer(HandBase):
    __tablename__ = "hand_dealers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(120), unique=True)
    deleted_at: Mapped[dt.datetime | None]


class HandCounter(HandBase):
    __tablename__ = "hand_counters"

    name: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    value: Mapped[int] = mapped_column(sa.BigInteger, default=0)


class HandOrder(HandBase):
    __tablename__ = "hand_orders"
    __table_args__ = (
        sa.Index("ix_hand_orders_status", "status"),
        sa.Index("ix_hand_orders_order_date", "order_date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(sa.String(100), unique=True)
    dealer_id: Mapped[int] = mapped_column(sa.ForeignKey("hand_dealers.id"), index=True)
    status: Mapped[str] = mapped_column(sa.String(100), default="draft")
    order_date: Mapped[dt.date]
    total_amount: Mapped[Decimal] = mapped_column(sa.Numeric(20, 2))
    notes: Mapped[str | None] = mapped_column(sa.Text)
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[dt.datetime | None]

    def to_dict(self) -> dict[str, Any]:
        total = float(self.total_amount)
        return {
            "id": self.id,
            "number": self.number,
            "dealer_id": self.dealer_id,
            "status": self.status,
            "order_date": self.order_date.isoformat(),
            "total_amount": int(total) if total.is_integer() else total,
            "notes": self.notes,
            "version": self.version,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


def _invalid(details: list[dict[str, str]]) -> ApiError:
    return ApiError(422, "validation_failed", "the order is not valid", details)


ORDER_FIELDS = {"dealer_id", "status", "order_date", "total_amount", "notes"}


def validate_order(body: Any) -> dict[str, Any]:
    """Manual checks: an object, known keys, required fields, types, status, amount ≥ 0."""
    if not isinstance(body, dict):
        raise _invalid([{"field": "", "message": "must be a JSON object"}])
    problems = [{"field": k, "message": "unknown field"} for k in body if k not in ORDER_FIELDS]
    dealer_id = body.get("dealer_id")
    if dealer_id is None:
        problems.append({"field": "dealer_id", "message": "is required"})
    elif isinstance(dealer_id, bool) or not isinstance(dealer_id, int) or dealer_id < 1:
        problems.append({"field": "dealer_id", "message": "must be a positive whole number"})
    status = body.get("status", "draft")
    if status not in STATUSES:
        problems.append({"field": "status", "message": f"must be one of {', '.join(STATUSES)}"})
    order_date = None
    raw_date = body.get("order_date")
    if raw_date is None:
        problems.append({"field": "order_date", "message": "is required"})
    else:
        try:
            order_date = dt.date.fromisoformat(raw_date)
        except (TypeError, ValueError):
            problems.append({"field": "order_date", "message": "must be a date (YYYY-MM-DD)"})
    total = body.get("total_amount")
    if total is None:
        problems.append({"field": "total_amount", "message": "is required"})
    total_amount = amount(total, "total_amount", problems)
    notes = body.get("notes")
    if notes is not None and (not isinstance(notes, str) or len(notes) > 2000):
        problems.append({"field": "notes", "message": "must be text of at most 2000 characters"})
    if problems:
        raise _invalid(problems)
    return {
        "dealer_id": dealer_id,
        "status": status,
        "order_date": order_date,
        "total_amount": total_amount,
        "notes": notes,
    }


def create_hand_app(engine: sa.Engine) -> Flask:
    app = hand_app("hand_orders", engine)

    @app.post("/orders")
    def create_order() -> Any:
        body = request.get_json(silent=True)
        if body is None:
            raise ApiError(400, "bad_request", "the request needs a JSON body")
        values = validate_order(body)
        session: Session = g.session
        dealer = session.execute(
            sa.select(HandDealer.id).where(
                HandDealer.id == values["dealer_id"], HandDealer.deleted_at.is_(None)
            )
        ).first()
        if dealer is None:
            raise _invalid([{"field": "dealer_id", "message": "no such dealer"}])
        number = session.execute(
            sa.update(HandCounter)
            .where(HandCounter.name == "hand_orders")
            .values(value=HandCounter.value + 1)
            .returning(HandCounter.value)
        ).scalar_one()
        now = utcnow()
        order = HandOrder(
            number=f"HO-{now:%Y}-{number:06d}", created_at=now, updated_at=now, version=1, **values
        )
        session.add(order)
        session.commit()
        return jsonify(order.to_dict()), 201

    @app.get("/orders/<int:order_id>")
    def get_order(order_id: int) -> Any:
        order = g.session.get(HandOrder, order_id)
        if order is None or order.deleted_at is not None:
            raise ApiError(404, "not_found", f"no order {order_id}")
        return jsonify(order.to_dict())

    @app.get("/orders")
    def list_orders() -> Any:
        status = request.args.get("status")
        if status is not None and status not in STATUSES:
            raise ApiError(400, "invalid_query", f"status must be one of {', '.join(STATUSES)}")
        try:
            limit = int(request.args.get("limit", "50"))
        except ValueError:
            raise ApiError(400, "invalid_query", "limit must be a whole number") from None
        if not 1 <= limit <= 500:
            raise ApiError(400, "invalid_query", "limit must be between 1 and 500")
        query = sa.select(HandOrder).where(HandOrder.deleted_at.is_(None))
        if status is not None:
            query = query.where(HandOrder.status == status)
        query = query.order_by(HandOrder.order_date.desc(), HandOrder.id.desc()).limit(limit)
        return jsonify({"items": [o.to_dict() for o in g.session.scalars(query)]})

    return app


# =====================================================================================
# Setting both up on one database with the same data
# =====================================================================================


def trellis_definitions() -> tuple[dict[str, Any], dict[str, Any]]:
    dealer = definition(
        "dealer",
        {"name": field("text", "Name", type="string", maxLength=120, **{"x-unique": True})},
        required=["name"],
    )
    order = definition(
        "sales_order",
        {
            "number": field(
                "autonumber", "Number", type="string", **{"x-format": "SO-{YYYY}-{000000}"}
            ),
            "dealer": field("lookup", "Dealer", type="integer", **{"x-target": "dealer"}),
            "status": field(
                "picklist",
                "Status",
                type="string",
                enum=list(STATUSES),
                default="draft",
                **{"x-indexed": True},
            ),
            "order_date": field(
                "date", "Order date", type="string", format="date", **{"x-indexed": True}
            ),
            "total_amount": field("currency", "Total", type="number", minimum=0),
            "notes": field("textarea", "Notes", type="string", maxLength=2000),
        },
        required=["dealer", "order_date", "total_amount"],
    )
    return dealer, order


def seed_rows(count: int, rng: random.Random) -> list[dict[str, Any]]:
    start = dt.date(2024, 1, 1)
    return [
        {
            "dealer": rng.randint(1, DEALERS),
            "status": rng.choice(STATUSES),
            "order_date": start + dt.timedelta(days=rng.randint(0, 540)),
            "total_amount": Decimal(rng.randint(0, 10_000_000)) / 100,
            "notes": rng.choice([None, "urgent", "call before delivery", "partial shipment ok"]),
        }
        for _ in range(count)
    ]


def payloads(count: int, rng: random.Random) -> list[dict[str, Any]]:
    start = dt.date(2025, 7, 1)
    return [
        {
            "dealer": rng.randint(1, DEALERS),
            "status": rng.choice(STATUSES),
            "order_date": (start + dt.timedelta(days=rng.randint(0, 90))).isoformat(),
            "total_amount": rng.randint(0, 5_000_000) / 100,
            "notes": "created by the benchmark",
        }
        for _ in range(count)
    ]


def setup(url: str, seed: int) -> dict[str, Any]:
    app, token = trellis_app(url)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    for doc in trellis_definitions():
        expect(client.post("/api/v1/objects", json=doc, headers=headers), 201, "define object")

    engine = hand_engine(url)
    HandBase.metadata.create_all(engine)
    now = utcnow()
    with Session(engine) as session:
        hand_token = add_hand_user(session)
        session.add(HandCounter(name="hand_orders", value=0))
        session.commit()

    # Dealers: through each side's own write path.
    for i in range(1, DEALERS + 1):
        expect(
            client.post(
                "/api/v1/records/dealer", json={"name": f"Dealer {i:03d}"}, headers=headers
            ),
            201,
            "create dealer",
        )
    with Session(engine) as session:
        session.add_all(HandDealer(name=f"Dealer {i:03d}") for i in range(1, DEALERS + 1))
        session.commit()

    # Orders: the same rows, bulk-inserted into both tables (seeding is not timed).
    rows = seed_rows(seed, random.Random(42))
    obj = sa.Table("obj_sales_order", sa.MetaData(), autoload_with=engine)
    with engine.begin() as connection:
        connection.execute(
            obj.insert(),
            [
                {**r, "number": f"SEED-{i:06d}", "version": 1, "created_at": now, "updated_at": now}
                for i, r in enumerate(rows, 1)
            ],
        )
        connection.execute(
            HandOrder.__table__.insert(),
            [
                {
                    "dealer_id": r["dealer"],
                    "status": r["status"],
                    "order_date": r["order_date"],
                    "total_amount": r["total_amount"],
                    "notes": r["notes"],
                    "number": f"SEED-{i:06d}",
                    "version": 1,
                    "created_at": now,
                    "updated_at": now,
                }
                for i, r in enumerate(rows, 1)
            ],
        )
        if engine.dialect.name == "postgresql":
            connection.execute(sa.text("ANALYZE"))
    return {
        "app": app,
        "trellis": client,
        "trellis_headers": headers,
        "hand_app": create_hand_app(engine),
        "hand_headers": {"Authorization": f"Bearer {hand_token}"},
        "engine": engine,
    }


def check_equivalence(env: dict[str, Any], seed: int) -> None:
    """Both sides answer the same data the same way, and both refuse bad input with JSON."""
    t, th = env["trellis"], env["trellis_headers"]
    h, hh = env["hand_app"].test_client(), env["hand_headers"]
    filt = quote(json.dumps([["status", "=", LIST_STATUS]]))
    tl = expect(
        t.get(f"/api/v1/records/sales_order?filter={filt}&sort=-order_date&limit=50", headers=th),
        200,
        "trellis list",
    )["items"]
    hl = expect(h.get(f"/orders?status={LIST_STATUS}&limit=50", headers=hh), 200, "hand list")[
        "items"
    ]
    key_t = [(r["id"], r["order_date"], r["total_amount"], r["dealer"]) for r in tl]
    key_h = [(r["id"], r["order_date"], r["total_amount"], r["dealer_id"]) for r in hl]
    if key_t != key_h or len(key_t) != LIST_LIMIT:
        raise BenchError("the two list endpoints do not return the same page")
    one = seed // 2
    tr = expect(t.get(f"/api/v1/records/sales_order/{one}", headers=th), 200, "trellis get")
    hr = expect(h.get(f"/orders/{one}", headers=hh), 200, "hand get")
    if (tr["total_amount"], tr["order_date"], tr["status"]) != (
        hr["total_amount"],
        hr["order_date"],
        hr["status"],
    ):
        raise BenchError("the two get endpoints disagree")
    bad = {"dealer": 1, "status": "bogus", "order_date": "2025-01-01", "total_amount": -1}
    bad_hand = {**{k: v for k, v in bad.items() if k != "dealer"}, "dealer_id": 1}
    expect(t.post("/api/v1/records/sales_order", json=bad, headers=th), 422, "trellis invalid")
    expect(h.post("/orders", json=bad_hand, headers=hh), 422, "hand invalid")
    missing = {"dealer": 999999, "order_date": "2025-01-01", "total_amount": 1}
    expect(
        t.post("/api/v1/records/sales_order", json=missing, headers=th),
        422,
        "trellis unknown dealer",
    )
    expect(
        h.post(
            "/orders",
            json={**{k: v for k, v in missing.items() if k != "dealer"}, "dealer_id": 999999},
            headers=hh,
        ),
        422,
        "hand unknown dealer",
    )
    expect(t.get("/api/v1/records/sales_order/1"), 401, "trellis no token")
    expect(h.get("/orders/1"), 401, "hand no token")
    expect(
        t.get("/api/v1/records/sales_order/1", headers={"Authorization": "Bearer trl_x"}),
        401,
        "trellis bad token",
    )
    expect(h.get("/orders/1", headers={"Authorization": "Bearer nope"}), 401, "hand bad token")


# =====================================================================================
# Timing
# =====================================================================================


def operations(env: dict[str, Any], seed: int, n: int) -> dict[str, dict[str, Any]]:
    """For each side and operation: a function running request ``i`` and its expected status."""
    rng = random.Random(7)
    bodies = payloads(n * 64, rng)  # enough for every round
    get_ids = [rng.randint(1, seed) for _ in range(n * 64)]
    filt = quote(json.dumps([["status", "=", LIST_STATUS]]))
    t, th = env["trellis"], env["trellis_headers"]
    h, hh = env["hand_app"].test_client(), env["hand_headers"]
    hand_bodies = [
        {"dealer_id": b["dealer"], **{k: v for k, v in b.items() if k != "dealer"}} for b in bodies
    ]
    list_t = f"/api/v1/records/sales_order?filter={filt}&sort=-order_date&limit={LIST_LIMIT}"
    list_h = f"/orders?status={LIST_STATUS}&limit={LIST_LIMIT}"
    return {
        "trellis": {
            "create": (
                lambda i: t.post("/api/v1/records/sales_order", json=bodies[i], headers=th),
                201,
            ),
            "get": (lambda i: t.get(f"/api/v1/records/sales_order/{get_ids[i]}", headers=th), 200),
            "list": (lambda i: t.get(list_t, headers=th), 200),
        },
        "hand": {
            "create": (lambda i: h.post("/orders", json=hand_bodies[i], headers=hh), 201),
            "get": (lambda i: h.get(f"/orders/{get_ids[i]}", headers=hh), 200),
            "list": (lambda i: h.get(list_h, headers=hh), 200),
        },
    }


CHUNK = 10  # requests per side before switching: both sides see the same conditions


def run_batch(fn: Any, status: int, start: int, count: int, what: str) -> float:
    """Run requests ``start`` … ``start + count - 1``; return the seconds they took."""
    begin = time.perf_counter()
    for i in range(start, start + count):
        response = fn(i)
        if response.status_code != status:
            raise BenchError(
                f"{what}: HTTP {response.status_code}: {response.get_data(as_text=True)[:300]}"
            )
    return time.perf_counter() - begin


def benchmark(
    env: dict[str, Any], seed: int, n: int, m: int, rounds: int, warmup: int
) -> tuple[dict[str, dict[str, list[float]]], dict[str, list[float]]]:
    """Per round and operation: the ops/s of each side, and their paired ratio.

    Within a round the two sides alternate every ``CHUNK`` requests (and which side
    goes first alternates too), so drift in the machine's speed hits both alike.
    """
    ops = operations(env, seed, n)
    counts = {"create": n, "get": n, "list": m}
    for side in ("trellis", "hand"):  # warm-up: caches, pools, compiled statements
        for op, (fn, status) in ops[side].items():
            run_batch(fn, status, 0, warmup, f"warm-up {side} {op}")
    created = warmup  # index of the next unused create payload
    floor_app = Flask("floor")
    floor_app.get("/ping")(lambda: jsonify({"ok": True}))
    floor = floor_app.test_client()
    floor_seconds = run_batch(
        lambda i: floor.get("/ping", headers=env["hand_headers"]), 200, 0, max(n, 200), "floor"
    )
    log(
        f"  floor: a bare Flask view returning JSON through the test client costs "
        f"{floor_seconds / max(n, 200) * 1e6:,.0f} µs per request (both sides pay it)"
    )
    results: dict[str, dict[str, list[float]]] = {
        s: {op: [] for op in counts} for s in ("trellis", "hand")
    }
    ratios: dict[str, list[float]] = {op: [] for op in counts}
    for r in range(rounds):
        for op, count in counts.items():
            gc.collect()
            seconds = {"trellis": 0.0, "hand": 0.0}
            base = created if op == "create" else r * count
            for k, chunk in enumerate(range(0, count, CHUNK)):
                size = min(CHUNK, count - chunk)
                order = ("trellis", "hand") if (k + r) % 2 == 0 else ("hand", "trellis")
                for side in order:
                    fn, status = ops[side][op]
                    seconds[side] += run_batch(fn, status, base + chunk, size, f"{side} {op}")
            if op == "create":
                created += count
            for side in seconds:
                results[side][op].append(count / seconds[side])
            ratios[op].append(seconds["hand"] / seconds["trellis"])
        log(
            f"  round {r + 1}/{rounds}: "
            + ", ".join(
                f"{op} T {results['trellis'][op][-1]:,.0f} / H {results['hand'][op][-1]:,.0f}"
                f" ({ratios[op][-1]:.2f})"
                for op in counts
            )
            + " ops/s"
        )
    return results, ratios


def profile_trellis(env: dict[str, Any], seed: int, count: int, top: int) -> None:
    ops = operations(env, seed, count)
    for op, (fn, status) in ops["trellis"].items():
        start = 40 * count if op == "create" else 0  # creates use fresh payloads
        gc.collect()
        profiler = cProfile.Profile()
        profiler.enable()
        run_batch(fn, status, start, count, f"profile {op}")
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.strip_dirs().sort_stats("tottime").print_stats(top)
        log(f"\n--- cProfile of {count} Trellis {op} requests, by own time ---")
        log("\n".join(line for line in out.getvalue().splitlines()[4:] if line.strip()))
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("cumulative").print_stats(r"trellis/", top)
        log("--- … trellis/ functions by cumulative time ---")
        log("\n".join(line for line in out.getvalue().splitlines()[4:] if line.strip()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, well under a minute")
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--pg-url",
        default=PG_ADMIN_URL,
        help="admin URL; the benchmark (re)creates database trellis_bench there",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the database afterwards (for inspection)"
    )
    parser.add_argument("--seed-rows", type=int, help="orders seeded on each side")
    parser.add_argument("--n", type=int, help="creates and gets per round")
    parser.add_argument("--m", type=int, help="list pages per round")
    parser.add_argument("--rounds", type=int)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after timing, cProfile the Trellis side of each operation",
    )
    args = parser.parse_args()
    seed = args.seed_rows or (500 if args.quick else 2000)
    n = args.n or (150 if args.quick else 500)
    m = args.m or (50 if args.quick else 200)
    rounds = args.rounds or (3 if args.quick else 5)
    warmup = 20 if args.quick else 50
    if not 1 <= rounds <= 60:
        raise BenchError("--rounds must be between 1 and 60")

    with database(args.db, args.pg_url, keep=args.keep) as url:
        safe_url = sa.make_url(url).render_as_string(hide_password=True)
        log(
            f"api_overhead on {args.db} ({safe_url}): seed {seed} orders/side, "
            f"{n} creates + {n} gets + {m} list pages per side per round, {rounds} rounds"
        )
        env = setup(url, seed)
        with env["app"].app_context():
            check_equivalence(env, seed)
            log("  both sides return the same data and refuse bad input with JSON errors")
            results, paired = benchmark(env, seed, n, m, rounds, warmup)
            if args.profile:
                profile_trellis(env, seed, max(n // 2, 50), 30)
        env["engine"].dispose()
        from trellis.extensions import database_of

        database_of(env["app"]).engine.dispose()

    log("")
    log(
        f"{'operation':<10}{'Trellis ops/s':>15}{'hand ops/s':>12}{'Trellis µs':>12}"
        f"{'hand µs':>9}{'ratio':>8}   per-round ratios"
    )
    ratios = {}
    for op in ("create", "get", "list"):
        tm = statistics.median(results["trellis"][op])
        hm = statistics.median(results["hand"][op])
        ratios[op] = statistics.median(paired[op])
        rounds_text = " ".join(f"{x:.2f}" for x in paired[op])
        log(
            f"{op:<10}{tm:>15,.0f}{hm:>12,.0f}{1e6 / tm:>12,.0f}{1e6 / hm:>9,.0f}"
            f"{ratios[op]:>8.2f}   {rounds_text}"
        )
    log(
        "ops/s, µs: median over rounds. ratio = Trellis ops/s ÷ hand-written ops/s, paired "
        "within each round, median over rounds (1.00 = parity, 0.50 = half the throughput)"
    )
    abs_ops = " ".join(
        f"{side}_{op}_ops={statistics.median(results[side][op]):.0f}"
        for op in ("create", "get", "list")
        for side in ("trellis", "hand")
    )
    log(
        f"RESULT api_overhead create_ratio={ratios['create']:.2f} "
        f"get_ratio={ratios['get']:.2f} list_ratio={ratios['list']:.2f} db={args.db} {abs_ops}"
    )


if __name__ == "__main__":
    main()
