"""The import wizard (upload → map with a preview → options → run → report) and the
list page's import and XLSX export links."""

from __future__ import annotations

import io
import re

import openpyxl
from flask import Flask

from tests.ui.conftest import SignIn, csrf_of, ids_of

DEALERS = (
    "名称,经销商编码,上级经销商,层级\n"
    "导入经销商一,D-8001,D-0001,regional\n"
    "导入经销商二,D-8002,D-NOPE,regional\n"
).encode()


def test_the_wizard_imports_a_file_and_reports_its_bad_rows(
    sign_in: SignIn, pack_app: Flask
) -> None:
    client = sign_in("channel@example.com", language="en")
    listing = client.get("/o/dealer").get_data(as_text=True)
    assert 'href="/o/dealer/import"' in listing and "format=xlsx" in listing

    upload = client.get("/o/dealer/import")
    assert upload.status_code == 200
    token = csrf_of(upload.get_data(as_text=True))
    refused = client.post(
        "/o/dealer/import",
        data={"csrf_token": token, "file": (io.BytesIO(b""), "empty.csv")},
        content_type="multipart/form-data",
    )
    assert refused.status_code == 400 and "the file is empty" in refused.get_data(as_text=True)

    sent = client.post(
        "/o/dealer/import",
        data={"csrf_token": token, "file": (io.BytesIO(DEALERS), "dealers.csv")},
        content_type="multipart/form-data",
    )
    assert sent.status_code == 302, sent.get_data(as_text=True)[:500]
    run_url = sent.headers["Location"]
    assert re.fullmatch(r"/imports/\d+", run_url)

    mapping = client.get(run_url).get_data(as_text=True)
    assert "导入经销商一" in mapping  # the preview of the first rows
    assert re.search(r'name="map.0".*?<option value="name" selected', mapping, re.S)
    assert re.search(r'name="map.2".*?<option value="parent" selected', mapping, re.S)
    assert 'name="key.parent"' in mapping

    form = {
        "csrf_token": csrf_of(mapping),
        "map.0": "name",
        "map.1": "code",
        "map.2": "parent",
        "map.3": "level",
        "key.parent": "code",
        "mode": "skip_invalid",
    }
    ran = client.post(run_url, data=form)
    assert ran.status_code == 302 and ran.headers["Location"] == run_url
    report = client.get(run_url).get_data(as_text=True)
    assert "Done" in report and "1 imported; 1 rows with errors" in report
    assert "no dealer with code &#39;D-NOPE&#39;" in report
    assert ids_of(pack_app, "dealer", code="D-8001") and not ids_of(
        pack_app, "dealer", code="D-8002"
    )
    download = client.get(f"{run_url}/report.csv")
    assert download.mimetype == "text/csv"
    assert download.get_data(as_text=True).splitlines()[1].startswith("3,上级经销商,")
    # a run that has started no longer takes a mapping
    assert "Done" in client.post(run_url, data=form).get_data(as_text=True)


def test_the_report_is_told_in_the_reader_s_language(sign_in: SignIn) -> None:
    client = sign_in("channel@example.com", language="zh-CN")
    token = csrf_of(client.get("/o/dealer/import").get_data(as_text=True))
    assert "上传并映射列" in client.get("/o/dealer/import").get_data(as_text=True)
    sent = client.post(
        "/o/dealer/import",
        data={"csrf_token": token, "file": (io.BytesIO(DEALERS), "dealers.csv")},
        content_type="multipart/form-data",
    )
    run_url = sent.headers["Location"]
    mapping = client.get(run_url).get_data(as_text=True)
    assert "映射列" in mapping and "（不导入）" in mapping
    form = {"csrf_token": csrf_of(mapping), "map.0": "name", "map.1": "code", "map.2": "parent"}
    client.post(run_url, data={**form, "key.parent": "code", "mode": "all_or_nothing"})
    report = client.get(run_url).get_data(as_text=True)
    assert "已拒绝：未导入任何记录" in report
    assert "没有 code 为 &#39;D-NOPE&#39; 的 dealer" in report


def test_the_mapping_step_shows_what_is_wrong(sign_in: SignIn) -> None:
    client = sign_in("channel@example.com", language="en")
    token = csrf_of(client.get("/o/dealer/import").get_data(as_text=True))
    sent = client.post(
        "/o/dealer/import",
        data={"csrf_token": token, "file": (io.BytesIO(DEALERS), "dealers.csv")},
        content_type="multipart/form-data",
    )
    run_url = sent.headers["Location"]
    page = client.get(run_url).get_data(as_text=True)
    form = {"csrf_token": csrf_of(page), "map.0": "name", "map.1": "name", "mode": "all_or_nothing"}
    answer = client.post(run_url, data=form)
    assert answer.status_code == 400
    assert "is filled by another column" in answer.get_data(as_text=True)


def test_without_the_create_right_there_is_no_import(sign_in: SignIn) -> None:
    client = sign_in("finance@example.com", language="en")
    listing = client.get("/o/dealer").get_data(as_text=True)
    assert "/o/dealer/import" not in listing and "format=xlsx" in listing
    assert client.get("/o/dealer/import").status_code == 403


def test_the_list_page_exports_its_filter_as_xlsx(sign_in: SignIn, pack_app: Flask) -> None:
    client = sign_in("channel@example.com", language="en")
    everything = client.get("/o/dealer/export").get_data(as_text=True).splitlines()
    as_csv = client.get("/o/dealer/export?q=华东").get_data(as_text=True).splitlines()
    answer = client.get("/o/dealer/export?format=xlsx&q=华东")
    assert answer.status_code == 200
    assert answer.headers["Content-Disposition"].endswith('dealer.xlsx"')
    rows = list(openpyxl.load_workbook(io.BytesIO(answer.data)).active.values)
    assert rows[0][0] == "id" and 1 < len(rows) == len(as_csv) < len(everything)
    assert sorted(str(row[0]) for row in rows[1:]) == sorted(
        line.split(",")[0] for line in as_csv[1:]
    )
    assert client.get("/o/dealer/export?format=doc").status_code == 400
