"""Users, tokens, roles and the audit trail over the API; sign-in pages through the test client.

Runs on SQLite and PostgreSQL, one database per kind for the module (the channel pack
with its demo data); each test makes the users it acts as. Time-based rules (sign-in
back-off, locks, token expiry) are driven by editing the stored timestamps, never by
sleeping.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from tests.conftest import ADMIN_EMAIL, Api
from tests.factories import definition, field
from tests.platform.runtime.helpers import detail_fields, error_of
from tests.platform.runtime.test_permissions import (
    COUNTER,
    EAST,
    NORTH,
    ROLE_DOCS,
    Person,
    World,
    listed_ids,
    open_world,
)
from trellis.platform.runtime.identity import LOCK_AFTER, SLOW_AFTER
from trellis.platform.runtime.models import ApiToken, User

PASSWORD = "first password"
CLIENT_IP = "203.0.113.7"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: Any, worker_id: str) -> Iterator[World]:
    yield from open_world(request, tmp_path_factory, worker_id, "ident")


def new_person(world: World, roles: list[str] | None = None, partner: int | None = None) -> Person:
    """A user with ``roles`` — by default an East regional salesperson."""
    if roles is None:
        roles, partner = ["dealer_sales"], partner or world.dealers[EAST]
    return world.new_user(roles, partner)


def set_user(world: World, user_id: int, **values: Any) -> None:
    with world.database.session() as session:
        session.execute(sa.update(User).where(User.id == user_id).values(**values))
        session.commit()


def stored_user(world: World, user_id: int) -> User:
    with world.database.session() as session:
        user = session.get(User, user_id)
        assert user is not None
        session.expunge(user)
        return user


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def aware(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


# --- users -------------------------------------------------------------------------------------


def test_creating_users_validates_every_field(world: World) -> None:
    admin = world.admin
    east = world.dealers[EAST]
    email = f"new{next(COUNTER)}@example.com"
    good = {"email": email, "password": PASSWORD, "roles": ["dealer_admin"], "partner": east}
    for bad, field_name in (
        ({"email": "not-an-email"}, "email"),
        ({"email": 42}, "email"),
        ({"email": "x" * 250 + "@example.com"}, "email"),
        ({"password": "short"}, "password"),
        ({"password": None}, "password"),
        ({"roles": ["no_such_role"]}, "roles"),
        ({"roles": "dealer_admin"}, "roles"),
        ({"partner": 987654}, "partner"),
        ({"partner": "1"}, "partner"),
        ({"partner": None}, "partner"),  # dealer_admin works through a partner
        ({"roles": ["finance"]}, "partner"),  # ... and finance never does
        ({"manager": 987654}, "manager"),
        ({"language": "fr"}, "language"),
        ({"colour": "blue"}, "colour"),
    ):
        error = error_of(admin.post("/users", {**good, **bad}), 422, "validation_failed")
        assert field_name in detail_fields(error), (bad, error)
        assert all(detail["message"] for detail in error["details"]), (bad, error)
    response = admin.post("/users", good)
    assert response.status_code == 201, response.get_json()
    user = response.get_json()
    assert {k: user[k] for k in ("email", "roles", "partner", "is_admin", "is_active")} == {
        "email": email,
        "roles": ["dealer_admin"],
        "partner": east,
        "is_admin": False,
        "is_active": True,
    }
    assert not any("password" in key for key in user)
    assert admin.get(f"/users/{user['id']}").get_json() == user
    stored = stored_user(world, user["id"])
    assert stored.password_hash and PASSWORD not in stored.password_hash
    assert stored.password_hash.startswith(("scrypt:", "pbkdf2:"))
    # the same address again, in another case: a conflict, not a second user
    conflict = error_of(admin.post("/users", {**good, "email": email.upper()}), 409, "conflict")
    assert conflict["details"] == [
        {"field": "email", "message": f"{email} belongs to another user"}
    ]
    # a partner that was deleted no longer counts
    gone = world.create("dealer", {"name": f"Gone {next(COUNTER)}", "code": f"G-{next(COUNTER)}"})
    assert admin.delete(f"/records/dealer/{gone['id']}").status_code == 204
    error = error_of(
        admin.post(
            "/users", {**good, "email": f"g{next(COUNTER)}@example.com", "partner": gone["id"]}
        ),
        422,
    )
    assert detail_fields(error) == {"partner"}


def test_only_administrators_manage_users(world: World) -> None:
    someone = new_person(world, ["channel_manager"])
    body = {"email": f"x{next(COUNTER)}@example.com", "password": PASSWORD, "is_admin": True}
    error_of(someone.api.post("/users", body), 403, "forbidden")
    error_of(someone.api.patch(f"/users/{someone.id}", {"is_admin": True}), 403)
    error_of(someone.api.patch(f"/users/{someone.id}", {"roles": ["hq_admin"]}), 403)
    error_of(someone.api.get("/users"), 403)
    assert stored_user(world, someone.id).is_admin is False
    assert someone.api.get("/me").get_json()["roles"] == ["channel_manager"]


def test_role_and_partner_changes_apply_on_the_next_request(world: World) -> None:
    person = new_person(world, ["dealer_admin"], world.dealers[EAST])
    snap = world.snapshot()
    east_orders = {
        i
        for i, o in snap.records["sales_order"].items()
        if o["dealer"] in snap.subtree(world.dealers[EAST])
    }
    north_orders = {
        i
        for i, o in snap.records["sales_order"].items()
        if o["dealer"] in snap.subtree(world.dealers[NORTH])
    }
    assert listed_ids(person.api, "sales_order") == east_orders
    response = world.admin.patch(f"/users/{person.id}", {"partner": world.dealers[NORTH]})
    assert response.status_code == 200, response.get_json()
    assert listed_ids(person.api, "sales_order") == north_orders
    # A head-office role and a partner do not go together: the partner must go with it.
    error = error_of(world.admin.patch(f"/users/{person.id}", {"roles": ["finance"]}), 422)
    assert detail_fields(error) == {"partner"} and "finance" in error["details"][0]["message"]
    response = world.admin.patch(f"/users/{person.id}", {"roles": ["finance"], "partner": None})
    assert response.get_json()["roles"] == ["finance"]
    assert listed_ids(person.api, "sales_order") == set(snap.records["sales_order"])
    assert person.api.get("/me").get_json()["roles"] == ["finance"]
    response = world.admin.patch(f"/users/{person.id}", {"roles": []})
    assert response.status_code == 200
    error_of(person.api.get("/records/sales_order"), 403)
    me = person.api.get("/me").get_json()
    assert me["roles"] == [] and me["permissions"] == {}
    # unknown roles leave the user as they were
    error_of(world.admin.patch(f"/users/{person.id}", {"roles": ["finance", "nope"]}), 422)
    assert world.admin.get(f"/users/{person.id}").get_json()["roles"] == []


def test_deactivating_a_user_ends_their_tokens_at_once(world: World) -> None:
    person = new_person(world)
    second = Api(
        world.app.test_client(), person.api.post("/tokens", {"name": "second"}).get_json()["token"]
    )
    assert person.api.get("/me").status_code == 200 and second.get("/me").status_code == 200
    response = world.admin.patch(f"/users/{person.id}", {"is_active": False})
    assert response.status_code == 200 and response.get_json()["is_active"] is False
    for api in (person.api, second):
        error_of(api.get("/me"), 401, "unauthenticated")
        error_of(api.get("/records/product"), 401)
        error_of(api.post("/tokens", {"name": "more"}), 401)
    error_of(world.admin.patch(f"/users/{person.id}", {"is_active": "no"}), 422)
    world.admin.patch(f"/users/{person.id}", {"is_active": True})
    # Reactivation does not revive the old tokens: they were revoked with the deactivation.
    error_of(person.api.get("/me"), 401, "unauthenticated")
    listed = world.admin.get(f"/users/{person.id}").get_json()
    assert listed["is_active"] is True
    # an administrator cannot demote themselves by accident
    me = world.admin.get("/me").get_json()
    error_of(world.admin.patch(f"/users/{me['id']}", {"is_admin": False}), 409)


def test_me_summarises_roles_and_rights(world: World) -> None:
    person = new_person(world, ["dealer_sales"], world.dealers[EAST])
    me = person.api.get("/me").get_json()
    assert me["id"] == person.id and me["email"] == person.email
    assert me["partner"] == world.dealers[EAST] and me["roles"] == ["dealer_sales"]
    assert not any("password" in key or "hash" in key for key in me)
    grants = ROLE_DOCS["dealer_sales"]["objects"]
    assert set(me["permissions"]) == set(grants)
    for object_name, grant in grants.items():
        scopes = me["permissions"][object_name]["scopes"]
        for op in ("read", "create", "update", "delete", "export"):
            expected = grant.get(op, "none")
            assert scopes[op] == ([] if expected == "none" else [expected]), (object_name, op)
        hidden = sorted(f for f, a in grant.get("fields", {}).items() if a == "hidden")
        assert me["permissions"][object_name]["hidden_fields"] == hidden
    admin_me = world.admin.get("/me").get_json()
    assert admin_me["is_admin"] is True
    assert all(v["scopes"]["delete"] == ["all"] for v in admin_me["permissions"].values())


# --- tokens ------------------------------------------------------------------------------------


def test_tokens_are_created_listed_and_revoked(world: World) -> None:
    person = new_person(world)
    response = person.api.post("/tokens", {"name": "ci", "expires_in_days": 30})
    assert response.status_code == 201, response.get_json()
    made = response.get_json()
    token = made["token"]
    assert token.startswith("trl_") and len(token) > 40
    assert made["prefix"] == token[: len(made["prefix"])] and len(made["prefix"]) < 16
    expires = dt.datetime.fromisoformat(made["expires_at"])
    assert abs(expires - (now() + dt.timedelta(days=30))) < dt.timedelta(minutes=5)
    listed = person.api.get("/tokens").get_json()["items"]
    assert made["id"] in {t["id"] for t in listed}
    for item in listed:
        assert "token" not in item and "token_hash" not in item
        assert set(item) == {
            "id",
            "name",
            "prefix",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
        }
    assert token not in str(listed) and token[len(made["prefix"]) :] not in str(listed)
    # the new token works, and each person sees only their own tokens
    ci = Api(world.app.test_client(), token)
    assert ci.get("/me").get_json()["id"] == person.id
    other = new_person(world)
    assert made["id"] not in {t["id"] for t in other.api.get("/tokens").get_json()["items"]}
    error_of(other.api.delete(f"/tokens/{made['id']}"), 404)
    assert ci.get("/me").status_code == 200
    # revoking: the next call is refused, the other token of the person still works
    assert person.api.delete(f"/tokens/{made['id']}").status_code == 204
    error_of(ci.get("/me"), 401, "unauthenticated")
    assert person.api.get("/me").status_code == 200
    revoked = next(
        t for t in person.api.get("/tokens").get_json()["items"] if t["id"] == made["id"]
    )
    assert revoked["revoked_at"] is not None
    assert person.api.delete(f"/tokens/{made['id']}").status_code == 204  # idempotent
    for bad in (0, -1, 4000, "30", True, 1.5):
        error = error_of(person.api.post("/tokens", {"name": "x", "expires_in_days": bad}), 422)
        assert detail_fields(error) == {"expires_in_days"}
    error_of(person.api.post("/tokens", ["x"]), 400)


def test_expired_stale_and_malformed_tokens_are_refused(world: World) -> None:
    person = new_person(world)
    made = person.api.post("/tokens", {"name": "short", "expires_in_days": 1}).get_json()
    api = Api(world.app.test_client(), made["token"])
    assert api.get("/me").status_code == 200
    with world.database.session() as session:
        session.execute(
            sa.update(ApiToken)
            .where(ApiToken.id == made["id"])
            .values(expires_at=now() - dt.timedelta(seconds=1))
        )
        session.commit()
    error_of(api.get("/me"), 401, "unauthenticated")
    error_of(api.get("/records/product"), 401)
    client = world.app.test_client()
    for header in (
        None,
        "",
        "Bearer",
        "Bearer ",
        f"Basic {made['token']}",
        f"bearer {made['token']}",
        f"Bearer {made['token']}x",
        f"Bearer {made['token'][:-1]}",
        "Bearer trl_" + "A" * 300,
        "Bearer x' OR '1'='1",
    ):
        headers = {} if header is None else {"Authorization": header}
        error_of(client.get("/api/v1/me", headers=headers), 401, "unauthenticated")


def test_tokens_are_stored_hashed(world: World) -> None:
    person = new_person(world)
    made = person.api.post("/tokens", {"name": "hashed"}).get_json()
    token = made["token"]
    table = ApiToken.__table__
    with world.database.engine.connect() as connection:
        row = connection.execute(sa.select(table).where(table.c.id == made["id"])).mappings().one()
        everything = connection.execute(sa.select(table)).all()
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    secret = token[len(made["prefix"]) :]
    for stored in everything:
        for value in stored:
            assert token not in str(value) and secret not in str(value)


# --- roles ------------------------------------------------------------------------------------


def test_roles_are_validated_versioned_and_take_effect(world: World) -> None:
    admin = world.admin
    name = f"auditor_{next(COUNTER)}"
    invalid = {
        "x-name": name,
        "x-label": {"en": "Auditor"},
        "objects": {
            "dealer": {"read": "everything", "fields": {"credit_limit": "secret"}},
            "sales_order": {"read": "all", "fly": "all"},
        },
    }
    error = error_of(admin.post("/roles", invalid), 422, "invalid_definition")
    pointers = detail_fields(error)
    assert {"/objects/dealer/read", "/objects/dealer/fields/credit_limit"} <= pointers, pointers
    assert any(p.startswith("/objects/sales_order") for p in pointers), pointers
    error = error_of(
        admin.post(
            "/roles",
            {
                **invalid,
                "objects": {"nope": {"read": "all"}, "dealer": {"fields": {"ghost": "read"}}},
            },
        ),
        422,
    )
    assert detail_fields(error) == {"/objects/nope", "/objects/dealer/fields/ghost"}
    error = error_of(
        admin.post("/roles", {"x-name": "Bad Name", "x-label": {"en": "x"}, "objects": {}}), 422
    )
    assert "/x-name" in detail_fields(error)
    error_of(admin.post("/roles", {"x-label": {"en": "x"}, "objects": {}}), 422)
    error_of(admin.post("/roles", ["not", "a", "role"]), 422)
    assert name not in {r["x-name"] for r in admin.get("/roles").get_json()["items"]}

    first = {"x-name": name, "x-label": {"en": "Auditor"}, "objects": {"dealer": {"read": "all"}}}
    response = admin.post("/roles", first)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["version"] == 1
    error_of(admin.post("/roles", first), 409)
    person = new_person(world, [name])
    assert listed_ids(person.api, "dealer")
    error_of(person.api.get("/records/sales_order"), 403)
    second = {
        **first,
        "objects": {
            **first["objects"],
            "sales_order": {"read": "all", "fields": {"internal_notes": "hidden"}},
        },
    }
    response = admin.put(f"/roles/{name}", second)
    assert response.status_code == 200, response.get_json()
    assert (response.get_json()["version"], response.get_json()["changed"]) == (2, True)
    response = admin.put(f"/roles/{name}", second)
    assert (response.get_json()["version"], response.get_json()["changed"]) == (2, False)
    error_of(admin.put(f"/roles/{name}", {**second, "objects": {"dealer": {"read": "bogus"}}}), 422)
    error_of(admin.put(f"/roles/{name}", {**second, "x-name": "renamed"}), 422)
    error_of(admin.put("/roles/no_such_role", second | {"x-name": "no_such_role"}), 404)
    # the holder's next request already has the new rights
    orders = person.api.get("/records/sales_order", query_string={"limit": 500})
    assert orders.status_code == 200
    assert all("internal_notes" not in o for o in orders.get_json()["items"])
    versions = admin.get(f"/roles/{name}/versions").get_json()["items"]
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[0]["role"] == second and versions[1]["role"] == first
    me_id = admin.get("/me").get_json()["id"]
    assert {v["author_id"] for v in versions} == {me_id}
    assert admin.get(f"/roles/{name}").get_json() == {"name": name, "version": 2, "role": second}
    error_of(admin.get("/roles/no_such_role"), 404)
    error_of(admin.get("/roles/no_such_role/versions"), 404)
    listed = {r["x-name"]: r for r in admin.get("/roles").get_json()["items"]}
    assert listed[name] == second
    assert set(ROLE_DOCS) <= set(listed)


# --- the audit trail ------------------------------------------------------------------------------


def audit_since(world: World, mark: int, **params: Any) -> list[dict[str, Any]]:
    response = world.admin.get("/audit", query_string={"limit": 500, **params})
    assert response.status_code == 200, response.get_json()
    return [e for e in response.get_json()["items"] if e["id"] > mark]


def last_audit_id(world: World) -> int:
    items = world.admin.get("/audit", query_string={"limit": 1}).get_json()["items"]
    return int(items[0]["id"]) if items else 0


def test_the_audit_trail_records_who_what_when_and_where(world: World) -> None:
    mark = last_audit_id(world)
    started = now() - dt.timedelta(seconds=5)
    remote = {"environ_base": {"REMOTE_ADDR": CLIENT_IP}}
    admin_id = world.admin.get("/me").get_json()["id"]
    person = new_person(world, ["dealer_sales"], world.dealers[EAST])
    # sign-ins through the page: a failure and a success
    browser = world.app.test_client()
    sign_in(
        browser,
        person.email,
        "wrong password",
        expected=401,
        environ_base={"REMOTE_ADDR": CLIENT_IP},
    )
    sign_in(browser, person.email, "matrix password", environ_base={"REMOTE_ADDR": CLIENT_IP})
    # tokens
    made = person.api.post("/tokens", {"name": "audited"}, **remote).get_json()
    assert person.api.delete(f"/tokens/{made['id']}").status_code == 204
    # a permission denial: the request rolls back, its event stays
    order = min(listed_ids(person.api, "sales_order"))
    response = person.api.delete(f"/records/sales_order/{order}")
    error_of(response, 403)
    assert world.admin.get(f"/records/sales_order/{order}").status_code == 200
    error_of(person.api.get("/users", **remote), 403)
    # role and metadata changes
    role = f"viewer_{next(COUNTER)}"
    doc = {"x-name": role, "x-label": {"en": "Viewer"}, "objects": {"product": {"read": "all"}}}
    assert world.admin.post("/roles", doc, **remote).status_code == 201
    assert (
        world.admin.put(
            f"/roles/{role}", {**doc, "objects": {"product": {"read": "all", "export": "all"}}}
        ).status_code
        == 200
    )
    obj = f"note_{next(COUNTER)}"
    document = definition(obj, {"title": field("text")})
    assert world.admin.post("/objects", document).status_code == 201
    document["properties"]["body"] = field("textarea")
    assert world.admin.put(f"/objects/{obj}", document).status_code == 200
    assert (
        world.admin.patch(f"/users/{person.id}", {"roles": ["dealer_sales", role]}).status_code
        == 200
    )

    events = audit_since(world, mark)
    by_action: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_action.setdefault(event["action"], []).append(event)
    for event in events:
        assert started <= aware(event["at"]) <= now() + dt.timedelta(seconds=5), event

    def one(action: str, **expected: Any) -> dict[str, Any]:
        matches = [
            e for e in by_action.get(action, []) if all(e[k] == v for k, v in expected.items())
        ]
        assert len(matches) == 1, (action, expected, by_action.get(action))
        return matches[0]

    one("user.created", actor_id=admin_id, target=f"user/{person.id}")
    failure = one("auth.login.failure", actor_email=person.email)
    assert failure["ip"] == CLIENT_IP and failure["user_agent"]
    success = one("auth.login.success", actor_id=person.id)
    assert success["ip"] == CLIENT_IP and success["actor_email"] == person.email
    created = one("token.created", actor_id=person.id, target=f"token/{made['id']}")
    assert created["ip"] == CLIENT_IP and created["detail"] == {"name": "audited"}
    one("token.revoked", actor_id=person.id, target=f"token/{made['id']}")
    denied = one(
        "permission.denied",
        actor_id=person.id,
        target=f"DELETE /api/v1/records/sales_order/{order}",
    )
    assert denied["detail"]["message"] and denied["ip"]
    denied = one("permission.denied", actor_id=person.id, target="GET /api/v1/users")
    assert denied["ip"] == CLIENT_IP
    assert one("role.created", actor_id=admin_id, target=f"role/{role}")["ip"] == CLIENT_IP
    assert one("role.updated", actor_id=admin_id, target=f"role/{role}")["detail"] == {"version": 2}
    one("object.created", actor_id=admin_id, target=f"object/{obj}")
    assert one("object.updated", actor_id=admin_id, target=f"object/{obj}")["detail"] == {
        "version": 2
    }
    updated = one("user.updated", actor_id=admin_id, target=f"user/{person.id}")
    assert updated["detail"]["roles"] == sorted(["dealer_sales", role])
    assert "token.used" in by_action
    # no secret ends up in the trail
    text = str(events)
    assert (
        "matrix password" not in text and "wrong password" not in text and made["token"] not in text
    )
    # filters and paging
    only = audit_since(world, mark, action="token.")
    assert {e["action"] for e in only} <= {"token.created", "token.revoked", "token.used"}
    assert {e["actor_id"] for e in audit_since(world, mark, actor=person.id)} == {person.id}
    page = world.admin.get("/audit", query_string={"limit": 2}).get_json()["items"]
    older = world.admin.get(
        "/audit", query_string={"limit": 2, "before": page[-1]["id"]}
    ).get_json()["items"]
    assert len(page) == 2 and all(e["id"] < page[-1]["id"] for e in older)
    for bad in ({"limit": 0}, {"limit": 501}, {"limit": "x"}, {"actor": "me"}, {"before": "1;"}):
        error_of(world.admin.get("/audit", query_string=bad), 400)
    error_of(person.api.get("/audit"), 403)


# --- sign-in pages --------------------------------------------------------------------------------

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    response = client.get(path)
    assert response.status_code == 200, response.status_code
    found = CSRF.search(response.get_data(as_text=True))
    assert found, "no CSRF token in the form"
    return found.group(1)


def sign_in(
    client: FlaskClient,
    email: str,
    password: str,
    *,
    expected: int = 302,
    next_url: str | None = None,
    **kwargs: Any,
) -> Any:
    form = {"csrf_token": csrf_token(client), "email": email, "password": password}
    if next_url is not None:
        form["next"] = next_url
    response = client.post("/login", data=form, **kwargs)
    assert response.status_code == expected, (
        response.status_code,
        response.get_data(as_text=True)[:300],
    )
    return response


def signed_in_as(client: FlaskClient) -> str | None:
    """The name on the start page, or None when it sends us to sign in."""
    response = client.get("/")
    if response.status_code == 302:
        assert urlsplit(response.headers["Location"]).path == "/login"
        return None
    assert response.status_code == 200
    text: str = response.get_data(as_text=True)
    return text


def session_of(world: World, client: FlaskClient) -> dict[str, Any]:
    """What the browser's signed session cookie holds."""
    cookie = client.get_cookie("session")
    if cookie is None:
        return {}
    serializer = world.app.session_interface.get_signing_serializer(world.app)
    return dict(serializer.loads(cookie.value))


