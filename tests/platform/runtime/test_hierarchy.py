"""The partner hierarchy's closure table (``hierarchy_links``), on SQLite and PostgreSQL.

The expected closure is always computed here from the records' parent pointers (as an
administrator reads them over the API) and compared with what the database stores:
after inserts, moves of whole subtrees, refused cycles, a full ``rebuild``, and an
object that becomes a hierarchy while it already holds records.
"""

from __future__ import annotations

import random
import threading
from typing import Any

import sqlalchemy as sa
from flask import Flask

from tests.conftest import Api
from tests.factories import dealer_definition, definition, field
from tests.platform.runtime.helpers import (
    all_rows,
    create,
    define,
    error_of,
    fetch,
    raw_rows,
    redefine,
)
from trellis.exceptions import ValidationFailed
from trellis.extensions import Database, database_of
from trellis.platform.runtime import hierarchy
from trellis.platform.runtime.models import HierarchyLink
from trellis.platform.runtime.records import RecordService

Closure = set[tuple[int, int, int]]  # (ancestor, descendant, depth)


def parents(api: Api, object_name: str, parent_field: str = "parent") -> dict[int, int | None]:
    return {row["id"]: row[parent_field] for row in all_rows(api, object_name)}


def expected_closure(pointers: dict[int, int | None]) -> Closure:
    pairs: Closure = set()
    for node in pointers:
        ancestor: int | None = node
        depth = 0
        while ancestor is not None:
            pairs.add((ancestor, node, depth))
            ancestor, depth = pointers[ancestor], depth + 1
            assert depth <= len(pointers), "a cycle in the parent pointers"
    return pairs


def stored_closure(database: Database, object_name: str) -> Closure:
    links = HierarchyLink.__table__
    with database.engine.connect() as connection:
        rows = connection.execute(
            sa.select(links.c.ancestor_id, links.c.descendant_id, links.c.depth).where(
                links.c.object_name == object_name
            )
        ).all()
    closure = {(a, d, depth) for a, d, depth in rows}
    assert len(closure) == len(rows)
    return closure


def subtree(pointers: dict[int, int | None], root: int) -> set[int]:
    return {d for a, d, _ in expected_closure(pointers) if a == root}


def move(
    api: Api, object_name: str, node: int, parent: int | None, field_name: str = "parent"
) -> Any:
    version = fetch(api, object_name, node)["version"]
    return api.patch(f"/records/{object_name}/{node}", {"version": version, field_name: parent})


def new_dealer(api: Api, name: str, parent: int | None = None) -> int:
    return int(create(api, "dealer", {"name": name, "parent": parent})["id"])


def test_inserts_link_every_ancestor(api: Api, database: Database) -> None:
    define(api, dealer_definition())
    assert stored_closure(database, "dealer") == set()
    root = new_dealer(api, "Root")
    a = new_dealer(api, "A", root)
    b = new_dealer(api, "B", root)
    a1 = new_dealer(api, "A1", a)
    a1x = new_dealer(api, "A1x", a1)
    lone = new_dealer(api, "Lone")
    stored = stored_closure(database, "dealer")
    assert stored == expected_closure(parents(api, "dealer"))
    # spelled out once, so the oracle itself is checked too
    assert {(anc, depth) for anc, d, depth in stored if d == a1x} == {
        (a1x, 0),
        (a1, 1),
        (a, 2),
        (root, 3),
    }
    assert {d for anc, d, _ in stored if anc == root} == {root, a, b, a1, a1x}
    assert {(anc, d) for anc, d, _ in stored if lone in (anc, d)} == {(lone, lone)}


def test_a_bulk_create_links_every_node_below_its_own_parent(api: Api, database: Database) -> None:
    define(api, dealer_definition())
    root = new_dealer(api, "Root")
    a, b = new_dealer(api, "A", root), new_dealer(api, "B", root)
    a1 = new_dealer(api, "A1", a)
    batch = [{"name": f"N{i}", "parent": [root, a, b, a1, None][i % 5]} for i in range(40)]
    response = api.post("/records/dealer/bulk", batch)
    assert response.status_code == 201, response.get_json()
    stored = stored_closure(database, "dealer")
    assert stored == expected_closure(parents(api, "dealer"))
    # 8 links for the four made first; then 8 nodes each below root, A, B, A1 and none
    assert len(stored) == 8 + 8 * (2 + 3 + 3 + 4 + 1)


