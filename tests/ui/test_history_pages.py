"""Version history pages of objects and roles: the versions with their diffs told as
sentences, a version's whole document, and restoring a version (or being refused)."""

from __future__ import annotations

import copy
import html as markup
import json
import re
from typing import Any

import sqlalchemy as sa
from flask import Flask

from tests.conftest import Api
from tests.ui.conftest import SignIn, csrf_of, ids_of
from trellis.extensions import database_of
from trellis.platform.runtime.models import User

ADMIN = "admin@example.com"
EAST = "east.admin@example.com"  # a dealer's administrator: no designer rights
HISTORY = "/setup/objects/dealer/history"


def text_of(page: str) -> str:
    """The page's text as a reader sees it: tags dropped, spaces collapsed."""
    body = page[page.index("<main>") :]
    return re.sub(r"\s+", " ", markup.unescape(re.sub(r"<[^>]+>", " ", body)))


def versions(api: Api, path: str) -> list[dict[str, Any]]:
    answer = api.get(f"{path}/versions")
    assert answer.status_code == 200
    items: list[dict[str, Any]] = answer.get_json()["items"]
    return items


def change_dealer(api: Api) -> dict[str, Any]:
    """Version 3 adds a field, renames one and requires another; version 4 drops one.

    The pack installs dealer in two versions (its roll-up of orders comes once orders
    exist), so its history starts at version 2."""
    first = api.get("/objects/dealer").get_json()["definition"]
    second = copy.deepcopy(first)
    second["properties"]["discount_rate"] = {
        "x-type": "percent",
        "type": "number",
        "x-label": {"en": "Discount rate", "zh-CN": "折扣率"},
    }
    second["properties"]["name"]["x-label"] = {"en": "Company name", "zh-CN": "公司名称"}
    second["required"] = [*second["required"], "region"]
    assert api.put("/objects/dealer", second).status_code == 200
    third = copy.deepcopy(second)
    del third["properties"]["website"]
    assert api.put("/objects/dealer", third).get_json()["version"] == 4
    return dict(first)


def admin_name(app: Flask) -> str:
    with database_of(app).session() as session:
        user = session.scalars(sa.select(User).where(User.email == ADMIN)).one()
        return user.name or user.email


def test_history_tells_each_version_in_sentences(
    sign_in: SignIn, pack_app: Flask, api: Api
) -> None:
    change_dealer(api)
    page = sign_in(ADMIN, language="en").get(HISTORY)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert [int(v) for v in re.findall(r'<tr id="v(\d+)">', html)] == [4, 3, 2, 1]
    text = text_of(html)
    assert "Field removed: Website (website, Web address)" in text
    assert "Field added: Discount rate (discount_rate, Percent)" in text
    assert "Company name — label: Name → Company name" in text
    assert "Region is now required" in text
    assert "Created with these fields Company name (name, Text)" not in text  # v1's own labels
    assert "Created with these fields Name (name, Text) Dealer code (code, Text)" in text
    assert "removed website" in text  # the stored one-line summary
    row = html[html.index('<tr id="v4">') : html.index('<tr id="v3">')]
    assert admin_name(pack_app) in row and "current" in row and "/restore" not in row
    assert 'action="/setup/objects/dealer/history/1/restore"' in html
    # The same history in Chinese: labels and sentences in that language only.
    text = text_of(sign_in(ADMIN, language="zh-CN").get(HISTORY).get_data(as_text=True))
    assert "新增字段：折扣率 (discount_rate, 百分比)" in text
    assert "删除字段：网站 (website, 网址)" in text
    assert "公司名称的名称： 名称 → 公司名称" in text
    assert "区域 改为必填" in text
    assert "Discount rate" not in text and "Field added" not in text


def test_a_version_page_shows_the_whole_document(sign_in: SignIn, api: Api) -> None:
    change_dealer(api)
    html = sign_in(ADMIN, language="en").get(f"{HISTORY}/3").get_data(as_text=True)
    shown = re.search(r'<pre class="json">(.*?)</pre>', html, re.S)
    assert shown is not None
    stored = api.get("/objects/dealer/versions/3").get_json()["definition"]
    assert json.loads(markup.unescape(shown.group(1))) == stored
    assert "Field added: Discount rate" in text_of(html)
    assert sign_in(ADMIN).get(f"{HISTORY}/9").status_code == 404


