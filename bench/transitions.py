#!/usr/bin/env python
"""Workflow transitions per second vs plain record updates of the same rows.

    python bench/transitions.py [--quick] [--db postgresql|sqlite] [--n 200] [--rounds 5]
                                [--tasks 10000]

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

``inbox_ms`` is the first page (50) of one approver's inbox holding ``--tasks`` pending
tasks (``--quick``: 2,000), as ``GET /api/v1/approvals/inbox`` answers it through the test
client (authentication, the page with titles and step labels, the count): the median of 30
requests. Around them are as many decided tasks of the same approver and twice as many
pending tasks of two other approvers, so the index has to choose. 50 requests go through
the real submission (``TransitionService.fire`` → ``ApprovalService.open``); the rest are
laid in with ``executemany`` in the same shape, for time. The same page and count in raw
SQL is the baseline (``inbox_sql_ms``); the service call alone is ``inbox_service_ms``.
The issue aims at ``inbox_ms`` < 50.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import sqlalchemy as sa
from _common import BenchError, database, definition, expect, field, log, trellis_app

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
    parser.add_argument("--tasks", type=int, default=None, help="pending tasks in the inbox")
    parser.add_argument("--quick", action="store_true", help="n=60, 3 rounds, 2000 tasks")
    args = parser.parse_args()
    n = args.n or (60 if args.quick else 200)
    rounds = args.rounds or (3 if args.quick else 5)
    tasks = args.tasks or (2000 if args.quick else 10_000)
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
        inbox = inbox_timings(app, _token, tasks)
        print(
            f"RESULT transitions ratio={statistics.median(ratios):.2f} "
            f"inbox_ms={inbox['http']:.1f} inbox_service_ms={inbox['service']:.1f} "
            f"inbox_sql_ms={inbox['sql']:.1f} db={args.db} n={n} rounds={rounds} tasks={tasks}"
        )


CLAIM_LABEL = {"en": "Claim", "zh-CN": "报销"}
RUNS = 30


def claim_documents(approver: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """An object whose submission goes to one approver."""
    claim = definition(
        "bench_claim",
        {
            "title": field("text", "Title", type="string", maxLength=80),
            "amount": field("currency", "Amount", type="number"),
            "status": field(
                "picklist",
                "Status",
                type="string",
                enum=["draft", "pending", "approved"],
                default="draft",
            ),
        },
        required=["title"],
    )
    claim["x-title-field"] = "title"
    step = {"name": "review", "label": CLAIM_LABEL, "approvers": [{"user": approver}]}
    workflow = {
        "x-name": "bench_claim_flow",
        "x-label": CLAIM_LABEL,
        "object": "bench_claim",
        "status_field": "status",
        "states": [
            {"name": "draft", "label": CLAIM_LABEL, "category": "draft"},
            {"name": "pending", "label": CLAIM_LABEL, "category": "in_progress"},
            {"name": "approved", "label": CLAIM_LABEL, "category": "done"},
        ],
        "transitions": [
            {"name": "submit", "label": CLAIM_LABEL, "from": "draft", "to": "pending",
             "approval": {"approved": "approve", "rejected": "reopen", "steps": [step]}},
            {"name": "approve", "label": CLAIM_LABEL, "from": "pending", "to": "approved"},
            {"name": "reopen", "label": CLAIM_LABEL, "from": "pending", "to": "draft"},
        ],
    }  # fmt: skip
    return claim, workflow


def inbox_timings(app: Any, token: str, tasks: int) -> dict[str, float]:
    """Lay ``tasks`` pending tasks in one approver's inbox (and decided and others' tasks
    around them); time the first page over HTTP, through the service, and in raw SQL."""
    from trellis.extensions import database_of
    from trellis.platform.runtime.models import ApprovalRequest, ApprovalTask, User, utcnow
    from trellis.platform.runtime.objects import ObjectService
    from trellis.platform.runtime.records.service import RecordService
    from trellis.platform.runtime.workflow.approvals import ApprovalService
    from trellis.platform.runtime.workflow.documents import WorkflowService
    from trellis.platform.runtime.workflow.transitions import TransitionService

    db = database_of(app)
    registry = app.extensions["trellis.registry"]
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    approver_email = client.get("/api/v1/me", headers=headers).get_json()["email"]
    others = []
    for name in ("other1", "other2"):
        body = {"email": f"{name}@example.com", "password": "bench password 1", "name": name}
        others.append(expect(client.post("/api/v1/users", json=body, headers=headers), 201,
                             "user")["id"])  # fmt: skip
    claim, workflow = claim_documents(approver_email)
    with db.session() as session:
        ObjectService(session, registry, None).create(claim)
        session.commit()
    with db.session() as session:
        WorkflowService(session, registry, None).create(workflow)
        session.commit()
    mine_total, decided, theirs = tasks, tasks, 2 * tasks
    records = mine_total + decided + theirs
    began = time.perf_counter()
    ids: list[int] = []
    for start in range(0, records, 1000):
        with db.session() as session:
            registry.ensure_current(session)
            payloads = [{"title": f"claim {i}", "amount": i % 997}
                        for i in range(start, min(records, start + 1000))]  # fmt: skip
            created = RecordService(session, registry).create_many("bench_claim", payloads)
            ids.extend(r["id"] for r in created["items"])
            session.commit()
    real = 50
    for record_id in ids[:real]:
        with db.session() as session:
            registry.ensure_current(session)
            TransitionService(session, registry, None).fire("bench_claim", record_id, "submit")
            session.commit()
    with db.session() as session:
        approver = session.scalar(sa.select(User.id).where(User.email == approver_email))
        table = registry.get("bench_claim").table
        now = utcnow()
        laid = ids[real:]
        session.execute(sa.update(table).where(table.c.id.in_(laid)).values(status="pending"))
        owners = [approver] * (mine_total - real) + [approver] * decided + [
            others[i % 2] for i in range(theirs)]  # fmt: skip
        states = ["pending"] * (mine_total - real) + ["approved"] * decided + ["pending"] * theirs
        requests = [
            {"object_name": "bench_claim", "record_id": rid, "workflow_name": "bench_claim_flow",
             "workflow_version": 1, "transition": "submit",
             "status": "pending" if state == "pending" else "approved", "step_index": 0,
             "step_name": "review", "round": 0, "submitter_id": None, "submitted_at": now}
            for rid, state in zip(laid, states, strict=True)
        ]  # fmt: skip
        request_table = ApprovalRequest.__table__
        session.execute(sa.insert(request_table), requests)
        request_ids = dict(
            session.execute(
                sa.select(request_table.c.record_id, request_table.c.id).where(
                    request_table.c.record_id.in_(laid)
                )
            ).all()
        )
        rows = [
            {"request_id": request_ids[rid], "step_index": 0, "step_name": "review", "round": 0,
             "lane": 0, "seq": 0, "approver_id": owner, "status": state, "created_at": now,
             "deadline_done": False, "escalations": 0}
            for rid, owner, state in zip(laid, owners, states, strict=True)
        ]  # fmt: skip
        session.execute(sa.insert(ApprovalTask.__table__), rows)
        session.commit()
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect() as connection:
            connection.execute(sa.text("ANALYZE approval_tasks"))
            connection.execute(sa.text("ANALYZE approval_requests"))
            connection.commit()
    log(f"laid {records} claims and their tasks in {time.perf_counter() - began:.1f}s")
    with db.session() as session:
        registry.ensure_current(session)
        count = ApprovalService(session, registry, None).inbox_count(approver)
    if count != mine_total:
        raise BenchError(f"the inbox holds {count} tasks, expected {mine_total}")

    def http() -> None:
        page = client.get("/api/v1/approvals/inbox", headers=headers).get_json()
        if len(page["items"]) != 50 or page["count"] != mine_total:
            raise BenchError(f"unexpected inbox page: {len(page['items'])}, {page['count']}")

    def service() -> None:
        with db.session() as session:
            registry.ensure_current(session)
            approvals = ApprovalService(session, registry, None)
            approvals.inbox(approver, limit=50)
            approvals.inbox_count(approver)

    page_sql = sa.text(
        "SELECT t.id, t.step_name, t.due_at, t.created_at, r.object_name, r.record_id, "
        "r.submitted_at, c.title FROM approval_tasks t JOIN approval_requests r ON "
        "r.id = t.request_id JOIN obj_bench_claim c ON c.id = r.record_id "
        "WHERE t.approver_id = :a AND t.status = 'pending' ORDER BY t.id LIMIT 50"
    )
    count_sql = sa.text(
        "SELECT count(*) FROM approval_tasks WHERE approver_id = :a AND status = 'pending'"
    )

    def raw() -> None:
        with db.engine.connect() as connection:
            connection.execute(page_sql, {"a": approver}).all()
            connection.execute(count_sql, {"a": approver}).scalar()

    timings = {}
    for name, call in (("http", http), ("service", service), ("sql", raw)):
        call()  # warm
        spent = []
        for _ in range(RUNS):
            start = time.perf_counter()
            call()
            spent.append((time.perf_counter() - start) * 1000)
        timings[name] = statistics.median(spent)
        log(f"inbox {name}: median {timings[name]:.1f} ms over {RUNS}")
    return timings


if __name__ == "__main__":
    main()
