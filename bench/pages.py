#!/usr/bin/env python
"""Pages: server time of the generated UI's pages on 100,000 orders, vs the API's list.

On a fresh PostgreSQL database the channel pack is installed with its demo data
(15 dealers, 12 products, 16 orders, 7 users), then 100,000 orders (``--quick``:
20,000) are added with SQL, spread over the demo dealers, 3 lines on 10,000 of them
(``--quick``: 2,000), each with its ``create`` history row. Then, through Flask's
test client (one process, no network: the time around each request is the server's),
signed in through the login form:

* as the HQ administrator: the order list (default view; filtered by status and a date
  range; page 50, reached by following the "Next page" link 49 times), an order's
  detail page and its edit form;
* as the East regional admin (a ``dealer_admin``, partner scope): the start page ``/``;
* baseline: ``GET /api/v1/records/sales_order`` with the list page's sort and page
  size, with the administrator's bearer token.

Prints p50 / max ms and SQL statements per page, the list page ÷ API list ratio, and
``RESULT pages max_ms=… p50_ms=… list_ratio=…``.

    python bench/pages.py [--quick] [--orders N] [--rounds R] [--requests N]
                          [--profile] [--keep] [--pg-url URL]
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import gc
import html
import io
import pstats
import random
import re
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from _common import PG_ADMIN_URL, BenchError, drop_postgres, fresh_postgres, log, trellis_app

DB_NAME = "trellis_bench_pages"
OBJECT = "sales_order"
PAGE_SIZE = 25  # the list page's (views/records.py LIST_PAGE_SIZE)
ADMIN = "hq@example.com"
DEALER = "east.admin@example.com"  # dealer_admin of the East regional: 4 of the 15 dealers
LINES_PER_ORDER = 3
BATCH = 5000  # rows per executemany when seeding
STATUS_WEIGHTS = (  # status, weight in 100 (10 % submitted)
    ("draft", 5),
    ("submitted", 10),
    ("approved", 10),
    ("confirmed", 7),
    ("shipped", 10),
    ("received", 10),
    ("paid", 40),
    ("cancelled", 8),
)
CHUNK = 5  # requests per page before moving to the next: drift hits every page alike
FILTERED = (
    "/o/sales_order?f.status=submitted&f.status=approved"
    "&f.order_date.min=2025-03-01&f.order_date.max=2025-06-30"
)
LINK_RE = re.compile(r'href="/o/sales_order/(\d+)"')
NEXT_RE = re.compile(r'<a rel="next" href="([^"]+)"')
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Page:
    name: str
    who: str  # "admin" | "dealer" | "api"
    url: str


# =====================================================================================
# Setup
# =====================================================================================


def install_pack_with_demo(app: Any) -> dict[str, str]:
    """The channel pack with its demo data; returns the demo users' passwords by e-mail."""
    from trellis.extensions import database_of
    from trellis.platform.runtime.packs import install_pack, resolve_pack

    registry = app.extensions["trellis.registry"]
    with database_of(app).session() as session:
        result = install_pack(
            session, registry, resolve_pack("channel_pack"), author_id=None, with_demo=True
        )
        session.commit()
    log(
        f"  installed {result.name} {result.version} with demo data: "
        f"{result.demo_records} records, {len(result.demo_users)} users"
    )
    return {user["email"]: user["password"] for user in result.demo_users}


