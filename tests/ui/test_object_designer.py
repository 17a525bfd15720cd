"""The object and field designer, driven as a browser's requests would drive it."""

from __future__ import annotations

import html as html_lib
import re
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests.ui.conftest import SignIn, csrf_of
from trellis.admin_ui.designer import TYPE_SETTINGS
from trellis.extensions import database_of
from trellis.platform.metadata.fieldtypes import type_names
from trellis.platform.runtime.models import MetaObject, MetaObjectVersion

ADMIN = "admin@example.com"
CHANNEL = "channel@example.com"  # channel manager: not an administrator


def _catalog(app: Flask) -> sa.Inspector:
    return sa.inspect(database_of(app).engine)


def _columns(app: Flask, table: str) -> dict[str, Any]:
    return {c["name"]: c for c in _catalog(app).get_columns(table)}


def _version(app: Flask, name: str) -> int | None:
    with database_of(app).session() as session:
        return session.scalar(sa.select(MetaObject.current_version).where(MetaObject.name == name))


def _definition(app: Flask, name: str) -> dict[str, Any]:
    with database_of(app).session() as session:
        document = session.scalar(
            sa.select(MetaObjectVersion.document)
            .join(MetaObject, MetaObject.name == MetaObjectVersion.object_name)
            .where(
                MetaObject.name == name,
                MetaObjectVersion.version == MetaObject.current_version,
            )
        )
    assert document is not None
    return dict(document)


def _post(client: FlaskClient, url: str, data: dict[str, Any]) -> Any:
    token = csrf_of(client.get(url.removesuffix("/remove")).get_data(as_text=True))
    return client.post(url, data={"csrf_token": token, **data})


def error_under(page: str, name: str) -> str | None:
    """The message shown in the field block (or grid cell) of the input named ``name``."""
    at = page.index(f'name="{name}"')
    closing = {'<div class="field': "</div>", "<td": "</td>", '<label class="check': "</label>"}
    starts = [page.rfind(tag, 0, at) for tag in closing]
    start = max(starts)
    tag = next(t for t, s in zip(closing, starts, strict=True) if s == start)
    block = page[start : page.index(closing[tag], at)]
    found = re.search(r'<small class="error" role="alert">(.*?)</small>', block, re.S)
    return html_lib.unescape(found.group(1)).strip() if found else None


def _new_object(client: FlaskClient, name: str = "contract") -> Any:
    return _post(
        client,
        "/setup/objects/new-object",
        {
            "name": name,
            "label-en": "Contract",
            "label-zh": "合同",
            "plural-en": "Contracts",
            "plural-zh": "合同",
            "description-en": "Signed agreements",
            "first_field": "title",
            "first_label-en": "Title",
            "first_label-zh": "标题",
        },
    )


FIELDS: list[dict[str, Any]] = [
    {"name": "code", "type": "text", "label-en": "Code", "label-zh": "编号", "maxLength": "20",
     "pattern": "^[A-Z]+$", "unique": "on", "searchable": "on", "required": "on"},
    {"name": "amount", "type": "currency", "label-en": "Amount", "label-zh": "金额",
     "x-scale": "3", "minimum": "0", "maximum": "1000000"},
    {"name": "stage", "type": "picklist", "label-en": "Stage", "label-zh": "阶段",
     "enum-0-value": "draft", "enum-0-en": "Draft", "enum-0-zh": "草稿",
     "enum-1-value": "signed", "enum-1-en": "Signed", "enum-1-zh": "已签",
     "enum-2-value": "gone", "enum-2-removed": "1"},
    {"name": "tags", "type": "multipicklist", "label-en": "Tags",
     "enum-0-value": "a", "enum-1-value": "b", "maxItems": "2"},
    {"name": "dealer", "type": "lookup", "label-en": "Dealer", "x-target": "dealer",
     "x-on-delete": "set_null"},
    {"name": "number", "type": "autonumber", "label-en": "Number", "x-format": "C-{YYYY}-{000}"},
    {"name": "signed_on", "type": "date", "label-en": "Signed on"},
    {"name": "notes", "type": "textarea", "label-en": "Notes", "maxLength": "5000"},
    {"name": "extra", "type": "json", "label-en": "Extra", "schema": '{"type": "object"}'},
]  # fmt: skip


