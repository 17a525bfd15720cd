#!/usr/bin/env python
"""Scoped list: a hierarchy-scoped list page vs the same page unscoped, on PostgreSQL.

The channel pack is installed on a fresh PostgreSQL database (objects and roles, no
demo data) and its tables are filled with SQL: 10,000 dealers in a 4-level tree
(1 national → 20 regionals → 400 sub-distributors → 9,579 stores) with their
closure (``hierarchy.rebuild``), and 1,000,000 orders (``--quick``: 100,000).

Three users ask for the same page — submitted orders, newest first, 50 per page —
through ``GET /api/v1/records/sales_order`` (Flask's test client, one process):

* a ``dealer_admin`` whose partner is a sub-distributor (≈25 dealers below it);
* a "regional manager": a ``dealer_admin`` whose partner is a regional (≈500 dealers);
* an administrator, unscoped.

Ratio = scoped ms per request ÷ unscoped ms per request (aim ≤ 1.5). Before timing,
every page is checked against an independent SQL answer (the subtree walked from the
``parent`` pointers with a recursive CTE, not from the closure table).

    python bench/scoped_list.py [--quick] [--orders N] [--rounds R] [--requests N]
                                [--candidates | --no-candidates] [--keep] [--pg-url URL]
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from _common import (
    PG_ADMIN_URL,
    BenchError,
    drop_postgres,
    expect,
    fresh_postgres,
    log,
    trellis_app,
)

DB_NAME = "trellis_bench_scoped"
PASSWORD = "bench password 123"

# The tree: 1 national → REGIONALS → SUBS → the rest are stores (level left empty:
# the pack's picklist has three tiers, national / regional / sub_distributor).
DEALERS = 10_000
REGIONALS = 20
SUBS = 400
FIRST_REGIONAL = 2
FIRST_SUB = FIRST_REGIONAL + REGIONALS  # 22
FIRST_STORE = FIRST_SUB + SUBS  # 422
REGIONS = ("east", "north", "south", "central", "southwest", "northwest", "northeast")

# The page every user asks for.
LIST_STATUS = "submitted"
LIST_LIMIT = 50
LIST_URL = (
    "/api/v1/records/sales_order?filter="
    + quote(json.dumps([["status", "=", LIST_STATUS]]))
    + f"&sort=-order_date&limit={LIST_LIMIT}"
)
SIDES = ("admin", "dealer", "regional")
CHUNK = 10  # requests per side before switching: the sides see the same conditions

# Indexes tried when a ratio is above 1.5 (or with --candidates): each set is created in
# the benchmark's own database, the pages are re-timed, and the set is undone again.
# The channel pack already gives obj_sales_order single-column indexes on dealer (every
# lookup is indexed), status and order_date (x-indexed).
DEALER_STATUS_DATE = (
    "CREATE INDEX bench_ix_so_dealer_status_date"
    " ON obj_sales_order (dealer, status, order_date, id)"
)
STATUS_DATE = "CREATE INDEX bench_ix_so_status_date ON obj_sales_order (status, order_date, id)"
DROP_DEALER_STATUS_DATE = "DROP INDEX bench_ix_so_dealer_status_date"
DROP_STATUS_DATE = "DROP INDEX bench_ix_so_status_date"
# hierarchy_links' descendant index (object_name, descendant_id) widened with ancestor_id,
# so the semi-join probe "is this dealer below :partner?" is index-only.
WIDEN_DESCENDANT = (
    "DROP INDEX ix_hierarchy_links_descendant",
    "CREATE INDEX ix_hierarchy_links_descendant"
    " ON hierarchy_links (object_name, descendant_id, ancestor_id)",
)
RESTORE_DESCENDANT = (
    "DROP INDEX ix_hierarchy_links_descendant",
    "CREATE INDEX ix_hierarchy_links_descendant ON hierarchy_links (object_name, descendant_id)",
)


@dataclass(frozen=True)
class Candidate:
    label: str
    create: tuple[str, ...]
    undo: tuple[str, ...]
    adaptive: bool = False  # the query-shape experiment below, on top of the indexes


# A scope of at least this many partners is written as a hashed sub-plan (see
# adaptive_scope_form); a smaller one keeps the semi-join. Rough break-even: the
# semi-join reads every matching order in scope, the ordered walk about
# limit × partners / scope rows, so the walk wins once a scope is more than about
# sqrt(limit / matching orders) of the network — here ≈ 2 %, some 200 dealers.
ADAPTIVE_THRESHOLD = 200


CANDIDATES = (
    Candidate("+ (dealer,status,order_date,id)", (DEALER_STATUS_DATE,), (DROP_DEALER_STATUS_DATE,)),
    Candidate("+ (status,order_date,id)", (STATUS_DATE,), (DROP_STATUS_DATE,)),
    Candidate(
        "+ both",
        (DEALER_STATUS_DATE, STATUS_DATE),
        (DROP_DEALER_STATUS_DATE, DROP_STATUS_DATE),
    ),
    Candidate(
        "+ both, links (object,descendant,ancestor)",
        (DEALER_STATUS_DATE, STATUS_DATE, *WIDEN_DESCENDANT),
        (DROP_DEALER_STATUS_DATE, DROP_STATUS_DATE, *RESTORE_DESCENDANT),
    ),
    Candidate(
        "+ both, adaptive scope form (experiment)",
        (DEALER_STATUS_DATE, STATUS_DATE),
        (DROP_DEALER_STATUS_DATE, DROP_STATUS_DATE),
        adaptive=True,
    ),
)


# =====================================================================================
# Setup: the pack, the data, the users
# =====================================================================================


def install_channel_pack(app: Any) -> None:
    """Objects and roles of the built-in channel pack, no demo data (as the CLI does it)."""
    from trellis.extensions import db
    from trellis.platform.runtime.packs import install_pack, resolve_pack

    registry = app.extensions["trellis.registry"]
    with app.app_context(), db.session() as session:
        result = install_pack(
            session, registry, resolve_pack("channel_pack"), author_id=None, with_demo=False
        )
        session.commit()
    log(f"  installed {result.name} {result.version}: {', '.join(result.created)}")


def load_dealers(engine: sa.Engine) -> None:
    """10,000 dealers in one INSERT … SELECT generate_series, ids 1…10,000 given explicitly."""
    regions = "ARRAY[" + ", ".join(f"'{r}'" for r in REGIONS) + "]"
    # The parent of each tier, from the dealer's id g; stores and sub-distributors are
    # dealt round-robin to their parents so the subtrees are even (±1).
    parent = (
        f"CASE WHEN g = 1 THEN NULL"
        f" WHEN g < {FIRST_SUB} THEN 1"
        f" WHEN g < {FIRST_STORE} THEN {FIRST_REGIONAL} + (g - {FIRST_SUB}) % {REGIONALS}"
        f" ELSE {FIRST_SUB} + (g - {FIRST_STORE}) % {SUBS} END"
    )
    regional_index = (  # which regional (0…19) the dealer is under, for its region
        f"CASE WHEN g < {FIRST_SUB} THEN g - {FIRST_REGIONAL}"
        f" WHEN g < {FIRST_STORE} THEN (g - {FIRST_SUB}) % {REGIONALS}"
        f" ELSE ((g - {FIRST_STORE}) % {SUBS}) % {REGIONALS} END"
    )
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO obj_dealer (id, version, created_at, updated_at, name, code,"  # noqa: S608
                " parent, level, region, credit_limit, active, joined_on)"
                " SELECT g, 1, now(), now(),"
                " 'Dealer ' || lpad(g::text, 5, '0'), 'D-' || lpad(g::text, 5, '0'),"
                f" {parent},"
                f" CASE WHEN g = 1 THEN 'national' WHEN g < {FIRST_SUB} THEN 'regional'"
                f" WHEN g < {FIRST_STORE} THEN 'sub_distributor' END,"
                f" CASE WHEN g = 1 THEN NULL"
                f" ELSE ({regions})[1 + ({regional_index}) % {len(REGIONS)}] END,"
                " (g % 50) * 10000, true, DATE '2015-01-01' + (g % 3000)"
                " FROM generate_series(1, :dealers) AS g"
            ),
            {"dealers": DEALERS},
        )
        connection.execute(
            sa.text("SELECT setval(pg_get_serial_sequence('obj_dealer', 'id'), :n)"),
            {"n": DEALERS},
        )


def build_closure(app: Any) -> dict[str, Any]:
    """The closure table from the parent pointers, by Trellis's own set-based rebuild.

    Every statement it sends is counted and timed (with the driver's own row count),
    so a loop that does not stop at the first empty level shows.
    """
    from trellis.extensions import database_of
    from trellis.platform.runtime.hierarchy import rebuild

    registry = app.extensions["trellis.registry"]
    database = database_of(app)
    statements: list[tuple[float, int]] = []  # (seconds, rows) of each INSERT
    started: list[float] = []

    def before(*_: Any) -> None:
        started.append(time.perf_counter())

    def after(_conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        seconds = time.perf_counter() - started.pop()
        if statement.startswith("INSERT INTO hierarchy_links"):
            statements.append((seconds, cursor.rowcount))

    sa.event.listen(database.engine, "before_cursor_execute", before)
    sa.event.listen(database.engine, "after_cursor_execute", after)
    try:
        with database.session() as session:
            registry.ensure_current(session)
            links = rebuild(session, registry.get("dealer"), "parent")
            session.commit()
    finally:
        sa.event.remove(database.engine, "before_cursor_execute", before)
        sa.event.remove(database.engine, "after_cursor_execute", after)
    useful = [seconds for seconds, rows in statements if rows > 0]
    empty = [seconds for seconds, rows in statements if rows <= 0]
    return {
        "links": links,
        "inserts": len(statements),
        "useful": len(useful),
        "useful_seconds": sum(useful),
        "empty_seconds": sum(empty),
    }


def check_closure(engine: sa.Engine) -> dict[int, int]:
    """The closure equals the tree (walked independently); returns {depth: links}."""
    with engine.connect() as connection:
        walked = (
            "WITH RECURSIVE up(ancestor_id, descendant_id, depth) AS ("
            " SELECT id, id, 0 FROM obj_dealer"
            " UNION ALL"
            " SELECT d.parent, up.descendant_id, up.depth + 1"
            " FROM up JOIN obj_dealer d ON d.id = up.ancestor_id WHERE d.parent IS NOT NULL)"
            " SELECT ancestor_id, descendant_id, depth FROM up"
        )
        stored = (
            "SELECT ancestor_id, descendant_id, depth FROM hierarchy_links"
            " WHERE object_name = 'dealer'"
        )
        missing = connection.execute(
            sa.text(f"SELECT count(*) FROM (({walked}) EXCEPT ({stored})) AS x")  # noqa: S608
        ).scalar_one()
        extra = connection.execute(
            sa.text(f"SELECT count(*) FROM (({stored}) EXCEPT ({walked})) AS x")  # noqa: S608
        ).scalar_one()
        by_depth = dict(
            connection.execute(
                sa.text(
                    "SELECT depth, count(*) FROM hierarchy_links WHERE object_name = 'dealer'"
                    " GROUP BY depth ORDER BY depth"
                )
            ).all()
        )
        levels = connection.execute(
            sa.text("SELECT max(depth) FROM hierarchy_links WHERE object_name = 'dealer'")
        ).scalar_one()
    if missing or extra:
        raise BenchError(
            f"the closure table does not match the tree: {missing} link(s) missing, {extra} extra"
        )
    stores = DEALERS - FIRST_STORE + 1
    expected = {
        0: DEALERS,
        1: DEALERS - 1,
        2: SUBS + stores,
        3: stores,
    }
    if by_depth != expected or levels != 3:
        raise BenchError(f"the closure has {by_depth} links by depth, expected {expected}")
    return by_depth


def load_orders(engine: sa.Engine, orders: int) -> None:
    """``orders`` orders in one INSERT … SELECT generate_series (seeded, so reproducible).

    A fifth of the orders go to the 421 distributors (national, regionals,
    sub-distributors), four fifths to the 9,579 stores: a distributor orders about
    19 times as much as a store. Statuses are weighted (10 % submitted); order dates
    span 2025; amounts 0–50,000.
    """
    status = (
        "CASE WHEN r.s < 0.05 THEN 'draft' WHEN r.s < 0.15 THEN 'submitted'"
        " WHEN r.s < 0.25 THEN 'approved' WHEN r.s < 0.32 THEN 'confirmed'"
        " WHEN r.s < 0.42 THEN 'shipped' WHEN r.s < 0.52 THEN 'received'"
        " WHEN r.s < 0.92 THEN 'paid' ELSE 'cancelled' END"
    )
    dealer = (
        f"CASE WHEN r.w < 0.2 THEN 1 + floor(r.d * {FIRST_STORE - 1})"
        f" ELSE {FIRST_STORE} + floor(r.d * {DEALERS - FIRST_STORE + 1}) END"
    )
    with engine.begin() as connection:
        connection.execute(sa.text("SELECT setseed(0.42)"))
        connection.execute(
            sa.text(
                "INSERT INTO obj_sales_order (version, created_at, updated_at, number, dealer,"  # noqa: S608
                " status, order_date, total_amount, currency)"
                " SELECT 1, now(), now(), 'SO-B-' || lpad(r.g::text, 7, '0'),"
                f" {dealer}, {status},"
                " DATE '2025-01-01' + floor(r.t * 365)::int,"
                " round((r.a * 50000)::numeric, 2), 'CNY'"
                " FROM (SELECT g, random() AS w, random() AS d, random() AS s,"
                " random() AS t, random() AS a FROM generate_series(1, :orders) AS g) AS r"
            ),
            {"orders": orders},
        )


def vacuum_analyze(engine: sa.Engine) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("VACUUM ANALYZE"))


def pick_partners(engine: sa.Engine) -> dict[str, int]:
    """A typical sub-distributor (median subtree order count) and a typical regional."""
    with engine.connect() as connection:
        counts = {}
        for level in ("sub_distributor", "regional"):
            rows = connection.execute(
                sa.text(
                    "SELECT d.id, count(o.id) FROM obj_dealer d"
                    " JOIN hierarchy_links h ON h.object_name = 'dealer' AND h.ancestor_id = d.id"
                    " JOIN obj_sales_order o ON o.dealer = h.descendant_id"
                    " WHERE d.level = :level GROUP BY d.id ORDER BY count(o.id), d.id"
                ),
                {"level": level},
            ).all()
            counts[level] = rows[len(rows) // 2][0]
    return {"dealer": counts["sub_distributor"], "regional": counts["regional"]}


def create_users(app: Any, partners: dict[str, int]) -> dict[str, dict[str, str]]:
    """The three callers, through UserService; returns the request headers of each."""
    from trellis.extensions import db
    from trellis.platform.runtime.identity import UserService
    from trellis.platform.runtime.identity.tokens import issue_token

    registry = app.extensions["trellis.registry"]
    users = {
        "admin": {"email": "hq@example.com", "roles": ["hq_admin"], "is_admin": True},
        "dealer": {
            "email": "sub.admin@example.com",
            "roles": ["dealer_admin"],
            "partner": partners["dealer"],
        },
        "regional": {
            "email": "regional.manager@example.com",
            "roles": ["dealer_admin"],
            "partner": partners["regional"],
        },
    }
    headers = {}
    with app.app_context(), db.session() as session:
        registry.ensure_current(session)
        service = UserService(session, registry, None)
        for side, data in users.items():
            service.create({**data, "password": PASSWORD})
            token = issue_token(session, data["email"], name="scoped_list bench")
            headers[side] = {"Authorization": f"Bearer {token}"}
        session.commit()
    return headers


# =====================================================================================
# Checks: every page against an independent SQL answer
# =====================================================================================

SUBTREE = (  # the partner's subtree walked from the parent pointers, not the closure table
    "WITH RECURSIVE tree(id) AS (SELECT CAST(:partner AS bigint)"
    " UNION ALL SELECT d.id FROM obj_dealer d JOIN tree ON d.parent = tree.id)"
)


def expected_scope(engine: sa.Engine, partner: int | None) -> tuple[set[int], list[int], int]:
    """(dealer ids in scope, order ids in list order, submitted orders in scope).

    For the unscoped admin the id list is the first page only.
    """
    scope = "" if partner is None else " AND o.dealer IN (SELECT id FROM tree)"
    prefix = "" if partner is None else SUBTREE
    limit = LIST_LIMIT if partner is None else None
    with engine.connect() as connection:
        dealers: set[int] = set()
        if partner is not None:
            found = connection.execute(
                sa.text(SUBTREE + " SELECT id FROM tree"),  # noqa: S608
                {"partner": partner},
            ).scalars()
            dealers = set(found)
        ordered = list(
            connection.execute(
                sa.text(
                    f"{prefix} SELECT o.id FROM obj_sales_order o"  # noqa: S608
                    f" WHERE o.deleted_at IS NULL AND o.status = :status{scope}"
                    " ORDER BY o.order_date DESC, o.id DESC LIMIT :limit"
                ),
                {"partner": partner, "status": LIST_STATUS, "limit": limit},
            ).scalars()
        )
        count = connection.execute(
            sa.text(
                f"{prefix} SELECT count(*) FROM obj_sales_order o"  # noqa: S608
                f" WHERE o.deleted_at IS NULL AND o.status = :status{scope}"
            ),
            {"partner": partner, "status": LIST_STATUS},
        ).scalar_one()
    return dealers, ordered, int(count)


def walk_all_pages(client: Any, headers: dict[str, str]) -> list[dict[str, Any]]:
    """Every submitted order the caller can see, by following next_cursor (500 a page)."""
    url = LIST_URL.replace(f"limit={LIST_LIMIT}", "limit=500")
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = expect(
            client.get(url + (f"&cursor={quote(cursor)}" if cursor else ""), headers=headers),
            200,
            "walk the pages",
        )
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            return items


def verify(
    client: Any, engine: sa.Engine, headers: dict[str, dict[str, str]], partners: dict[str, int]
) -> dict[str, dict[str, int]]:
    """Each caller's first page is exactly the right one and every order on it is theirs."""
    facts: dict[str, dict[str, int]] = {}
    for side in SIDES:
        partner = partners.get(side)
        dealers, ordered, count = expected_scope(engine, partner)
        got = expect(client.get(LIST_URL, headers=headers[side]), 200, f"{side} page")["items"]
        ids = [item["id"] for item in got]
        if ids != ordered[:LIST_LIMIT]:
            raise BenchError(f"{side}: the first page differs from the SQL answer")
        if any(item["status"] != LIST_STATUS for item in got):
            raise BenchError(f"{side}: the page holds an order that is not {LIST_STATUS}")
        if partner is not None:
            outside = [item["id"] for item in got if item["dealer"] not in dealers]
            if outside:
                raise BenchError(f"{side}: orders of dealers outside the subtree: {outside[:5]}")
            if "internal_notes" in got[0]:
                raise BenchError(f"{side}: internal_notes is hidden from dealer_admin but shown")
            every = walk_all_pages(client, headers[side])
            if [item["id"] for item in every] != ordered or len(ordered) != count:
                raise BenchError(
                    f"{side}: walking every page gives {len(every)} orders, expected exactly "
                    f"the subtree's {count}, in order"
                )
        facts[side] = {"dealers": len(dealers), "submitted": count}
    if not (
        0
        < facts["dealer"]["submitted"]
        < facts["regional"]["submitted"]
        < facts["admin"]["submitted"]
    ):
        raise BenchError(f"the scopes do not nest as expected: {facts}")
    # And a record outside the caller's tree answers 404 (not 403), inside 200.
    with engine.connect() as connection:
        inside, outside = connection.execute(
            sa.text(
                f"{SUBTREE} SELECT"  # noqa: S608
                " (SELECT min(id) FROM obj_sales_order WHERE dealer IN (SELECT id FROM tree)),"
                " (SELECT min(id) FROM obj_sales_order WHERE dealer NOT IN (SELECT id FROM tree))"
            ),
            {"partner": partners["dealer"]},
        ).one()
    record = "/api/v1/records/sales_order/{}"
    expect(client.get(record.format(inside), headers=headers["dealer"]), 200, "own order")
    expect(client.get(record.format(outside), headers=headers["dealer"]), 404, "foreign order")
    return facts


# =====================================================================================
# Timing
# =====================================================================================


def time_requests(client: Any, headers: dict[str, str], count: int, what: str) -> float:
    begin = time.perf_counter()
    for _ in range(count):
        response = client.get(LIST_URL, headers=headers)
        if response.status_code != 200:
            raise BenchError(
                f"{what}: HTTP {response.status_code}: {response.get_data(as_text=True)[:300]}"
            )
    return time.perf_counter() - begin


class SqlClock:
    """Time spent executing the list statement (on obj_sales_order) inside the requests."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def before(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self._started = time.perf_counter()

    def after(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "FROM obj_sales_order" in statement:
            self.seconds += time.perf_counter() - self._started

    @contextmanager
    def listening(self) -> Iterator[SqlClock]:
        from trellis.extensions import db

        sa.event.listen(db.engine, "before_cursor_execute", self.before)
        sa.event.listen(db.engine, "after_cursor_execute", self.after)
        try:
            yield self
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", self.before)
            sa.event.remove(db.engine, "after_cursor_execute", self.after)


def benchmark(
    client: Any, headers: dict[str, dict[str, str]], rounds: int, requests: int, warmup: int
) -> dict[str, list[float]]:
    """ms per request of each side, per round; the sides alternate every CHUNK requests.

    ``<side>_sql``: of that, ms executing the list statement (the driver's execute).
    """
    for side in SIDES:
        time_requests(client, headers[side], warmup, f"warm-up {side}")
    results: dict[str, list[float]] = {key: [] for side in SIDES for key in (side, f"{side}_sql")}
    clock = SqlClock()
    with clock.listening():
        for r in range(rounds):
            gc.collect()
            seconds = dict.fromkeys(SIDES, 0.0)
            sql = dict.fromkeys(SIDES, 0.0)
            for k, chunk in enumerate(range(0, requests, CHUNK)):
                size = min(CHUNK, requests - chunk)
                shift = (k + r) % len(SIDES)  # rotate which side goes first
                for side in SIDES[shift:] + SIDES[:shift]:
                    before = clock.seconds
                    seconds[side] += time_requests(client, headers[side], size, side)
                    sql[side] += clock.seconds - before
            for side in SIDES:
                results[side].append(seconds[side] / requests * 1000)
                results[f"{side}_sql"].append(sql[side] / requests * 1000)
            log(
                f"  round {r + 1}/{rounds}: "
                + ", ".join(
                    f"{side} {results[side][-1]:.2f} ms (SQL {results[f'{side}_sql'][-1]:.2f})"
                    for side in SIDES
                )
                + f"  ratios dealer {results['dealer'][-1] / results['admin'][-1]:.2f},"
                f" regional {results['regional'][-1] / results['admin'][-1]:.2f}"
            )
    return results


def summarise(results: dict[str, list[float]]) -> dict[str, float]:
    """Median ms per side (and its SQL), and the ratios paired within each round."""
    out = {key: statistics.median(values) for key, values in results.items()}
    for side in ("dealer", "regional"):
        out[f"{side}_ratio"] = statistics.median(
            s / a for s, a in zip(results[side], results["admin"], strict=True)
        )
    return out


# =====================================================================================
# Plans: the SQL Trellis sends, EXPLAIN ANALYZE'd
# =====================================================================================


@contextmanager
def captured_sql(engine: sa.Engine) -> Iterator[list[tuple[str, Any]]]:
    """The statements on obj_sales_order the engine executes inside the block."""
    seen: list[tuple[str, Any]] = []

    def listener(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM obj_sales_order" in statement:
            seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", listener)


def list_statement(client: Any, headers: dict[str, str]) -> tuple[str, Any]:
    """The SELECT Trellis sends for the page, with its parameters, caught on the way out."""
    from trellis.extensions import db

    with captured_sql(db.engine) as seen:
        expect(client.get(LIST_URL, headers=headers), 200, "capture the list SQL")
    if len(seen) != 1:
        raise BenchError(f"expected one list statement, captured {len(seen)}")
    return seen[0]


def explain(engine: sa.Engine, statement: str, parameters: Any) -> list[str]:
    with engine.connect() as connection:
        connection.exec_driver_sql(statement, parameters).all()  # warm the cache first
        rows = connection.exec_driver_sql(
            "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters
        ).all()
    return [row[0] for row in rows]


def statement_ms(engine: sa.Engine, statement: str, parameters: Any, runs: int = 15) -> float:
    """Median ms to run the statement and fetch its rows, straight on the database."""
    times = []
    with engine.connect() as connection:
        connection.exec_driver_sql(statement, parameters).all()
        for _ in range(runs):
            begin = time.perf_counter()
            connection.exec_driver_sql(statement, parameters).all()
            times.append((time.perf_counter() - begin) * 1000)
    return statistics.median(times)


NODE = re.compile(r"^\s*(?:->\s*)?([A-Z][A-Za-z ]+?)(?: using (\S+))?(?: on (\S+))?\s+\(cost")


def plan_shape(lines: list[str]) -> str:
    """The plan's nodes, outermost first: 'Limit > Sort > Nested Loop > …'."""
    nodes = []
    for line in lines:
        match = NODE.match(line)
        if match:
            kind, index, table = match.groups()
            nodes.append(
                kind
                + (f" [{index}]" if index else "")
                + ("" if index else f" {table or ''}").rstrip()
            )
    return " > ".join(nodes)


def plan_figures(lines: list[str]) -> str:
    execution = next(
        (m.group(1) for line in lines if (m := re.search(r"Execution Time: ([\d.]+)", line))), "?"
    )
    buffers = next(
        (m.group(1) for line in lines if (m := re.search(r"shared hit=(\d+)", line))), "?"
    )
    return f"{execution} ms, {buffers} buffers hit"


# The scope condition as access.py renders it, and the same set as a materialised CTE:
# a query shape access.py could emit instead (timed here on the database only).
SCOPE_IN = re.compile(
    r"obj_sales_order\.dealer IN \((SELECT hierarchy_links\.descendant_id\s+FROM hierarchy_links"
    r"\s+WHERE (?:[^()]|\(\w+\))*?)\)"  # %(name)s parameters are the only parentheses
)


def cte_shape(statement: str) -> str:
    """``dealer IN (SELECT … FROM hierarchy_links …)`` as ``WITH scope AS MATERIALIZED (…)``."""
    match = SCOPE_IN.search(statement)
    if match is None:
        raise BenchError("the scoped list SQL has no 'dealer IN (SELECT … hierarchy_links …)'")
    head, tail = statement[: match.start()], statement[match.end() :]
    scope = "obj_sales_order.dealer IN (SELECT descendant_id FROM scope)"
    return f"WITH scope AS MATERIALIZED ({match.group(1)}) {head}{scope}{tail}"


def hashed_shape(statement: str) -> str:
    """``dealer IN (SELECT …)`` as ``(dealer IN (SELECT …)) IS true``: not pulled up into a
    semi-join, so PostgreSQL checks it against a hash of the scope built once."""
    match = SCOPE_IN.search(statement)
    if match is None:
        raise BenchError("the scoped list SQL has no 'dealer IN (SELECT … hierarchy_links …)'")
    head, tail = statement[: match.start()], statement[match.end() :]
    return f"{head}({match.group(0)}) IS true{tail}"


def show_plans(
    client: Any,
    engine: sa.Engine,
    headers: dict[str, dict[str, str]],
    full: set[str],
    variants: bool = True,
) -> dict[str, float]:
    """Each side's list SQL: its plan (whole for ``full``) and its median DB time in ms.

    With ``variants``, two other forms of each scoped query run too — the scope as a
    materialised CTE (``<side>_cte``) and as a hashed sub-plan (``<side>_hashed``);
    each must return the same rows.
    """
    ms = {}
    for side in SIDES:
        statement, parameters = list_statement(client, headers[side])
        lines = explain(engine, statement, parameters)
        ms[side] = statement_ms(engine, statement, parameters)
        if side in full:
            log(f"  SQL of the {side} page, as Trellis sends it ({parameters}):")
            log("    " + " ".join(statement.split()))
            log(f"  EXPLAIN (ANALYZE, BUFFERS) of the {side} page:")
            log("\n".join("    " + line for line in lines))
        log(f"  plan {side:<8} ({plan_figures(lines)}): {plan_shape(lines)}")
        if side == "admin" or not variants or SCOPE_IN.search(statement) is None:
            continue  # the other forms rewrite the sub-select form; a bound list has none
        for form, variant in (("cte", cte_shape(statement)), ("hashed", hashed_shape(statement))):
            with engine.connect() as connection:
                same = (
                    connection.exec_driver_sql(statement, parameters).all()
                    == connection.exec_driver_sql(variant, parameters).all()
                )
            if not same:
                raise BenchError(f"{side}: the {form} form of the query returns other rows")
            variant_lines = explain(engine, variant, parameters)
            ms[f"{side}_{form}"] = statement_ms(engine, variant, parameters)
            log(f"    as {form} ({plan_figures(variant_lines)}): {plan_shape(variant_lines)}")
    log(
        "  the list SQL alone, straight on the database (median of 15): "
        + ", ".join(f"{side} {ms[side]:.2f} ms" for side in SIDES)
    )
    if "dealer_cte" in ms:
        log(
            "  the same with the scope as a materialised CTE: "
            f"dealer {ms['dealer_cte']:.2f} ms, regional {ms['regional_cte']:.2f} ms; "
            f"as a hashed sub-plan: dealer {ms['dealer_hashed']:.2f} ms, "
            f"regional {ms['regional_hashed']:.2f} ms"
        )
    return ms


@contextmanager
def adaptive_scope_form(threshold: int) -> Iterator[None]:
    """EXPERIMENT: access.py's hierarchy condition, rewritten at run time in this process.

    Nothing in the repository changes. While the block runs, a scope of ``threshold``
    partners or more is sent as ``(dealer IN (SELECT …)) IS true`` — a hashed sub-plan
    checked while walking an index in sort order — and a smaller one as the usual
    semi-join. The scope size costs one extra indexed count per request, on the
    request's own connection (a real implementation could cache it per partner and
    closure change).
    """
    from flask import g, has_request_context

    from trellis.extensions import db
    from trellis.platform.runtime import access
    from trellis.platform.runtime.hierarchy import links

    original = access.Access._in_partner_tree

    def in_partner_tree(self: Any, meta: Any, partner_id: int, depth: int) -> Any:
        condition = original(self, meta, partner_id, depth)
        scope_field = meta.definition.scope_field
        if condition is None or scope_field is None:
            return condition
        target = str(meta.fields[scope_field].target)
        count = (
            sa.select(sa.func.count())
            .select_from(links)
            .where(links.c.object_name == target, links.c.ancestor_id == partner_id)
        )
        if has_request_context() and "session" in g:  # the request's own connection
            size = g.session.execute(count).scalar_one()
        else:
            with db.engine.connect() as connection:
                size = connection.execute(count).scalar_one()
        return condition.is_(sa.true()) if size >= threshold else condition

    access.Access._in_partner_tree = in_partner_tree  # type: ignore[method-assign]
    try:
        yield
    finally:
        access.Access._in_partner_tree = original  # type: ignore[method-assign]


# =====================================================================================
# Candidates: indexes the object definition could declare
# =====================================================================================


def run_ddl(engine: sa.Engine, statements: tuple[str, ...]) -> None:
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(sa.text(statement))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("ANALYZE obj_sales_order"))
        connection.execute(sa.text("ANALYZE hierarchy_links"))


def try_candidates(
    client: Any,
    engine: sa.Engine,
    headers: dict[str, dict[str, str]],
    partners: dict[str, int],
    rounds: int,
    requests: int,
    warmup: int,
) -> list[tuple[str, dict[str, float], dict[str, float]]]:
    outcomes = []
    for candidate in CANDIDATES:
        log(f"\n--- candidate: {candidate.label} ---")
        begin = time.perf_counter()
        run_ddl(engine, candidate.create)
        log(f"  built in {time.perf_counter() - begin:.1f} s: " + "; ".join(candidate.create))
        try:
            with adaptive_scope_form(ADAPTIVE_THRESHOLD) if candidate.adaptive else nullcontext():
                if candidate.adaptive:
                    log(
                        f"  EXPERIMENT: a scope of ≥ {ADAPTIVE_THRESHOLD} dealers is sent as "
                        "(dealer IN (SELECT …)) IS true (access.py patched in this process only)"
                    )
                    verify(client, engine, headers, partners)
                    log("  checked again: every page as before")
                db_ms = show_plans(
                    client, engine, headers, full=set(), variants=not candidate.adaptive
                )
                figures = summarise(benchmark(client, headers, rounds, requests, warmup))
        finally:
            run_ddl(engine, candidate.undo)
        outcomes.append((candidate.label, figures, db_ms))
    return outcomes


# =====================================================================================


def timed(what: str, step: Callable[[], Any]) -> tuple[Any, float]:
    begin = time.perf_counter()
    value = step()
    seconds = time.perf_counter() - begin
    log(f"  {what}: {seconds:.1f} s")
    return value, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 orders instead of 1,000,000")
    parser.add_argument("--orders", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--requests", type=int, help="requests per side per round")
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--candidates",
        action="store_true",
        help="always time the candidate indexes (default: only when a ratio is above 1.5)",
    )
    group.add_argument("--no-candidates", action="store_true", help="never time them")
    parser.add_argument(
        "--keep", action="store_true", help=f"keep database {DB_NAME} afterwards (for inspection)"
    )
    parser.add_argument(
        "--pg-url",
        default=PG_ADMIN_URL,
        help=f"admin URL; the benchmark (re)creates database {DB_NAME} there",
    )
    args = parser.parse_args()
    orders = args.orders or (100_000 if args.quick else 1_000_000)
    rounds = args.rounds or (3 if args.quick else 5)
    requests = args.requests or (50 if args.quick else 100)
    warmup = 20
    if not 1 <= rounds <= 60 or not 1 <= requests <= 10_000 or orders < 10_000:
        raise BenchError("--rounds 1…60, --requests 1…10000, --orders ≥ 10000")

    url = fresh_postgres(args.pg_url, DB_NAME)  # exits non-zero when unreachable
    log(
        f"scoped_list on {sa.make_url(url).render_as_string(hide_password=True)}: "
        f"{DEALERS:,} dealers, {orders:,} orders; {rounds} rounds of {requests} requests per side"
    )
    # No server-side prepared statements on the benchmark's own connection: in the app every
    # request ends in a ROLLBACK, which makes psycopg forget its prepared statements, so each
    # list query is planned afresh for its parameters; timing it here must do the same
    # (after five runs of one prepared statement PostgreSQL may switch to a generic plan).
    engine = sa.create_engine(url, connect_args={"prepare_threshold": None})
    outcomes = []
    try:
        app, _ = trellis_app(url)
        client = app.test_client()
        install_channel_pack(app)
        log("loading (SQL straight into the obj_ tables):")
        loads = {}
        _, loads["dealers"] = timed(f"{DEALERS:,} dealers", lambda: load_dealers(engine))
        closure, loads["closure"] = timed("closure (hierarchy.rebuild)", lambda: build_closure(app))
        by_depth = check_closure(engine)
        log(
            f"  closure: {closure['links']:,} links, by depth {by_depth}; equals the tree "
            "walked from the parent pointers"
        )
        log(
            f"  hierarchy.rebuild sent {closure['inserts']} INSERT … SELECT statements: "
            f"{closure['useful']} that inserted rows ({closure['useful_seconds']:.2f} s) and "
            f"{closure['inserts'] - closure['useful']} empty ones "
            f"({closure['empty_seconds']:.2f} s)"
        )
        if closure["inserts"] > closure["useful"] + 1:
            log(
                "  NOTE: rebuild's loop did not stop at the first empty level. It stops on the "
                "INSERT's rowcount, which SQLAlchemy 2 reports as -1 for INSERT … SELECT "
                "unless the statement runs with execution_options(preserve_rowcount=True); "
                "it then runs on until depth > 1000."
            )
        _, loads["orders"] = timed(f"{orders:,} orders", lambda: load_orders(engine, orders))
        _, loads["analyze"] = timed("VACUUM ANALYZE", lambda: vacuum_analyze(engine))
        partners = pick_partners(engine)
        headers = create_users(app, partners)

        with app.app_context():
            facts = verify(client, engine, headers, partners)
            log(
                f"  checked: sub-distributor {partners['dealer']} sees "
                f"{facts['dealer']['dealers']} dealers / {facts['dealer']['submitted']:,} "
                f"submitted orders; regional {partners['regional']} sees "
                f"{facts['regional']['dealers']} dealers / {facts['regional']['submitted']:,}; "
                f"admin sees {facts['admin']['submitted']:,}. Each first page equals the SQL "
                "answer, every order on it is in the caller's subtree, walking every page of "
                "the scoped callers gives exactly their orders in order, a foreign order "
                "answers 404."
            )
            log("plans (indexes as the channel pack declares them):")
            db_ms = show_plans(client, engine, headers, full={"regional"})
            log("timing (GET through the test client, ms per request):")
            figures = summarise(benchmark(client, headers, rounds, requests, warmup))
            over = max(figures["dealer_ratio"], figures["regional_ratio"]) > 1.5
            if args.candidates or (over and not args.no_candidates):
                log(
                    ("\nA ratio is above 1.5: timing" if over else "\n--candidates: timing")
                    + " candidate indexes (created in this database only, undone after)"
                    " and one query-shape experiment"
                )
                outcomes = try_candidates(
                    client, engine, headers, partners, rounds, requests, warmup
                )
    finally:
        engine.dispose()
        from trellis.extensions import database_of

        database_of(app).engine.dispose()
        if not args.keep:
            drop_postgres(args.pg_url, DB_NAME)

    log("")
    log(
        "load: "
        + ", ".join(f"{what} {seconds:.1f} s" for what, seconds in loads.items())
        + f" (total {sum(loads.values()):.1f} s)"
    )
    log(
        f"{'indexes':<44}{'admin':>8}{'dealer':>8}{'region':>8}{'d ratio':>8}{'r ratio':>8}"
        "   of which SQL: admin / dealer / regional   (SQL alone)"
    )
    rows = [("as the pack declares them (RESULT)", figures, db_ms), *outcomes]
    for label, fig, ms in rows:
        log(
            f"{label:<44}{fig['admin']:>8.2f}{fig['dealer']:>8.2f}{fig['regional']:>8.2f}"
            f"{fig['dealer_ratio']:>8.2f}{fig['regional_ratio']:>8.2f}   "
            f"{fig['admin_sql']:.2f} / {fig['dealer_sql']:.2f} / {fig['regional_sql']:.2f}"
            f"   ({ms['admin']:.2f} / {ms['dealer']:.2f} / {ms['regional']:.2f})"
        )
    log(
        "admin/dealer/region: ms per request through the test client, median over rounds; "
        "ratio = scoped ms ÷ admin ms, paired within each round, median over rounds; "
        "of which SQL: ms executing the list statement inside those requests; "
        "SQL alone: the same statement on its own connection, median of 15"
    )
    log(
        f"RESULT scoped_list orders={orders} dealers={DEALERS} "
        f"dealer_ratio={figures['dealer_ratio']:.2f} "
        f"regional_ratio={figures['regional_ratio']:.2f} admin_ms={figures['admin']:.2f} "
        f"dealer_ms={figures['dealer']:.2f} regional_ms={figures['regional']:.2f}"
    )


if __name__ == "__main__":
    main()
