"""The layout designer: sections and fields arranged with its buttons (no JavaScript), saved
through the object service, and what the generated form and list then show."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.datastructures import MultiDict

from tests.ui.conftest import PASSWORD, SignIn
from trellis.extensions import database_of
from trellis.platform.runtime.versioning import OBJECTS, current_documents

ADMIN = "admin@example.com"
EAST = "east.admin@example.com"  # a dealer's administrator: no designer rights
PAGE = "/setup/objects/dealer/layout"


def form_of(html: str) -> MultiDict[str, str]:
    """What a browser would post of the designer's form as drawn (without any button)."""
    start = html.index('class="layout-designer"')
    form = html[start : html.index("</form>", start)]
    data: MultiDict[str, str] = MultiDict()
    for tag in re.findall(r"<input[^>]*>", form):
        name = re.search(r'name="([^"]+)"', tag)
        if name is None or ('type="checkbox"' in tag and " checked" not in tag):
            continue
        value = re.search(r'value="([^"]*)"', tag)
        data.add(name.group(1), value.group(1) if value else "")
    for name, options in re.findall(r'<select name="([^"]+)"[^>]*>(.*?)</select>', form, re.S):
        chosen = re.search(r'<option value="([^"]*)"\s*selected', options)
        chosen = chosen or re.search(r'<option value="([^"]*)"', options)
        if chosen:
            data.add(name, chosen.group(1))
    return data


def press(client: FlaskClient, html: str, op: str, changes: dict[str, str] | None = None) -> Any:
    """Press button ``op`` on the page drawn as ``html``, after typing ``changes``."""
    data = form_of(html)
    for key, value in (changes or {}).items():
        data[key] = value
    data["op"] = op
    return client.post(PAGE, data=data)


def stored(app: Flask, name: str = "dealer") -> tuple[int, dict[str, Any]]:
    """The current version and document of ``name``, straight from the version table."""
    with database_of(app).session() as session:
        [(_name, version, document)] = current_documents(session, OBJECTS, [name])
    return version, document


def section_key(html: str, title: str) -> str:
    match = re.search(rf'name="label\.(\d+)\.en" value="{re.escape(title)}"', html)
    assert match, title
    return match.group(1)


def fields_of_sections(form_html: str) -> list[tuple[str, list[str]]]:
    """The generated form's sections: (legend, input names in order)."""
    found = []
    for legend, body in re.findall(
        r'<fieldset class="section cols-\d">\s*<legend>([^<]*)</legend>(.*?)</fieldset>',
        form_html,
        re.S,
    ):
        names = re.findall(r'<(?:input|select|textarea)[^>]*name="([^"]+)"', body)
        found.append((legend, list(dict.fromkeys(n for n in names if n != "csrf_token"))))
    return found


def test_moving_fields_and_adding_a_section_change_the_definition_and_the_form(
    sign_in: SignIn, pack_app: Flask
) -> None:
    client = sign_in(ADMIN, language="en")
    version, before = stored(pack_app)
    assert "x-layout" not in before
    html = client.get(PAGE).get_data(as_text=True)
    assert 'href="/setup/objects/dealer/history"' in html  # the tabs
    details = section_key(html, "Details")
    # Add a section (both languages, one column) and move three fields into it.
    answer = press(client, html, "add-section", {"new.en": "Contact", "new.zh-CN": "联系方式"})
    answer = press(client, answer.get_data(as_text=True), "add-section")  # no heading
    html = answer.get_data(as_text=True)
    assert answer.status_code == 200 and "Not saved yet" in html
    contact = section_key(html, "Contact")
    for name in ("contact_name", "contact_phone", "contact_email"):
        html = press(client, html, f"move-field:{name}", {f"to.{name}": contact}).get_data(
            as_text=True
        )
    html = press(client, html, "field-up:code").get_data(as_text=True)  # code before name
    html = press(client, html, f"section-up:{contact}").get_data(as_text=True)
    # Nothing is stored until Save.
    assert stored(pack_app) == (version, before)
    answer = press(client, html, "save", {f"columns.{contact}": "1"})
    assert answer.status_code == 302 and answer.headers["Location"] == PAGE
    new_version, after = stored(pack_app)
    assert new_version == version + 1
    sections = after["x-layout"]["sections"]
    assert sections[0] == {
        "label": {"en": "Contact", "zh-CN": "联系方式"},
        "columns": 1,
        "fields": ["contact_name", "contact_phone", "contact_email"],
    }
    assert sections[1]["label"]["en"] == "Details" and sections[1]["fields"][:3] == [
        "code",
        "name",
        "parent",
    ]
    assert sections[2] == {"columns": 2, "fields": []}  # the section without a heading
    assert {k: v for k, v in after.items() if k != "x-layout"} == before  # nothing else
    assert details == "0"
    # The generated form follows the new layout (the empty section is not shown).
    form = client.get("/o/dealer/new").get_data(as_text=True)
    shown = fields_of_sections(form)
    assert [legend for legend, _names in shown] == ["Contact", "Details"]
    assert shown[0][1] == ["contact_name", "contact_phone", "contact_email"]
    assert shown[1][1][:2] == ["code", "name"]
    assert '<fieldset class="section cols-1">\n    <legend>Contact</legend>' in form
    zh = sign_in(ADMIN, language="zh-CN").get("/o/dealer/new").get_data(as_text=True)
    assert [legend for legend, _names in fields_of_sections(zh)] == ["联系方式", "详细信息"]


