"""The generated list, form and detail pages, as a browser's requests would drive them."""

from __future__ import annotations

import re

import sqlalchemy as sa
from flask import Flask
from markupsafe import escape

from tests.ui.conftest import SignIn, csrf_of, dealer_id, ids_of
from trellis.extensions import database_of

ADMIN = "admin@example.com"
EAST = "east.admin@example.com"  # dealer_admin of the East regional dealer (D-0101)
NORTH = "north.admin@example.com"


def order_numbers(html: str) -> list[str]:
    return re.findall(r">\s*(SO-\d{4}-\d{5})\s*<", html)


# --- the shell ---------------------------------------------------------------------------


def test_navigation_is_grouped_by_pack_and_follows_read_rights(sign_in: SignIn) -> None:
    page = sign_in(ADMIN).get("/").get_data(as_text=True)
    nav = page[page.index('<aside class="side">') : page.index("</aside>")]
    assert "Channel management" in nav
    for label in ("Dealers", "Products", "Orders", "Order lines"):
        assert f">{label}</a>" in nav
    # A dealer's navigation: in their language (zh-CN), only what their roles may read.
    page = sign_in(EAST).get("/").get_data(as_text=True)
    nav = page[page.index('<aside class="side">') : page.index("</aside>")]
    assert "渠道管理" in nav and ">订单</a>" in nav and "Orders" not in nav
    assert 'lang="zh-CN"' in page


def test_language_switch_is_remembered_per_user(sign_in: SignIn, pack_app: Flask) -> None:
    client = sign_in(ADMIN, language="en")
    page = client.get("/o/sales_order").get_data(as_text=True)
    assert ">Orders<" in page and "订单" not in page
    switched = client.post(
        "/language",
        data={"csrf_token": csrf_of(page), "language": "zh-CN", "next": "/o/sales_order"},
    )
    assert switched.status_code == 302 and switched.headers["Location"] == "/o/sales_order"
    page = client.get("/o/sales_order").get_data(as_text=True)
    assert "订单" in page and "新建" in page and ">Orders<" not in page and "New<" not in page
    # Remembered on the user: a new browser session of the same user is in Chinese too.
    assert "新建" in sign_in(ADMIN).get("/o/sales_order").get_data(as_text=True)
    from trellis.platform.runtime.models import User

    with database_of(pack_app).session() as session:
        assert session.scalar(sa.select(User.language).where(User.email == ADMIN)) == "zh-CN"
    bad = client.post("/language", data={"csrf_token": csrf_of(page), "language": "fr"})
    assert bad.status_code == 302  # refused with a message; nothing changed
    with database_of(pack_app).session() as session:
        assert session.scalar(sa.select(User.language).where(User.email == ADMIN)) == "zh-CN"


def test_signed_out_pages_go_to_sign_in(pack_app: Flask) -> None:
    client = pack_app.test_client()
    for path in ("/o/sales_order", "/o/sales_order/1", "/o/sales_order/new", "/search?q=x"):
        answer = client.get(path)
        assert answer.status_code == 302 and "/login?next=" in answer.headers["Location"]
    partial = client.get("/lookup/dealer?q=a", headers={"HX-Request": "true"})
    assert partial.status_code == 401 and "/login" in partial.headers["HX-Redirect"]


def test_global_search_is_filtered_by_permission(sign_in: SignIn, pack_app: Flask) -> None:
    admin = sign_in(ADMIN, language="en").get("/search?q=SO-2026").get_data(as_text=True)
    assert len(re.findall(r"/o/sales_order/\d+", admin)) == 5  # five per object
    # "有限公司" is in the names of dealers of every network: a dealer finds only theirs.
    east = sign_in(EAST).get("/search?q=有限公司").get_data(as_text=True)
    found = {int(i) for i in re.findall(r"/o/dealer/(\d+)", east)}
    network = set(_network(pack_app, "D-0101"))
    assert found and found <= network


def _network(app: Flask, code: str) -> list[int]:
    root = dealer_id(app, code)
    with database_of(app).session() as session:
        rows = session.execute(
            sa.text(
                "SELECT descendant_id FROM hierarchy_links "
                "WHERE object_name = 'dealer' AND ancestor_id = :root"
            ),
            {"root": root},
        )
        return [row[0] for row in rows]


# --- lists -----------------------------------------------------------------------------


