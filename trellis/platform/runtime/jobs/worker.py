"""``trellis worker``: runs jobs, relays the outbox, sweeps lost jobs and ticks schedules.

With ``TRELLIS_REDIS_URL`` the main thread is an RQ ``SimpleWorker`` (with RQ's scheduler,
which releases retries and delayed jobs when due); each RQ job is ``perform(job_id)``.
Without Redis the main thread polls the ``jobs`` table instead. Either way two threads run
beside it:

- the **relay** delivers due outbox events, waking early when a commit pushes to the
  wake list, and polling every ``TRELLIS_WORKER_POLL_SECONDS`` when it does not (or when
  Redis is down: its errors are logged and retried with back-off, never fatal);
- the **maintainer** re-queues jobs whose worker died (expired lease), pushes due jobs
  that never reached RQ (a push during an outage, a Redis restart), and ticks the
  scheduler.

RQ's own loop gives up on some Redis errors; the worker then waits and starts it again,
so a Redis outage pauses the RQ side and the worker carries on when Redis is back.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import logging
import random
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis

from trellis.platform.runtime.jobs import outbox, scheduler
from trellis.platform.runtime.jobs.queue import (
    POLLING_KEY,
    next_due,
    push,
    repush_stale,
    uses_redis,
)
from trellis.platform.runtime.jobs.runner import run_job, sweep_lost
from trellis.platform.runtime.models import utcnow

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)

PERFORM_SLACK = dt.timedelta(seconds=2)  # RQ's scheduler and this clock may differ a little
_worker_app: Flask | None = None


def perform(job_id: int) -> None:
    """What each RQ job calls: run the ``jobs`` row ``job_id`` (claiming it first)."""
    run_job(_app(), job_id, now=utcnow() + PERFORM_SLACK)


def _app() -> Flask:
    """The worker's app; under a plain ``rq worker`` one is built from the settings."""
    global _worker_app
    if _worker_app is None:
        from trellis import create_app

        _worker_app = create_app()
    return _worker_app


def import_job_modules(app: Flask) -> None:
    """Import the modules named in ``TRELLIS_JOB_MODULES``, which register jobs and schedules."""
    for name in str(app.config.get("JOB_MODULES") or "").split(","):
        if name.strip():
            importlib.import_module(name.strip())


class Worker:
    """One worker process: the job loop in the calling thread, relay and maintainer beside."""

    def __init__(self, app: Flask, queues: list[str], burst: bool = False) -> None:
        global _worker_app
        _worker_app = app
        app.extensions[POLLING_KEY] = True  # commits here leave jobs and events to the loops
        self.app = app
        self.queues = queues
        self.burst = burst
        self.stopping = threading.Event()
        self.poll = float(app.config["WORKER_POLL_SECONDS"])

    def run(self) -> None:
        """Work until stopped (SIGTERM, SIGINT), or in ``burst`` until nothing is left."""
        if self.burst:
            self._run_burst()
            return
        threads = [
            threading.Thread(target=self._relay_loop, name="outbox-relay", daemon=True),
            threading.Thread(target=self._maintain_loop, name="jobs-maintainer", daemon=True),
        ]
        for thread in threads:
            thread.start()
        try:
            if uses_redis(self.app):
                self._rq_loop()
            else:
                self._install_stop_signals()
                self._poll_loop()
        finally:
            self.stopping.set()
            for thread in threads:
                thread.join(timeout=10)

    # --- the job loop ---------------------------------------------------------------------

    def _rq_loop(self) -> None:
        wait = 1.0
        while not self.stopping.is_set():
            rq_worker = None
            try:
                connection = self._redis()
                rq_worker = _rq_worker_class()(self.queues, connection=connection)
                rq_worker.work(with_scheduler=True, logging_level="WARNING")
                if _stop_was_requested(rq_worker):
                    return
            except redis.RedisError as exc:
                # A SIGTERM while Redis is down ends RQ's loop, whose clean-up (its death
                # in Redis) then fails: the stop still holds, or it would be lost.
                if rq_worker is not None and _stop_was_requested(rq_worker):
                    return
                log.warning("worker: Redis unavailable (%s); retrying in %.0f s", exc, wait)
            from rq.exceptions import StopRequested

            try:  # RQ's signal handlers stay installed meanwhile: a SIGTERM raises here
                if self.stopping.wait(_jittered(wait)):
                    return
            except StopRequested:
                return
            wait = min(wait * 2, 30.0)

    def _poll_loop(self) -> None:
        while not self.stopping.is_set():
            if not self._run_due_jobs() and self.stopping.wait(self.poll):
                return

    def _run_due_jobs(self) -> int:
        ran = 0
        while not self.stopping.is_set():
            job_id = next_due(self.app, self.queues)
            if job_id is None:
                break
            if run_job(self.app, job_id) is not None:
                ran += 1
        return ran

    def _run_burst(self) -> None:
        """Once through everything: sweep, tick, run what is due (RQ or here), relay."""
        self._maintain_once()
        if uses_redis(self.app):
            _rq_worker_class()(self.queues, connection=self._redis()).work(
                burst=True, with_scheduler=True, logging_level="WARNING"
            )
        else:
            self._run_due_jobs()
        while outbox.relay_due(self.app):
            pass

    # --- relay and maintainer ---------------------------------------------------------------

    def _relay_loop(self) -> None:
        self._guarded(self._relay_once)

    def _relay_once(self) -> None:
        while outbox.relay_due(self.app) and not self.stopping.is_set():
            pass
        if not uses_redis(self.app):
            self.stopping.wait(self.poll)
            return
        try:
            # Block until a commit pushes to the wake list, at most one poll interval.
            self._redis().blpop([outbox.WAKE_KEY], timeout=max(self.poll, 1.0))
        except redis.RedisError as exc:  # no wake-ups for now: poll the table meanwhile
            log.info("outbox relay: Redis unavailable (%s); polling", exc)
            self.stopping.wait(_jittered(2 * self.poll))

    def _maintain_loop(self) -> None:
        def once() -> None:
            self._maintain_once()
            self.stopping.wait(self.poll)

        self._guarded(once)

    def _maintain_once(self) -> None:
        lost = sweep_lost(self.app)
        if uses_redis(self.app):
            for job_id in lost:
                push(self.app, job_id)  # a failed push leaves it to repush_stale
            repush_stale(self.app)
        scheduler.tick(self.app)

    def _guarded(self, step: Callable[[], None]) -> None:
        """Repeat ``step`` until stopped; an error (Redis or database down) is logged and
        the step tried again after a back-off with jitter, never ending the thread."""
        wait = self.poll
        while not self.stopping.is_set():
            try:
                step()
                wait = self.poll
            except Exception as exc:
                log.warning(
                    "worker %s: %s; retrying in %.1f s", threading.current_thread().name, exc, wait
                )
                if self.stopping.wait(_jittered(wait)):
                    return
                wait = min(wait * 2, 30.0)

    def _redis(self) -> redis.Redis:
        """A Redis client of the worker's own: no read timeout (RQ blocks on ``BLMOVE``).

        Said explicitly, as redis-py's connections otherwise read with a 5 s timeout. RQ
        raises the pool's for the connections it makes later, not for those the relay
        thread already holds; once Redis had restarted, the worker's ``BLMOVE`` (405 s)
        drew one of those, timed out after 5 s and backed off, again and again, up to a
        minute between tries — a worker that missed its jobs until restarted."""
        client: redis.Redis | None = self.app.extensions.get("trellis.jobs.worker_redis")
        if client is None:
            client = redis.Redis.from_url(
                self.app.config["REDIS_URL"],
                socket_timeout=None,
                socket_connect_timeout=2,
                socket_keepalive=True,
                health_check_interval=15,
            )
            self.app.extensions["trellis.jobs.worker_redis"] = client
        return client

    def _install_stop_signals(self) -> None:
        def stop(_signum: int, _frame: Any) -> None:
            self.stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)