def test_a_move_takes_the_whole_subtree_along(api: Api, database: Database) -> None:
    define(api, dealer_definition())
    root = new_dealer(api, "Root")
    east, north = new_dealer(api, "East", root), new_dealer(api, "North", root)
    sub = new_dealer(api, "Sub", east)
    leaf = new_dealer(api, "Leaf", sub)
    for node, parent in ((sub, north), (sub, None), (east, sub), (leaf, root), (sub, root)):
        response = move(api, "dealer", node, parent)
        assert response.status_code == 200, response.get_json()
        pointers = parents(api, "dealer")
        assert stored_closure(database, "dealer") == expected_closure(pointers), (node, parent)
    # East now hangs below Sub: Sub's tree has East, East's no longer has Sub
    stored = stored_closure(database, "dealer")
    assert (sub, east, 1) in stored and not any(a == east and d == sub for a, d, _ in stored)


def test_a_cycle_is_refused_and_nothing_changes(api: Api, database: Database) -> None:
    define(api, dealer_definition())
    top = new_dealer(api, "Top")
    middle = new_dealer(api, "Middle", top)
    bottom = new_dealer(api, "Bottom", middle)
    before = stored_closure(database, "dealer")
    records = {n: fetch(api, "dealer", n) for n in (top, middle, bottom)}
    histories = {n: api.get(f"/records/dealer/{n}/history").get_json() for n in records}
    for node, parent in ((top, bottom), (top, middle), (middle, bottom), (middle, middle)):
        error = error_of(move(api, "dealer", node, parent), 422, "validation_failed")
        assert [d["field"] for d in error["details"]] == ["parent"]
    assert stored_closure(database, "dealer") == before
    assert {n: fetch(api, "dealer", n) for n in records} == records
    assert {n: api.get(f"/records/dealer/{n}/history").get_json() for n in records} == histories
    # a node may still move to its grandparent, or sideways
    assert move(api, "dealer", bottom, top).status_code == 200
    assert stored_closure(database, "dealer") == expected_closure(parents(api, "dealer"))


def rebuild(app: Flask, object_name: str, parent_field: str = "parent") -> int:
    with database_of(app).session() as session:
        registry = app.extensions["trellis.registry"]
        registry.ensure_current(session)
        count = hierarchy.rebuild(session, registry.get(object_name), parent_field)
        session.commit()
    return count


def test_rebuild_gives_the_links_incremental_maintenance_gave(
    app: Flask, api: Api, database: Database
) -> None:
    define(api, dealer_definition())
    rng = random.Random(20261123)
    pointers: dict[int, int | None] = {}
    refused = 0
    for step in range(70):
        if len(pointers) < 6 or rng.random() < 0.45:
            parent = rng.choice([None, *pointers]) if pointers else None
            pointers[new_dealer(api, f"D{step}", parent)] = parent
            continue
        node = rng.choice(list(pointers))
        parent = rng.choice([None, *pointers])
        response = move(api, "dealer", node, parent)
        if parent is not None and parent in subtree(pointers, node):
            error_of(response, 422)
            refused += 1
        else:
            assert response.status_code == 200, response.get_json()
            pointers[node] = parent
    assert refused, "the walk should have tried a few cycles"
    # a deleted leaf keeps its links either way (it can be restored where it was)
    leaf = next(n for n in pointers if n not in set(pointers.values()))
    assert api.delete(f"/records/dealer/{leaf}").status_code == 204
    incremental = stored_closure(database, "dealer")
    assert incremental == expected_closure(pointers)
    assert max(depth for _, _, depth in incremental) >= 3  # a tree, not a bush
    assert rebuild(app, "dealer") == len(incremental)
    assert stored_closure(database, "dealer") == incremental
    # rebuilding twice changes nothing either
    assert rebuild(app, "dealer") == len(incremental)
    assert stored_closure(database, "dealer") == incremental


