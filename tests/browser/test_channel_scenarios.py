"""The channel pack's users in a real browser, against ``trellis serve`` on PostgreSQL.

Each scenario is what a person does — sign in through the form, type into the
generated order form, pick products with the keyboard, switch language, use a phone,
edit the same order as someone else — and checks what they see against the database.
The scenarios share one served instance (``channel_site``), so each works with records
of its own or with users no other scenario changes.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import sqlalchemy as sa

from tests.browser.conftest import (
    NewPage,
    Page,
    Site,
    flash_text,
    path_of,
    screenshot,
    sign_in,
    sign_out,
    submit,
)
from tests.ui.conftest import PASSWORD, dealer_id, ids_of
from trellis.platform.runtime.models import User

SALES = "east.sales@example.com"  # dealer_sales of the East regional dealer (D-0101), English
EAST_ADMIN = "east.admin@example.com"  # dealer_admin of D-0101, Chinese
CHANNEL = "channel@example.com"  # channel_manager, Chinese
NORTH_ADMIN = "north.admin@example.com"  # dealer_admin of D-0102, Chinese
HQ = "hq@example.com"  # hq_admin and platform administrator, Chinese
PHONE = {"width": 390, "height": 844}
ORDER_NUMBER = re.compile(r"SO-\d{4}-\d{5}")


@pytest.fixture
def site_url(channel_site: Site) -> str:
    return channel_site.url


# --- helpers -----------------------------------------------------------------------------


def row_of(site: Site, object_name: str, record_id: int) -> dict[str, Any]:
    """A record's row straight from its table."""
    table = site.app.extensions["trellis.registry"].get(object_name).table
    with site.database.session() as session:
        row = session.execute(sa.select(table).where(table.c.id == record_id)).mappings().one()
        return dict(row)


def user_id(site: Site, email: str) -> int:
    with site.database.session() as session:
        found = session.scalar(sa.select(User.id).where(User.email == email))
        assert found is not None
        return found


def choose(page: Page, box: Any, typed: str, wanted: str) -> None:
    """Pick ``wanted`` in a lookup like someone at a keyboard: type, ↓ to it, Enter."""
    box.click()
    box.press_sequentially(typed, delay=20)
    root = box.locator("xpath=ancestor::*[@data-lookup][1]")
    # Wait for the answer to what was typed (the list shown on focus holds everything).
    page.wait_for_function(
        """([root, text]) => {
            const titles = [...root.querySelectorAll("[data-pick-id]")]
                .map((option) => option.dataset.pickTitle.toLowerCase());
            return titles.length > 0 && titles.every((title) => title.includes(text));
        }""",
        arg=[root.element_handle(), typed.lower()],
    )
    options = root.locator("[data-pick-id]")
    box.press("ArrowDown")
    for _ in range(options.count()):
        focused = page.evaluate("document.activeElement.dataset.pickTitle || ''")
        if wanted in focused:
            break
        page.keyboard.press("ArrowDown")
    else:
        raise AssertionError(f"{wanted!r} is not among the options for {typed!r}")
    page.keyboard.press("Enter")
    assert root.locator("[data-pick-id]").count() == 0  # the list closed
    assert wanted in box.input_value()


def lookup_value(box: Any) -> str:
    """The id a lookup box's hidden input holds."""
    return str(
        box.locator("xpath=ancestor::*[@data-lookup][1]")
        .locator("[data-lookup-value]")
        .input_value()
    )


def control(page: Page, label: str) -> Any:
    """The form control labelled ``label`` (a required field's label ends in "*")."""
    return page.get_by_label(re.compile(rf"^{re.escape(label)}( \*)?$"))


def field_error(page: Page, label: str) -> str:
    """The error shown next to the form field labelled ``label``."""
    field = control(page, label).locator("xpath=ancestor::div[contains(@class, 'field')][1]")
    return str(field.locator("small.error").inner_text())


# --- 1. the order form: an error next to its field, then saved ----------------------------