def test_every_field_type_has_its_settings() -> None:
    assert set(TYPE_SETTINGS) == set(type_names())


def test_create_an_object_with_fields_of_several_types(sign_in: SignIn, pack_app: Flask) -> None:
    client = sign_in(ADMIN, language="en")
    created = _new_object(client)
    assert created.status_code == 302, created.get_data(as_text=True)[:2000]
    assert created.headers["Location"] == "/setup/objects/contract/fields"
    assert set(_columns(pack_app, "obj_contract")) >= {"id", "version", "title", "deleted_at"}
    document = _definition(pack_app, "contract")
    assert document["x-label"] == {"en": "Contract", "zh-CN": "合同"}
    assert document["x-description"] == {"en": "Signed agreements"}
    assert document["x-title-field"] == "title" and document["required"] == ["title"]

    for values in FIELDS:
        answer = _post(client, "/setup/objects/contract/new-field", values)
        assert answer.status_code == 302, (values["name"], answer.get_data(as_text=True)[:3000])
    assert _version(pack_app, "contract") == 1 + len(FIELDS)

    columns = _columns(pack_app, "obj_contract")
    for values in FIELDS:
        assert values["name"] in columns
    assert columns["code"]["type"].length == 20
    assert columns["amount"]["type"].scale == 3
    foreign = {
        fk["constrained_columns"][0]: fk
        for fk in _catalog(pack_app).get_foreign_keys("obj_contract")
    }
    assert foreign["dealer"]["referred_table"] == "obj_dealer"
    unique = [ix for ix in _catalog(pack_app).get_indexes("obj_contract") if ix["unique"]]
    assert {tuple(ix["column_names"]) for ix in unique} >= {("code",), ("number",)}

    props = _definition(pack_app, "contract")["properties"]
    assert props["code"] == {
        "x-type": "text",
        "type": "string",
        "x-label": {"en": "Code", "zh-CN": "编号"},
        "x-unique": True,
        "x-searchable": True,
        "maxLength": 20,
        "pattern": "^[A-Z]+$",
    }
    assert props["stage"]["enum"] == ["draft", "signed"]
    assert props["stage"]["x-enum-labels"]["signed"] == {"en": "Signed", "zh-CN": "已签"}
    assert props["tags"]["items"] == {"type": "string", "enum": ["a", "b"]}
    assert props["dealer"]["x-on-delete"] == "set_null"
    assert props["extra"]["type"] == "object"
    assert "code" in _definition(pack_app, "contract")["required"]

    # The field list shows them; the object list counts them.
    listing = client.get("/setup/objects/contract/fields").get_data(as_text=True)
    for label in ("Code", "Amount", "Stage", "Dealer", "Signed on"):
        assert f">{label}</a>" in listing
    objects = client.get("/setup/objects").get_data(as_text=True)
    row = objects[objects.index('href="/setup/objects/contract"') :]
    assert f">{1 + len(FIELDS)}</a>" in row[: row.index("</tr>")]
    # A record can be created through the generated form with the new fields.
    form = client.get("/o/contract/new").get_data(as_text=True)
    assert 'name="stage"' in form and ">Signed</option>" in form


