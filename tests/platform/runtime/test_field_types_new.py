"""The ``richtext``, ``user``, ``file`` and ``image`` field types through the REST API,
on SQLite and PostgreSQL: sanitising, the users foreign key, uploads checked by content
and size, permission-checked downloads, and files kept on soft delete, gone on purge."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import Api
from tests.factories import definition, field
from tests.platform.runtime.helpers import create, define, detail_fields, error_of
from trellis.extensions import db
from trellis.platform.runtime.files import LocalFileStore
from trellis.platform.runtime.identity.tokens import issue_token
from trellis.platform.runtime.models import RecordHistory, StoredFile, User


@pytest.fixture(autouse=True)
def _in_app_context(request: pytest.FixtureRequest) -> Any:
    if "app" not in request.fixturenames:
        yield
        return
    with request.getfixturevalue("app").app_context():
        yield


@pytest.fixture
def store(app: Any, tmp_path: Any) -> LocalFileStore:
    files = LocalFileStore(tmp_path / "files")
    app.extensions["trellis.files"] = files
    return files


def png(width: int = 1, height: int = 1) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\0" + b"\xff\0\0" * width for _ in range(height)))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def note_definition() -> dict[str, Any]:
    return definition(
        "note",
        {
            "title": field("text", "Title"),
            "body": {"x-type": "richtext", "type": "string", "x-label": {"en": "Body"}},
            "owner_rep": {"x-type": "user", "type": "integer", "x-label": {"en": "Rep"}},
            "photo": {"x-type": "image", "type": "integer", "x-max-bytes": 2000},
            "contract": {"x-type": "file", "type": "integer", "x-accept": ["application/pdf"]},
        },
    )


def holder(api: Api, name: str, objects: dict[str, Any]) -> Api:
    role = {"x-name": name, "x-label": {"en": name}, "objects": objects}
    assert api.post("/roles", role).status_code == 201
    body = {"email": f"{name}@example.com", "password": "long enough password", "roles": [name]}
    assert api.post("/users", body).status_code == 201
    with db.session() as session:
        token = issue_token(session, body["email"])
        session.commit()
    return Api(api.client, token)


def upload(api: Api, path: str, data: bytes, name: str = "photo.png") -> Any:
    return api.client.post(
        f"/api/v1{path}",
        data={"file": (io.BytesIO(data), name)},
        headers=api.headers,
        content_type="multipart/form-data",
    )


def files_count() -> int:
    with db.session() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(StoredFile)) or 0


# --- richtext ----------------------------------------------------------------------------


def test_richtext_is_sanitised_on_write(api: Api) -> None:
    define(api, note_definition())
    dirty = (
        '<p onclick="x()">Hi <b>there</b><script>alert(1)</script>'
        '<img src="a.png" onerror="y()"></p>'
    )
    record = create(api, "note", {"title": "a", "body": dirty})
    assert "script" not in record["body"] and "onerror" not in record["body"]
    assert "onclick" not in record["body"] and "<b>there</b>" in record["body"]
    stored = api.get(f"/records/note/{record['id']}").get_json()["body"]
    assert stored == record["body"]
    changed = api.patch(
        f"/records/note/{record['id']}", {"version": 1, "body": '<a href="javascript:x()">l</a>'}
    ).get_json()
    assert "javascript" not in changed["body"]


# --- user --------------------------------------------------------------------------------


def test_user_field_is_a_foreign_key_to_users(api: Api, database: Any) -> None:
    define(api, note_definition())
    inspector = sa.inspect(database.engine)
    keys = {fk["constrained_columns"][0]: fk for fk in inspector.get_foreign_keys("obj_note")}
    assert keys["owner_rep"]["referred_table"] == "users"
    assert keys["owner_rep"]["referred_columns"] == ["id"]
    assert keys["photo"]["referred_table"] == "stored_files"
    if database.engine.dialect.name == "postgresql":
        with database.engine.connect() as connection:
            found = connection.execute(
                sa.text(
                    "SELECT confrelid::regclass::text FROM pg_constraint "
                    "WHERE conrelid = 'obj_note'::regclass AND contype = 'f' "
                    "AND conname = 'fk_obj_note_owner_rep'"
                )
            ).scalar()
        assert found == "users"


def test_user_field_refuses_unknown_and_inactive_users(api: Api) -> None:
    define(api, note_definition())
    with db.session() as session:
        admin_id = session.scalar(sa.select(User.id))
        gone = User(email="gone@example.com", name="Gone", is_active=False)
        session.add(gone)
        session.commit()
        gone_id = gone.id
    record = create(api, "note", {"title": "a", "owner_rep": admin_id})
    assert record["owner_rep"] == admin_id
    for bad in (999_999, gone_id):
        error = error_of(api.post("/records/note", {"title": "b", "owner_rep": bad}), 422)
        assert detail_fields(error) == {"owner_rep"}
    response = api.patch(f"/records/note/{record['id']}", {"version": 1, "owner_rep": gone_id})
    assert detail_fields(error_of(response, 422)) == {"owner_rep"}


# --- files -------------------------------------------------------------------------------


def test_png_upload_is_accepted_served_and_recorded(api: Api, store: LocalFileStore) -> None:
    define(api, note_definition())
    record = create(api, "note", {"title": "a"})
    data = png()
    response = upload(api, f"/records/note/{record['id']}/files/photo", data, "../../x.png")
    assert response.status_code == 200, response.get_json()
    file_id = response.get_json()["photo"]
    assert response.get_json()["version"] == 2
    with db.session() as session:
        stored = session.get(StoredFile, file_id)
        assert stored is not None
        assert (stored.mime, stored.size, stored.original_name) == ("image/png", len(data), "x.png")
        history = session.scalars(
            sa.select(RecordHistory.changes).where(RecordHistory.record_id == record["id"])
        ).all()
    assert store.exists(stored.storage_key)
    assert any("photo" in changes for changes in history)
    download = api.get(f"/records/note/{record['id']}/files/photo")
    assert download.status_code == 200
    assert download.data == data
    assert download.headers["Content-Type"] == "image/png"
    assert download.headers["X-Content-Type-Options"] == "nosniff"


def test_upload_type_is_read_from_the_content(api: Api, store: LocalFileStore) -> None:
    define(api, note_definition())
    record = create(api, "note", {"title": "a"})
    text = b"<html><script>alert(1)</script></html>" * 3
    response = upload(api, f"/records/note/{record['id']}/files/photo", text, "evil.png")
    assert detail_fields(error_of(response, 422)) == {"photo"}
    response = upload(api, f"/records/note/{record['id']}/files/contract", png(), "deal.pdf")
    assert detail_fields(error_of(response, 422)) == {"contract"}
    assert files_count() == 0
    assert not any(store.root.rglob("*")) if store.root.exists() else True


def test_oversize_upload_is_refused_with_nothing_stored(api: Api, store: LocalFileStore) -> None:
    define(api, note_definition())
    record = create(api, "note", {"title": "a"})
    big = png(60, 60) + b"\0" * 3000
    assert len(big) > 2000
    response = upload(api, f"/records/note/{record['id']}/files/photo", big)
    error_of(response, 413)
    assert files_count() == 0
    assert not store.root.exists() or not any(p.is_file() for p in store.root.rglob("*"))
    assert api.get(f"/records/note/{record['id']}").get_json()["version"] == 1


def test_a_file_field_cannot_point_at_another_records_file(api: Api, store: LocalFileStore) -> None:
    define(api, note_definition())
    first, second = create(api, "note", {"title": "a"}), create(api, "note", {"title": "b"})
    file_id = upload(api, f"/records/note/{first['id']}/files/photo", png()).get_json()["photo"]
    response = api.patch(f"/records/note/{second['id']}", {"version": 1, "photo": file_id})
    assert detail_fields(error_of(response, 422)) == {"photo"}
    error_of(api.post("/records/note", {"title": "c", "photo": file_id}), 422)


def test_download_needs_the_read_right_and_the_field(api: Api, store: LocalFileStore) -> None:
    define(api, note_definition())
    record = create(api, "note", {"title": "a"})
    assert upload(api, f"/records/note/{record['id']}/files/photo", png()).status_code == 200
    path = f"/records/note/{record['id']}/files/photo"
    outsider = holder(api, "outsider", {})
    assert outsider.get(path).status_code in (403, 404)
    blind = holder(api, "blind", {"note": {"read": "all", "fields": {"photo": "hidden"}}})
    assert blind.get(path).status_code == 404
    reader = holder(api, "reader", {"note": {"read": "all"}})
    assert reader.get(path).status_code == 200
    # reading is not writing: the reader may not upload
    assert upload(reader, path, png()).status_code == 403


def test_file_is_kept_on_soft_delete_and_removed_on_purge(api: Api, store: LocalFileStore) -> None:
    define(api, note_definition())
    record = create(api, "note", {"title": "a"})
    response = upload(api, f"/records/note/{record['id']}/files/photo", png())
    with db.session() as session:
        key = session.get(StoredFile, response.get_json()["photo"]).storage_key  # type: ignore[union-attr]
    error_of(api.post(f"/records/note/{record['id']}/purge"), 409)  # not deleted yet
    assert api.delete(f"/records/note/{record['id']}").status_code == 204
    assert store.exists(key) and files_count() == 1
    reader = holder(api, "purger", {"note": {"read": "all", "delete": "all"}})
    error_of(reader.post(f"/records/note/{record['id']}/purge"), 403)
    assert api.post(f"/records/note/{record['id']}/purge").status_code == 204
    assert not store.exists(key) and files_count() == 0
    with db.session() as session:
        left = session.scalar(
            sa.select(sa.func.count())
            .select_from(RecordHistory)
            .where(RecordHistory.object_name == "note", RecordHistory.record_id == record["id"])
        )
    assert left == 0
    assert api.get(f"/records/note/{record['id']}").status_code == 404


def test_openapi_lists_the_file_endpoints_as_the_caller_may_use_them(api: Api) -> None:
    from openapi_spec_validator import validate

    define(api, note_definition())
    document = api.get("/openapi.json").get_json()
    validate(document)
    path = document["paths"]["/records/note/{id}/files/photo"]
    assert set(path) >= {"get", "post"}
    assert "multipart/form-data" in path["post"]["requestBody"]["content"]
    blind = holder(api, "blind_api", {"note": {"read": "all", "fields": {"photo": "hidden"}}})
    paths = blind.get("/openapi.json").get_json()["paths"]
    assert "/records/note/{id}/files/photo" not in paths
    assert set(paths["/records/note/{id}/files/contract"]) == {"get", "parameters"}


def test_purge_takes_the_lines_and_refuses_while_referred_to(
    api: Api, store: LocalFileStore
) -> None:
    define(api, note_definition())
    define(
        api,
        definition(
            "note_line",
            {
                "note": field(
                    "master_detail", "Note", **{"x-target": "note", "x-related-name": "lines"}
                ),
                "scan": field("file", "Scan"),
            },
            required=["note"],
        ),
    )
    define(api, definition("mention", {"note": field("lookup", "Note", **{"x-target": "note"})}))
    record = create(api, "note", {"title": "a", "lines": [{}, {}]})
    line_id = record["lines"][0]["id"]
    text = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"
    assert upload(api, f"/records/note_line/{line_id}/files/scan", text, "a.pdf").status_code == 200
    mention = create(api, "mention", {"note": record["id"]})
    assert api.delete(f"/records/mention/{mention['id']}").status_code == 204
    assert api.delete(f"/records/note/{record['id']}").status_code == 204
    # a deleted mention still points at the note: the purge is refused, nothing removed
    refused = error_of(api.post(f"/records/note/{record['id']}/purge"), 409)
    assert detail_fields(refused) == {"mention.note"}
    assert files_count() == 1
    assert api.post(f"/records/mention/{mention['id']}/purge").status_code == 204
    assert api.post(f"/records/note/{record['id']}/purge").status_code == 204
    assert files_count() == 0
    assert not any(p.is_file() for p in store.root.rglob("*"))
    with db.session() as session:
        lines = session.execute(sa.text("SELECT count(*) FROM obj_note_line")).scalar()
        history = session.scalar(
            sa.select(sa.func.count())
            .select_from(RecordHistory)
            .where(RecordHistory.object_name == "note_line")
        )
    assert lines == 0 and history == 0