def test_an_order_is_refused_next_to_its_field_then_saved(
    new_page: NewPage, channel_site: Site
) -> None:
    base, east = channel_site.url, dealer_id(channel_site.app, "D-0101")
    before = ids_of(channel_site.app, "sales_order")
    page = new_page()
    sign_in(page, base, SALES, PASSWORD)
    page.goto(base + "/o/sales_order")
    page.get_by_role("link", name="New", exact=True).click()
    page.wait_for_url(base + "/o/sales_order/new")
    assert page.get_by_role("heading", name="New Order").is_visible()

    dealer = control(page, "Dealer")
    choose(page, dealer, "华东", "华东星辰电器有限公司")
    assert lookup_value(dealer) == str(east)
    control(page, "Requested delivery date").fill("2026-12-20")
    control(page, "Currency").select_option("USD")
    note = "Browser scenario one: first refused, then saved"
    control(page, "Notes").fill(note)
    # The order date is required and left empty.
    refused = submit(page, "/o/sales_order/new", "Save")
    assert refused.status == 422
    assert flash_text(page) == "Some values need correcting: see the marked fields."
    assert field_error(page, "Order date") == "is required"
    assert page.locator(".field.invalid").count() == 1  # only that field is marked
    assert control(page, "Dealer").input_value() == "华东星辰电器有限公司"
    assert lookup_value(control(page, "Dealer")) == str(east)
    assert control(page, "Requested delivery date").input_value() == "2026-12-20"
    assert control(page, "Currency").input_value() == "USD"
    assert control(page, "Notes").input_value() == note
    assert ids_of(channel_site.app, "sales_order") == before  # nothing was written
    screenshot(page, "order-form-refused")

    control(page, "Order date").fill("2026-12-01")
    saved = submit(page, "/o/sales_order/new", "Save")
    assert saved.status == 302
    (created,) = set(ids_of(channel_site.app, "sales_order")) - set(before)
    assert path_of(page) == f"/o/sales_order/{created}"
    assert flash_text(page) == "Saved."
    heading = page.locator("main h1").inner_text()
    row = row_of(channel_site, "sales_order", created)
    assert row["number"] in heading and ORDER_NUMBER.fullmatch(row["number"])
    main = page.locator("main").inner_text()
    for shown in ("华东星辰电器有限公司", "2026-12-01", "2026-12-20", note, "US dollar (USD)"):
        assert shown in main
    screenshot(page, "order-detail")
    assert row["dealer"] == east
    assert str(row["order_date"]) == "2026-12-01"
    assert str(row["requested_delivery_date"]) == "2026-12-20"
    assert (row["currency"], row["notes"], row["status"]) == ("USD", note, "draft")
    assert row["created_by"] == user_id(channel_site, SALES) == row["owner_id"]


# --- 2. three lines in the grid, saved with their order -----------------------------------


def test_an_order_with_three_lines_from_the_grid_is_saved_in_one_go(
    new_page: NewPage, channel_site: Site
) -> None:
    base, app = channel_site.url, channel_site.app
    before = ids_of(app, "sales_order")
    wanted = [  # typed, title shown, SKU, quantity, unit price, discount
        ("65", 'Aurora 65" 4K TV', "AUR-TV65-4K", 4, "4,289.00", ""),
        ("rice", "Aurora 4L IH Rice Cooker", "AUR-RC4-IH", 30, "479.20", "5"),
        ("Fryer", "Aurora 5L Air Fryer", "AUR-AF5-CTN6", 12, "1723.2", ""),
    ]
    page = new_page()
    sign_in(page, base, SALES, PASSWORD)
    page.goto(base + "/o/sales_order/new")
    choose(page, control(page, "Dealer"), "苏州", "苏州吴越家电商行")
    control(page, "Order date").fill("2026-11-30")
    rows = page.locator("#grid-lines tbody tr")
    assert rows.count() == 0
    for index, (typed, title, _sku, quantity, price, discount) in enumerate(wanted):
        page.get_by_role("button", name="+ Add line").click()
        assert rows.count() == index + 1
        row = rows.nth(index)
        product = row.locator("[data-lookup-text]")
        assert product.evaluate("box => box === document.activeElement")  # focus moved there
        choose(page, product, typed, title)
        row.locator(f"[name=lines-{index}-quantity]").fill(str(quantity))
        row.locator(f"[name=lines-{index}-unit_price]").fill(price)
        if discount:
            row.locator(f"[name=lines-{index}-discount_percent]").fill(discount)
    screenshot(page, "order-grid-three-lines")
    saved = submit(page, "/o/sales_order/new", "Save")
    assert saved.status == 302
    (created,) = set(ids_of(app, "sales_order")) - set(before)
    assert path_of(page) == f"/o/sales_order/{created}"

    line_table = app.extensions["trellis.registry"].get("order_line").table
    product_table = app.extensions["trellis.registry"].get("product").table
    with channel_site.database.session() as session:
        stored = session.execute(
            sa.select(
                product_table.c.sku,
                line_table.c.quantity,
                line_table.c.unit_price,
                line_table.c.discount_percent,
            )
            .join(product_table, product_table.c.id == line_table.c.product)
            .where(line_table.c.sales_order == created, line_table.c.deleted_at.is_(None))
            .order_by(line_table.c.id)
        ).all()
    assert [(sku, qty, float(price), float(off)) for sku, qty, price, off in stored] == [
        ("AUR-TV65-4K", 4, 4289.0, 0.0),
        ("AUR-RC4-IH", 30, 479.2, 5.0),
        ("AUR-AF5-CTN6", 12, 1723.2, 0.0),
    ]
    lines = page.locator("section.card").filter(has_text="Order lines")
    assert "(3)" in lines.locator("h2").inner_text()
    for _typed, title, *_ in wanted:
        assert title in lines.inner_text()
    screenshot(page, "order-detail-three-lines")