def test_edit_labels_and_settings(sign_in: SignIn, pack_app: Flask) -> None:
    client = sign_in(ADMIN, language="en")
    before = _version(pack_app, "product")
    page = client.get("/setup/objects/product").get_data(as_text=True)
    assert 'href="/setup/objects/product/fields"' in page  # the tabs
    answer = _post(
        client,
        "/setup/objects/product",
        {
            "label-en": "Article",
            "label-zh": "商品",
            "plural-en": "Articles",
            "plural-zh": "商品",
            "title_field": "name",
        },
    )
    assert answer.status_code == 302, answer.get_data(as_text=True)[:2000]
    assert _version(pack_app, "product") == (before or 0) + 1
    document = _definition(pack_app, "product")
    assert document["x-label"] == {"en": "Article", "zh-CN": "商品"}
    assert ">Articles</a>" in client.get("/").get_data(as_text=True)  # the navigation
    assert ">商品<" in sign_in(ADMIN, language="zh-CN").get("/setup/objects").get_data(as_text=True)

    # A field's label and length, edited in place: the column widens.
    field_page = client.get("/setup/objects/product/fields/name").get_data(as_text=True)
    assert 'value="Name"' in field_page or "value=" in field_page
    schema = document["properties"]["name"]
    answer = _post(
        client,
        "/setup/objects/product/fields/name",
        {
            "type": "text",
            "label-en": "Article name",
            "label-zh": "商品名称",
            "maxLength": str(int(schema.get("maxLength", 255)) + 50),
            "required": "on" if "name" in document.get("required", []) else "",
        },
    )
    assert answer.status_code == 302, answer.get_data(as_text=True)[:2000]
    assert _columns(pack_app, "obj_product")["name"]["type"].length == schema["maxLength"] + 50
    assert _definition(pack_app, "product")["properties"]["name"]["x-label"]["en"] == "Article name"


def test_refusals_are_told_in_the_users_language(sign_in: SignIn, pack_app: Flask) -> None:
    """The service's problems (jsonschema's and its own) read in Chinese on a Chinese page."""
    client = sign_in(ADMIN, language="zh-CN")
    before = _version(pack_app, "dealer")
    url = "/setup/objects/dealer/new-field"
    answer = _post(client, url, {"name": "nickname", "type": "text", "maxLength": "-1"})
    assert answer.status_code == 422
    assert error_under(answer.get_data(as_text=True), "maxLength") == "不能小于 1"
    answer = _post(client, url, {"name": "rival", "type": "lookup", "x-target": "nope"})
    assert error_under(answer.get_data(as_text=True), "x-target") == "未知对象 'nope'"
    answer = _post(client, url, {"name": "Bad Name", "type": "text"})
    name_error = error_under(answer.get_data(as_text=True), "name") or ""
    assert name_error.startswith("'Bad Name' 必须以小写字母开头"), name_error
    answer = _post(client, "/setup/objects/dealer", {"label-en": "", "title_field": "name"})
    assert error_under(answer.get_data(as_text=True), "label-en") == "不能为空"
    answer = _post(client, "/setup/objects/dealer", {"label-en": "D", "title_field": "nope"})
    assert error_under(answer.get_data(as_text=True), "title_field") == "'nope' 不是字段"
    assert _version(pack_app, "dealer") == before