def page_user(world: World) -> Person:
    return new_person(world, ["dealer_sales"], world.dealers[EAST])


def test_the_sign_in_form_carries_a_csrf_token_and_needs_it(world: World) -> None:
    person = page_user(world)
    client = world.app.test_client()
    assert csrf_token(client)
    response = client.post("/login", data={"email": person.email, "password": "matrix password"})
    assert response.status_code == 400
    assert "user_id" not in session_of(world, client)
    assert signed_in_as(client) is None
    response = client.post(
        "/login",
        data={"email": person.email, "password": "matrix password", "csrf_token": "forged"},
    )
    assert response.status_code == 400
    assert signed_in_as(client) is None
    # a token from another browser's session does not do either
    other = world.app.test_client()
    response = client.post(
        "/login",
        data={
            "email": person.email,
            "password": "matrix password",
            "csrf_token": csrf_token(other),
        },
    )
    assert response.status_code == 400
    assert signed_in_as(client) is None


def test_signing_in_sets_a_safe_cookie_and_signing_out_ends_it(world: World) -> None:
    person = page_user(world)
    client = world.app.test_client()
    response = sign_in(client, person.email, "matrix password")
    assert urlsplit(response.headers["Location"]).path == "/"
    cookies = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert cookies, response.headers
    attributes = {
        part.strip().split("=")[0].lower(): part.strip() for part in cookies[-1].split(";")
    }
    assert "httponly" in attributes
    assert attributes["samesite"].lower() == "samesite=lax"
    page = signed_in_as(client)
    assert page is not None and person.email.split("@")[0] in page
    assert session_of(world, client)["user_id"] == person.id
    # signing out needs a POST with the form's CSRF token
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 400
    assert signed_in_as(client) is not None
    response = client.post("/logout", data={"csrf_token": csrf_token(client, "/password")})
    assert response.status_code == 302 and urlsplit(response.headers["Location"]).path == "/login"
    assert "user_id" not in session_of(world, client)
    assert signed_in_as(client) is None


