"""The record form's live preview in a real browser: line amounts and the order total
follow what is typed (computed by the server), and a field with ``x-visible-if`` appears
and disappears as the value it depends on changes."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.browser.conftest import NewPage, Site, screenshot, sign_in
from tests.ui.conftest import PASSWORD, dealer_id
from tests.ui.test_live_form import add_ticket_object
from trellis.extensions import database_of

ADMIN = "admin@example.com"


@pytest.fixture
def site_url(channel_site: Site) -> str:
    return channel_site.url


def test_amounts_and_the_total_follow_the_quantity_typed(
    new_page: NewPage, channel_site: Site
) -> None:
    base = channel_site.url
    page = new_page()
    sign_in(page, base, ADMIN, PASSWORD)
    page.goto(base + "/o/sales_order/new")
    page.get_by_role("button", name="+ Add line").click()
    row = page.locator("#grid-lines tbody tr").nth(0)
    row.locator("[name=lines-0-unit_price]").fill("12.50")
    row.locator("[name=lines-0-quantity]").press_sequentially("3", delay=30)
    amount, total = page.locator("#field-lines-0-amount"), page.locator("#field-total_amount")
    page.wait_for_function(
        "document.getElementById('field-lines-0-amount').textContent.includes('37.50')"
    )
    assert "37.50" in total.inner_text()
    row.locator("[name=lines-0-quantity]").press_sequentially("0", delay=30)  # now 30
    page.wait_for_function(
        "document.getElementById('field-total_amount').textContent.includes('375.00')"
    )
    assert "375.00" in amount.inner_text()
    page.get_by_role("button", name="+ Add line").click()
    second = page.locator("#grid-lines tbody tr").nth(1)
    second.locator("[name=lines-1-unit_price]").fill("1")
    second.locator("[name=lines-1-quantity]").press_sequentially("5", delay=30)
    page.wait_for_function(
        "document.getElementById('field-total_amount').textContent.includes('380.00')"
    )
    screenshot(page, "order-live-total")
    second.locator("[data-remove-line]").click()
    page.wait_for_function(
        "document.getElementById('field-total_amount').textContent.includes('375.00')"
    )


def test_a_field_appears_and_disappears_with_its_visible_if_rule(
    new_page: NewPage, channel_site: Site
) -> None:
    add_ticket_object(channel_site.app)
    base = channel_site.url
    page = new_page()
    sign_in(page, base, ADMIN, PASSWORD)
    page.goto(base + "/o/ticket/new")
    escalation = page.locator('[data-field="escalation"]')
    escalation.wait_for(state="hidden")  # severity is empty: not shown
    page.locator("[name=severity]").press_sequentially("5", delay=30)
    escalation.wait_for(state="visible")
    page.wait_for_function(
        "document.querySelector('[data-field=reason] .req') !== null"
    )  # required above 3
    page.locator("[name=severity]").fill("2")
    escalation.wait_for(state="hidden")
    page.wait_for_function("document.querySelector('[data-field=reason] .req') === null")


def test_an_order_over_the_dealers_credit_is_told_as_it_is_typed(
    new_page: NewPage, channel_site: Site
) -> None:
    """The credit rule runs in the preview: editing a submitted order (only a transition
    sets the status), the message appears under the total once an added line takes the
    dealer over its available credit, and goes when the line is removed."""
    base, app = channel_site.url, channel_site.app
    with database_of(app).session() as session:
        order_id = session.scalar(
            sa.text(
                "SELECT id FROM obj_sales_order WHERE status = 'submitted' AND dealer = :d"
                " AND deleted_at IS NULL ORDER BY id LIMIT 1"
            ),
            {"d": dealer_id(app, "D-0101")},
        )
    assert order_id is not None
    page = new_page()
    sign_in(page, base, ADMIN, PASSWORD)
    page.goto(f"{base}/o/sales_order/{order_id}/edit")
    page.get_by_role("button", name="+ Add line").click()
    row = page.locator("#grid-lines tbody tr").last
    row.locator("[name$=-unit_price]").fill("1000000000")
    row.locator("[name$=-quantity]").press_sequentially("9", delay=30)
    problem = page.locator('[data-field="total_amount"] [data-live-problem]')
    problem.wait_for(state="visible")
    assert "over its credit limit" in problem.inner_text()
    screenshot(page, "order-live-credit-rule")
    row.locator("[data-remove-line]").click()
    problem.wait_for(state="detached")
