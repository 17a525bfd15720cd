"""A list page can carry its lookups' titles, read in the same statement as its rows:
they must be exactly what ``RecordService.titles`` answers, for every caller's scope."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.conftest import template_for
from trellis.extensions import Database
from trellis.platform.runtime.api import caller_of
from trellis.platform.runtime.identity import RoleService, UserService
from trellis.platform.runtime.identity.sessions import authenticate_session, session_stamp
from trellis.platform.runtime.models import User
from trellis.platform.runtime.objects import ObjectService
from trellis.platform.runtime.query import parse_list_query
from trellis.platform.runtime.records import RecordService

CALLERS = ("admin@example.com", "east.admin@example.com", "east.sales@example.com")


@pytest.fixture
def db_template(request: pytest.FixtureRequest) -> str | None:
    return template_for(request, pack="channel_demo")


@pytest.fixture
def pack(app: Flask) -> Flask:
    """The channel pack with its demo data: the app's database starts as their copy."""
    assert app.extensions["trellis.registry"].find("sales_order") is not None
    return app


def _service(app: Flask, session: Any, email: str) -> RecordService:
    """The record service as ``email``, with the rights a signed-in request gets."""
    registry = app.extensions["trellis.registry"]
    user = session.scalars(sa.select(User).where(User.email == email)).one()
    stamp = session_stamp(user.password_changed_at, user.session_epoch)
    identity = authenticate_session(session, user.id, stamp)
    registry.ensure_current(session, identity.revision)
    return RecordService(session, registry, caller_of(identity))


def _query(service: RecordService, object_name: str, limit: int = 500) -> Any:
    meta = service.registry.get(object_name)
    return parse_list_query(
        meta,
        filter_text=None,
        sort_text="-id",
        limit_text=str(limit),
        cursor=None,
        fields_text=None,
        default_limit=limit,
        max_limit=limit,
        hidden=service.access.hidden(meta),
    )


@pytest.mark.parametrize("email", CALLERS)
def test_titles_read_with_the_rows_are_the_titles_service(
    pack: Flask, database: Database, email: str
) -> None:
    with pack.app_context(), database.session() as session:
        service = _service(pack, session, email)
        for object_name, lookups in (
            ("sales_order", ["dealer"]),
            ("order_line", ["sales_order", "product"]),
        ):
            page = service.list_page(object_name, _query(service, object_name), titles=lookups)
            items = page["items"]
            assert items, (email, object_name)
            assert set(page["titles"]) == set(lookups)
            for name in lookups:
                meta = service.registry.get(object_name)
                ids = {item[name] for item in items}
                expected = service.titles(str(meta.fields[name].target), ids)
                assert page["titles"][name] == expected, (email, object_name, name)
            # The same rows as without titles.
            assert items == service.list_page(object_name, _query(service, object_name))["items"]


VISIT = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "x-name": "visit",
    "x-label": {"en": "Visit"},
    "x-title-field": "subject",
    "type": "object",
    "properties": {
        "subject": {"type": "string", "x-type": "text", "x-label": {"en": "Subject"}},
        "dealer": {
            "type": "integer",
            "x-type": "lookup",
            "x-target": "dealer",
            "x-label": {"en": "Dealer"},
        },
    },
}


def _visits_as(pack: Flask, database: Database, role: dict[str, Any]) -> dict[str, Any]:
    """Visits to an East dealer and to the national one, listed as a user of ``role``
    whose partner is the East regional: the page and the titles service's answer."""
    registry = pack.extensions["trellis.registry"]
    with pack.app_context(), database.session() as session:
        ObjectService(session, registry, None).create(VISIT)
        RoleService(session, registry, None).create(role)
        registry.ensure_current(session)
        dealers = registry.get("dealer").table
        code = {c: i for c, i in session.execute(sa.select(dealers.c.code, dealers.c.id))}
        system = RecordService(session, registry)
        for subject, dealer in (("east", code["D-0101"]), ("national", code["D-0001"])):
            system.create("visit", {"subject": subject, "dealer": dealer})
        UserService(session, registry, None).create(
            {
                "email": "visitor@example.com",
                "password": "long enough password",
                "roles": [role["x-name"]],
                "partner": code["D-0101"],
            }
        )
        session.commit()
        service = _service(pack, session, "visitor@example.com")
        page = service.list_page("visit", _query(service, "visit"), titles=["dealer"])
        dealer_ids = {item.get("dealer") for item in page["items"]} - {None}
        return {
            "page": page,
            "expected": service.titles("dealer", dealer_ids),
            "code": code,
        }


def test_a_title_outside_the_callers_scope_is_not_read_with_the_rows(
    pack: Flask, database: Database
) -> None:
    """Every visit is readable, but dealers only in the caller's tree: the national
    dealer's name must not come with the page, the East regional's must."""
    role = {
        "x-name": "visitor",
        "x-label": {"en": "Visitor"},
        "objects": {"visit": {"read": "all"}, "dealer": {"read": "hierarchy"}},
    }
    found = _visits_as(pack, database, role)
    page, code = found["page"], found["code"]
    assert sorted(item["subject"] for item in page["items"]) == ["east", "national"]
    assert page["titles"]["dealer"] == found["expected"]
    assert set(page["titles"]["dealer"]) == {code["D-0101"]}


def test_a_hidden_lookup_brings_no_titles(pack: Flask, database: Database) -> None:
    role = {
        "x-name": "blind",
        "x-label": {"en": "Blind"},
        "objects": {
            "visit": {"read": "all", "fields": {"dealer": "hidden"}},
            "dealer": {"read": "hierarchy"},
        },
    }
    found = _visits_as(pack, database, role)
    assert all("dealer" not in item for item in found["page"]["items"])
    assert found["page"]["titles"] == {}


def test_self_lookups_are_left_to_the_titles_service(pack: Flask, database: Database) -> None:
    with pack.app_context(), database.session() as session:
        admin = _service(pack, session, "admin@example.com")
        page = admin.list_page("dealer", _query(admin, "dealer"), titles=["parent", "name"])
        assert page["titles"] == {}  # parent points at the dealer's own table; name is no lookup


def test_a_target_named_by_its_own_lookup_is_left_to_the_titles_service(
    pack: Flask, database: Database
) -> None:
    """An order line is named by its product: a list of records pointing at lines must show
    the product's name (what ``titles`` answers), not the product id a sub-select would read."""
    note = {
        **VISIT,
        "x-name": "line_note",
        "properties": {
            "subject": VISIT["properties"]["subject"],
            "line": {
                "type": "integer",
                "x-type": "lookup",
                "x-target": "order_line",
                "x-label": {"en": "Line"},
            },
        },
    }
    registry = pack.extensions["trellis.registry"]
    with pack.app_context(), database.session() as session:
        ObjectService(session, registry, None).create(note)
        registry.ensure_current(session)
        line = session.scalars(sa.select(registry.get("order_line").table.c.id)).first()
        RecordService(session, registry).create("line_note", {"subject": "x", "line": line})
        session.commit()
        admin = _service(pack, session, "admin@example.com")
        page = admin.list_page("line_note", _query(admin, "line_note"), titles=["line"])
        assert page["titles"] == {}
        named = admin.titles("order_line", {line})
        products = registry.get("product").table
        assert named[line] in set(session.scalars(sa.select(products.c.name)))
