"""Pages send few statements: the order list reads its rows and the names behind their
lookups in one, whoever asks (bench/pages.py measures the same pages on 100,000 orders)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests.ui.conftest import SignIn
from trellis.extensions import database_of


@contextmanager
def selects(app: Flask) -> Iterator[list[str]]:
    """The SELECT statements the app sends inside the block (BEGIN and the like left out)."""
    seen: list[str] = []

    def listener(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append(" ".join(statement.split()))

    engine = database_of(app).engine
    sa.event.listen(engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", listener)


def page(app: Flask, client: FlaskClient, url: str) -> tuple[str, list[str]]:
    client.get(url)  # a first request may open a connection (and ask the server's version)
    with selects(app) as seen:
        response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return response.get_data(as_text=True), seen


def dealer_names_of_newest_orders(app: Flask, limit: int = 25) -> set[str]:
    registry = app.extensions["trellis.registry"]
    orders, dealers = registry.get("sales_order").table, registry.get("dealer").table
    with database_of(app).session() as session:
        return set(
            session.scalars(
                sa.select(dealers.c.name)
                .join(orders, orders.c.dealer == dealers.c.id)
                .where(orders.c.deleted_at.is_(None))
                .order_by(orders.c.id.desc())
                .limit(limit)
            )
        )


def test_the_order_list_reads_rows_and_dealer_names_in_one_statement(
    sign_in: SignIn, pack_app: Flask
) -> None:
    html, seen = page(pack_app, sign_in("hq@example.com", language="en"), "/o/sales_order")
    # Who is signed in (with their roles and the metadata revision), then the page itself;
    # the saved views come with the view picker when it opens.
    assert len(seen) == 2, seen
    assert "FROM users" in seen[0]
    assert "FROM obj_sales_order" in seen[1] and "FROM obj_dealer" in seen[1]
    names = dealer_names_of_newest_orders(pack_app)
    assert names and all(name in html for name in names)


def test_a_dealers_order_list_reads_its_tree_then_its_page(
    sign_in: SignIn, pack_app: Flask
) -> None:
    html, seen = page(pack_app, sign_in("east.admin@example.com", language="en"), "/o/sales_order")
    assert len(seen) == 3, seen
    assert sum("FROM hierarchy_links" in s for s in seen) == 1
    assert not any("FROM list_views" in s for s in seen)
    assert "FROM obj_sales_order" in seen[-1] and "FROM obj_dealer" in seen[-1]
    assert "华东星辰电器有限公司" in html  # the East regional's name, beside its orders
    assert "北京华北鼎盛商贸有限公司" not in html  # the North regional is not in the tree


def test_the_detail_page_reads_user_names_once(sign_in: SignIn, pack_app: Flask) -> None:
    registry = pack_app.extensions["trellis.registry"]
    orders = registry.get("sales_order").table
    with database_of(pack_app).session() as session:
        order_id = session.scalars(sa.select(sa.func.min(orders.c.id))).one()
    client = sign_in("hq@example.com", language="en")
    html, seen = page(pack_app, client, f"/o/sales_order/{order_id}")
    assert sum("FROM users WHERE users.id IN" in s for s in seen) <= 1, seen
    assert "FROM installed_packs" not in " ".join(seen)  # the registry holds the packs
    assert "Order lines" in html