def test_list_shows_names_filters_sorts_and_pages(sign_in: SignIn, pack_app: Flask) -> None:
    client = sign_in(ADMIN, language="en")
    page = client.get("/o/sales_order").get_data(as_text=True)
    assert "华东星辰电器有限公司" in page  # the dealer's name, not its id
    numbers = order_numbers(page)
    assert len(numbers) == 18 and numbers == sorted(numbers, reverse=True)  # newest first
    # Sorting by a column header's link.
    assert "sort=total_amount" in page
    by_total = client.get("/o/sales_order?sort=-total_amount").get_data(as_text=True)
    assert order_numbers(by_total)[0] == "SO-2026-00001"  # the 2,047,055.40 one
    # Picklist chips and a number range, combined.
    drafts = client.get("/o/sales_order?f.status=draft").get_data(as_text=True)
    assert len(order_numbers(drafts)) == len(ids_of(pack_app, "sales_order", status="draft"))
    big = client.get("/o/sales_order?f.total_amount.min=200000").get_data(as_text=True)
    assert 0 < len(order_numbers(big)) < 16
    # Keyset pages: 5 a page, every order once.
    seen: list[str] = []
    path = "/o/sales_order?limit=5"
    while path:
        html = client.get(path).get_data(as_text=True)
        seen.extend(order_numbers(html))
        match = re.search(r'<a rel="next" href="([^"]+)"', html)
        path = match.group(1).replace("&amp;", "&") if match else ""
    assert seen == numbers
    # Quick search.
    quick = client.get(f"/o/sales_order?q={numbers[3]}").get_data(as_text=True)
    assert order_numbers(quick) == [numbers[3]]


def test_a_malformed_filter_is_a_clear_error(sign_in: SignIn) -> None:
    answer = sign_in(ADMIN, language="en").get("/o/sales_order?f.total_amount.min=lots")
    assert answer.status_code == 400
    html = answer.get_data(as_text=True)
    assert "filter" in html and "lots" in html and order_numbers(html) == []


def test_empty_states_say_what_to_do(sign_in: SignIn) -> None:
    client = sign_in(ADMIN, language="en")
    none = client.get("/o/sales_order?q=no-such-order").get_data(as_text=True)
    assert "No record matches these filters." in none and "Clear the filters" in none
    empty_bin = client.get("/o/sales_order?bin=1").get_data(as_text=True)
    assert "The recycle bin is empty." in empty_bin


def test_a_dealer_lists_and_exports_only_their_network(sign_in: SignIn, pack_app: Flask) -> None:
    network = set(_network(pack_app, "D-0101"))
    visible = {i for d in network for i in ids_of(pack_app, "sales_order", dealer=d)}
    client = sign_in(EAST)
    html = client.get("/o/sales_order?limit=100").get_data(as_text=True)
    shown = {int(i) for i in re.findall(r'href="/o/sales_order/(\d+)"', html)}
    assert shown == visible and len(shown) < 16
    csv_text = client.get("/o/sales_order/export").get_data(as_text=True)
    rows = csv_text.strip().splitlines()[1:]
    assert {int(r.split(",")[0]) for r in rows} == visible
    assert "internal_notes" not in csv_text.splitlines()[0]  # a hidden field is not exported
    # No bulk delete: the role may not delete orders.
    assert "bulk-form" not in html
    other = (set(ids_of(pack_app, "sales_order")) - visible).pop()
    answer = client.get(f"/o/sales_order/{other}")
    assert answer.status_code == 404 and "<!doctype html>" in answer.get_data(as_text=True)
    assert client.get(f"/o/sales_order/{other}/edit").status_code == 404


# --- forms -----------------------------------------------------------------------------


def test_create_shows_errors_next_to_fields_then_saves(sign_in: SignIn, pack_app: Flask) -> None:
    client = sign_in(ADMIN, language="en")
    form = client.get("/o/dealer/new").get_data(as_text=True)
    assert 'name="name"' in form and 'name="credit_limit"' in form
    before = len(ids_of(pack_app, "dealer"))
    data = {
        "csrf_token": csrf_of(form),
        "name": "",
        "code": "D-9001",
        "level": "sub_distributor",
        "credit_limit": "1,234,567.50",
        "active": "true",
    }
    refused = client.post("/o/dealer/new", data=data)
    assert refused.status_code == 422
    html = refused.get_data(as_text=True)
    assert re.search(r'field invalid[^"]*">\s*<label[^>]*>Name', html), "the error is at Name"
    assert "is required" in html
    assert 'value="D-9001"' in html  # what the user typed is kept
    assert len(ids_of(pack_app, "dealer")) == before
    parent = dealer_id(pack_app, "D-0101")
    saved = client.post(
        "/o/dealer/new", data={**data, "name": "Test Dealer 测试", "parent": str(parent)}
    )
    assert saved.status_code == 302
    new_id = int(saved.headers["Location"].rsplit("/", 1)[1])
    detail = client.get(saved.headers["Location"]).get_data(as_text=True)
    assert "Test Dealer 测试" in detail and "1,234,567.50" in detail
    assert "华东星辰电器有限公司" in detail  # the parent by name
    assert new_id in ids_of(pack_app, "dealer", code="D-9001")


