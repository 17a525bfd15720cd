"""The permission matrix and the partner-hierarchy scopes, on SQLite and PostgreSQL.

Every channel-pack role × object × operation is checked over the API against an
expectation computed here, independently of the runtime: the scopes come from the
pack's role documents (read as JSON), the partner trees from the dealers' ``parent``
pointers (not from ``hierarchy_links``), and the records from an administrator's
view of the data. Nothing about who may see what is copied by hand.

One database per kind serves the whole module (the channel pack with its demo data and
demo users); tests add their own records and never rely on another test's.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from flask import Flask
from openapi_spec_validator import validate

from tests.conftest import ADMIN_EMAIL, Api, WorkerDatabases, app_of_copy
from tests.platform.runtime.helpers import detail_fields, error_of
from trellis.extensions import Database, database_of
from trellis.platform.runtime.identity.tokens import issue_token
from trellis.platform.runtime.models import HierarchyLink, User
from trellis.platform.runtime.packs import resolve_pack

PACK = resolve_pack("channel_pack")
ROLE_DOCS: dict[str, dict[str, Any]] = {
    doc["x-name"]: doc
    for doc in (json.loads(path.read_text()) for path in sorted((PACK / "roles").glob("*.json")))
}
OBJECT_DOCS: dict[str, dict[str, Any]] = {
    doc["x-name"]: doc
    for doc in (json.loads(path.read_text()) for path in sorted((PACK / "objects").glob("*.json")))
}
ROLES = sorted(ROLE_DOCS)
OBJECTS = ("dealer", "product", "sales_order", "order_line")
SYSTEM_KEYS = ["id", "version", "created_at", "created_by", "updated_at", "updated_by", "owner_id"]
# The field that ties a record to a partner: the dealer's own parent, an order's
# dealer, a line's order (whose dealer decides). Products belong to no partner.
PARTNER_FIELD = {"dealer": "parent", "sales_order": "dealer", "order_line": "sales_order"}
COUNTER = itertools.count(1)

# Demo data (see channel_pack/demo): dealer codes of the tree used below.
NATIONAL, EAST, NORTH = "D-0001", "D-0101", "D-0102"
SUB_EAST_1, SUB_EAST_2 = "D-1011", "D-1012"
EAST_ADMIN, EAST_SALES = "east.admin@example.com", "east.sales@example.com"
NORTH_ADMIN, SUB_EAST_1_ADMIN = "north.admin@example.com", "sub.east1.admin@example.com"
HQ = "hq@example.com"


def test_the_pack_declares_what_the_matrix_covers() -> None:
    assert ROLES == ["channel_manager", "dealer_admin", "dealer_sales", "finance", "hq_admin"]
    assert set(OBJECT_DOCS) == set(OBJECTS)
    for role, doc in ROLE_DOCS.items():
        assert set(doc["objects"]) <= set(OBJECTS), role


# --- the world: one database per kind, for the whole module ------------------------------


@dataclass
class Person:
    id: int
    email: str
    partner: int | None
    roles: list[str]
    api: Api


def token_for(database: Database, email: str) -> str:
    with database.session() as session:
        token = issue_token(session, email, name="tests")
        session.commit()
    return token


class World:
    """The app, an admin client, the demo dealers by code, and people to act as."""

    def __init__(self, app: Flask, kind: str) -> None:
        self.app = app
        self.database = database_of(app)
        self.kind = kind
        self.client = app.test_client()
        self.admin = Api(self.client, token_for(self.database, ADMIN_EMAIL))
        self.dealers = {d["code"]: d["id"] for d in self.rows("dealer")}
        self.product = min(p["id"] for p in self.rows("product"))
        self._people: dict[str, Person] = {}
        # Credit is not what these tests are about: the pack's credit rule stays out of it.
        for dealer in self.rows("dealer"):
            answer = self.admin.patch(
                f"/records/dealer/{dealer['id']}",
                {"version": dealer["version"], "credit_limit": 10**12},
            )
            if answer.status_code == 409:  # the demo's applicant, awaiting approval
                assert answer.get_json()["error"]["code"] == "awaiting_approval"
                continue
            assert answer.status_code == 200, answer.get_json()

    def rows(self, object_name: str, api: Api | None = None, **params: Any) -> list[dict[str, Any]]:
        response = (api or self.admin).get(
            f"/records/{object_name}", query_string={"limit": 500, **params}
        )
        assert response.status_code == 200, response.get_json()
        items: list[dict[str, Any]] = response.get_json()["items"]
        assert len(items) < 500
        return items

    def person(self, email: str) -> Person:
        """A user of the database (a demo user, or one made by ``new_user``) with a token."""
        if email not in self._people:
            users = self.admin.get("/users").get_json()["items"]
            user = next(u for u in users if u["email"] == email)
            api = Api(self.app.test_client(), token_for(self.database, email))
            self._people[email] = Person(user["id"], email, user["partner"], user["roles"], api)
        return self._people[email]

    def new_user(self, roles: list[str], partner: int | None, **extra: Any) -> Person:
        email = f"user{next(COUNTER)}@matrix.example"
        body = {"email": email, "password": "matrix password", "roles": roles, **extra}
        if partner is not None:
            body["partner"] = partner
        response = self.admin.post("/users", body)
        assert response.status_code == 201, response.get_json()
        return self.person(email)

    def role_user(self, role: str) -> Person:
        """One non-admin user per role; those of partner-scoped roles work for the east
        regional dealer (a partner goes only with such a role)."""
        key = f"role:{role}"
        if key not in self._people:
            partner = self.dealers[EAST] if partner_scoped(role) else None
            self._people[key] = self.new_user([role], partner)
        return self._people[key]

    def create(self, object_name: str, values: dict[str, Any], api: Api | None = None) -> Any:
        response = (api or self.admin).post(f"/records/{object_name}", values)
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    def patch(self, object_name: str, record_id: int, values: dict[str, Any]) -> Any:
        version = self.admin.get(f"/records/{object_name}/{record_id}").get_json()["version"]
        response = self.admin.patch(
            f"/records/{object_name}/{record_id}", {"version": version, **values}
        )
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def version(self, object_name: str, record_id: int) -> int:
        response = self.admin.get(f"/records/{object_name}/{record_id}")
        assert response.status_code == 200, response.get_json()
        return int(response.get_json()["version"])

    def snapshot(self) -> Snapshot:
        return Snapshot({name: {r["id"]: r for r in self.rows(name)} for name in OBJECTS})

    def audit(self, action: str) -> list[dict[str, Any]]:
        response = self.admin.get("/audit", query_string={"action": action, "limit": 500})
        assert response.status_code == 200, response.get_json()
        items: list[dict[str, Any]] = response.get_json()["items"]
        return items


def open_world(
    request: pytest.FixtureRequest, tmp_path_factory: Any, worker_id: str, tag: str
) -> Iterator[World]:
    """A module's database (``request.param``: sqlite or postgresql) with the pack: a copy
    of the ``channel_demo`` template (the pack and its demo data, installed on a migrated
    database), its own for the module: the function-scoped fixtures copy others."""
    kind = request.param
    databases: WorkerDatabases = request.getfixturevalue("test_databases")
    if kind == "sqlite":
        url = databases.sqlite_copy("channel_demo", tmp_path_factory.mktemp(tag) / "trellis.db")
    else:
        url = databases.pg_copy("channel_demo")
    app = app_of_copy(url)
    try:
        # No application context is pushed: each request gets its own (and its own ``g``).
        yield World(app, kind)
    finally:
        database_of(app).engine.dispose()
        if kind == "postgresql":
            databases.drop_later(url)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: Any, worker_id: str) -> Iterator[World]:
    yield from open_world(request, tmp_path_factory, worker_id, "perm")


# --- the oracle: what a role document and a partner allow ---------------------------------


@dataclass
class Snapshot:
    """Every live record, as an administrator sees it: {object: {id: record}}."""

    records: dict[str, dict[int, dict[str, Any]]]

    def subtree(self, root: int | None) -> set[int]:
        """``root`` and every dealer below it, from the parent pointers."""
        if root is None:
            return set()
        children: dict[int | None, list[int]] = defaultdict(list)
        for dealer_id, dealer in self.records["dealer"].items():
            children[dealer["parent"]].append(dealer_id)
        found, todo = set(), [root]
        while todo:
            node = todo.pop()
            if node not in found:
                found.add(node)
                todo.extend(children[node])
        return found

    def partner(self, object_name: str, record: dict[str, Any]) -> int | None:
        if object_name == "dealer":
            return int(record["id"])
        if object_name == "sales_order":
            return int(record["dealer"])
        if object_name == "order_line":
            return int(self.records["sales_order"][record["sales_order"]]["dealer"])
        return None

    def in_scope(self, scope: str, object_name: str, record: dict[str, Any], who: Person) -> bool:
        if scope == "all":
            return True
        if scope == "own":
            return record["owner_id"] == who.id
        if scope == "hierarchy":
            partner = self.partner(object_name, record)
            return partner is not None and partner in self.subtree(who.partner)
        assert scope == "none", scope
        return False

    def ids(self, scope: str, object_name: str, who: Person) -> set[int]:
        return {
            record_id
            for record_id, record in self.records[object_name].items()
            if self.in_scope(scope, object_name, record, who)
        }


def scope_of(role: str, object_name: str, operation: str) -> str:
    scope: str = ROLE_DOCS[role]["objects"].get(object_name, {}).get(operation, "none")
    return scope


def partner_scoped(role: str) -> bool:
    """Whether the role grants some operation the ``hierarchy`` scope (needing a partner)."""
    operations = ("read", "create", "update", "delete", "export")
    return any(scope_of(role, o, op) == "hierarchy" for o in OBJECTS for op in operations)


def access_of(role: str, object_name: str, field_name: str) -> str:
    """One role's access to a field: as listed, else write for roles that write the object."""
    grant = ROLE_DOCS[role]["objects"].get(object_name)
    if grant is None:
        return "hidden"
    writes = any(grant.get(op, "none") != "none" for op in ("create", "update"))
    access: str = grant.get("fields", {}).get(field_name, "write" if writes else "read")
    return access