def test_a_wrong_password_is_refused_and_audited(world: World) -> None:
    person = page_user(world)
    mark = last_audit_id(world)
    client = world.app.test_client()
    response = sign_in(client, person.email, "not my password", expected=401)
    assert "matrix password" not in response.get_data(as_text=True)
    assert signed_in_as(client) is None
    sign_in(client, f"nobody{next(COUNTER)}@example.com", "whatever it is", expected=401)
    failures = audit_since(world, mark, action="auth.login.failure")
    assert {e["actor_email"] for e in failures} >= {person.email}
    assert all(e["ip"] for e in failures)
    assert stored_user(world, person.id).failed_logins == 1


def test_repeated_failures_slow_down_then_lock_the_account(world: World) -> None:
    person = page_user(world)
    client = world.app.test_client()
    for _ in range(SLOW_AFTER):
        sign_in(client, person.email, "guessing", expected=401)
        set_user(world, person.id, last_failed_at=now() - dt.timedelta(hours=1))
    # within the back-off even the right password is turned away
    set_user(world, person.id, last_failed_at=now())
    response = sign_in(client, person.email, "matrix password", expected=429)
    assert int(response.headers["Retry-After"]) >= 1
    assert signed_in_as(client) is None
    # after it, the right password works and the counter starts again
    set_user(world, person.id, last_failed_at=now() - dt.timedelta(hours=1))
    sign_in(client, person.email, "matrix password")
    assert stored_user(world, person.id).failed_logins == 0
    client.post("/logout", data={"csrf_token": csrf_token(client, "/password")})
    # ten failures (each waited out) lock the account for a while
    for attempt in range(LOCK_AFTER):
        sign_in(client, person.email, f"guess {attempt}", expected=401)
        set_user(world, person.id, last_failed_at=now() - dt.timedelta(hours=1))
    locked = stored_user(world, person.id).locked_until
    assert locked is not None
    locked = locked if locked.tzinfo else locked.replace(tzinfo=dt.UTC)
    assert now() + dt.timedelta(minutes=5) < locked < now() + dt.timedelta(hours=2)
    mark = last_audit_id(world)
    response = sign_in(client, person.email, "matrix password", expected=429)
    assert int(response.headers["Retry-After"]) > 60
    assert signed_in_as(client) is None
    throttled = audit_since(world, mark, action="auth.login.throttled")
    assert [e["actor_email"] for e in throttled] == [person.email]
    assert throttled[0]["detail"]["retry_after"] > 60
    # the lock runs out
    set_user(world, person.id, locked_until=now() - dt.timedelta(seconds=1))
    sign_in(client, person.email, "matrix password")
    assert signed_in_as(client) is not None


