"""The in-process scheduler of the embedded mode (no Redis, no ``trellis worker``).

``trellis serve`` (and so ``trellis demo``) starts one daemon thread in each web process
when ``TRELLIS_REDIS_URL`` is unset: every ``EMBEDDED_TICK_SECONDS`` it ticks the
scheduler (``scheduler.tick``: each schedule's latest slot, enqueued once by its unique
key however many processes tick) and runs the due jobs here (``queue.run_due_here``:
each claimed once). Schedules such as the approvals' deadlines and cron automations
therefore run without a worker; a ``trellis worker`` beside it changes nothing but who
runs a job first.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import TYPE_CHECKING

from trellis import defaults
from trellis.platform.runtime.jobs import scheduler
from trellis.platform.runtime.jobs.queue import run_due_here, uses_redis

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)
_KEY = "trellis.jobs.embedded"


def run_once(app: Flask, now: dt.datetime | None = None) -> int:
    """One tick: enqueue the schedules' due slots, then run what is due; how many ran."""
    scheduler.tick(app, now)
    return run_due_here(app)


def start(app: Flask, every: float | None = None) -> threading.Thread | None:
    """Start the ticking thread of this process (once; none when jobs go through Redis)."""
    if uses_redis(app) or "trellis.registry" not in app.extensions:
        return None
    running: threading.Thread | None = app.extensions.get(_KEY)
    if running is not None and running.is_alive():
        return running
    stop = threading.Event()
    interval = float(every if every is not None else defaults.EMBEDDED_TICK_SECONDS)

    def loop() -> None:
        while not stop.wait(interval):
            try:
                with app.app_context():
                    run_once(app)
            except Exception:  # the database may be away a moment: next tick
                log.exception("embedded scheduler tick failed")

    thread = threading.Thread(target=loop, name="trellis-scheduler", daemon=True)
    thread.stop = stop  # type: ignore[attr-defined]
    app.extensions[_KEY] = thread
    thread.start()
    return thread


def stop(app: Flask) -> None:
    """Stop this process's ticking thread, if it runs (tests)."""
    thread: threading.Thread | None = app.extensions.pop(_KEY, None)
    if thread is not None:
        thread.stop.set()  # type: ignore[attr-defined]
        thread.join(timeout=10)
