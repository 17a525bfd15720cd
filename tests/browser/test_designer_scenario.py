"""An administrator builds a small app in the designers; a business user then works in it.

All in a real browser against ``trellis serve``: the admin creates an object with fields of
several types and grants a role rights on it through the permission matrix; a user holding
that role fills the generated form, is refused next to the field first, then saves.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.browser.conftest import NewPage, Page, Site, path_of, screenshot, sign_in, submit
from tests.browser.test_channel_scenarios import control, row_of
from tests.ui.conftest import PASSWORD, ids_of
from trellis.platform.runtime.models import User

HQ = "hq@example.com"  # a platform administrator
CHANNEL = "channel@example.com"  # channel_manager, Chinese


@pytest.fixture
def site_url(channel_site: Site) -> str:
    return channel_site.url


def reports(site: Site) -> list[int]:
    """The visit reports in the database (the checking app learns the new object first)."""
    with site.database.session() as session:
        site.app.extensions["trellis.registry"].ensure_current(session)
    return ids_of(site.app, "visit_report")


def add_field(page: Page, base: str, kind: str, name: str, en: str, zh: str) -> Page:
    """Open the new-field page, choose the type (the settings swap), name and label it."""
    page.goto(f"{base}/setup/objects/visit_report/new-field")
    page.select_option("select[name=type]", kind)
    page.wait_for_selector(f"#type-settings [data-type={kind}]", state="attached")
    page.fill("input[name=name]", name)
    page.fill("#in-label-en", en)
    page.fill("#in-label-zh", zh)
    return page


def save_field(page: Page, base: str) -> None:
    answer = submit(page, "/setup/objects/visit_report/new-field", "Save field")
    assert answer.status == 302, page.content()[:2000]
    assert path_of(page) == "/setup/objects/visit_report/fields"


def test_an_admin_builds_an_object_and_a_user_fills_its_form(
    new_page: NewPage, channel_site: Site
) -> None:
    base = channel_site.url
    with channel_site.database.session() as session:
        session.execute(sa.update(User).where(User.email == HQ).values(language="en"))
        session.commit()
    admin = new_page()
    sign_in(admin, base, HQ, PASSWORD)
    admin.goto(base + "/setup/objects")
    admin.get_by_role("link", name="New object").click()
    admin.fill("#in-name", "visit_report")
    admin.fill("#in-label-en", "Visit report")
    admin.fill("#in-label-zh", "拜访记录")
    admin.fill("#in-plural-en", "Visit reports")
    admin.fill("#in-plural-zh", "拜访记录")
    admin.fill("#in-first_field", "subject")
    admin.fill("#in-first_label-en", "Subject")
    admin.fill("#in-first_label-zh", "主题")
    assert submit(admin, "/setup/objects/new-object", "Create object").status == 302

    add_field(admin, base, "date", "visit_date", "Visit date", "拜访日期")
    admin.check("input[name=required]")
    save_field(admin, base)
    add_field(admin, base, "picklist", "outcome", "Outcome", "结果")
    admin.fill("input[name=enum-0-value]", "won")
    admin.fill("input[name=enum-0-en]", "Won")
    admin.fill("input[name=enum-0-zh]", "成交")
    admin.click("[data-add-line=options-grid]")
    admin.fill("input[name=enum-1-value]", "lost")
    admin.fill("input[name=enum-1-en]", "Lost")
    admin.fill("input[name=enum-1-zh]", "未成交")
    admin.keyboard.press("Tab")
    admin.wait_for_selector("#field-preview option[value=lost]", state="attached")
    screenshot(admin, "designer-field-picklist")
    save_field(admin, base)
    add_field(admin, base, "currency", "budget", "Budget", "预算")
    save_field(admin, base)
    screenshot(admin, "designer-fields")
    with channel_site.database.session() as session:
        columns = {
            c["name"] for c in sa.inspect(session.connection()).get_columns("obj_visit_report")
        }
    assert {"subject", "visit_date", "outcome", "budget"} <= columns

    # The channel manager's role may read and create visit reports (the permission matrix).
    admin.goto(base + "/setup/roles/channel_manager")
    admin.get_by_label("Visit report: Read").select_option("all")
    admin.get_by_label("Visit report: Create").select_option("all")
    assert submit(admin, "/setup/roles/channel_manager", "Save").status == 302

    # The business user (Chinese) fills the generated form: refused first, then saved.
    user = new_page(locale="zh-CN")
    sign_in(user, base, CHANNEL, PASSWORD)
    assert user.get_by_role("link", name="拜访记录").count() >= 1  # in the navigation
    user.goto(base + "/o/visit_report/new")
    control(user, "主题").fill("First visit to Suzhou")
    control(user, "结果").select_option("won")
    control(user, "预算").fill("12,500.50")
    refused = submit(user, "/o/visit_report/new", "保存")
    assert refused.status == 422
    invalid = user.locator(".field.invalid")
    assert invalid.count() == 1 and "拜访日期" in invalid.inner_text()
    assert control(user, "主题").input_value() == "First visit to Suzhou"  # values kept
    assert reports(channel_site) == []
    screenshot(user, "designer-form-refused")
    control(user, "拜访日期").fill("2026-12-01")
    assert submit(user, "/o/visit_report/new", "保存").status == 302
    saved = reports(channel_site)
    assert len(saved) == 1 and path_of(user) == f"/o/visit_report/{saved[0]}"
    row = row_of(channel_site, "visit_report", saved[0])
    assert row["subject"] == "First visit to Suzhou" and row["outcome"] == "won"
    assert str(row["visit_date"]) == "2026-12-01" and str(row["budget"]) == "12500.50"
    screenshot(user, "designer-record-detail")
