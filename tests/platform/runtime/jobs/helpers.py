"""What the job tests share: the effects table, a plain user with a token, reading jobs."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from tests.conftest import Api
from tests.platform.runtime.jobs.sample_jobs import CREATE_EFFECTS, EFFECTS
from trellis.extensions import Database
from trellis.platform.runtime.identity import UserService
from trellis.platform.runtime.identity.tokens import issue_token
from trellis.platform.runtime.models import Job
from trellis.platform.runtime.registry import MetaRegistry


def create_effects_table(database: Database) -> None:
    with database.engine.begin() as connection:
        connection.exec_driver_sql(CREATE_EFFECTS)


def effect_keys(database: Database) -> list[str]:
    """Every effect written, in key order (a key twice would have failed its insert)."""
    with database.engine.connect() as connection:
        return list(
            connection.execute(sa.select(EFFECTS.c.effect_key).order_by("effect_key")).scalars()
        )


def stored_job(database: Database, job_id: int) -> Job:
    with database.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        session.expunge(job)
        return job


def plain_user(database: Database, email: str = "clerk@example.com") -> tuple[int, str]:
    """A user who is no administrator, and an API token of theirs."""
    with database.session() as session:
        user = UserService(session, MetaRegistry(), None).create(
            {"email": email, "password": "a long password"}
        )
        session.commit()
        token = issue_token(session, email, name="tests")
        session.commit()
        return user.id, token


def api_as(api: Api, token: str) -> Api:
    return Api(api.client, token)


def jobs_listed(api: Api, **params: Any) -> list[dict[str, Any]]:
    response = api.get("/jobs", query_string=params)
    assert response.status_code == 200, response.get_json()
    items: list[dict[str, Any]] = response.get_json()["items"]
    return items
