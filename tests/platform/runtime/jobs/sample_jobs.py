"""Jobs and a deliverer for the tests, importable by a `trellis worker` subprocess too
(``TRELLIS_JOB_MODULES=tests.platform.runtime.jobs.sample_jobs``).

Their effects land in ``job_effects``, a table the tests create: one row per effect, with
a unique key, so a job that ran twice would show (or fail) at once.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from trellis.platform.runtime import jobs

EFFECTS = sa.table("job_effects", sa.column("effect_key"), sa.column("detail"))
CREATE_EFFECTS = (
    "CREATE TABLE IF NOT EXISTS job_effects "
    "(effect_key VARCHAR(200) PRIMARY KEY, detail VARCHAR(200) NOT NULL)"
)


def effect(session: Any, key: str, detail: str = "") -> None:
    session.execute(sa.insert(EFFECTS).values(effect_key=key, detail=detail))


@jobs.job("tests.effect", max_attempts=3)
def write_effect(
    ctx: jobs.JobContext, *, key: str, fail_times: int = 0, blocker: str | None = None
) -> dict[str, Any]:
    """Write one effect row; fail the first ``fail_times`` attempts, and every attempt
    while the file ``blocker`` exists."""
    if ctx.attempt <= fail_times or (blocker and Path(blocker).exists()):
        raise RuntimeError(f"failing attempt {ctx.attempt} on purpose")
    effect(ctx.session, key, f"attempt {ctx.attempt}")
    return {"key": key, "attempt": ctx.attempt}


@jobs.job("tests.slow_effect", max_attempts=3)
def slow_effect(ctx: jobs.JobContext, *, key: str, started: str, release: str) -> None:
    """Write the effect, say so in ``started`` (a file), then wait for ``release`` to exist
    before returning: a test kills the worker in between, on the first attempt."""
    ctx.progress(1, 2, "effect written, waiting")
    effect(ctx.session, key, f"attempt {ctx.attempt}")
    Path(started).write_text(str(ctx.attempt))
    while ctx.attempt == 1 and not Path(release).exists():
        time.sleep(0.05)


@jobs.job("tests.cron_effect", max_attempts=1)
def cron_effect(ctx: jobs.JobContext) -> None:
    """A scheduled job's effect, keyed by the job's own key (one per slot)."""
    assert ctx.key is not None
    effect(ctx.session, ctx.key)


@jobs.outbox.deliverer("tests.file")
def deliver_to_file(session: Any, event: jobs.outbox.OutboxEvent) -> None:
    """Append the event id to the file its payload names (the receiver of the tests)."""
    with open(event.payload["path"], "a", encoding="utf-8") as handle:
        handle.write(event.event_id + "\n")


@jobs.outbox.deliverer("tests.effect")
def deliver_effect(session: Any, event: jobs.outbox.OutboxEvent) -> None:
    """Write the effect ``payload["key"]`` in the relay's session, after ``payload["sleep"]``
    seconds; then fail as ``payload["fail"]`` says: ``"raise"`` (an error: the effect is
    undone) or ``"told"`` (``DeliveryFailed``: the effect stays)."""
    time.sleep(event.payload.get("sleep", 0))
    effect(session, event.payload["key"], f"attempt {event.attempt}")
    if event.payload.get("fail") == "raise":
        raise RuntimeError("the receiver broke")
    if event.payload.get("fail") == "told":
        raise jobs.outbox.DeliveryFailed("the receiver said no (logged)")


if os.environ.get("TRELLIS_TEST_EVERY_SECOND"):
    # Only in the worker processes of the scheduler test: a slot every second.
    jobs.periodic("tests.every_second", cron="* * * * * *", job="tests.cron_effect")