def test_a_refused_record_is_told_in_chinese(sign_in: SignIn, pack_app: Flask) -> None:
    """jsonschema's and the pipeline's problems read in the user's language on the form."""
    client = sign_in(ADMIN, language="zh-CN")
    form = client.get("/o/dealer/new").get_data(as_text=True)
    before = len(ids_of(pack_app, "dealer"))
    data = {
        "csrf_token": csrf_of(form),
        "name": "名" * 300,
        "code": "D-0101",  # taken
        "level": "sub_distributor",
        "credit_limit": "-5",
        "active": "true",
    }
    refused = client.post("/o/dealer/new", data=data)
    assert refused.status_code == 422
    html = refused.get_data(as_text=True)
    assert "最多" in html and "个字符" in html  # the name's maxLength
    assert "must be at most" not in html and "is too long" not in html
    assert len(ids_of(pack_app, "dealer")) == before


def test_an_order_with_three_lines_is_saved_in_one_transaction(
    sign_in: SignIn, pack_app: Flask
) -> None:
    client = sign_in(ADMIN, language="en")
    form = client.get("/o/sales_order/new").get_data(as_text=True)
    assert 'data-add-line="grid-lines"' in form and "<template>" in form
    products = ids_of(pack_app, "product")[:3]
    data = {
        "csrf_token": csrf_of(form),
        "dealer": str(dealer_id(pack_app, "D-0101")),
        "status": "draft",
        "order_date": "2026-12-01",
        "currency": "CNY",
    }
    for index, product in enumerate(products):
        data |= {
            f"lines-{index}-product": str(product),
            f"lines-{index}-quantity": str(index + 1),
            f"lines-{index}-unit_price": "1,000.00",
        }
    orders, lines = len(ids_of(pack_app, "sales_order")), len(ids_of(pack_app, "order_line"))
    bad = {**data, "lines-2-quantity": "-5"}
    refused = client.post("/o/sales_order/new", data=bad)
    assert refused.status_code == 422
    assert "lines-2-quantity" in refused.get_data(as_text=True)
    assert len(ids_of(pack_app, "sales_order")) == orders  # nothing half-saved
    assert len(ids_of(pack_app, "order_line")) == lines
    saved = client.post("/o/sales_order/new", data=data)
    assert saved.status_code == 302, saved.get_data(as_text=True)[:2000]
    order_id = int(saved.headers["Location"].rsplit("/", 1)[1])
    assert len(ids_of(pack_app, "order_line", sales_order=order_id)) == 3
    # Edit: change one line, remove one, add one — all in one save.
    edit = client.get(f"/o/sales_order/{order_id}/edit").get_data(as_text=True)
    line_ids = ids_of(pack_app, "order_line", sales_order=order_id)
    version = re.search(r'name="version" value="(\d+)"', edit)
    assert version
    changes = {
        "csrf_token": csrf_of(edit),
        "version": version.group(1),
        "status": "draft",
        "dealer": data["dealer"],
        "order_date": "2026-12-01",
        "currency": "CNY",
    }
    for index, line_id in enumerate(line_ids):
        line_version = re.search(rf'name="lines-{index}-version" value="(\d+)"', edit)
        assert line_version
        changes |= {
            f"lines-{index}-id": str(line_id),
            f"lines-{index}-version": line_version.group(1),
            f"lines-{index}-product": str(products[index]),
            f"lines-{index}-quantity": "7" if index == 0 else str(index + 1),
            f"lines-{index}-unit_price": "1000",
            f"lines-{index}-removed": "1" if index == 1 else "0",
        }
    changes |= {
        "lines-3-product": str(products[0]),
        "lines-3-quantity": "9",
        "lines-3-unit_price": "10",
    }
    assert client.post(f"/o/sales_order/{order_id}/edit", data=changes).status_code == 302
    remaining = ids_of(pack_app, "order_line", sales_order=order_id)
    assert line_ids[1] not in remaining and len(remaining) == 3