# --- 3. the language switch ----------------------------------------------------------------

ENGLISH_UI = [
    "Home",
    "Channel management",
    "Dealers",
    "Products",
    "Orders",
    "Order lines",
    "New Order",
    "Details",
    "Order number",
    "Dealer",
    "Order date",
    "Requested delivery date",
    "Currency",
    "Notes",
    "Product",
    "Quantity",
    "Unit price",
    "Save",
    "Cancel",
    "Add line",
    "Sign out",
    "Change password",
    "Type to search",
]
CHINESE_UI = [
    "首页",
    "渠道管理",
    "经销商",
    "产品",
    "订单明细",
    "新建订单",
    "订单编号",
    "下单日期",
    "要求交货日期",
    "币种",
    "备注",
    "数量",
    "单价",
    "保存",
    "取消",
    "添加一行",
    "退出",
    "修改密码",
]


def visible_text(page: Page) -> str:
    """Everything the page says: its text, placeholders, and the closed user menu."""
    text = page.locator("body").inner_text()
    hidden_menu = page.locator(".user-menu .dropdown").text_content() or ""
    placeholders = page.eval_on_selector_all(
        "[placeholder]", "boxes => boxes.map(box => box.placeholder)"
    )
    return "\n".join([text, hidden_menu, *placeholders])


def switch_language(page: Page, to: str) -> None:
    page.locator("summary.who").click()
    submit(page, "/language", to)


def test_the_language_switch_changes_every_label_and_is_remembered(
    new_page: NewPage, channel_site: Site
) -> None:
    base = channel_site.url

    def language() -> str | None:
        with channel_site.database.session() as session:
            return session.scalar(sa.select(User.language).where(User.email == CHANNEL))

    page = new_page()
    sign_in(page, base, CHANNEL, PASSWORD)  # a Chinese-speaking user ...
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    switch_language(page, "English")  # ... switches to English
    assert page.locator("html").get_attribute("lang") == "en" and language() == "en"
    page.goto(base + "/o/sales_order/new")
    english = visible_text(page).casefold()  # casefolded: headings may be set in capitals
    for label in ENGLISH_UI:
        assert label.casefold() in english, label
    screenshot(page, "order-form-en")

    switch_language(page, "中文")
    assert path_of(page) == "/o/sales_order/new"  # back where the switch was made
    assert page.locator("html").get_attribute("lang") == "zh-CN" and language() == "zh-CN"
    chinese = visible_text(page)
    for label in CHINESE_UI:
        assert label in chinese, label
    left = [label for label in ENGLISH_UI if re.search(rf"\b{re.escape(label)}\b", chinese, re.I)]
    assert left == []
    # No English word at all, but the brand, the user's own name and e-mail, and the switch
    # back, which names its language in that language.
    allowed = {"Trellis", "English", "Channel", "Manager", *re.findall(r"[A-Za-z]+", CHANNEL)}
    words = set(re.findall(r"[A-Za-z]{2,}", chinese)) - allowed
    assert words == set(), words
    screenshot(page, "order-form-zh")

    sign_out(page)
    page.wait_for_url(base + "/login")
    sign_in(page, base, CHANNEL, PASSWORD)
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.locator("main h1").inner_text().startswith("欢迎")
    nav = page.locator("aside.side").inner_text()
    assert "首页" in nav and "渠道管理" in nav and "Home" not in nav


