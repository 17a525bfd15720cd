"""An approval in a real browser: the submitter submits an expense from its page, the
approver sees the badge, opens the inbox and approves two in bulk, and the record shows
approved with its history. Screenshots of the panel and the inbox in both languages at
1280 px (``TRELLIS_SCREENSHOTS``)."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Flask

from tests.browser.conftest import NewPage, flash_text, screenshot, sign_in, submit
from tests.conftest import Api
from tests.ui.test_approval_pages import PASSWORD, build_site
from trellis.extensions import database_of
from trellis.platform.runtime.models import User

WIDE = {"width": 1280, "height": 900}


def _language(app: Flask, email: str, language: str) -> None:
    with database_of(app).session() as session:
        session.execute(sa.update(User).where(User.email == email).values(language=language))
        session.commit()


def test_submit_badge_bulk_approve_and_history(
    app: Flask, api: Api, live_server: str, new_page: NewPage
) -> None:
    site = build_site(app, api, board=False)
    first = site.expense("sam", "Trip to Shanghai", 1200)
    second = site.expense("sam", "Hotel in Beijing", 800)
    sam = new_page(viewport=WIDE)
    sam.set_viewport_size(WIDE)
    sign_in(sam, live_server, "sam@example.com", PASSWORD)
    for record in (first, second):
        sam.goto(f"{live_server}/o/expense/{record}")
        assert sam.locator("[data-approval]").get_attribute("data-approval") == "none"
        button = sam.locator('form[data-transition="submit"] button')
        assert button.inner_text() == "Submit (for approval)"
        assert submit(sam, f"/o/expense/{record}/transitions/submit", button).status == 302
        assert sam.locator("[data-request-status]").inner_text() == "Pending"
        assert sam.locator('[data-step="manager"]').get_attribute("data-state") == "current"
        assert sam.locator("a[data-awaiting-approval]").is_visible()
    boss = new_page()
    boss.set_viewport_size(WIDE)
    sign_in(boss, live_server, "boss@example.com", PASSWORD)
    badge = boss.locator("a.bell.approvals")
    assert badge.locator(".count").inner_text() == "2"
    boss.goto(f"{live_server}/o/expense/{first}")
    assert boss.locator(".my-task button[value=approve]").is_visible()
    screenshot(boss, "approval-panel-pending-en")
    _language(app, "boss@example.com", "zh-CN")
    boss.reload()
    assert boss.locator(".my-task button[value=approve]").inner_text() == "通过"
    screenshot(boss, "approval-panel-pending-zh-CN")
    boss.locator("a.bell.approvals").click()
    boss.wait_for_url(f"{live_server}/approvals")
    assert boss.locator("table.inbox tbody tr").count() == 2
    screenshot(boss, "approval-inbox-zh-CN")
    _language(app, "boss@example.com", "en")
    boss.reload()
    screenshot(boss, "approval-inbox-en")
    for box in boss.locator("table.inbox input[name=task]").all():
        box.check()
    boss.locator(".bulk-bar input[name=comment]").fill("Both fine")
    answer = submit(boss, "/approvals/bulk-approve", "Approve selected")
    assert answer.status == 302
    assert "2 tasks approved." in flash_text(boss)
    assert boss.locator("a.bell.approvals .count").count() == 0
    assert "Nothing waits for your approval." in boss.locator("main").inner_text()
    sam.goto(f"{live_server}/o/expense/{first}")
    assert sam.locator("[data-request-status]").inner_text() == "Approved"
    assert sam.locator(".badge.state-done").inner_text() == "Approved"
    history = sam.locator(".approval-history").inner_text()
    assert "Submitted" in history and "Boss" in history and "Both fine" in history
    assert "Completed" in history
    assert sam.locator('[data-step="manager"]').get_attribute("data-state") == "done"
    screenshot(sam, "approval-panel-approved-en")
    _language(app, "sam@example.com", "zh-CN")
    sam.reload()
    assert sam.locator("[data-request-status]").inner_text() == "已通过"
    screenshot(sam, "approval-panel-approved-zh-CN")