def test_a_new_line_starts_from_the_defaults_and_an_untouched_one_is_not_saved(
    sign_in: SignIn, pack_app: Flask
) -> None:
    client = sign_in(ADMIN, language="en")
    form = client.get("/o/sales_order/new").get_data(as_text=True)
    template = form[form.index("<template>") : form.index("</template>")]
    assert 'name="lines-__index__-discount_percent" value="0"' in template
    data = {
        "csrf_token": csrf_of(form),
        "dealer": str(dealer_id(pack_app, "D-0101")),
        "status": "draft",
        "order_date": "2026-12-01",
        "currency": "CNY",
        "lines-0-product": str(ids_of(pack_app, "product")[0]),
        "lines-0-quantity": "2",
        "lines-0-unit_price": "10",
        "lines-0-discount_percent": "0",
        "lines-1-product": "",  # added, then left as it came
        "lines-1-quantity": "",
        "lines-1-unit_price": "",
        "lines-1-discount_percent": "0",
        "lines-1-notes": "",
    }
    saved = client.post("/o/sales_order/new", data=data)
    assert saved.status_code == 302, saved.get_data(as_text=True)[:2000]
    order_id = int(saved.headers["Location"].rsplit("/", 1)[1])
    (line,) = ids_of(pack_app, "order_line", sales_order=order_id)
    table = pack_app.extensions["trellis.registry"].get("order_line").table
    with database_of(pack_app).session() as session:
        discount = session.scalar(sa.select(table.c.discount_percent).where(table.c.id == line))
    assert discount == 0


def test_a_stale_edit_is_a_409_that_shows_what_changed(sign_in: SignIn, pack_app: Flask) -> None:
    first, second = sign_in(ADMIN, language="en"), sign_in("hq@example.com", language="en")
    order_id = ids_of(pack_app, "sales_order", status="draft")[0]
    mine, theirs = (
        c.get(f"/o/sales_order/{order_id}/edit").get_data(as_text=True) for c in (first, second)
    )

    def fields(html: str, notes: str) -> dict[str, str]:
        version = re.search(r'name="version" value="(\d+)"', html)
        assert version
        dealer = re.search(r'name="dealer" value="(\d+)"', html)
        assert dealer
        return {
            "csrf_token": csrf_of(html),
            "version": version.group(1),
            "notes": notes,
            "status": "draft",
            "dealer": dealer.group(1),
            "order_date": "2026-11-12",
            "currency": "CNY",
        }

    assert (
        second.post(f"/o/sales_order/{order_id}/edit", data=fields(theirs, "theirs")).status_code
        == 302
    )
    stale = first.post(f"/o/sales_order/{order_id}/edit", data=fields(mine, "mine"))
    assert stale.status_code == 409
    html = stale.get_data(as_text=True)
    assert "Someone else saved this record" in html and "theirs" in html and "mine" in html
    assert "Reload the saved record" in html


def test_hidden_and_read_only_fields_follow_field_rights(sign_in: SignIn, pack_app: Flask) -> None:
    order_id = ids_of(pack_app, "sales_order", dealer=dealer_id(pack_app, "D-0101"))[0]
    client = sign_in(EAST, language="en")
    form = client.get(f"/o/sales_order/{order_id}/edit").get_data(as_text=True)
    assert "internal_notes" not in form
    assert 'name="status"' not in form  # read-only for dealers: shown, not an input
    shown = re.search(r'<output class="readonly" id="field-status">([^<]*)</output>', form)
    assert shown and shown.group(1) in {"Draft", "Submitted", "Approved", "Shipped", "Paid"}
    assert '<label for="field-order_date"' in form and 'id="field-order_date"' in form
    detail = client.get(f"/o/sales_order/{order_id}").get_data(as_text=True)
    assert "Internal notes" not in detail