def test_invalid_settings_are_shown_next_to_their_input(sign_in: SignIn, pack_app: Flask) -> None:
    client = sign_in(ADMIN, language="en")
    before = _version(pack_app, "dealer")
    url = "/setup/objects/dealer/new-field"

    answer = _post(client, url, {"name": "nickname", "type": "text", "maxLength": "-1"})
    page = answer.get_data(as_text=True)
    assert answer.status_code == 422
    assert error_under(page, "maxLength") == "must be at least 1"
    assert 'name="maxLength" value="-1"' in page and 'value="nickname"' in page  # kept

    answer = _post(client, url, {"name": "nickname", "type": "text", "maxLength": "many"})
    assert answer.status_code == 422
    assert error_under(answer.get_data(as_text=True), "maxLength") == "must be a whole number"

    answer = _post(client, url, {"name": "name", "type": "integer"})
    assert answer.status_code == 422
    assert error_under(answer.get_data(as_text=True), "name") == "a field named name already exists"

    answer = _post(client, url, {"name": "rival", "type": "lookup", "x-target": "nope"})
    assert answer.status_code == 422
    assert error_under(answer.get_data(as_text=True), "x-target") == "unknown object 'nope'"

    answer = _post(client, url, {"name": "Bad Name", "type": "text"})
    assert answer.status_code == 422
    name_error = error_under(answer.get_data(as_text=True), "name") or ""
    assert "must start with a lowercase letter" in name_error

    answer = _post(client, url, {"name": "tier", "type": "picklist", "enum-0-en": "Gold"})
    page = answer.get_data(as_text=True)
    assert answer.status_code == 422
    assert error_under(page, "enum-0-value") == "a value is required"

    answer = _post(client, url, {"name": "tier", "type": "picklist", "enum-0-value": "x" * 101})
    value_error = error_under(answer.get_data(as_text=True), "enum-0-value") or ""
    assert "at most 100 characters" in value_error

    # Object settings: an empty label and a title that is not a field.
    answer = _post(client, "/setup/objects/dealer", {"label-en": "", "title_field": "name"})
    assert answer.status_code == 422
    assert error_under(answer.get_data(as_text=True), "label-en") == "must not be empty"
    answer = _post(client, "/setup/objects/dealer", {"label-en": "D", "title_field": "nope"})
    assert answer.status_code == 422
    assert error_under(answer.get_data(as_text=True), "title_field") == "'nope' is not a field"
    answer = _post(client, "/setup/objects/dealer", {"label-en": "D", "indexes": "nope, name"})
    assert "'nope' is not a field" in (error_under(answer.get_data(as_text=True), "indexes") or "")
    answer = _new_object(client, name="dealer")
    assert answer.status_code == 422 and "already exists" in answer.get_data(as_text=True)
    answer = _post(
        client, "/setup/objects/new-object", {"name": "", "label-en": "X", "first_field": "t"}
    )
    assert error_under(answer.get_data(as_text=True), "name") == "'x-name' is required"

    assert _version(pack_app, "dealer") == before
    assert "nickname" not in _columns(pack_app, "obj_dealer")
    assert not _catalog(pack_app).has_table("obj_new")


def test_changes_the_data_cannot_survive_are_refused_on_the_page(
    sign_in: SignIn, pack_app: Flask
) -> None:
    client = sign_in(ADMIN, language="en")
    before = _version(pack_app, "dealer")
    # Dealers hold records: a new master-detail field would leave them without a master.
    answer = _post(
        client,
        "/setup/objects/dealer/new-field",
        {"name": "owner_account", "type": "master_detail", "x-target": "product",
         "x-related-name": "owned_dealers"},
    )  # fmt: skip
    assert answer.status_code == 422
    assert 'class="flash error"' in answer.get_data(as_text=True)
    assert _version(pack_app, "dealer") == before


def test_remove_a_field_archives_its_column(sign_in: SignIn, pack_app: Flask) -> None:
    client = sign_in(ADMIN, language="en")
    _new_object(client)
    for name in ("memo", "kept"):
        _post(client, "/setup/objects/contract/new-field", {"name": name, "type": "text"})
    answer = _post(client, "/setup/objects/contract/fields/memo/remove", {})
    assert answer.status_code == 302
    columns = _columns(pack_app, "obj_contract")
    assert "memo" not in columns and any(c.endswith("_memo") for c in columns)
    assert "memo" not in _definition(pack_app, "contract")["properties"]
    # The title field cannot go: the refusal is shown on the field list, nothing changes.
    version = _version(pack_app, "contract")
    answer = _post(client, "/setup/objects/contract/fields/title/remove", {})
    assert answer.status_code == 422
    assert "/x-title-field" in answer.get_data(as_text=True)
    assert _version(pack_app, "contract") == version


def test_delete_an_object_with_confirmation(sign_in: SignIn, pack_app: Flask) -> None:
    client = sign_in(ADMIN, language="en")
    _new_object(client)
    assert _catalog(pack_app).has_table("obj_contract")
    answer = _post(client, "/setup/objects/contract/delete", {"confirm": "contrac"})
    assert answer.status_code == 422
    assert "to confirm" in (error_under(answer.get_data(as_text=True), "confirm") or "")
    assert _catalog(pack_app).has_table("obj_contract")

    answer = _post(client, "/setup/objects/contract/delete", {"confirm": "contract"})
    assert answer.status_code == 302 and answer.headers["Location"] == "/setup/objects"
    assert not _catalog(pack_app).has_table("obj_contract")
    assert _version(pack_app, "contract") is None
    assert client.get("/setup/objects/contract").status_code == 404

    # The dealer is looked up by orders and named by roles: refused, naming them.
    page = client.get("/setup/objects/dealer/delete").get_data(as_text=True)
    assert "sales_order.dealer" in page and "disabled" in page
    answer = _post(client, "/setup/objects/dealer/delete", {"confirm": "dealer"})
    page = answer.get_data(as_text=True)
    assert answer.status_code == 409
    assert "sales_order.dealer" in page and "roles.dealer_admin" in page
    assert _catalog(pack_app).has_table("obj_dealer")