def fields_of(object_name: str) -> list[str]:
    return list(OBJECT_DOCS[object_name]["properties"])


def settable(object_name: str, field_name: str) -> bool:
    """Whether the definition lets anybody set the field (autonumbers are the platform's)."""
    prop = OBJECT_DOCS[object_name]["properties"][field_name]
    return not prop.get("readOnly") and prop["x-type"] not in ("autonumber", "formula", "rollup")


def visible_fields(role: str, object_name: str) -> list[str]:
    return [f for f in fields_of(object_name) if access_of(role, object_name, f) != "hidden"]


def record_keys(role: str, object_name: str, with_children: bool = False) -> set[str]:
    keys = set(SYSTEM_KEYS) | set(visible_fields(role, object_name))
    if (
        with_children
        and object_name == "sales_order"
        and scope_of(role, "order_line", "read") != "none"
    ):
        keys.add("lines")
    return keys


def sample_value(world: World, object_name: str, field_name: str) -> Any:
    """A valid value for any field of the pack's objects."""
    prop = OBJECT_DOCS[object_name]["properties"][field_name]
    kind, n = prop["x-type"], next(COUNTER)
    if prop.get("x-unique"):
        return f"M-{n:05d}" if field_name == "code" else f"Matrix {object_name} {n}"
    if kind == "lookup":
        return world.product if prop["x-target"] == "product" else world.dealers[EAST]
    if kind == "master_detail":
        return east_order(world)
    if field_name == "credit_limit":  # ample: the pack's credit rule is not under test here
        return 10**12 + n
    return {
        "text": f"text {n}",
        "textarea": f"notes {n}",
        "currency": 100 + n,
        "number": n,
        "percent": 5,
        "integer": 1 + n % 5,
        "boolean": False,
        "date": "2025-12-24",
        "picklist": prop.get("enum", [None])[-1],
        "multipicklist": prop.get("items", {}).get("enum", [])[:1],
        "email": f"m{n}@example.com",
        "phone": "+86 10 1234 5678",
        "url": "https://example.com/m",
    }[kind]


def east_order(world: World) -> int:
    """A demo order of the east regional dealer itself."""
    east = world.dealers[EAST]
    return min(o["id"] for o in world.rows("sales_order") if o["dealer"] == east)


# The pack's workflows move these; a plain update of them is refused (test_workflows.py).
WORKFLOW_STATUS = {"sales_order": "status", "dealer": "onboarding_status"}


def north_order(world: World) -> int:
    north = world.dealers[NORTH]
    return min(o["id"] for o in world.rows("sales_order") if o["dealer"] == north)


def new_values(world: World, object_name: str, target: int | None) -> dict[str, Any]:
    """The smallest valid new record; ``target`` is its partner (a dealer, or a line's order)."""
    n = next(COUNTER)
    if object_name == "dealer":
        return {"name": f"Matrix dealer {n}", "code": f"MX-{n:05d}", "parent": target}
    if object_name == "product":
        return {"sku": f"MX-{n}", "name": f"Matrix product {n}", "list_price": 10}
    if object_name == "sales_order":
        return {"dealer": target, "order_date": "2025-12-01"}
    return {"sales_order": target, "product": world.product, "quantity": 2, "unit_price": 5}


def inside_target(world: World, object_name: str) -> int | None:
    return east_order(world) if object_name == "order_line" else world.dealers[EAST]


def outside_target(world: World, object_name: str) -> int | None:
    return north_order(world) if object_name == "order_line" else world.dealers[NORTH]


def csv_of(response: Any) -> list[list[str]]:
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == "text/csv"
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def csv_ids(response: Any) -> set[int]:
    return {int(row[0]) for row in csv_of(response)[1:]}


def listed_ids(api: Api, object_name: str, **params: Any) -> set[int]:
    response = api.get(f"/records/{object_name}", query_string={"limit": 500, **params})
    assert response.status_code == 200, response.get_json()
    return {item["id"] for item in response.get_json()["items"]}


# --- the matrix ---------------------------------------------------------------------------


class Cells:
    """Collects every mismatch of one role × object, so a failure shows them all."""

    def __init__(self, role: str, object_name: str) -> None:
        self.where = f"{role} × {object_name}"
        self.problems: list[str] = []

    def expect(self, operation: str, ok: bool, message: str) -> None:
        if not ok:
            self.problems.append(f"{operation}: {message}")

    def status(self, operation: str, response: Any, expected: int, what: str = "") -> bool:
        if response.status_code != expected:
            body = response.get_json(silent=True)
            self.problems.append(
                f"{operation} {what}: expected {expected}, got {response.status_code} {body}"
            )
            return False
        return True

    def check(self) -> None:
        assert not self.problems, f"{self.where}:\n  " + "\n  ".join(self.problems)


