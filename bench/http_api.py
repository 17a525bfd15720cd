#!/usr/bin/env python
"""HTTP API: Trellis under gunicorn vs a hand-written Flask + SQLAlchemy dealer API.

Two real servers, each ``gunicorn`` with one worker and the settings of
``trellis serve`` (``trellis.cli.gunicorn_settings``), on one PostgreSQL server:

* Trellis — ``trellis init`` + ``trellis pack install channel_pack`` into its own
  database, served by ``trellis serve --workers 1``; two bearer tokens, one of the
  platform administrator (no roles: every write leaves an ``admin.bypass`` event) and
  one of a plain user holding the pack's ``hq_admin`` role;
* hand-written — the ``dealers`` table with the columns of the pack's ``dealer``
  object, and three views (create with validation, get by id, filtered + sorted
  list), token check and JSON errors, in this file.

One sequential keep-alive client (``http.client``) drives both over TCP: creates,
gets by id and filtered, sorted list pages on a small table, then an unindexed
filtered, sorted list on a 100,000-row table (the same rows bulk-loaded into both).
Every ratio is Trellis throughput / hand-written throughput (1.00 = as fast).

    python bench/http_api.py [--quick] [--db postgresql|sqlite]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import http.client
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from _common import (
    BENCH_DB,
    PG_ADMIN_URL,
    ROOT,
    ApiError,
    BenchError,
    HandBase,
    add_hand_user,
    amount,
    drop_postgres,
    fresh_postgres,
    hand_app,
    hand_engine,
    iso,
    log,
    utcnow,
)
from flask import Flask, g, jsonify, request
from sqlalchemy import event
from sqlalchemy.orm import Mapped, Session, mapped_column

TRELLIS_DB = f"{BENCH_DB}_http"  # trellis_bench_http unless TRELLIS_BENCH_DB says otherwise
HAND_DB = f"{BENCH_DB}_http_hand"
ADMIN_EMAIL = "bench-admin@example.com"
HQ_EMAIL = "bench-hq@example.com"
PASSWORD = "bench password 123"
THREADS = 4  # trellis serve's default
LEVELS = ("national", "regional", "sub_distributor")
REGIONS = ("east", "north", "south", "central", "southwest", "northwest", "northeast")
TAGS = ("key_account", "new_partner", "online_channel", "exclusive")
LIST_LIMIT = 20
SIDES = ("admin", "hq", "hand")  # admin / hq: Trellis with either token

# =====================================================================================
# The hand-written baseline: the pack's dealer as a typed model and three views.
# =====================================================================================


class Dealer(HandBase):
    """The channel pack's ``dealer`` columns, system columns included, with its indexes."""

    __tablename__ = "dealers"
    __table_args__ = (
        sa.Index("ix_dealers_level", "level"),
        sa.Index("ix_dealers_region", "region"),
        sa.Index("ix_dealers_parent", "parent"),
    )

    # BIGINT on PostgreSQL; INTEGER on SQLite, where only that makes the key a rowid that counts
    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True
    )
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[int | None] = mapped_column(sa.BigInteger)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[int | None] = mapped_column(sa.BigInteger)
    owner_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    deleted_at: Mapped[dt.datetime | None]
    name: Mapped[str] = mapped_column(sa.String(120), unique=True)
    code: Mapped[str] = mapped_column(sa.String(32), unique=True)
    parent: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("dealers.id"))
    level: Mapped[str | None] = mapped_column(sa.String(100))
    region: Mapped[str | None] = mapped_column(sa.String(100))
    credit_limit: Mapped[Decimal | None] = mapped_column(sa.Numeric(20, 2))
    contact_name: Mapped[str | None] = mapped_column(sa.String(60))
    contact_phone: Mapped[str | None] = mapped_column(sa.String(40))
    contact_email: Mapped[str | None] = mapped_column(sa.String(254))
    address: Mapped[str | None] = mapped_column(sa.Text)
    website: Mapped[str | None] = mapped_column(sa.String(2000))
    active: Mapped[bool | None]
    joined_on: Mapped[dt.date | None]
    tags: Mapped[list[str] | None] = mapped_column(sa.JSON)

    def to_dict(self) -> dict[str, Any]:
        amount = None if self.credit_limit is None else float(self.credit_limit)
        return {
            "id": self.id,
            "version": self.version,
            "created_at": iso(self.created_at),
            "created_by": self.created_by,
            "updated_at": iso(self.updated_at),
            "updated_by": self.updated_by,
            "owner_id": self.owner_id,
            **{name: getattr(self, name) for name in TEXT_LIMITS},
            "parent": self.parent,
            "level": self.level,
            "region": self.region,
            "credit_limit": int(amount) if amount is not None and amount.is_integer() else amount,
            "active": self.active,
            "joined_on": self.joined_on.isoformat() if self.joined_on else None,
            "tags": self.tags,
        }