def test_only_administrators_reach_the_designer(sign_in: SignIn, pack_app: Flask) -> None:
    admin_nav = sign_in(ADMIN, language="en").get("/").get_data(as_text=True)
    assert 'href="/setup/objects"' in admin_nav
    client = sign_in(CHANNEL, language="en")
    assert 'href="/setup/objects"' not in client.get("/").get_data(as_text=True)
    for url in (
        "/setup/objects",
        "/setup/objects/new-object",
        "/setup/objects/dealer",
        "/setup/objects/dealer/fields",
        "/setup/objects/dealer/new-field",
        "/setup/objects/dealer/fields/name",
        "/setup/objects/dealer/delete",
        "/setup/objects/dealer/field-settings?type=text",
        "/setup/objects/dealer/field-preview?type=text",
    ):
        assert client.get(url).status_code == 403, url
    token = csrf_of(client.get("/").get_data(as_text=True))
    before = _version(pack_app, "dealer")
    for url, data in (
        ("/setup/objects/new-object", {"name": "sneaky", "label-en": "S", "first_field": "t"}),
        ("/setup/objects/dealer", {"label-en": "Hacked"}),
        ("/setup/objects/dealer/new-field", {"name": "sneaky", "type": "text"}),
        ("/setup/objects/dealer/fields/name/remove", {}),
        ("/setup/objects/dealer/delete", {"confirm": "dealer"}),
    ):
        assert client.post(url, data={"csrf_token": token, **data}).status_code == 403, url
    assert _version(pack_app, "dealer") == before
    assert not _catalog(pack_app).has_table("obj_sneaky")
    # Without the CSRF token an administrator's write is refused too.
    admin = sign_in(ADMIN)
    assert admin.post("/setup/objects/dealer", data={"label-en": "X"}).status_code == 400
    assert _version(pack_app, "dealer") == before


def test_type_settings_and_preview(sign_in: SignIn, pack_app: Flask) -> None:
    client = sign_in(ADMIN, language="en")
    base = "/setup/objects/dealer"
    settings = client.get(f"{base}/field-settings?type=lookup").get_data(as_text=True)
    assert 'name="x-target"' in settings and 'name="x-on-delete"' in settings
    assert 'name="maxLength"' not in settings
    settings = client.get(f"{base}/field-settings?type=text&maxLength=30").get_data(as_text=True)
    assert 'name="maxLength" value="30"' in settings and 'name="x-target"' not in settings
    assert 'name="unique"' in settings
    assert 'name="unique"' not in client.get(f"{base}/field-settings?type=boolean").get_data(
        as_text=True
    )

    def preview(**args: str) -> str:
        answer = client.get(f"{base}/field-preview", query_string=args)
        assert answer.status_code == 200
        return answer.get_data(as_text=True)

    page = preview(**{"type": "picklist", "label-en": "Tier", "enum-0-value": "gold",
                      "enum-0-en": "Gold", "enum-1-value": "lead"})  # fmt: skip
    assert "<select" in page and ">Gold</option>" in page and ">lead</option>" in page
    assert ">Tier" in page
    page = preview(**{"type": "text", "label-en": "Code", "maxLength": "12", "required": "on"})
    assert 'maxlength="12"' in page and "required" in page and 'class="req"' in page
    page = preview(**{"type": "currency", "x-scale": "2"})
    assert "data-currency" in page
    page = preview(**{"type": "lookup", "x-target": "product"})
    assert 'data-lookup-url="/lookup/product"' in page
    assert "Choose the object" in preview(**{"type": "lookup", "x-target": "nope"})
    assert re.search(
        r"C-\d{4}-001", preview(**{"type": "autonumber", "x-format": "C-{YYYY}-{000}"})
    )
    assert 'type="checkbox"' in preview(**{"type": "boolean"})
    # In Chinese, the preview's label is the Chinese one.
    zh = sign_in(ADMIN, language="zh-CN")
    page = zh.get(
        f"{base}/field-preview",
        query_string={"type": "text", "label-en": "Code", "label-zh": "代码"},
    ).get_data(as_text=True)
    assert "代码" in page and "Code" not in page