def test_changing_the_password_signs_out_other_sessions(world: World) -> None:
    person = page_user(world)
    here, elsewhere = world.app.test_client(), world.app.test_client()
    sign_in(here, person.email, "matrix password")
    sign_in(elsewhere, person.email, "matrix password")
    token = csrf_token(here, "/password")
    for form in (
        {
            "current_password": "not it",
            "new_password": "second password",
            "confirm_password": "second password",
        },
        {
            "current_password": "matrix password",
            "new_password": "second password",
            "confirm_password": "other",
        },
        {
            "current_password": "matrix password",
            "new_password": "short",
            "confirm_password": "short",
        },
    ):
        assert here.post("/password", data={**form, "csrf_token": token}).status_code == 400
    assert (
        here.post(
            "/password",
            data={
                "current_password": "matrix password",
                "new_password": "second password",
                "confirm_password": "second password",
            },
        ).status_code
        == 400
    )
    assert signed_in_as(elsewhere) is not None
    response = here.post(
        "/password",
        data={
            "csrf_token": token,
            "current_password": "matrix password",
            "new_password": "second password",
            "confirm_password": "second password",
        },
    )
    assert response.status_code == 302
    assert signed_in_as(here) is not None
    assert signed_in_as(elsewhere) is None
    fresh = world.app.test_client()
    sign_in(fresh, person.email, "matrix password", expected=401)
    set_user(world, person.id, last_failed_at=None, failed_logins=0)
    sign_in(fresh, person.email, "second password")
    # an administrator's reset over the API ends the sessions too
    response = world.admin.patch(f"/users/{person.id}", {"password": "third password"})
    assert response.status_code == 200
    assert signed_in_as(here) is None and signed_in_as(fresh) is None
    sign_in(fresh, person.email, "third password")


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "//evil.example/path",
        "https://evil.example",
        "http:evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        " //evil.example",
        "javascript:alert(1)",
        "evil.example",
    ],
)
def test_next_never_leaves_the_site(world: World, target: str) -> None:
    person = page_user(world)
    client = world.app.test_client()
    response = sign_in(client, person.email, "matrix password", next_url=target)
    location = response.headers["Location"]
    parts = urlsplit(location)
    assert not parts.scheme and not parts.netloc, location
    assert location.startswith("/") and not location.startswith(("//", "/\\")), location
    assert "\\" not in location and "\t" not in location
    # the sign-in page of a signed-in user redirects the same way
    response = client.get("/login", query_string={"next": target})
    assert response.status_code == 302
    location = response.headers["Location"]
    assert not urlsplit(location).netloc and not location.startswith(("//", "/\\")), location
    assert "\\" not in location and "\t" not in location


