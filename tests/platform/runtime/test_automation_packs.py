"""Packs ship automations (``automations/*.json``) and named Python actions (``hooks.py``):
installed with the pack, idempotent on reinstall, refused with the file's name when bad."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.factories import definition, field
from trellis.exceptions import PackError
from trellis.extensions import Database
from trellis.platform.runtime.packs import install_pack
from trellis.platform.runtime.records import RecordService

HOOKS = """
from trellis.platform.runtime.automations import HookContext, pack_hook


@pack_hook("ticket_pack.stamp")
def stamp(ctx: HookContext) -> None:
    ctx.records.create("ticket_log", {"note": "stamped " + ctx.record["title"]})
"""


def write_pack(folder: Path, automation: dict[str, Any], hooks: str = HOOKS) -> Path:
    (folder / "objects").mkdir(parents=True)
    (folder / "automations").mkdir()
    ticket = definition(
        "ticket", {"title": field("text", "Title"), "state": field("text", "State")}
    )
    log = definition("ticket_log", {"note": field("text", "Note")})
    (folder / "objects" / "ticket.json").write_text(json.dumps(ticket))
    (folder / "objects" / "ticket_log.json").write_text(json.dumps(log))
    (folder / "automations" / "stamp.json").write_text(json.dumps(automation))
    (folder / "hooks.py").write_text(hooks)
    manifest = {
        "name": "ticket_pack",
        "version": "1.0.0",
        "objects": ["objects/ticket.json", "objects/ticket_log.json"],
    }
    (folder / "pack.json").write_text(json.dumps(manifest))
    return folder


STAMP = {
    "x-name": "stamp_tickets",
    "x-label": {"en": "Stamp tickets", "zh-CN": "标记工单"},
    "object": "ticket",
    "trigger": {"on": "create"},
    "actions": [
        {"type": "set_fields", "values": {"state": "open"}},
        {"type": "hook", "name": "ticket_pack.stamp"},
    ],
}


def install(app: Flask, database: Database, folder: Path) -> list[str]:
    registry = app.extensions["trellis.registry"]
    with database.session() as session:
        result = install_pack(session, registry, folder, author_id=None)
        session.commit()
    return [*result.created, *result.updated]


def test_pack_automations_and_hooks_are_installed(
    app: Flask, database: Database, tmp_path: Path
) -> None:
    folder = write_pack(tmp_path / "ticket_pack", STAMP)
    assert "automation stamp_tickets" in install(app, database, folder)
    registry = app.extensions["trellis.registry"]
    with database.session() as session:
        registry.ensure_current(session)
        records = RecordService(session, registry)
        ticket = records.create("ticket", {"title": "Printer"})
        session.commit()
        assert ticket["state"] == "open"
        notes = [row[0] for row in session.execute(sa.text("SELECT note FROM obj_ticket_log"))]
    assert notes == ["stamped Printer"]
    assert install(app, database, folder) == []  # reinstalled: nothing changes


def test_a_bad_pack_automation_names_its_file(
    app: Flask, database: Database, tmp_path: Path
) -> None:
    bad = {**STAMP, "actions": [{"type": "hook", "name": "ticket_pack.missing"}]}
    folder = write_pack(tmp_path / "ticket_pack", bad)
    with pytest.raises(PackError) as raised:
        install(app, database, folder)
    assert "automations/stamp.json" in raised.value.message
    assert [d["field"] for d in raised.value.details] == ["/actions/0/name"]


def test_hooks_may_only_register_names_of_their_pack(
    app: Flask, database: Database, tmp_path: Path
) -> None:
    foreign = HOOKS.replace("ticket_pack.stamp", "other_pack.stamp")
    folder = write_pack(tmp_path / "ticket_pack", STAMP, hooks=foreign)
    with pytest.raises(PackError) as raised:
        install(app, database, folder)
    assert "other_pack.stamp" in raised.value.message
