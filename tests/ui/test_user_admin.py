"""User administration pages, and that every setup page is for administrators only."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import Api
from tests.ui.conftest import PASSWORD, SignIn, csrf_of, dealer_id
from tests.ui.test_role_designer import versions_of
from trellis.extensions import database_of
from trellis.platform.runtime.models import AuditEvent, User, UserRole

ADMIN = "admin@example.com"
EAST_SALES = "east.sales@example.com"


def user_row(app: Flask, email: str) -> User | None:
    with database_of(app).session() as session:
        user = session.scalar(sa.select(User).where(User.email == email))
        if user is not None:
            session.expunge(user)
        return user


def roles_of(app: Flask, user_id: int) -> list[str]:
    with database_of(app).session() as session:
        return sorted(
            session.scalars(sa.select(UserRole.role_name).where(UserRole.user_id == user_id))
        )


def new_user(client: FlaskClient, **values: str | list[str]) -> tuple[int, str]:
    page = client.get("/setup/users/new").get_data(as_text=True)
    data: dict[str, str | list[str]] = {
        "csrf_token": csrf_of(page),
        "email": "new.person@example.com",
        "name": "New Person",
        "language": "zh-CN",
        "password": PASSWORD,
        "roles": [],
        "partner": "",
        **values,
    }
    answer = client.post("/setup/users/new", data=data)
    return answer.status_code, answer.get_data(as_text=True)


def field_html(html: str, input_id: str) -> str:
    """The ``<div class="field …">`` holding the input ``input_id``."""
    at = html.index(f'id="{input_id}"')
    start = html.rindex('<div class="field', 0, at)
    return html[start : html.index("</div>", at)]


def test_an_admin_creates_a_partner_user_and_the_list_shows_them(
    sign_in: SignIn, pack_app: Flask
) -> None:
    admin = sign_in(ADMIN, language="en")
    form = admin.get("/setup/users/new").get_data(as_text=True)
    assert 'data-lookup-url="/lookup/dealer"' in form  # the partner typeahead
    assert "> Dealer salesperson</label>" in form  # roles by label
    east = dealer_id(pack_app, "D-0101")
    status, html = new_user(admin, roles=["dealer_sales", "finance"], partner=str(east))
    assert status == 302, html[:2000]
    user = user_row(pack_app, "new.person@example.com")
    assert user is not None
    assert (user.name, user.language, user.partner_id, user.is_active, user.is_admin) == (
        "New Person",
        "zh-CN",
        east,
        True,
        False,
    )
    assert roles_of(pack_app, user.id) == ["dealer_sales", "finance"]
    with database_of(pack_app).session() as session:
        event = session.scalar(
            sa.select(AuditEvent).where(
                AuditEvent.action == "user.created", AuditEvent.target == f"user/{user.id}"
            )
        )
        assert event is not None and event.actor_email == ADMIN
    # The new user can sign in with the initial password.
    assert sign_in("new.person@example.com").get("/").status_code == 200
    listed = admin.get("/setup/users").get_data(as_text=True)
    row = listed[listed.index("<td>new.person@example.com</td>") :]
    row = row[: row.index("</tr>")]
    assert "Dealer salesperson, Finance" in row and "华东星辰电器有限公司" in row and ">Yes<" in row


def test_refusals_appear_next_to_their_field_and_create_nothing(
    sign_in: SignIn, pack_app: Flask
) -> None:
    admin = sign_in(ADMIN, language="en")
    # A partner-tree role without a partner.
    status, html = new_user(admin, roles=["dealer_sales"])
    assert status == 422
    partner = html[html.index('<span class="field-label">Partner</span>') :]
    partner = partner[: partner.index("</div>\n    <div")]
    assert "dealer_sales" in partner and 'role="alert"' in partner
    assert 'value="new.person@example.com"' in html and 'value="dealer_sales" checked' in html
    # A weak password, a taken e-mail, a partner that is not a record id.
    status, html = new_user(admin, password="short")
    assert status == 422 and 'role="alert"' in field_html(html, "user-password")
    status, html = new_user(admin, email=EAST_SALES)
    assert status == 422
    assert "belongs to another user" in field_html(html, "user-email")
    status, html = new_user(admin, partner="somebody")
    assert status == 422 and "partner" in html
    status, html = new_user(admin, email="not an address")
    assert status == 422 and 'role="alert"' in field_html(html, "user-email")
    assert user_row(pack_app, "new.person@example.com") is None
    assert user_row(pack_app, "not an address") is None


def test_an_admin_edits_a_user(sign_in: SignIn, pack_app: Flask) -> None:
    admin = sign_in(ADMIN, language="en")
    user = user_row(pack_app, EAST_SALES)
    assert user is not None
    page = admin.get(f"/setup/users/{user.id}").get_data(as_text=True)
    assert 'value="East regional sales"' in page and "华东星辰电器有限公司" in page
    data = {
        "csrf_token": csrf_of(page),
        "name": "East sales (renamed)",
        "language": "zh-CN",
        "password": "",
        "roles": ["dealer_admin"],
        "partner": str(user.partner_id),
    }
    saved = admin.post(f"/setup/users/{user.id}", data=data)
    assert saved.status_code == 302
    changed = user_row(pack_app, EAST_SALES)
    assert changed is not None
    assert (changed.name, changed.language, changed.partner_id) == (
        "East sales (renamed)",
        "zh-CN",
        user.partner_id,
    )
    assert changed.password_hash == user.password_hash  # an empty password keeps it
    assert roles_of(pack_app, user.id) == ["dealer_admin"]
    # Taking the partner away from a partner-tree role is refused, and nothing changes.
    refused = admin.post(f"/setup/users/{user.id}", data={**data, "partner": "", "name": "X"})
    assert refused.status_code == 422
    assert 'role="alert"' in refused.get_data(as_text=True)
    still = user_row(pack_app, EAST_SALES)
    assert still is not None and (still.name, still.partner_id) == (
        "East sales (renamed)",
        user.partner_id,
    )
    blank = admin.post(f"/setup/users/{user.id}", data={**data, "name": " "})
    assert blank.status_code == 422 and 'role="alert"' in field_html(
        blank.get_data(as_text=True), "user-name"
    )
    assert admin.get("/setup/users/999999").status_code == 404


def test_deactivating_ends_the_users_sessions_and_reactivating_lets_them_back(
    sign_in: SignIn, pack_app: Flask
) -> None:
    admin = sign_in(ADMIN, language="en")
    sales = sign_in(EAST_SALES)
    assert sales.get("/").status_code == 200
    user = user_row(pack_app, EAST_SALES)
    assert user is not None
    page = admin.get(f"/setup/users/{user.id}").get_data(as_text=True)
    answer = admin.post(f"/setup/users/{user.id}/deactivate", data={"csrf_token": csrf_of(page)})
    assert answer.status_code == 302
    off = user_row(pack_app, EAST_SALES)
    assert off is not None and off.is_active is False
    sent_away = sales.get("/o/sales_order")
    assert sent_away.status_code == 302 and sent_away.headers["Location"].startswith("/login")
    listed = admin.get("/setup/users?q=east.sales").get_data(as_text=True)
    assert "Deactivated" in listed
    back = admin.post(f"/setup/users/{user.id}/reactivate", data={"csrf_token": csrf_of(page)})
    assert back.status_code == 302
    on = user_row(pack_app, EAST_SALES)
    assert on is not None and on.is_active is True
    assert sign_in(EAST_SALES).get("/o/sales_order").status_code == 200
    # Without the form's token, nothing happens.
    assert admin.post(f"/setup/users/{user.id}/deactivate").status_code == 400
    still = user_row(pack_app, EAST_SALES)
    assert still is not None and still.is_active is True


def test_an_admin_cannot_deactivate_themselves_here_or_through_the_api(
    sign_in: SignIn, pack_app: Flask, api: Api
) -> None:
    admin = sign_in(ADMIN, language="en")
    me = user_row(pack_app, ADMIN)
    assert me is not None
    page = admin.get(f"/setup/users/{me.id}").get_data(as_text=True)
    assert "/deactivate" not in page  # no button for oneself
    answer = admin.post(f"/setup/users/{me.id}/deactivate", data={"csrf_token": csrf_of(page)})
    assert answer.status_code == 302
    assert "You cannot deactivate yourself." in admin.get(answer.headers["Location"]).get_data(
        as_text=True
    )
    refused = api.patch(f"/users/{me.id}", {"is_active": False})
    assert refused.status_code == 409
    assert refused.get_json()["error"]["details"][0]["field"] == "is_active"
    # Nor take their own administrator rights away.
    demoted = admin.post(
        f"/setup/users/{me.id}",
        data={"csrf_token": csrf_of(page), "name": "admin", "language": "en", "partner": ""},
    )
    assert demoted.status_code == 422
    assert "You cannot take away your own administrator rights." in demoted.get_data(as_text=True)
    still = user_row(pack_app, ADMIN)
    assert still is not None and still.is_active is True and still.is_admin is True
    assert admin.get("/setup/users").status_code == 200


def test_users_are_searched_by_name_or_email_and_filtered_by_role(sign_in: SignIn) -> None:
    admin = sign_in(ADMIN, language="en")
    found = admin.get("/setup/users?q=EAST").get_data(as_text=True)
    emails = set(re.findall(r"<td>([a-z0-9.]+@example\.com)</td>", found))
    assert emails == {"east.admin@example.com", EAST_SALES, "sub.east1.admin@example.com"}
    by_name = admin.get("/setup/users?q=Finance").get_data(as_text=True)
    assert set(re.findall(r"<td>([a-z0-9.]+@example\.com)</td>", by_name)) == {
        "finance@example.com"
    }
    holders = admin.get("/setup/users?role=dealer_admin").get_data(as_text=True)
    assert set(re.findall(r"<td>([a-z0-9.]+@example\.com)</td>", holders)) == {
        "east.admin@example.com",
        "north.admin@example.com",
        "sub.east1.admin@example.com",
    }
    assert "No user matches." in admin.get("/setup/users?q=nobody-here").get_data(as_text=True)
    assert admin.get("/setup/users?q=east%00&role=%00&after=x").status_code == 200


SETUP_PAGES = ["/setup/roles", "/setup/roles/new", "/setup/roles/finance", "/setup/users"]


@pytest.mark.parametrize("email", ["east.admin@example.com", "finance@example.com"])
def test_only_administrators_reach_the_setup_pages(
    sign_in: SignIn, pack_app: Flask, email: str
) -> None:
    client = sign_in(email)
    target = user_row(pack_app, EAST_SALES)
    assert target is not None
    pages = [*SETUP_PAGES, "/setup/users/new", f"/setup/users/{target.id}"]
    for path in pages:
        assert client.get(path).status_code == 403, path
    token = csrf_of(client.get("/").get_data(as_text=True))
    posts = {
        "/setup/roles/new": {"name": "mine", "label.en": "Mine", "scope.dealer.read": "all"},
        "/setup/roles/finance": {"label.en": "Taken over", "scope.dealer.delete": "all"},
        "/setup/users/new": {"email": "x@example.com", "password": PASSWORD, "roles": "finance"},
        f"/setup/users/{target.id}": {"name": "Changed", "language": "en", "is_admin": "true"},
        f"/setup/users/{target.id}/deactivate": {},
    }
    for path, data in posts.items():
        assert client.post(path, data={"csrf_token": token, **data}).status_code == 403, path
    assert user_row(pack_app, "x@example.com") is None
    assert versions_of(pack_app, "finance") == 1 and versions_of(pack_app, "mine") == 0
    changed = user_row(pack_app, EAST_SALES)
    assert changed is not None
    assert (changed.name, changed.is_admin, changed.is_active) == (target.name, False, True)
    nav = client.get("/").get_data(as_text=True)
    assert "/setup/roles" not in nav
    # Not signed in at all: the sign-in page.
    anonymous = pack_app.test_client().get("/setup/roles")
    assert anonymous.status_code == 302 and anonymous.headers["Location"].startswith("/login")


def test_setup_pages_are_in_the_admins_navigation(sign_in: SignIn) -> None:
    page = sign_in(ADMIN, language="zh-CN").get("/").get_data(as_text=True)
    nav = page[page.index('<aside class="side">') : page.index("</aside>")]
    assert 'href="/setup/roles">角色</a>' in nav and 'href="/setup/users">用户</a>' in nav


def test_a_chinese_admin_reads_the_refusals_in_chinese(sign_in: SignIn, pack_app: Flask) -> None:
    """The services' and marshmallow's messages are told in the user's language."""
    admin = sign_in(ADMIN, language="zh-CN")
    status, html = new_user(admin, email=EAST_SALES)
    assert status == 422
    assert f"{EAST_SALES} 已属于另一个用户" in field_html(html, "user-email")
    status, html = new_user(admin, partner="somebody")
    assert status == 422 and "不是有效的整数。" in html
    status, html = new_user(admin, password="short")
    assert status == 422
    assert "短于最小长度 8。" in field_html(html, "user-password")
    status, html = new_user(admin, roles=["dealer_sales"])
    assert status == 422 and "角色 &#39;dealer_sales&#39; 向其用户显示所属合作伙伴的记录" in html
    for english in ("belongs to another user", "Not a valid", "Shorter than", "shows its users"):
        assert english not in html
    assert user_row(pack_app, "new.person@example.com") is None
