"""The hook registry: named moments of the write path, for every entry point."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Api
from tests.factories import dealer_definition
from tests.platform.runtime.helpers import create, define, error_of, fetch
from trellis.exceptions import ValidationFailed
from trellis.platform.runtime.records import Hook, WriteEvent, hooks


@pytest.fixture
def registered() -> Iterator[list[tuple[Hook, str, Any]]]:
    seen: list[tuple[Hook, str, Any]] = []
    added = []

    def on(hook: Hook, function: Any) -> None:
        hooks.register(hook, function, "dealer")
        added.append((hook, function))

    def upper_name(event: WriteEvent) -> None:
        seen.append((Hook.BEFORE_VALIDATE, str(event.action), event.values.get("name")))
        if isinstance(event.values.get("name"), str):
            event.values["name"] = event.values["name"].upper()

    def no_bronze(event: WriteEvent) -> None:
        if event.values.get("level") == "bronze":
            raise ValidationFailed("no bronze", [{"field": "level", "message": "not allowed"}])

    def after_write(event: WriteEvent) -> None:
        seen.append((Hook.AFTER_WRITE, str(event.action), event.record_id))

    def after_commit(event: WriteEvent) -> None:
        seen.append((Hook.AFTER_COMMIT, str(event.action), event.record_id))

    on(Hook.BEFORE_VALIDATE, upper_name)
    on(Hook.VALIDATE, no_bronze)
    on(Hook.AFTER_WRITE, after_write)
    on(Hook.AFTER_COMMIT, after_commit)
    yield seen
    for hook, function in added:
        hooks.unregister(hook, function, "dealer")


def test_hooks_run_in_order_on_create_update_and_delete(
    api: Api, registered: list[tuple[Hook, str, Any]]
) -> None:
    define(api, dealer_definition())
    dealer = create(api, "dealer", {"name": "acme"})
    record_id = dealer["id"]
    assert dealer["name"] == "ACME"  # computed before validation, stored
    assert registered == [
        (Hook.BEFORE_VALIDATE, "create", "acme"),
        (Hook.AFTER_WRITE, "create", record_id),
        (Hook.AFTER_COMMIT, "create", record_id),
    ]
    registered.clear()
    assert (
        api.patch(f"/records/dealer/{record_id}", {"version": 1, "name": "beta"}).status_code == 200
    )
    assert fetch(api, "dealer", record_id)["name"] == "BETA"
    assert [h for h, *_ in registered] == [
        Hook.BEFORE_VALIDATE,
        Hook.AFTER_WRITE,
        Hook.AFTER_COMMIT,
    ]
    registered.clear()
    assert api.delete(f"/records/dealer/{record_id}").status_code == 204
    assert [(h, a) for h, a, _ in registered] == [
        (Hook.AFTER_WRITE, "delete"),
        (Hook.AFTER_COMMIT, "delete"),
    ]


def test_a_validate_hook_refuses_and_after_commit_never_runs(
    api: Api, registered: list[tuple[Hook, str, Any]]
) -> None:
    define(api, dealer_definition())
    registered.clear()
    error = error_of(api.post("/records/dealer", {"name": "x", "level": "bronze"}), 422)
    assert error["details"] == [{"field": "level", "message": "not allowed"}]
    assert [h for h, *_ in registered] == [Hook.BEFORE_VALIDATE]  # nothing written, nothing sent
    error_of(
        api.post("/records/dealer/bulk", [{"name": "ok"}, {"name": "y", "level": "bronze"}]), 422
    )
    assert Hook.AFTER_COMMIT not in [h for h, *_ in registered]


def test_a_hook_whose_applies_says_no_is_not_called(api: Api) -> None:
    """``applies(meta, registry)`` decides from the metadata whether a hook has work for an
    object's writes; where it says no, the write path does not call it (nor build its
    event), and a new registration is seen by the next write."""
    define(api, dealer_definition())
    called: list[str] = []
    wanted = {"dealer": False}

    def count(event: WriteEvent) -> None:
        called.append(str(event.values.get("name")))

    hooks.register(
        Hook.AFTER_WRITE, count, applies=lambda meta, _registry: wanted.get(meta.name, False)
    )
    try:
        create(api, "dealer", {"name": "skipped"})
        assert called == []
        wanted["dealer"] = True
        hooks.unregister(Hook.AFTER_WRITE, count)
        hooks.register(
            Hook.AFTER_WRITE, count, applies=lambda meta, _registry: wanted.get(meta.name, False)
        )
        create(api, "dealer", {"name": "seen"})
        assert called == ["seen"]
    finally:
        hooks.unregister(Hook.AFTER_WRITE, count)
    create(api, "dealer", {"name": "after"})
    assert called == ["seen"]