def test_restore_writes_a_new_version_equal_to_the_old_one(
    sign_in: SignIn, pack_app: Flask, api: Api
) -> None:
    first = change_dealer(api)
    client = sign_in(ADMIN, language="en")
    token = csrf_of(client.get(HISTORY).get_data(as_text=True))
    answer = client.post(f"{HISTORY}/2/restore", data={"csrf_token": token})
    assert answer.status_code == 302 and answer.headers["Location"] == HISTORY
    newest = versions(api, "/objects/dealer")[0]
    assert (newest["version"], newest["restored_from"]) == (5, 2)
    assert api.get("/objects/dealer/versions/5").get_json()["definition"] == first
    # The table follows: the removed field is back with its data, the added one is gone.
    record = api.get(f"/records/dealer/{ids_of(pack_app, 'dealer')[0]}").get_json()
    assert "website" in record and "discount_rate" not in record
    text = text_of(client.get(HISTORY).get_data(as_text=True))
    assert "Version 2 restored as version 5." in text
    assert "Restored from version 2" in text and "Field added: Website" in text


def test_role_history_and_restore(sign_in: SignIn, api: Api) -> None:
    first = api.get("/roles/dealer_sales").get_json()["role"]
    second = copy.deepcopy(first)
    second["objects"]["sales_order"]["read"] = "all"
    second["objects"]["dealer"]["fields"]["website"] = "hidden"
    del second["objects"]["order_line"]
    assert api.put("/roles/dealer_sales", second).status_code == 200
    client = sign_in(ADMIN, language="en")
    html = client.get("/setup/roles/dealer_sales/history").get_data(as_text=True)
    text = text_of(html)
    assert "Order — read: own partner and below → all records" in text
    assert "Dealer · Website — field access: — → hidden" in text
    assert "Rights on Order line removed: read: own partner and below" in text
    assert 'href="/setup/roles/dealer_sales/history"' in html  # its tab
    answer = client.post(
        "/setup/roles/dealer_sales/history/1/restore", data={"csrf_token": csrf_of(html)}
    )
    assert answer.status_code == 302
    newest = versions(api, "/roles/dealer_sales")[0]
    assert (newest["version"], newest["restored_from"], newest["role"]) == (3, 1, first)
    text = text_of(client.get("/setup/roles/dealer_sales/history/3").get_data(as_text=True))
    assert "Order — read: all records → own partner and below" in text


def test_a_refused_restore_shows_why_and_changes_nothing(
    sign_in: SignIn, pack_app: Flask, api: Api
) -> None:
    first = api.get("/roles/dealer_sales").get_json()["role"]
    second = copy.deepcopy(first)
    second["objects"]["dealer"]["fields"]["website"] = "hidden"
    assert api.put("/roles/dealer_sales", second).status_code == 200
    assert api.put("/roles/dealer_sales", first).get_json()["version"] == 3
    definition = api.get("/objects/dealer").get_json()["definition"]
    del definition["properties"]["website"]
    assert api.put("/objects/dealer", definition).status_code == 200
    # Version 2 names a field that no longer exists: the role service refuses it.
    client = sign_in(ADMIN, language="en")
    page = client.get("/setup/roles/dealer_sales/history").get_data(as_text=True)
    answer = client.post(
        "/setup/roles/dealer_sales/history/2/restore", data={"csrf_token": csrf_of(page)}
    )
    assert answer.status_code == 422
    text = text_of(answer.get_data(as_text=True))
    assert "The version was not restored." in text
    assert re.search(r"/objects/dealer/fields/website ?: 'website' is not a field", text)
    assert [v["version"] for v in versions(api, "/roles/dealer_sales")] == [3, 2, 1]
    # Without the CSRF token: refused, nothing written.
    assert client.post("/setup/roles/dealer_sales/history/1/restore").status_code == 400
    assert len(versions(api, "/roles/dealer_sales")) == 3
    assert (
        client.post(
            "/setup/roles/dealer_sales/history/7/restore", data={"csrf_token": csrf_of(page)}
        ).status_code
        == 404
    )


def test_only_administrators_see_and_restore_versions(
    sign_in: SignIn, pack_app: Flask, api: Api
) -> None:
    change_dealer(api)
    dealer = sign_in(EAST)
    for path in (
        HISTORY,
        f"{HISTORY}/1",
        "/setup/roles/dealer_sales/history",
        "/setup/roles/dealer_sales/history/1",
    ):
        assert dealer.get(path).status_code == 403, path
    token = csrf_of(dealer.get("/").get_data(as_text=True))
    assert dealer.post(f"{HISTORY}/1/restore", data={"csrf_token": token}).status_code == 403
    assert len(versions(api, "/objects/dealer")) == 4
    signed_out = pack_app.test_client().get(HISTORY)
    assert signed_out.status_code == 302 and "/login" in signed_out.headers["Location"]
    admin = sign_in(ADMIN)
    assert admin.get("/setup/objects/no_such_object/history").status_code == 404
    assert admin.get("/setup/roles/no_such_role/history").status_code == 404
