"""A partner tree is bound as a list of ids, or, past a size, kept as a sub-select:
both forms must select exactly the same records."""

from __future__ import annotations

import pytest
from flask import Flask

from tests.conftest import Api
from trellis.extensions import Database
from trellis.platform.runtime import access
from trellis.platform.runtime.identity import UserService
from trellis.platform.runtime.identity.tokens import issue_token
from trellis.platform.runtime.packs import install_pack, resolve_pack


def _ids(api: Api, object_name: str) -> list[int]:
    response = api.get(f"/records/{object_name}?limit=500&sort=id")
    assert response.status_code == 200, response.get_json()
    return [item["id"] for item in response.get_json()["items"]]


def test_bound_and_subselect_scopes_agree(
    app: Flask, api: Api, monkeypatch: pytest.MonkeyPatch, database: Database
) -> None:
    registry = app.extensions["trellis.registry"]
    with database.session() as session:
        install_pack(
            session, registry, resolve_pack("channel_pack"), author_id=None, with_demo=True
        )
        east = (
            session.execute(
                registry.get("dealer")
                .table.select()
                .where(registry.get("dealer").table.c.code == "D-0101")
            )
            .mappings()
            .one()
        )
        UserService(session, registry, None).create(
            {
                "email": "scope@example.com",
                "password": "long enough",
                "roles": ["dealer_admin"],
                "partner": east["id"],
            }
        )
        token = issue_token(session, "scope@example.com")
        session.commit()
    dealer_api = Api(app.test_client(), token)

    bound = {name: _ids(dealer_api, name) for name in ("dealer", "sales_order", "order_line")}
    assert len(bound["dealer"]) == 5 and bound["sales_order"] and bound["order_line"]
    everything = {name: _ids(api, name) for name in bound}
    assert all(set(bound[n]) < set(everything[n]) for n in bound)

    monkeypatch.setattr(access, "MAX_BOUND_MEMBERS", 1)  # every tree is now "too large"
    assert {name: _ids(dealer_api, name) for name in bound} == bound
