"""The field designer's formula editor: a result type, the expression checked as it is
typed (the preview points at the character), a refused save told under the input."""

from __future__ import annotations

from flask import Flask

from tests.ui.conftest import SignIn
from tests.ui.test_object_designer import _definition, _post, _version, error_under

ADMIN = "admin@example.com"
URL = "/setup/objects/order_line/new-field"


def test_a_formula_field_is_created_with_its_result_type(sign_in: SignIn, pack_app: Flask) -> None:
    client = sign_in(ADMIN, language="en")
    form = client.get(URL + "?type=formula").get_data(as_text=True)
    assert 'name="result"' in form and 'name="x-formula"' in form
    answer = _post(
        client,
        URL,
        {
            "name": "big",
            "type": "formula",
            "label-en": "Big",
            "result": "boolean",
            "x-formula": "quantity > 100",
        },
    )
    assert answer.status_code == 302, answer.get_data(as_text=True)[:2000]
    field = _definition(pack_app, "order_line")["properties"]["big"]
    assert field["x-type"] == "formula" and field["x-formula"] == "quantity > 100"
    assert field["type"] == ["boolean", "null"]
    edit = client.get("/setup/objects/order_line/fields/big").get_data(as_text=True)
    assert '<option value="boolean" selected>' in edit


def test_the_preview_points_at_a_typo_and_a_refused_save_says_it_under_the_input(
    sign_in: SignIn, pack_app: Flask
) -> None:
    client = sign_in(ADMIN, language="en")
    preview = client.get(
        "/setup/objects/order_line/field-preview",
        query_string={"name": "twice", "type": "formula", "result": "number",
                      "x-formula": "quantity * unit_prise"},
    ).get_data(as_text=True)  # fmt: skip
    assert "Line 1, column 12:" in preview
    assert "quantity * unit_prise\n           ^" in preview
    fine = client.get(
        "/setup/objects/order_line/field-preview",
        query_string={"name": "twice", "type": "formula", "x-formula": "quantity * 2"},
    ).get_data(as_text=True)
    assert "Formula: reads well." in fine
    before = _version(pack_app, "order_line")
    answer = _post(
        client,
        URL,
        {"name": "twice", "type": "formula", "result": "number",
         "x-formula": "quantity * unit_prise"},
    )  # fmt: skip
    assert answer.status_code == 422
    error = error_under(answer.get_data(as_text=True), "x-formula") or ""
    assert "line 1, column 12" in error, error
    assert "quantity * unit_prise</textarea>" in answer.get_data(as_text=True)
    assert _version(pack_app, "order_line") == before
