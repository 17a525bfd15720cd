"""The record form's live preview (``POST /o/<object>/compute``): values the server
computes from the form as typed, and field states from conditional rules; nothing written."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Flask

from tests.ui.conftest import SignIn, csrf_of, dealer_id, drop_workflow, ids_of
from trellis.extensions import database_of
from trellis.platform.runtime.objects import ObjectService

ADMIN = "admin@example.com"
EAST = "east.admin@example.com"


def _order_form(pack_app: Flask, token: str) -> dict[str, str]:
    products = ids_of(pack_app, "product")
    return {
        "csrf_token": token,
        "dealer": str(dealer_id(pack_app, "D-0101")),
        "status": "draft",
        "order_date": "2026-12-01",
        "currency": "CNY",
        "lines-0-product": str(products[0]),
        "lines-0-quantity": "3",
        "lines-0-unit_price": "10.50",
        "lines-0-discount_percent": "10",
        "lines-0-removed": "0",
        "lines-2-product": str(products[1]),
        "lines-2-quantity": "2",
        "lines-2-unit_price": "100",
        "lines-2-removed": "0",
        "lines-3-product": str(products[1]),
        "lines-3-quantity": "5",
        "lines-3-unit_price": "100",
        "lines-3-removed": "1",  # removed in the grid: not counted
    }


def _counts(pack_app: Flask) -> tuple[int, int]:
    with database_of(pack_app).session() as session:
        return (
            session.scalar(sa.text("SELECT count(*) FROM obj_sales_order")),
            session.scalar(sa.text("SELECT count(*) FROM obj_order_line")),
        )


def test_the_new_order_form_asks_the_server_for_line_amounts_and_the_total(
    sign_in: SignIn, pack_app: Flask
) -> None:
    client = sign_in(ADMIN, language="en")
    page = client.get("/o/sales_order/new").get_data(as_text=True)
    assert 'hx-post="/o/sales_order/compute"' in page and "data-compute" in page
    before = _counts(pack_app)
    answer = client.post("/o/sales_order/compute", data=_order_form(pack_app, csrf_of(page)))
    assert answer.status_code == 200, answer.get_data(as_text=True)[:500]
    values: dict[str, Any] = answer.get_json()["values"]
    assert values["lines-0-amount"] == "28.35"  # 3 × 10.50 × 0.9, the formula's Decimal
    assert values["lines-2-amount"] == "200.00"
    assert "lines-3-amount" not in values
    assert values["total_amount"] == "228.35"
    assert _counts(pack_app) == before  # nothing written


def test_the_edit_form_previews_from_the_stored_record_and_its_lines(
    sign_in: SignIn, pack_app: Flask
) -> None:
    client = sign_in(ADMIN, language="en")
    order_id = ids_of(pack_app, "sales_order")[0]
    page = client.get(f"/o/sales_order/{order_id}/edit").get_data(as_text=True)
    assert f'hx-post="/o/sales_order/{order_id}/compute"' in page
    form = _order_form(pack_app, csrf_of(page))
    answer = client.post(f"/o/sales_order/{order_id}/compute", data=form)
    assert answer.status_code == 200
    assert answer.get_json()["values"]["total_amount"] == "228.35"


def test_the_preview_needs_the_forms_rights_and_a_csrf_token(
    sign_in: SignIn, pack_app: Flask
) -> None:
    client = sign_in(EAST)
    token = csrf_of(client.get("/o/sales_order/new").get_data(as_text=True))
    assert client.post("/o/product/compute", data={"csrf_token": token}).status_code == 403
    theirs = ids_of(pack_app, "sales_order", dealer=dealer_id(pack_app, "D-0102"))
    assert theirs  # another dealer's order is not there for them
    answer = client.post(f"/o/sales_order/{theirs[0]}/compute", data={"csrf_token": token})
    assert answer.status_code == 404
    refused = client.post("/o/sales_order/compute", data={"quantity": "1"})
    assert refused.status_code == 400
    assert pack_app.test_client().post("/o/sales_order/compute").status_code in (302, 400)


def test_the_preview_tells_an_order_over_the_dealers_credit_as_saving_would(
    sign_in: SignIn, pack_app: Flask
) -> None:
    """The credit rule reads the dealer's open exposure, a roll-up over its orders: the
    preview counts the order being typed into it, as the save would."""
    drop_workflow(pack_app, "order_flow")  # the order is saved as submitted straight away
    dealer = dealer_id(pack_app, "D-0101")
    with database_of(pack_app).session() as session:
        limit, exposure = session.execute(
            sa.text("SELECT credit_limit, open_exposure FROM obj_dealer WHERE id = :d"),
            {"d": dealer},
        ).one()
    available = float(limit) - float(exposure or 0)
    assert available > 1000
    client = sign_in(ADMIN, language="zh-CN")
    page = client.get("/o/sales_order/new").get_data(as_text=True)
    form = {**_order_form(pack_app, csrf_of(page)), "status": "submitted"}
    form["lines-2-quantity"], form["lines-2-unit_price"] = "1", "1000"
    within = client.post("/o/sales_order/compute", data=form).get_json()
    assert within["problems"] == {}
    form["lines-2-unit_price"] = str(available)  # the 28.35 of line 0 tips it over
    over = client.post("/o/sales_order/compute", data=form).get_json()
    assert set(over["problems"]) == {"total_amount"}
    assert over["problems"]["total_amount"].startswith("此订单使")
    assert "可用额度为 " in over["problems"]["total_amount"]
    form["status"] = "draft"  # a draft does not count against the credit
    assert client.post("/o/sales_order/compute", data=form).get_json()["problems"] == {}
    before = _counts(pack_app)
    saved = client.post("/o/sales_order/new", data={**form, "status": "submitted"})
    assert saved.status_code == 422 and "此订单使" in saved.get_data(as_text=True)
    assert _counts(pack_app) == before


def test_conditional_rules_come_back_as_field_states(sign_in: SignIn, pack_app: Flask) -> None:
    add_ticket_object(pack_app)
    client = sign_in(ADMIN, language="en")
    page = client.get("/o/ticket/new").get_data(as_text=True)
    token = csrf_of(page)
    calm = client.post("/o/ticket/compute", data={"csrf_token": token, "severity": "1"})
    fields = calm.get_json()["fields"]
    assert fields["escalation"] == {"visible": False, "required": False, "readonly": False}
    assert fields["reason"]["required"] is False
    urgent = client.post(
        "/o/ticket/compute", data={"csrf_token": token, "severity": "5", "closed": "true"}
    )
    fields = urgent.get_json()["fields"]
    assert fields["escalation"]["visible"] is True
    assert fields["reason"]["required"] is True
    assert fields["summary"]["readonly"] is True
    # …and the save still enforces them: a reason is required above severity 3.
    saved = client.post(
        "/o/ticket/new", data={"csrf_token": token, "summary": "x", "severity": "5"}
    )
    assert saved.status_code == 422


def add_ticket_object(app: Flask) -> None:
    """A small object with a rule of each kind (the browser test uses it too)."""
    registry = app.extensions["trellis.registry"]
    with database_of(app).session() as session:
        registry.ensure_current(session)
        ObjectService(session, registry, author_id=None).create(_ticket())
        session.commit()


def _ticket() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "x-name": "ticket",
        "type": "object",
        "x-label": {"en": "Ticket", "zh-CN": "工单"},
        "x-title-field": "summary",
        "properties": {
            "summary": {"type": "string", "x-type": "text", "x-readonly-if": "closed"},
            "severity": {"type": "integer", "x-type": "integer"},
            "closed": {"type": "boolean", "x-type": "boolean"},
            "reason": {"type": "string", "x-type": "text", "x-required-if": "severity > 3"},
            "escalation": {"type": "string", "x-type": "text", "x-visible-if": "severity >= 4"},
        },
    }
