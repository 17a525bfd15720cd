"""Workflow pages: buttons only for the transitions the user may fire, firing one with its
comment (CSRF), the state badge, and the designer saving a form and drawing its SVG."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from flask import Flask

from tests.ui.conftest import SignIn, csrf_of, ids_of
from trellis.extensions import database_of
from trellis.platform.runtime.versioning import WORKFLOWS, current_documents

ADMIN = "admin@example.com"


def buttons(html: str) -> list[str]:
    return re.findall(r'class="transition" data-transition="([a-z_]+)"', html)


def test_buttons_show_only_what_the_user_may_fire(pack_app: Flask, sign_in: SignIn) -> None:
    submitted = ids_of(pack_app, "sales_order", status="submitted")[0]
    channel = sign_in("channel@example.com", language="en")
    page = channel.get(f"/o/sales_order/{submitted}").get_data(as_text=True)
    assert buttons(page) == ["approve", "return_to_draft", "cancel"]
    assert 'class="badge state-in_progress"' in page
    finance = sign_in("finance@example.com", language="en")
    assert buttons(finance.get(f"/o/sales_order/{submitted}").get_data(as_text=True)) == []


def test_firing_a_transition_from_the_page(pack_app: Flask, sign_in: SignIn) -> None:
    submitted = ids_of(pack_app, "sales_order", status="submitted")[0]
    channel = sign_in("channel@example.com", language="en")
    page = channel.get(f"/o/sales_order/{submitted}").get_data(as_text=True)
    url = f"/o/sales_order/{submitted}/transitions/return_to_draft"
    # Without the CSRF token: refused, nothing moves.
    assert channel.post(url, data={"comment": "x"}).status_code == 400
    token = csrf_of(page)
    no_comment = channel.post(url, data={"csrf_token": token}, follow_redirects=True)
    assert "needs a comment" in no_comment.get_data(as_text=True)
    assert ids_of(pack_app, "sales_order", status="submitted")[0] == submitted
    done = channel.post(
        url, data={"csrf_token": token, "comment": "fix the quantities"}, follow_redirects=True
    )
    html = done.get_data(as_text=True)
    assert done.status_code == 200 and "fix the quantities" in html
    assert submitted in ids_of(pack_app, "sales_order", status="draft")


class _Inputs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        name = found.get("name")
        if tag == "input" and name and (found.get("type") != "radio" or "checked" in found):
            self.values[name] = found.get("value") or ""
        elif tag == "select" and name:
            self._select = name
        elif (
            tag == "option"
            and self._select
            and ("selected" in found or self._select not in self.values)
        ):
            self.values[self._select] = found.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None


def test_the_designer_saves_the_form_and_draws_the_diagram(
    pack_app: Flask, sign_in: SignIn
) -> None:
    admin = sign_in(ADMIN, language="en")
    listing = admin.get("/setup/workflows").get_data(as_text=True)
    assert "order_flow" in listing and "dealer_onboarding" in listing
    page = admin.get("/setup/workflows/order_flow")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "<svg" in html and 'data-state="paid"' in html
    parser = _Inputs()
    parser.feed(html[html.index('<form method="post" class="card workflow-form"') :])
    form = parser.values
    assert form["state-0-name"] == "draft" and form["initial"] == "draft"
    form["transition-0-en"] = "Send for approval"
    saved = admin.post("/setup/workflows/order_flow", data=form)
    assert saved.status_code == 302, saved.get_data(as_text=True)[:2000]
    with database_of(pack_app).session() as session:
        (_name, version, document), *_ = current_documents(session, WORKFLOWS, ["order_flow"])
    assert version == 2 and document["transitions"][0]["label"]["en"] == "Send for approval"
    assert document["transitions"][0]["guard"] == "COALESCE(total_amount, 0) > 0"
    form["transition-1-to"] = "nowhere"
    refused = admin.post("/setup/workflows/order_flow", data={**form, "version": "2"})
    assert refused.status_code == 422 and "/transitions/1/to" in refused.get_data(as_text=True)
    svg = admin.get("/setup/workflows/order_flow/diagram.svg")
    assert svg.mimetype == "image/svg+xml" and svg.get_data(as_text=True).startswith("<svg")
    history = admin.get("/setup/workflows/order_flow/history").get_data(as_text=True)
    assert "v2" in history and "v1" in history
    dealer = sign_in("east.admin@example.com", language="en")
    assert dealer.get("/setup/workflows").status_code == 403


def test_the_form_cannot_move_the_status_nor_change_a_locked_field(
    pack_app: Flask, sign_in: SignIn
) -> None:
    submitted = ids_of(pack_app, "sales_order", status="submitted")[0]
    admin = sign_in(ADMIN, language="en")
    form = admin.get(f"/o/sales_order/{submitted}/edit").get_data(as_text=True)
    assert 'name="status"' not in form  # the status is the transitions' to move
    version = re.search(r'name="version" value="(\d+)"', form)
    dealer = re.search(r'name="dealer" value="(\d+)"', form)
    ordered = re.search(r'name="order_date"[^>]* value="([0-9-]+)"', form)
    assert version and dealer and ordered
    data = {
        "csrf_token": csrf_of(form),
        "version": version.group(1),
        "dealer": dealer.group(1),
        "order_date": ordered.group(1),
        "currency": "CNY",
        "status": "paid",  # sent anyway: not a field the form writes
        "internal_notes": "checked",
    }
    saved = admin.post(f"/o/sales_order/{submitted}/edit", data=data)
    assert saved.status_code == 302, saved.get_data(as_text=True)[:500]
    assert submitted in ids_of(pack_app, "sales_order", status="submitted")
    fresh = admin.get(f"/o/sales_order/{submitted}/edit").get_data(as_text=True)
    version = re.search(r'name="version" value="(\d+)"', fresh)
    assert version
    locked = {**data, "csrf_token": csrf_of(fresh), "version": version.group(1),
              "order_date": "2020-01-01"}  # fmt: skip
    refused = admin.post(f"/o/sales_order/{submitted}/edit", data=locked)
    assert refused.status_code == 422
    assert "is locked while the record is submitted" in refused.get_data(as_text=True)