def unit_definition(**extra: Any) -> dict[str, Any]:
    """Units with two self-lookups: neither is the hierarchy until one is named."""
    return definition(
        "unit",
        {
            "name": field("text"),
            "parent": field("lookup", "Parent", **{"x-target": "unit"}),
            "buddy": field("lookup", "Buddy", **{"x-target": "unit"}),
        },
        **extra,
    )


def test_an_object_that_becomes_a_hierarchy_gets_its_closure_built(
    api: Api, database: Database
) -> None:
    define(api, dealer_definition())
    dealer_root = new_dealer(api, "Dealer root")
    new_dealer(api, "Dealer child", dealer_root)
    dealer_links = stored_closure(database, "dealer")
    define(api, unit_definition())
    ids: dict[str, int] = {}
    for name, parent in (
        ("hq", None),
        ("a", "hq"),
        ("b", "hq"),
        ("a1", "a"),
        ("a1x", "a1"),
        ("solo", None),
    ):
        values = {"name": name, "parent": ids[parent] if parent else None, "buddy": ids.get("hq")}
        ids[name] = int(create(api, "unit", values)["id"])
    assert stored_closure(database, "unit") == set()  # not a hierarchy yet: two self-lookups
    redefine(api, unit_definition(**{"x-hierarchy-field": "parent"}))
    assert stored_closure(database, "unit") == expected_closure(parents(api, "unit"))
    assert (ids["hq"], ids["a1x"], 3) in stored_closure(database, "unit")
    # from now on writes keep it right, and the dealers' links were never touched
    assert move(api, "unit", ids["a1"], ids["b"]).status_code == 200
    assert create(api, "unit", {"name": "a1y", "parent": ids["a1"]})
    assert stored_closure(database, "unit") == expected_closure(parents(api, "unit"))
    error_of(move(api, "unit", ids["hq"], ids["a1x"]), 422)
    assert stored_closure(database, "dealer") == dealer_links
    # and when it stops being one, its links go
    redefine(api, unit_definition())
    assert stored_closure(database, "unit") == set()
    assert stored_closure(database, "dealer") == dealer_links


def test_adding_a_self_lookup_to_an_object_with_records(api: Api, database: Database) -> None:
    plain = definition("team", {"name": field("text")})
    define(api, plain)
    teams = [int(create(api, "team", {"name": f"T{i}"})["id"]) for i in range(5)]
    assert stored_closure(database, "team") == set()
    with_parent = definition(
        "team", {"name": field("text"), "parent": field("lookup", "Parent", **{"x-target": "team"})}
    )
    redefine(api, with_parent)
    assert stored_closure(database, "team") == {(t, t, 0) for t in teams}
    for child, parent in ((1, 0), (2, 0), (3, 1), (4, 3)):
        assert move(api, "team", teams[child], teams[parent]).status_code == 200
    assert stored_closure(database, "team") == expected_closure(parents(api, "team"))
    assert (teams[0], teams[4], 3) in stored_closure(database, "team")


def _hold_then_race(app: Flask, first_step: Any, second_step: Any) -> str:
    """Run ``first_step`` in an open transaction, start ``second_step`` in another thread,
    give it time to run (or to wait), then commit the first. Returns how the second ended."""
    database = database_of(app)
    registry = app.extensions["trellis.registry"]
    outcome: dict[str, str] = {}

    def second() -> None:
        with database.session() as session:
            session.connection(execution_options={"trellis_write": True})
            registry.ensure_current(session)
            try:
                second_step(RecordService(session, registry))
                session.commit()
                outcome["result"] = "done"
            except ValidationFailed:
                outcome["result"] = "refused"
            except BaseException as exc:  # reported below
                outcome["result"] = f"error: {exc!r}"

    with database.session() as session:
        session.connection(execution_options={"trellis_write": True})
        registry.ensure_current(session)
        first_step(RecordService(session, registry))
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(timeout=1.0)  # it either finishes now (no serialisation) or waits for us
        session.commit()
    thread.join(timeout=60)
    assert not thread.is_alive()
    return outcome["result"]


