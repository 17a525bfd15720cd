"""Formulas, roll-ups, validation rules and conditional field rules, through the API and
the service on SQLite and PostgreSQL: refused at save with a position, computed on every
write path, exact under concurrent writers."""

from __future__ import annotations

import copy
import threading
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.conftest import Api, template_for
from tests.factories import definition, field
from trellis.exceptions import ValidationFailed
from trellis.extensions import Database, database_of
from trellis.platform.runtime.records import RecordService


@pytest.fixture
def db_template(request: pytest.FixtureRequest) -> str | None:
    return template_for(request, pack="channel_demo_signed_plain_status")


@pytest.fixture
def pack(app: Flask) -> Flask:
    """The channel pack, its order status a plain field: these tests are of the rules and
    roll-ups that read it, whatever moves it. (The app's database starts as a copy of the
    pack installed so, the order workflow dropped: ``db_template``.)"""
    registry = app.extensions["trellis.registry"]
    assert registry.find("sales_order") is not None
    assert "order_flow" not in registry.workflow_documents()
    return app


def product_id(api: Api) -> int:
    return int(api.get("/records/product?limit=1").get_json()["items"][0]["id"])


def new_dealer(api: Api, code: str, credit: float | None) -> int:
    """A dealer with ``credit`` (None: ample; the pack's default of 0 grants none)."""
    body: dict[str, Any] = {"name": f"Dealer {code}", "code": code}
    body["credit_limit"] = 10**9 if credit is None else credit
    answer = api.post("/records/dealer", body)
    assert answer.status_code == 201, answer.get_json()
    return int(answer.get_json()["id"])


def order(api: Api, dealer: int, lines: list[tuple[int, float]], status: str = "draft") -> Any:
    product = product_id(api)
    return api.post(
        "/records/sales_order",
        {
            "dealer": dealer,
            "status": status,
            "order_date": "2026-12-01",
            "lines": [{"product": product, "quantity": q, "unit_price": p} for q, p in lines],
        },
    )


def column(app: Flask, table: str, name: str, record_id: int) -> Any:
    """The stored value, read with SQL (not through the API)."""
    rows = sa.Table(table, sa.MetaData(), autoload_with=database_of(app).engine)
    with database_of(app).engine.connect() as connection:
        value = connection.execute(sa.select(rows.c[name]).where(rows.c.id == record_id)).scalar()
    return None if value is None else Decimal(str(value)).quantize(Decimal("0.01"))


# --- at save -------------------------------------------------------------------------------


def test_a_broken_or_unknown_formula_is_refused_with_its_position(api: Api) -> None:
    doc = definition(
        "visit",
        {
            "hours": field("integer"),
            "rate": field("currency"),
            "cost": field("formula", type=["number", "null"], **{"x-formula": "hours * rat"}),
        },
    )
    answer = api.post("/objects", doc)
    assert answer.status_code == 422
    (detail,) = answer.get_json()["error"]["details"]
    assert detail["field"] == "/properties/cost/x-formula"
    assert (detail["offset"], detail["line"], detail["column"]) == (8, 1, 9)
    assert "'rat' is not a field of visit" in detail["message"]
    doc["properties"]["cost"]["x-formula"] = "hours * (rate"
    detail = api.post("/objects", doc).get_json()["error"]["details"][0]
    assert detail["field"] == "/properties/cost/x-formula" and detail["offset"] == 13
    doc["properties"]["cost"]["x-formula"] = "hours > 2"  # a condition in a number field
    detail = api.post("/objects", doc).get_json()["error"]["details"][0]
    assert "the formula gives boolean" in detail["message"]
    doc["properties"]["cost"]["x-formula"] = "cost + 1"
    detail = api.post("/objects", doc).get_json()["error"]["details"][0]
    assert "circle" in detail["message"]
    doc["properties"]["cost"]["x-formula"] = "hours * rate"
    doc["x-rules"] = [{"name": "cheap", "assert": "cost < 'x'", "message": {"en": "too much"}}]
    detail = api.post("/objects", doc).get_json()["error"]["details"][0]
    assert detail["field"] == "/x-rules/0/assert" and "offset" in detail
    doc["x-rules"] = [{"name": "cheap", "assert": "cost < 100", "message": {"en": "too much"}}]
    doc["properties"]["hours"]["x-required-if"] = "rate"  # not a condition
    detail = api.post("/objects", doc).get_json()["error"]["details"][0]
    assert detail["field"] == "/properties/hours/x-required-if"
    assert api.get("/objects/visit").status_code == 404  # nothing was created