# --- 4. a dealer on a phone ----------------------------------------------------------------


def no_sideways_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], (path_of(page), width)


def network_order_numbers(site: Site, partner: int) -> set[str]:
    """The numbers of the orders of ``partner`` and every dealer below it, from the tables."""
    registry = site.app.extensions["trellis.registry"]
    dealers, orders = registry.get("dealer").table, registry.get("sales_order").table
    with site.database.session() as session:
        network = set(
            session.scalars(
                sa.select(dealers.c.id).where(
                    sa.or_(dealers.c.id == partner, dealers.c.parent == partner),
                    dealers.c.deleted_at.is_(None),
                )
            )
        )
        return set(
            session.scalars(
                sa.select(orders.c.number).where(
                    orders.c.dealer.in_(network), orders.c.deleted_at.is_(None)
                )
            )
        )


def test_a_dealer_on_a_phone_sees_their_network_only(new_page: NewPage, channel_site: Site) -> None:
    base, app = channel_site.url, channel_site.app
    east = dealer_id(app, "D-0101")
    page = new_page(viewport=PHONE)
    sign_in(page, base, EAST_ADMIN, PASSWORD)
    assert path_of(page) == "/"
    account = page.locator("section.account")
    assert "我的账户" in account.inner_text() and "华东星辰电器有限公司" in account.inner_text()
    subs = page.locator("section.card").filter(has_text="我的下级伙伴")
    dealers = app.extensions["trellis.registry"].get("dealer").table
    with channel_site.database.session() as session:
        names = set(session.scalars(sa.select(dealers.c.name).where(dealers.c.parent == east)))
    assert len(names) == 4  # three sub-dealers and an applicant under review
    shown = set(subs.locator("table.records tbody tr td:first-child a").all_inner_texts())
    assert {name.strip() for name in shown} == names
    assert page.locator("aside.side").is_hidden()  # the navigation folds into the ☰ menu
    no_sideways_scroll(page)
    screenshot(page, "phone-home")

    page.goto(base + "/o/sales_order")
    table = page.locator("table.records")
    assert table.locator("thead").is_hidden()  # cards, not columns
    first = table.locator("tbody tr").first
    assert first.evaluate("row => getComputedStyle(row).display") == "block"
    listed = set(ORDER_NUMBER.findall(table.inner_text()))
    mine = network_order_numbers(channel_site, east)
    assert listed == mine and len(mine) >= 5
    everyone = set(ORDER_NUMBER.findall(" ".join(str(n) for n in _all_numbers(channel_site))))
    assert mine < everyone  # there are other networks' orders, and none is listed
    no_sideways_scroll(page)
    screenshot(page, "phone-orders")

    first.locator("a").first.click()
    page.wait_for_url(re.compile(r".*/o/sales_order/\d+$"))
    no_sideways_scroll(page)
    page.get_by_role("link", name="编辑").click()
    page.wait_for_url(re.compile(r".*/o/sales_order/\d+/edit$"))
    status = page.locator("output#field-status")  # read-only for a dealer: its label shows
    assert re.fullmatch(r"[\u4e00-\u9fff]+", status.inner_text()), status.inner_text()
    no_sideways_scroll(page)
    screenshot(page, "phone-order-edit")

    north = dealer_id(app, "D-0102")
    (theirs, *_) = ids_of(app, "sales_order", dealer=north)
    answer = page.goto(f"{base}/o/sales_order/{theirs}")
    assert answer is not None and answer.status == 404
    assert page.locator("main h1").inner_text() == "页面不存在"
    assert page.locator("summary.who").is_visible()  # the app's page, still signed in
    assert row_of(channel_site, "sales_order", theirs)["number"] not in page.content()
    no_sideways_scroll(page)
    screenshot(page, "phone-not-found")


