"""What changed between two versions of a document, and its summary: ``diff_definitions``
(by field, for object definitions) and ``diff_documents`` (by JSON pointer, for the rest)."""

from __future__ import annotations

import copy
import json

from tests.factories import dealer_definition, field
from trellis.platform.metadata.diff import (
    DefinitionDiff,
    FieldChange,
    diff_definitions,
    diff_documents,
)


def test_identical_definitions_have_no_diff() -> None:
    diff = diff_definitions(dealer_definition(), dealer_definition())
    assert diff.is_empty()
    assert (diff.added, diff.removed, diff.changed) == ([], [], [])
    assert diff.summary() == "no change"
    assert diff.as_dict() == {"fields": [], "object": {}, "summary": "no change"}


def test_field_order_and_required_order_do_not_matter() -> None:
    old = dealer_definition(email=field("email"))
    old["required"] = ["name", "email"]
    new = copy.deepcopy(old)
    new["properties"] = dict(reversed(list(new["properties"].items())))
    new["required"] = ["email", "name"]
    assert diff_definitions(old, new).is_empty()


def test_a_new_object_is_all_added() -> None:
    diff = diff_definitions(None, dealer_definition())
    assert diff.added == ["name", "level", "credit_limit", "parent"]
    assert diff.removed == [] and diff.changed == []
    assert diff.object_changes == {}  # nothing to compare the object's keywords with
    assert diff.summary() == "added name, level, credit_limit, parent"
    assert not diff.is_empty()


def test_added_removed_and_changed_fields() -> None:
    old = dealer_definition(phone=field("phone"))
    new = dealer_definition(email=field("email"), website=field("url"))
    del new["properties"]["parent"]
    new["properties"]["name"]["maxLength"] = 200
    new["properties"]["level"]["enum"] = ["gold", "silver"]
    new["properties"]["credit_limit"]["x-scale"] = 4  # a keyword that was absent

    diff = diff_definitions(old, new)
    assert diff.added == ["email", "website"]
    assert diff.removed == ["parent", "phone"]
    assert [c.field for c in diff.changed] == ["name", "level", "credit_limit"]
    changes = {c.field: c.changes for c in diff.changed}
    assert changes["name"] == {"maxLength": (120, 200)}
    assert changes["level"] == {"enum": (["gold", "silver", "bronze"], ["gold", "silver"])}
    assert changes["credit_limit"] == {"x-scale": (None, 4)}
    assert diff.object_changes == {}
    assert diff.summary() == (
        "added email, website; removed parent, phone; changed name (maxLength); "
        "changed level (enum); changed credit_limit (x-scale)"
    )


def test_a_removed_keyword_shows_as_none() -> None:
    old = dealer_definition()
    new = copy.deepcopy(old)
    del new["properties"]["credit_limit"]["minimum"]
    (change,) = diff_definitions(old, new).changed
    assert change.changes == {"minimum": (0, None)}


def test_a_type_change() -> None:
    old = dealer_definition()
    new = copy.deepcopy(old)
    new["properties"]["credit_limit"] = field("integer", "Credit limit", minimum=0)
    (change,) = diff_definitions(old, new).changed
    assert change.field == "credit_limit"
    assert change.changes["x-type"] == ("currency", "integer")
    assert change.changes["type"] == ("number", "integer")


def test_required_changes() -> None:
    old = dealer_definition()
    new = copy.deepcopy(old)
    new["required"] = ["level"]  # name becomes optional, level required
    diff = diff_definitions(old, new)
    changes = {c.field: c.changes for c in diff.changed}
    assert changes == {
        "name": {"required": (True, False)},
        "level": {"required": (False, True)},
    }
    assert diff.summary() == "changed name (required); changed level (required)"
    # A field that becomes required while its keywords change lists both.
    new["properties"]["level"]["default"] = "gold"
    level = next(c for c in diff_definitions(old, new).changed if c.field == "level")
    assert set(level.changes) == {"default", "required"}
    # Dropping the whole list makes every required field optional.
    del new["required"]
    assert [c.field for c in diff_definitions(old, new).changed] == ["name", "level"]


def test_required_of_an_added_field_is_part_of_adding_it() -> None:
    old = dealer_definition()
    new = dealer_definition(email=field("email"))
    new["required"] = ["name", "email"]
    diff = diff_definitions(old, new)
    assert diff.added == ["email"] and diff.changed == []


def test_object_level_changes() -> None:
    old = dealer_definition()
    new = copy.deepcopy(old)
    new["x-label"] = {"en": "Partner", "zh-CN": "合作伙伴"}
    new["x-title-field"] = "name"
    diff = diff_definitions(old, new)
    assert diff.fields == []
    assert diff.object_changes == {
        "x-label": ({"en": "Dealer", "zh-CN": "dealer"}, {"en": "Partner", "zh-CN": "合作伙伴"}),
        "x-title-field": (None, "name"),
    }
    assert not diff.is_empty()
    assert diff.summary() == "changed x-label, x-title-field"


