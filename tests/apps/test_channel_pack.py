"""The channel pack: valid, bilingual metadata; install with demo data; idempotent; atomic."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from trellis.exceptions import PackError
from trellis.extensions import Database, database_of
from trellis.platform.metadata import parse_definition, validate_definition
from trellis.platform.runtime.models import (
    InstalledPack,
    MetaObject,
    MetaObjectVersion,
    MetaRevision,
)
from trellis.platform.runtime.objects import ObjectService
from trellis.platform.runtime.packs import (
    BUILTIN_PACKS,
    InstallResult,
    automation_files,
    install_pack,
    load_manifest,
    resolve_pack,
)
from trellis.platform.runtime.registry import MetaRegistry

PACK = BUILTIN_PACKS / "channel_pack"
LANGUAGES = {"en", "zh-CN"}
OBJECTS = ["dealer", "product", "sales_order", "order_line"]


def manifest() -> dict[str, Any]:
    return json.loads((PACK / "pack.json").read_text(encoding="utf-8"))


def documents() -> dict[str, dict[str, Any]]:
    docs = {}
    for relative in manifest()["objects"]:
        doc = json.loads((PACK / relative).read_text(encoding="utf-8"))
        docs[doc["x-name"]] = doc
    return docs


def demo_records() -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for relative in manifest()["demo"]:
        records += json.loads((PACK / relative).read_text(encoding="utf-8")).get("records", [])
    return records


# --- the files -----------------------------------------------------------------------


ROLES = ["role " + Path(p).stem for p in manifest()["roles"]]
AUTOMATIONS = ["automation " + Path(p).stem for p in automation_files(PACK, manifest())]
WORKFLOWS = ["workflow order_flow", "workflow dealer_onboarding"]


def objects_only(names: list[str]) -> list[str]:
    return [n for n in names if not n.startswith(("role ", "automation ", "workflow "))]


def test_manifest() -> None:
    data = load_manifest(PACK)
    assert data["name"] == "channel_pack" and data["version"]
    assert resolve_pack("channel_pack") == PACK
    # Every object file in the folder is installed, and nothing else.
    listed = {str(Path(p)) for p in data["objects"]}
    on_disk = {str(p.relative_to(PACK)) for p in (PACK / "objects").glob("*.json")}
    assert listed == on_disk
    assert set(data["label"]) == LANGUAGES and set(data["description"]) == LANGUAGES


def test_every_object_file_is_valid() -> None:
    docs = documents()
    assert list(docs) == OBJECTS
    for name, doc in docs.items():
        others = {n: d for n, d in docs.items() if n != name}
        assert validate_definition(doc, others) == [], name
        parse_definition(doc, others)  # and parses


def test_objects_install_in_dependency_order() -> None:
    """Each object only refers to objects installed before it (or to itself)."""
    seen: set[str] = set()
    for name, doc in documents().items():
        targets = {p["x-target"] for p in doc["properties"].values() if "x-target" in p}
        assert targets <= seen | {name}, name
        seen.add(name)


def _label_problems(where: str, label: Any) -> list[str]:
    if not isinstance(label, dict) or set(label) != LANGUAGES:
        return [f"{where}: {label!r}"]
    return [f"{where}: empty {lang}" for lang, text in label.items() if not str(text).strip()]


def test_every_label_is_bilingual() -> None:
    problems: list[str] = []
    for name, doc in documents().items():
        problems += _label_problems(name, doc.get("x-label"))
        problems += _label_problems(f"{name} plural", doc.get("x-label-plural"))
        for field_name, prop in doc["properties"].items():
            where = f"{name}.{field_name}"
            problems += _label_problems(where, prop.get("x-label"))
            values = prop.get("enum") or prop.get("items", {}).get("enum")
            if prop["x-type"] in ("picklist", "multipicklist"):
                labels = prop.get("x-enum-labels", {})
                assert set(labels) == set(values), where
                for value in values:
                    problems += _label_problems(f"{where}={value}", labels[value])
    assert problems == []


def test_chinese_labels_are_chinese() -> None:
    """A zh-CN label that merely repeats the English one is a missing translation."""
    for name, doc in documents().items():
        for field_name, prop in doc["properties"].items():
            label = prop["x-label"]
            assert label["zh-CN"] != label["en"], f"{name}.{field_name}"
            assert any("\u4e00" <= ch <= "\u9fff" for ch in label["zh-CN"]), f"{name}.{field_name}"


def test_demo_data_shape() -> None:
    records = demo_records()
    counts = Counter(r["object"] for r in records)
    assert counts["product"] >= 12 and counts["dealer"] >= 7 and counts["sales_order"] >= 1
    assert set(counts) <= set(OBJECTS)
    refs = [r["ref"] for r in records if "ref" in r]
    assert len(refs) == len(set(refs)), "refs must be unique"


# --- installing ----------------------------------------------------------------------


def _install(app: Flask, folder: Path = PACK, *, with_demo: bool = True) -> InstallResult:
    registry: MetaRegistry = app.extensions["trellis.registry"]
    with database_of(app).session() as session:
        try:
            result = install_pack(session, registry, folder, author_id=None, with_demo=with_demo)
            session.commit()
        except Exception:
            session.rollback()
            registry.invalidate()
            raise
    return result


def _rows(app: Flask, name: str) -> list[dict[str, Any]]:
    registry: MetaRegistry = app.extensions["trellis.registry"]
    with database_of(app).session() as session:
        registry.ensure_current(session)
        table = registry.get(name).table
        query = sa.select(table).where(table.c.deleted_at.is_(None)).order_by(table.c.id)
        return [dict(row._mapping) for row in session.execute(query)]


def _state(app: Flask) -> dict[str, Any]:
    """Everything an install may change, to compare before and after."""
    with database_of(app).session() as session:
        versions = session.execute(
            sa.select(MetaObjectVersion.object_name, MetaObjectVersion.version).order_by(
                MetaObjectVersion.id
            )
        ).all()
        return {
            "versions": [tuple(v) for v in versions],
            "revision": session.scalar(sa.select(MetaRevision.revision)),
            "packs": [
                (p.name, p.version, p.demo_loaded)
                for p in session.scalars(sa.select(InstalledPack))
            ],
            "counts": {
                name: len(_rows(app, name))
                for name in session.scalars(sa.select(MetaObject.name).order_by(MetaObject.name))
            },
        }


def test_install_creates_objects_and_demo_data(app: Flask, database: Database) -> None:
    result = _install(app)
    assert (result.name, result.version) == ("channel_pack", manifest()["version"])
    assert result.created == OBJECTS + ROLES + WORKFLOWS + AUTOMATIONS
    assert result.updated == [] and result.unchanged == []
    assert result.demo_records == len(demo_records())

    registry: MetaRegistry = app.extensions["trellis.registry"]
    with database.session() as session:
        registry.ensure_current(session)
        assert {m.name for m in registry.all()} == set(OBJECTS)
        for name, doc in documents().items():
            assert registry.get(name).definition.document == doc
            # dealer's roll-up reads orders, created after it: it comes in a second
            # version; orders' roll-up and rule likewise. The others are one version.
            staged = {"dealer": 2, "sales_order": 3}
            assert registry.get(name).version == staged.get(name, 1), name
        pack = session.get(InstalledPack, "channel_pack")
        assert (
            pack is not None
            and pack.demo_loaded
            and pack.manifest == {**manifest(), "installed_objects": OBJECTS}
        )
        tables = set(sa.inspect(session.connection()).get_table_names())
    assert {f"obj_{name}" for name in OBJECTS} <= tables

    expected = Counter(r["object"] for r in demo_records())
    assert {name: len(_rows(app, name)) for name in ("dealer", "product", "sales_order")} == {
        name: expected[name] for name in ("dealer", "product", "sales_order")
    }
    lines_in_file = sum(len(r["values"].get("lines", [])) for r in demo_records())
    assert len(_rows(app, "order_line")) == lines_in_file > 0


def test_demo_dealers_form_a_three_level_network(app: Flask) -> None:
    _install(app)
    dealers = {d["id"]: d for d in _rows(app, "dealer")}
    by_level: dict[str, list[dict[str, Any]]] = {}
    for dealer in dealers.values():
        by_level.setdefault(dealer["level"], []).append(dealer)
    assert set(by_level) == {"national", "regional", "sub_distributor"}
    for national in by_level["national"]:
        assert national["parent"] is None
    for regional in by_level["regional"]:
        assert dealers[regional["parent"]]["level"] == "national"
    for sub in by_level["sub_distributor"]:
        assert dealers[sub["parent"]]["level"] == "regional"
    # Every regional agent has sub-distributors under it: the tree really is three deep.
    parents_of_subs = {sub["parent"] for sub in by_level["sub_distributor"]}
    assert parents_of_subs == {r["id"] for r in by_level["regional"]}
    assert len({d["code"] for d in dealers.values()}) == len(dealers)


def test_demo_products_and_orders(app: Flask) -> None:
    _install(app)
    products = {p["id"]: p for p in _rows(app, "product")}
    assert len(products) >= 12
    assert all(p["list_price"] > 0 and p["sku"] for p in products.values())
    orders = _rows(app, "sales_order")
    lines = _rows(app, "order_line")
    assert orders and {line["sales_order"] for line in lines} <= {o["id"] for o in orders}
    statuses = {o["status"] for o in orders}
    assert {"draft", "paid"} <= statuses, statuses
    numbers = [o["number"] for o in orders]
    assert len(set(numbers)) == len(numbers) and all(n.startswith("SO-") for n in numbers)
    cent = Decimal("0.01")
    for order in orders:
        mine = [line for line in lines if line["sales_order"] == order["id"]]
        assert mine, order["number"]
        assert all(line["product"] in products for line in mine)
        total = sum(
            (
                Decimal(line["quantity"])
                * Decimal(str(line["unit_price"]))
                * (1 - Decimal(str(line["discount_percent"] or 0)) / 100)
                for line in mine
            ),
            Decimal(0),
        ).quantize(cent, rounding=ROUND_HALF_UP)
        assert Decimal(str(order["total_amount"])) == total, order["number"]


def test_install_is_idempotent(app: Flask) -> None:
    _install(app)
    before = _state(app)
    again = _install(app)
    assert again.created == [] and again.updated == []
    assert again.unchanged == OBJECTS + ROLES + WORKFLOWS + AUTOMATIONS
    assert again.demo_records == 0
    assert _state(app) == before


def test_the_registry_knows_the_installed_packs_and_sees_a_changed_manifest(
    app: Flask, tmp_path: Path, database: Database
) -> None:
    """The navigation groups objects by pack from the registry, without a query per page:
    so installing a pack, or one whose manifest changed, moves the revision."""
    with database.session() as session:
        revision = session.scalar(sa.select(MetaRevision.revision))
    _install(app)
    other = MetaRegistry()  # another process's registry
    with database.session() as session:
        installed = session.scalar(sa.select(MetaRevision.revision))
        other.ensure_current(session)
    assert installed > revision
    [(name, stored)] = other.installed_packs()
    assert name == "channel_pack" and stored["label"] == manifest()["label"]
    assert stored["installed_objects"] == OBJECTS

    folder = tmp_path / "channel_pack"
    shutil.copytree(PACK, folder)
    data = json.loads((folder / "pack.json").read_text(encoding="utf-8"))
    data["label"] = {"en": "Channels", "zh-CN": "渠道"}
    (folder / "pack.json").write_text(json.dumps(data), encoding="utf-8")
    result = _install(app, folder)
    assert (
        result.unchanged == OBJECTS + ROLES + WORKFLOWS + AUTOMATIONS
    )  # only the manifest changed
    with database.session() as session:
        assert session.scalar(sa.select(MetaRevision.revision)) == installed + 1
        other.ensure_current(session)
    assert [m["label"]["en"] for _, m in other.installed_packs()] == ["Channels"]


def test_demo_data_loads_once_even_when_asked_for_later(app: Flask) -> None:
    first = _install(app, with_demo=False)
    assert first.demo_records == 0
    assert all(_rows(app, name) == [] for name in OBJECTS)
    second = _install(app, with_demo=True)
    assert second.demo_records == len(demo_records())
    counts = {name: len(_rows(app, name)) for name in OBJECTS}
    third = _install(app, with_demo=True)
    assert third.demo_records == 0
    assert {name: len(_rows(app, name)) for name in OBJECTS} == counts


def test_a_changed_pack_upgrades_by_new_versions(
    app: Flask, tmp_path: Path, database: Database
) -> None:
    _install(app)
    folder = tmp_path / "channel_pack"
    shutil.copytree(PACK, folder)
    product = json.loads((folder / "objects/product.json").read_text(encoding="utf-8"))
    product["properties"]["barcode"] = {
        "type": "string",
        "maxLength": 32,
        "x-type": "text",
        "x-label": {"en": "Barcode", "zh-CN": "条形码"},
    }
    (folder / "objects/product.json").write_text(json.dumps(product), encoding="utf-8")
    data = json.loads((folder / "pack.json").read_text(encoding="utf-8"))
    data["version"] = "0.2.0"
    (folder / "pack.json").write_text(json.dumps(data), encoding="utf-8")

    result = _install(app, folder)
    assert result.updated == ["product"] and result.created == []
    assert objects_only(result.unchanged) == ["dealer", "sales_order", "order_line"]
    registry: MetaRegistry = app.extensions["trellis.registry"]
    with database.session() as session:
        registry.ensure_current(session)
        assert registry.get("product").version == 2
        assert "barcode" in registry.get("product").fields
        pack = session.get(InstalledPack, "channel_pack")
        assert pack is not None and pack.version == "0.2.0"
    assert all(p["barcode"] is None for p in _rows(app, "product"))
    assert len(_rows(app, "product")) == Counter(r["object"] for r in demo_records())["product"]


def test_reinstalling_keeps_an_admins_own_fields(app: Flask, database: Database) -> None:
    """DESIGN §8: an upgrade keeps admins' additions (and is then still a no-op)."""
    _install(app)
    registry: MetaRegistry = app.extensions["trellis.registry"]
    with database.session() as session:
        registry.ensure_current(session)
        customised = json.loads(json.dumps(registry.get("dealer").definition.document))
        customised["properties"]["account_manager"] = {
            "type": "string",
            "maxLength": 60,
            "x-type": "text",
            "x-label": {"en": "Account manager", "zh-CN": "客户经理"},
        }
        customised["properties"]["credit_limit"]["default"] = 1000  # an edit, not an addition
        ObjectService(session, registry, None).update("dealer", customised)
        session.commit()
    with database.session() as session:  # the demo dealers get a value, then it becomes required
        registry.ensure_current(session)
        session.execute(sa.update(registry.get("dealer").table).values(account_manager="Li"))
        customised["required"] = [*customised["required"], "account_manager"]
        ObjectService(session, registry, None).update("dealer", customised)
        session.commit()

    result = _install(app)
    assert result.updated == ["dealer"]  # only for the pack's own field that was edited
    assert objects_only(result.unchanged) == ["product", "sales_order", "order_line"]
    with database.session() as session:
        registry.ensure_current(session)
        dealer = registry.get("dealer")
        assert dealer.fields["account_manager"].required
        assert dealer.fields["credit_limit"].default == 0  # the pack's fields follow the pack
    assert {d["account_manager"] for d in _rows(app, "dealer")} == {"Li"}
    after = _state(app)
    assert objects_only(_install(app).unchanged) == OBJECTS
    assert _state(app) == after