@pytest.mark.parametrize("object_name", OBJECTS)
@pytest.mark.parametrize("role", ROLES)
def test_permission_matrix(world: World, role: str, object_name: str) -> None:
    """read list · read one · export · create · update · delete, as the role document says."""
    who = world.role_user(role)
    api = who.api
    cells = Cells(role, object_name)
    snap = world.snapshot()
    records = snap.records[object_name]
    scopes = {
        op: scope_of(role, object_name, op)
        for op in ("read", "create", "update", "delete", "export")
    }
    readable = snap.ids(scopes["read"], object_name, who)

    # read: the list, and every single record
    response = api.get(f"/records/{object_name}", query_string={"limit": 500})
    if scopes["read"] == "none":
        cells.status("list", response, 403)
    elif cells.status("list", response, 200):
        items = response.get_json()["items"]
        cells.expect(
            "list",
            {i["id"] for i in items} == readable,
            f"ids {sorted(i['id'] for i in items)} != {sorted(readable)}",
        )
        wrong = [i["id"] for i in items if set(i) != record_keys(role, object_name)]
        cells.expect("list", not wrong, f"records {wrong} show other keys than the role's")
    line_scope = scope_of(role, "order_line", "read")
    for record_id in sorted(records):
        response = api.get(f"/records/{object_name}/{record_id}")
        expected = 403 if scopes["read"] == "none" else 200 if record_id in readable else 404
        if not cells.status("get", response, expected, f"{object_name}/{record_id}"):
            continue
        if expected != 200:
            continue
        body = response.get_json()
        keys = record_keys(role, object_name, with_children=True)
        cells.expect(
            "get", set(body) == keys, f"{record_id}: keys {sorted(set(body) ^ keys)} differ"
        )
        if "lines" in body:
            lines = {line["id"] for line in body["lines"]}
            own_lines = {
                i
                for i, line in snap.records["order_line"].items()
                if line["sales_order"] == record_id
            }
            visible = own_lines & snap.ids(line_scope, "order_line", who)
            cells.expect("get", lines == visible, f"{record_id}: lines {lines} != {visible}")

    # export: CSV of the export scope, hidden fields left out of the header too
    response = api.get(f"/records/{object_name}/export")
    if scopes["export"] == "none":
        cells.status("export", response, 403)
    elif cells.status("export", response, 200):
        rows = csv_of(response)
        header = ["id", *visible_fields(role, object_name)]
        cells.expect("export", rows[0] == header, f"header {rows[0]} != {header}")
        exported = {int(row[0]) for row in rows[1:]}
        expected_ids = snap.ids(scopes["export"], object_name, who)
        cells.expect(
            "export", exported == expected_ids, f"ids {sorted(exported)} != {sorted(expected_ids)}"
        )

    # create: inside the partner tree, and (for a hierarchy scope) outside it
    values = new_values(world, object_name, inside_target(world, object_name))
    denied_fields = {f for f in values if access_of(role, object_name, f) != "write"}
    response = api.post(f"/records/{object_name}", values)
    created = None
    if scopes["create"] == "none":
        cells.status("create", response, 403)
    elif denied_fields:
        if cells.status("create", response, 403, "with fields the role may not write"):
            cells.expect(
                "create",
                detail_fields(response.get_json()["error"]) >= denied_fields,
                f"refusal does not name {denied_fields}",
            )
    else:
        would_be = {**values, "id": 0, "owner_id": who.id}
        in_scope = snap.in_scope(scopes["create"], object_name, would_be, who)
        if cells.status("create", response, 201 if in_scope else 403, "inside the tree"):
            created = response.get_json()
            cells.expect(
                "create",
                set(created) == record_keys(role, object_name),
                f"answer keys {sorted(created)}",
            )
            cells.expect("create", created["owner_id"] == who.id, "owner is not the creator")
        if scopes["create"] == "hierarchy" and object_name in PARTNER_FIELD:
            target = outside_target(world, object_name)
            target_object = "sales_order" if object_name == "order_line" else "dealer"
            response = api.post(f"/records/{object_name}", new_values(world, object_name, target))
            target_readable = target in snap.ids(
                scope_of(role, target_object, "read"), target_object, who
            )
            if (
                cells.status(
                    "create", response, 403 if target_readable else 422, "outside the tree"
                )
                and not target_readable
            ):
                message = json.dumps(response.get_json())
                cells.expect("create", f"no {target_object} with id {target}" in message, message)

    # update: a record in scope, one readable but outside the update scope, one unreadable
    snap = world.snapshot()
    records = snap.records[object_name]
    readable = snap.ids(scopes["read"], object_name, who)
    updatable = snap.ids(scopes["update"], object_name, who) & readable
    writable = [
        f
        for f in fields_of(object_name)
        if settable(object_name, f)
        and access_of(role, object_name, f) == "write"
        and not OBJECT_DOCS[object_name]["properties"][f].get("x-unique")
        and OBJECT_DOCS[object_name]["properties"][f]["x-type"] not in ("lookup", "master_detail")
        and f != WORKFLOW_STATUS.get(object_name)  # moved by transitions only
    ]
    not_writable = [
        f
        for f in fields_of(object_name)
        if settable(object_name, f) and access_of(role, object_name, f) != "write"
    ]
    some = min(readable) if readable else min(records)
    if scopes["update"] == "none":
        any_field = next(f for f in fields_of(object_name) if settable(object_name, f))
        response = api.patch(
            f"/records/{object_name}/{some}",
            {
                "version": records[some]["version"],
                any_field: sample_value(world, object_name, any_field),
            },
        )
        cells.status("update", response, 403)
    else:
        # the data must give every granted right something to be tried on
        cells.expect("update", bool(updatable), "nothing in the update scope to try")
        cells.expect("update", bool(writable), "no field the role may write")
        if updatable and writable:
            target = max(updatable)
            field_name = writable[0]
            value = sample_value(world, object_name, field_name)
            response = api.patch(
                f"/records/{object_name}/{target}",
                {"version": world.version(object_name, target), field_name: value},
            )
            if cells.status("update", response, 200, f"{object_name}/{target}.{field_name}"):
                body = response.get_json()
                cells.expect(
                    "update",
                    body.get(field_name) == value,
                    f"{field_name} is {body.get(field_name)}",
                )
                cells.expect(
                    "update",
                    set(body) == record_keys(role, object_name),
                    f"answer keys {sorted(body)}",
                )
        if updatable and not_writable:
            target = max(updatable)
            for field_name in not_writable:
                response = api.patch(
                    f"/records/{object_name}/{target}",
                    {
                        "version": world.version(object_name, target),
                        field_name: sample_value(world, object_name, field_name),
                    },
                )
                if cells.status(
                    "update",
                    response,
                    403,
                    f"{field_name} ({access_of(role, object_name, field_name)})",
                ):
                    named = detail_fields(response.get_json()["error"])
                    cells.expect("update", named == {field_name}, f"refusal names {named}")

        def change(record_id: int) -> Any:
            body = {"version": records[record_id]["version"]}
            if writable:
                body[writable[0]] = sample_value(world, object_name, writable[0])
            return api.patch(f"/records/{object_name}/{record_id}", body)

        for record_id in sorted(readable - updatable)[:1]:
            cells.status("update", change(record_id), 403, f"{record_id} (readable, not updatable)")
        for record_id in sorted(set(records) - readable)[:1]:
            cells.status("update", change(record_id), 404, f"{record_id} (unreadable)")

    # delete: a fresh record in scope; a readable one outside the delete scope; an unreadable one
    if scopes["delete"] == "none":
        cells.status("delete", api.delete(f"/records/{object_name}/{some}"), 403)
    else:
        if scopes["delete"] == "own":
            fresh = created or (
                world.create(
                    object_name,
                    new_values(world, object_name, inside_target(world, object_name)),
                    api,
                )
                if scopes["create"] != "none"
                else None
            )
        else:
            fresh = world.create(
                object_name, new_values(world, object_name, inside_target(world, object_name))
            )
        cells.expect("delete", fresh is not None, "nothing in the delete scope to try")
        if fresh is not None:
            cells.status("delete", api.delete(f"/records/{object_name}/{fresh['id']}"), 204)
            cells.status(
                "delete",
                world.admin.get(f"/records/{object_name}/{fresh['id']}"),
                404,
                "after delete",
            )
        snap = world.snapshot()
        records = snap.records[object_name]
        readable = snap.ids(scopes["read"], object_name, who)
        deletable = snap.ids(scopes["delete"], object_name, who)
        outside = sorted(readable - deletable)
        if outside:
            cells.status(
                "delete",
                api.delete(f"/records/{object_name}/{outside[0]}"),
                403,
                "readable, not deletable",
            )
        hidden_from = sorted(set(records) - readable)
        if hidden_from:
            cells.status(
                "delete", api.delete(f"/records/{object_name}/{hidden_from[0]}"), 404, "unreadable"
            )
        after = world.snapshot().records[object_name]
        cells.expect("delete", set(after) == set(records), "a refused delete removed something")
    cells.check()


