"""The versioned-document store, used directly (``runtime/versioning.py``), on SQLite and
PostgreSQL: create, unchanged updates, updates, restores, the version list, concurrent
changers, and an instance from before role versions kept diffs upgrading."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from flask import Flask

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Api
from tests.platform.runtime.concurrency import in_threads
from tests.platform.runtime.helpers import raw_rows
from trellis import create_app
from trellis.exceptions import Conflict, InvalidDefinition, NotFound, ValidationFailed
from trellis.extensions import database_of, db
from trellis.platform.metadata.diff import DocumentDiff, diff_documents
from trellis.platform.runtime.bootstrap import alembic_config, init_database
from trellis.platform.runtime.identity.tokens import issue_token
from trellis.platform.runtime.models import MetaRevision, Role
from trellis.platform.runtime.versioning import ROLES, Change, DocumentStore


@pytest.fixture(autouse=True)
def _in_app_context(request: pytest.FixtureRequest) -> Any:
    """Tests that use the ``app`` fixture run inside its context (``db`` is the app's)."""
    if "app" not in request.fixturenames:
        yield
        return
    with request.getfixturevalue("app").app_context():
        yield


V1 = {"x-name": "clerk", "x-label": {"en": "Clerk"}, "objects": {}}
V2 = {"x-name": "clerk", "x-label": {"en": "Clerk", "zh-CN": "职员"}, "objects": {}}


class Notes(DocumentStore[DocumentDiff]):
    """The store as a new kind uses it: a kind (role rows here), a validator, a hook."""

    kind = ROLES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.told: list[Change[DocumentDiff]] = []

    def validate(self, document: Any, name: str | None) -> dict[str, Any]:
        if not isinstance(document, dict) or not isinstance(document.get("x-name"), str):
            raise InvalidDefinition("not a document", [{"field": "/x-name", "message": "needed"}])
        if not isinstance(document.get("objects"), dict):
            raise InvalidDefinition("no objects", [{"field": "/objects", "message": "needed"}])
        return copy.deepcopy(document)

    def on_new_version(self, change: Change[DocumentDiff]) -> None:
        self.told.append(change)


def store(app: Flask, session: Any, author_id: int | None = None) -> Notes:
    return Notes(session, app.extensions["trellis.registry"], author_id, {"ip": "10.0.0.9"})


def revision() -> int:
    with db.session() as session:
        row = session.get(MetaRevision, 1)
        assert row is not None
        return row.revision


def events() -> list[tuple[str, str, dict[str, Any]]]:
    rows = raw_rows(db, "audit_events")
    return [(r["action"], r["target"], r["detail"]) for r in rows if r["action"].startswith("role")]


def written(app: Flask, *documents: dict[str, Any]) -> None:
    """Create ``clerk`` from the first document, then update it with each next one."""
    with db.session() as session:
        notes = store(app, session)
        notes.create(documents[0])
        for document in documents[1:]:
            notes.update("clerk", document)
        session.commit()


def test_create_writes_version_one_and_a_second_create_conflicts(app: Flask) -> None:
    before = revision()
    with db.session() as session:
        notes = store(app, session, author_id=1)
        saved = notes.create(V1)
        assert (saved.name, saved.version, saved.document, saved.created) == ("clerk", 1, V1, True)
        (change,) = notes.told
        assert (change.version, change.previous, change.restored_from) == (1, None, None)
        session.commit()
    assert revision() == before + 1
    (row,) = raw_rows(db, "role_versions")
    assert (row["role_name"], row["version"], row["document"], row["author_id"]) == (
        "clerk",
        1,
        V1,
        1,
    )
    assert row["diff"] == diff_documents(None, V1).as_dict()
    assert row["summary"] == "added /x-name, /x-label, /objects"
    assert row["restored_from"] is None
    assert events() == [("role.created", "role/clerk", {"version": 1})]
    assert raw_rows(db, "audit_events")[-1]["ip"] == "10.0.0.9"

    with db.session() as session:
        with pytest.raises(Conflict, match="PUT /roles/clerk changes it"):
            store(app, session).create(V2)
        # the document is checked first: its name is then safe to look up
        with pytest.raises(InvalidDefinition):
            store(app, session).create({"x-name": "clerk", "objects": 3})
    assert len(raw_rows(db, "role_versions")) == 1 and revision() == before + 1


def test_a_refused_document_writes_nothing(app: Flask) -> None:
    before = revision()
    with db.session() as session:
        with pytest.raises(InvalidDefinition):
            store(app, session).create(["not", "a", "document"])
        assert session.info.get("metadata_changed") is None
    assert raw_rows(db, "role_versions") == [] and revision() == before


def test_an_unchanged_update_writes_nothing(app: Flask) -> None:
    written(app, V1)
    before = revision()
    with db.session() as session:
        notes = store(app, session)
        reordered = {key: copy.deepcopy(V1[key]) for key in reversed(list(V1))}
        saved = notes.update("clerk", reordered)
        assert (saved.version, saved.document, saved.created) == (1, V1, False)
        assert notes.told == []
        session.commit()
    assert len(raw_rows(db, "role_versions")) == 1 and revision() == before
    assert [e[0] for e in events()] == ["role.created"]


def test_an_update_writes_the_next_version_with_its_diff(app: Flask) -> None:
    written(app, V1)
    with db.session() as session:
        notes = store(app, session, author_id=1)
        saved = notes.update("clerk", V2)
        assert (saved.version, saved.document, saved.created) == (2, V2, True)
        (change,) = notes.told
        assert (change.version, change.previous, change.document) == (2, V1, V2)
        session.commit()
    newest = raw_rows(db, "role_versions")[-1]
    assert newest["version"] == 2 and newest["document"] == V2
    assert newest["diff"]["changes"] == [
        {"pointer": "/x-label/zh-CN", "change": "added", "to": "职员"}
    ]
    assert newest["summary"] == "added /x-label/zh-CN"
    assert events()[-1] == ("role.updated", "role/clerk", {"version": 2})
    with db.session() as session:
        head = session.get(Role, "clerk")
        assert head is not None and head.current_version == 2


def test_update_refusals_change_nothing(app: Flask) -> None:
    written(app, V1)
    before = revision()
    with db.session() as session:
        notes = store(app, session)
        with pytest.raises(NotFound, match="no role named 'nobody'"):
            notes.update("nobody", V1 | {"x-name": "nobody"})
        with pytest.raises(ValidationFailed, match="x-name cannot change") as refused:
            notes.update("clerk", V2 | {"x-name": "cashier"})
        assert refused.value.details == [{"field": "/x-name", "message": "must be 'clerk'"}]
        with pytest.raises(InvalidDefinition):
            notes.update("clerk", {"objects": {}})  # no x-name: the validator refuses
        assert notes.told == []
    assert len(raw_rows(db, "role_versions")) == 1 and revision() == before


def test_restore_writes_the_old_document_as_a_new_version(app: Flask) -> None:
    written(app, V1, V2)
    with db.session() as session:
        notes = store(app, session)
        saved = notes.restore("clerk", 1)
        assert (saved.version, saved.document, saved.created) == (3, V1, True)
        (change,) = notes.told
        assert (change.previous, change.restored_from) == (V2, 1)
        # restoring what is current still writes a version: the restore is history too
        assert notes.restore("clerk", 3).version == 4
        with pytest.raises(NotFound, match="role 'clerk' has no version 9"):
            notes.restore("clerk", 9)
        with pytest.raises(NotFound, match="no role named 'nobody'"):
            notes.restore("nobody", 1)
        session.commit()

    with db.session() as session:
        notes = store(app, session)
        versions = notes.versions("clerk")
        assert [v.version for v in versions] == [4, 3, 2, 1]
        assert [v.restored_from for v in versions] == [3, 1, None, None]
        assert [v.document for v in versions] == [V1, V1, V2, V1]
        assert versions[1].summary == "restored version 1: removed /x-label/zh-CN"
        assert versions[0].summary == "restored version 3: no change"
        assert versions[1].diff == diff_documents(V2, V1).as_dict()
        assert notes.version_document("clerk", 2) == V2
        with pytest.raises(NotFound):
            notes.versions("nobody")
    assert [e for e in events() if e[0] == "role.restored"] == [
        ("role.restored", "role/clerk", {"version": 3, "from": 1}),
        ("role.restored", "role/clerk", {"version": 4, "from": 3}),
    ]


def test_version_documents_are_copies(app: Flask) -> None:
    written(app, V1)
    with db.session() as session:
        notes = store(app, session)
        notes.version_document("clerk", 1)["objects"] = "changed"
        assert notes.version_document("clerk", 1) == V1
        assert notes.names() == ["clerk"]


def test_concurrent_updates_queue_and_lose_nothing(app: Flask, admin_token: str) -> None:
    """Two changers at once: versions 2 and 3, the second built on the first."""
    written(app, V1)
    changes = [
        V1 | {"objects": {}, "x-label": {"en": "First"}},
        V1 | {"objects": {}, "x-label": {"en": "Second"}},
    ]

    def work(_client: Api, index: int) -> int:
        with database_of(app).session() as session:
            # as the API's unit of work does (SQLite: BEGIN IMMEDIATE)
            session.connection(execution_options={"trellis_write": True})
            saved = store(app, session).update("clerk", changes[index])
            time.sleep(0.3)  # hold the lock: the other changer must wait for this commit
            session.commit()
            return saved.version

    assert sorted(in_threads(app, admin_token, 2, work)) == [2, 3]
    with db.session() as session:
        second, first, _ = store(app, session).versions("clerk")
    assert {first.document["x-label"]["en"], second.document["x-label"]["en"]} == {
        "First",
        "Second",
    }
    assert second.diff is not None
    (edit,) = second.diff["changes"]
    assert edit["from"] == first.document["x-label"]["en"]  # built on version 2, not 1
    assert edit["to"] == second.document["x-label"]["en"]
    assert [e[2]["version"] for e in events() if e[0] == "role.updated"] == [2, 3]


def test_an_instance_from_before_role_diffs_upgrades(db_url: str) -> None:
    """``trellis init`` on a database at migration 0002: old role versions survive (with a
    null diff), and the next change, the version list and a restore work as for new ones."""
    app = create_app({"DATABASE_URL": db_url, "SECRET_KEY": "test-secret", "TESTING": True})
    database = database_of(app)
    try:
        _migrate_to(database.engine, "0002")
        _insert_old_role(database.engine)
        with database.session() as session:
            init_database(database.engine, session, ADMIN_EMAIL, ADMIN_PASSWORD)
            token = issue_token(session, ADMIN_EMAIL)
            session.commit()
        api = Api(app.test_client(), token)
        (old,) = api.get("/roles/clerk/versions").get_json()["items"]
        assert (old["version"], old["diff"], old["summary"], old["restored_from"]) == (
            1,
            None,
            "",
            None,
        )
        assert old["role"] == V1
        assert api.put("/roles/clerk", V2).get_json()["version"] == 2
        restored = api.post("/roles/clerk/versions/1/restore")
        assert restored.status_code == 200, restored.get_json()
        assert restored.get_json() == {"name": "clerk", "version": 3, "role": V1}
        items = api.get("/roles/clerk/versions").get_json()["items"]
        assert [(v["version"], v["restored_from"]) for v in items] == [(3, 1), (2, None), (1, None)]
        assert items[1]["summary"] == "added /x-label/zh-CN"
    finally:
        database.engine.dispose()


def _migrate_to(engine: sa.Engine, revision_id: str) -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision_id)


def _insert_old_role(engine: sa.Engine) -> None:
    """A role with one version, as migration 0002's tables held it."""
    moment = sa.func.current_timestamp()
    roles = sa.table(
        "roles",
        sa.column("name"),
        sa.column("current_version"),
        sa.column("created_at"),
        sa.column("updated_at"),
    )
    versions = sa.table(
        "role_versions",
        sa.column("role_name"),
        sa.column("version"),
        sa.column("document", sa.JSON),
        sa.column("created_at"),
    )
    with engine.begin() as connection:
        connection.execute(
            sa.insert(roles).values(
                name="clerk", current_version=1, created_at=moment, updated_at=moment
            )
        )
        connection.execute(
            sa.insert(versions).values(role_name="clerk", version=1, document=V1, created_at=moment)
        )