def test_summary_puts_everything_together() -> None:
    old = dealer_definition()
    new = dealer_definition(email=field("email"))
    del new["properties"]["parent"]
    new["properties"]["name"]["maxLength"] = 60
    new["required"] = []
    new["x-label"] = {"en": "Partner"}
    assert diff_definitions(old, new).summary() == (
        "added email; removed parent; changed name (maxLength, required); changed x-label"
    )


def test_as_dict_is_json_ready() -> None:
    old = dealer_definition()
    new = dealer_definition(email=field("email"))
    new["properties"]["name"]["maxLength"] = 60
    new["x-label"] = {"en": "Partner"}
    out = diff_definitions(old, new).as_dict()
    assert json.loads(json.dumps(out)) == out
    assert out["fields"] == [
        {"field": "name", "change": "changed", "keywords": {"maxLength": {"from": 120, "to": 60}}},
        {"field": "email", "change": "added"},
    ]
    assert out["object"] == {
        "x-label": {"from": {"en": "Dealer", "zh-CN": "dealer"}, "to": {"en": "Partner"}}
    }
    assert out["summary"] == "added email; changed name (maxLength); changed x-label"


def test_diff_does_not_touch_its_inputs() -> None:
    old, new = dealer_definition(), dealer_definition(email=field("email"))
    new["required"] = ["email"]
    snapshot = copy.deepcopy((old, new))
    diff_definitions(old, new)
    assert (old, new) == snapshot


def test_dataclasses() -> None:
    change = FieldChange("f", "removed", {})
    assert change.as_dict() == {"field": "f", "change": "removed"}
    diff = DefinitionDiff([change], {})
    assert diff.removed == ["f"] and diff.summary() == "removed f"


# --- diff_documents: any JSON document, by JSON pointer -------------------------------------

ROLE = {
    "x-name": "dealer_sales",
    "x-label": {"en": "Dealer sales"},
    "objects": {"dealer": {"read": "hierarchy"}, "sales_order": {"read": "own"}},
}


def test_identical_documents_have_no_diff_whatever_their_key_order() -> None:
    reordered = {k: ROLE[k] for k in reversed(list(ROLE))}
    diff = diff_documents(ROLE, reordered)
    assert diff.is_empty() and diff.summary() == "no change"
    assert diff.as_dict() == {"changes": [], "summary": "no change"}


def test_a_new_document_adds_its_top_level_keys() -> None:
    diff = diff_documents(None, ROLE)
    assert [(c.pointer, c.kind, c.after) for c in diff.changes] == [
        ("/x-name", "added", "dealer_sales"),
        ("/x-label", "added", {"en": "Dealer sales"}),
        ("/objects", "added", ROLE["objects"]),
    ]
    assert diff.summary() == "added /x-name, /x-label, /objects"


def test_changes_are_found_at_the_deepest_object_that_differs() -> None:
    new = copy.deepcopy(ROLE)
    new["objects"]["dealer"]["read"] = "all"
    new["objects"]["dealer"]["fields"] = {"credit_limit": "hidden"}
    del new["objects"]["sales_order"]
    new["x-label"]["zh-CN"] = "经销商销售"
    out = diff_documents(ROLE, new).as_dict()
    assert json.loads(json.dumps(out)) == out
    assert out["changes"] == [
        {"pointer": "/x-label/zh-CN", "change": "added", "to": "经销商销售"},
        {"pointer": "/objects/dealer/read", "change": "changed", "from": "hierarchy", "to": "all"},
        {
            "pointer": "/objects/dealer/fields",
            "change": "added",
            "to": {"credit_limit": "hidden"},
        },
        {"pointer": "/objects/sales_order", "change": "removed", "from": {"read": "own"}},
    ]
    assert out["summary"] == (
        "added /x-label/zh-CN, /objects/dealer/fields; removed /objects/sales_order; "
        "changed /objects/dealer/read"
    )


def test_lists_and_values_of_another_type_change_as_a_whole() -> None:
    old = {"steps": [1, 2], "limit": {"max": 3}, "flag": True, "count": 1}
    new = {"steps": [1, 2, 3], "limit": 3, "flag": 1, "count": 1.0}
    changes = {c.pointer: (c.before, c.after) for c in diff_documents(old, new).changes}
    # true and 1 are different JSON; 1 and 1.0 are the same number
    assert changes == {"/steps": ([1, 2], [1, 2, 3]), "/limit": ({"max": 3}, 3), "/flag": (True, 1)}
    assert diff_documents({"a": [True]}, {"a": [1]}).changes[0].pointer == "/a"
    assert diff_documents({"a": [{"b": 1}]}, {"a": [{"b": 1.0}]}).is_empty()


def test_pointers_escape_slash_and_tilde() -> None:
    (change,) = diff_documents({}, {"a/b": {"~c": 1}}).changes
    assert change.pointer == "/a~1b"
    (change,) = diff_documents({"a/b": {"~c": 1}}, {"a/b": {"~c": 2}}).changes
    assert change.pointer == "/a~1b/~0c"


def test_document_diff_does_not_touch_its_inputs() -> None:
    new = copy.deepcopy(ROLE)
    new["objects"]["dealer"]["read"] = "all"
    snapshot = copy.deepcopy((ROLE, new))
    diff_documents(ROLE, new)
    assert (ROLE, new) == snapshot