def test_list_columns_are_chosen_and_ordered(sign_in: SignIn, pack_app: Flask) -> None:
    client = sign_in(ADMIN, language="en")
    html = client.get(PAGE).get_data(as_text=True)
    data = form_of(html)
    data.setlist("list_column", ["name", "region"])  # only these two are ticked
    data["op"] = "column-up:region"
    html = client.post(PAGE, data=data).get_data(as_text=True)
    data = form_of(html)
    assert data.getlist("list_column") == ["name", "region"]  # the ticks are kept
    for _step in range(4):  # up to the top: region was fifth
        html = press(client, html, "column-up:region").get_data(as_text=True)
    assert press(client, html, "save").status_code == 302
    assert stored(pack_app)[1]["x-list-columns"] == ["region", "name"]
    listing = client.get("/o/dealer").get_data(as_text=True)
    head = listing[listing.index("<thead>") : listing.index("</thead>")]
    labels = re.findall(r"<a [^>]*class=\"sort[^\"]*\"[^>]*>([^<]+)<", head)
    assert [label.strip() for label in labels][:2] == ["Region", "Name"], head


def test_removing_a_section_keeps_its_fields(sign_in: SignIn, pack_app: Flask) -> None:
    client = sign_in(ADMIN, language="en")
    html = press(
        client, client.get(PAGE).get_data(as_text=True), "add-section", {"new.en": "Extra"}
    )
    html = html.get_data(as_text=True)
    extra = section_key(html, "Extra")
    for name in ("tags", "code"):
        html = press(client, html, f"move-field:{name}", {f"to.{name}": extra}).get_data(
            as_text=True
        )
    html = press(client, html, f"remove-section:{extra}").get_data(as_text=True)
    assert 'value="Extra"' not in html  # its fields went to the end of the section before
    assert press(client, html, "save").status_code == 302
    layout = stored(pack_app)[1]["x-layout"]["sections"]
    assert len(layout) == 1 and layout[0]["fields"][-2:] == ["tags", "code"]
    assert layout[0]["fields"][0] == "name"
    # The only section cannot go.
    answer = press(client, html, "remove-section:0")
    assert answer.status_code == 400 and "at least one section" in answer.get_data(as_text=True)


def test_an_invalid_layout_is_refused_next_to_its_field_and_nothing_changes(
    sign_in: SignIn, pack_app: Flask
) -> None:
    client = sign_in(ADMIN, language="en")
    before = stored(pack_app)
    html = client.get(PAGE).get_data(as_text=True)
    data = form_of(html)
    data.add("field.0", "no_such_field")
    data["op"] = "save"
    answer = client.post(PAGE, data=data)
    page = answer.get_data(as_text=True)
    assert answer.status_code == 422
    item = re.search(r'<li class="designer-field invalid".*?</li>', page, re.S)
    assert item and 'value="no_such_field"' in item.group(0)
    assert "&#39;no_such_field&#39; is not a field" in item.group(0)
    assert stored(pack_app) == before
    # A field placed twice is named where it comes again.
    data = form_of(html)
    data.add("section", "9")
    data.setlist("field.9", ["name"])
    data["op"] = "save"
    page = client.post(PAGE, data=data).get_data(as_text=True)
    section = page[page.index('id="section-9"') :]
    section = section[: section.index("</fieldset>")]
    assert "&#39;name&#39; is already in the layout" in section
    # Columns out of range: at the section.
    data["columns.9"] = "7"
    answer = client.post(PAGE, data=data)
    section = answer.get_data(as_text=True)[answer.get_data(as_text=True).index('id="section-9"') :]
    assert answer.status_code == 422
    assert "must be at most 3" in section[: section.index("</fieldset>")]
    assert stored(pack_app) == before
    # In Chinese, the known problems are translated.
    zh = sign_in(ADMIN, language="zh-CN")
    data = form_of(zh.get(PAGE).get_data(as_text=True))
    data.add("field.0", "no_such_field")
    data["op"] = "save"
    answer = zh.post(PAGE, data=data)
    assert answer.status_code == 422
    assert "&#39;no_such_field&#39; 不是字段" in answer.get_data(as_text=True)