def test_in_a_browser_the_type_swaps_its_settings_and_the_preview_follows(
    pack_app: Flask, live_server: str, browser: Any
) -> None:
    from tests.ui.conftest import PASSWORD

    context = browser.new_context(locale="en-US")
    context.set_default_timeout(10_000)
    try:
        page = context.new_page()
        page.goto(f"{live_server}/login")
        page.fill("input[name=email]", ADMIN)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.goto(f"{live_server}/setup/objects/dealer/new-field")
        assert page.locator("input[name=maxLength]").count() == 1
        page.select_option("select[name=type]", "picklist")  # htmx swaps the settings
        page.wait_for_selector("input[name=enum-0-value]")
        assert page.locator("input[name=maxLength]").count() == 0
        page.fill("input[name=name]", "tier")
        page.fill("#in-label-en", "Tier")
        page.fill("input[name=enum-0-value]", "gold")
        page.fill("input[name=enum-0-en]", "Gold")
        page.click("[data-add-line=options-grid]")
        page.fill("input[name=enum-1-value]", "silver")
        page.keyboard.press("Tab")
        page.wait_for_selector("#field-preview option[value=silver]", state="attached")
        assert page.inner_text("#field-preview label") == "Tier"
        assert page.locator("#field-preview option[value=gold]").inner_text() == "Gold"
        page.click("button:has-text('Save field')")
        page.wait_for_url(f"{live_server}/setup/objects/dealer/fields")
    finally:
        context.close()
    schema = _definition(pack_app, "dealer")["properties"]["tier"]
    assert schema["enum"] == ["gold", "silver"]
    assert schema["x-enum-labels"] == {"gold": {"en": "Gold"}}
    assert "tier" in _columns(pack_app, "obj_dealer")


def test_a_referenced_object_is_refused_in_chinese(sign_in: SignIn, pack_app: Flask) -> None:
    client = sign_in(ADMIN, language="zh-CN")
    answer = _post(client, "/setup/objects/dealer/delete", {"confirm": "dealer"})
    page = answer.get_data(as_text=True)
    assert answer.status_code == 409
    assert "角色 &#39;dealer_admin&#39; 授予了对它的权限" in page
    assert "&#39;sales_order&#39; 的 lookup 字段 &#39;dealer&#39; 指向它" in page, page
    assert "points at it" not in page and "grants rights" not in page
    assert _catalog(pack_app).has_table("obj_dealer")


def test_an_object_and_a_field_named_new_can_be_opened(sign_in: SignIn, pack_app: Flask) -> None:
    """The create pages sit on paths no name can take (names have no hyphen)."""
    client = sign_in(ADMIN, language="en")
    assert _new_object(client, name="new").status_code == 302
    answer = _post(client, "/setup/objects/new/new-field", {"name": "new", "type": "text"})
    assert answer.status_code == 302, answer.get_data(as_text=True)[:1000]
    settings = client.get("/setup/objects/new")
    assert settings.status_code == 200
    assert 'href="/setup/objects/new/delete"' in settings.get_data(as_text=True)
    field_page = client.get("/setup/objects/new/fields/new")
    assert field_page.status_code == 200 and "Save field" in field_page.get_data(as_text=True)
    assert "new" in _columns(pack_app, "obj_new")
    assert client.get("/setup/objects/new-object").status_code == 200  # the create page


