"""Import of records from CSV and XLSX (POST /records/<object>/import) and XLSX export."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import openpyxl
import pytest
from flask import Flask

from tests.conftest import Api
from tests.factories import dealer_definition, definition, field
from tests.platform.runtime.helpers import create, define, error_of, listing
from trellis import defaults
from trellis.extensions import database_of
from trellis.platform.runtime.identity.tokens import issue_token


def _world(api: Api) -> dict[str, int]:
    """Dealers with a unique ``code`` and contacts that point at a dealer; two dealers."""
    define(api, dealer_definition(code=field("text", "Code", **{"x-unique": True})))
    contact = definition(
        "contact",
        {
            "name": field("text", "Name", **{"x-label": {"en": "Full name", "zh-CN": "姓名"}}),
            "age": field("integer", minimum=0, **{"x-label": {"en": "Age", "zh-CN": "年龄"}}),
            "dealer": field("lookup", "Dealer", **{"x-target": "dealer"}),
            "joined": field("date", "Joined"),
            "vip": field("boolean", "VIP"),
        },
        required=["name"],
    )
    define(api, contact)
    east = create(api, "dealer", {"name": "East", "code": "E1"})
    west = create(api, "dealer", {"name": "West", "code": "W1"})
    return {"E1": east["id"], "W1": west["id"]}


def _csv(rows: list[list[Any]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode()


def _xlsx(rows: list[list[Any]]) -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _upload(api: Api, object_name: str, data: bytes, name: str, **parts: Any) -> Any:
    form: dict[str, Any] = {"file": (io.BytesIO(data), name)}
    for key, value in parts.items():
        form[key] = value if isinstance(value, str) else json.dumps(value)
    return api.client.post(
        f"/api/v1/records/{object_name}/import",
        data=form,
        headers=api.headers,
        content_type="multipart/form-data",
    )


def _report(api: Api, import_id: int) -> list[list[str]]:
    response = api.get(f"/imports/{import_id}/report")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


# A header in labels of both languages and a name; rows 3 and 5 are bad, 6 names an
# unknown dealer code. Row numbers are the sheet's (the header is row 1).
PLANTED = [
    ["Full name", "年龄", "Dealer", "joined", "VIP"],
    ["Ann", 31, "E1", "2024-01-02", "yes"],
    ["Bob", "old", "W1", "2024-01-03", "no"],  # age is not a number
    ["Cy", 40, "E1", "", ""],
    ["", 22, "W1", "2024-02-01", "1"],  # name is required
    ["Dee", 50, "ZZ", "2024-03-01", "0"],  # no dealer with code ZZ
]


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_skip_invalid_writes_the_good_rows_and_reports_each_bad_one(api: Api, kind: str) -> None:
    dealers = _world(api)
    data = _csv(PLANTED) if kind == "csv" else _xlsx(PLANTED)
    response = _upload(
        api, "contact", data, f"people.{kind}", lookups={"dealer": "code"}, mode="skip_invalid"
    )
    assert response.status_code == 202, response.get_json()
    run = response.get_json()
    assert response.headers["Location"].endswith(f"/api/v1/imports/{run['id']}")
    assert run["format"] == kind
    assert run["mapping"] == {
        "Full name": "name",
        "年龄": "age",
        "Dealer": "dealer",
        "joined": "joined",
        "VIP": "vip",
    }
    assert (run["status"], run["total_rows"], run["created"], run["errors"]) == (
        "succeeded",
        5,
        2,
        3,
    )
    items = listing(api, "contact", sort="name")["items"]
    assert [(c["name"], c["age"], c["dealer"]) for c in items] == [
        ("Ann", 31, dealers["E1"]),
        ("Cy", 40, dealers["E1"]),
    ]
    assert items[0]["joined"] == "2024-01-02" and items[0]["vip"] is True
    report = _report(api, run["id"])
    assert report[0] == ["row", "column", "message"]
    by_row = {int(row): (column, message) for row, column, message in report[1:]}
    assert set(by_row) == {3, 5, 6}
    assert by_row[3][0] == "年龄" and "not a number" in by_row[3][1]
    assert by_row[5][0] == "Full name" and "required" in by_row[5][1]
    assert by_row[6][0] == "Dealer" and "no dealer with code 'ZZ'" in by_row[6][1]
    assert api.get(f"/imports/{run['id']}").get_json()["status"] == "succeeded"


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_all_or_nothing_writes_nothing_and_still_reports_every_bad_row(
    api: Api, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _world(api)
    monkeypatch.setattr(defaults, "IMPORT_BATCH", 2)  # bad rows in several batches
    data = _csv(PLANTED) if kind == "csv" else _xlsx(PLANTED)
    response = _upload(api, "contact", data, f"p.{kind}", lookups={"dealer": "code"})
    assert response.status_code == 202, response.get_json()
    run = response.get_json()
    assert run["mode"] == "all_or_nothing"
    assert (run["status"], run["created"], run["errors"]) == ("refused", 0, 3)
    assert "nothing was imported" in run["message"]
    assert listing(api, "contact")["items"] == []
    assert {int(row[0]) for row in _report(api, run["id"])[1:]} == {3, 5, 6}

    good = _upload(
        api, "contact", _csv(PLANTED[:2] + PLANTED[3:4]), "ok.csv", lookups={"dealer": "code"}
    )
    assert good.get_json()["status"] == "succeeded" and good.get_json()["created"] == 2


def test_duplicates_across_batches_fall_back_to_rows(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A unique value taken by an earlier batch of the same file is a row error there."""
    _world(api)
    monkeypatch.setattr(defaults, "IMPORT_BATCH", 2)
    rows = [["name", "code"], ["A", "A1"], ["B", "B1"], ["C", "A1"], ["D", "D1"], ["E", "E1"]]
    run = _upload(api, "dealer", _csv(rows), "d.csv", mode="skip_invalid").get_json()
    assert (run["status"], run["created"], run["errors"]) == ("succeeded", 3, 2)
    report = _report(api, run["id"])[1:]
    assert sorted((int(r[0]), r[1]) for r in report) == [(4, "code"), (6, "code")]