TEXT_LIMITS = {
    "name": 120,
    "code": 32,
    "contact_name": 60,
    "contact_phone": 40,
    "contact_email": 254,
    "address": 500,
    "website": 2000,
}
DEALER_FIELDS = {*TEXT_LIMITS, "parent", "level", "region", "credit_limit", "active"} | {
    "joined_on",
    "tags",
}
CODE = re.compile(r"^[A-Z0-9][A-Z0-9-]*$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def validate_dealer(body: Any) -> dict[str, Any]:
    """Manual checks of a new dealer: the rules of the pack's definition, written out."""
    if not isinstance(body, dict):
        raise _invalid([{"field": "", "message": "must be a JSON object"}])
    problems = [{"field": k, "message": "unknown field"} for k in body if k not in DEALER_FIELDS]
    values: dict[str, Any] = {}
    for name, limit in TEXT_LIMITS.items():
        value = body.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            problems.append({"field": name, "message": f"must be text of ≤ {limit} characters"})
        values[name] = value
    for name in ("name", "code"):
        if body.get(name) is None:
            problems.append({"field": name, "message": "is required"})
    if isinstance(values["code"], str) and not CODE.match(values["code"]):
        problems.append({"field": "code", "message": "must be capitals, digits and dashes"})
    if isinstance(values["contact_email"], str) and not EMAIL.match(values["contact_email"]):
        problems.append({"field": "contact_email", "message": "must be an e-mail address"})
    for name, choices in (("level", LEVELS), ("region", REGIONS)):
        values[name] = body.get(name)
        if values[name] is not None and values[name] not in choices:
            problems.append({"field": name, "message": f"must be one of {', '.join(choices)}"})
    values.update(_typed_values(body, problems))
    if problems:
        raise _invalid(problems)
    return values


def _typed_values(body: dict[str, Any], problems: list[dict[str, str]]) -> dict[str, Any]:
    """parent, credit_limit, active, joined_on and tags, checked and converted."""
    parent = body.get("parent")
    if parent is not None and (isinstance(parent, bool) or not isinstance(parent, int)):
        problems.append({"field": "parent", "message": "must be a dealer id"})
    credit_limit = amount(body.get("credit_limit", 0), "credit_limit", problems)
    active = body.get("active", True)
    if not isinstance(active, bool):
        problems.append({"field": "active", "message": "must be true or false"})
    joined_on = None
    if body.get("joined_on") is not None:
        try:
            joined_on = dt.date.fromisoformat(body["joined_on"])
        except (TypeError, ValueError):
            problems.append({"field": "joined_on", "message": "must be a date (YYYY-MM-DD)"})
    tags = body.get("tags")
    if tags is not None and (
        not isinstance(tags, list) or len(set(tags)) != len(tags) or not set(tags) <= set(TAGS)
    ):
        problems.append({"field": "tags", "message": f"must be distinct of {', '.join(TAGS)}"})
    return {
        "parent": parent,
        "credit_limit": credit_limit,
        "active": active,
        "joined_on": joined_on,
        "tags": tags,
    }


def _invalid(details: list[dict[str, str]]) -> ApiError:
    return ApiError(422, "validation_failed", "the dealer is not valid", details)


SORTABLE = {"name", "code", "credit_limit", "joined_on", "level", "region"}


def list_statement(args: Any) -> sa.Select[Any]:
    """``SELECT`` of a list page: ``level``, ``region``, ``credit_min``/``credit_max`` filters,
    ``sort`` as ``-credit_limit,name`` (whitelisted columns, ``id`` last), ``limit``."""
    statement = sa.select(Dealer).where(Dealer.deleted_at.is_(None))
    for name in ("level", "region"):
        if args.get(name) is not None:
            statement = statement.where(getattr(Dealer, name) == args[name])
    for name, compare in (("credit_min", "__ge__"), ("credit_max", "__lt__")):
        if args.get(name) is not None:
            try:
                bound = Decimal(args[name])
            except InvalidOperation:
                raise ApiError(400, "invalid_query", f"{name} must be a number") from None
            statement = statement.where(getattr(Dealer.credit_limit, compare)(bound))
    order = []
    for key in filter(None, args.get("sort", "").split(",")):
        column = key.lstrip("-")
        if column not in SORTABLE:
            raise ApiError(400, "invalid_query", f"cannot sort by {column!r}")
        attribute = getattr(Dealer, column)
        order.append(attribute.desc() if key.startswith("-") else attribute.asc())
    try:
        limit = int(args.get("limit", 50))
    except ValueError:
        raise ApiError(400, "invalid_query", "limit must be a whole number") from None
    if not 1 <= limit <= 500:
        raise ApiError(400, "invalid_query", "limit must be 1–500")
    return statement.order_by(*order, Dealer.id).limit(limit)


def create_hand_app(url: str) -> Flask:
    """The baseline app: the shared shell (token, session, JSON errors) and three views."""
    app = hand_app("hand_dealers", hand_engine(url))
    _add_views(app)
    return app


def _add_views(app: Flask) -> None:
    @app.post("/dealers")
    def create_dealer() -> Any:
        body = request.get_json(silent=True)
        if body is None:
            raise ApiError(400, "bad_request", "the request needs a JSON body")
        values = validate_dealer(body)
        session: Session = g.session
        if values["parent"] is not None:
            live = sa.select(Dealer.id).where(
                Dealer.id == values["parent"], Dealer.deleted_at.is_(None)
            )
            if session.execute(live).first() is None:
                raise _invalid([{"field": "parent", "message": "no such dealer"}])
        for name in ("name", "code"):
            taken = sa.select(Dealer.id).where(
                getattr(Dealer, name) == values[name], Dealer.deleted_at.is_(None)
            )
            if session.execute(taken).first() is not None:
                raise ApiError(409, "duplicate_value", f"{name} is taken", [{"field": name}])
        now = utcnow()
        who = {"created_by": g.user_id, "updated_by": g.user_id, "owner_id": g.user_id}
        dealer = Dealer(created_at=now, updated_at=now, version=1, **who, **values)
        session.add(dealer)
        session.commit()
        return jsonify(dealer.to_dict()), 201

    @app.get("/dealers/<int:dealer_id>")
    def get_dealer(dealer_id: int) -> Any:
        dealer = g.session.get(Dealer, dealer_id)
        if dealer is None or dealer.deleted_at is not None:
            raise ApiError(404, "not_found", f"no dealer {dealer_id}")
        return jsonify(dealer.to_dict())

    @app.get("/dealers")
    def list_dealers() -> Any:
        rows = g.session.scalars(list_statement(request.args))
        return jsonify({"items": [d.to_dict() for d in rows]})


def serve_hand(url: str, port: int) -> None:
    """Run the baseline under gunicorn with ``trellis serve``'s settings (one worker)."""
    from trellis.cli import gunicorn_settings, run_gunicorn

    run_gunicorn(lambda: create_hand_app(url), gunicorn_settings("127.0.0.1", port, 1, THREADS))


# =====================================================================================
# Servers and databases: set up through the public commands, always torn down.
# =====================================================================================


@dataclass
class Server:
    """A gunicorn process group, its base URL and its log file."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def stop(self) -> None:
        """SIGTERM the whole group (master and worker), SIGKILL it if it lingers."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def trellis_env(url: str, instance: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "TRELLIS_DATABASE_URL": url,
        "TRELLIS_SECRET_KEY": "bench-secret",
        "TRELLIS_INSTANCE_PATH": str(instance),
    }