def _all_numbers(site: Site) -> list[str]:
    orders = site.app.extensions["trellis.registry"].get("sales_order").table
    with site.database.session() as session:
        return list(session.scalars(sa.select(orders.c.number)))


# --- 5. two people edit the same order -----------------------------------------------------


def test_a_concurrent_edit_gets_the_conflict_page_then_saves_after_reload(
    new_page: NewPage, channel_site: Site
) -> None:
    base, app = channel_site.url, channel_site.app
    (order, *_) = ids_of(app, "sales_order", dealer=dealer_id(app, "D-0102"))
    start = row_of(channel_site, "sales_order", order)
    edit = f"{base}/o/sales_order/{order}/edit"
    first, second = new_page(), new_page()
    sign_in(first, base, NORTH_ADMIN, PASSWORD)
    sign_in(second, base, HQ, PASSWORD)
    for page in (first, second):
        page.goto(edit)
        assert page.locator("input[name=version]").input_value() == str(start["version"])

    control(first, "备注").fill("First: deliver to the Tianjin warehouse")
    assert submit(first, f"/o/sales_order/{order}/edit", "保存").status == 302
    assert flash_text(first) == "已保存。"
    assert row_of(channel_site, "sales_order", order)["version"] == start["version"] + 1

    mine = "Second: deliver to Beijing"
    control(second, "备注").fill(mine)
    control(second, "要求交货日期").fill("2026-12-24")
    refused = submit(second, f"/o/sales_order/{order}/edit", "保存")
    assert refused.status == 409
    conflict = second.locator("section.stale")
    assert conflict.is_visible()
    changes = [
        tuple(cell.strip() for cell in row.locator("td").all_inner_texts())
        for row in conflict.locator("table.diff tbody tr").all()
    ]
    assert ("备注", "First: deliver to the Tianjin warehouse", mine) in changes
    assert ("要求交货日期", str(start["requested_delivery_date"] or "—"), "2026-12-24") in changes
    assert control(second, "备注").input_value() == mine  # what they typed is still there
    stored = row_of(channel_site, "sales_order", order)
    assert stored["notes"] == "First: deliver to the Tianjin warehouse"  # nothing overwritten
    assert stored["version"] == start["version"] + 1
    screenshot(second, "conflict")

    conflict.get_by_role("link", name="重新加载已保存的记录").click()
    second.wait_for_url(edit)
    assert control(second, "备注").input_value() == "First: deliver to the Tianjin warehouse"
    assert second.locator("input[name=version]").input_value() == str(start["version"] + 1)
    control(second, "备注").fill(mine)
    assert submit(second, f"/o/sales_order/{order}/edit", "保存").status == 302
    assert path_of(second) == f"/o/sales_order/{order}"
    stored = row_of(channel_site, "sales_order", order)
    assert (stored["notes"], stored["version"]) == (mine, start["version"] + 2)


# --- 6. a saved view, picked from the view picker ----------------------------------------


def test_a_saved_view_is_picked_from_the_view_picker(new_page: NewPage, channel_site: Site) -> None:
    base = channel_site.url
    page = new_page()
    sign_in(page, base, SALES, PASSWORD)
    page.goto(base + "/o/sales_order?f.status=draft")
    page.locator("details.view-form summary", has_text="Save view").click()
    page.locator("input[name=label]").first.fill("Drafts in the browser")
    assert submit(page, "/o/sales_order/views", "Save").status == 302
    page.goto(base + "/o/sales_order")
    page.locator("details.view-menu summary").click()
    choice = page.locator(".view-choices a", has_text="Drafts in the browser")
    choice.wait_for()  # the picker's choices arrive when it opens
    assert page.locator(".view-choices h3").first.text_content() == "My views"
    choice.click()
    page.wait_for_url(re.compile(r".*/o/sales_order\?view=\d+$"))
    assert page.locator("details.view-menu summary strong").inner_text() == "Drafts in the browser"
    statuses = {t.strip() for t in page.locator("td[data-label=Status]").all_inner_texts()}
    assert statuses == {"Draft"}, statuses