@pytest.mark.parametrize("role", ROLES)
def test_openapi_describes_what_each_role_may_see_and_write(world: World, role: str) -> None:
    doc = world.role_user(role).api.get("/openapi.json").get_json()
    validate(doc)  # each caller's document is a valid OpenAPI 3.1 document on its own
    schemas = doc["components"]["schemas"]
    for object_name in OBJECTS:
        base = "".join(part.title() for part in object_name.split("_"))
        if scope_of(role, object_name, "read") == "none":
            assert base not in schemas and f"/records/{object_name}" not in doc["paths"]
            continue
        assert set(schemas[base]["properties"]) == record_keys(
            role, object_name, with_children=True
        )
        writable = {
            f
            for f in fields_of(object_name)
            if settable(object_name, f) and access_of(role, object_name, f) == "write"
        }
        children = {"lines"} if "lines" in schemas[base]["properties"] else set()
        assert set(schemas[f"{base}Input"]["properties"]) == writable | children, object_name
        assert set(schemas[f"{base}Patch"]["properties"]) == writable | {"version"}, object_name
        for name, prop in schemas[base]["properties"].items():
            if name in fields_of(object_name):
                assert prop.get("readOnly", False) is (name not in writable), (object_name, name)
        # Only the operations the role grants are described.
        listed = doc["paths"][f"/records/{object_name}"]
        one = doc["paths"][f"/records/{object_name}/{{id}}"]
        assert ("post" in listed) is (scope_of(role, object_name, "create") != "none")
        assert ("patch" in one) is (scope_of(role, object_name, "update") != "none")
        assert ("delete" in one) is (scope_of(role, object_name, "delete") != "none")
        exported = f"/records/{object_name}/export" in doc["paths"]
        assert exported is (scope_of(role, object_name, "export") != "none")


# --- partner trees: siblings, parents, moves ------------------------------------------------


def tree_records(snap: Snapshot, root: int) -> dict[str, set[int]]:
    """The dealers, orders and lines of the tree below ``root``."""
    dealers = snap.subtree(root)
    orders = {i for i, o in snap.records["sales_order"].items() if o["dealer"] in dealers}
    lines = {i for i, line in snap.records["order_line"].items() if line["sales_order"] in orders}
    return {"dealer": dealers, "sales_order": orders, "order_line": lines}


def test_sibling_dealers_never_see_each_other(world: World) -> None:
    east, north = world.person(EAST_ADMIN), world.person(NORTH_ADMIN)
    snap = world.snapshot()
    for me, other in ((east, north), (north, east)):
        assert me.partner is not None and other.partner is not None
        mine, theirs = tree_records(snap, me.partner), tree_records(snap, other.partner)
        for name in ("dealer", "sales_order", "order_line"):
            assert theirs[name] and mine[name], name  # the demo data has both
            assert not mine[name] & theirs[name]
            assert listed_ids(me.api, name) == mine[name], (me.email, name)
            assert csv_ids(me.api.get(f"/records/{name}/export")) == mine[name]
            # asking for their ids outright finds nothing either
            filtered = json.dumps([["id", "in", sorted(theirs[name])]])
            assert listed_ids(me.api, name, filter=filtered) == set()
            assert (
                csv_ids(me.api.get(f"/records/{name}/export", query_string={"filter": filtered}))
                == set()
            )
            for record_id in sorted(theirs[name]):
                version = snap.records[name][record_id]["version"]
                for response in (
                    me.api.get(f"/records/{name}/{record_id}"),
                    me.api.get(f"/records/{name}/{record_id}/history"),
                    me.api.patch(f"/records/{name}/{record_id}", {"version": version}),
                ):
                    error_of(response, 404, "not_found")
                # restoring needs the delete right: refused outright without it (no id leaks)
                restore = me.api.post(f"/records/{name}/{record_id}/restore")
                error_of(
                    restore, 403 if scope_of("dealer_admin", name, "delete") == "none" else 404
                )
            for line_id in sorted(theirs["order_line"])[:2]:
                error_of(me.api.delete(f"/records/order_line/{line_id}"), 404, "not_found")
        their_dealer = other.partner
        assert (
            listed_ids(me.api, "sales_order", filter=json.dumps([["dealer", "=", their_dealer]]))
            == set()
        )
        # an order's lines: exactly its own, and none of theirs
        for order_id in sorted(mine["sales_order"]):
            body = me.api.get(f"/records/sales_order/{order_id}").get_json()
            expected = {
                i
                for i in mine["order_line"]
                if snap.records["order_line"][i]["sales_order"] == order_id
            }
            assert {line["id"] for line in body["lines"]} == expected
        # lookups refuse the other's records as if they did not exist
        error = error_of(
            me.api.post(
                "/records/sales_order", {"dealer": their_dealer, "order_date": "2025-01-02"}
            ),
            422,
        )
        assert error["details"] == [
            {"field": "dealer", "message": f"no dealer with id {their_dealer}"}
        ]
        # Later states lock the dealer (the workflow's rule, checked first): a draft shows
        # the reference check; without one, the lock refuses it all the same.
        orders = snap.records["sales_order"]
        drafts = [i for i in mine["sales_order"] if orders[i]["status"] == "draft"]
        my_order = min(drafts or mine["sales_order"])
        error = error_of(
            me.api.patch(
                f"/records/sales_order/{my_order}",
                {"version": world.version("sales_order", my_order), "dealer": their_dealer},
            ),
            422,
        )
        expected = (
            f"no dealer with id {their_dealer}"
            if drafts
            else f"is locked while the record is {orders[my_order]['status']}"
        )
        assert error["details"] == [{"field": "dealer", "message": expected}]
        their_order = min(theirs["sales_order"])
        error = error_of(
            me.api.post(
                "/records/order_line",
                {
                    "sales_order": their_order,
                    "product": world.product,
                    "quantity": 1,
                    "unit_price": 1,
                },
            ),
            422,
        )
        assert f"no sales_order with id {their_order}" in json.dumps(error)
    assert world.snapshot().records == snap.records  # nothing above changed anything


