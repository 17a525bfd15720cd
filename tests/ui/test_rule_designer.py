"""The Rules tab: an object's validation rules listed, added, changed and deleted without
JSON, each save a new definition version; the expressions checked as typed, a refused
rule told under its input with what was typed kept."""

from __future__ import annotations

from typing import Any

from flask import Flask

from tests.ui.conftest import SignIn, csrf_of
from tests.ui.test_object_designer import CHANNEL, _definition, _post, _version, error_under

ADMIN = "admin@example.com"
RULES = "/setup/objects/sales_order/rules"
NEW = "/setup/objects/sales_order/new-rule"


def _rule(**inputs: str) -> dict[str, str]:
    return {
        "name": "delivery_after_order",
        "when": "NOT ISBLANK(requested_delivery_date)",
        "assert": "requested_delivery_date >= order_date",
        "message-en": "Delivery cannot be before {order_date}.",
        "message-zh": "交货日期不能早于 {order_date}。",
        "field": "requested_delivery_date",
        **inputs,
    }


def _rules(app: Flask) -> dict[str, dict[str, Any]]:
    return {rule["name"]: rule for rule in _definition(app, "sales_order").get("x-rules", [])}


def test_add_edit_and_delete_a_rule(sign_in: SignIn, pack_app: Flask) -> None:
    client = sign_in(ADMIN, language="zh-CN")
    listing = client.get(RULES).get_data(as_text=True)
    assert "within_credit_limit" in listing and "此订单使" in listing  # the message in 中文
    before = _version(pack_app, "sales_order") or 0
    answer = _post(client, NEW, _rule())
    assert answer.status_code == 302, answer.get_data(as_text=True)[:3000]
    assert _version(pack_app, "sales_order") == before + 1
    assert _rules(pack_app)["delivery_after_order"] == {
        "name": "delivery_after_order",
        "when": "NOT ISBLANK(requested_delivery_date)",
        "assert": "requested_delivery_date >= order_date",
        "message": {
            "en": "Delivery cannot be before {order_date}.",
            "zh-CN": "交货日期不能早于 {order_date}。",
        },
        "field": "requested_delivery_date",
    }
    url = f"{RULES}/delivery_after_order"
    form = client.get(url).get_data(as_text=True)
    assert 'value="交货日期不能早于 {order_date}。"' in form
    assert '<option value="requested_delivery_date" selected>' in form
    changed = _post(client, url, _rule(when="", field="", **{"message-zh": ""}))
    assert changed.status_code == 302
    assert _rules(pack_app)["delivery_after_order"] == {
        "name": "delivery_after_order",
        "assert": "requested_delivery_date >= order_date",
        "message": {"en": "Delivery cannot be before {order_date}."},
    }
    history = client.get("/setup/objects/sales_order/history").get_data(as_text=True)
    assert f"{before + 2}" in history
    deleted = _post(client, f"{url}/delete", {})
    assert deleted.status_code == 302
    assert set(_rules(pack_app)) == {"within_credit_limit"}
    assert _version(pack_app, "sales_order") == before + 3
    assert client.get(url).status_code == 404


def test_a_broken_rule_is_shown_under_its_input_and_nothing_is_saved(
    sign_in: SignIn, pack_app: Flask
) -> None:
    client = sign_in(ADMIN, language="en")
    check = client.get(
        "/setup/objects/sales_order/rule-check",
        query_string=_rule(**{"assert": "requested_delivery_date >= order_dat"}),
    ).get_data(as_text=True)
    assert "requested_delivery_date &gt;= order_dat\n                           ^" in check
    assert "Line 1, column 28:" in check
    assert "Applies when: reads well." in check
    before = _version(pack_app, "sales_order")
    for inputs, key, where in (
        ({"assert": "requested_delivery_date >= order_dat"}, "assert", "line 1, column 28"),
        ({"when": "total_amount"}, "when", "must be a condition"),
        ({"message-en": "Not before {order_dte}."}, "message-en", "line 1, column 13"),
        ({"message-zh": "不能早于 {order_date +}。"}, "message-zh", "line 1, column"),
        ({"name": "Bad Name"}, "name", ""),
        ({"name": "within_credit_limit"}, "name", "another rule"),
        ({"assert": ""}, "assert", ""),
        ({"message-en": ""}, "message-en", ""),
    ):
        answer = _post(client, NEW, _rule(**inputs))
        page = answer.get_data(as_text=True)
        assert answer.status_code == 422, (inputs, page[:2000])
        error = error_under(page, key)
        assert error is not None and where in error, (inputs, error)
        typed = next(iter(inputs.values()))
        if typed:
            assert typed.replace(">", "&gt;") in page, typed
    assert _version(pack_app, "sales_order") == before


def test_only_administrators_reach_the_rules_and_writes_need_the_csrf_token(
    sign_in: SignIn, pack_app: Flask
) -> None:
    client = sign_in(CHANNEL, language="en")
    for url in (
        RULES,
        NEW,
        f"{RULES}/within_credit_limit",
        "/setup/objects/sales_order/rule-check?assert=TRUE",
    ):
        assert client.get(url).status_code == 403, url
    token = csrf_of(client.get("/").get_data(as_text=True))
    before = _version(pack_app, "sales_order")
    for url in (NEW, f"{RULES}/within_credit_limit", f"{RULES}/within_credit_limit/delete"):
        answer = client.post(url, data={"csrf_token": token, **_rule()})
        assert answer.status_code == 403, url
    admin = sign_in(ADMIN)
    assert admin.post(NEW, data=_rule()).status_code == 400
    assert admin.post(f"{RULES}/within_credit_limit/delete").status_code == 400
    assert _version(pack_app, "sales_order") == before
    assert "within_credit_limit" in _rules(pack_app)