def seed(app: Any, orders: int, with_lines: int) -> dict[str, int]:
    """``orders`` orders over the demo dealers, lines on ``with_lines`` of them, history rows.

    Bulk SQL through the object's own ``Table`` (SQLAlchemy Core, ``INSERT … SELECT``):
    set-up, not the measured part. The system columns are set as the write path sets them:
    ``owner_id``, ``created_by`` and ``updated_by`` are the East regional salesperson for an
    order of an East dealer and the HQ administrator otherwise (the partner scope is the
    ``dealer`` column, ``x-scope-field``; ``owner_id`` is the ``own`` scope). Each order and
    line gets the ``create`` row of ``record_history`` a created record has; the totals of
    orders with lines are the sum of their lines, as the pack's description says.
    """
    from trellis.extensions import database_of
    from trellis.platform.runtime.models import RecordHistory, User

    registry = app.extensions["trellis.registry"]
    order_meta, line_meta = registry.get(OBJECT), registry.get("order_line")
    dealer_t = registry.get("dealer").table
    product_t = registry.get("product").table
    orders_t, lines_t = order_meta.table, line_meta.table
    database = database_of(app)
    with database.engine.begin() as connection:
        users = {e: i for e, i in connection.execute(sa.select(User.email, User.id))}
        east = connection.execute(
            sa.select(dealer_t.c.id).where(
                sa.or_(dealer_t.c.code == "D-0101", dealer_t.c.code.like("D-101_"))
            )
        ).scalars()
        east_ids = sorted(east)
        dealer_ids = sorted(connection.execute(sa.select(dealer_t.c.id)).scalars())
        products = connection.execute(sa.select(product_t.c.id, product_t.c.list_price)).all()
        first = connection.execute(sa.select(sa.func.max(orders_t.c.id))).scalar_one()
        rng = random.Random(42)
        statuses = [s for s, weight in STATUS_WEIGHTS for _ in range(weight)]
        start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=orders)
        rows = []
        for n in range(1, orders + 1):
            dealer = rng.choice(dealer_ids)
            owner = users["east.sales@example.com"] if dealer in east_ids else users[ADMIN]
            moment = start + dt.timedelta(minutes=n)
            day = dt.date(2025, 1, 1) + dt.timedelta(days=rng.randrange(365))
            rows.append(
                {
                    "version": 1,
                    "created_at": moment,
                    "updated_at": moment,
                    "created_by": owner,
                    "updated_by": owner,
                    "owner_id": owner,
                    "number": f"SO-B-{n:06d}",
                    "dealer": dealer,
                    "status": rng.choice(statuses),
                    "order_date": day,
                    "requested_delivery_date": day + dt.timedelta(days=14),
                    "total_amount": Decimal(rng.randrange(5_000_000)) / 100,
                    "currency": "CNY",
                }
            )
        for i in range(0, len(rows), BATCH):
            connection.execute(orders_t.insert(), rows[i : i + BATCH])
        # LINES_PER_ORDER lines on every (orders / with_lines)-th seeded order; its total
        # is the sum of its lines.
        seeded = connection.execute(
            sa.select(orders_t.c.id, orders_t.c.created_at, orders_t.c.owner_id)
            .where(orders_t.c.id > first)
            .order_by(orders_t.c.id)
        ).all()
        step = max(1, orders // max(with_lines, 1))
        line_rows, totals = [], []
        for order_id, moment, owner in seeded[::step][:with_lines]:
            total = Decimal(0)
            for k in range(LINES_PER_ORDER):
                product, price = products[(order_id + 7 * k) % len(products)]
                quantity, discount = 1 + (order_id + k) % 20, Decimal(5 * k)
                total += quantity * price * (1 - discount / 100)
                line_rows.append(
                    {
                        "version": 1,
                        "created_at": moment,
                        "updated_at": moment,
                        "created_by": owner,
                        "updated_by": owner,
                        "owner_id": owner,
                        "sales_order": order_id,
                        "product": product,
                        "quantity": quantity,
                        "unit_price": price,
                        "discount_percent": discount,
                    }
                )
            totals.append({"order_id": order_id, "total": total.quantize(Decimal("0.01"))})
        for i in range(0, len(line_rows), BATCH):
            connection.execute(lines_t.insert(), line_rows[i : i + BATCH])
        connection.execute(
            orders_t.update()
            .where(orders_t.c.id == sa.bindparam("order_id"))
            .values(total_amount=sa.bindparam("total")),
            totals,
        )
        history = RecordHistory.__table__
        for meta, table, after in ((order_meta, orders_t, first), (line_meta, lines_t, None)):
            rows = sa.select(
                sa.literal(meta.name),
                table.c.id,
                sa.literal("create"),
                sa.literal(1),
                sa.cast(sa.literal("{}"), sa.JSON),
                table.c.created_by,
                table.c.created_at,
            )
            if after is not None:
                rows = rows.where(table.c.id > after)
            else:
                seeded = sa.select(orders_t.c.id).where(orders_t.c.id > first)
                rows = rows.where(table.c.sales_order.in_(seeded))
            connection.execute(
                history.insert().from_select(
                    [
                        history.c[c]
                        for c in [
                            "object_name",
                            "record_id",
                            "action",
                            "version",
                            "changes",
                            "changed_by",
                            "changed_at",
                        ]
                    ],
                    rows,
                )
            )
        counts = {
            "orders": connection.execute(
                sa.select(sa.func.count()).select_from(orders_t)
            ).scalar_one(),
            "lines": connection.execute(
                sa.select(sa.func.count()).select_from(lines_t)
            ).scalar_one(),
            "east_orders": connection.execute(
                sa.select(sa.func.count())
                .select_from(orders_t)
                .where(orders_t.c.dealer.in_(east_ids))
            ).scalar_one(),
            "dealers": len(dealer_ids),
        }
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(sa.text("VACUUM ANALYZE"))
    return counts


def sign_in(app: Any, email: str, password: str) -> Any:
    """A test client signed in through the login form (CSRF token from the form)."""
    client = app.test_client()
    form = client.get("/login").get_data(as_text=True)
    match = CSRF_RE.search(form)
    if match is None:
        raise BenchError("the login page has no CSRF token")
    answer = client.post(
        "/login", data={"csrf_token": match.group(1), "email": email, "password": password}
    )
    if answer.status_code != 302:
        raise BenchError(f"signing in as {email}: HTTP {answer.status_code}")
    return client


def api_token(app: Any, email: str) -> str:
    from trellis.extensions import database_of
    from trellis.platform.runtime.identity.tokens import issue_token

    with database_of(app).session() as session:
        token = issue_token(session, email, name="pages bench")
        session.commit()
    return token


# =====================================================================================
# Checks: the pages show what the database holds
# =====================================================================================


def ids_on(page_html: str) -> list[int]:
    return list(dict.fromkeys(int(i) for i in LINK_RE.findall(page_html)))


def get_ok(client: Any, url: str, headers: dict[str, str] | None = None) -> str:
    response = client.get(url, headers=headers or {})
    if response.status_code != 200:
        raise BenchError(
            f"GET {url}: HTTP {response.status_code}: {response.get_data(as_text=True)[:300]}"
        )
    return str(response.get_data(as_text=True))


def page_50_url(client: Any) -> str:
    """The URL of page 50 of the default list, by following "Next page" 49 times."""
    url = "/o/sales_order"
    for _ in range(49):
        match = NEXT_RE.search(get_ok(client, url))
        if match is None:
            raise BenchError(f"no 'Next page' link on {url}")
        url = html.unescape(match.group(1))
    return url


def build_pages(
    app: Any, admin: Any, dealer: Any, token: str, counts: dict[str, int]
) -> tuple[list[Page], dict[str, Any]]:
    """The measured pages, each checked against SQL first."""
    from trellis.extensions import database_of

    registry = app.extensions["trellis.registry"]
    table = registry.get(OBJECT).table
    lines = registry.get("order_line").table
    with database_of(app).engine.connect() as connection:
        newest = list(
            connection.execute(
                sa.select(table.c.id).order_by(table.c.id.desc()).limit(PAGE_SIZE)
            ).scalars()
        )
        fiftieth = list(
            connection.execute(
                sa.select(table.c.id)
                .order_by(table.c.id.desc())
                .offset(49 * PAGE_SIZE)
                .limit(PAGE_SIZE)
            ).scalars()
        )
        filtered = list(
            connection.execute(
                sa.select(table.c.id)
                .where(
                    table.c.status.in_(["submitted", "approved"]),
                    table.c.order_date.between(dt.date(2025, 3, 1), dt.date(2025, 6, 30)),
                )
                .order_by(table.c.id.desc())
                .limit(PAGE_SIZE)
            ).scalars()
        )
        # The order shown: the newest one with lines (so the page has lines and history).
        with_lines = connection.execute(sa.select(sa.func.max(lines.c.sales_order))).scalar_one()
    if ids_on(get_ok(admin, "/o/sales_order")) != newest:
        raise BenchError("the default list page does not show the 25 newest orders")
    if ids_on(get_ok(admin, FILTERED)) != filtered:
        raise BenchError("the filtered list page does not show the SQL answer")
    fifty = page_50_url(admin)
    if ids_on(get_ok(admin, fifty)) != fiftieth:
        raise BenchError("page 50 does not show orders 1,226-1,250 (newest first)")
    detail = get_ok(admin, f"/o/sales_order/{with_lines}")
    if detail.count("/o/order_line/") < LINES_PER_ORDER:
        raise BenchError(f"order {with_lines}'s detail page does not show its lines")
    get_ok(admin, f"/o/sales_order/{with_lines}/edit")
    home = get_ok(dealer, "/")
    if "华东星辰电器有限公司" not in home:
        raise BenchError("the dealer's start page does not show its account (East regional)")
    api_url = f"/api/v1/records/{OBJECT}?sort=-id&limit={PAGE_SIZE}"
    api = app.test_client().get(api_url, headers={"Authorization": f"Bearer {token}"})
    if api.status_code != 200 or [i["id"] for i in api.get_json()["items"]] != newest:
        raise BenchError("the API's list does not answer the 25 newest orders")
    pages = [
        Page("list default", "admin", "/o/sales_order"),
        Page("list filtered", "admin", FILTERED),
        Page("list page 50", "admin", fifty),
        Page("detail", "admin", f"/o/sales_order/{with_lines}"),
        Page("edit form", "admin", f"/o/sales_order/{with_lines}/edit"),
        Page("dealer start /", "dealer", "/"),
        Page("API list", "api", api_url),
    ]
    facts = {"order": with_lines, "filtered_first": filtered[:1], "fifty": fifty}
    return pages, facts


# =====================================================================================
# Timing
# =====================================================================================


@contextmanager
def counting(engine: sa.Engine) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def listener(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", listener)


class SqlClock:
    """Time the driver spends executing statements (``before``/``after_cursor_execute``)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.seconds = 0.0
        self._started = 0.0

    def before(self, *_: Any) -> None:
        self._started = time.perf_counter()

    def after(self, *_: Any) -> None:
        self.seconds += time.perf_counter() - self._started

    @contextmanager
    def listening(self) -> Iterator[SqlClock]:
        sa.event.listen(self.engine, "before_cursor_execute", self.before)
        sa.event.listen(self.engine, "after_cursor_execute", self.after)
        try:
            yield self
        finally:
            sa.event.remove(self.engine, "before_cursor_execute", self.before)
            sa.event.remove(self.engine, "after_cursor_execute", self.after)


def request_of(clients: dict[str, Any], token: str, page: Page) -> Any:
    if page.who == "api":
        headers = {"Authorization": f"Bearer {token}"}
        return lambda: clients["api"].get(page.url, headers=headers)
    client = clients[page.who]
    return lambda: client.get(page.url)


def timed_chunk(
    call: Any, count: int, what: str, clock: SqlClock | None = None, sql: list[float] | None = None
) -> list[float]:
    out = []
    for _ in range(count):
        before = clock.seconds if clock else 0.0
        begin = time.perf_counter()
        response = call()
        out.append((time.perf_counter() - begin) * 1000)
        if clock is not None and sql is not None:
            sql.append((clock.seconds - before) * 1000)
        if response.status_code != 200:
            raise BenchError(f"{what}: HTTP {response.status_code}")
    return out


def benchmark(
    clock: SqlClock,
    clients: dict[str, Any],
    token: str,
    pages: list[Page],
    rounds: int,
    requests: int,
) -> tuple[dict[str, list[float]], dict[str, list[float]], list[float]]:
    """Every request's ms per page, and of that the ms executing SQL; the list ÷ API
    ratio of each round (of its medians)."""
    calls = {p.name: request_of(clients, token, p) for p in pages}
    for page in pages:
        timed_chunk(calls[page.name], 5, f"warm-up {page.name}")
    times: dict[str, list[float]] = {p.name: [] for p in pages}
    sql: dict[str, list[float]] = {p.name: [] for p in pages}
    ratios = []
    for r in range(rounds):
        gc.collect()
        this: dict[str, list[float]] = {p.name: [] for p in pages}
        with clock.listening():
            for k, start in enumerate(range(0, requests, CHUNK)):
                size = min(CHUNK, requests - start)
                shift = (k + r) % len(pages)  # which page goes first rotates
                for page in pages[shift:] + pages[:shift]:
                    this[page.name] += timed_chunk(
                        calls[page.name], size, page.name, clock, sql[page.name]
                    )
        for name, values in this.items():
            times[name] += values
        ratio = statistics.median(this["list default"]) / statistics.median(this["API list"])
        ratios.append(ratio)
        log(
            f"  round {r + 1}/{rounds}: "
            + ", ".join(f"{n} {statistics.median(v):.1f}" for n, v in this.items())
            + f" ms (p50); list/API {ratio:.2f}"
        )
    return times, sql, ratios


def statements_per_page(
    app: Any, clients: dict[str, Any], token: str, pages: list[Page]
) -> dict[str, list[tuple[str, Any]]]:
    """The statements (and their parameters) one request of each page sends."""
    from trellis.extensions import database_of

    engine = database_of(app).engine
    found = {}
    for page in pages:
        with counting(engine) as seen:
            request_of(clients, token, page)()
        found[page.name] = list(seen)
    return found


def explain(url: str, sql: dict[str, list[tuple[str, Any]]]) -> None:
    """Each page's statements through EXPLAIN ANALYZE: execution ms and the plan's top node."""
    engine = sa.create_engine(url, connect_args={"prepare_threshold": None})
    try:
        with engine.connect() as connection:
            for name, statements in sql.items():
                log(f"\n--- EXPLAIN ANALYZE, {name} ---")
                for statement, parameters in statements:
                    rows = connection.exec_driver_sql(
                        "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters
                    ).all()
                    lines = [row[0] for row in rows]
                    total = next((x for x in lines if x.startswith("Execution Time")), "?")
                    log(f"  {total:<28} {' '.join(statement.split())[:110]}")
                    if len(lines) > 3:
                        log("\n".join("      " + x for x in lines[:-2]))
                connection.rollback()
    finally:
        engine.dispose()


def profile(clients: dict[str, Any], token: str, pages: list[Page], count: int) -> None:
    """cProfile of ``count`` requests of each page: the top functions by own + callees."""
    for page in pages:
        call = request_of(clients, token, page)
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(count):
            call()
        profiler.disable()
        for title, order, pattern in (
            ("Trellis's own functions, by cumulative time", "cumulative", r"trellis/"),
            ("every function, by own time", "tottime", ""),
        ):
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out).sort_stats(order)
            stats.print_stats(pattern, 18)
            log(f"\n--- cProfile, {page.name} ({count} requests): {title} ---")
            body = out.getvalue()
            log(body[body.find("   ncalls") :].rstrip())


# =====================================================================================


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 orders, 2 rounds")
    parser.add_argument("--orders", type=int, help="orders to seed (default 100,000)")
    parser.add_argument("--rounds", type=int, help="rounds (default 3; --quick 2)")
    parser.add_argument("--requests", type=int, help="requests per page per round (default 30)")
    parser.add_argument("--profile", action="store_true", help="cProfile each page afterwards")
    parser.add_argument("--sql", action="store_true", help="print each page's statements")
    parser.add_argument(
        "--explain", action="store_true", help="EXPLAIN ANALYZE each page's statements"
    )
    parser.add_argument(
        "--keep", action="store_true", help=f"keep database {DB_NAME} afterwards (for inspection)"
    )
    parser.add_argument(
        "--pg-url",
        default=PG_ADMIN_URL,
        help=f"admin URL; the benchmark (re)creates database {DB_NAME} there",
    )
    args = parser.parse_args()
    orders = args.orders or (20_000 if args.quick else 100_000)
    rounds = args.rounds or (2 if args.quick else 3)
    requests = args.requests or (15 if args.quick else 30)
    if not 1 <= rounds <= 50 or not 1 <= requests <= 1000 or not 2_000 <= orders <= 5_000_000:
        raise BenchError("--rounds 1…50, --requests 1…1000, --orders 2000…5000000")
    with_lines = orders // 10

    url = fresh_postgres(args.pg_url, DB_NAME)  # exits non-zero when unreachable
    log(
        f"pages on {sa.make_url(url).render_as_string(hide_password=True)}: {orders:,} orders, "
        f"{with_lines:,} with {LINES_PER_ORDER} lines; {rounds} rounds of {requests} "
        "requests per page"
    )
    app = None
    try:
        app, _ = trellis_app(url, {"RATE_LIMIT_STORAGE_URL": "memory://"})
        passwords = install_pack_with_demo(app)
        begin = time.perf_counter()
        counts = seed(app, orders, with_lines)
        log(
            f"  seeded in {time.perf_counter() - begin:.1f} s: {counts['orders']:,} orders "
            f"({counts['east_orders']:,} of East's 4 dealers, of {counts['dealers']}), "
            f"{counts['lines']:,} lines; VACUUM ANALYZE"
        )
        clients = {
            "admin": sign_in(app, ADMIN, passwords[ADMIN]),
            "dealer": sign_in(app, DEALER, passwords[DEALER]),
            "api": app.test_client(),  # no cookie: the token alone
        }
        token = api_token(app, ADMIN)
        pages, facts = build_pages(app, clients["admin"], clients["dealer"], token, counts)
        log(
            f"  checked: each list page shows the SQL answer (page 50 reached by 49 'Next page' "
            f"links), order {facts['order']}'s detail shows its lines, the dealer's start "
            "page its account, the API list the same 25 orders"
        )
        sql = statements_per_page(app, clients, token, pages)
        log("timing (Flask test client, ms per request):")
        from trellis.extensions import database_of

        clock = SqlClock(database_of(app).engine)
        times, sql_ms, ratios = benchmark(clock, clients, token, pages, rounds, requests)
        if args.profile:
            profile(clients, token, pages, 10)
        if args.explain:
            explain(url, sql)
    finally:
        if app is not None:
            from trellis.extensions import database_of

            database_of(app).engine.dispose()
        if not args.keep:
            drop_postgres(args.pg_url, DB_NAME)

    if args.sql:
        for name, statements in sql.items():
            log(f"\n--- {name}: {len(statements)} statements ---")
            for statement, _ in statements:
                log("  " + " ".join(statement.split())[:300])
    log("")
    log(f"{'page':<18}{'who':<8}{'p50 ms':>9}{'max ms':>9}{'SQL ms':>9}{'SQL':>6}   url")
    for page in pages:
        values = times[page.name]
        log(
            f"{page.name:<18}{page.who:<8}{statistics.median(values):>9.1f}{max(values):>9.1f}"
            f"{statistics.median(sql_ms[page.name]):>9.1f}{len(sql[page.name]):>6}"
            f"   {page.url[:60]}"
        )
    shown = [p.name for p in pages if p.who != "api"]
    worst_max = max(max(times[n]) for n in shown)
    worst_p50 = max(statistics.median(times[n]) for n in shown)
    ratio = statistics.median(ratios)
    log(
        "p50 / max: over every timed request of the page; SQL ms: of that, the median time "
        "executing statements (the driver's execute); SQL: statements one request sends; "
        f"list/API: p50 of the default list ÷ p50 of the API list, per round, median "
        f"({', '.join(f'{r:.2f}' for r in ratios)})"
    )
    log(
        f"RESULT pages orders={orders} max_ms={worst_max:.1f} p50_ms={worst_p50:.1f} "
        f"list_ratio={ratio:.2f} "
        + " ".join(
            f"{p.name.replace(' ', '_').replace('/', '').strip('_')}_ms="
            f"{statistics.median(times[p.name]):.1f}"
            for p in pages
        )
    )


if __name__ == "__main__":
    main()
