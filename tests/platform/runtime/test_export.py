"""CSV export pages through every match and refuses exports past its bound."""

from __future__ import annotations

import csv
import io

import pytest

from tests.conftest import Api
from tests.factories import dealer_definition
from trellis import defaults


def _rows(response: object) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))  # type: ignore[attr-defined]


def test_export_walks_every_page_and_is_bounded(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    assert api.post("/objects", dealer_definition()).status_code == 201
    for i in range(7):
        name = f'=HYPERLINK("x") {i}' if i == 0 else f"Dealer {i}"
        assert api.post("/records/dealer", {"name": name, "credit_limit": i}).status_code == 201
    monkeypatch.setattr(defaults, "EXPORT_PAGE", 2)  # several pages from a few records

    response = api.get("/records/dealer/export?sort=-credit_limit&fields=name,credit_limit")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = _rows(response)
    assert rows[0] == ["id", "name", "credit_limit"]
    assert [row[2] for row in rows[1:]] == ["6", "5", "4", "3", "2", "1", "0"]
    assert rows[-1][1].startswith("'=")  # a formula is defused, not run by a spreadsheet

    filtered = _rows(api.get('/records/dealer/export?filter=[["credit_limit",">=",5]]'))
    assert len(filtered) == 3

    monkeypatch.setattr(defaults, "MAX_EXPORT_ROWS", 4)
    refused = api.get("/records/dealer/export")
    assert refused.status_code == 400
    assert "at most 4" in refused.get_json()["error"]["message"]