def test_concurrent_moves_cannot_make_a_cycle(app: Flask, api: Api, database: Database) -> None:
    define(api, dealer_definition())
    root = new_dealer(api, "Root")
    a, b = new_dealer(api, "A", root), new_dealer(api, "B", root)
    version = {n: fetch(api, "dealer", n)["version"] for n in (a, b)}
    result = _hold_then_race(
        app,
        lambda records: records.update("dealer", a, {"version": version[a], "parent": b}),
        lambda records: records.update("dealer", b, {"version": version[b], "parent": a}),
    )
    assert result == "refused"
    pointers = parents(api, "dealer")
    assert pointers[a] == b and pointers[b] == root
    assert stored_closure(database, "dealer") == expected_closure(pointers)


def test_a_dealer_created_below_a_moving_one_follows_it(
    app: Flask, api: Api, database: Database
) -> None:
    define(api, dealer_definition())
    old_root, new_root = new_dealer(api, "Old root"), new_dealer(api, "New root")
    middle = new_dealer(api, "Middle", old_root)
    version = fetch(api, "dealer", middle)["version"]
    result = _hold_then_race(
        app,
        lambda records: records.update("dealer", middle, {"version": version, "parent": new_root}),
        lambda records: records.create("dealer", {"name": "Newcomer", "parent": middle}),
    )
    assert result == "done"
    pointers = parents(api, "dealer")
    assert stored_closure(database, "dealer") == expected_closure(pointers)
    newcomer = next(n for n, p in pointers.items() if p == middle)
    assert (old_root, newcomer) not in {(a, d) for a, d, _ in stored_closure(database, "dealer")}


def test_a_dealer_created_deep_below_a_moving_one_follows_it(
    app: Flask, api: Api, database: Database
) -> None:
    # The new dealer's parent is not the moved row: only the writer lock orders the two.
    define(api, dealer_definition())
    old_root, new_root = new_dealer(api, "Old root"), new_dealer(api, "New root")
    middle = new_dealer(api, "Middle", old_root)
    leaf = new_dealer(api, "Leaf", middle)
    version = fetch(api, "dealer", middle)["version"]
    result = _hold_then_race(
        app,
        lambda records: records.update("dealer", middle, {"version": version, "parent": new_root}),
        lambda records: records.create("dealer", {"name": "Newcomer", "parent": leaf}),
    )
    assert result == "done"
    pointers = parents(api, "dealer")
    assert stored_closure(database, "dealer") == expected_closure(pointers)
    newcomer = next(n for n, p in pointers.items() if p == leaf)
    assert (new_root, newcomer, 3) in stored_closure(database, "dealer")


# Statements one create of a hierarchy node sends, everything included: the token query;
# the parent's check (locked) and one query for both unique fields; the INSERT (taking the
# writer lock); the closure links; the history row with the administrator's admin.bypass
# event (one statement on PostgreSQL). SQLite adds its BEGIN IMMEDIATE and writes the event
# on its own.
CREATE_STATEMENTS = {"postgresql": 6, "sqlite": 8}


def test_one_create_of_a_hierarchy_node_sends_few_statements(api: Api, database: Database) -> None:
    define(api, dealer_definition(code=field("text", "Code", **{"x-unique": True})))
    root = create(api, "dealer", {"name": "Root", "code": "R"})["id"]  # the token's use is noted
    sent: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        sent.append(" ".join(statement.split())[:90])

    sa.event.listen(sa.Engine, "before_cursor_execute", count)
    try:
        node = create(api, "dealer", {"name": "Node", "code": "N", "parent": root})["id"]
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", count)
    assert len(sent) <= CREATE_STATEMENTS[database.dialect], "\n".join(sent)
    # ... and none of the work was left out
    assert (root, node, 1) in stored_closure(database, "dealer")
    history = [r for r in raw_rows(database, "record_history") if r["record_id"] == node]
    assert [(r["object_name"], r["action"]) for r in history] == [("dealer", "create")]
    events = [e for e in raw_rows(database, "audit_events") if e["action"] == "admin.bypass"]
    assert [e["target"] for e in events][-1] == f"dealer/{node}"
