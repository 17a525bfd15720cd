"""The role designer: a role's permission matrix and field rights, saved as its document."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests.ui.conftest import PASSWORD, SignIn, csrf_of
from trellis.extensions import database_of
from trellis.platform.runtime.models import Role, RoleVersion
from trellis.platform.runtime.versioning import ROLES, current_documents

ADMIN = "admin@example.com"


class _FormValues(HTMLParser):
    """What a browser would send for the page's role form: inputs and chosen options."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self.selects: dict[str, list[str]] = {}
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        name = found.get("name")
        if tag == "input" and name and found.get("type") != "checkbox":
            self.values[name] = found.get("value") or ""
        elif tag == "select" and name:
            self._select = name
            self.selects[name] = []
        elif tag == "option" and self._select is not None:
            if "selected" in found or self._select not in self.values:
                self.values[self._select] = found.get("value") or ""
            self.selects[self._select].append(found.get("value") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None


def form_of(html: str) -> _FormValues:
    parser = _FormValues()
    parser.feed(html[html.index('<form method="post" class="role-form"') :])
    return parser


def role_document(app: Flask, name: str) -> tuple[int, dict[str, Any]] | None:
    with database_of(app).session() as session:
        found = current_documents(session, ROLES, [name])
    return (found[0][1], found[0][2]) if found else None


def versions_of(app: Flask, name: str) -> int:
    with database_of(app).session() as session:
        return int(
            session.scalar(sa.select(sa.func.count()).where(RoleVersion.role_name == name)) or 0
        )


def new_role_form(client: FlaskClient, **values: str) -> dict[str, str]:
    """The empty new-role form as shown, with ``values`` set (keys as the form's names)."""
    page = client.get("/setup/roles/new")
    assert page.status_code == 200
    form = form_of(page.get_data(as_text=True)).values
    return {**form, **values}


def test_matrix_offers_every_object_operation_scope_and_field_level(sign_in: SignIn) -> None:
    page = sign_in(ADMIN, language="en").get("/setup/roles/new").get_data(as_text=True)
    parsed = form_of(page)
    for name in ("dealer", "product", "sales_order", "order_line"):
        for op in ("read", "create", "update", "delete", "export"):
            assert parsed.selects[f"scope.{name}.{op}"] == ["none", "own", "hierarchy", "all"]
    assert parsed.selects["field.dealer.credit_limit"] == ["", "hidden", "read", "write"]
    # Rows are labelled in the admin's language only; field rights fold away per object.
    assert '<th scope="row">Dealer' in page and "经销商" not in page
    assert page.count("<details") >= 4 and "Field rights" in page


def test_a_role_made_in_the_matrix_is_stored_and_rules_its_users(
    sign_in: SignIn, pack_app: Flask
) -> None:
    admin = sign_in(ADMIN, language="en")
    form = new_role_form(
        admin,
        **{
            "name": "catalogue_viewer",
            "label.en": "Catalogue viewer",
            "label.zh-CN": "目录查看者",
            "scope.product.read": "all",
            "scope.dealer.read": "all",
            "scope.dealer.export": "all",
            "field.dealer.credit_limit": "hidden",
            "field.dealer.name": "read",
        },
    )
    saved = admin.post("/setup/roles/new", data=form)
    assert saved.status_code == 302 and saved.headers["Location"] == "/setup/roles/catalogue_viewer"
    stored = role_document(pack_app, "catalogue_viewer")
    assert stored is not None
    version, document = stored
    assert version == 1
    assert document == {
        "x-name": "catalogue_viewer",
        "x-label": {"en": "Catalogue viewer", "zh-CN": "目录查看者"},
        "objects": {
            "product": {"read": "all"},
            "dealer": {
                "read": "all",
                "export": "all",
                "fields": {"credit_limit": "hidden", "name": "read"},
            },
        },
    }
    listed = admin.get("/setup/roles").get_data(as_text=True)
    assert "Catalogue viewer" in listed and "catalogue_viewer" in listed
    # The edit page shows what was stored, with the role's tabs.
    edit = admin.get("/setup/roles/catalogue_viewer").get_data(as_text=True)
    assert 'class="tabs"' in edit and 'href="/setup/roles/catalogue_viewer"' in edit
    values = form_of(edit).values
    assert values["scope.dealer.export"] == "all" and values["scope.dealer.update"] == "none"
    assert values["field.dealer.credit_limit"] == "hidden" and values["field.dealer.code"] == ""

    # A user holding only that role sees exactly those objects, and nothing else.
    page = admin.get("/setup/users/new").get_data(as_text=True)
    created = admin.post(
        "/setup/users/new",
        data={
            "csrf_token": csrf_of(page),
            "email": "viewer@example.com",
            "name": "Viewer",
            "language": "en",
            "password": PASSWORD,
            "roles": "catalogue_viewer",
            "partner": "",
        },
    )
    assert created.status_code == 302, created.get_data(as_text=True)[:2000]
    viewer = sign_in("viewer@example.com")
    home = viewer.get("/").get_data(as_text=True)
    nav = home[home.index('<aside class="side">') : home.index("</aside>")]
    assert ">Dealers</a>" in nav and ">Products</a>" in nav
    assert ">Orders</a>" not in nav and ">Order lines</a>" not in nav and "Setup" not in nav
    assert viewer.get("/o/sales_order").status_code == 403
    assert viewer.get("/o/order_line/new").status_code == 403
    assert viewer.get("/o/dealer/new").status_code == 403  # read and export only
    dealers = viewer.get("/o/dealer")
    assert dealers.status_code == 200
    assert "Credit limit" not in dealers.get_data(as_text=True)
    assert "Credit limit" in admin.get("/o/dealer").get_data(as_text=True)
    assert viewer.get("/o/dealer/export").status_code == 200
    assert viewer.get("/setup/roles").status_code == 403


def test_invalid_matrix_input_is_refused_next_to_its_cell(sign_in: SignIn, pack_app: Flask) -> None:
    admin = sign_in(ADMIN, language="en")
    before = role_document(pack_app, "dealer_sales")
    page = admin.get("/setup/roles/dealer_sales").get_data(as_text=True)
    form = {
        **form_of(page).values,
        "scope.dealer.read": "everything",
        "field.sales_order.notes": "edit",
        "scope.product.export": "all",  # a valid change, refused with the rest
    }
    refused = admin.post("/setup/roles/dealer_sales", data=form)
    assert refused.status_code == 422
    html = refused.get_data(as_text=True)
    cell = re.search(
        r'<td class="invalid">\s*<select name="scope\.dealer\.read"(.*?)</td>', html, re.S
    )
    assert cell and "everything&#39; is not one of: " in cell.group(1)
    assert '<option value="everything" selected>' in cell.group(1)  # what was sent is kept
    field = re.search(
        r'<label class="invalid">[^<]*<select name="field\.sales_order\.notes"(.*?)</label>',
        html,
        re.S,
    )
    assert field and 'role="alert"' in field.group(1)
    assert '<option value="edit" selected>' in field.group(1)
    assert form_of(html).values["scope.product.export"] == "all"
    # Nothing changed: no new version, the same document.
    assert role_document(pack_app, "dealer_sales") == before
    assert versions_of(pack_app, "dealer_sales") == 1


def test_a_new_role_needs_a_valid_unused_name_and_a_label(sign_in: SignIn, pack_app: Flask) -> None:
    admin = sign_in(ADMIN, language="en")
    bad = admin.post(
        "/setup/roles/new",
        data=new_role_form(
            admin, name="Not A Name", **{"label.en": "X", "scope.product.read": "all"}
        ),
    )
    assert bad.status_code == 422
    html = bad.get_data(as_text=True)
    name_field = html[
        html.index('id="role-name"') : html.index("</div>", html.index('id="role-name"'))
    ]
    assert 'role="alert"' in name_field and 'value="Not A Name"' in name_field
    assert form_of(html).values["scope.product.read"] == "all"  # the matrix is kept
    unlabelled = admin.post("/setup/roles/new", data=new_role_form(admin, name="unlabelled"))
    assert unlabelled.status_code == 422
    taken = admin.post(
        "/setup/roles/new", data=new_role_form(admin, name="finance", **{"label.en": "Again"})
    )
    assert taken.status_code == 422
    assert "a role with this name exists" in taken.get_data(as_text=True)
    with database_of(pack_app).session() as session:
        names = set(session.scalars(sa.select(Role.name)))
    assert "unlabelled" not in names and "not a name" not in {n.lower() for n in names}
    assert role_document(pack_app, "finance") is not None
    assert versions_of(pack_app, "finance") == 1


def test_editing_a_role_writes_one_version_with_only_what_changed(
    sign_in: SignIn, pack_app: Flask
) -> None:
    admin = sign_in(ADMIN, language="en")
    _, before = role_document(pack_app, "dealer_sales") or (0, {})
    page = admin.get("/setup/roles/dealer_sales").get_data(as_text=True)
    untouched = admin.post("/setup/roles/dealer_sales", data=form_of(page).values)
    assert untouched.status_code == 302
    assert versions_of(pack_app, "dealer_sales") == 1  # an untouched form writes nothing
    form = {
        **form_of(page).values,
        "scope.sales_order.delete": "own",
        "field.dealer.credit_limit": "",  # back to the default
        "label.zh-CN": "销售",
    }
    changed = admin.post("/setup/roles/dealer_sales", data=form)
    assert changed.status_code == 302
    stored = role_document(pack_app, "dealer_sales")
    assert stored is not None and stored[0] == 2
    expected = {**before, "x-label": {**before["x-label"], "zh-CN": "销售"}}
    expected["objects"] = {
        **before["objects"],
        "dealer": {"read": "hierarchy", "fields": {}},
        "sales_order": {**before["objects"]["sales_order"], "delete": "own"},
    }
    assert stored[1] == expected
    assert admin.get("/setup/roles/no_such_role").status_code == 404
    assert admin.get("/setup/roles/bad%00name").status_code == 404
    assert admin.post("/setup/roles/Bad Name", data=form).status_code == 404


def test_roles_list_counts_users_and_follows_the_language(sign_in: SignIn) -> None:
    page = sign_in(ADMIN, language="zh-CN").get("/setup/roles").get_data(as_text=True)
    assert "经销商销售" in page and "Dealer salesperson" not in page
    row = page[page.index("经销商管理员") :]
    row = row[: row.index("</tr>")]
    # dealer_admin is held by three demo users (East, North, East 1's sub-distributor).
    assert re.search(r">3</a>", row), row


def test_a_save_built_on_an_older_version_is_refused_with_a_reload_link(
    sign_in: SignIn, pack_app: Flask
) -> None:
    first, second = sign_in(ADMIN, language="en"), sign_in(ADMIN, language="en")
    mine = form_of(first.get("/setup/roles/finance").get_data(as_text=True)).values
    theirs = form_of(second.get("/setup/roles/finance").get_data(as_text=True)).values
    assert mine["version"] == theirs["version"] == "1"
    saved = first.post("/setup/roles/finance", data={**mine, "scope.product.update": "all"})
    assert saved.status_code == 302
    late = second.post("/setup/roles/finance", data={**theirs, "scope.order_line.delete": "all"})
    assert late.status_code == 409
    html = late.get_data(as_text=True)
    assert "at version 2 now" in html and 'href="/setup/roles/finance">Reload' in html
    assert form_of(html).values["scope.order_line.delete"] == "all"  # kept, not saved
    stored = role_document(pack_app, "finance")
    assert stored is not None and stored[0] == 2
    assert stored[1]["objects"]["product"] == {"read": "all", "export": "all", "update": "all"}
    assert "delete" not in stored[1]["objects"]["order_line"]


def test_a_refused_role_is_told_in_chinese(sign_in: SignIn, pack_app: Flask) -> None:
    admin = sign_in(ADMIN, language="zh-CN")
    before = role_document(pack_app, "dealer_sales")
    page = admin.get("/setup/roles/dealer_sales").get_data(as_text=True)
    form = {**form_of(page).values, "scope.dealer.read": "everything"}
    refused = admin.post("/setup/roles/dealer_sales", data=form)
    assert refused.status_code == 422
    html = refused.get_data(as_text=True)
    assert "&#39;everything&#39; 不在可选值中" in html and "is not one of" not in html
    taken = admin.post(
        "/setup/roles/new", data=new_role_form(admin, name="finance", **{"label.en": "Again"})
    )
    assert taken.status_code == 422 and "已有同名角色" in taken.get_data(as_text=True)
    assert role_document(pack_app, "dealer_sales") == before
    assert versions_of(pack_app, "dealer_sales") == 1
