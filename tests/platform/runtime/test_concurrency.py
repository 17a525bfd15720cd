"""Concurrent writers: optimistic versions, unique values and autonumbers under threads."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from flask import Flask

from tests.conftest import Api
from tests.factories import dealer_definition, order_definitions
from tests.platform.runtime.concurrency import in_threads
from tests.platform.runtime.helpers import all_rows, create, define, error_of, fetch

YEAR = dt.datetime.now(dt.UTC).year


def test_same_version_twice_one_wins(api: Api) -> None:
    define(api, dealer_definition())
    dealer = create(api, "dealer", {"name": "Acme", "credit_limit": 10})
    path = f"/records/dealer/{dealer['id']}"
    first = api.patch(path, {"version": 1, "credit_limit": 20})
    assert first.status_code == 200
    second = api.patch(path, {"version": 1, "credit_limit": 30})
    error_of(second, 409, "stale_version")
    now = fetch(api, "dealer", dealer["id"])
    assert now["credit_limit"] == 20 and now["version"] == 2
    history = api.get(f"{path}/history").get_json()["items"]
    assert [h["action"] for h in history] == ["create", "update"]


def test_concurrent_updates_with_one_version(app: Flask, api: Api, admin_token: str) -> None:
    define(api, dealer_definition())
    dealer = create(api, "dealer", {"name": "Acme", "credit_limit": 10})
    path = f"/records/dealer/{dealer['id']}"

    def work(client: Api, index: int) -> tuple[int, Any]:
        response = client.patch(path, {"version": 1, "credit_limit": 100 + index})
        return response.status_code, response.get_json()

    results = in_threads(app, admin_token, 6, work)
    statuses = Counter(status for status, _ in results)
    assert statuses == {200: 1, 409: 5}, results
    winner = next(body for status, body in results if status == 200)
    assert all(
        body["error"]["code"] == "stale_version" for status, body in results if status == 409
    )
    now = fetch(api, "dealer", dealer["id"])
    assert now["version"] == 2 and now["credit_limit"] == winner["credit_limit"]
    assert len(api.get(f"{path}/history").get_json()["items"]) == 2


def test_concurrent_creates_of_one_unique_value(app: Flask, api: Api, admin_token: str) -> None:
    define(api, dealer_definition())

    def work(client: Api, index: int) -> int:
        status: int = client.post(
            "/records/dealer", {"name": "Same", "credit_limit": index}
        ).status_code
        return status

    statuses = Counter(in_threads(app, admin_token, 6, work))
    assert statuses == {201: 1, 409: 5}, statuses
    assert [r["name"] for r in all_rows(api, "dealer")] == ["Same"]


def test_concurrent_autonumbers_are_unique_and_gap_free(
    app: Flask, api: Api, admin_token: str
) -> None:
    define(api, dealer_definition())
    order, line = order_definitions()
    define(api, order)
    define(api, line)
    dealer = create(api, "dealer", {"name": "Acme"})
    threads, each = 8, 10

    def work(client: Api, index: int) -> list[str]:
        numbers = []
        for _ in range(each):
            body = {"dealer": dealer["id"], "lines": [{"quantity": 1 + index}]}
            response = client.post("/records/sales_order", body)
            assert response.status_code == 201, response.get_json()
            numbers.append(response.get_json()["number"])
        return numbers

    numbers = [n for chunk in in_threads(app, admin_token, threads, work) for n in chunk]
    expected = {f"SO-{YEAR}-{i:04d}" for i in range(1, threads * each + 1)}
    assert len(numbers) == threads * each
    assert set(numbers) == expected
    stored = [r["number"] for r in all_rows(api, "sales_order")]
    assert sorted(stored) == sorted(expected)
    assert len(all_rows(api, "order_line")) == threads * each
