"""Record pages with the new field types: an upload on the form (multipart), an image
preview on the detail page, a user select, and richtext shown as its sanitised HTML."""

from __future__ import annotations

import io
import re
from typing import Any

from flask import Flask

from tests.conftest import Api
from tests.platform.runtime.helpers import define
from tests.platform.runtime.test_field_types_new import note_definition, png
from tests.ui.conftest import SignIn, csrf_of
from trellis.extensions import database_of
from trellis.platform.runtime.files import LocalFileStore
from trellis.platform.runtime.identity.tokens import issue_token

ADMIN = "admin@example.com"


def _note_object(app: Flask, tmp_path: Any) -> None:
    app.extensions["trellis.files"] = LocalFileStore(tmp_path / "files")
    with database_of(app).session() as session:
        token = issue_token(session, ADMIN, name="ui-files")
        session.commit()
    define(Api(app.test_client(), token), note_definition())


def test_form_uploads_a_file_and_the_detail_page_previews_it(
    sign_in: SignIn, pack_app: Flask, tmp_path: Any
) -> None:
    _note_object(pack_app, tmp_path)
    client = sign_in(ADMIN, language="en")
    form = client.get("/o/note/new").get_data(as_text=True)
    assert 'enctype="multipart/form-data"' in form
    assert 'type="file"' in form and 'name="photo"' in form
    assert re.search(r'<select[^>]*name="owner_rep"', form)
    data = {
        "csrf_token": csrf_of(form),
        "title": "with a picture",
        "body": "<p>Hello <b>world</b><script>alert(1)</script></p>",
        "photo": (io.BytesIO(png()), "pic.png"),
    }
    answer = client.post("/o/note/new", data=data, content_type="multipart/form-data")
    assert answer.status_code == 302, answer.get_data(as_text=True)[:3000]
    detail = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "<b>world</b>" in detail and "<script>alert" not in detail
    found = re.search(r'<img class="preview" src="(/files/\d+)"', detail)
    assert found, detail
    image = client.get(found.group(1))
    assert image.status_code == 200 and image.data == png()
    assert image.headers["X-Content-Type-Options"] == "nosniff"
    listing = client.get("/o/note?columns=title,body,photo").get_data(as_text=True)
    assert "Hello world" in listing and "pic.png" in listing
    edit_url = answer.headers["Location"] + "/edit"
    edit = client.get(edit_url).get_data(as_text=True)
    assert found.group(1) in edit and 'enctype="multipart/form-data"' in edit
    version = re.search(r'name="version" value="(\d+)"', edit)
    assert version is not None
    saved = client.post(
        edit_url,
        data={
            "csrf_token": csrf_of(edit),
            "version": version.group(1),
            "title": "renamed",
            "photo": (io.BytesIO(b""), ""),
        },
        content_type="multipart/form-data",
    )
    assert saved.status_code == 302, saved.get_data(as_text=True)[:3000]
    detail = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "renamed" in detail and found.group(1) in detail  # the image stays


def test_form_refuses_a_text_file_posing_as_an_image(
    sign_in: SignIn, pack_app: Flask, tmp_path: Any
) -> None:
    _note_object(pack_app, tmp_path)
    client = sign_in(ADMIN, language="en")
    form = client.get("/o/note/new").get_data(as_text=True)
    data = {
        "csrf_token": csrf_of(form),
        "title": "fake",
        "photo": (io.BytesIO(b"just some text, not an image at all"), "fake.png"),
    }
    answer = client.post("/o/note/new", data=data, content_type="multipart/form-data")
    assert answer.status_code == 422
    assert "text/plain" in answer.get_data(as_text=True) or "accepted" in answer.get_data(
        as_text=True
    )


def test_the_designer_adds_the_new_types_with_their_settings(
    sign_in: SignIn, pack_app: Flask
) -> None:
    from tests.ui.test_object_designer import _definition, _new_object, _post

    client = sign_in(ADMIN, language="en")
    assert _new_object(client).status_code == 302
    fields = [
        {"name": "scan", "type": "file", "label-en": "Scan", "x-max-bytes": "100000",
         "x-accept": "application/pdf, image/png"},
        {"name": "logo", "type": "image", "label-en": "Logo", "label-zh": "标志"},
        {"name": "rep", "type": "user", "label-en": "Rep"},
        {"name": "summary", "type": "richtext", "label-en": "Summary"},
    ]  # fmt: skip
    for values in fields:
        answer = _post(client, "/setup/objects/contract/new-field", values)
        assert answer.status_code == 302, (values["name"], answer.get_data(as_text=True)[:3000])
    props = _definition(pack_app, "contract")["properties"]
    assert props["scan"]["x-accept"] == ["application/pdf", "image/png"]
    assert props["scan"]["x-max-bytes"] == 100000
    assert props["logo"]["x-type"] == "image" and props["rep"]["x-type"] == "user"
    page = client.get("/setup/objects/contract/fields/scan").get_data(as_text=True)
    assert 'value="application/pdf, image/png"' in page
    zh = sign_in(ADMIN, language="zh-CN").get("/setup/objects/contract/new-field")
    assert "富文本" in zh.get_data(as_text=True) and "图片" in zh.get_data(as_text=True)
    bad = _post(
        client,
        "/setup/objects/contract/new-field",
        {"name": "pic", "type": "image", "label-en": "Pic", "x-accept": "image/svg+xml"},
    )
    assert bad.status_code == 422
