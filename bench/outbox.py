#!/usr/bin/env python
"""Outbox: events relayed per second by Trellis's relay vs a hand-written relay loop.

N events (10,000; ``--quick`` 2,000) are emitted through ``jobs.outbox.emit``, 100 per
transaction, on a fresh database. Then two relays drain them, one after the other, each
over its own copy of the events:

* Trellis — ``jobs.outbox.relay_due``: claims due rows ten at a time (``FOR UPDATE SKIP
  LOCKED`` on PostgreSQL) moving their next attempt past the lease (committed), then calls
  the kind's deliverer for each in a savepoint of one session and marks the batch's
  delivered events in one UPDATE, with that session's commit;
* baseline (hand-written) — what a competent developer writes for one table: a loop of
  ``SELECT … WHERE status = 'pending' ORDER BY id LIMIT 10 FOR UPDATE SKIP LOCKED``,
  the deliverer called, and one ``UPDATE … SET status = 'delivered'`` per batch, in one
  transaction per batch (no lease: a crash mid-batch simply rolls the batch back).

The deliverer is the same trivial function for both (it counts), so the figures are the
relay's own overhead, not a receiver's. The ratio is Trellis events/s ÷ baseline events/s.

``write_cost`` measures the added cost of work hooked on a record write (records created
per second through the API with and without it); this benchmark runs it for "one outbox
event per write" (``write_cost_ratio``) and for one automation on create — a condition, a
field set before the save and a webhook event after it (``automation_cost_ratio``; each
note it saw must come out tagged).

    python bench/outbox.py [--quick] [--db postgresql|sqlite] [--events N] [--writes N]
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from _common import database, definition, expect, field, log, trellis_app

BATCH = 100  # events per emitting transaction
NOTE = definition(
    "bench_note",
    {
        "title": field("text", "Title", type="string", maxLength=120),
        "tag": field("text", "Tag", type=["string", "null"], maxLength=120),
    },
)
# What a typical automation does on a write: a condition, a field set before the save, and
# a webhook event after it (to the webhooks subscribed: none here, so only its own cost).
AUTOMATION = {
    "x-name": "bench_tag_notes",
    "x-label": {"en": "Tag notes", "zh-CN": "标记便笺"},
    "object": "bench_note",
    "trigger": {"on": "create"},
    "condition": "LEN(title) > 0",
    "actions": [
        {"type": "set_fields", "values": {"tag": {"expression": "UPPER(title)"}}},
        {"type": "webhook", "event": "note.created"},
    ],
}


def emit_events(app: Any, count: int, kind: str) -> None:
    from trellis.extensions import database_of
    from trellis.platform.runtime import jobs

    db = database_of(app)
    app.extensions["trellis.jobs.polling"] = True  # emit only: the relays below deliver
    for start in range(0, count, BATCH):
        with db.session() as session:
            for n in range(start, min(start + BATCH, count)):
                jobs.outbox.emit(session, kind, {"n": n})
            session.commit()


def trellis_relay(app: Any, count: int) -> float:
    """Seconds for ``relay_due`` to deliver ``count`` events."""
    from trellis.platform.runtime import jobs

    delivered: list[str] = []

    @jobs.outbox.deliverer("bench.trellis")
    def deliver(_session: Any, event: Any) -> None:
        delivered.append(event.event_id)

    started = time.perf_counter()
    while jobs.outbox.relay_due(app, limit=1000):
        pass
    elapsed = time.perf_counter() - started
    if len(delivered) != count:
        raise SystemExit(f"bench: error: Trellis delivered {len(delivered)} of {count}")
    return elapsed


def baseline_relay(engine: sa.Engine, count: int) -> float:
    """Seconds for the hand-written loop to deliver ``count`` events of ``bench.hand``."""
    table = sa.table(
        "outbox_events",
        sa.column("id"),
        sa.column("event_id"),
        sa.column("kind"),
        sa.column("payload"),
        sa.column("status"),
    )
    pending = (
        sa.select(table.c.id, table.c.event_id, table.c.payload)
        .where(table.c.status == "pending", table.c.kind == "bench.hand")
        .order_by(table.c.id)
        .limit(10)
        .with_for_update(skip_locked=True)
    )
    delivered: list[str] = []
    writer = engine.execution_options(trellis_write=True)
    started = time.perf_counter()
    while True:
        with writer.begin() as connection:
            rows = connection.execute(pending).all()
            if not rows:
                break
            for row in rows:
                delivered.append(row.event_id)
            connection.execute(
                sa.update(table)
                .where(table.c.id.in_([row.id for row in rows]))
                .values(status="delivered")
            )
    elapsed = time.perf_counter() - started
    if len(delivered) != count:
        raise SystemExit(f"bench: error: the baseline delivered {len(delivered)} of {count}")
    return elapsed


def write_cost(
    app: Any,
    token: str,
    install: Callable[[], Callable[[], None]],
    writes: int,
    object_name: str = "bench_note",
) -> tuple[float, float]:
    """Records created per second through ``POST /api/v1/records/<object>`` without and
    with what ``install()`` hooks onto the write path (it returns its own uninstaller).
    Runs alternate (four rounds each way) so both see the same machine; medians."""
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}

    def rate() -> float:
        started = time.perf_counter()
        for n in range(writes):
            body = {"title": f"note {uuid.uuid4().hex[:8]} {n}"}
            expect(
                client.post(f"/api/v1/records/{object_name}", json=body, headers=headers),
                201,
                "create",
            )
        return writes / (time.perf_counter() - started)

    plain, hooked = [], []
    for _ in range(4):
        plain.append(rate())
        uninstall = install()
        try:
            hooked.append(rate())
        finally:
            uninstall()
    return sorted(plain)[len(plain) // 2], sorted(hooked)[len(hooked) // 2]


def outbox_event_per_write() -> Callable[[], None]:
    """Hook one outbox event onto every record write (what webhooks and ERP sync add)."""
    from trellis.platform.runtime import jobs
    from trellis.platform.runtime.records.hooks import Hook, hooks

    def emit(event: Any) -> None:
        jobs.outbox.emit(event.session, "bench.write", {"record": event.record_id})

    hooks.register(Hook.AFTER_WRITE, emit)
    return lambda: hooks.unregister(Hook.AFTER_WRITE, emit)


def one_automation(app: Any, token: str) -> Callable[[], Callable[[], None]]:
    """An installer of ``AUTOMATION`` through the API (its uninstaller deletes it)."""
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}

    def install() -> Callable[[], None]:
        expect(client.post("/api/v1/automations", json=AUTOMATION, headers=headers), 201, "add")

        def uninstall() -> None:
            expect(
                client.delete("/api/v1/automations/bench_tag_notes", headers=headers),
                200,
                "delete automation",
            )

        return uninstall

    return install


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--writes", type=int, default=None)
    args = parser.parse_args()
    events = args.events or (2000 if args.quick else 10000)
    writes = args.writes or (100 if args.quick else 300)

    with database(args.db) as url:
        app, token = trellis_app(url)
        from trellis.extensions import database_of

        engine = database_of(app).engine
        log(f"emitting {events} events twice ({BATCH} per transaction) on {args.db}")
        emit_events(app, events, "bench.hand")
        emit_events(app, events, "bench.trellis")
        app.extensions.pop("trellis.jobs.polling")
        hand_s = baseline_relay(engine, events)
        trellis_s = trellis_relay(app, events)
        hand_rate, trellis_rate = events / hand_s, events / trellis_s
        log(f"baseline relay: {hand_rate:,.0f} events/s ({hand_s:.2f} s)")
        log(f"Trellis relay:  {trellis_rate:,.0f} events/s ({trellis_s:.2f} s)")

        expect(
            app.test_client().post(
                "/api/v1/objects", json=NOTE, headers={"Authorization": f"Bearer {token}"}
            ),
            201,
            "define bench_note",
        )
        # Emitted on writes below, delivered by nobody: only the write's cost is measured.
        app.extensions["trellis.jobs.polling"] = True
        plain, hooked = write_cost(app, token, outbox_event_per_write, writes)
        log(f"record creates: {plain:,.0f}/s plain, {hooked:,.0f}/s with an outbox event")
        bare, automated = write_cost(app, token, one_automation(app, token), writes)
        log(f"record creates: {bare:,.0f}/s plain, {automated:,.0f}/s with an automation")
        tagged = (
            database_of(app)
            .engine.connect()
            .execute(sa.text("SELECT count(*) FROM obj_bench_note WHERE tag = UPPER(title)"))
            .scalar()
        )
        if tagged != 4 * writes:
            raise SystemExit(f"bench: error: the automation tagged {tagged} of {4 * writes} notes")
        engine.dispose()

    log(
        f"RESULT outbox ratio={trellis_rate / hand_rate:.2f} events={events} db={args.db} "
        f"trellis_per_s={trellis_rate:.0f} baseline_per_s={hand_rate:.0f} "
        f"write_cost_ratio={hooked / plain:.2f} automation_cost_ratio={automated / bare:.2f}"
    )


if __name__ == "__main__":
    main()