def _write_pack(folder: Path, objects: dict[str, Any], demo: dict[str, Any] | None = None) -> Path:
    (folder / "objects").mkdir(parents=True)
    names = []
    for file_name, doc in objects.items():
        (folder / "objects" / file_name).write_text(json.dumps(doc), encoding="utf-8")
        names.append(f"objects/{file_name}")
    manifest: dict[str, Any] = {"name": "broken_pack", "version": "1.0.0", "objects": names}
    if demo is not None:
        (folder / "demo").mkdir()
        (folder / "demo" / "data.json").write_text(json.dumps(demo), encoding="utf-8")
        manifest["demo"] = ["demo/data.json"]
    (folder / "pack.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder


def _assert_nothing_installed(app: Flask) -> None:
    registry: MetaRegistry = app.extensions["trellis.registry"]
    with database_of(app).session() as session:
        assert session.scalars(sa.select(MetaObject)).all() == []
        assert session.scalars(sa.select(MetaObjectVersion)).all() == []
        assert session.scalars(sa.select(InstalledPack)).all() == []
        tables = sa.inspect(session.connection()).get_table_names()
        assert [t for t in tables if t.startswith("obj_")] == []
        registry.ensure_current(session)
        assert registry.all() == []


def test_an_invalid_object_file_installs_nothing(app: Flask, tmp_path: Path) -> None:
    docs = documents()
    bad = json.loads(json.dumps(docs["product"]))
    bad["properties"]["list_price"]["x-type"] = "money"  # not a field type
    folder = _write_pack(tmp_path / "broken", {"dealer.json": docs["dealer"], "product.json": bad})
    with pytest.raises(PackError) as caught:
        _install(app, folder)
    assert "objects/product.json" in caught.value.message
    assert any(d["field"] == "/properties/list_price/x-type" for d in caught.value.details)
    _assert_nothing_installed(app)
    # The same session and registry can install a good pack afterwards.
    assert objects_only(_install(app).created) == OBJECTS


def test_bad_demo_data_installs_nothing(app: Flask, tmp_path: Path) -> None:
    docs = documents()
    demo = {
        "records": [
            {"object": "dealer", "ref": "d", "values": {"name": "A", "code": "A-1"}},
            {"object": "dealer", "values": {"name": "B", "code": "lowercase is refused"}},
        ]
    }
    dealer = docs["dealer"]
    del dealer["properties"]["open_exposure"]  # a roll-up over orders, not in this pack
    folder = _write_pack(tmp_path / "broken", {"dealer.json": dealer}, demo)
    with pytest.raises(PackError, match="record 1"):
        _install(app, folder)
    _assert_nothing_installed(app)


@pytest.mark.parametrize(
    ("manifest_text", "words"),
    [
        ("not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"name": "Bad Name", "version": "1"}', "pack.json is not valid"),
        ('{"name": "p", "version": 1}', "pack.json is not valid"),
        ('{"name": "p", "version": "1", "objects": ["missing.json"]}', "does not exist"),
        ('{"name": "p", "version": "1", "objects": ["../outside.json"]}', "outside the pack"),
    ],
)
def test_bad_manifests(app: Flask, tmp_path: Path, manifest_text: str, words: str) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    (tmp_path / "outside.json").write_text("{}", encoding="utf-8")
    (folder / "pack.json").write_text(manifest_text, encoding="utf-8")
    with pytest.raises(PackError, match=words):
        _install(app, folder)
    _assert_nothing_installed(app)


def test_resolve_pack(tmp_path: Path) -> None:
    with pytest.raises(PackError, match="no pack at 'nowhere'"):
        resolve_pack("nowhere")
    with pytest.raises(PackError):
        resolve_pack(str(tmp_path))  # a folder without pack.json
    (tmp_path / "pack.json").write_text("{}", encoding="utf-8")
    assert resolve_pack(str(tmp_path)) == tmp_path


def test_an_object_path_that_is_a_folder_is_refused(app: Flask, tmp_path: Path) -> None:
    folder = tmp_path / "p"
    (folder / "objects").mkdir(parents=True)
    (folder / "pack.json").write_text(
        json.dumps({"name": "p", "version": "1", "objects": ["objects"]}), encoding="utf-8"
    )
    with pytest.raises(PackError, match="cannot read 'objects'"):
        _install(app, folder)
    _assert_nothing_installed(app)
