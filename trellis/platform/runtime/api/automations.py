"""Automations (administrators only), as roles are managed: list, create, get, PUT,
DELETE, versions, restore, and each automation's run history. A document is checked by
the automation service against its meta-schema and the current objects."""

from __future__ import annotations

from typing import Any

from flask import g, jsonify

from trellis.platform.runtime.api import (
    audit_context,
    bp,
    caller,
    commit,
    json_body,
    registry,
    require_admin,
)
from trellis.platform.runtime.api.schemas import (
    AutomationChangeSchema,
    AutomationPageSchema,
    AutomationRunPageSchema,
    AutomationSchema,
    AutomationVersionPageSchema,
)
from trellis.platform.runtime.automations import AutomationService, runs
from trellis.platform.runtime.versioning import Saved

AUTOMATION, AUTOMATION_CHANGE, AUTOMATIONS, VERSIONS, RUNS = (
    AutomationSchema(),
    AutomationChangeSchema(),
    AutomationPageSchema(),
    AutomationVersionPageSchema(),
    AutomationRunPageSchema(),
)


def _automations() -> AutomationService:
    return AutomationService(g.session, registry(), caller().user_id, audit_context())


def _out(saved: Saved) -> dict[str, Any]:
    return {"name": saved.name, "version": saved.version, "automation": saved.document}


@bp.get("/automations")
def list_automations() -> Any:
    """``GET /automations``: every current automation document, by name (403 unless admin)."""
    require_admin()
    items = [a.document for a in registry().automations()]
    return jsonify(AUTOMATIONS.dump({"items": sorted(items, key=lambda d: d["x-name"])}))


@bp.post("/automations")
def create_automation() -> Any:
    """``POST /automations``: create one as version 1 (201); 403, 422 naming every problem
    by JSON pointer, 409 when the name exists."""
    require_admin()
    saved = _automations().create(json_body())
    commit()
    return jsonify(AUTOMATION.dump(_out(saved))), 201


@bp.get("/automations/<name>")
def get_automation(name: str) -> Any:
    """``GET /automations/<name>``: the current document and its version; 403, or 404."""
    require_admin()
    latest = _automations().versions(name)[0]
    body = {"name": name, "version": latest.version, "automation": latest.document}
    return jsonify(AUTOMATION.dump(body))


@bp.put("/automations/<name>")
def update_automation(name: str) -> Any:
    """``PUT /automations/<name>``: a new version (``changed`` false when identical); 403,
    404, 422 for an invalid document or a changed ``x-name``."""
    require_admin()
    saved = _automations().update(name, json_body())
    commit()
    return jsonify(AUTOMATION_CHANGE.dump({**_out(saved), "changed": saved.created}))


@bp.delete("/automations/<name>")
def delete_automation(name: str) -> Any:
    """``DELETE /automations/<name>``: remove it and its versions (its runs stay); 403, 404."""
    require_admin()
    version = _automations().delete(name)
    commit()
    return jsonify({"name": name, "deleted": True, "version": version})


@bp.get("/automations/<name>/versions")
def list_automation_versions(name: str) -> Any:
    """``GET /automations/<name>/versions``: every version with its diff, newest first."""
    require_admin()
    return jsonify(VERSIONS.dump({"items": _automations().versions(name)}))


@bp.post("/automations/<name>/versions/<int:version>/restore")
def restore_automation_version(name: str, version: int) -> Any:
    """``POST /automations/<name>/versions/<n>/restore``: version ``n`` current again, as
    a new version; 403, 404, or 422 when it no longer fits the objects."""
    require_admin()
    saved = _automations().restore(name, version)
    commit()
    return jsonify(AUTOMATION.dump(_out(saved)))


@bp.get("/automations/<name>/runs")
def list_automation_runs(name: str) -> Any:
    """``GET /automations/<name>/runs``: the latest runs (when, record, outcome, error)."""
    require_admin()
    _automations().versions(name)  # 404 for an unknown automation
    return jsonify(RUNS.dump({"items": runs.recent(g.session, name)}))
