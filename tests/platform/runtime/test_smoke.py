from __future__ import annotations

from tests.conftest import Api
from tests.factories import dealer_definition, order_definitions


def test_define_and_write(api: Api) -> None:
    assert api.post("/objects", dealer_definition()).status_code == 201
    order, line = order_definitions()
    assert api.post("/objects", order).status_code == 201
    assert api.post("/objects", line).status_code == 201
    dealer = api.post("/records/dealer", {"name": "Acme", "credit_limit": 10}).get_json()
    created = api.post(
        "/records/sales_order",
        {"dealer": dealer["id"], "lines": [{"sku": "A", "quantity": 2}]},
    )
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["number"].startswith("SO-") and body["lines"][0]["quantity"] == 2