def test_a_lookup_the_user_cannot_read_shows_neither_id_nor_name(
    sign_in: SignIn, pack_app: Flask
) -> None:
    """East's parent (the national distributor) is outside East's network."""
    east, national = dealer_id(pack_app, "D-0101"), dealer_id(pack_app, "D-0001")
    page = sign_in(EAST, language="en").get(f"/o/dealer/{east}").get_data(as_text=True)
    assert "华东星辰电器有限公司" in page  # East's own record is shown
    assert "(not visible to you)" in page
    assert not re.search(rf"#{national}\b", page) and f'/o/dealer/{national}"' not in page
    assert "上海恒通电器销售有限公司" not in page
    zh = sign_in(EAST, language="zh-CN").get(f"/o/dealer/{east}").get_data(as_text=True)
    assert "（无权查看）" in zh and "上海恒通电器销售有限公司" not in zh


# --- detail, delete, restore ------------------------------------------------------------


def test_detail_shows_lines_related_records_and_history(sign_in: SignIn, pack_app: Flask) -> None:
    client = sign_in(ADMIN, language="en")
    east = dealer_id(pack_app, "D-0101")
    page = client.get(f"/o/dealer/{east}").get_data(as_text=True)
    assert "Orders (Dealer)" in page  # the orders that look this dealer up
    assert "Dealers (Parent dealer)" in page or "Parent" in page
    # An order in an early state: later ones lock more of its fields (the workflow).
    order_id = next(
        found
        for status in ("draft", "submitted", "approved", "confirmed", "shipped")
        for found in ids_of(pack_app, "sales_order", dealer=east, status=status)
    )
    html = client.get(f"/o/sales_order/{order_id}").get_data(as_text=True)
    assert "Order lines" in html and "History" in html
    form = client.get(f"/o/sales_order/{order_id}/edit").get_data(as_text=True)
    version = re.search(r'name="version" value="(\d+)"', form)
    dealer = re.search(r'name="dealer" value="(\d+)"', form)
    ordered = re.search(r'name="order_date"[^>]* value="([0-9-]+)"', form)
    assert version and dealer and ordered
    client.post(
        f"/o/sales_order/{order_id}/edit",
        data={
            "csrf_token": csrf_of(form),
            "version": version.group(1),
            "notes": "call first",
            "dealer": dealer.group(1),
            "order_date": ordered.group(1),
            "currency": "CNY",
        },
    )
    html = client.get(f"/o/sales_order/{order_id}").get_data(as_text=True)
    assert "<ins>call first</ins>" in html and "<strong>admin</strong>" in html


def test_delete_then_restore_from_the_recycle_bin(sign_in: SignIn, pack_app: Flask) -> None:
    client = sign_in(ADMIN, language="en")
    form = client.get("/o/product/new").get_data(as_text=True)
    created = client.post(
        "/o/product/new",
        data={
            "csrf_token": csrf_of(form),
            "name": "Bin test",
            "sku": "BIN-1",
            "category": "tv",
            "unit": "pcs",
            "list_price": "10",
            "active": "true",
        },
    )
    assert created.status_code == 302, created.get_data(as_text=True)[:3000]
    product = int(created.headers["Location"].rsplit("/", 1)[1])
    detail = client.get(f"/o/product/{product}").get_data(as_text=True)
    version = re.search(r'name="version" value="(\d+)"', detail)
    assert version
    deleted = client.post(
        f"/o/product/{product}/delete",
        data={"csrf_token": csrf_of(detail), "version": version.group(1)},
    )
    assert deleted.status_code == 302 and product not in ids_of(pack_app, "product")
    recycle = client.get("/o/product?bin=1").get_data(as_text=True)
    assert f"/o/product/{product}?deleted=1" in recycle
    page = client.get(f"/o/product/{product}?deleted=1").get_data(as_text=True)
    assert "Restore" in page
    restored = client.post(f"/o/product/{product}/restore", data={"csrf_token": csrf_of(page)})
    assert restored.status_code == 302 and product in ids_of(pack_app, "product")


def test_a_referenced_record_cannot_be_deleted(sign_in: SignIn, pack_app: Flask) -> None:
    client = sign_in(ADMIN, language="en")
    product = ids_of(pack_app, "product")[0]  # on order lines
    detail = client.get(f"/o/product/{product}").get_data(as_text=True)
    answer = client.post(f"/o/product/{product}/delete", data={"csrf_token": csrf_of(detail)})
    assert answer.status_code == 409 and "still referred to" in answer.get_data(as_text=True)
    assert product in ids_of(pack_app, "product")