def test_next_keeps_a_path_on_the_site(world: World) -> None:
    person = page_user(world)
    client = world.app.test_client()
    response = sign_in(client, person.email, "matrix password", next_url="/password?x=1")
    assert response.headers["Location"] == "/password?x=1"


def test_a_deactivated_users_session_ends(world: World) -> None:
    person = page_user(world)
    client = world.app.test_client()
    sign_in(client, person.email, "matrix password")
    assert signed_in_as(client) is not None
    assert world.admin.patch(f"/users/{person.id}", {"is_active": False}).status_code == 200
    assert signed_in_as(client) is None
    # nor can they sign in again
    sign_in(client, person.email, "matrix password", expected=401)
    assert world.admin.patch(f"/users/{person.id}", {"is_active": True}).status_code == 200


def test_odd_input_on_the_sign_in_form_is_refused_not_an_error(world: World) -> None:
    client = world.app.test_client()
    for email, password in (
        ("nul\x00@example.com", "whatever it is"),
        ("x' OR '1'='1", "' OR '1'='1"),
        ("", ""),
        ("a" * 5000, "b" * 5000),
        (ADMIN_EMAIL, "\x00"),
    ):
        sign_in(client, email, password, expected=401)
    assert signed_in_as(client) is None


def test_the_page_session_reads_the_api_but_writes_only_with_csrf(world: World) -> None:
    """A signed-in browser may read the API with its cookie; a write needs the CSRF header."""
    person = page_user(world)
    client = world.app.test_client()
    sign_in(client, person.email, "matrix password")
    assert client.get("/api/v1/me").get_json()["email"] == person.email
    error_of(client.post("/api/v1/tokens", json={"name": "from a cookie"}), 403, "csrf_failed")
