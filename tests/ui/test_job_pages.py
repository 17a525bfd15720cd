"""The Jobs pages: Setup → Jobs (administrators), a job's page with its progress partial,
and Retry (a form with its CSRF token). Run through the test client on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.platform.runtime.jobs import sample_jobs
from tests.platform.runtime.jobs.helpers import create_effects_table, effect_keys, plain_user
from trellis.extensions import Database
from trellis.platform.runtime import jobs

del sample_jobs  # imported for the jobs it registers


def sign_in(client: FlaskClient, email: str, password: str) -> None:
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None
    response = client.post(
        "/login", data={"email": email, "password": password, "csrf_token": token.group(1)}
    )
    assert response.status_code == 302, response.get_data(as_text=True)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


@pytest.fixture
def admin_client(app: Flask, database: Database) -> FlaskClient:
    app.config["RETRY_BASE_SECONDS"] = 0
    create_effects_table(database)
    client = app.test_client()
    sign_in(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    return client


def enqueue(database: Database, payload: dict[str, Any], **kwargs: Any) -> int:
    with database.session() as session:
        job = jobs.enqueue(session, "tests.effect", payload, **kwargs)
        session.commit()
        return job.id


def test_the_jobs_page_lists_failed_jobs_and_retries_them(
    admin_client: FlaskClient, database: Database, tmp_path: Path
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    failed = enqueue(database, {"key": "f", "blocker": str(blocker)})
    done = enqueue(database, {"key": "d"})
    home = admin_client.get("/").get_data(as_text=True)
    assert 'href="/setup/jobs"' in home
    page = admin_client.get("/setup/jobs?status=failed").get_data(as_text=True)
    assert f'data-job="{failed}"' in page and f'data-job="{done}"' not in page
    assert "failing attempt 3 on purpose" in page
    assert admin_client.get("/setup/jobs").get_data(as_text=True).count("data-job=") == 2

    without_token = admin_client.post(f"/setup/jobs/{failed}/retry")
    assert without_token.status_code == 400  # CSRF
    blocker.unlink()
    retried = admin_client.post(
        f"/setup/jobs/{failed}/retry", data={"csrf_token": csrf_of(page)}, follow_redirects=True
    )
    assert retried.status_code == 200
    text = retried.get_data(as_text=True)
    assert f"Job {failed} is queued again." in text
    assert 'data-status="done"' in text
    assert effect_keys(database) == ["d", "f"]
    again = admin_client.post(
        f"/setup/jobs/{done}/retry", data={"csrf_token": csrf_of(page)}, follow_redirects=True
    )
    assert "Only a failed job can be retried." in again.get_data(as_text=True)


def test_a_running_jobs_page_polls_its_progress_and_a_finished_one_stops(
    admin_client: FlaskClient, database: Database
) -> None:
    with database.session() as session:  # queued, for later: not run by this commit
        import datetime as dt

        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        waiting = jobs.enqueue(session, "tests.effect", {"key": "w"}, run_at=later).id
        session.commit()
    page = admin_client.get(f"/jobs/{waiting}").get_data(as_text=True)
    assert f'hx-get="/jobs/{waiting}/progress"' in page and 'hx-trigger="every 2s"' in page
    partial = admin_client.get(f"/jobs/{waiting}/progress", headers={"HX-Request": "true"})
    assert partial.status_code == 200
    assert 'data-status="queued"' in partial.get_data(as_text=True)
    assert "<html" not in partial.get_data(as_text=True)

    finished = enqueue(database, {"key": "x"})
    text = admin_client.get(f"/jobs/{finished}/progress").get_data(as_text=True)
    assert 'data-status="done"' in text and "hx-trigger" not in text


def test_others_see_their_own_jobs_page_only(app: Flask, database: Database) -> None:
    create_effects_table(database)
    clerk_id, _ = plain_user(database)
    theirs = enqueue(database, {"key": "c"}, created_by=clerk_id)
    other = enqueue(database, {"key": "o"})
    client = app.test_client()
    sign_in(client, "clerk@example.com", "a long password")
    assert client.get(f"/jobs/{theirs}").status_code == 200
    assert client.get(f"/jobs/{other}").status_code == 404
    assert client.get("/setup/jobs").status_code == 403
    assert client.get(f"/jobs/{other}/progress").status_code == 404