def test_a_rollup_must_name_lines_or_a_lookup_to_its_object(api: Api, pack: Flask) -> None:
    doc = api.get("/objects/dealer").get_json()["definition"]
    bad = copy.deepcopy(doc)
    bad["properties"]["orders_count"] = field(
        "rollup",
        type=["integer", "null"],
        **{"x-rollup": {"of": "product.sku", "function": "COUNT"}},
    )
    answer = api.put("/objects/dealer", bad)
    assert answer.status_code == 422
    assert (
        answer.get_json()["error"]["details"][0]["field"] == "/properties/orders_count/x-rollup/of"
    )


# --- formulas ------------------------------------------------------------------------------


def test_a_formula_is_computed_on_write_and_cannot_be_written(api: Api, pack: Flask) -> None:
    dealer = new_dealer(api, "F-1", None)
    created = order(api, dealer, [(3, 99.9), (2, 0.1)])
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert [line["amount"] for line in body["lines"]] == [299.7, 0.2]
    assert body["total_amount"] == 299.9  # Decimal arithmetic: no 299.90000000000003
    line = body["lines"][0]
    refused = api.patch(f"/records/order_line/{line['id']}", {"version": 1, "amount": 5})
    assert refused.status_code == 422
    assert refused.get_json()["error"]["details"] == [
        {"field": "amount", "message": "is read-only"}
    ]
    changed = api.patch(
        f"/records/order_line/{line['id']}", {"version": 1, "quantity": 10, "discount_percent": 50}
    )
    assert changed.status_code == 200 and changed.get_json()["amount"] == 499.5
    assert column(pack, "obj_order_line", "amount", line["id"]) == Decimal("499.50")
    assert column(pack, "obj_sales_order", "total_amount", body["id"]) == Decimal("499.70")


def test_a_formula_through_a_lookup_follows_its_target(api: Api, app: Flask) -> None:
    assert api.post("/objects", definition("tier", {"rate": field("currency")})).status_code == 201
    member = definition(
        "member",
        {
            "tier": field("lookup", **{"x-target": "tier"}),
            "spend": field("currency"),
            "bonus": field(
                "formula", type=["number", "null"], **{"x-formula": "spend * tier.rate"}
            ),
        },
    )
    assert api.post("/objects", member).status_code == 201, api.post("/objects", member).get_json()
    tier = api.post("/records/tier", {"rate": 0.1}).get_json()["id"]
    one = api.post("/records/member", {"tier": tier, "spend": 200}).get_json()
    assert one["bonus"] == 20
    assert api.patch(f"/records/tier/{tier}", {"version": 1, "rate": 0.25}).status_code == 200
    assert api.get(f"/records/member/{one['id']}").get_json()["bonus"] == 50
    # A formula added to a definition is computed for the records already there.
    doc = api.get("/objects/member").get_json()["definition"]
    doc["properties"]["double"] = field(
        "formula", type=["number", "null"], **{"x-formula": "spend * 2"}
    )
    assert api.put("/objects/member", doc).status_code == 200
    assert api.get(f"/records/member/{one['id']}").get_json()["double"] == 400