@functools.cache
def _rq_worker_class() -> type[Any]:
    """RQ's ``SimpleWorker`` (jobs run in this process, no fork per job), with RQ's
    scheduler in a thread rather than a forked process.

    A forked child outlives a worker killed with SIGKILL: it kept the worker's database
    connections open — and with them the transaction of the job it was running, whose row
    locks then blocked the retry — and RQ's scheduler lock. A thread dies with the worker.
    """
    import rq.scheduler
    from rq import SimpleWorker

    class ThreadedScheduler(rq.scheduler.RQScheduler):
        def _install_signal_handlers(self) -> None:
            """The worker's handlers stop it (``request_stop``); threads cannot set any."""

        def start(self) -> Any:
            self._status = self.Status.STARTED
            thread = threading.Thread(
                target=rq.scheduler.run, args=(self,), name="rq-scheduler", daemon=True
            )
            self._process = thread  # type: ignore[assignment]  # RQ checks is_alive()
            thread.start()
            return thread

    class Worker(SimpleWorker):
        def _start_scheduler(self, burst: bool = False, *args: Any, **kwargs: Any) -> None:
            self.scheduler = ThreadedScheduler(
                self.queues, connection=self.connection, serializer=self.serializer
            )
            self.scheduler.acquire_locks()
            if not self.scheduler.acquired_locks:
                return
            if burst:
                try:
                    self.scheduler.register_birth()
                    self.scheduler.enqueue_scheduled_jobs()
                finally:
                    self.scheduler.release_locks()
                    self.scheduler.register_death()
            else:
                self.scheduler.start()

        def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
            """RQ's heartbeat, which first registers the worker again when Redis has lost
            it (restarted without persistence): else ``rq info`` and the dashboards show
            no workers while they keep running jobs."""
            if pipeline is None and not self.connection.exists(self.key):
                self.register_birth()
            super().heartbeat(timeout, pipeline)

        def stop_scheduler(self) -> None:
            scheduler = self.scheduler
            if scheduler is not None and scheduler._process is not None:
                scheduler.request_stop()
                scheduler._process.join(timeout=5)

    return Worker


def _stop_was_requested(rq_worker: Any) -> bool:
    """Whether RQ's loop ended on SIGTERM / SIGINT (its handlers caught them) rather than
    on a Redis error, after which the loop is started again."""
    return bool(
        getattr(rq_worker, "_shutdown_requested_date", None)
        or getattr(rq_worker, "_stop_requested", False)
    )


def _jittered(seconds: float) -> float:
    return seconds / 2 + random.uniform(0, seconds / 2)


def run_worker(app: Flask, queues: list[str], burst: bool = False) -> None:
    """Run a worker on ``queues`` in this process (``trellis worker``)."""
    import_job_modules(app)
    started = time.monotonic()
    Worker(app, queues, burst).run()
    log.info("worker stopped after %.0f s", time.monotonic() - started)