def trellis_command(env: dict[str, str], *args: str) -> str:
    """Run ``python3 -m trellis …``; return its output, or stop the benchmark with it."""
    done = subprocess.run(
        [sys.executable, "-m", "trellis", *args], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise BenchError(f"trellis {' '.join(args[:2])} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def set_up_trellis(env: dict[str, str]) -> dict[str, str]:
    """init, the channel pack, an administrator and an hq_admin user; a token for each."""
    trellis_command(env, "init", "--admin-email", ADMIN_EMAIL, "--admin-password", PASSWORD)
    trellis_command(env, "pack", "install", "channel_pack")
    trellis_command(
        env, "user", "create", "--email", HQ_EMAIL, "--password", PASSWORD, "--role", "hq_admin"
    )
    return {
        side: trellis_command(env, "token", "create", "--user", email).strip().splitlines()[-1]
        for side, email in (("admin", ADMIN_EMAIL), ("hq", HQ_EMAIL))
    }


def set_up_hand(url: str) -> str:
    """The baseline's tables, a user and a token; returns the token."""
    engine = hand_engine(url)
    try:
        HandBase.metadata.create_all(engine)
        with Session(engine) as session:
            token = add_hand_user(session)
            session.commit()
    finally:
        engine.dispose()
    return token


def start_server(name: str, command: list[str], env: dict[str, str], folder: Path) -> Server:
    """Start a gunicorn in its own process group, logging (access log too) to a file."""
    port = free_port()
    log_path = folder / f"{name}.log"
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stop() ends master and worker
        )
    return Server(name, process, port, log_path)


def wait_ready(server: Server, path: str, token: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(f"{server.name} exited: {server.log_path.read_text()[-800:]}")
        with contextlib.suppress(OSError):
            client = Client(server.port, token)
            status, _ = client.request("GET", path)
            client.close()
            if status == 200:
                return
        time.sleep(0.2)
    raise BenchError(f"{server.name} did not answer within {timeout:.0f} s")


@contextlib.contextmanager
def databases(kind: str, pg_url: str, keep: bool) -> Iterator[tuple[str, str, Path]]:
    """URLs of a fresh Trellis database and a fresh baseline one, and a scratch folder."""
    folder = Path(tempfile.mkdtemp(prefix="trellis-bench-http-"))
    try:
        if kind == "sqlite":
            yield f"sqlite:///{folder / 'trellis.db'}", f"sqlite:///{folder / 'hand.db'}", folder
        else:
            urls = fresh_postgres(pg_url, TRELLIS_DB), fresh_postgres(pg_url, HAND_DB)
            try:
                yield urls[0], urls[1], folder
            finally:
                if not keep:
                    drop_postgres(pg_url, TRELLIS_DB)
                    drop_postgres(pg_url, HAND_DB)
    finally:
        if not keep:
            for path in folder.iterdir():
                path.unlink()
            folder.rmdir()


# =====================================================================================
# The client and the workload
# =====================================================================================


class Client:
    """One keep-alive HTTP/1.1 connection with a bearer token; JSON in and out."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        for attempt in (1, 2):
            try:
                self.connection.request(method, path, body=data, headers=self.headers)
                response = self.connection.getresponse()
                payload = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # gunicorn closed an idle keep-alive connection before reading the request.
                self.connection.close()
                if attempt == 2:
                    raise
        return response.status, json.loads(payload) if payload else None

    def close(self) -> None:
        self.connection.close()


@dataclass
class Side:
    """How one side names its resources and its query strings."""

    client: Client
    collection: str
    list_small: str
    list_big: str
    ids: dict[int, int] = field(default_factory=dict)  # payload index → record id
    root: int | None = None  # the parent of every dealer created while timing

    def create(self, index: int, body: dict[str, Any]) -> tuple[int, Any]:
        status, record = self.client.request("POST", self.collection, {**body, "parent": self.root})
        if status == 201:
            self.ids[index] = record["id"]
        return status, record

    def get(self, record_id: int) -> tuple[int, Any]:
        return self.client.request("GET", f"{self.collection}/{record_id}")


def trellis_side(client: Client, credit: tuple[int, int], ids: dict[int, int]) -> Side:
    small = quote(json.dumps([["level", "=", "regional"]]))
    big = quote(json.dumps([["credit_limit", ">=", credit[0]], ["credit_limit", "<", credit[1]]]))
    base = "/api/v1/records/dealer"
    tail = f"&sort=-credit_limit,name&limit={LIST_LIMIT}"
    return Side(client, base, f"{base}?filter={small}{tail}", f"{base}?filter={big}{tail}", ids)


def hand_side(client: Client, credit: tuple[int, int]) -> Side:
    tail = f"&sort=-credit_limit,name&limit={LIST_LIMIT}"
    return Side(
        client,
        "/dealers",
        f"/dealers?level=regional{tail}",
        f"/dealers?credit_min={credit[0]}&credit_max={credit[1]}{tail}",
    )


def dealer_payload(i: int, rng: random.Random) -> dict[str, Any]:
    """A dealer as an API client would send it (names and codes unique by ``i``)."""
    body: dict[str, Any] = {
        "name": f"Dealer {i:06d}",
        "code": f"D-{i:06d}",
        "level": rng.choice(LEVELS),
        "region": rng.choice(REGIONS),
        "credit_limit": rng.randint(0, 1_000_000_000) / 100,
        "contact_name": f"Contact {i}",
        "contact_phone": f"+86 21 {rng.randint(10_000_000, 99_999_999)}",
        "contact_email": f"dealer{i}@example.com",
        "active": rng.random() < 0.9,
        "joined_on": (dt.date(2020, 1, 1) + dt.timedelta(days=rng.randint(0, 2000))).isoformat(),
        "tags": rng.sample(TAGS, rng.randint(0, 2)),
    }
    return body


def expect(result: tuple[int, Any], status: int, what: str) -> Any:
    if result[0] != status:
        raise BenchError(f"{what}: expected HTTP {status}, got {result[0]}: {result[1]}")
    return result[1]


def check_equivalence(sides: dict[str, Side], payload: dict[str, Any]) -> None:
    """Every side stores and returns the same dealer and refuses bad input with JSON errors."""
    records = {}
    for k, (name, side) in enumerate(sides.items()):
        for label in reversed(mirrored(name)):  # the hand-written table gets both rows
            mine = {**payload, "name": f"Check {label}", "code": f"CHECK-{label.upper()}"}
            created = expect(side.create(-1 - k, mine), 201, f"{name} create")
        records[name] = expect(side.get(created["id"]), 200, f"{name} get")
        bad = {**mine, "name": f"Bad {name}", "code": "bad code", "credit_limit": -1}
        error = expect(side.create(-10, bad), 422, f"{name} invalid dealer")["error"]
        if {d["field"] for d in error["details"]} != {"code", "credit_limit"}:
            raise BenchError(f"{name}: the invalid dealer is refused for {error['details']}")
        root, side.root = side.root, 999_999_999
        orphan = {**mine, "name": f"Orphan {name}", "code": f"ORPHAN-{name.upper()}"}
        expect(side.create(-11, orphan), 422, f"{name} unknown parent")
        side.root = root
        expect(side.create(-12, mine), 409, f"{name} duplicate name")
        stranger = Client(side.client.port, "trl_not-a-token")
        expect(stranger.request("GET", side.list_small), 401, f"{name} bad token")
        stranger.close()
    fields = [f for f in payload if f not in ("name", "code")] + ["version"]
    shapes = {name: json.dumps([r[f] for f in fields]) for name, r in records.items()}
    parents = {name: r["parent"] == sides[name].root for name, r in records.items()}
    if len(set(shapes.values())) != 1 or not all(parents.values()):
        raise BenchError(f"the servers store the dealer differently: {shapes} {parents}")


def same_page(sides: dict[str, Side], path_of: Callable[[Side], str], what: str) -> int:
    """Every side returns the same page (by name and credit limit); returns its length."""
    pages = {}
    for name, side in sides.items():
        items = expect(side.client.request("GET", path_of(side)), 200, f"{name} {what}")["items"]
        pages[name] = [(r["name"], r["credit_limit"]) for r in items]
    if len({tuple(p) for p in pages.values()}) != 1:
        raise BenchError(f"the {what} pages differ: {pages}")
    return len(next(iter(pages.values())))


# =====================================================================================
# Timing: the three sides alternate every CHUNK requests
# =====================================================================================

CHUNK = 10


@dataclass
class Measure:
    """Per side and operation: seconds per round and every request's latency."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    counts: dict[str, list[int]] = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=dict)

    def add(self, key: str, seconds: float, count: int, latencies: list[float]) -> None:
        self.seconds.setdefault(key, [0.0])[-1] += seconds
        self.counts.setdefault(key, [0])[-1] += count
        self.latencies.setdefault(key, []).extend(latencies)

    def next_round(self) -> None:
        for key in self.seconds:
            self.seconds[key].append(0.0)
            self.counts[key].append(0)

    def throughput(self, key: str) -> list[float]:
        return [c / s for c, s in zip(self.counts[key], self.seconds[key], strict=True) if s]

    def ratios(self, op: str, side: str) -> list[float]:
        """Trellis (``side``) ops/s ÷ hand-written ops/s, paired round by round."""
        mine, hand = self.throughput(f"{side} {op}"), self.throughput(f"hand {op}")
        return [t / h for t, h in zip(mine, hand, strict=True)]

    def median_ms(self, key: str) -> float:
        return statistics.median(self.latencies[key]) * 1000


Request = Callable[[Side, int], tuple[int, Any]]


def run_chunk(side: Side, call: Request, indices: list[int], status: int, what: str) -> list[float]:
    """Run one request per index; return each one's latency. A wrong status stops all."""
    latencies = []
    for i in indices:
        begin = time.perf_counter()
        result = call(side, i)
        latencies.append(time.perf_counter() - begin)
        if result[0] != status:
            raise BenchError(f"{what}: HTTP {result[0]}: {str(result[1])[:300]}")
    return latencies


def time_operation(
    sides: dict[str, Side],
    measure: Measure,
    op: str,
    call: Request,
    work: dict[str, list[int]],
    status: int,
    round_no: int,
) -> None:
    """Each side runs its indices in chunks, the sides taking turns (the first rotating)."""
    gc.collect()
    chunks = max(len(w) for w in work.values()) // CHUNK
    for k in range(chunks):
        order = [*SIDES[(k + round_no) % 3 :], *SIDES[: (k + round_no) % 3]]
        for name in order:
            size = len(work[name]) // chunks
            indices = work[name][k * size : (k + 1) * size]
            latencies = run_chunk(sides[name], call, indices, status, f"{name} {op}")
            measure.add(f"{name} {op}", sum(latencies), len(latencies), latencies)


def warm_up(sides: dict[str, Side], payloads: list[dict[str, Any]], count: int) -> None:
    """Every path, many times per side: pools, caches, compiled statements, the planner."""
    for i in range(count):
        for k, (name, side) in enumerate(sides.items()):
            for label in mirrored(name):
                index = -1000 - i * len(sides) - k  # distinct per side: Trellis's two share ids
                body = {
                    **payloads[i],
                    "name": f"Warm {label} {i}",
                    "code": f"W-{label.upper()}-{i}",
                }
                expect(side.create(index, body), 201, f"warm-up {name} create")
                expect(side.get(side.ids[index]), 200, f"warm-up {name} get")
                expect(side.client.request("GET", side.list_small), 200, f"warm-up {name} list")


def mirrored(name: str) -> tuple[str, ...]:
    """Whose rows a side writes: the hand-written side writes those of both Trellis tokens,
    so both databases hold the same dealers."""
    return ("admin", "hq") if name == "hand" else (name,)


def small_table_rounds(
    sides: dict[str, Side], payloads: list[dict[str, Any]], n: int, rounds: int
) -> Measure:
    """Creates, gets and list pages on the table the creates fill."""
    measure = Measure()
    rng = random.Random(11)
    for r in range(rounds):
        if r:
            measure.next_round()
        first = r * 2 * n
        admin = list(range(first, first + n))
        hq = list(range(first + n, first + 2 * n))
        creates = {"admin": admin, "hq": hq, "hand": [*admin, *hq]}
        time_operation(
            sides, measure, "create", lambda s, i: s.create(i, payloads[i]), creates, 201, r
        )
        made = [i for i in range(first + 2 * n) if i in sides["hand"].ids]
        picks = [rng.choice(made) for _ in range(2 * n)]
        gets = {"admin": picks[:n], "hq": picks[n:], "hand": picks}
        time_operation(sides, measure, "get", lambda s, i: s.get(s.ids[i]), gets, 200, r)
        lists = {"admin": list(range(n)), "hq": list(range(n)), "hand": list(range(2 * n))}
        list_small: Request = lambda s, _i: s.client.request("GET", s.list_small)  # noqa: E731
        time_operation(sides, measure, "list", list_small, lists, 200, r)
        log("  round " + f"{r + 1}/{rounds}: " + round_summary(measure, ("create", "get", "list")))
    return measure


def big_table_rounds(sides: dict[str, Side], measure: Measure, m: int, rounds: int) -> None:
    list_big: Request = lambda s, _i: s.client.request("GET", s.list_big)  # noqa: E731
    for r in range(rounds):
        if r:
            measure.next_round()
        work = {"admin": list(range(m)), "hq": list(range(m)), "hand": list(range(2 * m))}
        time_operation(sides, measure, "list100k", list_big, work, 200, r)
        log(f"  round {r + 1}/{rounds}: " + round_summary(measure, ("list100k",)))


def round_summary(measure: Measure, ops: tuple[str, ...]) -> str:
    parts = []
    for op in ops:
        ops_s = {s: measure.throughput(f"{s} {op}")[-1] for s in SIDES}
        parts.append(
            f"{op} admin {ops_s['admin']:,.0f} / hq {ops_s['hq']:,.0f} / hand "
            f"{ops_s['hand']:,.0f} ({ops_s['admin'] / ops_s['hand']:.2f}, "
            f"{ops_s['hq'] / ops_s['hand']:.2f})"
        )
    return ", ".join(parts) + " ops/s"


# =====================================================================================
# The 100,000-row table: the same rows bulk-loaded into both, then analysed
# =====================================================================================


def bulk_rows(count: int, start: int) -> list[dict[str, Any]]:
    """``count`` dealers as column values, the same for both sides (seeded)."""
    rng = random.Random(2024)
    now = utcnow()
    rows = []
    for i in range(start, start + count):
        body = dealer_payload(i, rng)
        rows.append(
            {
                **body,
                "parent": None,
                "credit_limit": Decimal(str(body["credit_limit"])),
                "joined_on": dt.date.fromisoformat(body["joined_on"]),
                "version": 1,
                "created_at": now,
                "updated_at": now,
            }
        )
    return rows


def live_count(engine: sa.Engine, table: str) -> int:
    with engine.connect() as connection:
        query = f"SELECT count(*) FROM {table} WHERE deleted_at IS NULL"  # noqa: S608 (ours)
        return int(connection.exec_driver_sql(query).scalar_one())


def bulk_load(trellis_url: str, hand_url: str, total: int) -> int:
    """Fill both dealer tables up to ``total`` live rows with the same rows; returns the count.

    Trellis's closure table gets each new dealer's self-link (they have no parent), as
    its write path would give them; both databases are then vacuumed and analysed.
    """
    engines = {"trellis": sa.create_engine(trellis_url), "hand": hand_engine(hand_url)}
    try:
        counts = {
            "trellis": live_count(engines["trellis"], "obj_dealer"),
            "hand": live_count(engines["hand"], "dealers"),
        }
        if counts["trellis"] != counts["hand"]:
            raise BenchError(f"the dealer tables hold different numbers of rows: {counts}")
        rows = bulk_rows(max(total - counts["hand"], 0), start=1_000_000)
        obj = sa.Table("obj_dealer", sa.MetaData(), autoload_with=engines["trellis"])
        with engines["trellis"].begin() as connection:
            connection.execute(obj.insert(), rows)
            connection.exec_driver_sql(
                "INSERT INTO hierarchy_links (object_name, ancestor_id, descendant_id, depth) "
                "SELECT 'dealer', id, id, 0 FROM obj_dealer WHERE NOT EXISTS (SELECT 1 FROM "
                "hierarchy_links h WHERE h.object_name = 'dealer' AND h.descendant_id = "
                "obj_dealer.id AND h.ancestor_id = obj_dealer.id)"
            )
        with engines["hand"].begin() as connection:
            connection.execute(sa.insert(Dealer), rows)
        for engine in engines.values():
            analyse(engine)
        return live_count(engines["hand"], "dealers")
    finally:
        for engine in engines.values():
            engine.dispose()


def analyse(engine: sa.Engine) -> None:
    command = "VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql(command)


# =====================================================================================
# Where the time goes: statements per request and the plans of the list queries
# =====================================================================================


@contextlib.contextmanager
def statements_sent() -> Iterator[list[tuple[str, Any]]]:
    """Every statement any engine in this process sends while the block runs."""
    sent: list[tuple[str, Any]] = []

    def catch(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        sent.append((statement, parameters))

    event.listen(sa.Engine, "before_cursor_execute", catch)
    try:
        yield sent
    finally:
        event.remove(sa.Engine, "before_cursor_execute", catch)


def in_process_apps(trellis_url: str, hand_url: str, folder: Path) -> tuple[Flask, Flask]:
    from trellis import create_app

    os.environ["TRELLIS_INSTANCE_PATH"] = str(folder / "instance")
    app = create_app({"DATABASE_URL": trellis_url, "SECRET_KEY": "bench-secret"})
    return app, create_hand_app(hand_url)


def inspect_requests(
    sides: dict[str, Side], tokens: dict[str, str], trellis_url: str, hand_url: str, folder: Path
) -> None:
    """Count the statements each request sends (in-process, Flask's test client) and show
    the plan of each list query: what the servers above spent their time on."""
    trellis_app, hand_app = in_process_apps(trellis_url, hand_url, folder)
    clients = {
        "admin": (trellis_app.test_client(), {"Authorization": f"Bearer {tokens['admin']}"}),
        "hq": (trellis_app.test_client(), {"Authorization": f"Bearer {tokens['hq']}"}),
        "hand": (hand_app.test_client(), {"Authorization": f"Bearer {tokens['hand']}"}),
    }
    log("  statements per request (in-process; a Trellis token's use is touched once a minute):")
    for name, (client, headers) in clients.items():
        counts = []
        for op in ("create", "get", "list"):
            in_process_request(client, headers, sides[name], name, op)  # token touch, caches
            with statements_sent() as sent:
                in_process_request(client, headers, sides[name], name, op)
            counts.append(f"{op} {len(sent)} ({', '.join(summarise(s) for s, _ in sent)})")
        log(f"    {name}: " + "; ".join(counts))
    for name in ("admin", "hand"):
        client, headers = clients[name]
        with statements_sent() as sent:
            client.get(sides[name].list_big, headers=headers)
        statement, parameters = next((s, p) for s, p in sent if "ORDER BY" in s)
        explain(trellis_url if name == "admin" else hand_url, name, statement, parameters)


PROBES = iter(range(10**9))


def in_process_request(
    client: Any, headers: dict[str, str], side: Side, name: str, op: str
) -> None:
    """One create, get or list through Flask's test client; a failure stops the benchmark."""
    if op == "create":
        n = next(PROBES)
        body = {
            **dealer_payload(n, random.Random(n)),
            "name": f"Probe {name} {n}",
            "code": f"P-{name.upper()}-{n}",
            "parent": side.root,
        }
        response = client.post(side.collection, json=body, headers=headers)
    elif op == "get":
        response = client.get(f"{side.collection}/{side.root}", headers=headers)
    else:
        response = client.get(side.list_small, headers=headers)
    if response.status_code not in (200, 201):
        raise BenchError(f"{name} {op} in-process: {response.get_data(as_text=True)[:300]}")


def summarise(statement: str) -> str:
    words = statement.split()
    head = " ".join(words[:2]).upper()
    table = next(
        (w for k, w in enumerate(words[1:]) if words[k].upper() in ("FROM", "INTO", "UPDATE")), ""
    )
    return f"{head.split()[0]} {table}".strip()


def explain(url: str, name: str, statement: str, parameters: Any) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                plan = (
                    connection.exec_driver_sql(
                        "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters
                    )
                    .scalars()
                    .all()
                )
            else:
                plan = [
                    str(r)
                    for r in connection.exec_driver_sql(
                        "EXPLAIN QUERY PLAN " + statement, parameters
                    )
                ]
    finally:
        engine.dispose()
    log(f"  {name}: the 100k list query\n    " + " ".join(statement.split()))
    log("    " + "\n    ".join(plan))


# =====================================================================================
# Main
# =====================================================================================


def root_dealer(side: Side, name: str) -> None:
    """The national dealer every benchmark dealer hangs below."""
    root = {"name": f"Root {name}", "code": "ROOT", "level": "national"}
    side.root = None
    created = expect(side.create(-999, root), 201, f"{name} root dealer")
    side.root = created["id"]


def report(measure: Measure, rows: int) -> None:
    log("")
    log(f"{'operation':<10}{'side':>6}{'ops/s':>9}{'median ms':>11}{'ratio':>7}   per round")
    ratios: dict[str, float] = {}
    for op in ("create", "get", "list", "list100k"):
        hand_ms = measure.median_ms(f"hand {op}")
        for side in SIDES:
            key = f"{side} {op}"
            ops_s = statistics.median(measure.throughput(key))
            if side == "hand":
                log(f"{op:<10}{side:>6}{ops_s:>9,.0f}{hand_ms:>11.2f}")
                continue
            per_round = measure.ratios(op, side)
            ratios[f"{side} {op}"] = statistics.median(per_round)
            log(
                f"{op:<10}{side:>6}{ops_s:>9,.0f}{measure.median_ms(key):>11.2f}"
                f"{ratios[key]:>7.2f}   " + " ".join(f"{x:.2f}" for x in per_round)
            )
    log(
        "ratio = Trellis ops/s ÷ hand-written ops/s, paired within a round, median over rounds; "
        "admin = the platform administrator's token, hq = an hq_admin user's"
    )
    ms = " ".join(
        f"{side}_{op}_ms={measure.median_ms(f'{side} {op}'):.2f}"
        for op in ("create", "get", "list", "list100k")
        for side in SIDES
    )
    log(
        f"RESULT http_api create_ratio={ratios['admin create']:.2f} "
        f"get_ratio={ratios['admin get']:.2f} list_ratio={ratios['admin list']:.2f} "
        f"list100k_ratio={ratios['admin list100k']:.2f} "
        f"hq_create_ratio={ratios['hq create']:.2f} hq_get_ratio={ratios['hq get']:.2f} "
        f"hq_list_ratio={ratios['hq list']:.2f} hq_list100k_ratio={ratios['hq list100k']:.2f} "
        f"rows={rows} {ms}"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests, 10,000 rows")
    parser.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--pg-url", default=PG_ADMIN_URL, help="admin URL of the server")
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    parser.add_argument("--n", type=int, help="requests per operation, side and round")
    parser.add_argument("--m", type=int, help="100k-row list requests per side and round")
    parser.add_argument("--rows", type=int, help="rows of the big table")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--serve-hand", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.serve_hand:
        serve_hand(args.serve_hand, args.port)
        return
    n = args.n or (30 if args.quick else 100)
    m = args.m or (10 if args.quick else 30)
    rows = args.rows or (10_000 if args.quick else 100_000)
    rounds = args.rounds or (3 if args.quick else 5)
    if n % CHUNK or m % CHUNK or not 1 <= rounds <= 50:
        raise BenchError(f"--n and --m must be multiples of {CHUNK}; --rounds 1–50")
    log(
        f"http_api on {args.db}: gunicorn, 1 worker, {THREADS} threads each; {n} creates, gets "
        f"and list pages per Trellis token ({2 * n} hand-written) per round; {m} lists of a "
        f"{rows:,}-row table; {rounds} rounds"
    )
    with databases(args.db, args.pg_url, args.keep) as (trellis_url, hand_url, folder):
        run(args, trellis_url, hand_url, folder, (n, m, rows, rounds))


def run(
    args: argparse.Namespace,
    trellis_url: str,
    hand_url: str,
    folder: Path,
    sizes: tuple[int, int, int, int],
) -> None:
    n, m, rows, rounds = sizes
    env = trellis_env(trellis_url, folder / "instance")
    tokens = set_up_trellis(env)
    tokens["hand"] = set_up_hand(hand_url)
    servers: list[Server] = []
    clients: list[Client] = []
    try:
        serve = [sys.executable, "-m", "trellis", "serve", "--workers", "1"]
        servers.append(start_server("trellis", [*serve, "--threads", str(THREADS)], env, folder))
        servers.append(
            start_server("hand", [sys.executable, __file__, "--serve-hand", hand_url], env, folder)
        )
        wait_ready(servers[0], "/api/v1/me", tokens["admin"])
        wait_ready(servers[1], "/dealers?limit=1", tokens["hand"])
        clients = [Client(servers[0].port, tokens["admin"]), Client(servers[0].port, tokens["hq"])]
        clients.append(Client(servers[1].port, tokens["hand"]))
        credit = (4_000_000, 5_000_000)  # a tenth of the rows: credit limits are 0–10,000,000
        trellis_ids: dict[int, int] = {}
        sides = {
            "admin": trellis_side(clients[0], credit, trellis_ids),
            "hq": trellis_side(clients[1], credit, trellis_ids),
            "hand": hand_side(clients[2], credit),
        }
        root_dealer(sides["admin"], "trellis")
        sides["hq"].root = sides["admin"].root
        root_dealer(sides["hand"], "hand")
        payloads = [dealer_payload(i, random.Random(i)) for i in range(2 * n * rounds)]
        check_equivalence(sides, payloads[0])
        log("  all sides store the same dealer and refuse bad input with JSON errors")
        warm_up(sides, payloads, 10 if args.quick else 30)
        log("  small table (the dealers the creates make):")
        measure = small_table_rounds(sides, payloads, n, rounds)
        same_page(sides, lambda s: s.list_small, "small list")
        begin = time.perf_counter()
        loaded = bulk_load(trellis_url, hand_url, rows)
        log(f"  {loaded:,} dealers in each table ({time.perf_counter() - begin:.1f} s to load)")
        if same_page(sides, lambda s: s.list_big, "100k list") != LIST_LIMIT:
            raise BenchError("the 100k list page is not full")
        for side in sides.values():  # warm-up: the plan and the buffers of the new rows
            for _ in range(3):
                expect(side.client.request("GET", side.list_big), 200, "warm-up 100k list")
        big_table_rounds(sides, measure, m, rounds)
        inspect_requests(sides, tokens, trellis_url, hand_url, folder)
    finally:
        for client in clients:
            client.close()
        for server in servers:
            server.stop()
    report(measure, loaded)


if __name__ == "__main__":
    main()