def test_a_formula_two_lookups_away_follows_both_hops(api: Api, app: Flask) -> None:
    """``club.tier.rate``: a change of the tier and a member's club moving to another tier
    both reach the member, in the same call."""
    assert api.post("/objects", definition("tier", {"rate": field("currency")})).status_code == 201
    club = definition("club", {"tier": field("lookup", **{"x-target": "tier"})})
    assert api.post("/objects", club).status_code == 201
    member = definition(
        "member",
        {
            "club": field("lookup", **{"x-target": "club"}),
            "spend": field("currency"),
            "bonus": field(
                "formula", type=["number", "null"], **{"x-formula": "spend * club.tier.rate"}
            ),
        },
    )
    assert api.post("/objects", member).status_code == 201
    low = api.post("/records/tier", {"rate": 0.1}).get_json()["id"]
    high = api.post("/records/tier", {"rate": 0.5}).get_json()["id"]
    one_club = api.post("/records/club", {"tier": low}).get_json()["id"]
    other_club = api.post("/records/club", {"tier": low}).get_json()["id"]
    member_ids = [
        api.post("/records/member", {"club": c, "spend": 100}).get_json()["id"]
        for c in (one_club, one_club, other_club)
    ]
    bonuses = lambda: [  # noqa: E731
        api.get(f"/records/member/{m}").get_json()["bonus"] for m in member_ids
    ]
    assert bonuses() == [10, 10, 10]
    assert api.patch(f"/records/tier/{low}", {"version": 1, "rate": 0.2}).status_code == 200
    assert bonuses() == [20, 20, 20]
    assert api.patch(f"/records/club/{one_club}", {"version": 1, "tier": high}).status_code == 200
    assert bonuses() == [50, 50, 20]
    assert column(app, "obj_member", "bonus", member_ids[2]) == Decimal("20.00")


def test_currency_travels_as_a_json_string_or_a_number_exactly(
    api: Api, app: Flask, db_url: str
) -> None:
    """An amount may be sent as a JSON string ("2.50") or a number; either is an exact
    Decimal from there on (stored NUMERIC, formulas in Decimal). A string that is not an
    amount is refused as any wrong type is."""
    memo = definition(
        "memo",
        {
            "qty": field("integer"),
            "price": field("currency"),
            "amt": field("formula", type=["number", "null"], **{"x-formula": "qty * price"}),
        },
    )
    assert api.post("/objects", memo).status_code == 201
    as_text = api.post("/records/memo", {"qty": 3, "price": "0.10"})
    assert as_text.status_code == 201, as_text.get_json()
    assert as_text.get_json()["amt"] == 0.3 and as_text.get_json()["price"] == 0.1
    huge = api.post("/records/memo", {"qty": 1, "price": "123456789012345678.99"})
    assert huge.status_code == 201, huge.get_json()
    if db_url.startswith("postgresql"):  # SQLite keeps NUMERIC as a double (15 digits)
        assert column(app, "obj_memo", "price", huge.get_json()["id"]) == Decimal(
            "123456789012345678.99"
        )  # exact in the database (the JSON answer is a number: docs/expressions.md)
    changed = api.patch(f"/records/memo/{as_text.get_json()['id']}", {"version": 1, "price": "2.5"})
    assert changed.status_code == 200 and changed.get_json()["amt"] == 7.5
    refused = api.post("/records/memo", {"qty": 1, "price": "2,50"})
    assert refused.status_code == 422
    assert refused.get_json()["error"]["details"][0]["field"] == "price"


# --- roll-ups ------------------------------------------------------------------------------


def test_an_orders_total_rolls_up_its_lines_through_every_change(api: Api, pack: Flask) -> None:
    dealer = new_dealer(api, "R-1", None)
    body = order(api, dealer, [(1, 10), (2, 20), (3, 30)]).get_json()
    order_id = body["id"]
    assert body["total_amount"] == 140
    product = product_id(api)
    extra = api.post(
        "/records/order_line",
        {"sales_order": order_id, "product": product, "quantity": 1, "unit_price": 5},
    ).get_json()
    assert api.get(f"/records/sales_order/{order_id}").get_json()["total_amount"] == 145
    assert api.delete(f"/records/order_line/{extra['id']}").status_code == 204
    assert api.get(f"/records/sales_order/{order_id}").get_json()["total_amount"] == 140
    assert api.post(f"/records/order_line/{extra['id']}/restore").status_code == 200
    assert api.get(f"/records/sales_order/{order_id}").get_json()["total_amount"] == 145
    empty = api.post(
        "/records/sales_order", {"dealer": dealer, "status": "draft", "order_date": "2026-12-01"}
    ).get_json()
    assert empty["total_amount"] == 0


def test_a_line_for_a_deleted_order_is_refused_and_moves_nothing(api: Api, pack: Flask) -> None:
    """The up-front lock of the order doubles as the line's reference check only while the
    order is live: a deleted one is refused as any missing lookup target is."""
    dealer = new_dealer(api, "D-DEL", None)
    created = order(api, dealer, [(1, 10)]).get_json()
    assert api.delete(f"/records/sales_order/{created['id']}").status_code == 204
    line = {
        "sales_order": created["id"],
        "product": product_id(api),
        "quantity": 2,
        "unit_price": 5,
    }
    answer = api.post("/records/order_line", line)
    assert answer.status_code == 422, answer.get_json()
    assert answer.get_json()["error"]["details"][0]["field"] == "sales_order"
    assert column(pack, "obj_sales_order", "total_amount", created["id"]) == Decimal("10.00")


