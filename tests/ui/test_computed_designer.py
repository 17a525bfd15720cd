"""The field designer's roll-ups and conditions: chosen from what fits, the expressions
checked as typed (the preview points at the character), a refused save told under the
input with the text kept."""

from __future__ import annotations

import html
import re

from flask import Flask

from tests.ui.conftest import SignIn
from tests.ui.test_object_designer import _definition, _post, _version, error_under

ADMIN = "admin@example.com"
DEALER_FIELD = "/setup/objects/dealer/new-field"


def _rollup(**inputs: str) -> dict[str, str]:
    return {"type": "rollup", "label-en": "Roll-up", **inputs}


def test_a_rollup_is_chosen_from_what_points_at_the_object(
    sign_in: SignIn, pack_app: Flask
) -> None:
    client = sign_in(ADMIN, language="en")

    def settings(**inputs: str) -> str:
        return client.get(
            "/setup/objects/dealer/field-settings", query_string=_rollup(**inputs)
        ).get_data(as_text=True)

    page = settings()
    assert '<option value="sales_order.dealer" >' in page  # a lookup pointing here
    assert '<option value="dealer.parent" >' in page
    sums = settings(**{"rollup-of": "sales_order.dealer", "rollup-function": "SUM"})
    assert '<option value="total_amount" >' in sums and 'value="order_date"' not in sums
    maxima = settings(**{"rollup-of": "sales_order.dealer", "rollup-function": "MAX"})
    assert '<option value="order_date" >' in maxima and 'value="notes"' not in maxima
    counts = settings(**{"rollup-of": "sales_order.dealer", "rollup-function": "COUNT"})
    assert 'name="rollup-field"' not in counts
    lines = client.get(
        "/setup/objects/sales_order/field-settings", query_string=_rollup()
    ).get_data(as_text=True)
    assert '<option value="lines" >' in lines  # master-detail children by related name


def test_rollups_are_saved_with_the_type_their_function_gives(
    sign_in: SignIn, pack_app: Flask
) -> None:
    client = sign_in(ADMIN, language="en")
    for name, inputs, declared in (
        ("submitted_orders", {"rollup-function": "COUNT", "rollup-field": "total_amount",
                              "rollup-filter": "status = 'submitted'"}, ["integer", "null"]),
        ("ordered", {"rollup-function": "SUM", "rollup-field": "total_amount"},
         ["number", "null"]),
        ("last_order", {"rollup-function": "MAX", "rollup-field": "order_date"},
         ["string", "null"]),
    ):  # fmt: skip
        data = _rollup(name=name, **{"rollup-of": "sales_order.dealer", **inputs})
        answer = _post(client, DEALER_FIELD, data)
        assert answer.status_code == 302, answer.get_data(as_text=True)[:3000]
        field = _definition(pack_app, "dealer")["properties"][name]
        assert field["type"] == declared, name
    fields = _definition(pack_app, "dealer")["properties"]
    assert fields["submitted_orders"]["x-rollup"] == {
        "of": "sales_order.dealer",
        "function": "COUNT",
        "filter": "status = 'submitted'",
    }  # a COUNT takes no field
    edit = client.get("/setup/objects/dealer/fields/ordered").get_data(as_text=True)
    assert '<option value="SUM" selected>' in edit
    assert '<option value="total_amount" selected>' in edit
    assert 'class="readonly" id="field-preview"' in edit  # the preview shows it read-only


def test_a_rollup_filter_is_checked_against_the_child_object(
    sign_in: SignIn, pack_app: Flask
) -> None:
    client = sign_in(ADMIN, language="en")
    inputs = _rollup(
        name="open_orders",
        **{"rollup-of": "sales_order.dealer", "rollup-function": "COUNT",
           "rollup-filter": "stats = 'submitted'"},
    )  # fmt: skip
    preview = client.get("/setup/objects/dealer/field-preview", query_string=inputs)
    text = preview.get_data(as_text=True)
    assert "Line 1, column 1:" in text and "not a field of sales_order" in text
    fine = {**inputs, "rollup-filter": "status = 'submitted'"}
    text = client.get("/setup/objects/dealer/field-preview", query_string=fine).get_data(
        as_text=True
    )
    assert "Only the records where: reads well." in text
    before = _version(pack_app, "dealer")
    answer = _post(client, DEALER_FIELD, inputs)
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    assert "line 1, column 1" in (error_under(page, "rollup-filter") or "")
    assert "stats = &#39;submitted&#39;</textarea>" in page
    assert _version(pack_app, "dealer") == before
    no_field = {"rollup-of": "sales_order.dealer", "rollup-function": "SUM"}
    missing = _post(client, DEALER_FIELD, _rollup(name="total", **no_field))
    assert missing.status_code == 422
    assert "needs a field" in (error_under(missing.get_data(as_text=True), "rollup-field") or "")


