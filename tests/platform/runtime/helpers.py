"""Assertions and small steps shared by the runtime API tests."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from tests.conftest import Api
from trellis.extensions import Database


def error_of(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert ``response`` is a JSON error of ``status`` (and ``code``); return its ``error``."""
    body = response.get_json(silent=True)
    assert response.status_code == status, (response.status_code, body)
    assert response.is_json, response.data[:200]
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], list)
    for detail in error["details"]:
        assert isinstance(detail["field"], str) and isinstance(detail["message"], str), detail
    if code is not None:
        assert error["code"] == code, error
    return error


def detail_fields(error: dict[str, Any]) -> set[str]:
    return {d["field"] for d in error["details"]}


def detail_message(error: dict[str, Any], field: str) -> str:
    messages = [d["message"] for d in error["details"] if d["field"] == field]
    assert messages, (field, error)
    return " ".join(messages)


def define(api: Api, document: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/objects", document)
    assert response.status_code == 201, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def redefine(api: Api, document: dict[str, Any]) -> dict[str, Any]:
    response = api.put(f"/objects/{document['x-name']}", document)
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def create(api: Api, object_name: str, values: dict[str, Any]) -> dict[str, Any]:
    response = api.post(f"/records/{object_name}", values)
    assert response.status_code == 201, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def fetch(api: Api, object_name: str, record_id: int) -> dict[str, Any]:
    response = api.get(f"/records/{object_name}/{record_id}")
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def listing(api: Api, object_name: str, **params: Any) -> dict[str, Any]:
    """GET a page; ``filter`` may be given as a Python list (it is JSON-encoded)."""
    if "filter" in params and not isinstance(params["filter"], str):
        params["filter"] = json.dumps(params["filter"])
    response = api.get(f"/records/{object_name}", query_string=params)
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def ids(page: dict[str, Any]) -> list[int]:
    return [item["id"] for item in page["items"]]


def all_rows(api: Api, object_name: str) -> list[dict[str, Any]]:
    """Every live record (one page of the maximum size), in id order."""
    return listing(api, object_name, limit=500)["items"]


def object_names(api: Api) -> list[str]:
    response = api.get("/objects")
    assert response.status_code == 200
    return [item["name"] for item in response.get_json()["items"]]


def columns(database: Database, table: str) -> dict[str, dict[str, Any]]:
    """The physical columns of ``table`` as the database reports them."""
    return {c["name"]: c for c in sa.inspect(database.engine).get_columns(table)}


def has_table(database: Database, table: str) -> bool:
    return sa.inspect(database.engine).has_table(table)


def index_names(database: Database, table: str) -> set[str]:
    return {str(ix["name"]) for ix in sa.inspect(database.engine).get_indexes(table)}


def raw_rows(database: Database, table: str) -> list[dict[str, Any]]:
    """Every row of a table, deleted ones included, straight from the database."""
    reflected = sa.Table(table, sa.MetaData(), autoload_with=database.engine)
    with database.engine.connect() as connection:
        rows = connection.execute(sa.select(reflected).order_by(reflected.c.id)).mappings()
        return [dict(row) for row in rows]