def test_open_exposure_rolls_up_a_dealers_counting_orders(api: Api, pack: Flask) -> None:
    dealer = new_dealer(api, "R-2", None)
    draft = order(api, dealer, [(1, 100)]).get_json()
    submitted = order(api, dealer, [(2, 100)], status="submitted").get_json()

    def exposure() -> Any:
        return api.get(f"/records/dealer/{dealer}").get_json()["open_exposure"]

    assert exposure() == 200  # the draft does not count
    version = draft["version"]
    answer = api.patch(
        f"/records/sales_order/{draft['id']}", {"version": version, "status": "submitted"}
    )
    assert answer.status_code == 200
    assert exposure() == 300
    line = submitted["lines"][0]
    api.patch(f"/records/order_line/{line['id']}", {"version": 1, "quantity": 5})
    assert exposure() == 600
    current = api.get(f"/records/sales_order/{submitted['id']}").get_json()["version"]
    answer = api.patch(
        f"/records/sales_order/{submitted['id']}", {"version": current, "status": "paid"}
    )
    assert answer.status_code == 200
    assert exposure() == 100
    assert api.delete(f"/records/sales_order/{draft['id']}").status_code == 204
    assert exposure() == 0


# --- rules ---------------------------------------------------------------------------------


def test_an_order_over_the_dealers_credit_is_refused_in_the_callers_language(
    api: Api, pack: Flask
) -> None:
    dealer = new_dealer(api, "C-1", 1000)
    assert order(api, dealer, [(6, 100)], status="submitted").status_code == 201
    refused = order(api, dealer, [(5, 100)], status="submitted")
    assert refused.status_code == 422
    (detail,) = refused.get_json()["error"]["details"]
    assert (detail["rule"], detail["field"]) == ("within_credit_limit", "total_amount")
    assert "available credit is 400.00" in detail["message"]
    zh = api.client.post(
        "/api/v1/records/sales_order",
        json={"dealer": dealer, "status": "submitted", "order_date": "2026-12-01",
              "lines": [{"product": product_id(api), "quantity": 5, "unit_price": 100}]},
        headers={**api.headers, "Accept-Language": "zh-CN,zh;q=0.9"},
    )  # fmt: skip
    assert zh.status_code == 422
    assert "可用额度为 400.00" in zh.get_json()["error"]["details"][0]["message"]
    assert api.get(f"/records/dealer/{dealer}").get_json()["open_exposure"] == 600
    # A draft may be larger; submitting it is what is refused. A bulk create too.
    draft = order(api, dealer, [(5, 100)]).get_json()
    answer = api.patch(f"/records/sales_order/{draft['id']}", {"version": 1, "status": "submitted"})
    assert answer.status_code == 422
    bulk = api.post(
        "/records/sales_order/bulk",
        {"records": [{"dealer": dealer, "status": "submitted", "order_date": "2026-12-01",
                      "lines": [{"product": product_id(api), "quantity": 9, "unit_price": 100}]}]},
    )  # fmt: skip
    assert bulk.status_code == 422, bulk.get_json()
    assert api.get(f"/records/dealer/{dealer}").get_json()["open_exposure"] == 600
    # Editing an order that does not add to the exposure is not refused.
    one = api.get(
        "/records/sales_order?filter=" + '[["dealer","=",' + str(dealer) + "]]"
    ).get_json()
    assert one["items"]