def test_explicit_mapping_and_bad_mappings(api: Api) -> None:
    _world(api)
    rows = [["who", "years", "extra"], ["Zed", "7", "x"]]
    run = _upload(api, "contact", _csv(rows), "m.csv", mapping={"who": "name", "years": "age"})
    assert run.status_code == 202 and run.get_json()["created"] == 1
    assert listing(api, "contact")["items"][0]["age"] == 7

    bad = _upload(
        api,
        "contact",
        _csv(rows),
        "m.csv",
        mapping={"who": "name", "years": "name", "nope": "age", "extra": "created_by"},
        lookups={"name": "code"},
    )
    error = error_of(bad, 400, "bad_request")
    # who: a key field for a field that is no lookup
    assert {d["field"] for d in error["details"]} == {"who", "years", "nope", "extra"}
    unknown_key = _upload(
        api, "contact", _csv([["Dealer"], ["E1"]]), "k.csv", lookups={"dealer": "age"}
    )
    assert "not a unique field of dealer" in error_of(unknown_key, 400)["details"][0]["message"]
    assert error_of(_upload(api, "contact", _csv(rows), "m.csv", mode="fast"), 400)
    assert error_of(_upload(api, "contact", _csv(rows), "m.csv", mapping="[1"), 400)


def test_unreadable_oversized_and_overlong_files_are_refused(
    api: Api, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    _world(api)
    assert "empty" in error_of(_upload(api, "contact", b"", "e.csv"), 400)["message"]
    assert error_of(_upload(api, "contact", b"PK\x03\x04garbage", "x.xlsx"), 400)
    twice = _csv([["name", "Name"], ["a", "b"]])
    assert "twice" in error_of(_upload(api, "contact", twice, "t.csv"), 400)["message"]
    missing = api.client.post(
        "/api/v1/records/contact/import",
        data={},
        headers=api.headers,
        content_type="multipart/form-data",
    )
    assert error_of(missing, 400)["details"][0]["field"] == "file"

    app.config["IMPORT_MAX_ROWS"] = 3
    many = _csv([["name"], *[[f"n{i}"] for i in range(4)]])
    error = error_of(_upload(api, "contact", many, "many.csv"), 400)
    assert "more than 3 rows" in error["message"]
    app.config["IMPORT_MAX_BYTES"] = 100
    large = _csv([["name"], *[["x" * 50] for _ in range(3)]])
    assert "at most 100 bytes" in error_of(_upload(api, "contact", large, "l.csv"), 413)["message"]
    assert listing(api, "contact")["items"] == []


def _person(api: Api, app: Flask, role: dict[str, Any]) -> Api:
    assert api.post("/roles", role).status_code == 201
    email = f"{role['x-name']}@example.com"
    body = {"email": email, "password": "a long password", "roles": [role["x-name"]]}
    assert api.post("/users", body).status_code == 201
    with database_of(app).session() as session:
        token = issue_token(session, email, name="tests")
        session.commit()
    return Api(app.test_client(), token)


def test_rights_decide_who_imports_what_and_what_is_exported(api: Api, app: Flask) -> None:
    _world(api)
    create(api, "contact", {"name": "Old", "age": 70})
    reader = _person(
        api,
        app,
        {"x-name": "reader", "x-label": {"en": "Reader"}, "objects": {"contact": {"read": "all"}}},
    )
    refused = _upload(reader, "contact", _csv([["name"], ["x"]]), "r.csv")
    assert error_of(refused, 403)["code"] == "forbidden"
    assert error_of(reader.get("/records/contact/export?format=xlsx"), 403)

    clerk_role = {
        "x-name": "clerk",
        "x-label": {"en": "Clerk"},
        "objects": {
            "contact": {
                "read": "own",
                "create": "all",
                "export": "own",
                "fields": {"age": "read"},
            },
            "dealer": {"read": "all"},
        },
    }
    clerk = _person(api, app, clerk_role)
    two = _csv([["name", "age"], ["Mine", "3"]])
    suggested = _upload(clerk, "contact", two, "c.csv").get_json()
    assert suggested["mapping"] == {"name": "name"}  # age is not theirs to write
    run = _upload(clerk, "contact", two, "c.csv", mapping={"name": "name", "age": "age"})
    assert "age" in error_of(run, 400)["details"][0]["message"]
    run = _upload(
        clerk,
        "contact",
        _csv([["name", "Dealer"], ["Mine", "E1"]]),
        "c.csv",
        lookups={"dealer": "code"},
    )
    assert run.get_json()["created"] == 1, run.get_json()
    # the run is theirs: another user does not see it; an administrator does
    assert error_of(reader.get(f"/imports/{run.get_json()['id']}"), 404)
    assert api.get(f"/imports/{run.get_json()['id']}").status_code == 200

    exported = clerk.get("/records/contact/export?format=xlsx")
    assert exported.status_code == 200  # their own two records, not "Old"
    assert exported.headers["Content-Disposition"].endswith('contact.xlsx"')
    sheet = openpyxl.load_workbook(io.BytesIO(exported.data)).active
    values = list(sheet.values)
    assert values[0][:2] == ("id", "name") and [row[1] for row in values[1:]] == ["Mine", "Mine"]


def test_xlsx_export_follows_the_filter_and_keeps_text_as_text(api: Api) -> None:
    _world(api)
    create(api, "contact", {"name": '=HYPERLINK("x")', "age": 5})
    create(api, "contact", {"name": "bell\x07 here", "age": 6})
    create(api, "contact", {"name": "Young", "age": 1})
    response = api.get('/records/contact/export?format=xlsx&filter=[["age",">=",5]]')
    assert response.status_code == 200
    sheet = openpyxl.load_workbook(io.BytesIO(response.data)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert len(rows) == 3 and rows[1][1] == '=HYPERLINK("x")' and rows[2][1] == "bell here"
    assert sheet.cell(row=2, column=2).data_type == "s"  # text, not a formula
    assert error_of(api.get("/records/contact/export?format=pdf"), 400)


def test_preview_shows_columns_rows_and_the_suggested_mapping(api: Api) -> None:
    _world(api)
    response = api.client.post(
        "/api/v1/records/contact/import/preview",
        data={"file": (io.BytesIO(_xlsx(PLANTED)), "p.xlsx")},
        headers=api.headers,
        content_type="multipart/form-data",
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["columns"] == PLANTED[0] and body["total_rows"] == 5
    assert body["rows"][0] == ["Ann", 31, "E1", "2024-01-02", "yes"]
    assert body["mapping"]["年龄"] == "age"
    dealer = next(f for f in body["fields"] if f["name"] == "dealer")
    assert dealer["key_fields"] == ["name", "code"]
    assert listing(api, "contact")["items"] == []


def test_a_row_of_zeros_is_data_and_a_row_of_empty_cells_is_skipped() -> None:
    """0 and False are values (an XLSX cell holds them as such); only empty cells are blank,
    and a skipped blank row keeps the numbering of the rows after it."""
    from trellis.platform.runtime.imports.sheets import read_sheet

    data = _xlsx([["age", "vip"], [0, False], [None, None], ["", "  "], [3, True]])
    _kind, sheet = read_sheet(data, 10)
    assert sheet.rows == [(2, (0, False)), (5, (3, True))]
    _kind, sheet = read_sheet(_csv([["age", "vip"], ["0", ""], ["", " "], ["3", "1"]]), 10)
    assert sheet.rows == [(2, ("0", "")), (4, ("3", "1"))]


def test_a_one_shot_import_reads_its_file_once(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """``POST …/import`` checks the upload and runs it in the same request: the run takes
    the sheet the upload read rather than parsing the file again, and keeps nothing once
    the request is over."""
    from trellis.platform.runtime.imports import service

    _world(api)
    reads: list[int] = []
    real = service.read_sheet

    def counted(data: bytes, max_rows: int) -> Any:
        reads.append(len(data))
        return real(data, max_rows)

    monkeypatch.setattr(service, "read_sheet", counted)
    rows = [["name", "code"], ["A", "A1"], ["B", "B1"]]
    run = _upload(api, "dealer", _csv(rows), "d.csv").get_json()
    assert (run["status"], run["created"], len(reads)) == ("succeeded", 2, 1)
    assert not service._READ_IN_REQUEST  # the request is over: nothing is kept
    assert [r["code"] for r in listing(api, "dealer", sort="id")["items"]] == [
        "E1", "W1", "A1", "B1",
    ]  # fmt: skip


def test_a_value_repeated_in_the_file_names_the_row_it_repeats(api: Api) -> None:
    """Two rows of one batch with the same unique code: the second is reported with the
    row of the first (not its place in the batch); the report is in row order, and an
    all-or-nothing run that is refused still counts every row as checked."""
    _world(api)
    rows = [["name", "code"], ["A", "A1"], ["B", "B1"], ["C", "A1"]]
    run = _upload(api, "dealer", _csv(rows), "d.csv").get_json()
    assert (run["status"], run["done_rows"], run["errors"]) == ("refused", 3, 1)
    assert _report(api, run["id"])[1:] == [["4", "code", "'A1' is also in row 2"]]
    # A cell that does not convert (row 4) is found before a row the write refuses (3).
    rows = [["Full name", "Age"], ["Ann", "1"], ["", "2"], ["Bob", "old"]]
    run = _upload(api, "contact", _csv(rows), "c.csv").get_json()
    assert [(int(r[0]), r[1]) for r in _report(api, run["id"])[1:]] == [
        (3, "Full name"), (4, "Age"),
    ]  # fmt: skip