def test_forms_need_their_csrf_token(sign_in: SignIn, pack_app: Flask) -> None:
    client = sign_in(ADMIN, language="en")
    product = ids_of(pack_app, "product")[0]
    answer = client.post(f"/o/product/{product}/delete", data={})
    assert answer.status_code == 400 and product in ids_of(pack_app, "product")


def test_lookup_typeahead_offers_only_what_the_user_may_see(
    sign_in: SignIn, pack_app: Flask
) -> None:
    html = (
        sign_in(NORTH)
        .get("/lookup/dealer?q=", headers={"HX-Request": "true"})
        .get_data(as_text=True)
    )
    offered = {int(i) for i in re.findall(r'data-pick-id="(\d+)"', html)}
    assert offered and offered <= set(_network(pack_app, "D-0102"))


def test_a_record_titled_by_a_lookup_is_named_by_its_target(
    sign_in: SignIn, pack_app: Flask
) -> None:
    """An order line's title field is its product: pages name it by the product, not its id."""
    line_id = ids_of(pack_app, "order_line")[0]
    with database_of(pack_app).session() as session:
        meta = pack_app.extensions["trellis.registry"]
        lines, products = meta.get("order_line").table, meta.get("product").table
        name = session.execute(
            sa.select(products.c.name)
            .join(lines, lines.c.product == products.c.id)
            .where(lines.c.id == line_id)
        ).scalar_one()
    client = sign_in(ADMIN, language="en")
    detail = client.get(f"/o/order_line/{line_id}").get_data(as_text=True)
    assert f"<title>{escape(name)} ·" in detail
    offered = client.get("/lookup/order_line?q=", headers={"HX-Request": "true"})
    assert str(escape(name)) in offered.get_data(as_text=True)


def test_a_dealers_landing_page_shows_their_account_network_and_orders(
    sign_in: SignIn, pack_app: Flask
) -> None:
    network = set(_network(pack_app, "D-0101"))
    html = sign_in(EAST, language="en").get("/").get_data(as_text=True)
    account = html.split('class="card account"', 1)[1].split("</section>", 1)[0]
    assert "Credit limit" in account and "5,000,000.00" in account and "Contact" in account
    # No ids: the parent dealer it may not read is left out.
    assert "#" not in re.sub(r"&#\d+;", "", account)
    sub_partners = html.split("My sub-partners", 1)[1].split("</section>", 1)[0]
    shown = {int(i) for i in re.findall(r'href="/o/dealer/(\d+)"', sub_partners)}
    assert shown and shown <= network - {dealer_id(pack_app, "D-0101")}
    panels = re.findall(r'<h2><a href="/o/(\w+)">', html)
    assert panels[0] == "sales_order"  # their network's records first
    assert "order_line" not in panels and "dealer" not in panels  # lines live in their orders


def test_rules_and_conditions_hold_on_the_form_in_the_users_language(
    sign_in: SignIn, pack_app: Flask
) -> None:
    from tests.factories import definition, field
    from trellis.platform.runtime.objects import ObjectService

    registry = pack_app.extensions["trellis.registry"]
    doc = definition(
        "claim",
        {
            "title": field("text", "Title"),
            "amount": field("currency", "Amount"),
            "reason": field("text", "Reason", **{"x-required-if": "amount > 1000"}),
        },
        **{"x-title-field": "title",
           "x-rules": [{"name": "positive", "assert": "amount > 0", "field": "amount",
                        "message": {"en": "The amount must be above zero",
                                    "zh-CN": "金额必须大于零"}}]},
    )  # fmt: skip
    with database_of(pack_app).session() as session:
        registry.ensure_current(session)
        ObjectService(session, registry, None).create(doc)
        session.commit()
    client = sign_in(ADMIN, language="zh-CN")
    form = client.get("/o/claim/new").get_data(as_text=True)
    data = {"csrf_token": csrf_of(form), "title": "T", "amount": "-5"}
    refused = client.post("/o/claim/new", data=data)
    assert refused.status_code == 422
    html = refused.get_data(as_text=True)
    assert "金额必须大于零" in html and "The amount must be above zero" not in html
    refused = client.post("/o/claim/new", data={**data, "amount": "5,000"})
    assert refused.status_code == 422
    assert re.search(r'field invalid[^"]*">\s*<label[^>]*>Reason', refused.get_data(as_text=True))
    assert ids_of(pack_app, "claim") == []
    saved = client.post("/o/claim/new", data={**data, "amount": "5,000", "reason": "big"})
    assert saved.status_code == 302