def test_a_parent_sees_its_sub_dealers_and_not_the_other_way_round(world: World) -> None:
    snap = world.snapshot()
    east, sub = world.person(EAST_ADMIN), world.person(SUB_EAST_1_ADMIN)
    east_id, sub_id = world.dealers[EAST], world.dealers[SUB_EAST_1]
    assert sub.partner == sub_id and east.partner == east_id
    assert snap.records["dealer"][sub_id]["parent"] == east_id
    below = tree_records(snap, sub_id)
    whole = tree_records(snap, east_id)
    assert below["sales_order"] and below["sales_order"] < whole["sales_order"]
    # the regional admin sees the sub-dealer's orders and lines
    for name in ("dealer", "sales_order", "order_line"):
        assert listed_ids(east.api, name) >= below[name]
        assert listed_ids(sub.api, name) == below[name]
    for order_id in below["sales_order"]:
        assert east.api.get(f"/records/sales_order/{order_id}").status_code == 200
    # the sub-dealer sees neither its parent, nor its parent's orders, nor its siblings
    for name in ("dealer", "sales_order", "order_line"):
        for record_id in sorted(whole[name] - below[name]):
            error_of(sub.api.get(f"/records/{name}/{record_id}"), 404)
    error_of(sub.api.get(f"/records/dealer/{world.dealers[SUB_EAST_2]}"), 404)
    error_of(sub.api.get(f"/records/dealer/{world.dealers[NATIONAL]}"), 404)
    # ... nor can it place an order for its parent
    error = error_of(
        sub.api.post("/records/sales_order", {"dealer": east_id, "order_date": "2025-01-02"}), 422
    )
    assert error["details"][0]["message"] == f"no dealer with id {east_id}"
    # the salesperson of the region sees what the region's admin sees
    assert listed_ids(world.person(EAST_SALES).api, "sales_order") == listed_ids(
        east.api, "sales_order"
    )


def closure(snap: Snapshot) -> set[tuple[int, int, int]]:
    """(ancestor, descendant, depth) of every dealer pair, from the parent pointers."""
    pairs = set()
    for dealer_id in snap.records["dealer"]:
        node, depth = dealer_id, 0
        while node is not None:
            pairs.add((node, dealer_id, depth))
            node, depth = snap.records["dealer"][node]["parent"], depth + 1
    return pairs


def stored_closure(database: Database, live: set[int]) -> set[tuple[int, int, int]]:
    links = HierarchyLink.__table__
    with database.engine.connect() as connection:
        rows = connection.execute(
            sa.select(links.c.ancestor_id, links.c.descendant_id, links.c.depth).where(
                links.c.object_name == "dealer"
            )
        ).all()
    return {(a, d, depth) for a, d, depth in rows if a in live and d in live}


def test_a_moved_dealer_takes_its_subtree_and_orders_to_the_new_parent(world: World) -> None:
    east_id, north_id = world.dealers[EAST], world.dealers[NORTH]
    moved = world.create("dealer", new_values(world, "dealer", east_id))
    child = world.create("dealer", new_values(world, "dealer", moved["id"]))
    orders = {
        world.create("sales_order", new_values(world, "sales_order", d["id"]))["id"]
        for d in (moved, child)
    }
    line = world.create("order_line", new_values(world, "order_line", min(orders)))
    mine = {"dealer": {moved["id"], child["id"]}, "sales_order": orders, "order_line": {line["id"]}}
    east, north = world.person(EAST_ADMIN), world.person(NORTH_ADMIN)
    # a dealer admin of the moved dealer itself: its subtree goes with it
    local = world.new_user(["dealer_admin"], moved["id"])
    sub = world.person(SUB_EAST_1_ADMIN)
    sub_before = {name: listed_ids(sub.api, name) for name in mine}

    def sees(who: Person, expected: bool) -> None:
        for name, record_ids in mine.items():
            listed = listed_ids(who.api, name)
            exported = csv_ids(who.api.get(f"/records/{name}/export"))
            for record_id in record_ids:
                assert (record_id in listed) is expected, (who.email, name, record_id)
                assert (record_id in exported) is expected, (who.email, name, record_id)
                status = who.api.get(f"/records/{name}/{record_id}").status_code
                assert status == (200 if expected else 404), (who.email, name, record_id)
                status = who.api.get(f"/records/{name}/{record_id}/history").status_code
                assert status == (200 if expected else 404), (who.email, name, record_id)

    sees(east, True)
    sees(north, False)
    sees(local, True)
    world.patch("dealer", moved["id"], {"parent": north_id})  # as an administrator
    sees(east, False)
    sees(north, True)
    sees(local, True)
    assert {name: listed_ids(sub.api, name) for name in mine} == sub_before
    snap = world.snapshot()
    assert stored_closure(world.database, set(snap.records["dealer"])) == closure(snap)
    # ... and back: visibility follows again at once
    world.patch("dealer", moved["id"], {"parent": east_id})
    sees(east, True)
    sees(north, False)
    snap = world.snapshot()
    assert stored_closure(world.database, set(snap.records["dealer"])) == closure(snap)


def test_a_dealer_admin_cannot_move_dealers_but_a_channel_manager_can(world: World) -> None:
    east_id, north_id = world.dealers[EAST], world.dealers[NORTH]
    leaf = world.create("dealer", new_values(world, "dealer", east_id))
    east = world.person(EAST_ADMIN)
    error = error_of(
        east.api.patch(
            f"/records/dealer/{leaf['id']}", {"version": leaf["version"], "parent": north_id}
        ),
        403,
    )
    assert detail_fields(error) == {"parent"}
    manager = world.role_user("channel_manager")
    response = manager.api.patch(
        f"/records/dealer/{leaf['id']}", {"version": leaf["version"], "parent": north_id}
    )
    assert response.status_code == 200, response.get_json()
    error_of(east.api.get(f"/records/dealer/{leaf['id']}"), 404)
    assert world.person(NORTH_ADMIN).api.get(f"/records/dealer/{leaf['id']}").status_code == 200


# --- hidden and read-only fields ------------------------------------------------------------

HIDDEN_CASES = [
    (EAST_ADMIN, "sales_order", "internal_notes"),
    (EAST_SALES, "sales_order", "internal_notes"),
    (EAST_SALES, "dealer", "credit_limit"),
]


