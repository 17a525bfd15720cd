"""``trellis job list / show / retry`` and ``trellis worker --burst`` (no Redis: the worker
polls the jobs table), on SQLite and PostgreSQL, through click's runner."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask

from tests.platform.runtime.jobs import sample_jobs
from tests.platform.runtime.jobs.conftest import SAMPLE_JOBS
from tests.platform.runtime.jobs.helpers import create_effects_table, effect_keys, stored_job
from trellis.cli import main
from trellis.extensions import Database
from trellis.platform.runtime import jobs

del sample_jobs  # imported for the jobs it registers


@pytest.fixture
def run(app: Flask, database: Database, tmp_path: Path) -> Any:
    app.config["RETRY_BASE_SECONDS"] = 0  # this process runs the jobs it enqueues
    create_effects_table(database)
    environment = {
        "TRELLIS_DATABASE_URL": app.config["DATABASE_URL"],
        "TRELLIS_SECRET_KEY": "test-secret",
        "TRELLIS_INSTANCE_PATH": str(tmp_path / "instance"),
        "TRELLIS_JOB_MODULES": SAMPLE_JOBS,
        "TRELLIS_REDIS_URL": "",
        "TRELLIS_RETRY_BASE_SECONDS": "0",
    }

    def invoke(*args: str, code: int = 0) -> str:
        result = CliRunner().invoke(main, list(args), env=environment)
        assert result.exit_code == code, (result.output, result.exception)
        return result.output

    return invoke


def test_job_list_show_and_retry(run: Any, database: Database, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    with database.session() as session:
        failed = jobs.enqueue(session, "tests.effect", {"key": "f", "blocker": str(blocker)}).id
        session.commit()
    listed = run("job", "list", "--failed")
    assert re.search(rf"^{failed}\s+tests\.effect\s+failed\s+3/3", listed, re.MULTILINE)
    assert "failing attempt 3 on purpose" in listed
    shown = run("job", "show", str(failed))
    assert "status:    failed" in shown and "attempts:  3 of 3" in shown
    blocker.unlink()
    assert f"job {failed} queued again" in run("job", "retry", str(failed))
    assert stored_job(database, failed).status == "done"
    assert "only a failed job can be retried" in run("job", "retry", str(failed), code=2)
    assert "no job with id 999" in run("job", "show", "999", code=2)
    assert run("job", "list", "--status", "queued").strip() == "no jobs"


def test_worker_burst_runs_due_jobs_without_redis(run: Any, database: Database) -> None:
    now = dt.datetime.now(dt.UTC)
    with database.session() as session:
        # Enqueued for the past from outside any process that would run it on commit.
        session.info["trellis.app"].extensions["trellis.jobs.polling"] = True
        due = jobs.enqueue(session, "tests.effect", {"key": "due"}).id
        later = jobs.enqueue(
            session, "tests.effect", {"key": "later"}, run_at=now + dt.timedelta(hours=1)
        ).id
        session.commit()
        session.info["trellis.app"].extensions.pop("trellis.jobs.polling")
    output = run("worker", "--burst")
    assert "worker on default (no Redis) in burst mode" in output
    assert stored_job(database, due).status == "done"
    assert stored_job(database, later).status == "queued"
    assert effect_keys(database) == ["due"]
    assert "--queues" in run("worker", "--queues", "Bad Name!", code=2)
