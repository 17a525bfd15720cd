#!/usr/bin/env python
"""Workflow transitions per second vs plain record updates of the same rows.

    python bench/transitions.py [--quick] [--db postgresql|sqlite] [--n 200] [--rounds 5]

One object, ``bench_ticket`` (a picklist ``status``, open / working, and a text
``note``), gets a workflow through ``WorkflowService``: ``start`` moves open → working,
``reopen`` working → open, both with an optional comment. ``--n`` tickets are created.
Each round fires one transition on every ticket (``TransitionService.fire``: the row lock,
the engine's decision, the update through the record pipeline and its history row with
the transition) and makes one plain update of every ticket's ``note``
(``RecordService.update``) — the same rows, one write per session and transaction,
committed, as one API request would be; the two take turns every 10 writes.

``ratio`` is the median over the rounds of (plain update time ÷ transition time), i.e.
transitions per second over updates per second (1.00 = a transition costs no more than an
update; the issue aims at ≥ 0.6). At the end every ticket's status is checked against the
number of transitions it took, and its history holds one ``transition`` row per firing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import sqlalchemy as sa
from _common import BenchError, database, definition, field, log, trellis_app

CHUNK = 10
LABEL = {"en": "x", "zh-CN": "x"}


def documents() -> tuple[dict[str, Any], dict[str, Any]]:
    """The ticket object and its workflow."""
    ticket = definition(
        "bench_ticket",
        {
            "title": field("text", "Title", type="string", maxLength=80),
            "status": field(
                "picklist", "Status", type="string", enum=["open", "working"], default="open"
            ),
            "note": field("text", "Note", type="string", maxLength=80),
        },
        required=["title"],
    )
    workflow = {
        "x-name": "bench_ticket_flow",
        "x-label": LABEL,
        "object": "bench_ticket",
        "status_field": "status",
        "states": [
            {"name": "open", "label": LABEL, "category": "draft"},
            {"name": "working", "label": LABEL, "category": "in_progress", "locked": ["title"]},
        ],
        "transitions": [
            {"name": "start", "label": LABEL, "from": "open", "to": "working",
             "comment": "optional"},
            {"name": "reopen", "label": LABEL, "from": "working", "to": "open",
             "comment": "optional"},
        ],
    }  # fmt: skip
    return ticket, workflow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--n", type=int, default=None, help="tickets (writes per side a round)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="n=60, 3 rounds")
    args = parser.parse_args()
    n = args.n or (60 if args.quick else 200)
    rounds = args.rounds or (3 if args.quick else 5)
    if n < 1 or rounds < 1:
        raise BenchError("--n and --rounds must be at least 1")
    from trellis.exceptions import TrellisError
    from trellis.extensions import database_of
    from trellis.platform.runtime.objects import ObjectService
    from trellis.platform.runtime.records.service import RecordService
    from trellis.platform.runtime.workflow.documents import WorkflowService
    from trellis.platform.runtime.workflow.transitions import TransitionService

    with database(args.db) as url:
        app, _token = trellis_app(url)
        db = database_of(app)
        registry = app.extensions["trellis.registry"]
        ticket, workflow = documents()
        with db.session() as session:
            ObjectService(session, registry, None).create(ticket)
            session.commit()
        with db.session() as session:
            WorkflowService(session, registry, None).create(workflow)
            session.commit()

        def write(action: Any) -> Any:
            """One write in its own transaction, as one request."""
            with db.session() as session:
                registry.ensure_current(session)
                try:
                    result = action(session)
                except TrellisError as exc:
                    raise BenchError(f"write refused: {exc}: {exc.details}") from None
                session.commit()
                return result

        ids = [
            write(lambda s, i=i: RecordService(s, registry).create(
                "bench_ticket", {"title": f"ticket {i}"}))["id"]
            for i in range(n)
        ]  # fmt: skip
        versions = dict.fromkeys(ids, 1)
        fired = dict.fromkeys(ids, 0)

        def transition(record_id: int) -> None:
            name = "start" if fired[record_id] % 2 == 0 else "reopen"
            result = write(
                lambda s: TransitionService(s, registry, None).fire(
                    "bench_ticket", record_id, name, "bench"
                )
            )
            fired[record_id] += 1
            versions[record_id] = result["record"]["version"]

        def update(record_id: int, round_no: int) -> None:
            payload = {"version": versions[record_id], "note": f"round {round_no}"}
            record = write(
                lambda s: RecordService(s, registry).update("bench_ticket", record_id, payload)
            )
            versions[record_id] = record["version"]

        ratios = []
        for round_no in range(rounds):
            spent = {"transition": 0.0, "update": 0.0}
            for chunk_no, start in enumerate(range(0, n, CHUNK)):
                chunk = ids[start : start + CHUNK]
                order = ("transition", "update") if (round_no + chunk_no) % 2 == 0 else (
                    "update", "transition")  # fmt: skip
                for side in order:
                    began = time.perf_counter()
                    for record_id in chunk:
                        if side == "transition":
                            transition(record_id)
                        else:
                            update(record_id, round_no)
                    spent[side] += time.perf_counter() - began
            ratios.append(spent["update"] / spent["transition"])
            log(
                f"round {round_no + 1}: {n / spent['transition']:.0f} transitions/s, "
                f"{n / spent['update']:.0f} updates/s, ratio {ratios[-1]:.2f}"
            )
        meta = registry.get("bench_ticket")
        with db.session() as session:
            rows = dict(session.execute(sa.select(meta.table.c.id, meta.table.c.status)).all())
            moves = dict(
                session.execute(
                    sa.text(
                        "SELECT record_id, count(*) FROM record_history WHERE object_name ="
                        " 'bench_ticket' AND action = 'transition' GROUP BY record_id"
                    )
                ).all()
            )
        for record_id in ids:
            expected = "working" if fired[record_id] % 2 else "open"
            if rows[record_id] != expected or moves.get(record_id, 0) != fired[record_id]:
                raise BenchError(f"ticket {record_id} is {rows[record_id]}, expected {expected}")
        log(f"checked: {n} tickets, their states and {sum(fired.values())} transition rows")
        print(
            f"RESULT transitions ratio={statistics.median(ratios):.2f} db={args.db} n={n} "
            f"rounds={rounds}"
        )


if __name__ == "__main__":
    main()