@pytest.mark.parametrize(("email", "object_name", "hidden"), HIDDEN_CASES)
def test_hidden_fields_are_absent_from_every_output(
    world: World, email: str, object_name: str, hidden: str
) -> None:
    who = world.person(email)
    role = who.roles[0]
    assert access_of(role, object_name, hidden) == "hidden"
    assert who.partner is not None
    target = east_order(world) if object_name == "sales_order" else who.partner
    # A credit limit this large is also ample credit: the pack's credit rule stays out of it.
    n = next(COUNTER)
    secret = f"SECRET-{n}" if hidden == "internal_notes" else 77_000_000_000 + n
    world.patch(object_name, target, {hidden: secret})
    assert world.admin.get(f"/records/{object_name}/{target}").get_json()[hidden] == secret

    def clean(payload: Any) -> None:
        text = json.dumps(payload, ensure_ascii=False)
        assert hidden not in text and str(secret) not in text, text[:500]

    # one record, a list, a list with fields, a history
    clean(who.api.get(f"/records/{object_name}/{target}").get_json())
    page = who.api.get(f"/records/{object_name}", query_string={"limit": 500}).get_json()
    assert target in {item["id"] for item in page["items"]}
    clean(page)
    history = who.api.get(f"/records/{object_name}/{target}/history")
    assert history.status_code == 200
    assert len(history.get_json()["items"]) >= 2
    clean(history.get_json())
    # an order's lines are shown with the order; the dealer list of a salesperson too
    if object_name == "sales_order":
        assert "lines" in who.api.get(f"/records/sales_order/{target}").get_json()
    # the field cannot be asked for, filtered or sorted on: it does not exist for them
    for params in (
        {"fields": hidden},
        {"fields": f"id,{hidden}"},
        {"filter": json.dumps([[hidden, "=", secret]])},
        {"filter": json.dumps([[hidden, "is_null", False]])},
        {"sort": hidden},
        {"sort": f"-{hidden}"},
    ):
        for path in (f"/records/{object_name}", f"/records/{object_name}/export"):
            response = who.api.get(path, query_string=params)
            if path.endswith("export") and scope_of(role, object_name, "export") == "none":
                error_of(response, 403)
                continue
            error = error_of(response, 400, "invalid_query")
            assert "unknown" in json.dumps(error), error
    # the export leaves it out of the header and the rows
    if scope_of(role, object_name, "export") != "none":
        rows = csv_of(who.api.get(f"/records/{object_name}/export"))
        assert hidden not in rows[0]
        assert not any(str(secret) in cell for row in rows for cell in row)
    # the OpenAPI document does not describe it
    doc = who.api.get("/openapi.json").get_json()
    base = "".join(part.title() for part in object_name.split("_"))
    for schema in (base, f"{base}Input", f"{base}Patch"):
        assert hidden not in doc["components"]["schemas"][schema]["properties"]
    assert hidden not in json.dumps(doc)
    # /me says which fields are hidden from the caller
    assert hidden in who.api.get("/me").get_json()["permissions"][object_name]["hidden_fields"]
    # a write that names it is refused (naming it, when the operation itself is allowed)
    version = world.version(object_name, target)
    value = "x" if hidden == "internal_notes" else 1
    attempts = {
        "update": who.api.patch(
            f"/records/{object_name}/{target}", {"version": version, hidden: value}
        ),
        "create": who.api.post(
            f"/records/{object_name}",
            {**new_values(world, object_name, who.partner), hidden: value},
        ),
    }
    for operation, response in attempts.items():
        named = detail_fields(error_of(response, 403, "forbidden"))
        if scope_of(role, object_name, operation) == "none":
            assert named == {object_name}  # the operation is refused before any field
        elif operation == "create" or scope_of(role, object_name, "update") != "own":
            assert named == {hidden}
    assert world.admin.get(f"/records/{object_name}/{target}").get_json()[hidden] == secret
    # an administrator still sees all of it, history included
    admin_history = world.admin.get(f"/records/{object_name}/{target}/history").get_json()
    assert any(hidden in item["changes"] for item in admin_history["items"])


def test_writing_a_read_only_or_hidden_field_is_refused_naming_it(world: World) -> None:
    east = world.person(EAST_ADMIN)
    order = east_order(world)
    before = world.admin.get(f"/records/sales_order/{order}").get_json()
    version = before["version"]
    for changes, named in (
        ({"status": "paid"}, {"status"}),
        ({"internal_notes": "mine"}, {"internal_notes"}),
        ({"status": "paid", "internal_notes": "mine", "notes": "ok"}, {"status", "internal_notes"}),
    ):
        error = error_of(
            east.api.patch(f"/records/sales_order/{order}", {"version": version, **changes}),
            403,
            "forbidden",
        )
        assert detail_fields(error) == named
        for detail in error["details"]:
            assert detail["message"] in ("is read-only for you", "is hidden for you")
    error = error_of(
        east.api.post(
            "/records/sales_order",
            {"dealer": east.partner, "order_date": "2025-02-01", "status": "approved"},
        ),
        403,
    )
    assert detail_fields(error) == {"status"}
    error = error_of(
        east.api.patch(
            f"/records/dealer/{east.partner}",
            {"version": world.version("dealer", east.partner), "credit_limit": 10**9},
        ),
        403,
    )
    assert detail_fields(error) == {"credit_limit"}
    after = world.admin.get(f"/records/sales_order/{order}").get_json()
    assert after == before
    # and a field the role may write goes through
    response = east.api.patch(f"/records/sales_order/{order}", {"version": version, "notes": "ok"})
    assert response.status_code == 200, response.get_json()
    assert "internal_notes" not in response.get_json()


def test_own_scope_lets_a_salesperson_change_only_what_they_created(world: World) -> None:
    sales, admin = world.person(EAST_SALES), world.person(EAST_ADMIN)
    sub_east = world.dealers[SUB_EAST_1]
    mine = world.create("sales_order", {"dealer": sub_east, "order_date": "2025-03-01"}, sales.api)
    assert mine["owner_id"] == sales.id
    theirs = world.create(
        "sales_order", {"dealer": sub_east, "order_date": "2025-03-02"}, admin.api
    )
    demo = east_order(world)
    response = sales.api.patch(
        f"/records/sales_order/{mine['id']}", {"version": 1, "notes": "mine"}
    )
    assert response.status_code == 200, response.get_json()
    for other in (theirs["id"], demo):
        assert sales.api.get(f"/records/sales_order/{other}").status_code == 200  # readable
        error = error_of(
            sales.api.patch(
                f"/records/sales_order/{other}",
                {"version": world.version("sales_order", other), "notes": "x"},
            ),
            403,
        )
        assert "outside" in error["message"]
    error_of(
        sales.api.patch(f"/records/sales_order/{north_order(world)}", {"version": 1, "notes": "x"}),
        404,
    )
    # lines: created in any order of the tree, changed and deleted only when their own
    my_line = world.create("order_line", new_values(world, "order_line", demo), sales.api)
    their_line = world.create("order_line", new_values(world, "order_line", mine["id"]), admin.api)
    response = sales.api.patch(
        f"/records/order_line/{my_line['id']}", {"version": 1, "quantity": 3}
    )
    assert response.status_code == 200, response.get_json()
    error_of(
        sales.api.patch(f"/records/order_line/{their_line['id']}", {"version": 1, "quantity": 3}),
        403,
    )
    error_of(sales.api.delete(f"/records/order_line/{their_line['id']}"), 403)
    assert sales.api.delete(f"/records/order_line/{my_line['id']}").status_code == 204
    assert world.admin.get(f"/records/order_line/{their_line['id']}").status_code == 200
    # nobody may delete orders but HQ
    error_of(sales.api.delete(f"/records/sales_order/{mine['id']}"), 403)
    error_of(admin.api.delete(f"/records/sales_order/{mine['id']}"), 403)


