"""A changed formula is recomputed on the stored records, and the roll-ups that sum it
follow, upwards (a line's amount, its order's total, its dealer's exposure)."""

from __future__ import annotations

from flask import Flask

from tests.conftest import Api
from tests.platform.runtime.test_computed import db_template, new_dealer, order, pack  # noqa: F401


def test_a_changed_formula_moves_the_rollups_that_sum_it(api: Api, pack: Flask) -> None:  # noqa: F811
    dealer = new_dealer(api, "B-1", None)
    body = order(api, dealer, [(2, 10), (2, 10)], status="submitted").get_json()
    assert body["total_amount"] == 40
    assert api.get(f"/records/dealer/{dealer}").get_json()["open_exposure"] == 40
    doc = api.get("/objects/order_line").get_json()["definition"]
    doc["properties"]["amount"]["x-formula"] = "quantity * unit_price * 2"
    assert api.put("/objects/order_line", doc).status_code == 200
    line = body["lines"][0]["id"]
    assert api.get(f"/records/order_line/{line}").get_json()["amount"] == 40
    assert api.get(f"/records/sales_order/{body['id']}").get_json()["total_amount"] == 80
    assert api.get(f"/records/dealer/{dealer}").get_json()["open_exposure"] == 80
