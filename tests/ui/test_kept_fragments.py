"""Fragments rendered once and reused (the navigation, an empty filter panel) follow the
rights, the language and the metadata of whoever asks, not of whoever asked first."""

from __future__ import annotations

import re

from flask import Flask

from tests.ui.conftest import SignIn
from trellis.extensions import database_of

ADMIN = "admin@example.com"
SALES = "east.sales@example.com"  # dealer_sales: dealers' credit limits are hidden


def nav_of(page: str) -> str:
    return page[page.index('<aside class="side">') :].split("</nav>")[0]


def filters_of(page: str) -> str:
    return page[page.index('class="filter-grid"') :].split('<p class="filter-actions">')[0]


def test_the_navigation_follows_rights_language_and_metadata(
    sign_in: SignIn, pack_app: Flask
) -> None:
    admin, sales = sign_in(ADMIN, language="en"), sign_in(SALES, language="en")
    admin_nav = nav_of(admin.get("/o/sales_order").get_data(as_text=True))
    sales_nav = nav_of(sales.get("/o/sales_order").get_data(as_text=True))
    assert "Setup" in admin_nav and "Setup" not in sales_nav
    assert 'href="/setup/objects"' in admin_nav and "/setup/" not in sales_nav
    # The current page's entry is marked, and only that one.
    assert re.search(r'data-nav="sales_order" class="active" aria-current="page"', sales_nav)
    dealer_nav = nav_of(sales.get("/o/dealer").get_data(as_text=True))
    assert dealer_nav.count('aria-current="page"') == 1
    assert 'data-nav="dealer" class="active"' in dealer_nav
    zh_nav = nav_of(sign_in(SALES, language="zh-CN").get("/").get_data(as_text=True))
    assert "首页" in zh_nav and ">Home<" not in zh_nav
    # A new object is in the navigation at once (the metadata revision moved).
    registry = pack_app.extensions["trellis.registry"]
    from trellis.platform.runtime.objects import ObjectService

    with database_of(pack_app).session() as session:
        registry.ensure_current(session)
        ObjectService(session, registry, author_id=None).create(
            {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "x-name": "visit",
                "x-label": {"en": "Visit", "zh-CN": "拜访"},
                "type": "object",
                "properties": {"title": {"x-type": "text", "type": "string", "maxLength": 80}},
            }
        )
        session.commit()
    assert 'data-nav="visit"' in nav_of(admin.get("/").get_data(as_text=True))
    assert 'data-nav="visit"' not in nav_of(sales.get("/").get_data(as_text=True))


def test_an_empty_filter_panel_follows_field_rights(sign_in: SignIn, pack_app: Flask) -> None:
    admin, sales = sign_in(ADMIN, language="en"), sign_in(SALES, language="en")
    assert 'name="f.credit_limit.min"' in filters_of(admin.get("/o/dealer").get_data(as_text=True))
    for _ in range(2):  # the kept panel is the one for this user's fields
        page = sales.get("/o/dealer").get_data(as_text=True)
        assert 'name="f.credit_limit.min"' not in filters_of(page)
    # With a filter, the panel shows what was asked for.
    page = admin.get("/o/dealer?f.credit_limit.min=1000").get_data(as_text=True)
    assert 'name="f.credit_limit.min" value="1000"' in filters_of(page)
    page = admin.get("/o/dealer").get_data(as_text=True)
    assert 'name="f.credit_limit.min" value=""' in filters_of(page)


def test_background_requests_leave_the_session_cookie_alone(sign_in: SignIn) -> None:
    """A preview answered after a save must not put back the session from before it."""
    client = sign_in(ADMIN, language="en")
    page = client.get("/o/sales_order")
    assert "Set-Cookie" in page.headers  # pages refresh the session's expiry
    for path in ("/o/sales_order/views-menu", "/lookup/dealer?q=a"):
        answer = client.get(path)
        assert answer.status_code == 200, path
        assert "Set-Cookie" not in answer.headers, path