def test_conditions_are_saved_into_the_field_and_checked(sign_in: SignIn, pack_app: Flask) -> None:
    client = sign_in(ADMIN, language="en")
    url = "/setup/objects/sales_order/fields/notes"
    form = client.get(url).get_data(as_text=True)
    for keyword in ("x-required-if", "x-readonly-if", "x-visible-if"):
        assert f'name="{keyword}"' in form
    formula = client.get("/setup/objects/order_line/fields/amount").get_data(as_text=True)
    assert 'name="x-visible-if"' in formula and 'name="x-required-if"' not in formula
    conditions = {
        "x-required-if": "status = 'cancelled'",
        "x-readonly-if": "status = 'paid'",
        "x-visible-if": "status != 'draft'",
    }
    answer = _post(client, url, {"type": "textarea", "label-en": "Notes", **conditions})
    assert answer.status_code == 302, answer.get_data(as_text=True)[:3000]
    field = _definition(pack_app, "sales_order")["properties"]["notes"]
    assert {k: field[k] for k in conditions} == conditions
    again = client.get(url).get_data(as_text=True)
    assert "status = &#39;paid&#39;</textarea>" in again
    preview = client.get(
        "/setup/objects/sales_order/field-preview",
        query_string={"name": "notes", "type": "textarea", "x-visible-if": "status ="},
    ).get_data(as_text=True)
    assert "Visible when…" in preview and "status =\n        ^" in preview
    before = _version(pack_app, "sales_order")
    broken = _post(client, url, {"type": "textarea", "x-required-if": "total_amount"})
    assert broken.status_code == 422
    error = error_under(broken.get_data(as_text=True), "x-required-if") or ""
    assert "must be a condition" in error, error
    assert _version(pack_app, "sales_order") == before


def test_computed_fields_saved_from_their_own_form_are_unchanged(
    sign_in: SignIn, pack_app: Flask
) -> None:
    client = sign_in(ADMIN, language="en")
    for name, field_name in (
        ("dealer", "open_exposure"),
        ("sales_order", "total_amount"),
        ("order_line", "amount"),
    ):
        url = f"/setup/objects/{name}/fields/{field_name}"
        page = client.get(url).get_data(as_text=True)
        data = _form_values(page.split('id="field-form"')[1].split("</form>")[0])
        before = _version(pack_app, name)
        answer = _post(client, url, data)
        assert answer.status_code == 302, (field_name, data)
        assert _version(pack_app, name) == before, (field_name, data)


def _form_values(form: str) -> dict[str, str]:
    """What a browser would send for the form's HTML: inputs (checked boxes only),
    textareas, the selected options."""
    data: dict[str, str] = {}
    for tag in re.findall(r"<input[^>]*>", form):
        name, value = re.search(r'name="([^"]+)"', tag), re.search(r'value="([^"]*)"', tag)
        if name and (" checked" in tag or 'type="checkbox"' not in tag):
            data[name.group(1)] = value.group(1) if value else ""
    data.update(re.findall(r'<textarea[^>]* name="([^"]+)"[^>]*>([^<]*)</textarea>', form))
    for select, options in re.findall(
        r'<select[^>]* name="([^"]+)"[^>]*>(.*?)</select>', form, re.S
    ):
        chosen = re.search(r'<option value="([^"]*)" selected>', options)
        data[select] = chosen.group(1) if chosen else ""
    return {k: html.unescape(v) for k, v in data.items() if k != "csrf_token"}
