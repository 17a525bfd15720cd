"""Saved list views on the list page: saved from the page's current state, applied with
``?view=``, private to their owner or shared with a role, refused when invalid, renamed
and deleted — checked against the database and the served HTML."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests.ui.conftest import SignIn, csrf_of
from trellis.extensions import database_of
from trellis.platform.runtime.models import ListView

ADMIN = "admin@example.com"
EAST = "east.admin@example.com"  # dealer_admin
NORTH = "north.admin@example.com"  # dealer_admin too
SALES = "east.sales@example.com"  # dealer_sales: dealers' credit limits are hidden


def views_of(app: Flask) -> list[ListView]:
    with database_of(app).session() as session:
        return list(session.scalars(sa.select(ListView).order_by(ListView.id)))


def order_numbers(html: str) -> list[str]:
    return re.findall(r">\s*(SO-\d{4}-\d{5})\s*<", html)


def headings(html: str) -> list[str]:
    table = html[html.index("<thead>") : html.index("</thead>")]
    return [
        re.sub(r"<[^>]+>|[▲▼]", "", h).strip()
        for h in re.findall(r"<th scope=\"col\">(.*?)</th>", table, re.S)
    ]


def save_view(client: FlaskClient, path: str, label: str, **extra: Any) -> Any:
    """Open the list at ``path`` and submit its "Save view" form as the page fills it."""
    page = client.get(path).get_data(as_text=True)
    form = page[page.index('action="/o/sales_order/views"') :]
    form = form[: form.index("</form>")]
    data: dict[str, Any] = {}
    for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form):
        data.setdefault(name, []).append(value)
    data.update(label=label, **extra)
    return client.post("/o/sales_order/views", data=data)


def statuses(app: Flask, *wanted: str) -> set[str]:
    meta = app.extensions["trellis.registry"].get("sales_order")
    with database_of(app).session() as session:
        table = meta.table
        rows = session.execute(
            sa.select(table.c.number).where(
                table.c.deleted_at.is_(None), table.c.status.in_(wanted)
            )
        )
        return {row.number for row in rows}


def test_a_view_saved_from_the_page_applies_its_filters_sort_and_columns(
    sign_in: SignIn, pack_app: Flask
) -> None:
    client = sign_in(EAST, language="en")
    path = "/o/sales_order?q=&f.status=draft&f.status=submitted&sort=number&columns=number,status"
    answer = save_view(client, path, "Open orders")
    assert answer.status_code == 302, answer.get_data(as_text=True)[:500]
    (view,) = views_of(pack_app)
    assert answer.headers["Location"] == f"/o/sales_order?view={view.id}"
    assert view.label == "Open orders" and view.shared_with_role is None
    assert view.definition == {
        "columns": ["number", "status"],
        "filters": {"f.status": ["draft", "submitted"]},
        "sort": "number",
    }
    page = client.get(f"/o/sales_order?view={view.id}").get_data(as_text=True)
    shown = order_numbers(page)
    # The East network's open orders only, by number, in the view's two columns.
    network = set(order_numbers(client.get("/o/sales_order?limit=200").get_data(as_text=True)))
    expected = sorted(statuses(pack_app, "draft", "submitted") & network)
    assert shown == expected[:25] and shown
    assert headings(page) == ["Order number", "Status"]
    assert "<strong>Open orders</strong>" in page
    # Explicit parameters override the view's: these filters, its columns still.
    other = next(
        s for s in ("approved", "confirmed", "shipped", "paid") if statuses(pack_app, s) & network
    )
    page = client.get(f"/o/sales_order?view={view.id}&q=&f.status={other}").get_data(as_text=True)
    assert set(order_numbers(page)) == statuses(pack_app, other) & network
    assert headings(page) == ["Order number", "Status"]
    page = client.get(f"/o/sales_order?view={view.id}&columns=status").get_data(as_text=True)
    assert headings(page) == ["Status"] and order_numbers(page) == []
    # The export applies the view too.
    csv = client.get(f"/o/sales_order/export?view={view.id}").get_data(as_text=True)
    assert sorted(re.findall(r"SO-\d{4}-\d{5}", csv)) == expected


def test_a_private_view_is_seen_by_its_owner_only(sign_in: SignIn, pack_app: Flask) -> None:
    east = sign_in(EAST, language="en")
    assert save_view(east, "/o/sales_order?f.status=draft", "My drafts").status_code == 302
    (view,) = views_of(pack_app)
    assert "My drafts" in east.get("/o/sales_order/views-menu").get_data(as_text=True)
    north = sign_in(NORTH, language="en")
    assert "My drafts" not in north.get("/o/sales_order/views-menu").get_data(as_text=True)
    assert north.get(f"/o/sales_order?view={view.id}").status_code == 404
    # Nor can they change it: the page's forms answer 404 for a view they cannot see.
    token = csrf_of(north.get("/o/sales_order").get_data(as_text=True))
    answer = north.post(
        f"/o/sales_order/views/{view.id}/delete", data={"csrf_token": token, "version": "1"}
    )
    assert answer.status_code == 404
    assert [v.label for v in views_of(pack_app)] == ["My drafts"]


def test_a_view_shared_with_a_role_is_seen_by_its_holders_only(
    sign_in: SignIn, pack_app: Flask
) -> None:
    admin = sign_in(ADMIN, language="en")
    answer = save_view(
        admin,
        "/o/sales_order?f.status=paid",
        "Paid orders (shared)",
        shared_with_role="dealer_admin",
    )
    assert answer.status_code == 302, answer.get_data(as_text=True)[:500]
    (view,) = views_of(pack_app)
    assert view.shared_with_role == "dealer_admin"
    north = sign_in(NORTH, language="en")
    page = north.get("/o/sales_order/views-menu").get_data(as_text=True)
    assert (
        "Shared views" in page and "Paid orders (shared)" in page and "Dealer administrator" in page
    )
    page = north.get(f"/o/sales_order?view={view.id}").get_data(as_text=True)
    assert "<strong>Paid orders (shared)</strong>" in page and "Delete view" not in page
    sales = sign_in(SALES, language="en")
    assert "Paid orders" not in sales.get("/o/sales_order/views-menu").get_data(as_text=True)
    assert sales.get(f"/o/sales_order?view={view.id}").status_code == 404
    # A holder of the role may not change or delete a shared view.
    token = csrf_of(page)
    for url, data in (
        (f"/o/sales_order/views/{view.id}/delete", {"version": "1"}),
        (f"/o/sales_order/views/{view.id}", {"version": "1", "label": "Mine now"}),
    ):
        assert north.post(url, data={"csrf_token": token, **data}).status_code == 403
    assert [(v.label, v.version) for v in views_of(pack_app)] == [("Paid orders (shared)", 1)]
    # Nor may a user who is not an administrator share one.
    answer = save_view(north, "/o/sales_order", "Share", shared_with_role="dealer_admin")
    assert answer.status_code == 403
    assert len(views_of(pack_app)) == 1


def test_an_invalid_view_is_refused_with_422_and_nothing_is_saved(
    sign_in: SignIn, pack_app: Flask
) -> None:
    client = sign_in(EAST, language="en")
    answer = save_view(client, "/o/sales_order?f.status=draft", "   ")
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    assert "Give the view a name" in page and 'role="alert"' in page
    token = csrf_of(page)
    answer = client.post(
        "/o/sales_order/views",
        data={"csrf_token": token, "label": "Odd", "f.colour": "red", "columns": "number,nope"},
    )
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    assert "definition.filters.f.colour" in page and "definition.columns[1]" in page
    assert "some of its settings are not valid" in page
    # internal_notes is hidden from dealer administrators: no view of it.
    answer = client.post(
        "/o/sales_order/views",
        data={"csrf_token": token, "label": "Notes", "columns": "number,internal_notes"},
    )
    assert answer.status_code == 422
    assert views_of(pack_app) == []
    assert save_view(client, "/o/sales_order", "Twice").status_code == 302
    answer = save_view(client, "/o/sales_order", "Twice")
    assert answer.status_code == 409
    assert "already have a view" in answer.get_data(as_text=True)
    assert len(views_of(pack_app)) == 1
    # Without the form's CSRF token nothing is saved either.
    assert client.post("/o/sales_order/views", data={"label": "No token"}).status_code == 400
    assert len(views_of(pack_app)) == 1


def test_a_view_is_renamed_updated_and_deleted_by_its_owner(
    sign_in: SignIn, pack_app: Flask
) -> None:
    client = sign_in(EAST, language="en")
    assert save_view(client, "/o/sales_order?f.status=draft", "Drafts").status_code == 302
    (view,) = views_of(pack_app)
    page = client.get(f"/o/sales_order?view={view.id}").get_data(as_text=True)
    token = csrf_of(page)
    url = f"/o/sales_order/views/{view.id}"
    answer = client.post(url, data={"csrf_token": token, "version": "1", "label": "Draft orders"})
    assert answer.status_code == 302
    # Saving the page's current state into the view (another filter now).
    answer = client.post(
        url,
        data={
            "csrf_token": token,
            "version": "2",
            "what": "definition",
            "q": "",
            "f.status": "paid",
            "sort": "-id",
        },
    )
    assert answer.status_code == 302
    (view,) = views_of(pack_app)
    assert (view.label, view.version) == ("Draft orders", 3)
    assert view.definition["filters"] == {"f.status": ["paid"]}
    # A stale form is a 409 that changes nothing.
    answer = client.post(url, data={"csrf_token": token, "version": "1", "label": "Late"})
    assert answer.status_code == 409
    assert "Someone changed this view" in answer.get_data(as_text=True)
    assert views_of(pack_app)[0].label == "Draft orders"
    answer = client.post(f"{url}/delete", data={"csrf_token": token, "version": "3"})
    assert answer.status_code == 302 and answer.headers["Location"] == "/o/sales_order"
    assert views_of(pack_app) == []
    assert client.get(f"/o/sales_order?view={view.id}").status_code == 404


def test_columns_hidden_from_a_user_are_dropped_from_a_shared_view(
    sign_in: SignIn, pack_app: Flask
) -> None:
    admin = sign_in(ADMIN, language="en")
    answer = admin.post(
        "/o/dealer/views",
        data={
            "csrf_token": csrf_of(admin.get("/o/dealer").get_data(as_text=True)),
            "label": "Credit",
            "columns": "name,credit_limit,code",
            "sort": "-credit_limit",
            "f.credit_limit.min": "1",
            "shared_with_role": "dealer_sales",
        },
    )
    assert answer.status_code == 302, answer.get_data(as_text=True)[:500]
    (view,) = views_of(pack_app)
    sales = sign_in(SALES, language="en")
    answer = sales.get(f"/o/dealer?view={view.id}")
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    assert headings(page) == ["Name", "Dealer code"]
    assert "credit_limit" not in page.split('id="rows"')[1]


def test_the_column_chooser_shows_and_orders_columns(sign_in: SignIn) -> None:
    client = sign_in(EAST, language="en")
    page = client.get("/o/sales_order?columns=status,number").get_data(as_text=True)
    assert headings(page) == ["Status", "Order number"]
    chooser = page[page.index('class="column-list"') :]
    chooser = chooser[: chooser.index("</ol>")]
    boxes = re.findall(r'name="columns" value="([^"]+)"( checked)?', chooser)
    assert boxes[:2] == [("status", " checked"), ("number", " checked")]
    assert all(not checked for _, checked in boxes[2:]) and ("id", "") in boxes
    assert "internal_notes" not in chooser  # hidden from dealer administrators
    assert 'name="move" value="down:status"' in chooser
    assert 'value="up:status"' not in chooser and 'value="down:number"' not in chooser
    # ↓ on Status: the chooser's form sends its ticked columns and the move.
    answer = client.get("/o/sales_order?columns=status&columns=number&sort=number&move=down:status")
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/o/sales_order?columns=number%2Cstatus&sort=number"
    moved = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert headings(moved) == ["Order number", "Status"]
    assert "move=" not in moved
    page = client.get("/o/sales_order?columns=number&columns=order_date").get_data(as_text=True)
    assert headings(page) == ["Order number", "Order date"]


def test_a_refused_view_is_told_in_chinese(sign_in: SignIn, pack_app: Flask) -> None:
    client = sign_in(EAST, language="zh-CN")
    assert save_view(client, "/o/sales_order", "两次").status_code == 302
    answer = save_view(client, "/o/sales_order", "两次")
    assert answer.status_code == 409
    page = answer.get_data(as_text=True)
    assert "已是另一个视图的名称" in page and "is already the name" not in page
    token = csrf_of(page)
    answer = client.post(
        "/o/sales_order/views",
        data={"csrf_token": token, "label": "Odd", "columns": "number,nope"},
    )
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    assert "&#39;nope&#39; 不是 sales_order 的字段" in page and "is not a field" not in page
    assert len(views_of(pack_app)) == 1


def test_the_view_picker_loads_its_choices_when_opened(sign_in: SignIn, pack_app: Flask) -> None:
    east = sign_in(EAST, language="en")
    answer = save_view(east, "/o/sales_order?f.status=draft", "My drafts")
    assert answer.status_code == 302
    (view,) = views_of(pack_app)
    east.get("/o/sales_order")  # the "saved" message
    page = east.get("/o/sales_order").get_data(as_text=True)
    assert "My drafts" not in page  # not queried with every list
    assert 'hx-get="/o/sales_order/views-menu"' in page
    menu = east.get(f"/o/sales_order/views-menu?view={view.id}").get_data(as_text=True)
    assert "My views" in menu
    assert f'href="/o/sales_order?view={view.id}" class="active"' in menu
    # The menu follows the read right, as the list does.
    dealer_less = sign_in(ADMIN, language="en")
    assert "My drafts" not in dealer_less.get("/o/sales_order/views-menu").get_data(as_text=True)
    # A view of another object is not applied to this one.
    assert east.get(f"/o/dealer?view={view.id}").status_code == 404
    assert east.get(f"/o/dealer/export?view={view.id}").status_code == 404
