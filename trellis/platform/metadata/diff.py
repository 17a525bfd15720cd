"""Readable differences between two versions of a document.

An object definition gets a diff by field (``diff_definitions``); any other JSON document
(a role, later a workflow or an automation) gets one by JSON pointer (``diff_documents``).
Both answer the same questions (``Diff``): is there a change, what is it as JSON, and in
one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

_MISSING = object()


class ChangeKind(StrEnum):
    """How one field or value differs between two versions; the string is what JSON says."""

    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


class Diff(Protocol):
    """What the versioned-document store needs of a diff."""

    def is_empty(self) -> bool:
        """True when the two versions say the same thing (nothing to store as a change)."""

    def as_dict(self) -> dict[str, Any]:
        """The diff as JSON, with its one-line ``summary``."""

    def summary(self) -> str:
        """The diff in one line for a history list, ``"no change"`` when empty."""


@dataclass(frozen=True)
class FieldChange:
    """One field added, removed or changed; ``changes`` maps each keyword to ``(before, after)``."""

    field: str
    kind: ChangeKind
    changes: dict[str, tuple[Any, Any]]

    def as_dict(self) -> dict[str, Any]:
        """``{field, change}``, plus ``keywords: {name: {from, to}}`` for a changed field."""
        out: dict[str, Any] = {"field": self.field, "change": self.kind}
        if self.changes:
            out["keywords"] = {k: {"from": a, "to": b} for k, (a, b) in self.changes.items()}
        return out


@dataclass(frozen=True)
class DefinitionDiff:
    """What changed in an object definition: per field, and in its object-level keywords."""

    fields: list[FieldChange]
    object_changes: dict[str, tuple[Any, Any]]

    @property
    def added(self) -> list[str]:
        """Names of the fields the new version adds, in its order."""
        return [c.field for c in self.fields if c.kind == ChangeKind.ADDED]

    @property
    def removed(self) -> list[str]:
        """Names of the fields the new version no longer has."""
        return [c.field for c in self.fields if c.kind == ChangeKind.REMOVED]

    @property
    def changed(self) -> list[FieldChange]:
        """The fields on both sides whose keywords (or requiredness) differ."""
        return [c for c in self.fields if c.kind == ChangeKind.CHANGED]

    def is_empty(self) -> bool:
        """True when no field and no object-level keyword changed."""
        return not self.fields and not self.object_changes

    def as_dict(self) -> dict[str, Any]:
        """``{fields, object, summary}`` as stored with a version and shown in history."""
        return {
            "fields": [c.as_dict() for c in self.fields],
            "object": {k: {"from": a, "to": b} for k, (a, b) in self.object_changes.items()},
            "summary": self.summary(),
        }

    def summary(self) -> str:
        """E.g. ``added phone; changed name (maxLength)``; ``no change`` when empty."""
        parts = []
        if self.added:
            parts.append("added " + ", ".join(self.added))
        if self.removed:
            parts.append("removed " + ", ".join(self.removed))
        for change in self.changed:
            parts.append(f"changed {change.field} ({', '.join(sorted(change.changes))})")
        if self.object_changes:
            parts.append("changed " + ", ".join(sorted(self.object_changes)))
        return "; ".join(parts) or "no change"


def _keyword_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    changes = {}
    for key in list(old) + [k for k in new if k not in old]:
        before, after = old.get(key, _MISSING), new.get(key, _MISSING)
        if before != after:
            changes[key] = (
                None if before is _MISSING else before,
                None if after is _MISSING else after,
            )
    return changes


def diff_definitions(old: dict[str, Any] | None, new: dict[str, Any]) -> DefinitionDiff:
    """What changed from ``old`` to ``new`` (``old`` None: everything is added)."""
    old = old or {"properties": {}, "required": []}
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
    fields: list[FieldChange] = []
    for name, prop in new_props.items():
        if name not in old_props:
            fields.append(FieldChange(name, ChangeKind.ADDED, {}))
            continue
        changes = _keyword_changes(old_props[name], prop)
        if (name in old_required) != (name in new_required):
            changes["required"] = (name in old_required, name in new_required)
        if changes:
            fields.append(FieldChange(name, ChangeKind.CHANGED, changes))
    removed = [name for name in old_props if name not in new_props]
    fields.extend(FieldChange(name, ChangeKind.REMOVED, {}) for name in removed)
    outer_old = {k: v for k, v in old.items() if k not in {"properties", "required"}}
    outer_new = {k: v for k, v in new.items() if k not in {"properties", "required"}}
    object_changes = _keyword_changes(outer_old, outer_new) if old.get("x-name") else {}
    return DefinitionDiff(fields, object_changes)


@dataclass(frozen=True)
class PointerChange:
    """One value added, removed or changed, at its JSON pointer (RFC 6901)."""

    pointer: str
    kind: ChangeKind
    before: Any = None
    after: Any = None

    def as_dict(self) -> dict[str, Any]:
        """``{pointer, change}`` with ``from`` unless added and ``to`` unless removed."""
        out: dict[str, Any] = {"pointer": self.pointer, "change": self.kind}
        if self.kind != ChangeKind.ADDED:
            out["from"] = self.before
        if self.kind != ChangeKind.REMOVED:
            out["to"] = self.after
        return out


@dataclass(frozen=True)
class DocumentDiff:
    """What changed in a JSON document, value by value."""

    changes: list[PointerChange]

    def is_empty(self) -> bool:
        """True when no value was added, removed or changed."""
        return not self.changes

    def as_dict(self) -> dict[str, Any]:
        """``{changes, summary}`` as stored with a version and shown in history."""
        return {"changes": [c.as_dict() for c in self.changes], "summary": self.summary()}

    def summary(self) -> str:
        """Changed pointers by kind, e.g. ``added /objects/order; changed /x-label/en``."""
        parts = []
        for kind in ChangeKind:
            pointers = [c.pointer for c in self.changes if c.kind == kind]
            if pointers:
                parts.append(f"{kind} " + ", ".join(pointers))
        return "; ".join(parts) or "no change"


def diff_documents(old: dict[str, Any] | None, new: dict[str, Any]) -> DocumentDiff:
    """What changed from ``old`` to ``new`` (``old`` None: every top-level key is added).

    Objects present on both sides are compared key by key; anything else (a list, a
    scalar, a value that changed type) is one value, changed as a whole.
    """
    changes: list[PointerChange] = []
    _compare_objects("", old or {}, new, changes)
    return DocumentDiff(changes)


def _compare_objects(
    at: str, old: dict[str, Any], new: dict[str, Any], changes: list[PointerChange]
) -> None:
    for key in list(old) + [k for k in new if k not in old]:
        pointer = f"{at}/{_escape(key)}"
        before, after = old.get(key, _MISSING), new.get(key, _MISSING)
        if before is _MISSING:
            changes.append(PointerChange(pointer, ChangeKind.ADDED, after=after))
        elif after is _MISSING:
            changes.append(PointerChange(pointer, ChangeKind.REMOVED, before=before))
        elif isinstance(before, dict) and isinstance(after, dict):
            _compare_objects(pointer, before, after, changes)
        elif not _same(before, after):
            changes.append(PointerChange(pointer, ChangeKind.CHANGED, before, after))


def _same(a: Any, b: Any) -> bool:
    """JSON equality: ``true`` is not ``1`` (to Python it is); ``1`` and ``1.0`` are one number."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")