def test_rights_of_several_roles_add_up(world: World) -> None:
    both = world.new_user(["dealer_sales", "finance"], world.dealers[EAST])
    snap = world.snapshot()
    assert listed_ids(both.api, "sales_order") == set(snap.records["sales_order"])  # finance: all
    order = north_order(world)
    body = both.api.get(f"/records/sales_order/{order}").get_json()
    assert "internal_notes" in body  # hidden for dealer_sales, writable for finance
    dealer = both.api.get(f"/records/dealer/{world.dealers[NORTH]}").get_json()
    assert "credit_limit" in dealer
    response = both.api.patch(
        f"/records/sales_order/{order}",
        {"version": world.version("sales_order", order), "internal_notes": "checked"},
    )
    assert response.status_code == 200, response.get_json()
    # creating stays within the salesperson's tree (finance creates nothing)
    error = error_of(
        both.api.post(
            "/records/sales_order", {"dealer": world.dealers[NORTH], "order_date": "2025-01-01"}
        ),
        403,
    )
    assert "outside" in error["message"]
    me = both.api.get("/me").get_json()
    assert me["roles"] == ["dealer_sales", "finance"]
    assert me["permissions"]["sales_order"]["scopes"]["read"] == ["all"]
    assert me["permissions"]["sales_order"]["scopes"]["create"] == ["hierarchy"]
    assert me["permissions"]["sales_order"]["hidden_fields"] == []


def test_a_role_granting_nothing_on_an_object_does_not_reveal_its_hidden_fields(
    world: World,
) -> None:
    name = f"no_orders_{next(COUNTER)}"
    empty = {
        "x-name": name,
        "x-label": {"en": "No orders"},
        "objects": {"sales_order": {"read": "none"}, "dealer": {}},
    }
    assert world.admin.post("/roles", empty).status_code == 201
    person = world.new_user(["dealer_sales", name], world.dealers[EAST])
    order = east_order(world)
    assert "internal_notes" not in person.api.get(f"/records/sales_order/{order}").get_json()
    assert "credit_limit" not in person.api.get(f"/records/dealer/{world.dealers[EAST]}").get_json()
    me = person.api.get("/me").get_json()["permissions"]
    assert me["sales_order"]["hidden_fields"] == ["internal_notes"]
    assert me["dealer"]["hidden_fields"] == ["credit_limit"]
    mine = world.create(
        "sales_order", new_values(world, "sales_order", world.dealers[EAST]), person.api
    )
    assert "internal_notes" not in mine
    error = error_of(
        person.api.patch(
            f"/records/sales_order/{mine['id']}", {"version": 1, "internal_notes": "x"}
        ),
        403,
    )
    assert detail_fields(error) == {"internal_notes"}


def test_a_dealer_user_without_a_partner_sees_no_partner_records(world: World) -> None:
    # A partner-scoped role needs a partner, so such a user is made by hand (a user from
    # before that rule, or one whose partner was taken away in the database).
    orphan = world.new_user(["dealer_admin"], world.dealers[EAST])
    with world.database.session() as session:
        session.execute(sa.update(User).where(User.id == orphan.id).values(partner_id=None))
        session.commit()
    for name in ("dealer", "sales_order", "order_line"):
        assert listed_ids(orphan.api, name) == set()
        assert csv_ids(orphan.api.get(f"/records/{name}/export")) == set()
    assert listed_ids(orphan.api, "product")  # products are readable by all dealer roles
    error_of(orphan.api.get(f"/records/dealer/{world.dealers[EAST]}"), 404)


# --- administrators ---------------------------------------------------------------------------

ADMIN_ONLY = [
    ("GET", "/objects", None),
    ("GET", "/objects/dealer", None),
    ("POST", "/objects", {"x-name": "sneaky"}),
    ("PUT", "/objects/dealer", OBJECT_DOCS["dealer"]),
    ("GET", "/objects/dealer/versions", None),
    ("GET", "/objects/dealer/versions/1", None),
    ("POST", "/objects/dealer/versions/1/restore", None),
    ("GET", "/roles", None),
    ("POST", "/roles", {"x-name": "sneaky", "x-label": {"en": "S"}, "objects": {}}),
    ("GET", "/roles/dealer_admin", None),
    ("PUT", "/roles/dealer_admin", ROLE_DOCS["hq_admin"] | {"x-name": "dealer_admin"}),
    ("GET", "/roles/dealer_admin/versions", None),
    ("GET", "/users", None),
    ("POST", "/users", {"email": "x@example.com", "password": "long enough", "is_admin": True}),
    ("GET", "/users/1", None),
    ("PATCH", "/users/1", {"password": "taken over!"}),
    ("GET", "/audit", None),
]


@pytest.mark.parametrize("role", ROLES)
def test_metadata_users_roles_and_audit_are_for_administrators_only(
    world: World, role: str
) -> None:
    who = world.role_user(role)
    revision_before = world.admin.get("/objects/dealer").get_json()["version"]
    for method, path, body in ADMIN_ONLY:
        response = who.api._call(method, path, body)
        error_of(response, 403, "forbidden")
    assert world.admin.get("/objects/dealer").get_json()["version"] == revision_before
    assert world.admin.get("/roles/dealer_admin").get_json()["role"] == ROLE_DOCS["dealer_admin"]
    # the OpenAPI document of a non-administrator has no metadata paths
    paths = who.api.get("/openapi.json").get_json()["paths"]
    assert not any(path.startswith(("/objects", "/roles", "/users", "/audit")) for path in paths)
    # ... and their own identity is theirs to see
    assert who.api.get("/me").get_json()["roles"] == [role]


def test_an_administrators_bypass_of_their_roles_is_audited(world: World) -> None:
    bare = world.new_user([], None, is_admin=True)  # an administrator holding no role
    hq = world.person(HQ)  # an administrator whose hq_admin role grants everything
    seen = {e["id"] for e in world.audit("admin.bypass")}
    order = world.create(
        "sales_order", new_values(world, "sales_order", world.dealers[NORTH]), bare.api
    )
    response = bare.api.patch(
        f"/records/sales_order/{order['id']}", {"version": 1, "notes": "bypass"}
    )
    assert response.status_code == 200, response.get_json()
    assert bare.api.get("/records/sales_order/export").status_code == 200
    assert bare.api.delete(f"/records/sales_order/{order['id']}").status_code == 204
    events = [e for e in world.audit("admin.bypass") if e["id"] not in seen]
    assert {(e["detail"]["operation"], e["target"]) for e in events} == {
        ("create", f"sales_order/{order['id']}"),
        ("update", f"sales_order/{order['id']}"),
        ("export", "sales_order"),
        ("delete", f"sales_order/{order['id']}"),
    }
    assert {(e["actor_id"], e["actor_email"]) for e in events} == {(bare.id, bare.email)}
    assert all(e["at"] for e in events)
    # reading is not a bypass worth an event; an admin acting within their roles neither
    assert bare.api.get(f"/records/dealer/{world.dealers[EAST]}").status_code == 200
    seen = {e["id"] for e in world.audit("admin.bypass")}
    other = world.create(
        "sales_order", new_values(world, "sales_order", world.dealers[NORTH]), hq.api
    )
    assert hq.api.delete(f"/records/sales_order/{other['id']}").status_code == 204
    assert hq.api.get("/records/sales_order/export").status_code == 200
    assert [e for e in world.audit("admin.bypass") if e["id"] not in seen] == []