def test_defaults_and_read_only_are_set_in_the_designer(sign_in: SignIn, pack_app: Flask) -> None:
    client = sign_in(ADMIN, language="en")
    url = "/setup/objects/dealer/new-field"
    before = _version(pack_app, "dealer")

    # A default that is not a value of the type is refused under its input, kept as typed.
    answer = _post(client, url, {"name": "seats", "type": "integer", "default": "many"})
    page = answer.get_data(as_text=True)
    assert answer.status_code == 422
    assert error_under(page, "default") == "must be a whole number"
    assert 'name="default" value="many"' in page
    answer = _post(
        client, url, {"name": "seats", "type": "integer", "default": "5", "maximum": "3"}
    )
    assert answer.status_code == 422
    assert error_under(answer.get_data(as_text=True), "default") == "must be at most 3"
    # Read-only, the preview shows the value as text: a bad default is shown as typed.
    for kind in ("integer", "currency", "percent", "number"):
        answer = _post(
            client, url, {"name": "seats", "type": kind, "default": "many", "readonly": "on"}
        )
        assert answer.status_code == 422, kind
        assert error_under(answer.get_data(as_text=True), "default"), kind
    answer = _post(
        client, url,
        {"name": "grade", "type": "picklist", "enum-0-value": "a", "enum-1-value": "b",
         "default": "c"},
    )  # fmt: skip
    assert answer.status_code == 422
    assert "is not one of" in (error_under(answer.get_data(as_text=True), "default") or "")
    assert _version(pack_app, "dealer") == before

    saved = [
        {"name": "seats", "type": "integer", "default": "5", "readonly": "on"},
        {"name": "grade", "type": "picklist", "enum-0-value": "a", "enum-1-value": "b",
         "default": "b"},
        {"name": "vip", "type": "boolean", "default": "true"},
        {"name": "fee", "type": "currency", "default": "1,250.50"},
        {"name": "since", "type": "date", "default": "2026-01-31"},
        {"name": "labels", "type": "multipicklist", "enum-0-value": "x", "enum-1-value": "y",
         "default": "x, y"},
    ]  # fmt: skip
    for data in saved:
        answer = _post(client, url, data)
        assert answer.status_code == 302, (data, answer.get_data(as_text=True)[:2000])
    properties = _definition(pack_app, "dealer")["properties"]
    assert properties["seats"]["default"] == 5 and properties["seats"]["readOnly"] is True
    assert properties["grade"]["default"] == "b"
    assert properties["vip"]["default"] is True
    assert properties["fee"]["default"] == 1250.5
    assert properties["since"]["default"] == "2026-01-31"
    assert properties["labels"]["default"] == ["x", "y"]

    # The edit form shows them; clearing the default and the flag removes both.
    page = client.get("/setup/objects/dealer/fields/seats").get_data(as_text=True)
    assert 'name="default" value="5"' in page
    assert re.search(r'name="readonly" value="on"\s+checked', page)
    answer = _post(client, "/setup/objects/dealer/fields/seats", {"type": "integer"})
    assert answer.status_code == 302
    assert "default" not in _definition(pack_app, "dealer")["properties"]["seats"]
    assert "readOnly" not in _definition(pack_app, "dealer")["properties"]["seats"]

    # A new dealer's form starts from the defaults.
    page = client.get("/o/dealer/new").get_data(as_text=True)
    assert re.search(r'name="grade"[^>]*>.*?<option value="b"\s+selected', page, re.S)
    assert 'value="1,250.50"' in page

    # The preview shows the default, and a read-only field as read-only.
    preview = client.get(
        "/setup/objects/dealer/field-preview",
        query_string={"type": "text", "label-en": "Code", "default": "HQ-1", "readonly": "on"},
    ).get_data(as_text=True)
    assert "HQ-1" in preview and 'name="preview"' not in preview
    # Types no write may set offer no read-only flag; lookups offer no default.
    settings = client.get("/setup/objects/dealer/field-settings?type=autonumber")
    assert 'name="readonly"' not in settings.get_data(as_text=True)
    settings = client.get("/setup/objects/dealer/field-settings?type=lookup")
    assert 'name="default"' not in settings.get_data(as_text=True)
