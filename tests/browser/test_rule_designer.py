"""An administrator writes a validation rule in the Rules tab, and a record that breaks it
is refused with the rule's message — all in a real browser against ``trellis serve``.

The rule is typed broken first: the check beside the form points at the character as it
is typed; fixed, it is saved as a new version of the object, and the record form shows
its message under the field it names (live as the value is typed, then on save).
Screenshots of the rules designer and the roll-up settings are taken in English and
Chinese at 1280 px for review.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.browser.conftest import NewPage, Page, Site, path_of, screenshot, sign_in, submit
from tests.ui.conftest import PASSWORD
from trellis.platform.runtime.models import User

ADMIN = "admin@example.com"
WIDE = {"width": 1280, "height": 900}


@pytest.fixture
def site_url(channel_site: Site) -> str:
    return channel_site.url


def _speaking(site: Site, language: str) -> None:
    with site.database.session() as session:
        session.execute(sa.update(User).where(User.email == ADMIN).values(language=language))
        session.commit()


def _type(page: Page, selector: str, text: str) -> None:
    """Clear the box and type ``text`` key by key, as a person would (the check follows)."""
    page.fill(selector, "")
    page.locator(selector).press_sequentially(text, delay=20)


def test_a_rule_typed_broken_then_fixed_refuses_a_record_that_breaks_it(
    new_page: NewPage, channel_site: Site
) -> None:
    base = channel_site.url
    _speaking(channel_site, "en")
    admin = new_page(viewport=WIDE)
    sign_in(admin, base, ADMIN, PASSWORD)
    admin.goto(base + "/setup/objects/product/rules")
    admin.get_by_role("link", name="New rule").click()
    admin.fill("#in-name", "price_above_zero")
    _type(admin, "#in-assert", "list_prise > 0")
    problem = admin.locator("#rule-check [data-check=assert].formula-problem")
    problem.wait_for()
    assert "list_prise > 0\n^" in problem.locator("pre").inner_text()
    assert "Line 1, column 1:" in problem.inner_text()
    admin.fill("#in-message-en", "A product is sold for more than {list_price * 0}.")
    admin.fill("#in-message-zh", "产品价格必须大于零。")
    admin.select_option("#in-field", "list_price")
    screenshot(admin, "rule-designer-caret-en")
    _type(admin, "#in-assert", "list_price > 0")
    admin.locator("#rule-check .formula-ok[data-check=assert]").wait_for()
    assert admin.locator("#rule-check .formula-problem").count() == 0
    assert submit(admin, "/setup/objects/product/new-rule", "Save rule").status == 302
    assert path_of(admin) == "/setup/objects/product/rules"
    assert "price_above_zero" in admin.locator("table.rules").inner_text()
    screenshot(admin, "rule-designer-list-en")

    admin.goto(base + "/o/product/new")
    admin.fill("[data-field=sku] input", "FREE-1")
    admin.fill("[data-field=name] input", "Free sample")
    admin.locator("[data-field=list_price] input").press_sequentially("0", delay=20)
    message = "A product is sold for more than 0.00."
    live = admin.locator("[data-field=list_price] [data-live-problem]")
    live.filter(has_text=message).wait_for()  # the live form runs the rule as typed
    assert submit(admin, "/o/product/new", "Save").status == 422
    error = admin.locator("[data-field=list_price] .error[role=alert]").inner_text()
    assert error == message, error
    screenshot(admin, "rule-refuses-record-en")


def test_the_designer_pages_in_both_languages(new_page: NewPage, channel_site: Site) -> None:
    """Screenshots for review: the rules list and form, and a roll-up's settings."""
    base = channel_site.url
    for language, locale in (("zh-CN", "zh-CN"), ("en", "en-US")):
        _speaking(channel_site, language)
        page = new_page(viewport=WIDE, locale=locale)
        sign_in(page, base, ADMIN, PASSWORD)
        page.goto(base + "/setup/objects/sales_order/rules")
        assert page.locator("table.rules tbody tr").count() >= 1
        screenshot(page, f"rules-{language}")
        page.goto(base + "/setup/objects/sales_order/rules/within_credit_limit")
        _type(page, "#in-when", "status = ")
        page.locator("#rule-check [data-check=when].formula-problem").wait_for()
        screenshot(page, f"rule-form-{language}")
        page.goto(base + "/setup/objects/dealer/new-field")
        page.select_option("select[name=type]", "rollup")
        page.wait_for_selector("#type-settings [data-type=rollup]", state="attached")
        page.select_option("#in-rollup-of", "sales_order.dealer")
        page.wait_for_selector("#in-rollup-of option[value='sales_order.dealer'][selected]",
                               state="attached")  # fmt: skip
        page.select_option("#in-rollup-function", "SUM")
        page.wait_for_selector("#in-rollup-field option[value=total_amount]", state="attached")
        page.select_option("#in-rollup-field", "total_amount")
        _type(page, "#in-rollup-filter", "status = 'submitted' AND")
        page.locator("#field-preview [data-check=rollup-filter].formula-problem").wait_for()
        screenshot(page, f"rollup-designer-{language}")
        page.close()
