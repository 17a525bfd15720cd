"""A channel manager moves an order through its workflow in a real browser: only the
transitions they may fire are buttons, the comment box opens for one that needs it, and
the badge and history show the move."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.browser.conftest import NewPage, Site, sign_in, submit
from tests.ui.conftest import PASSWORD, ids_of

CHANNEL = "channel@example.com"  # channel_manager, Chinese


@pytest.fixture
def site_url(channel_site: Site) -> str:
    return channel_site.url


def test_returning_an_order_with_a_comment(channel_site: Site, new_page: NewPage) -> None:
    order = ids_of(channel_site.app, "sales_order", status="submitted")[0]
    page = new_page()
    sign_in(page, channel_site.url, CHANNEL, PASSWORD)
    page.goto(f"{channel_site.url}/o/sales_order/{order}")
    shown = page.locator("[data-transition]").evaluate_all(
        "nodes => nodes.map((n) => n.dataset.transition)"
    )
    assert shown == ["approve", "return_to_draft", "cancel"]
    assert page.locator(".badge.state-in_progress").inner_text() == "已提交"
    page.locator('details[data-transition="return_to_draft"] summary').click()
    box = page.locator('details[data-transition="return_to_draft"] textarea[name=comment]')
    assert box.is_visible() and box.get_attribute("required") is not None
    box.fill("请核对数量")
    action = f"/o/sales_order/{order}/transitions/return_to_draft"
    button = page.locator('details[data-transition="return_to_draft"] button[type=submit]')
    assert submit(page, action, button).status == 302
    assert page.locator(".badge.state-draft").inner_text() == "草稿"
    assert "请核对数量" in page.locator("section.history").inner_text()
    table = channel_site.app.extensions["trellis.registry"].get("sales_order").table
    with channel_site.database.session() as session:
        status = session.scalar(sa.select(table.c.status).where(table.c.id == order))
    assert status == "draft"