def test_conditional_rules_hold_through_the_api(api: Api, app: Flask) -> None:
    doc = definition(
        "claim",
        {
            "amount": field("currency"),
            "reason": field("text", **{"x-required-if": "amount > 1000"}),
            "stage": field("picklist", enum=["open", "closed"]),
            "note": field("text", **{"x-readonly-if": "stage = 'closed'"}),
            "secret": field("text", **{"x-visible-if": "stage = 'open'"}),
        },
        **{"x-rules": [{"name": "positive", "assert": "amount > 0", "field": "amount",
                        "message": {"en": "The amount must be above zero",
                                    "zh-CN": "金额必须大于零"}}]},
    )  # fmt: skip
    assert api.post("/objects", doc).status_code == 201
    refused = api.post("/records/claim", {"amount": 5000, "stage": "open"})
    assert refused.status_code == 422
    assert refused.get_json()["error"]["details"] == [{"field": "reason", "message": "is required"}]
    refused = api.post("/records/claim", {"amount": -1, "stage": "open"})
    assert refused.get_json()["error"]["details"][0]["rule"] == "positive"
    ok = api.post("/records/claim", {"amount": 5000, "reason": "big", "stage": "open",
                                     "note": "n", "secret": "s"}).get_json()  # fmt: skip
    assert ok["secret"] == "s" and ok["note"] == "n"
    closed = api.patch(f"/records/claim/{ok['id']}", {"version": 1, "stage": "closed"})
    assert closed.status_code == 200, closed.get_json()
    refused = api.patch(f"/records/claim/{ok['id']}", {"version": 2, "note": "changed"})
    assert refused.status_code == 422
    assert refused.get_json()["error"]["details"] == [
        {"field": "note", "message": "is read-only now"}
    ]
    # Not visible while closed: a change to it is not written.
    answer = api.patch(f"/records/claim/{ok['id']}", {"version": 2, "secret": "new"})
    assert answer.status_code == 200
    assert api.get(f"/records/claim/{ok['id']}").get_json()["secret"] == "s"
    new = api.post("/records/claim", {"amount": 5, "stage": "closed", "secret": "x"}).get_json()
    assert api.get(f"/records/claim/{new['id']}").get_json()["secret"] is None


# --- concurrency ---------------------------------------------------------------------------


def test_parallel_orders_never_overdraw_one_credit_limit(
    api: Api, pack: Flask, database: Database
) -> None:
    if database.dialect != "postgresql":
        pytest.skip("SQLite serialises writers: there is no interleaving to test")
    dealer = new_dealer(api, "P-1", 1000)
    drafts = [order(api, dealer, [(3, 100)]).get_json()["id"] for _ in range(10)]
    registry = pack.extensions["trellis.registry"]
    barrier = threading.Barrier(10)
    outcome: list[str] = []
    lock = threading.Lock()

    def submit(order_id: int) -> None:
        with database.session() as session:
            service = RecordService(session, registry)
            registry.ensure_current(session)
            barrier.wait()
            try:
                service.update("sales_order", order_id, {"version": 1, "status": "submitted"})
                session.commit()
                result = "accepted"
            except ValidationFailed:
                session.rollback()
                result = "refused"
        with lock:
            outcome.append(result)

    threads = [threading.Thread(target=submit, args=(i,)) for i in drafts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcome) == ["accepted"] * 3 + ["refused"] * 7
    assert api.get(f"/records/dealer/{dealer}").get_json()["open_exposure"] == 900
    with database.engine.connect() as connection:
        submitted = connection.execute(
            sa.text("SELECT count(*), sum(total_amount) FROM obj_sales_order "
                    "WHERE dealer = :d AND status = 'submitted'"), {"d": dealer},
        ).one()  # fmt: skip
    assert (submitted[0], submitted[1]) == (3, Decimal("900.00"))


def test_parallel_lines_of_one_order_all_count(api: Api, pack: Flask, database: Database) -> None:
    if database.dialect != "postgresql":
        pytest.skip("SQLite serialises writers: there is no interleaving to test")
    dealer = new_dealer(api, "P-2", None)
    order_id = order(api, dealer, [(1, 1)]).get_json()["id"]
    product = product_id(api)
    registry = pack.extensions["trellis.registry"]
    barrier = threading.Barrier(10)

    def add_line(n: int) -> None:
        with database.session() as session:
            registry.ensure_current(session)
            service = RecordService(session, registry)
            barrier.wait()
            service.create(
                "order_line",
                {"sales_order": order_id, "product": product, "quantity": n, "unit_price": 10},
            )
            session.commit()

    threads = [threading.Thread(target=add_line, args=(n,)) for n in range(1, 11)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    expected = Decimal(1 + 10 * sum(range(1, 11)))
    assert column(pack, "obj_sales_order", "total_amount", order_id) == expected