def test_bad_requests_change_nothing(sign_in: SignIn, pack_app: Flask) -> None:
    client = sign_in(ADMIN, language="en")
    before = stored(pack_app)
    html = client.get(PAGE).get_data(as_text=True)
    assert press(client, html, "explode").status_code == 400
    assert press(client, html, "field-up:nothing").status_code == 400
    damaged = form_of(html)
    damaged["section"] = "../x"
    assert client.post(PAGE, data=damaged).status_code == 400
    # Saved from a page drawn before someone else's change: 409, nothing saved.
    data = form_of(html)
    data["version"] = "0"
    data["op"] = "save"
    answer = client.post(PAGE, data=data)
    assert answer.status_code == 409 and "nothing was saved" in answer.get_data(as_text=True)
    # An untouched layout saved: no new version.
    answer = press(client, html, "save")
    assert answer.status_code == 302
    assert "Nothing changed." in client.get(PAGE).get_data(as_text=True)
    assert stored(pack_app) == before
    # Without the CSRF token: refused.
    data = form_of(html)
    del data["csrf_token"]
    data["op"] = "save"
    assert client.post(PAGE, data=data).status_code == 400
    assert client.get("/setup/objects/no_such_object/layout").status_code == 404


def test_only_administrators_design_layouts(sign_in: SignIn, pack_app: Flask) -> None:
    before = stored(pack_app)
    html = sign_in(ADMIN, language="en").get(PAGE).get_data(as_text=True)
    dealer = sign_in(EAST)
    assert dealer.get(PAGE).status_code == 403
    data = form_of(html)
    data["csrf_token"] = re.search(
        r'name="csrf_token" value="([^"]+)"', dealer.get("/").get_data(as_text=True)
    ).group(1)  # type: ignore[union-attr]
    data.add("section", "5")
    data["op"] = "save"
    assert dealer.post(PAGE, data=data).status_code == 403
    assert stored(pack_app) == before
    signed_out = pack_app.test_client().get(PAGE)
    assert signed_out.status_code == 302 and "/login" in signed_out.headers["Location"]


def test_drag_and_drop_arranges_the_layout_in_a_browser(
    pack_app: Flask, live_server: str, browser: Any
) -> None:
    """The progressive enhancement: handles dragged in Chromium, then Save."""
    # Tall enough to show source and target at once: a drag cannot scroll the page.
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 3000})
    context.set_default_timeout(10_000)
    try:
        page = context.new_page()
        page.goto(live_server + "/login")
        page.get_by_label("E-mail").fill(ADMIN)
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(live_server + "/")
        page.goto(live_server + PAGE)
        page.locator("input[name='new.en']").fill("Contact")
        page.get_by_role("button", name="Add section").click()
        page.wait_for_selector("input[value='Contact']")
        contact = page.locator("fieldset.designer-section").nth(1)
        target = contact.locator("ol.designer-fields")
        for name in ("contact_phone", "contact_name"):  # each dropped below the last
            item = page.locator(f"li.designer-field:has(input[data-drag-input][value='{name}'])")
            box = target.bounding_box()
            item.locator("[data-drag-handle]").drag_to(
                target, target_position={"x": 5, "y": box["height"] - 2}
            )
        # The new section above the first one, by its handle.
        contact.locator(".designer-head [data-drag-handle]").drag_to(
            page.locator("fieldset.designer-section").nth(0), target_position={"x": 5, "y": 5}
        )
        assert page.locator("[data-unsaved]").is_visible()
        column = page.locator("li.designer-field:has(input[name='list_order'][value='region'])")
        column.locator("[data-drag-handle]").drag_to(
            page.locator("li.designer-field:has(input[name='list_order'][value='name'])"),
            target_position={"x": 5, "y": 2},
        )
        page.locator("button[value='save']").first.click()
        page.wait_for_selector("p.flash.info")
    finally:
        context.close()
    layout = stored(pack_app)[1]
    sections = layout["x-layout"]["sections"]
    assert sections[0]["label"] == {"en": "Contact"}
    assert sections[0]["fields"] == ["contact_phone", "contact_name"]
    assert "contact_name" not in sections[1]["fields"] and sections[1]["fields"][0] == "name"
    assert layout["x-list-columns"][0] == "region"
