"""Deleting an object: refused while anything depends on it, else the table goes with it."""

from __future__ import annotations

import sqlalchemy as sa

from tests.conftest import Api
from tests.factories import dealer_definition, definition, field, order_definitions
from tests.platform.runtime.helpers import (
    create,
    define,
    detail_fields,
    error_of,
    has_table,
    object_names,
    redefine,
)
from trellis.extensions import Database
from trellis.platform.runtime.models import (
    AuditEvent,
    AutonumberCounter,
    HierarchyLink,
    MetaObjectVersion,
    MetaRevision,
    RecordHistory,
)


def _revision(database: Database) -> int:
    with database.session() as session:
        return int(session.scalar(sa.select(MetaRevision.revision)) or 0)


def test_delete_drops_the_table_versions_and_record_traces(api: Api, database: Database) -> None:
    define(api, dealer_definition())
    order, line = order_definitions()
    define(api, order)
    define(api, line)
    east = create(api, "dealer", {"name": "East"})
    create(api, "dealer", {"name": "East 1", "parent": east["id"]})  # a self-reference
    create(api, "sales_order", {"dealer": east["id"], "lines": [{"quantity": 2}]})

    # The dealer is looked up by the order: refused, naming the field; nothing changes.
    before = _revision(database)
    error = error_of(api.delete("/objects/dealer"), 409, "referenced")
    assert detail_fields(error) == {"sales_order.dealer"}
    assert has_table(database, "obj_dealer") and _revision(database) == before

    # The order has lines (master-detail): refused too, while the child exists.
    error = error_of(api.delete("/objects/sales_order"), 409, "referenced")
    assert detail_fields(error) == {"order_line.sales_order"}

    # Deleting from the leaves up works; each drop takes its table and traces.
    answer = api.delete("/objects/order_line")
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json() == {"name": "order_line", "deleted": True, "version": 1}
    answer = api.delete("/objects/sales_order")
    assert answer.status_code == 200, answer.get_json()
    assert api.delete("/objects/dealer").status_code == 200
    assert object_names(api) == []
    for table in ("obj_dealer", "obj_sales_order", "obj_order_line"):
        assert not has_table(database, table)
    assert _revision(database) == before + 3
    with database.session() as session:
        for model in (RecordHistory, AutonumberCounter, HierarchyLink):
            assert session.scalar(sa.select(sa.func.count()).select_from(model)) == 0
        assert session.scalar(sa.select(sa.func.count()).select_from(MetaObjectVersion)) == 0
        event = session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "object.deleted")
        ).first()
        assert event is not None and event.target == "object/order_line"
        assert event.detail["version"] == 1
        assert event.detail["document"]["x-name"] == "order_line"

    # The name is free again: a new object of that name starts at version 1, empty.
    again = define(api, dealer_definition())
    assert again["version"] == 1
    assert api.get("/records/dealer").get_json()["items"] == []
    assert api.get("/objects/nope").status_code == 404
    error_of(api.delete("/objects/nope"), 404, "not_found")


def test_roles_and_archived_columns_block_a_delete(api: Api, database: Database) -> None:
    define(api, definition("product", {"name": field("text")}))
    define(
        api,
        definition(
            "offer",
            {
                "title": field("text"),
                "product": field("lookup", **{"x-target": "product"}),
            },
        ),
    )
    role = {
        "x-name": "seller",
        "x-label": {"en": "Seller"},
        "objects": {"product": {"read": "all"}},
    }
    assert api.post("/roles", role).status_code == 201
    error = error_of(api.delete("/objects/product"), 409, "referenced")
    assert detail_fields(error) == {"offer.product", "roles.seller"}

    # The lookup removed: its column is archived and keeps its foreign key, which still blocks.
    offer = api.get("/objects/offer").get_json()["definition"]
    del offer["properties"]["product"]
    redefine(api, offer)
    role["objects"] = {"offer": {"read": "all"}}
    assert api.put("/roles/seller", role).status_code == 200
    error = error_of(api.delete("/objects/product"), 409, "referenced")
    assert detail_fields(error) == {"obj_offer._archived_v2_product"}
    assert has_table(database, "obj_product")


def test_only_administrators_delete(api: Api, database: Database) -> None:
    from trellis.platform.runtime.identity import UserService
    from trellis.platform.runtime.identity.tokens import issue_token
    from trellis.platform.runtime.registry import MetaRegistry

    define(api, definition("note", {"text": field("text")}))
    with database.session() as session:
        UserService(session, MetaRegistry(), None).create(
            {"email": "someone@example.com", "password": "a long enough password"}
        )
        session.commit()
        token = issue_token(session, "someone@example.com", name="t")
        session.commit()
    other = Api(api.client, token)
    error_of(other.delete("/objects/note"), 403, "forbidden")
    assert has_table(database, "obj_note")
