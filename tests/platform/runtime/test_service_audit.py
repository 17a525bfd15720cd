"""Audit is written by the services, so every entry point leaves the same trail."""

from __future__ import annotations

from flask import Flask

from tests.conftest import Api
from tests.factories import dealer_definition
from tests.platform.runtime.helpers import define, raw_rows
from trellis.extensions import Database
from trellis.platform.runtime.packs import BUILTIN_PACKS, install_pack


def _events(database: Database, prefix: str) -> list[tuple[str, str]]:
    return [
        (r["action"], r["target"])
        for r in raw_rows(database, "audit_events")
        if r["action"].startswith(prefix)
    ]


def test_a_pack_install_is_audited_like_the_api(app: Flask, database: Database) -> None:
    registry = app.extensions["trellis.registry"]
    with database.session() as session:
        install_pack(session, registry, BUILTIN_PACKS / "channel_pack", author_id=None)
        session.commit()
    objects = _events(database, "object.")
    assert ("object.created", "object/dealer") in objects
    assert ("object.created", "object/sales_order") in objects
    assert ("role.created", "role/dealer_admin") in _events(database, "role.")


def test_api_changes_are_audited_once_with_who_and_where(api: Api, database: Database) -> None:
    define(api, dealer_definition())
    assert api.put("/objects/dealer", dealer_definition()).status_code == 200  # no change
    rows = [r for r in raw_rows(database, "audit_events") if r["action"].startswith("object.")]
    assert [(r["action"], r["target"]) for r in rows] == [("object.created", "object/dealer")]
    assert rows[0]["actor_email"] == "admin@example.com" and rows[0]["ip"]
