"""``x-indexes``: composite indexes declared by a definition follow its versions."""

from __future__ import annotations

import sqlalchemy as sa

from tests.conftest import Api
from tests.factories import dealer_definition, field
from tests.platform.runtime.helpers import define, error_of, index_names, redefine
from trellis.extensions import Database

BOTH = "ix_obj_dealer_level_credit_limit"


def _indexed_columns(database: Database, name: str) -> list[str]:
    indexes = {ix["name"]: ix for ix in sa.inspect(database.engine).get_indexes("obj_dealer")}
    return list(indexes[name]["column_names"])


def test_declared_indexes_are_created_changed_and_dropped(api: Api, database: Database) -> None:
    document = dealer_definition(region=field("text", "Region", maxLength=40))
    document["x-indexes"] = [["level", "credit_limit"]]
    define(api, document)
    assert BOTH in index_names(database, "obj_dealer")
    assert _indexed_columns(database, BOTH) == ["level", "credit_limit"]

    document["x-indexes"] = [["region", "level", "id"]]
    redefine(api, document)
    names = index_names(database, "obj_dealer")
    assert BOTH not in names and "ix_obj_dealer_region_level_id" in names

    del document["x-indexes"]
    redefine(api, document)
    assert not any(
        n.startswith("ix_obj_dealer_region_level") for n in index_names(database, "obj_dealer")
    )

    restored = api.post("/objects/dealer/versions/1/restore")
    assert restored.status_code == 200
    assert BOTH in index_names(database, "obj_dealer")


def test_declared_indexes_must_name_sortable_fields(api: Api) -> None:
    document = dealer_definition(tags=field("multipicklist", "Tags"))
    document["x-indexes"] = [["level", "nowhere"], ["tags", "level"], ["level"]]
    error = error_of(api.post("/objects", document), 422, "invalid_definition")
    pointers = {d["field"] for d in error["details"]}
    assert "/x-indexes/2" in pointers  # fewer than two columns: the meta-schema says so
    document["x-indexes"] = [["level", "nowhere"], ["tags", "level"]]
    error = error_of(api.post("/objects", document), 422, "invalid_definition")
    assert {d["field"] for d in error["details"]} == {"/x-indexes/0/1", "/x-indexes/1/0"}
    assert api.get("/objects").get_json()["items"] == []