# --- injection attempts -------------------------------------------------------------------------

NASTY = [
    "dealer; DROP TABLE users",
    "x' OR '1'='1",
    'x" OR "1"="1',
    "users--",
    "obj_dealer WHERE 1=1",
    "%",
    "_",
    "\\",
    "dealer\x00",
]


def table_counts(database: Database) -> dict[str, int]:
    counts = {}
    with database.engine.connect() as connection:
        for table in (
            "users",
            "roles",
            "api_tokens",
            "obj_dealer",
            "obj_sales_order",
            "hierarchy_links",
        ):
            counts[table] = connection.execute(
                sa.select(sa.func.count()).select_from(sa.table(table))
            ).scalar_one()
    return counts


CHEAP = {NASTY[0], NASTY[1], NASTY[-1]}


def refused(response: Any, text: str, status: int) -> None:
    """``status``; or, for a NUL (which PostgreSQL cannot hold, nor compare), a 400."""
    if "\x00" in text and response.status_code == 400:
        error_of(response, 400, "bad_request")
    else:
        error_of(response, status)


def test_injection_attempts_are_refused_or_treated_as_data(world: World) -> None:
    east = world.person(EAST_ADMIN)
    before = table_counts(world.database)
    nasty_dealer = world.create("dealer", {"name": NASTY[1], "code": f"INJ-{next(COUNTER)}"})
    created_users = created_tokens = 0
    for text in NASTY:
        # names: of objects, roles, fields — refused before they come near SQL
        quoted = quote(text, safe="")
        for path in (f"/records/{quoted}", f"/records/{quoted}/export", f"/objects/{quoted}"):
            error_of(world.admin.get(path), 404)
        for method, path, body in (
            ("GET", f"/roles/{quoted}", None),
            ("GET", f"/objects/{quoted}/versions", None),
            ("PUT", f"/objects/{quoted}", OBJECT_DOCS["product"]),
            ("PUT", f"/roles/{quoted}", ROLE_DOCS["finance"]),
            ("GET", f"/roles/{quoted}/versions", None),
            ("POST", f"/records/{quoted}", {"name": "x"}),
        ):
            # a name that does not exist (or a NUL that PostgreSQL cannot even compare)
            refused(world.admin._call(method, path, body), text, 404)
        # strings people may choose go in as data, or are refused — never a 500
        for method, path, body in (
            ("POST", "/users", {"email": f"{text}@example.com", "password": "long enough"})
            if text in CHEAP
            else ("GET", "/users", None),
            ("POST", "/users", {"email": "ok@example.com", "name": text, "password": "short"}),
            ("POST", "/tokens", {"name": text}),
            ("GET", f"/audit?action={quoted}", None),
            ("GET", f"/records/dealer?sort={quoted}", None),
        ):
            response = world.admin._call(method, path, body)
            assert response.status_code < 500, (method, path, response.get_json())
            if response.status_code == 201 and path == "/users":
                created_users += 1
                stored = world.admin.get(f"/users/{response.get_json()['id']}").get_json()
                assert stored["email"] == f"{text}@example.com".lower()
            if response.status_code == 201 and path == "/tokens":
                created_tokens += 1
                assert response.get_json()["name"] == text
        response = world.admin.post(
            "/objects", {"x-name": text, "x-label": {"en": "x"}, "type": "object", "properties": {}}
        )
        assert response.status_code in (400, 422), response.get_json()
        response = world.admin.post(
            "/roles", {"x-name": text, "x-label": {"en": "x"}, "objects": {}}
        )
        error = error_of(response, 422)
        assert "/x-name" in detail_fields(error)
        response = world.admin.post(
            "/roles",
            {
                "x-name": "probe",
                "x-label": {"en": "x"},
                "objects": {"dealer": {"read": "all", "fields": {text: "read"}}},
            },
        )
        error_of(response, 422)
        response = world.admin.post(
            "/roles",
            {"x-name": "probe", "x-label": {"en": "x"}, "objects": {text: {"read": "all"}}},
        )
        error_of(response, 422)
        response = world.admin.post(
            "/roles",
            {"x-name": "probe", "x-label": {"en": "x"}, "objects": {"dealer": {"read": text}}},
        )
        error_of(response, 422)
        for extra in ({"roles": [text]}, {"partner": text}, {"manager": text}):
            if text in CHEAP:  # each attempt hashes a password (slow on purpose)
                body = {"email": "a@b.example", "password": "long enough", **extra}
                refused(world.admin.post("/users", body), text, 422)
        # fields in filters, sorts and field lists: unknown
        for api in (world.admin, east.api):
            for params in (
                {"filter": json.dumps([[text, "=", 1]])},
                {"filter": json.dumps([["name", text, "x"]])},
                {"sort": text},
                {"fields": text},
            ):
                error_of(api.get("/records/dealer", query_string=params), 400, "invalid_query")
            # values: plain data, matched literally
            for op in ("=", "contains", "startswith", "!="):
                response = api.get(
                    "/records/dealer",
                    query_string={"filter": json.dumps([["name", op, text]]), "limit": 500},
                )
                if "\x00" in text:  # no text field can hold a NUL: refused as a value
                    error_of(response, 400, "invalid_query")
                    continue
                assert response.status_code == 200, response.get_json()
                names = {item["name"] for item in response.get_json()["items"]}
                if op == "=":
                    assert names == (
                        {text} if text == nasty_dealer["name"] and api is world.admin else set()
                    )
                elif op in ("contains", "startswith") and api is world.admin:
                    assert all(text.lower() in name.lower() for name in names), (text, names)
            response = api.get(
                "/records/sales_order", query_string={"filter": json.dumps([["status", "=", text]])}
            )
            assert response.status_code in (200, 400)
            if response.status_code == 200:
                assert response.get_json()["items"] == []
        response = world.admin.get("/audit", query_string={"action": text})
        if "\x00" not in text or response.status_code != 400:
            assert response.status_code == 200 and response.get_json()["items"] == []
    # numbers where ids go
    for path in (
        "/records/dealer/1%20OR%201=1",
        "/records/dealer/-1",
        "/records/dealer/99999999999999999999",
    ):
        assert world.admin.get(path).status_code == 404
    error_of(
        world.admin.get("/records/dealer", query_string={"filter": '[["id", "=", "1 OR 1=1"]]'}),
        400,
    )
    after = table_counts(world.database)
    assert after == {
        **before,
        "obj_dealer": before["obj_dealer"] + 1,
        "hierarchy_links": after["hierarchy_links"],
        "users": before["users"] + created_users,
        "api_tokens": before["api_tokens"] + created_tokens,
    }
    assert created_users and created_tokens  # quotes and semicolons are fine in data
    tables = set(sa.inspect(world.database.engine).get_table_names())
    assert {t for t in ("users", "obj_dealer")} <= tables
